//! Building blocks shared by the three generators: small vector maths, 2-D affine maps, procedural
//! textures (solid, so they work on planes, spheres and flat shapes alike) and flat shapes.
//!
//! Textures are band-limited on purpose (soft edges, smooth noise): bilinear warping then
//! reproduces them closely, which keeps the flow check tight and the images learnable.

use super::rng::{sin_cos, Rng};

pub type Rgb = [f32; 3];

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct V3(pub f32, pub f32, pub f32);

impl V3 {
    pub fn plus(self, o: V3) -> V3 {
        V3(self.0 + o.0, self.1 + o.1, self.2 + o.2)
    }
    pub fn minus(self, o: V3) -> V3 {
        V3(self.0 - o.0, self.1 - o.1, self.2 - o.2)
    }
    pub fn scale(self, k: f32) -> V3 {
        V3(self.0 * k, self.1 * k, self.2 * k)
    }
    pub fn dot(self, o: V3) -> f32 {
        self.0 * o.0 + self.1 * o.1 + self.2 * o.2
    }
    pub fn cross(self, o: V3) -> V3 {
        V3(self.1 * o.2 - self.2 * o.1, self.2 * o.0 - self.0 * o.2, self.0 * o.1 - self.1 * o.0)
    }
    pub fn norm(self) -> f32 {
        self.dot(self).sqrt()
    }
    pub fn normalized(self) -> V3 {
        self.scale(1.0 / self.norm())
    }
}

/// `p -> M p + t` on the plane; `m` is row-major [[a, b], [c, d]].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine2 {
    pub m: [f32; 4],
    pub t: [f32; 2],
}

impl Affine2 {
    pub const IDENTITY: Affine2 = Affine2 { m: [1.0, 0.0, 0.0, 1.0], t: [0.0, 0.0] };

    /// Rotate by `angle` and scale by `scale` about the origin, then move the origin to `to`.
    pub fn similarity(angle: f32, scale: f32, to: [f32; 2]) -> Affine2 {
        let (s, c) = sin_cos(angle);
        Affine2 { m: [c * scale, -s * scale, s * scale, c * scale], t: to }
    }

    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        let m = &self.m;
        [m[0] * p[0] + m[1] * p[1] + self.t[0], m[2] * p[0] + m[3] * p[1] + self.t[1]]
    }

    /// `self` after `first`: p -> self(first(p)).
    pub fn after(&self, first: &Affine2) -> Affine2 {
        let (a, b) = (&self.m, &first.m);
        let m = [
            a[0] * b[0] + a[1] * b[2],
            a[0] * b[1] + a[1] * b[3],
            a[2] * b[0] + a[3] * b[2],
            a[2] * b[1] + a[3] * b[3],
        ];
        Affine2 { m, t: self.apply(first.t) }
    }

    pub fn inverse(&self) -> Affine2 {
        let m = &self.m;
        let det = m[0] * m[3] - m[1] * m[2];
        let inv = [m[3] / det, -m[1] / det, -m[2] / det, m[0] / det];
        let t = [-(inv[0] * self.t[0] + inv[1] * self.t[1]), -(inv[2] * self.t[0] + inv[3] * self.t[1])];
        Affine2 { m: inv, t }
    }
}

fn fract(x: f32) -> f32 {
    x - x.floor()
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

pub fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [lerp(a[0], b[0], t), lerp(a[1], b[1], t), lerp(a[2], b[2], t)]
}

/// Hash of a lattice point to [0, 1).
fn lattice(ix: i32, iy: i32, iz: i32, salt: u32) -> f32 {
    let mut h = (ix as u32).wrapping_mul(0x8DA6_B343)
        ^ (iy as u32).wrapping_mul(0xD816_3841)
        ^ (iz as u32).wrapping_mul(0xCB1A_B31F)
        ^ salt.wrapping_mul(0x1656_67B1);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297A_2D39);
    h ^= h >> 15;
    (h >> 8) as f32 / (1u32 << 24) as f32
}

/// Smooth value noise in [0, 1), one lattice cell per unit.
pub fn value_noise(p: V3, salt: u32) -> f32 {
    let (fx, fy, fz) = (p.0.floor(), p.1.floor(), p.2.floor());
    let (ix, iy, iz) = (fx as i32, fy as i32, fz as i32);
    let (tx, ty, tz) = (smooth(p.0 - fx), smooth(p.1 - fy), smooth(p.2 - fz));
    let corner = |dx, dy, dz| lattice(ix + dx, iy + dy, iz + dz, salt);
    let x00 = lerp(corner(0, 0, 0), corner(1, 0, 0), tx);
    let x10 = lerp(corner(0, 1, 0), corner(1, 1, 0), tx);
    let x01 = lerp(corner(0, 0, 1), corner(1, 0, 1), tx);
    let x11 = lerp(corner(0, 1, 1), corner(1, 1, 1), tx);
    lerp(lerp(x00, x10, ty), lerp(x01, x11, ty), tz)
}

/// Two octaves of value noise, in [0, 1).
fn fbm(p: V3, salt: u32) -> f32 {
    (value_noise(p, salt) * 2.0 + value_noise(p.scale(2.03), salt ^ 0x9E37)) / 3.0
}

/// A colour in [0, 1] from hue (turns), saturation and value, without trigonometry.
pub fn hsv(h: f32, s: f32, v: f32) -> Rgb {
    let h6 = fract(h) * 6.0;
    let channel = |k: f32| {
        let x = fract((k + h6) / 6.0) * 6.0;
        let ramp = (x - 3.0).abs() - 1.0;
        v * (1.0 - s * (1.0 - ramp.clamp(0.0, 1.0)))
    };
    [channel(5.0), channel(3.0), channel(1.0)]
}

#[derive(Clone, Debug)]
pub enum Pattern {
    /// Smooth noise with `contrast` > 1 pushing it towards two-tone blotches.
    Noise { contrast: f32 },
    /// A soft 3-D checkerboard (soft exclusive-or of square waves along the axes).
    Checker,
    /// Soft parallel bands across `dir`.
    Stripes { dir: V3 },
    /// Noise-distorted bands, like wood or marble.
    Marble { dir: V3, warp: f32 },
}

/// A solid texture: a pattern choosing between two colours, plus fine grain.
#[derive(Clone, Debug)]
pub struct Texture {
    pub pattern: Pattern,
    /// Pattern cells per unit of texture space.
    pub frequency: f32,
    pub a: Rgb,
    pub b: Rgb,
    pub offset: V3,
    pub grain: f32,
    pub salt: u32,
}

impl Texture {
    /// A random texture whose pattern repeats about every `cell` units (drawn from the range);
    /// colour values (HSV value) in the range `value`.
    pub fn random(rng: &mut Rng, cell: (f32, f32), value: (f32, f32)) -> Texture {
        let cell = rng.range(cell.0, cell.1);
        let (value_lo, value_hi) = value;
        let pattern = match rng.below(5) {
            0 | 1 => Pattern::Noise { contrast: rng.range(1.0, 3.0) },
            2 => Pattern::Checker,
            3 => Pattern::Stripes { dir: random_dir(rng) },
            _ => Pattern::Marble { dir: random_dir(rng), warp: rng.range(0.5, 2.0) },
        };
        let hue = rng.unit();
        let a = hsv(hue, rng.range(0.2, 0.9), rng.range(value_lo, value_hi));
        let hue_b = if rng.chance(0.5) { hue + rng.range(-0.08, 0.08) } else { rng.unit() };
        let b = hsv(hue_b, rng.range(0.1, 0.9), rng.range(value_lo, value_hi));
        Texture {
            pattern,
            frequency: 1.0 / cell,
            a,
            b,
            // A whole z offset puts flat (z = 0) surfaces on a plateau of the checker's z wave.
            offset: V3(rng.range(0.0, 64.0), rng.range(0.0, 64.0), rng.below(64) as f32),
            grain: rng.range(0.0, 0.12),
            salt: rng.next_u64() as u32,
        }
    }

    pub fn sample(&self, p: V3) -> Rgb {
        let q = p.scale(self.frequency).plus(self.offset);
        let t = match &self.pattern {
            Pattern::Noise { contrast } => (0.5 + (fbm(q, self.salt) - 0.5) * 2.0 * contrast).clamp(0.0, 1.0),
            Pattern::Checker => {
                let xor = |a: f32, b: f32| a + b - 2.0 * a * b;
                xor(xor(soft_band(q.0), soft_band(q.1)), soft_band(q.2))
            }
            Pattern::Stripes { dir } => soft_band(q.dot(*dir)),
            Pattern::Marble { dir, warp } => soft_band(q.dot(*dir) + warp * fbm(q.scale(0.5), self.salt)),
        };
        let base = mix(self.a, self.b, t);
        let g = 1.0 + self.grain * (value_noise(q.scale(4.0), self.salt ^ 0x5A5A) * 2.0 - 1.0);
        [(base[0] * g).clamp(0.0, 1.0), (base[1] * g).clamp(0.0, 1.0), (base[2] * g).clamp(0.0, 1.0)]
    }

    pub fn sample2(&self, p: [f32; 2]) -> Rgb {
        self.sample(V3(p[0], p[1], 0.0))
    }
}

/// A band pattern in [0, 1] with period 1 and edges a sixth of a period wide.
fn soft_band(x: f32) -> f32 {
    let tri = (fract(x) - 0.5).abs() * 2.0; // 0 at band centre, 1 at its edge
    (0.5 + (tri - 0.5) * 3.0).clamp(0.0, 1.0)
}

pub fn random_dir(rng: &mut Rng) -> V3 {
    loop {
        let v = V3(rng.range(-1.0, 1.0), rng.range(-1.0, 1.0), rng.range(-1.0, 1.0));
        let n = v.norm();
        if n > 0.1 && n <= 1.0 {
            return v.scale(1.0 / n);
        }
    }
}

/// A flat silhouette in its own coordinates, centred near the origin, within radius 1.15.
#[derive(Clone, Debug)]
pub enum Shape {
    /// Star-shaped polygon: vertex k at angle 2 pi k / n, radius in (0.5, 1].
    Polygon { vertices: Vec<[f32; 2]> },
    /// Union of ellipses (centre, inverse squared half-axes along a rotated frame).
    Blob { ellipses: Vec<Ellipse> },
    /// Union of axis-aligned rectangles [x0, y0, x1, y1]: a chair seen from the side.
    Rects { rects: Vec<[f32; 4]> },
}

#[derive(Clone, Debug)]
pub struct Ellipse {
    pub centre: [f32; 2],
    pub cos_sin: [f32; 2],
    pub inv_axes2: [f32; 2],
}

impl Shape {
    pub fn random(rng: &mut Rng) -> Shape {
        match rng.below(3) {
            0 => {
                let n = rng.between(3, 9);
                let spiky = rng.range(0.0, 0.5);
                let vertices = (0..n)
                    .map(|k| {
                        let (s, c) = sin_cos(std::f32::consts::TAU * k as f32 / n as f32);
                        let r = 1.0 - spiky * rng.unit();
                        [c * r, s * r]
                    })
                    .collect();
                Shape::Polygon { vertices }
            }
            1 => {
                let ellipses = (0..rng.between(1, 3))
                    .map(|i| {
                        let (s, c) = sin_cos(rng.range(0.0, std::f32::consts::PI));
                        // Keeps the union within radius ~1.1 of the origin.
                        let spread = if i == 0 { 0.0 } else { 0.3 };
                        let (ax, ay) = (rng.range(0.4, 0.7), rng.range(0.25, 0.55));
                        Ellipse {
                            centre: [rng.range(-spread, spread), rng.range(-spread, spread)],
                            cos_sin: [c, s],
                            inv_axes2: [1.0 / (ax * ax), 1.0 / (ay * ay)],
                        }
                    })
                    .collect();
                Shape::Blob { ellipses }
            }
            _ => Shape::Rects { rects: chair(rng) },
        }
    }

    pub fn contains(&self, p: [f32; 2]) -> bool {
        match self {
            Shape::Polygon { vertices } => inside_polygon(vertices, p),
            Shape::Blob { ellipses } => ellipses.iter().any(|e| {
                let (dx, dy) = (p[0] - e.centre[0], p[1] - e.centre[1]);
                let u = e.cos_sin[0] * dx + e.cos_sin[1] * dy;
                let v = -e.cos_sin[1] * dx + e.cos_sin[0] * dy;
                u * u * e.inv_axes2[0] + v * v * e.inv_axes2[1] <= 1.0
            }),
            Shape::Rects { rects } => {
                rects.iter().any(|r| p[0] >= r[0] && p[0] <= r[2] && p[1] >= r[1] && p[1] <= r[3])
            }
        }
    }
}

/// A side-view chair (image y down): seat, back rest, legs; optionally arm rests.
fn chair(rng: &mut Rng) -> Vec<[f32; 4]> {
    let w = rng.range(0.6, 0.9);
    let seat_y = rng.range(-0.05, 0.2);
    // Parts thick enough to stay a few pixels wide at 64x64.
    let seat_t = rng.range(0.15, 0.3);
    let leg = rng.range(0.12, 0.22);
    let back_h = rng.range(0.6, 0.9);
    let back_t = rng.range(0.15, 0.25);
    let mut rects = vec![
        [-w, seat_y, w, seat_y + seat_t],
        [-w, seat_y - back_h, -w + back_t, seat_y],
        [-w, seat_y + seat_t, -w + leg, 0.95],
        [w - leg, seat_y + seat_t, w, 0.95],
    ];
    if rng.chance(0.4) {
        let arm_y = seat_y - rng.range(0.25, 0.4);
        rects.push([-w, arm_y, w * 0.6, arm_y + 0.12]);
        rects.push([w * 0.6 - 0.12, arm_y, w * 0.6, seat_y]);
    }
    if rng.chance(0.5) {
        // Facing the other way.
        for r in &mut rects {
            *r = [-r[2], r[1], -r[0], r[3]];
        }
    }
    rects
}

/// Even-odd rule; correct for the star-shaped polygons built above and any simple polygon.
fn inside_polygon(v: &[[f32; 2]], p: [f32; 2]) -> bool {
    let mut inside = false;
    let mut j = v.len() - 1;
    for i in 0..v.len() {
        let (a, b) = (v[i], v[j]);
        if (a[1] > p[1]) != (b[1] > p[1]) && p[0] < (b[0] - a[0]) * (p[1] - a[1]) / (b[1] - a[1]) + a[0] {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// f32 colour in [0, 1] to u8, rounding to nearest.
pub fn to_u8(c: f32) -> u8 {
    (c.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}
