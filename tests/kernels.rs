//! The kernels' signatures as build.rs read them (the typed launchers and the ops table come from
//! them) against what the compiler saw, the generated ops table against the committed one, and the
//! timestep features bit for bit. The kernels' values are checked by the op table in `ops`.

use std::path::Path;

use percept::backend::cuda::device::Device;
use percept::backend::cuda::kernels::MODULES;
use percept::backend::cuda::launch::LaunchConfig;
use percept::backend::cuda::launchers::{self, DevPtr, SIGNATURES};
use percept::emu::{self, Arch, EmuDevice};

/// Every entry point has a signature, and its argument kinds are the ones the C++ compiler deduced
/// for the emulator: the parser reads the `.cu` text as the compilers do.
#[test]
fn kernel_signatures_match_the_compiled_entry_points() {
    let entries: Vec<&str> = MODULES.iter().flat_map(|m| m.entries.iter().copied()).collect();
    let parsed: Vec<&str> = SIGNATURES.iter().map(|s| s.entry).collect();
    assert_eq!(parsed, entries, "one signature per entry point, in file order");
    for s in SIGNATURES {
        let codes: String = s.params.iter().map(|p| p.2).collect();
        assert_eq!(Some(codes.as_str()), emu::kernel_signature(s.entry), "{} ({})", s.entry, s.file);
        assert!(s.file.starts_with("kernels/") && s.file.ends_with(".cu"), "{}", s.file);
        assert!(["f32", "bf16", "b16", "i32", "u32", "f16"].contains(&s.dtype), "{}: dtype {}", s.entry, s.dtype);
    }
    // The fast variants are the tensor-core tile kernels the fast switch selects.
    let fast: Vec<&str> = SIGNATURES.iter().filter(|s| s.fast).map(|s| s.entry).collect();
    assert!(fast.len() >= 5 && fast.iter().all(|e| e.contains("tc")), "{fast:?}");
}

/// A size past the kernel's integer type is refused by the launcher, naming kernel and parameter.
#[test]
fn launchers_refuse_sizes_past_the_kernels_integer_types() {
    let dev = EmuDevice::new(Arch::Sm80);
    let cfg = LaunchConfig::linear(1, 32);
    let e = launchers::upsample_nearest2x_f32(&dev, &cfg, DevPtr::NULL, DevPtr::NULL, 1 << 31, 1, 1).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("upsample_nearest2x_f32") && msg.contains("NC = 2147483648") && msg.contains("i32"), "{msg}");
    assert!(matches!(e, percept::Error::Shape(_)), "{msg}");
}

fn ops_table_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/OPS.md")
}

/// kernels/OPS.md is the generated table, so it cannot drift from the kernels.
#[test]
fn kernels_ops_table_is_generated() {
    let committed = std::fs::read_to_string(ops_table_path()).unwrap_or_default();
    assert!(
        committed == launchers::ops_table(),
        "kernels/OPS.md differs from the kernels' signatures; regenerate it with \
         `cargo test --release --test main -- --ignored write_kernels_ops_table` and commit it"
    );
}

#[test]
#[ignore = "writes kernels/OPS.md"]
fn write_kernels_ops_table() {
    std::fs::write(ops_table_path(), launchers::ops_table()).unwrap();
}

/// The timestep features of every DDIM timestep, bit for bit as the CPU computes them: the kernel
/// takes the frequencies' exponential in f64 (a GPU's expf may be 2 ulp off), which rounds to the
/// CPU's f32 expf for each of the 128 arguments, so no device or FMA contraction moves them.
#[test]
fn kernels_timestep_features_are_exact_for_every_timestep() {
    let half = 128;
    for i in 0..half {
        let x = -(10000f64.ln() as f32) * i as f32 / half as f32;
        assert_eq!((x as f64).exp() as f32, x.exp(), "frequency {i}: f32 exp vs f64 exp rounded");
    }
    let dev = EmuDevice::new(Arch::Sm80);
    let ts: Vec<f32> = (0..1000).map(|t| t as f32).chain([0.5, 37.5, 998.25]).collect();
    let want = percept::model::dit::timestep_features(&ts);
    let y = dev.upload(bytemuck::cast_slice(&vec![f32::NAN; want.numel()])).unwrap();
    let dts = dev.upload(bytemuck::cast_slice(&ts)).unwrap();
    let cfg = LaunchConfig::linear((ts.len() * half).div_ceil(128).clamp(1, 5) as u32, 128);
    let p = |b| DevPtr::of(&dev, b);
    launchers::timestep_features_f32(&dev, &cfg, p(&y), p(&dts), ts.len(), half).unwrap();
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(&Device::download(&dev, &y).unwrap());
    let differ = got.iter().zip(&want.data).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!(differ, 0, "{differ} of {} features differ from the CPU's", got.len());
}

/// kernels/README.md's file list names every kernel file.
#[test]
fn kernels_readme_lists_every_kernel_file() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/README.md")).unwrap();
    for m in MODULES {
        assert!(readme.contains(&format!("| `{}.cu` |", m.name)), "kernels/README.md does not list {}.cu", m.name);
    }
}
