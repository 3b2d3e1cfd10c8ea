//! The procedural toy datasets: determinism, layouts, and exactness of the ground truth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::ColorType;
use percept::io::flo::read_flo;
use percept::toydata::chairs::FlowScene;
use percept::toydata::gestalt::AmodalScene;
use percept::toydata::hypersim::Scene;
use percept::toydata::render::Affine2;
use percept::toydata::{self, ToyDataOptions};

/// A fresh scratch directory, removed again when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("percept_toydata_{}_{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn small_opts(seed: u64) -> ToyDataOptions {
    ToyDataOptions { seed, size: 32, n_depth: 6, n_flow: 3, n_segment: 4, val_fraction: 0.5 }
}

/// Every file under `dir`, by relative path.
fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Writes the shipped set (defaults, seed 0) to `toy_data/`, or to `$PERCEPT_TOY_OUT`.
/// Run explicitly: `cargo test --release --test main -- --ignored write_shipped_toy_data`.
#[test]
#[ignore]
fn write_shipped_toy_data() {
    let out = std::env::var_os("PERCEPT_TOY_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("toy_data"));
    let summary = toydata::generate(&out, &ToyDataOptions::default()).unwrap();
    eprintln!("{}: {summary:?}", out.display());
}

#[test]
fn toy_data_same_seed_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = (Scratch::new("det_a"), Scratch::new("det_b"), Scratch::new("det_c"));
    toydata::generate(&a.0, &small_opts(7)).unwrap();
    toydata::generate(&b.0, &small_opts(7)).unwrap();
    toydata::generate(&c.0, &small_opts(8)).unwrap();
    let (ta, tb, tc) = (read_tree(&a.0), read_tree(&b.0), read_tree(&c.0));
    assert_eq!(ta.len(), 6 * 2 + 2 + 3 * 3 + 1 + 4 * 4);
    assert!(ta == tb, "the same seed gave different files");
    assert_eq!(ta.keys().collect::<Vec<_>>(), tc.keys().collect::<Vec<_>>(), "the layout must not depend on the seed");
    // Every image and flow file changes with the seed; list files and masks may coincide.
    for (name, bytes) in &ta {
        if name.ends_with(".ppm") || name.ends_with(".flo") || name.contains("rgb_") || name.contains("depth_plane") {
            assert_ne!(bytes, &tc[name], "{name} is the same for seeds 7 and 8");
        }
    }
}

#[test]
fn toy_data_layout_matches_the_authors_readers() {
    let dir = Scratch::new("layout");
    let opts = small_opts(3);
    let summary = toydata::generate(&dir.0, &opts).unwrap();
    let tree = read_tree(&dir.0);
    assert_eq!(summary.files, tree.len());
    assert_eq!(summary.bytes, tree.values().map(|b| b.len() as u64).sum::<u64>());

    // Hypersim: 6 views -> scenes of 4 and 2 views; half the scenes (1) held out.
    let train_list = String::from_utf8(tree["data_split/hysim_filename_list_train.txt"].clone()).unwrap();
    let val_list = String::from_utf8(tree["data_split/hysim_filename_list_val.txt"].clone()).unwrap();
    let expect = |scene: &str, frames: std::ops::Range<usize>| {
        frames
            .map(|f| format!("{scene}/rgb_cam_00_fr{f:04}.png {scene}/depth_plane_cam_00_fr{f:04}.png"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(train_list, expect("ai_001_001", 0..4));
    assert_eq!(val_list, expect("ai_001_002", 0..2));
    for (split, list) in [("train", &train_list), ("val", &val_list)] {
        for pair in list.lines() {
            let (rgb, depth) = pair.split_once(' ').unwrap();
            let rgb = image::open(dir.0.join("Hypersim_small").join(split).join(rgb)).unwrap();
            let depth = image::open(dir.0.join("Hypersim_small").join(split).join(depth)).unwrap();
            assert_eq!((rgb.color(), rgb.width(), rgb.height()), (ColorType::Rgb8, 32, 32));
            assert_eq!((depth.color(), depth.width(), depth.height()), (ColorType::L16, 32, 32));
        }
    }

    // FlyingChairs: 1-based five-digit names, one split line per sample, the last round(3 x 0.5)
    // for validation.
    assert_eq!(tree["FlyingChairs_small/FlyingChairs_train_val.txt"], b"1\n2\n2");
    for stem in ["00001", "00002", "00003"] {
        for frame in ["img1", "img2"] {
            let ppm = &tree[&format!("FlyingChairs_small/data/{stem}_{frame}.ppm")];
            assert!(ppm.starts_with(b"P6 32 32 255\n"));
            assert_eq!(ppm.len(), 13 + 32 * 32 * 3);
        }
        let flow = read_flo(&dir.0.join(format!("FlyingChairs_small/data/{stem}_flow.flo"))).unwrap();
        assert_eq!((flow.width, flow.height), (32, 32));
    }

    // Pix2Gestalt: four folders per split, the authors' suffixes, 8-bit masks holding 0 and 255.
    for (split, ids) in [("train", ["10000000", "10000001"]), ("val", ["10000002", "10000003"])] {
        for id in ids {
            let base = dir.0.join("Pix2Gestalt_small").join(split);
            for (sub, suffix, colour) in [
                ("occlusion", "occlusion", ColorType::Rgb8),
                ("whole", "whole", ColorType::Rgb8),
                ("whole_mask", "whole_mask", ColorType::L8),
                ("visible_object_mask", "visible_mask", ColorType::L8),
            ] {
                let img = image::open(base.join(sub).join(format!("{id}_{suffix}.png"))).unwrap();
                assert_eq!((img.color(), img.width()), (colour, 32), "{split}/{sub}/{id}");
                if colour == ColorType::L8 {
                    assert!(img.as_bytes().iter().all(|&v| v == 0 || v == 255), "{sub}/{id} is not a 0/255 mask");
                }
            }
        }
    }
}

#[test]
fn depth_png_holds_the_rendered_planar_depth_in_mm() {
    let dir = Scratch::new("depth");
    let opts = ToyDataOptions { n_flow: 0, n_segment: 0, ..small_opts(11) };
    toydata::generate(&dir.0, &opts).unwrap();
    for view in 0..4 {
        let scene = Scene::random(opts.seed, 0);
        let rendered = scene.render(&scene.camera(opts.seed, 0, view), opts.size);
        let path = dir.0.join(format!("Hypersim_small/train/ai_001_001/depth_plane_cam_00_fr{view:04}.png"));
        let png = image::open(&path).unwrap().into_luma16().into_raw();
        for (&mm, &m) in png.iter().zip(&rendered.depth_m) {
            assert!(m > 0.05 && m < 65.0, "depth {m} m is outside Hypersim's valid range");
            assert!((mm as f32 - m * 1000.0).abs() <= 0.5 + 1e-3, "{mm} mm stored for {m} m");
        }
        let rgb = image::open(dir.0.join(format!("Hypersim_small/train/ai_001_001/rgb_cam_00_fr{view:04}.png")));
        assert_eq!(rgb.unwrap().into_rgb8().into_raw(), rendered.rgb);
    }
}

/// With the objects removed, depth is where the pixel-centre ray leaves the room box, measured
/// along the optical axis: recomputed here from the camera alone.
#[test]
fn empty_room_depth_is_the_planar_distance_to_the_walls() {
    let size = 40;
    for index in 0..3 {
        let mut scene = Scene::random(5, index);
        scene.objects.clear();
        let cam = scene.camera(5, index, 1);
        let rendered = scene.render(&cam, size);
        let focal = size as f64 / 2.0 / cam.tan_half_fov as f64;
        let (o, f, r, u) = (cam.position, cam.forward, cam.right, cam.up);
        let lo = [-scene.half_width as f64, 0.0, 0.0];
        let hi = [scene.half_width as f64, scene.height as f64, scene.length as f64];
        for y in 0..size {
            for x in 0..size {
                let (px, py) =
                    ((x as f64 + 0.5 - size as f64 / 2.0) / focal, (size as f64 / 2.0 - y as f64 - 0.5) / focal);
                let d = [
                    f.0 as f64 + r.0 as f64 * px + u.0 as f64 * py,
                    f.1 as f64 + r.1 as f64 * px + u.1 as f64 * py,
                    f.2 as f64 + r.2 as f64 * px + u.2 as f64 * py,
                ];
                let oo = [o.0 as f64, o.1 as f64, o.2 as f64];
                // Exit distance of a ray starting inside the box: the nearest wall it heads for.
                let exit = (0..3)
                    .map(|k| if d[k] > 0.0 { (hi[k] - oo[k]) / d[k] } else { (lo[k] - oo[k]) / d[k] })
                    .fold(f64::INFINITY, f64::min);
                // Along the optical axis: the ray's forward component is 1 by construction.
                let dot_f = d[0] * f.0 as f64 + d[1] * f.1 as f64 + d[2] * f.2 as f64;
                let planar = exit * dot_f;
                let got = rendered.depth_m[y * size + x] as f64;
                assert!((got - planar).abs() <= 1e-4 * planar, "scene {index} pixel ({x}, {y}): {got} vs {planar}");
            }
        }
    }
}

/// Bilinear sample of channel `c` of an RGB image at continuous pixel-index coordinates.
fn bilinear(img: &[u8], size: usize, x: f32, y: f32, c: usize) -> Option<f32> {
    if x < 0.0 || y < 0.0 || x > (size - 1) as f32 || y > (size - 1) as f32 {
        return None;
    }
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(size - 1), (y0 + 1).min(size - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let at = |xx: usize, yy: usize| img[(yy * size + xx) * 3 + c] as f32;
    let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
    let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
    Some(top * (1.0 - fy) + bottom * fy)
}

/// Frame 2 warped back by the ground-truth flow reproduces frame 1 wherever the point stays
/// visible; warping with zero flow does not.
#[test]
fn flow_ground_truth_warps_frame2_onto_frame1() {
    let size = 64;
    for index in 0..6 {
        let s = FlowScene::random(21, index, size).render(size);
        let (mut errs, mut zero_errs) = (Vec::new(), Vec::new());
        for y in 1..size - 1 {
            for x in 1..size - 1 {
                let i = y * size + x;
                // Pixels on a layer boundary mix two layers in frame 1 (anti-aliasing).
                let edge = [i - 1, i + 1, i - size, i + size].iter().any(|&j| s.layer[j] != s.layer[i]);
                if s.occluded[i] || edge {
                    continue;
                }
                let (wx, wy) = (x as f32 + s.flow.u[i], y as f32 + s.flow.v[i]);
                for c in 0..3 {
                    if let Some(v) = bilinear(&s.img2, size, wx, wy, c) {
                        errs.push((v - s.img1[i * 3 + c] as f32).abs());
                        zero_errs.push((s.img2[i * 3 + c] as f32 - s.img1[i * 3 + c] as f32).abs());
                    }
                }
            }
        }
        assert!(errs.len() > size * size, "sample {index}: too few visible pixels ({})", errs.len() / 3);
        let mean = errs.iter().sum::<f32>() / errs.len() as f32;
        let zero_mean = zero_errs.iter().sum::<f32>() / zero_errs.len() as f32;
        errs.sort_by(f32::total_cmp);
        let p95 = errs[errs.len() * 95 / 100];
        eprintln!("flow sample {index}: mean |error| {mean:.2}, p95 {p95:.1}, with zero flow {zero_mean:.2} (0-255)");
        // Bounds: bilinear interpolation of textures sampled 2x2 per pixel, mixed pixels next to
        // frame-2 object edges included.
        assert!(mean < 3.5 && p95 < 12.0, "sample {index}: mean {mean}, p95 {p95}");
        assert!(zero_mean > 2.0 * mean, "sample {index}: zero flow fits as well ({zero_mean} vs {mean})");
    }
}

#[test]
fn flow_of_a_static_background_is_exactly_zero() {
    let size = 48;
    let mut scene = FlowScene::random(4, 2, size);
    scene.layers[0].motion = Affine2::IDENTITY;
    let s = scene.render(size);
    let background: Vec<usize> = (0..size * size).filter(|&i| s.layer[i] == 0).collect();
    assert!(background.len() > size * size / 4);
    assert!(background.iter().all(|&i| s.flow.u[i] == 0.0 && s.flow.v[i] == 0.0));
    let moving = (0..size * size).filter(|&i| s.layer[i] != 0 && (s.flow.u[i] != 0.0 || s.flow.v[i] != 0.0));
    assert!(moving.count() > 0, "the objects keep their own motion");
    // Background pixels untouched by objects in either frame are identical in both frames.
    let same = background.iter().filter(|&&i| s.img1[i * 3..i * 3 + 3] == s.img2[i * 3..i * 3 + 3]).count();
    assert!(same * 10 > background.len() * 8, "{same} of {} background pixels unchanged", background.len());
}

#[test]
fn amodal_masks_and_images_are_consistent() {
    let size = 64;
    let mut partly_hidden = 0;
    for index in 0..8 {
        let s = AmodalScene::random(9, index).render(size);
        let mut whole = 0;
        let mut visible = 0;
        for i in 0..size * size {
            let (w, v) = (s.whole_mask[i], s.visible_mask[i]);
            assert!(w == 0 || w == 255);
            assert!(v == 0 || v == 255);
            assert!(v <= w, "sample {index} pixel {i}: visible but not in the whole mask");
            let (wp, op) = (&s.whole[i * 3..i * 3 + 3], &s.occlusion[i * 3..i * 3 + 3]);
            if w == 0 {
                assert_eq!(wp, [255, 255, 255], "sample {index} pixel {i}: whole is not white outside the mask");
            }
            if v == 255 {
                assert_eq!(wp, op, "sample {index} pixel {i}: occlusion differs from whole where visible");
            }
            // `percept segment`'s rule (channel mean < 0.95) recovers the whole mask.
            let mean = wp.iter().map(|&c| c as f32).sum::<f32>() / 3.0 / 255.0;
            assert_eq!(mean < 0.95, w == 255, "sample {index} pixel {i}: whole colour {wp:?}");
            whole += (w == 255) as usize;
            visible += (v == 255) as usize;
        }
        assert!(whole > size * size / 50, "sample {index}: object covers only {whole} pixels");
        assert!(visible > 0, "sample {index}: object fully hidden");
        if visible < whole {
            partly_hidden += 1;
        }
    }
    assert!(partly_hidden >= 6, "only {partly_hidden} of 8 objects are partly hidden");
}

#[test]
fn toy_data_refuses_impossible_options() {
    let dir = Scratch::new("refuse");
    let tiny = ToyDataOptions { size: 4, ..small_opts(0) };
    let err = toydata::generate(&dir.0, &tiny).unwrap_err().to_string();
    assert!(err.contains("size 4"), "{err}");
    let all_val = ToyDataOptions { val_fraction: 1.0, ..small_opts(0) };
    let err = toydata::generate(&dir.0, &all_val).unwrap_err().to_string();
    assert!(err.contains("val_fraction 1"), "{err}");
    assert!(!dir.0.exists(), "nothing is written for refused options");
}

#[test]
fn toy_data_skips_datasets_with_no_samples() {
    let dir = Scratch::new("skip");
    let opts = ToyDataOptions { n_depth: 0, n_segment: 0, ..small_opts(1) };
    let summary = toydata::generate(&dir.0, &opts).unwrap();
    let tree = read_tree(&dir.0);
    assert_eq!(summary.files, 3 * 3 + 1);
    assert!(tree.keys().all(|k| k.starts_with("FlyingChairs_small/")), "{:?}", tree.keys());
}

/// The committed `toy_data/` is exactly what the generator makes with the defaults: this also
/// checks that generation gives the same bytes on this machine as where the set was made.
#[test]
fn shipped_toy_data_matches_the_generator() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("toy_data");
    if !shipped.join("data_split").exists() {
        eprintln!("skipping: no generated set in {}", shipped.display());
        return;
    }
    let dir = Scratch::new("shipped");
    toydata::generate(&dir.0, &ToyDataOptions::default()).unwrap();
    let fresh = read_tree(&dir.0);
    let committed = read_tree(&shipped);
    for (name, bytes) in &fresh {
        let have = committed.get(name);
        assert!(
            have == Some(bytes),
            "toy_data/{name} differs from the generator's output ({}); regenerate with \
             `cargo test --release --test main -- --ignored write_shipped_toy_data`",
            if have.is_some() { "other bytes" } else { "missing" }
        );
    }
}
