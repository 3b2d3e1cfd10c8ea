//! The bf16 GEMM engines side by side at the DiT's linears (1024 tokens) and at a few-row
//! product (an MoE expert that got 8 tokens), each on every engine this CPU runs: ids
//! `cpu/gemm_bf16_<engine>/<shape>`. The left operand is f32 (rounded to bf16 by the engine, as
//! the backend calls it); the weight is packed once, outside the timing.

use criterion::{black_box, Criterion, Throughput};
use percept::backend::cpu::gemm_bf16::{matmul_bt_f32_with, Bf16Engine, PackedBf16};

use super::{values, DEVICE};

/// (name, m, n, k): out [m, n] = x [m, k] . w [n, k]^T.
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("dit_qkv_1024x3456x1152", 1024, 3456, 1152),
    ("dit_fc2_1024x1152x4608", 1024, 1152, 4608),
    ("expert_fc1_8x4608x1152", 8, 4608, 1152),
    ("expert_fc1_32x4608x1152", 32, 4608, 1152),
    ("expert_fc1_128x4608x1152", 128, 4608, 1152),
];

pub fn bench(c: &mut Criterion) {
    for engine in Bf16Engine::available() {
        let op = match engine {
            Bf16Engine::Amx => "gemm_bf16_amx",
            Bf16Engine::Avx512Bf16 => "gemm_bf16_avx512bf16",
            Bf16Engine::Avx512Fma => "gemm_bf16_avx512fma",
            Bf16Engine::Portable => "gemm_bf16_portable",
        };
        let mut g = c.benchmark_group(format!("{DEVICE}/{op}"));
        for &(name, m, n, k) in SHAPES {
            if engine == Bf16Engine::Portable && m > 8 {
                continue; // minutes an iteration: the fallback is there to be correct
            }
            let x = values(m * k, 1, 1.0);
            let w = PackedBf16::from_f32(&values(n * k, 2, 0.05), n, k);
            let mut out = vec![0f32; m * n];
            g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
            g.bench_function(name, |bch| {
                bch.iter(|| {
                    matmul_bt_f32_with(engine, &x, m, k, &w, &mut out, true);
                    black_box(&out);
                })
            });
        }
        g.finish();
    }
}
