//! FlyingChairs-like flow data: a textured background that zooms, turns and shifts, with one to
//! three textured objects (chairs seen from the side, polygons, blobs) on top, each with its own
//! rotation, scaling and translation.
//!
//! The ground truth is exact because both frames come from the same forward model: every layer
//! carries its texture by an affine `placement` (texture space -> frame 1) and moves by an affine
//! `motion` (frame 1 -> frame 2), and colours depend on texture coordinates only (brightness
//! constancy). The flow at a pixel centre is `motion(p) - p` of the topmost layer there in frame 1,
//! so it is defined at every pixel, including points that are hidden or leave the image in frame
//! 2 (as in FlyingChairs); `FlowSample::occluded` marks those. A layer whose motion is the
//! identity has flow exactly 0.
//!
//! Image coordinates are continuous with pixel (x, y) covering [x, x+1) x [y, y+1); frames are
//! averaged over 2x2 points per pixel, the flow is taken at the pixel centre.

use std::path::Path;

use rayon::prelude::*;

use super::render::{to_u8, Affine2, Shape, Texture};
use super::{join_lines, ppm_rgb8, val_count, Sink, ToyDataOptions};
use crate::error::Result;
use crate::io::flo::Flow;

#[derive(Clone, Debug)]
pub struct Layer {
    /// `None` for the background, which covers everything.
    pub shape: Option<Shape>,
    pub texture: Texture,
    /// Texture/shape space -> frame 1 pixels.
    pub placement: Affine2,
    /// Frame 1 pixels -> frame 2 pixels.
    pub motion: Affine2,
}

/// Layers bottom to top; `layers[0]` is the background.
#[derive(Clone, Debug)]
pub struct FlowScene {
    pub layers: Vec<Layer>,
}

/// Two frames (8-bit RGB), the flow from frame 1 to frame 2 at every pixel, the index of the
/// layer seen at each pixel of frame 1, and whether that point is hidden or out of view in frame 2.
#[derive(Clone, Debug)]
pub struct FlowSample {
    pub size: usize,
    pub img1: Vec<u8>,
    pub img2: Vec<u8>,
    pub flow: Flow,
    pub layer: Vec<u8>,
    pub occluded: Vec<bool>,
}

impl FlowScene {
    pub fn random(seed: u64, index: usize, size: usize) -> FlowScene {
        let mut rng = super::rng::stream(seed, "chairs", index as u64);
        let s = size as f32;
        // Background texture space is the unit square over frame 1, so content does not depend
        // on the image size.
        let background = Layer {
            shape: None,
            texture: Texture::random(&mut rng, (0.1, 0.3), (0.1, 0.95)),
            placement: Affine2::similarity(0.0, s, [0.0, 0.0]),
            motion: if rng.chance(0.15) {
                Affine2::IDENTITY
            } else {
                let centre = [rng.range(0.2, 0.8) * s, rng.range(0.2, 0.8) * s];
                let to_centre = Affine2 { m: Affine2::IDENTITY.m, t: [-centre[0], -centre[1]] };
                let shift = [centre[0] + rng.range(-0.05, 0.05) * s, centre[1] + rng.range(-0.05, 0.05) * s];
                Affine2::similarity(rng.range(-0.05, 0.05), rng.range(0.93, 1.07), shift).after(&to_centre)
            },
        };
        let mut layers = vec![background];
        for _ in 0..rng.between(1, 3) {
            let radius = rng.range(0.12, 0.3) * s;
            let centre = [rng.range(0.15, 0.85) * s, rng.range(0.15, 0.85) * s];
            let angle = rng.range(-0.6, 0.6);
            let placement = Affine2::similarity(angle, radius, centre);
            let moved = Affine2::similarity(
                angle + rng.range(-0.2, 0.2),
                radius * rng.range(0.9, 1.1),
                [centre[0] + rng.range(-0.1, 0.1) * s, centre[1] + rng.range(-0.1, 0.1) * s],
            );
            layers.push(Layer {
                shape: Some(Shape::random(&mut rng)),
                texture: Texture::random(&mut rng, (0.35, 0.9), (0.1, 0.95)),
                placement,
                motion: moved.after(&placement.inverse()),
            });
        }
        FlowScene { layers }
    }

    /// The topmost layer covering image point `p` of the frame whose image -> texture maps are
    /// `to_texture`, and the texture point seen there.
    fn top(&self, p: [f32; 2], to_texture: &[Affine2]) -> (usize, [f32; 2]) {
        for k in (1..self.layers.len()).rev() {
            let t = to_texture[k].apply(p);
            if self.layers[k].shape.as_ref().is_some_and(|shape| shape.contains(t)) {
                return (k, t);
            }
        }
        (0, to_texture[0].apply(p))
    }

    fn render_frame(&self, size: usize, to_texture: &[Affine2]) -> Vec<u8> {
        let mut img = vec![0u8; size * size * 3];
        for y in 0..size {
            for x in 0..size {
                let mut acc = [0f32; 3];
                for (dx, dy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                    let (k, t) = self.top([x as f32 + dx, y as f32 + dy], to_texture);
                    let c = self.layers[k].texture.sample2(t);
                    (0..3).for_each(|i| acc[i] += c[i] * 0.25);
                }
                for i in 0..3 {
                    img[(y * size + x) * 3 + i] = to_u8(acc[i]);
                }
            }
        }
        img
    }

    pub fn render(&self, size: usize) -> FlowSample {
        let to_tex1: Vec<Affine2> = self.layers.iter().map(|l| l.placement.inverse()).collect();
        let to_tex2: Vec<Affine2> = self.layers.iter().map(|l| l.motion.after(&l.placement).inverse()).collect();
        let img1 = self.render_frame(size, &to_tex1);
        let img2 = self.render_frame(size, &to_tex2);
        let n = size * size;
        let (mut u, mut v) = (vec![0f32; n], vec![0f32; n]);
        let mut layer = vec![0u8; n];
        let mut occluded = vec![false; n];
        for y in 0..size {
            for x in 0..size {
                let i = y * size + x;
                let p = [x as f32 + 0.5, y as f32 + 0.5];
                let (k, _) = self.top(p, &to_tex1);
                let q = self.layers[k].motion.apply(p);
                u[i] = q[0] - p[0];
                v[i] = q[1] - p[1];
                layer[i] = k as u8;
                let inside = q[0] >= 0.0 && q[1] >= 0.0 && q[0] < size as f32 && q[1] < size as f32;
                occluded[i] = !inside || self.top(q, &to_tex2).0 > k;
            }
        }
        FlowSample { size, img1, img2, flow: Flow { width: size, height: size, u, v }, layer, occluded }
    }
}

/// FlyingChairs sample names are 1-based, five digits.
pub fn sample_stem(index: usize) -> String {
    format!("{:05}", index + 1)
}

pub(super) fn write_dataset(out: &Path, opts: &ToyDataOptions, sink: &Sink) -> Result<()> {
    let root = out.join("FlyingChairs_small");
    let data = root.join("data");
    (0..opts.n_flow).into_par_iter().try_for_each(|i| -> Result<()> {
        let sample = FlowScene::random(opts.seed, i, opts.size).render(opts.size);
        let stem = sample_stem(i);
        sink.write(&data.join(format!("{stem}_img1.ppm")), &ppm_rgb8(&sample.img1, opts.size))?;
        sink.write(&data.join(format!("{stem}_img2.ppm")), &ppm_rgb8(&sample.img2, opts.size))?;
        sink.write_flo(&data.join(format!("{stem}_flow.flo")), &sample.flow)
    })?;
    let first_val = opts.n_flow - val_count(opts.n_flow, opts.val_fraction);
    let lines: Vec<String> = (0..opts.n_flow).map(|i| if i < first_val { "1" } else { "2" }.to_string()).collect();
    sink.write(&root.join("FlyingChairs_train_val.txt"), &join_lines(&lines))
}
