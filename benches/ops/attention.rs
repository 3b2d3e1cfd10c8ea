//! Softmax attention: the DiT's 1024 tokens (16 heads of 72) and the VAE mid block's 4096 tokens
//! (one head of 512). FLOPs count the two products (4 L^2 D).

use criterion::{black_box, Criterion, Throughput};
use percept::backend::cpu::Cpu;
use percept::backend::Backend;

use super::{tensor, DEVICE};

/// (name, tokens, heads, head dim).
const SHAPES: &[(&str, usize, usize, usize)] =
    &[("dit_b1_l1024_h16_d72", 1024, 16, 72), ("vae_mid_b1_l4096_h1_d512", 4096, 1, 512)];

pub fn bench(c: &mut Criterion) {
    let be = Cpu::new();
    let mut g = c.benchmark_group(format!("{DEVICE}/attention"));
    for &(name, l, heads, hd) in SHAPES {
        let qkv = tensor(&[1, l, 3 * heads * hd], 6);
        g.throughput(Throughput::Elements(4 * (l * l * heads * hd) as u64));
        g.bench_function(name, |bch| bch.iter(|| black_box(be.attention(&qkv, heads).expect("attention"))));
    }
    g.finish();
}
