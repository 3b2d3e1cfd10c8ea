//! `percept eval` on the authors' seed data with the tiny fixture model (predictions are
//! meaningless; structure, baselines and failure handling are checked), and the metrics on
//! predictions equal to the ground truth.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::Value;

use percept::cli::eval::{self, depth_scores, flow_scores, segment_scores, EvalArgs, Scores};
use percept::cli::{Cli, Command};
use percept::data::gestalt::GestaltData;
use percept::data::hypersim::DepthGt;
use percept::io::flo::Flow;
use percept::io::image::Image;
use percept::weights::safetensors::{write, SafetensorsFile};

use crate::support::{fixtures_dir, seed_data_dir};

/// A temporary folder removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("percept_eval_{tag}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The tiny fixture DiT and VAE in one model file (64 px) inside `dir`.
fn tiny_model(fixtures: &Path, dir: &Path) -> PathBuf {
    let dit = SafetensorsFile::open(&fixtures.join("dit_tiny.weights.safetensors")).unwrap();
    let vae = SafetensorsFile::open(&fixtures.join("vae_tiny.weights.safetensors")).unwrap();
    let config = |name: &str| -> Value {
        let text = std::fs::read_to_string(fixtures.join(format!("{name}.json"))).unwrap();
        serde_json::from_str::<Value>(&text).unwrap()["config"].clone()
    };
    let meta =
        serde_json::json!({"dit": config("dit_tiny"), "vae": config("vae_tiny"), "resolution": 64, "flow_scale": 75});
    let mut tensors = dit.tensors.clone();
    tensors.extend(vae.tensors.iter().map(|(n, t)| (format!("vae.{n}"), t.clone())));
    let path = dir.join("tiny.safetensors");
    let metadata = [("percept.config".to_string(), meta.to_string())].into_iter().collect();
    write(&path, &tensors, &metadata).unwrap();
    path
}

fn eval_args(args: &[&str]) -> EvalArgs {
    let argv = ["percept", "eval"].iter().copied().chain(args.iter().copied());
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Eval(a) => a,
        other => panic!("parsed as {other:?}"),
    }
}

/// Run `percept eval` in-process with the tiny model at 1 step.
fn run_eval(model: &Path, task: &str, data: &Path, out: &Path, extra: &[&str]) -> anyhow::Result<bool> {
    let (model, data, out) = (model.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let mut args =
        vec!["--task", task, "--data", data, "--out", out, "--model", model, "--steps", "1", "--backend", "cpu"];
    args.extend_from_slice(extra);
    eval::run(&eval_args(&args))
}

fn read_metrics(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap()
}

/// Checks shared by every task: exact keys in order, finite values, means of the samples,
/// panels of three ground-truth-sized panes. Returns the samples.
fn check_report(out: &Path, task: &str, keys: &[&str], names: &[&str], size: (u32, u32)) -> Vec<Value> {
    let m = read_metrics(out);
    assert_eq!(m["task"], task);
    assert_eq!(m["failed"], serde_json::json!([]));
    let samples = m["samples"].as_array().unwrap().clone();
    let got_names: Vec<&str> = samples.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(got_names, names);
    for s in &samples {
        let got_keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(got_keys[0], "name");
        assert_eq!(&got_keys[1..], keys, "{s}");
        for k in keys {
            assert!(s[k].as_f64().is_some_and(f64::is_finite), "{k} of {s} is not a finite number");
        }
        let panel = out.join(format!("{}_panel.png", s["name"].as_str().unwrap()));
        assert_eq!(image::image_dimensions(&panel).unwrap(), (3 * size.0, size.1), "{}", panel.display());
    }
    let mean = m["mean"].as_object().unwrap();
    assert_eq!(mean.keys().map(String::as_str).collect::<Vec<_>>(), keys);
    for k in keys {
        let avg = samples.iter().map(|s| s[k].as_f64().unwrap()).sum::<f64>() / samples.len() as f64;
        assert!((mean[*k].as_f64().unwrap() - avg).abs() < 1e-12, "mean {k}");
    }
    samples
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn eval_depth_hypersim_with_list_skips_absent_pairs_and_reports_the_constant_baseline() {
    let (Some(fx), Some(seed)) = (fixtures_dir(), seed_data_dir()) else { return };
    let tmp = Scratch::new("depth");
    let model = tiny_model(&fx, &tmp.0);
    let list = tmp.0.join("list.txt");
    let listed = std::fs::read_to_string(seed.join("data_split/hysim_filename_list_val_small.txt")).unwrap();
    std::fs::write(
        &list,
        format!("{}\nai_999_001/rgb_cam_00_fr0000.png ai_999_001/depth_plane_cam_00_fr0000.png\n", listed.trim()),
    )
    .unwrap();
    let data = seed.join("toy_data/Hypersim_small");
    let out = tmp.0.join("out");
    assert!(run_eval(&model, "depth", &data, &out, &["--list", list.to_str().unwrap(), "--batch", "2"]).unwrap());
    let names = ["ai_015_004_cam_00_fr0002", "ai_044_003_cam_01_fr0063", "ai_052_003_cam_01_fr0076"];
    let keys = ["abs_rel", "delta1", "abs_rel_constant", "delta1_constant"];
    let samples = check_report(&out, "depth", &keys, &names, (1024, 768));
    assert_eq!(read_metrics(&out)["skipped"], 1);
    // A constant prediction fitted by least squares is the mean of the valid ground truth.
    let gt = image::open(data.join("val/ai_015_004/depth_plane_cam_00_fr0002.png")).unwrap().to_luma16();
    let metres: Vec<f64> = gt.pixels().map(|p| p.0[0] as f64 / 1000.0).filter(|&d| d > 1e-5 && d < 65.0).collect();
    let mean = metres.iter().sum::<f64>() / metres.len() as f64;
    let abs_rel = metres.iter().map(|g| (mean - g).abs() / g).sum::<f64>() / metres.len() as f64;
    let delta1 = metres.iter().filter(|&&g| (mean / g).max(g / mean) < 1.25).count() as f64 / metres.len() as f64;
    assert!(close(samples[0]["abs_rel_constant"].as_f64().unwrap(), abs_rel, 1e-6), "{} vs {abs_rel}", samples[0]);
    assert!(close(samples[0]["delta1_constant"].as_f64().unwrap(), delta1, 1e-6), "{} vs {delta1}", samples[0]);
    for s in &samples {
        let (a, d) = (s["abs_rel"].as_f64().unwrap(), s["delta1"].as_f64().unwrap());
        assert!(a >= 0.0 && (0.0..=1.0).contains(&d), "{s}");
    }
}

/// A `.flo` read by hand: (u, v) per pixel after a 12-byte header.
fn read_flo_by_hand(path: &Path) -> Vec<(f64, f64)> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(f32::from_le_bytes(b[0..4].try_into().unwrap()), 202021.25);
    b[12..]
        .chunks_exact(8)
        .map(|c| {
            let f = |i: usize| f32::from_le_bytes(c[i..i + 4].try_into().unwrap()) as f64;
            (f(0), f(4))
        })
        .collect()
}

#[test]
fn eval_flow_chairs_validation_split_reports_epe_and_the_zero_flow_baseline() {
    let (Some(fx), Some(seed)) = (fixtures_dir(), seed_data_dir()) else { return };
    let tmp = Scratch::new("flow");
    let model = tiny_model(&fx, &tmp.0);
    let data = seed.join("toy_data/FlyingChairs_small");
    let out = tmp.0.join("out");
    assert!(run_eval(&model, "flow", &data, &out, &["--batch", "3"]).unwrap());
    let names = ["00006", "00018", "00043", "00046", "00059"];
    let samples = check_report(&out, "flow", &["epe", "epe_fit", "epe_zero"], &names, (512, 384));
    for s in &samples {
        let uv = read_flo_by_hand(&data.join(format!("data/{}_flow.flo", s["name"].as_str().unwrap())));
        let zero = uv.iter().map(|(u, v)| (u * u + v * v).sqrt()).sum::<f64>() / uv.len() as f64;
        assert!(close(s["epe_zero"].as_f64().unwrap(), zero, 1e-9), "{s} vs {zero}");
    }
}

#[test]
fn eval_segment_gestalt_reports_iou_psnr_and_the_visible_mask_baseline() {
    let (Some(fx), Some(seed)) = (fixtures_dir(), seed_data_dir()) else { return };
    let tmp = Scratch::new("segment");
    let model = tiny_model(&fx, &tmp.0);
    let data = seed.join("toy_data/Pix2Gestalt_small");
    let out = tmp.0.join("out");
    assert!(run_eval(&model, "segment", &data, &out, &[]).unwrap());
    let names = [
        "1000011", "10000015", "10000025", "10000041", "10000043", "10000052", "10000087", "10000132", "10000140",
        "10000150",
    ];
    let samples = check_report(&out, "segment", &["iou", "psnr", "iou_visible"], &names, (256, 256));
    let mask = |sub: &str, id: &str, suffix: &str| -> Vec<bool> {
        let img = image::open(data.join(format!("{sub}/{id}_{suffix}.png"))).unwrap().to_luma8();
        img.pixels().map(|p| p.0[0] > 127).collect()
    };
    for s in &samples {
        let id = s["name"].as_str().unwrap();
        let (visible, whole) = (mask("visible_object_mask", id, "visible_mask"), mask("whole_mask", id, "whole_mask"));
        let inter = visible.iter().zip(&whole).filter(|(a, b)| **a && **b).count() as f64;
        let union = visible.iter().zip(&whole).filter(|(a, b)| **a || **b).count() as f64;
        assert!(close(s["iou_visible"].as_f64().unwrap(), inter / union, 1e-12), "{s}");
        assert!((0.0..=1.0).contains(&s["iou"].as_f64().unwrap()), "{s}");
    }
}

fn get(scores: &Scores, key: &str) -> f64 {
    scores.iter().find(|(k, _)| *k == key).unwrap_or_else(|| panic!("no {key} in {scores:?}")).1
}

#[test]
fn eval_metrics_are_perfect_when_the_prediction_is_the_ground_truth() {
    // Depth 3x2 in metres; the last pixel is missing (0) and must not count.
    let depth = vec![1.0, 2.0, 4.0, 2.5, 8.0, 0.0];
    let gt = DepthGt { width: 3, height: 2, valid: depth.iter().map(|&d| d > 0.0).collect(), depth: depth.clone() };
    let s = depth_scores(&depth, &gt).unwrap();
    assert!(get(&s, "abs_rel") < 1e-12, "{s:?}");
    assert_eq!(get(&s, "delta1"), 1.0);
    // The constant baseline: mean 3.5 over the valid pixels, by hand.
    let valid = [1.0, 2.0, 4.0, 2.5, 8.0];
    let by_hand = valid.iter().map(|g: &f64| (3.5 - g).abs() / g).sum::<f64>() / 5.0;
    assert!((get(&s, "abs_rel_constant") - by_hand).abs() < 1e-12, "{s:?} vs {by_hand}");
    assert_eq!(get(&s, "delta1_constant"), 1.0 / 5.0); // only 4.0 is within 1.25x of 3.5
                                                       // Relative depth affine in metres is as good as metres.
    let relative: Vec<f32> = depth.iter().map(|d| d * 0.1 - 0.05).collect();
    assert!(get(&depth_scores(&relative, &gt).unwrap(), "abs_rel") < 1e-6);

    let flow = Flow { width: 2, height: 1, u: vec![3.0, 0.0], v: vec![4.0, -1.0] };
    let s = flow_scores(&flow, &flow).unwrap();
    assert_eq!(get(&s, "epe"), 0.0);
    assert!(get(&s, "epe_fit") < 1e-12, "{s:?}");
    assert_eq!(get(&s, "epe_zero"), 3.0); // (5 + 1) / 2

    let img = |channels: usize, data: Vec<f32>| Image { width: 2, height: 2, channels, data };
    let whole_rgb = vec![0.2, 1.0, 0.3, 1.0, 0.4, 1.0, 0.5, 1.0, 0.6, 1.0, 0.7, 1.0];
    let whole_mask = vec![1.0, 0.0, 1.0, 0.0];
    let gt = GestaltData {
        occlusion: img(3, whole_rgb.clone()),
        visible_mask: img(1, vec![1.0, 0.0, 0.0, 0.0]),
        whole: img(3, whole_rgb.clone()),
        whole_mask: img(1, whole_mask.clone()),
    };
    let s = segment_scores(&whole_rgb, &whole_mask, &gt).unwrap();
    assert_eq!(get(&s, "iou"), 1.0);
    assert_eq!(get(&s, "psnr"), f64::INFINITY);
    assert_eq!(get(&s, "iou_visible"), 0.5);
}

/// Copy Pix2Gestalt samples `ids` from the seed data into `dir`.
fn copy_gestalt(seed: &Path, dir: &Path, ids: &[&str]) {
    let src = seed.join("toy_data/Pix2Gestalt_small");
    for (sub, suffix) in [
        ("occlusion", "occlusion"),
        ("visible_object_mask", "visible_mask"),
        ("whole", "whole"),
        ("whole_mask", "whole_mask"),
    ] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for id in ids {
            let name = format!("{sub}/{id}_{suffix}.png");
            std::fs::copy(src.join(&name), dir.join(&name)).unwrap();
        }
    }
}

#[test]
fn eval_names_unreadable_samples_as_failed_exits_1_and_skips_absent_ones() {
    let (Some(fx), Some(seed)) = (fixtures_dir(), seed_data_dir()) else { return };
    let tmp = Scratch::new("failures");
    let model = tiny_model(&fx, &tmp.0);
    let data = tmp.0.join("gestalt");
    copy_gestalt(&seed, &data, &["10000015", "10000025", "10000041"]);
    std::fs::write(data.join("whole/10000025_whole.png"), b"not a png").unwrap();
    std::fs::remove_file(data.join("whole_mask/10000041_whole_mask.png")).unwrap();
    let out = tmp.0.join("out");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_percept"))
        .args(["eval", "--task", "segment", "--steps", "1", "--backend", "cpu"])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failed: 10000025"), "{stderr}");
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("1 evaluated, 1 failed, 1 skipped"), "{stdout}");
    let m = read_metrics(&out);
    assert_eq!(m["failed"], serde_json::json!(["10000025"]));
    assert_eq!(m["skipped"], 1);
    assert_eq!(m["samples"].as_array().unwrap().len(), 1);
    assert_eq!(m["samples"][0]["name"], "10000015");
    assert!(out.join("10000015_panel.png").is_file());
    assert!(!out.join("10000025_panel.png").exists());
}

#[test]
fn eval_writes_nothing_when_no_sample_succeeds() {
    let (Some(fx), Some(seed)) = (fixtures_dir(), seed_data_dir()) else { return };
    let tmp = Scratch::new("nothing");
    let model = tiny_model(&fx, &tmp.0);
    let data = tmp.0.join("gestalt");
    copy_gestalt(&seed, &data, &["10000015", "10000025"]);
    for id in ["10000015", "10000025"] {
        std::fs::write(data.join(format!("occlusion/{id}_occlusion.png")), b"\x89PNG\r\n\x1a\n truncated").unwrap();
    }
    let out = tmp.0.join("out");
    assert!(!run_eval(&model, "segment", &data, &out, &[]).unwrap());
    assert!(!out.exists(), "an output folder was made although no sample succeeded");
    // No sample at all is an error, not an empty report.
    for id in ["10000015", "10000025"] {
        std::fs::remove_file(data.join(format!("whole/{id}_whole.png"))).unwrap();
    }
    assert!(run_eval(&model, "segment", &data, &out, &[]).is_err());
    assert!(!out.exists());
}
