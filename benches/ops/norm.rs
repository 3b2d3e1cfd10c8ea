//! The VAE's memory-bound ops at 512x512: GroupNorm (+SiLU), nearest 2x upsampling, the residual
//! add; and the DiT's modulated LayerNorm. Throughput in bytes read plus written.

use criterion::{black_box, Criterion, Throughput};
use percept::backend::cpu::Cpu;
use percept::backend::Backend;

use super::{tensor, weight, DEVICE};

pub fn bench(c: &mut Criterion) {
    let be = Cpu::new();
    let mut g = c.benchmark_group(format!("{DEVICE}/vae_elementwise"));
    for (ch, hw) in [(128, 512), (256, 256), (512, 128)] {
        let x = tensor(&[1, ch, hw, hw], 30);
        let gamma = weight(&be, &[ch], 31);
        let beta = weight(&be, &[ch], 32);
        let bytes = (2 * 4 * ch * hw * hw) as u64;
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function(format!("group_norm_silu_g32_c{ch}_{hw}x{hw}"), |bch| {
            bch.iter(|| black_box(be.group_norm(&x, &gamma, &beta, 32, 1e-6, true).expect("group_norm")))
        });
        g.throughput(Throughput::Bytes(3 * 4 * (ch * hw * hw) as u64));
        g.bench_function(format!("add_c{ch}_{hw}x{hw}"), |bch| bch.iter(|| black_box(be.add(&x, &x).expect("add"))));
    }
    for (ch, hw) in [(512, 128), (256, 256)] {
        let x = tensor(&[1, ch, hw, hw], 33);
        g.throughput(Throughput::Bytes(5 * 4 * (ch * hw * hw) as u64));
        g.bench_function(format!("upsample2x_c{ch}_{hw}x{hw}"), |bch| {
            bch.iter(|| black_box(be.upsample_nearest2x(&x).expect("upsample")))
        });
    }
    g.finish();
    let mut g = c.benchmark_group(format!("{DEVICE}/dit_elementwise"));
    let x = tensor(&[1, 1024, 1152], 34);
    let mods = tensor(&[1, 6 * 1152], 35);
    g.throughput(Throughput::Bytes(2 * 4 * 1024 * 1152));
    g.bench_function("modulated_layer_norm_1024x1152", |bch| {
        bch.iter(|| black_box(be.modulated_layer_norm(&x, &mods, 0, 1, 1e-6).expect("layer_norm")))
    });
    g.finish();
}
