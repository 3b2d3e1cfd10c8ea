//! The `percept` binary end to end: verify, convert/inspect, the task commands.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{fixtures_dir, seed_data_dir, temp_dir, tiny_model_file};

fn percept(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_percept"))
        .args(args)
        .current_dir(cwd)
        .env_remove("PERCEPT_MODEL")
        .env_remove("PERCEPT_SD2")
        .output()
        .expect("run percept")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn cli_verify_passes_every_fast_fixture() {
    let Some(fx) = fixtures_dir() else { return };
    let o = percept(&["verify", "--fixtures", fx.to_str().unwrap(), "--skip-slow"], Path::new("."));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    let last = out.lines().last().unwrap();
    assert_eq!(last, "6 passed, 0 failed, 1 skipped", "{out}");
    assert!(!out.contains("FAIL"));
}

/// `--backend auto` means one thing in every command: the GPU when a driver and a device are
/// usable, else the CPU, saying why in the same words (verify once took the CPU regardless).
#[test]
fn cli_backend_auto_resolves_the_same_in_verify_and_depth() {
    let Some(fx) = fixtures_dir() else { return };
    let out = temp_dir("cli_backend_auto");
    let verify =
        percept(&["verify", "--fixtures", fx.to_str().unwrap(), "--backend", "auto", "--only", "ddim"], Path::new("."));
    assert!(verify.status.success(), "{}", text(&verify));
    let image = "toy_data/Hypersim_small/val/ai_001_010/rgb_cam_00_fr0000.png";
    let depth =
        percept(&["depth", image, "--backend", "auto", "--steps", "1", "--out", out.to_str().unwrap()], Path::new("."));
    assert!(depth.status.success(), "{}", text(&depth));
    // "verify: 1 fixture(s) in DIR on cpu (2 threads, ...)", "model: FILE (...) on cuda: NAME".
    let backend = |o: &Output, line_start: &str| -> String {
        let all = text(o);
        let line =
            all.lines().find(|l| l.starts_with(line_start)).unwrap_or_else(|| panic!("no {line_start} line: {all}"));
        let on = &line[line.rfind(" on ").unwrap_or_else(|| panic!("{line}")) + 4..];
        on.split([' ', ':']).next().unwrap().to_string()
    };
    let because = |o: &Output| text(o).lines().find(|l| l.starts_with("backend auto:")).map(str::to_string);
    let chose = backend(&verify, "verify:");
    assert_eq!(chose, backend(&depth, "model:"), "verify:\n{}\ndepth:\n{}", text(&verify), text(&depth));
    assert_eq!(because(&verify), because(&depth));
    match chose.as_str() {
        "cpu" => assert!(because(&verify).is_some_and(|b| b.contains("running on the CPU (")), "{}", text(&verify)),
        "cuda" => assert_eq!(because(&verify), None),
        other => panic!("auto chose {other}"),
    }
    if std::env::var_os("CUDA_VISIBLE_DEVICES").is_none() && !Path::new("/dev/nvidiactl").exists() {
        assert_eq!(chose, "cpu", "no GPU here, yet auto chose {chose}");
    }
}

#[test]
fn cli_verify_refuses_bad_arguments_clearly() {
    let Some(fx) = fixtures_dir() else { return };
    let f = fx.to_str().unwrap();
    let o = percept(&["verify", "--fixtures", f, "--only", "nope"], Path::new("."));
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--only nope: no such fixture"), "{}", text(&o));
    let o = percept(&["verify", "--fixtures", f, "--precision", "bf17"], Path::new("."));
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("bf16"), "{}", text(&o));
}

#[test]
fn cli_convert_writes_a_self_describing_file_equal_to_the_checkpoint() {
    let Some(fx) = fixtures_dir() else { return };
    let dir = temp_dir("cli_convert");
    let out = dir.join("tiny.safetensors");
    let o = percept(&["convert", fx.join("dit_tiny_ema.pt").to_str().unwrap(), out.to_str().unwrap()], &dir);
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.join("config.json").exists());
    let conv = percept::weights::safetensors::SafetensorsFile::open(&out).unwrap();
    let want = percept::weights::safetensors::SafetensorsFile::open(&fx.join("dit_tiny.weights.safetensors")).unwrap();
    assert_eq!(conv.tensors.len(), want.tensors.len());
    for (name, t) in &want.tensors {
        let c = conv.get(name).unwrap();
        assert_eq!(c.as_f32_slice().expect("aligned f32: zero-copy"), t.as_f32_slice().unwrap(), "{name}");
    }
    let cfg: serde_json::Value = serde_json::from_str(&conv.metadata["percept.config"]).unwrap();
    assert_eq!(cfg["dit"]["hidden_size"], 144);
    assert_eq!(cfg["dit"]["num_experts"], 4);
    // bf16 conversion halves the size and rounds each value.
    let out16 = dir.join("tiny16.safetensors");
    let o = percept(
        &["convert", fx.join("dit_tiny.pt").to_str().unwrap(), out16.to_str().unwrap(), "--dtype", "bf16"],
        &dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    let c16 = percept::weights::safetensors::SafetensorsFile::open(&out16).unwrap();
    let w = c16.get("blocks.0.attn.qkv.weight").unwrap();
    assert_eq!(w.dtype, percept::tensor::DType::BF16);
    let v = w.to_f32_vec().unwrap();
    let r = want.get("blocks.0.attn.qkv.weight").unwrap().as_f32_slice().unwrap();
    assert!(v.iter().zip(r).all(|(a, b)| *a == half::bf16::from_f32(*b).to_f32()));
    // inspect lists tensors and the config.
    let o = percept(&["inspect", out.to_str().unwrap()], &dir);
    assert!(o.status.success());
    let s = text(&o);
    assert!(s.contains("blocks.1.moe.experts.3.fc2.bias") && s.contains("2031152 parameters"), "{s}");
    // legacy checkpoints are refused with advice.
    let o = percept(&["inspect", fx.join("dit_tiny_legacy.pt").to_str().unwrap()], &dir);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("torch.save"), "{}", text(&o));
}

#[test]
fn cli_task_commands_write_every_output_at_the_input_size() {
    let Some(seed) = seed_data_dir() else { return };
    let dir = temp_dir("cli_tasks");
    let Some(model) = tiny_model_file(&dir) else { return };
    let m = model.to_str().unwrap();
    let rgb = seed.join("toy_data/Hypersim_small/val/ai_015_004/rgb_cam_00_fr0002.png");
    let o = percept(
        &[
            "depth",
            rgb.to_str().unwrap(),
            "--model",
            m,
            "--steps",
            "2",
            "--ensemble",
            "3",
            "--out",
            "d",
            "--backend",
            "cpu",
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    let stem = rgb.file_stem().unwrap().to_string_lossy().to_string();
    let (w, h) = image::image_dimensions(&rgb).unwrap();
    for suffix in ["_depth.png", "_depth16.png", "_uncertainty.png"] {
        let p = dir.join("d").join(format!("{stem}{suffix}"));
        assert_eq!(image::image_dimensions(&p).unwrap(), (w, h), "{}", p.display());
    }
    let (shape, vals) = percept::io::npy::read_npy_f32(&dir.join("d").join(format!("{stem}_depth.npy"))).unwrap();
    assert_eq!(shape, vec![h as usize, w as usize]);
    assert!(vals.iter().all(|v| (0.0..=1.0).contains(v)));
    // A second run skips the finished input.
    let o =
        percept(&["depth", rgb.to_str().unwrap(), "--model", m, "--steps", "2", "--ensemble", "3", "--out", "d"], &dir);
    assert!(o.status.success() && text(&o).contains("1 skipped"), "{}", text(&o));

    let chairs = seed.join("toy_data/FlyingChairs_small/data");
    let (f1, f2) = (chairs.join("00006_img1.ppm"), chairs.join("00006_img2.ppm"));
    {
        let o = percept(
            &["flow", f1.to_str().unwrap(), f2.to_str().unwrap(), "--model", m, "--steps", "1", "--out", "f"],
            &dir,
        );
        assert!(o.status.success(), "{}", text(&o));
        let flo = percept::io::flo::read_flo(&dir.join("f/00006_img1_flow.flo")).unwrap();
        let (w, h) = image::image_dimensions(&f1).unwrap();
        assert_eq!((flo.width, flo.height), (w as usize, h as usize));
        assert!(dir.join("f/00006_img1_flow.png").exists());
    }

    let pg = seed.join("toy_data/Pix2Gestalt_small");
    let (img, mask) =
        (pg.join("occlusion/10000015_occlusion.png"), pg.join("visible_object_mask/10000015_visible_mask.png"));
    let o = percept(
        &[
            "segment",
            img.to_str().unwrap(),
            mask.to_str().unwrap(),
            "--model",
            m,
            "--steps",
            "1",
            "--ensemble",
            "2",
            "--out",
            "s",
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    let (w, h) = image::image_dimensions(&img).unwrap();
    for suffix in ["_amodal.png", "_mask.png"] {
        let p = dir.join("s").join(format!("10000015_occlusion{suffix}"));
        assert_eq!(image::image_dimensions(&p).unwrap(), (w, h), "{}", p.display());
    }

    // A bad input is named, the others still run, exit 1.
    std::fs::write(dir.join("broken.png"), b"not a png").unwrap();
    let o = percept(&["depth", rgb.to_str().unwrap(), "broken.png", "--model", m, "--steps", "1", "--out", "d2"], &dir);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("broken.png"), "{}", text(&o));
    assert!(dir.join("d2").join(format!("{stem}_depth.png")).exists());
}

#[test]
fn cli_toy_data_writes_the_three_layouts() {
    let dir = temp_dir("cli_toy");
    let o = percept(&["toy-data", "out", "--seed", "3"], &dir);
    assert!(o.status.success(), "{}", text(&o));
    for sub in ["Hypersim_small", "FlyingChairs_small", "Pix2Gestalt_small"] {
        assert!(dir.join("out").join(sub).is_dir(), "{sub}");
    }
}

#[test]
fn cli_verify_cuda_emu_runs_the_cuda_backend_through_the_emulator() {
    let Some(fx) = fixtures_dir() else { return };
    // The tiny fixtures only: the emulator runs the full-width SD-2 VAE at ~0.5 GFLOP/s (minutes).
    for precision in ["f32", "bf16"] {
        let mut args =
            vec!["verify", "--fixtures", fx.to_str().unwrap(), "--backend", "cuda-emu", "--precision", precision];
        for f in ["dit_tiny", "vae_tiny", "pipeline_tiny", "ddim", "postprocess"] {
            args.extend(["--only", f]);
        }
        let o = percept(&args, Path::new("."));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{precision}: {}", text(&o));
        assert!(out.contains(&format!("cuda-emu (sm_90 limits, CPU emulation) at {precision}")), "{out}");
        assert!(out.lines().any(|l| l == "5 passed, 0 failed, 0 skipped"), "{precision}: {out}");
    }
}

#[test]
fn cli_sd2_folder_supplies_the_vae_and_scheduler() {
    let Some(fx) = fixtures_dir() else { return };
    let Some(seed) = seed_data_dir() else { return };
    let dir = temp_dir("cli_sd2");
    // A diffusers-layout folder: vae/ (legacy attention names) and scheduler/.
    let sd2 = dir.join("sd2");
    std::fs::create_dir_all(sd2.join("vae")).unwrap();
    std::fs::create_dir_all(sd2.join("scheduler")).unwrap();
    std::fs::copy(fx.join("vae_tiny_legacy.weights.safetensors"), sd2.join("vae/diffusion_pytorch_model.safetensors"))
        .unwrap();
    let vae_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.join("vae_tiny.json")).unwrap()).unwrap();
    std::fs::write(sd2.join("vae/config.json"), vae_json["config"].to_string()).unwrap();
    let pipe: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.join("pipeline_tiny.json")).unwrap()).unwrap();
    std::fs::write(sd2.join("scheduler/scheduler_config.json"), pipe["config"]["scheduler"].to_string()).unwrap();
    // A DiT-only model file, as `percept convert` writes from the authors' checkpoint.
    let o = percept(&["convert", fx.join("dit_tiny.pt").to_str().unwrap(), "dit.safetensors"], &dir);
    assert!(o.status.success(), "{}", text(&o));
    let img = seed.join("toy_data/Hypersim_small/val/ai_015_004/rgb_cam_00_fr0002.png");
    let o =
        percept(&["depth", img.to_str().unwrap(), "--model", "dit.safetensors", "--steps", "1", "--out", "o"], &dir);
    assert_eq!(o.status.code(), Some(2), "a DiT-only file needs --sd2: {}", text(&o));
    assert!(text(&o).contains("--sd2"), "{}", text(&o));
    let o = percept(
        &["depth", img.to_str().unwrap(), "--model", "dit.safetensors", "--sd2", "sd2", "--steps", "1", "--out", "o"],
        &dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.join("o/rgb_cam_00_fr0002_depth.npy").exists());
    // A folder without vae/ is named in the error.
    let o = percept(&["depth", img.to_str().unwrap(), "--model", "dit.safetensors", "--sd2", ".", "--out", "o2"], &dir);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("vae"), "{}", text(&o));
}

#[test]
fn safetensors_mutations_never_panic() {
    let Some(fx) = fixtures_dir() else { return };
    let original = std::fs::read(fx.join("postprocess.io.safetensors")).unwrap();
    let dir = temp_dir("st_mutations");
    let path = dir.join("m.safetensors");
    let mut rng = crate::support::Rng(77);
    let mut refused = 0;
    for round in 0..1500 {
        let mut b = original.clone();
        match round % 3 {
            0 => b.truncate((rng.next_u64() as usize) % b.len()),
            1 => {
                for _ in 0..1 + rng.next_u64() % 8 {
                    let i = (rng.next_u64() as usize) % b.len().min(4096);
                    b[i] ^= 1 << (rng.next_u64() % 8);
                }
            }
            _ => {
                let i = (rng.next_u64() as usize) % 8;
                b[i] = rng.next_u64() as u8;
            }
        }
        std::fs::write(&path, &b).unwrap();
        match percept::weights::safetensors::SafetensorsFile::open(&path) {
            Ok(f) => {
                for (_, t) in &f.tensors {
                    let _ = t.to_f32_vec();
                }
            }
            Err(e) => {
                refused += 1;
                assert!(e.to_string().contains("m.safetensors"), "error must name the file: {e}");
            }
        }
    }
    assert!(refused > 500, "only {refused} of 1500 damaged files were refused");
}
