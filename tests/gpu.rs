//! The tests that need a GPU, all named `gpu::...` so scripts/gpu-check selects them with the
//! `gpu::` filter whatever files they come from. Without a GPU each says so and passes;
//! `PERCEPT_REQUIRE_GPU=1` (set by gpu-check) makes the absence a failure. The same checks run on
//! the emulator in `ops` and `graph`.

use percept::backend::cuda::gpu::GpuDevice;

fn open_gpu() -> Option<GpuDevice> {
    match GpuDevice::open(0) {
        Ok(gpu) => Some(gpu),
        Err(e) if std::env::var_os("PERCEPT_REQUIRE_GPU").is_some() => panic!("PERCEPT_REQUIRE_GPU is set: {e}"),
        Err(e) => {
            eprintln!("skipped: no GPU here ({e})");
            None
        }
    }
}

/// The op table (`ops`) against the CPU; `PERCEPT_GPU_VARIANTS` and `PERCEPT_GPU_OPS` choose what
/// runs (gpu-check runs each variant in its own process), and every mismatch is listed at the end.
#[test]
fn ops_match_cpu() {
    let Some(gpu) = open_gpu() else { return };
    let (variants, ops) = crate::ops::selection_from_env();
    crate::ops::check_ops(&gpu, "gpu", &variants, &ops, &[0], &|_| {}, &crate::ops::cases()).assert_all_pass();
}

/// The captured denoising step, replayed, against step-by-step on the GPU.
#[test]
fn denoise_graph() {
    if open_gpu().is_none() {
        return;
    }
    crate::graph::denoise_graph_matches_eager(|| GpuDevice::open(0).unwrap());
}
