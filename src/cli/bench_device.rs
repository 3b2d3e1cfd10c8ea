//! `percept bench` rows on a CUDA device: DiT forward at batch 1-16, VAE encode/decode at batch 1
//! and 8, whole depth predictions (50 steps, 1 and 8 members), each timed with device events
//! (median after a warm-up), with achieved TFLOP/s, the fraction of the bf16 GEMM peak measured
//! in the same run, and the peak device memory. The same code runs on the emulator
//! (`--backend cuda-emu`), which is how CI checks the harness; its times mean nothing.

use anyhow::Result;

use super::bench::{report, Row};
use crate::backend::cuda::backend::Cuda;
use crate::backend::cuda::device::Device;
use crate::backend::Backend;
use crate::model::flops::{vae_decode_flops, vae_encode_flops};
use crate::pipeline::any::cuda_engine;
use crate::pipeline::noise::NoiseRng;
use crate::pipeline::tasks::{depth_prompt, Request, SampleOptions, TaskKind};
use crate::tensor::Tensor;
use crate::weights::model_file::ModelSource;

pub const DIT_BATCHES: [usize; 5] = [1, 2, 4, 8, 16];
pub const VAE_BATCHES: [usize; 2] = [1, 8];
pub const DEPTH_MEMBERS: [usize; 2] = [1, 8];
pub const DEPTH_STEPS: usize = 50;

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

pub fn run<D: Device>(
    dev: D,
    src: &ModelSource,
    prefix: &str,
    reps: usize,
    peak_tflops: Option<f64>,
    want: &dyn Fn(&str) -> bool,
    rows: &mut Vec<Row>,
) -> Result<DeviceSummary> {
    let be = Cuda::bf16(dev.clone());
    let engine = cuda_engine(be.clone(), src)?;
    let weight_bytes = be.weight_bytes(src.dit.iter().chain(src.vae.iter()).map(|(_, t)| t.shape.as_slice()));
    let cfg = engine.config.clone();
    let vae_cfg = cfg.vae.clone().ok_or_else(|| anyhow::anyhow!("{}: no VAE config", src.description))?;
    let (res, s, cin) = (cfg.resolution, cfg.dit.input_size, cfg.dit.in_channels);
    let lc = vae_cfg.latent_channels;
    let mut rng = NoiseRng::new(0);
    let mut push = |name: String, ms: f64, flops: f64| {
        rows.push(Row { name, ms, flops, cpu_ms: None });
        report(rows.last().unwrap(), peak_tflops);
    };
    for b in DIT_BATCHES {
        let name = format!("{prefix}/dit_forward/b{b}");
        if !want(&name) {
            continue;
        }
        let x = be.upload(&Tensor::new(vec![b, cin, s, s], rng.normals(b * cin * s * s))?)?;
        let t = be.upload(&Tensor::new(vec![b], vec![501.0; b])?)?;
        let labels = vec![1000i64; b];
        let ms = time_events(&dev, reps, || Ok(engine.dit.forward_t(&be, &x, &t, &labels, None).map(drop)?))?;
        push(name, ms, cfg.dit.forward_flops(b));
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
        let req = [Request { task: TaskKind::Depth, rgb, prompt: depth_prompt(res) }];
        let opts = SampleOptions { steps: DEPTH_STEPS, ensemble: k, seed: 0 };
        let ms = time_wall(reps, || Ok(engine.predict(&req, &opts).map(drop)?))?;
        let flops = 2.0 * vae_encode_flops(&vae_cfg, res, res)
            + DEPTH_STEPS as f64 * cfg.dit.forward_flops(k)
            + k as f64 * vae_decode_flops(&vae_cfg, res, res);
        push(name, ms, flops);
    }
    let pool = be.memory_stats();
    Ok(DeviceSummary { weight_bytes, peak_bytes: weight_bytes + pool.peak_reserved })
}
