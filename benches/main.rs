//! Criterion benches per kernel family at the model's real shapes, ids `<device>/<op>/<shape>`.
//!
//! The `cpu/` families bench the CPU backend (on every machine); the `cuda/` families
//! (ops/device.rs) bench the CUDA backend's kernels and run only where a GPU is present. Throughput is set in FLOPs through criterion's "elements" (read `Gelem/s` as
//! GFLOP/s) for compute-bound ops, in bytes moved for memory-bound ones. Inputs are synthetic
//! (seeded), so the benches need no data. `cargo bench -- conv` runs one family.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

mod ops;

fn config() -> Criterion {
    // The big shapes take ~1 s an iteration on two cores; ten samples keep a family in minutes.
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
}

criterion_group! {
    name = benches;
    config = config();
    targets = ops::gemm::bench, ops::gemm_bf16::bench, ops::linear::bench, ops::attention::bench, ops::moe::bench,
        ops::conv::bench, ops::norm::bench, ops::ddim::bench, ops::device::bench
}
criterion_main!(benches);
