//! One DiT MoE layer (8 experts of 1152 -> 4608 -> 1152, top-2) at one sample's 1024 tokens and
//! at 8192 tokens (a batch of 8). FLOPs: gate plus two expert products per routed token.

use criterion::{black_box, Criterion, Throughput};
use percept::backend::cpu::Cpu;
use percept::backend::{Backend, MoeWeights};

use super::{tensor, weight, DEVICE};

const D: usize = 1152;
const F: usize = 4608;
const EXPERTS: usize = 8;
const TOP_K: usize = 2;

pub fn bench(c: &mut Criterion) {
    let be = Cpu::new();
    let seeds = 10..10 + EXPERTS as u64;
    // Prepared as the model loads it (the CPU packs the experts' weights here).
    let w = MoeWeights {
        gate: weight(&be, &[EXPERTS, D], 7),
        fc1_w: seeds.clone().map(|s| weight(&be, &[F, D], s)).collect(),
        fc1_b: seeds.clone().map(|s| weight(&be, &[F], s + 100)).collect(),
        fc2_w: seeds.clone().map(|s| weight(&be, &[D, F], s + 200)).collect(),
        fc2_b: seeds.map(|s| weight(&be, &[D], s + 300)).collect(),
    };
    let w = be.prepare_moe("bench", w).expect("prepare_moe");
    let mut g = c.benchmark_group(format!("{DEVICE}/moe"));
    for tokens in [1024, 8192] {
        let x = tensor(&[tokens, D], 8);
        let flops = 2 * tokens * D * EXPERTS + TOP_K * tokens * 2 * (2 * D * F);
        g.throughput(Throughput::Elements(flops as u64));
        g.bench_function(format!("n{tokens}_d{D}_f{F}_e{EXPERTS}_top{TOP_K}"), |bch| {
            bch.iter(|| black_box(be.moe(&x, &w, TOP_K, false).expect("moe")))
        });
    }
    g.finish();
}
