//! The DiT's linear layers at batch 1 (1024 tokens of width 1152), bias and activation fused.

use criterion::{black_box, Criterion, Throughput};
use percept::backend::cpu::Cpu;
use percept::backend::{Act, Backend};

use super::{tensor, weight, DEVICE};

/// (name, tokens, in, out, activation).
const SHAPES: &[(&str, usize, usize, usize, Act)] = &[
    ("qkv_1024x1152x3456", 1024, 1152, 3456, Act::None),
    ("attn_proj_1024x1152x1152", 1024, 1152, 1152, Act::None),
    ("adaln_1x1152x6912", 1, 1152, 6912, Act::None),
    ("final_1024x1152x32", 1024, 1152, 32, Act::None),
    ("t_embed_mlp_1x256x1152_silu", 1, 256, 1152, Act::Silu),
];

pub fn bench(c: &mut Criterion) {
    let be = Cpu::new();
    let mut g = c.benchmark_group(format!("{DEVICE}/linear"));
    for &(name, m, k, n, act) in SHAPES {
        let x = tensor(&[1, m, k], 3);
        let w = weight(&be, &[n, k], 4);
        let b = weight(&be, &[n], 5);
        g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        g.bench_function(name, |bch| bch.iter(|| black_box(be.linear(&x, &w, Some(&b), act).expect("linear"))));
    }
    g.finish();
}
