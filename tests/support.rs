//! Shared test helpers: where the fixtures are, tolerances, random inputs.

use std::path::PathBuf;

/// `$PERCEPT_FIXTURES` or `../shared/fixtures`, or `None` (with a printed reason) when absent. Under `CI=true` the
/// fixtures must be there: a green CI run has to have checked them.
pub fn fixtures_dir() -> Option<PathBuf> {
    // A packed test executable on another machine (scripts/gpu-pack) names its copy.
    if let Some(dir) = std::env::var_os("PERCEPT_FIXTURES") {
        return Some(PathBuf::from(dir));
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    if dir.join("README.md").exists() {
        return Some(dir);
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("CI=true but the fixtures are missing at {}", dir.display());
    }
    eprintln!("skipping: ../shared/fixtures not found at {}", dir.display());
    None
}

/// `../shared/seed_toy_data`, same rules as `fixtures_dir`.
pub fn seed_data_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/seed_toy_data");
    if dir.exists() {
        return Some(dir);
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("CI=true but the seed data is missing at {}", dir.display());
    }
    eprintln!("skipping: ../shared/seed_toy_data not found at {}", dir.display());
    None
}

/// The crate's seeded generator for test inputs: `Rng(seed)`, `.vec(n)` uniform in [-1, 1).
pub use percept::util::rng::SplitMix64 as Rng;

/// A percept model file built from the tiny fixtures (dit_tiny + vae_tiny under `vae.`, with
/// its `percept.config`), written into `dir`. 64x64 images, 8x8 latents: fast enough for CLI
/// tests. Returns None (skipping) without the fixtures.
pub fn tiny_model_file(dir: &std::path::Path) -> Option<PathBuf> {
    use percept::weights::safetensors::{write, SafetensorsFile};
    let fx = fixtures_dir()?;
    let json = |n: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(fx.join(format!("{n}.json"))).unwrap()).unwrap()
    };
    let mut tensors = SafetensorsFile::open(&fx.join("dit_tiny.weights.safetensors")).unwrap().tensors;
    for (n, t) in SafetensorsFile::open(&fx.join("vae_tiny.weights.safetensors")).unwrap().tensors {
        tensors.push((format!("vae.{n}"), t));
    }
    let cfg = serde_json::json!({
        "dit": json("dit_tiny")["config"], "vae": json("vae_tiny")["config"], "resolution": 64, "flow_scale": 75
    });
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("percept.config".to_string(), cfg.to_string());
    let path = dir.join("tiny_model.safetensors");
    write(&path, &tensors, &meta).unwrap();
    Some(path)
}

/// A fresh empty directory under the target dir for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[allow(unused_imports)]
pub use percept::tensor::rel_l2;

/// Print every check and assert none failed and at least one was judged.
pub fn assert_all_pass(checks: &[percept::verify::Check]) {
    for c in checks {
        println!("{}", c.line());
    }
    let failed: Vec<String> =
        checks.iter().filter(|c| c.pass == Some(false)).map(percept::verify::Check::line).collect();
    assert!(failed.is_empty(), "failed checks:\n{}", failed.join("\n"));
    assert!(checks.iter().any(|c| c.pass == Some(true)), "nothing was judged");
}

/// Direct f64 convolution, the reference for the conv paths: x [n, c, h, w], w [o, c, k, k],
/// bias [o] -> [n, o, oh, ow].
#[allow(clippy::too_many_arguments)]
pub fn reference_conv(
    x: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    wt: &[f32],
    bias: &[f32],
    o: usize,
    k: usize,
    p: percept::backend::Conv2d,
) -> Vec<f32> {
    let [pt, pl, pb, pr] = p.pad;
    let oh = (h + pt + pb - k) / p.stride + 1;
    let ow = (w + pl + pr - k) / p.stride + 1;
    let mut out = vec![0f32; n * o * oh * ow];
    for ni in 0..n {
        for oc in 0..o {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut s = bias[oc] as f64;
                    for ci in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (y * p.stride + ky) as isize - pt as isize;
                                let ix = (xx * p.stride + kx) as isize - pl as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    s += x[((ni * c + ci) * h + iy as usize) * w + ix as usize] as f64
                                        * wt[((oc * c + ci) * k + ky) * k + kx] as f64;
                                }
                            }
                        }
                    }
                    out[((ni * o + oc) * oh + y) * ow + xx] = s as f32;
                }
            }
        }
    }
    out
}

/// A command's stdout and stderr, for assertion messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `n` toy images (the bundled Hypersim-like validation split, 128 x 128) copied flat into
/// `dir/in` as `img0.png`, `img1.png`, ...
pub fn toy_images(dir: &std::path::Path, n: usize) -> PathBuf {
    let val = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("toy_data/Hypersim_small/val");
    let mut all: Vec<PathBuf> = std::fs::read_dir(&val)
        .unwrap()
        .flat_map(|scene| std::fs::read_dir(scene.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("rgb_"))
        .collect();
    all.sort();
    assert!(all.len() >= n, "only {} toy images", all.len());
    let dst = dir.join("in");
    std::fs::create_dir_all(&dst).unwrap();
    for (i, f) in all.iter().take(n).enumerate() {
        std::fs::copy(f, dst.join(format!("img{i}.png"))).unwrap();
    }
    dst
}
