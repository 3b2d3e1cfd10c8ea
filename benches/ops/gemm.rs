//! The two GEMM engines side by side at the products the model runs: the VAE's 3x3 convs as
//! GEMMs (weights [O, 9C] times a 512-row band of columns) and the DiT's linears at 1024 tokens.

use criterion::{black_box, Criterion, Throughput};
use percept::backend::cpu::gemm::{matmul_with, Engine, Mat};

use super::{values, DEVICE};

/// (name, m, n, k).
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("conv128_band_128x16384x1152", 128, 16384, 1152),
    ("conv512_band_512x4096x4608", 512, 4096, 4608),
    ("dit_qkv_1024x3456x1152", 1024, 3456, 1152),
    ("dit_fc1_1024x4608x1152", 1024, 4608, 1152),
    ("dit_fc2_1024x1152x4608", 1024, 1152, 4608),
];

pub fn bench(c: &mut Criterion) {
    for engine in Engine::available() {
        let op = match engine {
            Engine::Amx => "gemm_amx",
            Engine::Avx512 => "gemm_avx512",
            Engine::GemmCrate => "gemm_crate",
            Engine::AmxBf16Values => unreachable!("not an f32 engine"),
        };
        let mut g = c.benchmark_group(format!("{DEVICE}/{op}"));
        for &(name, m, n, k) in SHAPES {
            let a = values(m * k, 1, 1.0);
            let b = values(k * n, 2, 1.0);
            let mut out = vec![0f32; m * n];
            g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
            g.bench_function(name, |bch| {
                bch.iter(|| {
                    matmul_with(engine, m, n, k, Mat::rows(&a, k), Mat::rows(&b, n), &mut out, n, false, true);
                    black_box(&out);
                })
            });
        }
        g.finish();
    }
}
