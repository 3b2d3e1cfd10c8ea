//! Pix2Gestalt-like amodal data: a textured, softly shaded object in a textured scene (with a
//! few shapes behind it), partly hidden by an occluder in front.
//!
//! Outputs per sample: `occlusion` (the scene as seen), `whole` (the object alone at the same
//! place on pure white), `whole_mask` (the object's silhouette) and `visible_object_mask`
//! (silhouette minus occluder), masks 8-bit 0/255. Pixels are point-sampled at their centres with
//! no anti-aliasing, so these hold exactly: visible mask within whole mask; `whole` is
//! (255, 255, 255) outside the whole mask; `occlusion` equals `whole` inside the visible mask.
//! Object colours stay below 0.9, so "mean of the channels < 0.95" recovers the whole mask from
//! `whole` (the convention `percept segment` uses).

use std::path::Path;

use rayon::prelude::*;

use super::render::{to_u8, Affine2, Rgb, Shape, Texture};
use super::rng::Rng;
use super::{png_gray8, png_rgb8, val_count, Sink, ToyDataOptions};
use crate::error::Result;

/// A flat shape with a texture, placed by `placement` (shape space -> the unit square of the
/// image).
#[derive(Clone, Debug)]
pub struct Sprite {
    pub shape: Shape,
    pub texture: Texture,
    pub placement: Affine2,
    to_shape: Affine2,
}

impl Sprite {
    fn new(shape: Shape, texture: Texture, placement: Affine2) -> Sprite {
        Sprite { shape, texture, placement, to_shape: placement.inverse() }
    }

    /// The shape-space point under image point `p` (unit square), if the sprite covers it.
    fn at(&self, p: [f32; 2]) -> Option<[f32; 2]> {
        let t = self.to_shape.apply(p);
        self.shape.contains(t).then_some(t)
    }
}

#[derive(Clone, Debug)]
pub struct AmodalScene {
    /// Texture space is the unit square of the image.
    pub background: Texture,
    pub behind: Vec<Sprite>,
    pub object: Sprite,
    /// Shape-space point of the object's highlight (a hint of volume).
    pub highlight: [f32; 2],
    pub occluder: Sprite,
}

/// Row-major 8-bit images of one sample: RGB `occlusion` and `whole`, 0/255 masks.
#[derive(Clone, Debug)]
pub struct AmodalSample {
    pub size: usize,
    pub occlusion: Vec<u8>,
    pub whole: Vec<u8>,
    pub whole_mask: Vec<u8>,
    pub visible_mask: Vec<u8>,
}

/// Shapes reach at most this far from their origin (see `Shape`).
const SHAPE_REACH: f32 = 1.15;

/// Wanted share of the object hidden by the occluder.
const HIDDEN_MIN: f32 = 0.15;
const HIDDEN_MAX: f32 = 0.6;

impl AmodalScene {
    pub fn random(seed: u64, index: usize) -> AmodalScene {
        let mut rng = super::rng::stream(seed, "gestalt", index as u64);
        let background = Texture::random(&mut rng, (0.1, 0.3), (0.15, 1.0));
        let behind = (0..rng.between(0, 2))
            .map(|_| {
                let placement = Affine2::similarity(
                    rng.range(-3.2, 3.2),
                    rng.range(0.1, 0.25),
                    [rng.range(0.0, 1.0), rng.range(0.0, 1.0)],
                );
                Sprite::new(Shape::random(&mut rng), Texture::random(&mut rng, (0.3, 0.8), (0.15, 1.0)), placement)
            })
            .collect();
        let radius = rng.range(0.17, 0.28);
        let margin = radius * SHAPE_REACH + 0.02;
        let centre = [rng.range(margin, 1.0 - margin), rng.range(margin, 1.0 - margin)];
        // The object sits mostly upright, as photographed objects do.
        let object = Sprite::new(
            Shape::random(&mut rng),
            Texture::random(&mut rng, (0.3, 0.8), (0.1, 0.8)),
            Affine2::similarity(rng.range(-0.4, 0.4), radius, centre),
        );
        let highlight = [rng.range(-0.6, 0.6), rng.range(-0.8, 0.0)];
        let occluder_shape = Shape::random(&mut rng);
        let occluder_texture = Texture::random(&mut rng, (0.3, 0.8), (0.1, 1.0));
        let place_occluder = |rng: &mut Rng| {
            let (s, c) = super::rng::sin_cos(rng.range(0.0, std::f32::consts::TAU));
            let reach = radius * rng.range(0.6, 1.4);
            let placement = Affine2::similarity(
                rng.range(-3.2, 3.2),
                radius * rng.range(0.5, 1.0),
                [centre[0] + c * reach, centre[1] + s * reach],
            );
            let occluder = Sprite::new(occluder_shape.clone(), occluder_texture.clone(), placement);
            (hidden_share(&object, &occluder), occluder)
        };
        let miss = |hidden: f32| (hidden - (HIDDEN_MIN + HIDDEN_MAX) / 2.0).abs();
        // Try placements until one hides a wanted share; else keep the closest.
        let (mut hidden, mut occluder) = place_occluder(&mut rng);
        for _ in 1..48 {
            if (HIDDEN_MIN..=HIDDEN_MAX).contains(&hidden) {
                break;
            }
            let (h, o) = place_occluder(&mut rng);
            if miss(h) < miss(hidden) {
                (hidden, occluder) = (h, o);
            }
        }
        AmodalScene { background, behind, object, highlight, occluder }
    }

    fn object_colour(&self, t: [f32; 2]) -> Rgb {
        let c = self.object.texture.sample2(t);
        let (dx, dy) = (t[0] - self.highlight[0], t[1] - self.highlight[1]);
        let shade = (1.0 - 0.2 * (dx * dx + dy * dy)).clamp(0.6, 1.0);
        [c[0] * shade, c[1] * shade, c[2] * shade]
    }

    pub fn render(&self, size: usize) -> AmodalSample {
        let n = size * size;
        let mut s = AmodalSample {
            size,
            occlusion: vec![0; n * 3],
            whole: vec![255; n * 3],
            whole_mask: vec![0; n],
            visible_mask: vec![0; n],
        };
        for y in 0..size {
            for x in 0..size {
                let i = y * size + x;
                let p = [(x as f32 + 0.5) / size as f32, (y as f32 + 0.5) / size as f32];
                let object_px = self.object.at(p).map(|t| self.object_colour(t).map(to_u8));
                let scene = if let Some(t) = self.occluder.at(p) {
                    self.occluder.texture.sample2(t).map(to_u8)
                } else if let Some(c) = object_px {
                    s.visible_mask[i] = 255;
                    c
                } else {
                    let sprite = self.behind.iter().rev().find_map(|b| b.at(p).map(|t| b.texture.sample2(t)));
                    sprite.unwrap_or_else(|| self.background.sample2(p)).map(to_u8)
                };
                s.occlusion[i * 3..i * 3 + 3].copy_from_slice(&scene);
                if let Some(c) = object_px {
                    s.whole_mask[i] = 255;
                    s.whole[i * 3..i * 3 + 3].copy_from_slice(&c);
                }
            }
        }
        s
    }
}

/// Share of the object's area the occluder hides, on a fixed grid so the scene does not depend on
/// the output size.
fn hidden_share(object: &Sprite, occluder: &Sprite) -> f32 {
    const GRID: usize = 48;
    let (mut area, mut hidden) = (0usize, 0usize);
    for y in 0..GRID {
        for x in 0..GRID {
            let p = [(x as f32 + 0.5) / GRID as f32, (y as f32 + 0.5) / GRID as f32];
            if object.at(p).is_some() {
                area += 1;
                hidden += occluder.at(p).is_some() as usize;
            }
        }
    }
    hidden as f32 / area.max(1) as f32
}

/// Pix2Gestalt names samples by a number; ours start at 10000000.
pub fn sample_id(index: usize) -> String {
    format!("{}", 10_000_000 + index)
}

pub(super) fn write_dataset(out: &Path, opts: &ToyDataOptions, sink: &Sink) -> Result<()> {
    let first_val = opts.n_segment - val_count(opts.n_segment, opts.val_fraction);
    let root = out.join("Pix2Gestalt_small");
    (0..opts.n_segment).into_par_iter().try_for_each(|i| -> Result<()> {
        let s = AmodalScene::random(opts.seed, i).render(opts.size);
        let dir = root.join(if i < first_val { "train" } else { "val" });
        let id = sample_id(i);
        sink.write(&dir.join("occlusion").join(format!("{id}_occlusion.png")), &png_rgb8(&s.occlusion, opts.size)?)?;
        sink.write(&dir.join("whole").join(format!("{id}_whole.png")), &png_rgb8(&s.whole, opts.size)?)?;
        sink.write(
            &dir.join("whole_mask").join(format!("{id}_whole_mask.png")),
            &png_gray8(&s.whole_mask, opts.size)?,
        )?;
        let visible = dir.join("visible_object_mask").join(format!("{id}_visible_mask.png"));
        sink.write(&visible, &png_gray8(&s.visible_mask, opts.size)?)
    })
}
