//! The kernel families on the CUDA backend (bf16 weights, as the engine runs on a GPU), ids
//! `cuda/<family>/<shape>`: linears, attention at 1024 and 4096 tokens, the MoE layer at 1024
//! and 8192 tokens, every VAE conv stage at 512x512, GroupNorm + SiLU, the modulated
//! LayerNorm and the in-place DDIM step. Each sample is timed with device events around its
//! iterations, so the time is the GPU's, not the host's.
//!
//! Without a GPU these benches say so and are skipped: the `cpu/*` families bench the CPU
//! backend instead. `PERCEPT_BENCH_EMU=1` runs them on the emulator at small shapes (ids
//! `emu/...`), which checks the harness only; its times mean nothing.

use std::time::Duration;

use criterion::{Criterion, Throughput};
use percept::backend::cuda::backend::{Cuda, GpuTensor};
use percept::backend::cuda::device::Device;
use percept::backend::{Act, Backend, Conv2d, MoeWeights};
use percept::scheduler::ddim::Ddim;
use percept::scheduler::{PredictionType, SchedulerConfig};
use percept::tensor::{DType, Tensor};
use percept::weights::{Bytes, RawTensor};

use super::{conv, values};

pub fn bench(c: &mut Criterion) {
    if std::env::var("PERCEPT_BENCH_EMU").is_ok_and(|v| v == "1") {
        let dev = percept::emu::EmuDevice::new(percept::emu::Arch::Sm90);
        return families(c, "emu", &dev, true);
    }
    match percept::backend::cuda::gpu::GpuDevice::open(0) {
        Ok(dev) => families(c, "cuda", &dev, false),
        // gpu-check sets PERCEPT_REQUIRE_GPU: there a skip would hide a broken device.
        Err(e) if std::env::var("PERCEPT_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("cuda/*: PERCEPT_REQUIRE_GPU=1 but no GPU: {e}")
        }
        Err(e) => eprintln!("cuda/*: skipped, no GPU here ({e}); the cpu/* benches are the CPU backend"),
    }
}

/// The model's widths, or small stand-ins on the emulator.
struct Dims {
    tokens: usize,
    d: usize,
    heads: usize,
    f: usize,
    experts: usize,
    top_k: usize,
    /// VAE image side (the conv stages' sides scale with it).
    image: usize,
}

fn families<D: Device>(c: &mut Criterion, prefix: &str, dev: &D, small: bool) {
    let be = Cuda::bf16(dev.clone());
    let dm = if small {
        Dims { tokens: 64, d: 48, heads: 4, f: 96, experts: 4, top_k: 2, image: 32 }
    } else {
        Dims { tokens: 1024, d: 1152, heads: 16, f: 4608, experts: 8, top_k: 2, image: 512 }
    };
    let up = |shape: &[usize], seed: u64| -> GpuTensor<D> {
        let t = Tensor::new(shape.to_vec(), values(shape.iter().product(), seed, 1.0)).expect("shape and data agree");
        be.upload(&t).expect("upload")
    };
    let weight = |shape: &[usize], seed: u64| -> GpuTensor<D> {
        let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
        let data = values(shape.iter().product(), seed, 1.0 / (fan_in as f32).sqrt());
        let raw = RawTensor { dtype: DType::F32, shape: shape.to_vec(), bytes: Bytes::F32(std::sync::Arc::new(data)) };
        be.weight("bench", &raw).expect("weight")
    };
    // Device time of `iters` runs of `op`, from events recorded around them.
    let timed = |iters: u64, op: &mut dyn FnMut()| -> Duration {
        let start = dev.record_event().expect("event");
        for _ in 0..iters {
            op();
        }
        let end = dev.record_event().expect("event");
        Duration::from_secs_f64(dev.elapsed_ms(&start, &end).expect("elapsed") as f64 / 1e3)
    };

    let (t, d, f) = (dm.tokens, dm.d, dm.f);
    let mut g = c.benchmark_group(format!("{prefix}/linear"));
    for (name, m, k, n, act) in [
        ("qkv", t, d, 3 * d, Act::None),
        ("attn_proj", t, d, d, Act::None),
        ("adaln", 1, d, 6 * d, Act::None),
        ("dense_fc1_gelu_x8", 8 * t, d, f, Act::GeluTanh),
        ("dense_fc2_x8", 8 * t, f, d, Act::None),
    ] {
        let (x, w, b) = (up(&[m, k], 3), weight(&[n, k], 4), weight(&[n], 5));
        g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        g.bench_function(format!("{name}_{m}x{k}x{n}"), |bch| {
            bch.iter_custom(|iters| timed(iters, &mut || drop(be.linear(&x, &w, Some(&b), act).expect("linear"))))
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("{prefix}/attention"));
    let hd = d / dm.heads;
    for (b, l, heads, hd) in [(1, t, dm.heads, hd), (8, t, dm.heads, hd), (1, 4 * t, 1, 512.min(8 * hd))] {
        let qkv = up(&[b, l, 3 * heads * hd], 6);
        g.throughput(Throughput::Elements(4 * (b * l * l * heads * hd) as u64));
        g.bench_function(format!("b{b}_l{l}_h{heads}_d{hd}"), |bch| {
            bch.iter_custom(|iters| timed(iters, &mut || drop(be.attention(&qkv, heads).expect("attention"))))
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("{prefix}/moe"));
    let e = dm.experts;
    let w = MoeWeights {
        gate: weight(&[e, d], 7),
        fc1_w: (0..e as u64).map(|s| weight(&[f, d], 10 + s)).collect(),
        fc1_b: (0..e as u64).map(|s| weight(&[f], 110 + s)).collect(),
        fc2_w: (0..e as u64).map(|s| weight(&[d, f], 210 + s)).collect(),
        fc2_b: (0..e as u64).map(|s| weight(&[d], 310 + s)).collect(),
    };
    let moe = be.prepare_moe("bench", w).expect("prepare_moe");
    for n in [t, 8 * t] {
        let x = up(&[n, d], 8);
        let flops = 2 * n * d * e + dm.top_k * n * 2 * (2 * d * f);
        g.throughput(Throughput::Elements(flops as u64));
        g.bench_function(format!("n{n}_d{d}_f{f}_e{e}_top{}", dm.top_k), |bch| {
            bch.iter_custom(|iters| timed(iters, &mut || drop(be.moe(&x, &moe, dm.top_k, false).expect("moe"))))
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("{prefix}/conv2d"));
    let mut seen = std::collections::HashSet::new();
    for &(stage, ci, o, side, k, p) in conv::STAGES {
        // Sides relative to a 512x512 image; channels shrunk on the emulator (where two
        // stages can then coincide: benched once).
        let hw = side * dm.image / 512;
        let (ci, o) = if small { (ci.min(8), o.min(8)) } else { (ci, o) };
        if !seen.insert(conv::name(stage, ci, o, hw, k, p)) {
            continue;
        }
        let (x, w, b) = (up(&[1, ci, hw, hw], 20), weight(&[o, ci, k, k], 21), weight(&[o], 22));
        g.throughput(Throughput::Elements(conv::flops(ci, o, hw, k, p)));
        g.bench_function(conv::name(stage, ci, o, hw, k, p), |bch| {
            bch.iter_custom(|iters| timed(iters, &mut || drop(be.conv2d(&x, &w, Some(&b), p).expect("conv2d"))))
        });
    }
    // The decoder's upsampling conv: nearest 2x fused into the conv's loads.
    let (ci, hw) = if small { (8, dm.image / 4) } else { (512, 128) };
    let (x, w, b) = (up(&[1, ci, hw, hw], 23), weight(&[ci, ci, 3, 3], 24), weight(&[ci], 25));
    g.throughput(Throughput::Elements(conv::flops(ci, ci, 2 * hw, 3, Conv2d::same3x3())));
    g.bench_function(format!("upsample_conv_3x3_c{ci}_o{ci}_{hw}x{hw}_to_{}", 2 * hw), |bch| {
        bch.iter_custom(|iters| {
            timed(iters, &mut || drop(be.upsample_conv2d(&x, &w, Some(&b), Conv2d::same3x3()).expect("conv")))
        })
    });
    g.finish();

    let mut g = c.benchmark_group(format!("{prefix}/elementwise"));
    let (ch, hw) = if small { (32, 16) } else { (128, 512) };
    let x = up(&[1, ch, hw, hw], 30);
    let (gamma, beta) = (weight(&[ch], 31), weight(&[ch], 32));
    g.throughput(Throughput::Bytes((2 * 4 * ch * hw * hw) as u64));
    g.bench_function(format!("group_norm_silu_g32_c{ch}_{hw}x{hw}"), |bch| {
        bch.iter_custom(|iters| {
            timed(iters, &mut || drop(be.group_norm(&x, &gamma, &beta, 32, 1e-6, true).expect("group_norm")))
        })
    });
    let (x, mods) = (up(&[1, t, d], 34), up(&[1, 6 * d], 35));
    g.throughput(Throughput::Bytes((2 * 4 * t * d) as u64));
    g.bench_function(format!("modulated_layer_norm_{t}x{d}"), |bch| {
        bch.iter_custom(|iters| {
            timed(iters, &mut || drop(be.modulated_layer_norm(&x, &mods, 0, 1, 1e-6).expect("layer_norm")))
        })
    });
    let ddim = Ddim::new(&SchedulerConfig::sd2()).expect("sd2 scheduler");
    let coefs = ddim.coefficients(ddim.timesteps(50).expect("timesteps")[25], 50).expect("coefficients");
    let coefs = up_values(&be, &coefs.values());
    for batch in [1, 16] {
        let n = batch * 4 * 64 * 64;
        let pred = up(&[batch, 4, 64, 64], 40);
        let mut sample = up(&[batch, 4, 64, 64], 41);
        g.throughput(Throughput::Bytes((3 * 4 * n) as u64));
        g.bench_function(format!("ddim_step_b{batch}_4x64x64"), |bch| {
            bch.iter_custom(|iters| {
                timed(iters, &mut || {
                    be.ddim_step(&pred, &mut sample, &coefs, PredictionType::VPrediction).expect("ddim")
                })
            })
        });
    }
    g.finish();
}

fn up_values<D: Device>(be: &Cuda<D>, v: &[f32]) -> GpuTensor<D> {
    be.upload(&Tensor::new(vec![v.len()], v.to_vec()).expect("vector")).expect("upload")
}
