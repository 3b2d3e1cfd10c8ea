//! Hypersim-like depth data: ray-cast rooms (floor, ceiling, four walls) holding spheres and
//! boxes with solid textures, Lambert shading from one point light and hard shadows. Depth is
//! Hypersim's `depth_plane`: distance along the optical axis, not along the ray, in millimetres.
//!
//! Every ray starts inside the closed room, so every pixel hits something and the whole depth map
//! is valid. Depth comes from the ray through the pixel centre; the RGB image averages 2x2 rays.

use std::path::Path;

use rayon::prelude::*;

use super::render::{to_u8, Texture, V3};
use super::rng::{sin_cos, Rng};
use super::{join_lines, png_gray16, png_rgb8, val_count, Sink, ToyDataOptions};
use crate::error::Result;

/// Images per scene, each from its own camera (frames of one camera in Hypersim's naming).
pub const VIEWS_PER_SCENE: usize = 4;

/// Depth values the 16-bit millimetre encoding can hold.
pub const MAX_DEPTH_M: f32 = 65.535;

#[derive(Clone, Debug)]
pub enum Solid {
    Sphere {
        centre: V3,
        radius: f32,
    },
    /// A box turned by `yaw` about the vertical axis; `cos_sin` of that angle.
    Cuboid {
        centre: V3,
        half: V3,
        cos_sin: [f32; 2],
    },
}

#[derive(Clone, Debug)]
pub struct Object {
    pub solid: Solid,
    pub texture: Texture,
}

/// A room spanning x in [-half_width, half_width], y in [0, height] (y up), z in [0, length].
#[derive(Clone, Debug)]
pub struct Scene {
    pub half_width: f32,
    pub height: f32,
    pub length: f32,
    /// Floor, ceiling, left, right, front (z = 0) and back wall.
    pub surfaces: [Texture; 6],
    pub objects: Vec<Object>,
    pub light: V3,
    pub light_power: f32,
    pub ambient: f32,
}

/// A pinhole camera; `forward`, `right`, `up` are orthonormal, `tan_half_fov` sets the focal
/// length at any image size.
#[derive(Clone, Debug)]
pub struct Camera {
    pub position: V3,
    pub forward: V3,
    pub right: V3,
    pub up: V3,
    pub tan_half_fov: f32,
}

impl Camera {
    /// The ray through image point (x, y) (pixel units, pixel centres at +0.5) of a `size` image,
    /// scaled so its component along `forward` is 1: hit distances are then planar depths.
    pub fn ray(&self, x: f32, y: f32, size: usize) -> V3 {
        let half = size as f32 / 2.0;
        let focal = half / self.tan_half_fov;
        let (u, v) = ((x - half) / focal, (half - y) / focal);
        self.forward.plus(self.right.scale(u)).plus(self.up.scale(v))
    }
}

/// One rendered view: 8-bit RGB (row-major, 3 bytes a pixel) and planar depth in metres.
#[derive(Clone, Debug)]
pub struct DepthView {
    pub size: usize,
    pub rgb: Vec<u8>,
    pub depth_m: Vec<f32>,
}

impl DepthView {
    /// Depth as stored in the PNG: millimetres, rounded, clamped to [1, 65535].
    pub fn depth_mm(&self) -> Vec<u16> {
        self.depth_m.iter().map(|&d| (d * 1000.0 + 0.5).clamp(1.0, 65535.0) as u16).collect()
    }
}

impl Scene {
    pub fn random(seed: u64, index: usize) -> Scene {
        let mut rng = super::rng::stream(seed, "hypersim/scene", index as u64);
        let half_width = rng.range(2.0, 4.0);
        let height = rng.range(2.4, 3.6);
        let length = rng.range(5.0, 10.0);
        let floor = Texture::random(&mut rng, (0.4, 1.0), (0.3, 0.9));
        let ceiling = Texture::random(&mut rng, (0.5, 2.0), (0.7, 1.0));
        let wall = Texture::random(&mut rng, (0.3, 1.5), (0.4, 1.0));
        // Some rooms have one feature wall in another texture.
        let feature = if rng.chance(0.5) { Texture::random(&mut rng, (0.2, 1.0), (0.3, 0.9)) } else { wall.clone() };
        let surfaces = [floor, ceiling, wall.clone(), wall.clone(), wall, feature];
        let n = rng.between(3, 8);
        let objects = (0..n).map(|_| random_object(&mut rng, half_width, length)).collect();
        let light = V3(
            rng.range(-half_width * 0.7, half_width * 0.7),
            height - rng.range(0.1, 0.5),
            rng.range(length * 0.2, length * 0.8),
        );
        Scene {
            half_width,
            height,
            length,
            surfaces,
            objects,
            light,
            light_power: rng.range(6.0, 14.0),
            ambient: rng.range(0.2, 0.4),
        }
    }

    /// A camera near the front wall looking into the room, slightly down.
    pub fn camera(&self, seed: u64, index: usize, view: usize) -> Camera {
        let mut rng = super::rng::stream(seed, "hypersim/camera", (index * VIEWS_PER_SCENE + view) as u64);
        let position = V3(
            rng.range(-self.half_width * 0.6, self.half_width * 0.6),
            rng.range(1.0, 1.8).min(self.height - 0.3),
            rng.range(0.3, 1.2),
        );
        let target = V3(
            rng.range(-self.half_width * 0.7, self.half_width * 0.7),
            rng.range(0.2, 1.2),
            rng.range(self.length * 0.5, self.length * 0.95),
        );
        let forward = target.minus(position).normalized();
        let right = forward.cross(V3(0.0, 1.0, 0.0)).normalized();
        let up = right.cross(forward);
        Camera { position, forward, right, up, tan_half_fov: rng.range(0.45, 0.75) }
    }

    /// The nearest hit along `dir` from `origin`: distance (in units of `dir`), unit normal
    /// facing the ray, texture and texture-space point.
    fn trace(&self, origin: V3, dir: V3) -> Hit<'_> {
        let mut best = self.room_hit(origin, dir);
        for obj in &self.objects {
            if let Some((t, normal, tex_p)) = hit_solid(&obj.solid, origin, dir) {
                if t < best.t {
                    best = Hit { t, normal, texture: &obj.texture, tex_p };
                }
            }
        }
        best
    }

    fn room_hit(&self, o: V3, d: V3) -> Hit<'_> {
        // (axis, plane coordinate, surface index); the room is closed, so one of them is hit.
        let planes = [
            (1, 0.0, 0),
            (1, self.height, 1),
            (0, -self.half_width, 2),
            (0, self.half_width, 3),
            (2, 0.0, 4),
            (2, self.length, 5),
        ];
        let comp = |v: V3, axis: usize| [v.0, v.1, v.2][axis];
        let mut best: Option<(f32, usize, usize)> = None;
        for &(axis, at, surface) in &planes {
            let dc = comp(d, axis);
            if dc == 0.0 {
                continue;
            }
            let t = (at - comp(o, axis)) / dc;
            if t > 0.0 && best.is_none_or(|b| t < b.0) {
                best = Some((t, axis, surface));
            }
        }
        let (t, axis, surface) = best.unwrap_or((MAX_DEPTH_M, 2, 5));
        let p = o.plus(d.scale(t));
        let sign = if comp(d, axis) > 0.0 { -1.0 } else { 1.0 };
        let (normal, tex_p) = match axis {
            0 => (V3(sign, 0.0, 0.0), V3(p.2, p.1, 0.0)),
            1 => (V3(0.0, sign, 0.0), V3(p.0, p.2, 0.0)),
            _ => (V3(0.0, 0.0, sign), V3(p.0, p.1, 0.0)),
        };
        Hit { t, normal, texture: &self.surfaces[surface], tex_p }
    }

    fn shade(&self, origin: V3, dir: V3) -> [f32; 3] {
        let hit = self.trace(origin, dir);
        let p = origin.plus(dir.scale(hit.t));
        let to_light = self.light.minus(p);
        let dist2 = to_light.dot(to_light);
        let l = to_light.scale(1.0 / dist2.sqrt());
        let lambert = hit.normal.dot(l).max(0.0);
        let lit = lambert > 0.0 && !self.shadowed(p.plus(hit.normal.scale(1e-3)), to_light);
        let light = self.ambient + if lit { lambert * self.light_power / (1.0 + dist2) } else { 0.0 };
        let c = hit.texture.sample(hit.tex_p);
        // sqrt: a cheap display gamma that needs no pow.
        [(c[0] * light).sqrt(), (c[1] * light).sqrt(), (c[2] * light).sqrt()]
    }

    fn shadowed(&self, from: V3, to_light: V3) -> bool {
        self.objects.iter().any(|o| hit_solid(&o.solid, from, to_light).is_some_and(|(t, _, _)| t < 1.0))
    }

    /// Render one view at `size` x `size`.
    pub fn render(&self, camera: &Camera, size: usize) -> DepthView {
        let mut rgb = vec![0u8; size * size * 3];
        let mut depth_m = vec![0f32; size * size];
        for y in 0..size {
            for x in 0..size {
                let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
                depth_m[y * size + x] = self.trace(camera.position, camera.ray(fx, fy, size)).t;
                let mut acc = [0f32; 3];
                for (dx, dy) in [(-0.25, -0.25), (0.25, -0.25), (-0.25, 0.25), (0.25, 0.25)] {
                    let c = self.shade(camera.position, camera.ray(fx + dx, fy + dy, size));
                    (0..3).for_each(|k| acc[k] += c[k] * 0.25);
                }
                for k in 0..3 {
                    rgb[(y * size + x) * 3 + k] = to_u8(acc[k]);
                }
            }
        }
        DepthView { size, rgb, depth_m }
    }
}

struct Hit<'a> {
    t: f32,
    normal: V3,
    texture: &'a Texture,
    tex_p: V3,
}

fn random_object(rng: &mut Rng, half_width: f32, length: f32) -> Object {
    let x = rng.range(-half_width + 0.5, half_width - 0.5);
    let z = rng.range(length * 0.3, length - 0.5);
    let solid = if rng.chance(0.45) {
        let radius = rng.range(0.2, 0.8);
        // Most spheres rest on the floor, some float (lamps, balls on shelves).
        let lift = if rng.chance(0.7) { 0.0 } else { rng.range(0.2, 1.2) };
        Solid::Sphere { centre: V3(x, radius + lift, z), radius }
    } else {
        let half = V3(rng.range(0.15, 0.8), rng.range(0.15, 1.0), rng.range(0.15, 0.8));
        let (s, c) = sin_cos(rng.range(0.0, std::f32::consts::PI));
        Solid::Cuboid { centre: V3(x, half.1, z), half, cos_sin: [c, s] }
    };
    Object { solid, texture: Texture::random(rng, (0.15, 0.5), (0.25, 0.95)) }
}

/// Ray-solid intersection: (t, normal facing the ray, texture point).
fn hit_solid(solid: &Solid, o: V3, d: V3) -> Option<(f32, V3, V3)> {
    match solid {
        Solid::Sphere { centre, radius } => {
            let oc = o.minus(*centre);
            let a = d.dot(d);
            let b = d.dot(oc);
            let disc = b * b - a * (oc.dot(oc) - radius * radius);
            if disc < 0.0 {
                return None;
            }
            let t = (-b - disc.sqrt()) / a;
            if t <= 1e-4 {
                return None;
            }
            let local = oc.plus(d.scale(t));
            Some((t, local.scale(1.0 / radius), local))
        }
        Solid::Cuboid { centre, half, cos_sin: [c, s] } => {
            // Into the box's frame: rotate by -yaw about y.
            let to_local = |v: V3| V3(c * v.0 + s * v.2, v.1, -s * v.0 + c * v.2);
            let (lo, ld) = (to_local(o.minus(*centre)), to_local(d));
            let (lo, ld, h) = ([lo.0, lo.1, lo.2], [ld.0, ld.1, ld.2], [half.0, half.1, half.2]);
            let (mut t_near, mut t_far, mut axis) = (f32::NEG_INFINITY, f32::INFINITY, 0);
            for k in 0..3 {
                if ld[k] == 0.0 {
                    if lo[k].abs() > h[k] {
                        return None;
                    }
                    continue;
                }
                let (t0, t1) = ((-h[k] - lo[k]) / ld[k], (h[k] - lo[k]) / ld[k]);
                let (t0, t1) = if t0 < t1 { (t0, t1) } else { (t1, t0) };
                if t0 > t_near {
                    t_near = t0;
                    axis = k;
                }
                t_far = t_far.min(t1);
            }
            if t_near > t_far || t_near <= 1e-4 {
                return None;
            }
            let mut n = [0f32; 3];
            n[axis] = if ld[axis] > 0.0 { -1.0 } else { 1.0 };
            let p = [lo[0] + ld[0] * t_near, lo[1] + ld[1] * t_near, lo[2] + ld[2] * t_near];
            // Face coordinates: the two axes other than the face normal.
            let tex_p = match axis {
                0 => V3(p[2], p[1], 0.0),
                1 => V3(p[0], p[2], 0.0),
                _ => V3(p[0], p[1], 0.0),
            };
            let normal = V3(c * n[0] - s * n[2], n[1], s * n[0] + c * n[2]);
            Some((t_near, normal, tex_p))
        }
    }
}

/// Scene folder name in Hypersim's `ai_VVV_SSS` form.
pub fn scene_name(index: usize) -> String {
    format!("ai_{:03}_{:03}", 1 + index / 10, 1 + index % 10)
}

/// (rgb, depth) file names of one view, relative to the scene folder.
pub fn view_names(view: usize) -> (String, String) {
    (format!("rgb_cam_00_fr{view:04}.png"), format!("depth_plane_cam_00_fr{view:04}.png"))
}

pub(super) fn write_dataset(out: &Path, opts: &ToyDataOptions, sink: &Sink) -> Result<()> {
    let n_scenes = opts.n_depth.div_ceil(VIEWS_PER_SCENE);
    let n_val = val_count(n_scenes, opts.val_fraction);
    let split_of = |scene: usize| {
        if scene >= n_scenes - n_val {
            "val"
        } else {
            "train"
        }
    };
    let root = out.join("Hypersim_small");
    let views: Vec<(usize, usize)> = (0..opts.n_depth).map(|i| (i / VIEWS_PER_SCENE, i % VIEWS_PER_SCENE)).collect();
    views.par_iter().try_for_each(|&(scene_idx, view)| -> Result<()> {
        let scene = Scene::random(opts.seed, scene_idx);
        let rendered = scene.render(&scene.camera(opts.seed, scene_idx, view), opts.size);
        let dir = root.join(split_of(scene_idx)).join(scene_name(scene_idx));
        let (rgb_name, depth_name) = view_names(view);
        sink.write(&dir.join(rgb_name), &png_rgb8(&rendered.rgb, opts.size)?)?;
        sink.write(&dir.join(depth_name), &png_gray16(&rendered.depth_mm(), opts.size)?)
    })?;
    for split in ["train", "val"] {
        let lines: Vec<String> = views
            .iter()
            .filter(|(s, _)| split_of(*s) == split)
            .map(|&(s, v)| {
                let (rgb, depth) = view_names(v);
                format!("{0}/{rgb} {0}/{depth}", scene_name(s))
            })
            .collect();
        let list = out.join("data_split").join(format!("hysim_filename_list_{split}.txt"));
        sink.write(&list, &join_lines(&lines))?;
    }
    Ok(())
}
