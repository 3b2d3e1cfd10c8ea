//! Dataset readers on the authors' seed data (../shared/seed_toy_data) and on small layouts made
//! here for the cases the seed data lacks.

use std::path::Path;

use percept::data::{chairs, gestalt, hypersim};
use percept::io::flo::{write_flo, Flow};

use crate::io::TempDir;
use crate::support::seed_data_dir;

#[test]
fn data_hypersim_lists_seed_scenes_with_and_without_a_list() {
    let Some(seed) = seed_data_dir() else { return };
    let dir = seed.join("toy_data/Hypersim_small");
    // The scene folders are under val/; the reader finds them there.
    let (samples, skipped) = hypersim::list(&dir, None).unwrap();
    assert_eq!(skipped, 0);
    let names: Vec<&str> = samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ai_015_004_cam_00_fr0002", "ai_044_003_cam_01_fr0063", "ai_052_003_cam_01_fr0076"]);
    let small = seed.join("data_split/hysim_filename_list_val_small.txt");
    let (listed, skipped) = hypersim::list(&dir.join("val"), Some(&small)).unwrap();
    assert_eq!((listed.len(), skipped), (3, 0));
    assert_eq!(listed, samples);
    // The full validation list names 7370 pairs, of which the toy data holds 3.
    let full = seed.join("data_split/hysim_filename_list_val_filtered.txt");
    let (listed, skipped) = hypersim::list(&dir, Some(&full)).unwrap();
    assert_eq!((listed.len(), skipped), (3, 7367));
}

#[test]
fn data_hypersim_depth_is_metres_with_valid_mask() {
    let Some(seed) = seed_data_dir() else { return };
    let (samples, _) = hypersim::list(&seed.join("toy_data/Hypersim_small/val"), None).unwrap();
    // Reference values decoded from the PNGs with an independent pure-Python reader (zlib +
    // PNG unfiltering): raw millimetres at (row, col).
    let (rgb, gt) = hypersim::load(&samples[0]).unwrap();
    assert_eq!((rgb.width, rgb.height, rgb.channels), (1024, 768, 3));
    assert_eq!((gt.width, gt.height), (1024, 768));
    let d = |row: usize, col: usize| gt.depth[row * 1024 + col];
    assert_eq!(d(0, 0), 2.070);
    assert_eq!(d(100, 200), 2.993);
    assert_eq!(d(767, 1023), 2.512);
    assert!(gt.valid.iter().all(|&v| v));
    let sum_mm: f64 = gt.depth.iter().map(|&m| (m as f64 * 1000.0).round()).sum();
    assert_eq!(sum_mm, 2_835_148_101.0);
    // ai_044_003 has 225 pixels of 0 mm (no depth), which the mask drops.
    let (_, gt) = hypersim::load(&samples[1]).unwrap();
    assert_eq!(gt.depth[383 * 1024 + 511], 10.203);
    assert_eq!(gt.valid.iter().filter(|&&v| v).count(), 786_207);
    assert!(gt.depth.iter().zip(&gt.valid).all(|(&d, &v)| v == (d > 1e-5 && d < 65.0)));
}

#[test]
fn data_hypersim_skips_absent_pairs_and_rejects_bad_lines() {
    let t = TempDir::new("hyp");
    let scene = t.join("ai_001_001");
    std::fs::create_dir_all(&scene).unwrap();
    percept::io::image::save_png_rgb8(&scene.join("rgb_cam_00_fr0000.png"), 2, 2, &[0.5; 12]).unwrap();
    percept::io::image::save_png_gray16(&scene.join("depth_plane_cam_00_fr0000.png"), 2, 2, &[0.0, 0.001, 0.5, 1.0])
        .unwrap();
    percept::io::image::save_png_rgb8(&scene.join("rgb_cam_00_fr0001.png"), 2, 2, &[0.5; 12]).unwrap();
    let (samples, skipped) = hypersim::list(&t.0, None).unwrap();
    assert_eq!((samples.len(), skipped), (1, 1));
    let (_, gt) = hypersim::load(&samples[0]).unwrap();
    // 0 mm is missing; 65535 mm (65.535 m) is past the 65 m range.
    assert_eq!(gt.depth, vec![0.0, 0.066, 32.768, 65.535]);
    assert_eq!(gt.valid, vec![false, true, true, false]);

    let list = t.join("list.txt");
    std::fs::write(&list, "# pairs\nai_001_001/rgb_cam_00_fr0000.png ai_001_001/depth_plane_cam_00_fr0000.png\n\nai_009/rgb.png ai_009/d.png\n").unwrap();
    let (samples, skipped) = hypersim::list(&t.0, Some(&list)).unwrap();
    assert_eq!((samples.len(), skipped), (1, 1));
    std::fs::write(&list, "a.png b.png\nonly_one.png\n").unwrap();
    let err = hypersim::list(&t.0, Some(&list)).unwrap_err().to_string();
    assert!(err.contains("list.txt:2"), "{err}");
    let err = hypersim::list(&t.join("nowhere"), None).unwrap_err().to_string();
    assert!(err.contains("nowhere"), "{err}");
}

#[test]
fn data_chairs_lists_and_loads_seed_validation_samples() {
    let Some(seed) = seed_data_dir() else { return };
    let dir = seed.join("toy_data/FlyingChairs_small");
    // Five lines for samples numbered up to 59: the lines are the five samples present.
    let (samples, skipped) = chairs::list(&dir, chairs::VALIDATION).unwrap();
    assert_eq!(skipped, 0);
    let names: Vec<&str> = samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["00006", "00018", "00043", "00046", "00059"]);
    assert!(chairs::list(&dir, chairs::TRAINING).unwrap().0.is_empty());
    let (img1, img2, flow) = chairs::load(&samples[0]).unwrap();
    assert_eq!((img1.width, img1.height, img1.channels), (512, 384, 3));
    assert_eq!((img2.width, img2.height), (512, 384));
    assert_eq!((flow.width, flow.height), (512, 384));
    assert!(flow.u.iter().chain(&flow.v).all(|v| v.is_finite() && v.abs() < 512.0));
    assert!(flow.u.iter().any(|&v| v != 0.0));
}

fn chairs_sample(data: &Path, n: u32, with_flow: bool) {
    let name = format!("{n:05}");
    for k in 1..=2 {
        let mut ppm = b"P6\n2 1\n255\n".to_vec();
        ppm.extend_from_slice(&[n as u8, k, 0, 0, 0, 0]);
        std::fs::write(data.join(format!("{name}_img{k}.ppm")), ppm).unwrap();
    }
    if with_flow {
        let flow = Flow { width: 2, height: 1, u: vec![1.0, 2.0], v: vec![-1.0, 0.5] };
        write_flo(&data.join(format!("{name}_flow.flo")), &flow).unwrap();
    }
}

#[test]
fn data_chairs_full_split_file_numbers_samples_from_one() {
    let t = TempDir::new("chairs");
    let data = t.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for n in 1..=4 {
        chairs_sample(&data, n, n != 3);
    }
    std::fs::write(t.join("FlyingChairs_train_val.txt"), "1\n2\n2\n1\n").unwrap();
    let (val, skipped) = chairs::list(&t.0, chairs::VALIDATION).unwrap();
    assert_eq!(val.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["00002"]);
    assert_eq!(skipped, 1, "00003 has no flow");
    let (train, _) = chairs::list(&t.0, chairs::TRAINING).unwrap();
    assert_eq!(train.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["00001", "00004"]);
    let (a, b, f) = chairs::load(&val[0]).unwrap();
    // Red holds the sample number, green the frame index (planes of 2 pixels).
    assert_eq!((a.data[0], a.data[2], b.data[2]), (2.0 / 255.0, 1.0 / 255.0, 2.0 / 255.0));
    assert_eq!(f.v, vec![-1.0, 0.5]);
    // Fewer lines than the highest number, but not one per present sample: refused.
    std::fs::write(t.join("FlyingChairs_train_val.txt"), "2\n2\n").unwrap();
    let err = chairs::list(&t.0, chairs::VALIDATION).unwrap_err().to_string();
    assert!(err.contains("FlyingChairs_train_val.txt") && err.contains("4 are present"), "{err}");
    std::fs::write(t.join("FlyingChairs_train_val.txt"), "2\nx\n").unwrap();
    assert!(chairs::list(&t.0, chairs::VALIDATION).unwrap_err().to_string().contains(":2"));
}

#[test]
fn data_gestalt_lists_and_loads_seed_samples() {
    let Some(seed) = seed_data_dir() else { return };
    let (samples, skipped) = gestalt::list(&seed.join("toy_data/Pix2Gestalt_small")).unwrap();
    assert_eq!((samples.len(), skipped), (10, 0));
    assert_eq!(samples[0].name, "1000011");
    assert_eq!(samples[1].name, "10000015");
    let d = gestalt::load(&samples[1]).unwrap();
    assert_eq!((d.occlusion.width, d.occlusion.height, d.occlusion.channels), (256, 256, 3));
    assert_eq!((d.whole.channels, d.visible_mask.channels, d.whole_mask.channels), (3, 1, 1));
    // The visible part lies inside the whole object.
    let inside = d.visible_mask.data.iter().zip(&d.whole_mask.data).filter(|(v, _)| **v > 0.5);
    let (n, covered) = inside.fold((0, 0), |(n, c), (_, w)| (n + 1, c + (*w > 0.5) as usize));
    assert!(n > 0 && covered as f64 >= 0.95 * n as f64, "{covered} of {n}");
}

#[test]
fn data_gestalt_skips_samples_missing_a_file() {
    let t = TempDir::new("gestalt");
    for (sub, suffix) in [
        ("occlusion", "occlusion"),
        ("visible_object_mask", "visible_mask"),
        ("whole", "whole"),
        ("whole_mask", "whole_mask"),
    ] {
        std::fs::create_dir_all(t.join(sub)).unwrap();
        for id in [7, 12] {
            if id == 12 && sub == "whole_mask" {
                continue;
            }
            let p = t.join(&format!("{sub}/{id}_{suffix}.png"));
            percept::io::image::save_png_gray8(&p, 3, 2, &[1.0; 6]).unwrap();
        }
    }
    let (samples, skipped) = gestalt::list(&t.0).unwrap();
    assert_eq!((samples.len(), skipped), (1, 1));
    assert_eq!(samples[0].name, "7");
    let d = gestalt::load(&samples[0]).unwrap();
    assert_eq!((d.occlusion.channels, d.whole_mask.data.len()), (3, 6));
    std::fs::remove_dir_all(t.join("whole")).unwrap();
    assert!(gestalt::list(&t.0).unwrap_err().to_string().contains("whole/"));
}
