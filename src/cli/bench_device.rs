//! `percept bench` rows on a CUDA device: DiT forward at batch 1-16, VAE encode/decode at batch 1
//! and 8, whole depth predictions (50 steps, 1 and 8 members), each timed with device events
//! (median after a warm-up), with achieved TFLOP/s, the fraction of the bf16 GEMM peak measured
//! in the same run, and the peak device memory. The same code runs on the emulator
//! (`--backend cuda-emu`), which is how CI checks the harness; its times mean nothing.

use anyhow::Result;

use super::bench::{report, Row};
use crate::backend::cuda::backend::{Cuda, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::Backend;
use crate::backend::{Act, MoeWeights};
use crate::model::flops::{vae_decode_flops, vae_encode_flops};
use crate::model::task::Task;
use crate::pipeline::any::cuda_engine;
use crate::pipeline::noise::NoiseRng;
use crate::pipeline::tasks::{depth_prompt, Request, SampleOptions};
use crate::tensor::{DType, Tensor};
use crate::weights::model_file::ModelSource;
use crate::weights::{Bytes, RawTensor};

pub const DIT_BATCHES: [usize; 5] = [1, 2, 4, 8, 16];
pub const VAE_BATCHES: [usize; 2] = [1, 8];
pub const DEPTH_MEMBERS: [usize; 2] = [1, 8];
pub const DEPTH_STEPS: usize = 50;
/// Token count of the MoE-layer rows (batch 8 of 1024 tokens in the published model).
pub const MOE_TOKENS: usize = 8192;
/// Batch of the attention row.
pub const ATTENTION_BATCH: usize = 8;

/// A random bf16-representable weight of `shape`, scaled like an initialised layer.
fn random_weight<D: Device>(be: &Cuda<D>, rng: &mut NoiseRng, shape: &[usize]) -> Result<GpuTensor<D>> {
    let n: usize = shape.iter().product();
    let fan_in = *shape.last().unwrap_or(&1) as f32;
    let data: Vec<f32> = rng.normals(n).into_iter().map(|v| v / fan_in.sqrt()).collect();
    let raw = RawTensor { dtype: DType::F32, shape: shape.to_vec(), bytes: Bytes::F32(std::sync::Arc::new(data)) };
    Ok(be.weight("bench", &raw)?)
}

/// What a device run measured besides its rows.
pub struct DeviceSummary {
    pub weight_bytes: usize,
    /// Weights plus the activation pool's high-water mark.
    pub peak_bytes: usize,
}

/// Median device time of `reps` runs of `f` after one warm-up, in ms, from events recorded on
/// the device's stream around each run.
fn time_events<D: Device>(dev: &D, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    dev.synchronize()?;
    let mut v = Vec::new();
    for _ in 0..reps.max(1) {
        let start = dev.record_event()?;
        f()?;
        let end = dev.record_event()?;
        v.push(dev.elapsed_ms(&start, &end)? as f64);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

/// Median wall time of `reps` runs after a warm-up, in ms (for runs that end on the host).
fn time_wall(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut v = Vec::new();
    for _ in 0..reps.max(1) {
        let t = std::time::Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

#[allow(clippy::too_many_arguments)]
pub fn run<D: Device>(
    dev: D,
    src: &ModelSource,
    prefix: &str,
    bf16: bool,
    reps: usize,
    peak_tflops: Option<f64>,
    want: &dyn Fn(&str) -> bool,
    rows: &mut Vec<Row>,
) -> Result<DeviceSummary> {
    let be = if bf16 { Cuda::bf16(dev.clone()) } else { Cuda::new(dev.clone()) };
    // Every row's name ends in its precision, as the CPU rows' do; a filter may name it.
    let precision = if bf16 { "bf16" } else { "f32" };
    println!("bench: {prefix} rows at {precision}");
    let want = |n: &str| want(n) || want(&format!("{n}/{precision}"));
    let engine = cuda_engine(be.clone(), src)?;
    let weight_bytes = be.weight_bytes(src.dit.iter().chain(src.vae.iter()).map(|(_, t)| t.shape.as_slice()));
    let cfg = engine.config.clone();
    let vae_cfg = cfg.vae.clone().ok_or_else(|| anyhow::anyhow!("{}: no VAE config", src.description))?;
    let (res, s, cin) = (cfg.resolution, cfg.dit.input_size, cfg.dit.in_channels);
    let lc = vae_cfg.latent_channels;
    let mut rng = NoiseRng::new(0);
    let mut push = |name: String, ms: f64, flops: f64| {
        rows.push(Row { name: format!("{name}/{precision}"), ms, flops, cpu_ms: None });
        report(rows.last().unwrap(), peak_tflops);
    };
    for b in DIT_BATCHES {
        let name = format!("{prefix}/dit_forward/b{b}");
        if !want(&name) {
            continue;
        }
        let x = be.upload(&Tensor::new(vec![b, cin, s, s], rng.normals(b * cin * s * s))?)?;
        let t = be.upload(&Tensor::new(vec![b], vec![501.0; b])?)?;
        let labels = vec![Task::Depth.label(); b];
        let ms = time_events(&dev, reps, || Ok(engine.dit.forward_t(&be, &x, &t, &labels, None).map(drop)?))?;
        push(name, ms, cfg.dit.forward_flops(b));
    }
    // One MoE layer at the model's widths over MOE_TOKENS tokens, beside the dense work it is
    // made of (top-k fc1/fc2 pairs over the same tokens, as plain linears): routing, sorting and
    // combining are what the difference costs.
    let (d, f, e, k) = (cfg.dit.hidden_size, cfg.dit.mlp_hidden, cfg.dit.num_experts, cfg.dit.top_k);
    let moe_name = format!("{prefix}/moe_layer/{MOE_TOKENS}");
    let dense_name = format!("{prefix}/dense_gemm_pairs_x{k}/{MOE_TOKENS}");
    if want(&moe_name) || want(&dense_name) {
        let x = be.upload(&Tensor::new(vec![MOE_TOKENS, d], rng.normals(MOE_TOKENS * d))?)?;
        let mut w = MoeWeights {
            gate: random_weight(&be, &mut rng, &[e, d])?,
            fc1_w: vec![],
            fc1_b: vec![],
            fc2_w: vec![],
            fc2_b: vec![],
        };
        for _ in 0..e {
            w.fc1_w.push(random_weight(&be, &mut rng, &[f, d])?);
            w.fc1_b.push(random_weight(&be, &mut rng, &[f])?);
            w.fc2_w.push(random_weight(&be, &mut rng, &[d, f])?);
            w.fc2_b.push(random_weight(&be, &mut rng, &[d])?);
        }
        let pair = (w.fc1_w[0].clone(), w.fc1_b[0].clone(), w.fc2_w[0].clone(), w.fc2_b[0].clone());
        let moe = be.prepare_moe("bench", w)?;
        let expert_flops = (k * MOE_TOKENS) as f64 * 4.0 * (d * f) as f64;
        if want(&moe_name) {
            let ms = time_events(&dev, reps, || Ok(be.moe(&x, &moe, k, false).map(drop)?))?;
            push(moe_name, ms, expert_flops + 2.0 * (MOE_TOKENS * d * e) as f64);
        }
        if want(&dense_name) {
            let ms = time_events(&dev, reps, || {
                for _ in 0..k {
                    let h = be.linear(&x, &pair.0, Some(&pair.1), Act::GeluTanh)?;
                    drop(be.linear(&h, &pair.2, Some(&pair.3), Act::None)?);
                }
                Ok(())
            })?;
            push(dense_name, ms, expert_flops);
        }
    }
    let (heads, tokens) = (cfg.dit.num_heads, cfg.dit.num_tokens());
    let hd = d / heads;
    let att_name = format!("{prefix}/attention/b{ATTENTION_BATCH}x{tokens}x{heads}x{hd}");
    if want(&att_name) {
        let n = ATTENTION_BATCH * tokens * 3 * d;
        let qkv = be.upload(&Tensor::new(vec![ATTENTION_BATCH, tokens, 3 * d], rng.normals(n))?)?;
        let ms = time_events(&dev, reps, || Ok(be.attention(&qkv, heads).map(drop)?))?;
        push(att_name, ms, 4.0 * (ATTENTION_BATCH * heads * tokens * tokens * hd) as f64);
    }
    for b in VAE_BATCHES {
        let enc = format!("{prefix}/vae_encode/{res}x{res}/b{b}");
        if want(&enc) {
            let x = be.upload(&Tensor::new(vec![b, 3, res, res], rng.normals(b * 3 * res * res))?)?;
            let ms = time_events(&dev, reps, || Ok(engine.vae.encode(&be, &x, None).map(drop)?))?;
            push(enc, ms, b as f64 * vae_encode_flops(&vae_cfg, res, res));
        }
        let dec = format!("{prefix}/vae_decode/{res}x{res}/b{b}");
        if want(&dec) {
            let z = be.upload(&Tensor::new(vec![b, lc, s, s], rng.normals(b * lc * s * s))?)?;
            let ms = time_events(&dev, reps, || Ok(engine.vae.decode(&be, &z, None).map(drop)?))?;
            push(dec, ms, b as f64 * vae_decode_flops(&vae_cfg, res, res));
        }
    }
    for k in DEPTH_MEMBERS {
        let name = format!("{prefix}/depth/{res}x{res}/{DEPTH_STEPS}steps/k{k}");
        if !want(&name) {
            continue;
        }
        // A whole prediction as a user runs it: host image in, ensembled depth out (wall time).
        let rgb = Tensor::new(vec![3, res, res], rng.normals(3 * res * res).iter().map(|v| v.tanh()).collect())?;
        let req = [Request { task: Task::Depth, rgb, prompt: depth_prompt(res) }];
        let opts = SampleOptions { steps: DEPTH_STEPS, ensemble: k, seed: 0, ..Default::default() };
        let ms = time_wall(reps, || Ok(engine.predict(&req, &opts).map(drop)?))?;
        let flops = 2.0 * vae_encode_flops(&vae_cfg, res, res)
            + DEPTH_STEPS as f64 * cfg.dit.forward_flops(k)
            + k as f64 * vae_decode_flops(&vae_cfg, res, res);
        push(name, ms, flops);
    }
    let pool = be.memory_stats();
    Ok(DeviceSummary { weight_bytes, peak_bytes: weight_bytes + pool.peak_reserved })
}
