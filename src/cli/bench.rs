//! `percept bench`: whole-run timings with throughput. On a GPU the rows of `bench_device`
//! (events, fraction of the measured bf16 peak, peak memory); without one, the CPU rows that
//! finish in minutes: VAE 512x512 encode and decode and one DiT forward at batch 1.

use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use super::backend::Chosen;
use super::{BackendArg, Precision};
use crate::backend::cpu::Cpu;
use crate::backend::Backend;
use crate::model::dit::Dit;
use crate::model::flops::{vae_decode_flops, vae_encode_flops};
use crate::model::task::Task;
use crate::model::vae::Vae;
use crate::pipeline::noise::NoiseRng;
use crate::tensor::Tensor;
use crate::weights::model_file;

pub struct Row {
    pub name: String,
    pub ms: f64,
    pub flops: f64,
    /// Mean CPU time of the process per run (all threads), where the OS reports it: on a shared
    /// machine wall time depends on the neighbours, CPU time much less.
    pub cpu_ms: Option<f64>,
}

/// User plus system CPU time of this process so far, in milliseconds (Linux only).
fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // Linux reports in USER_HZ, 100 on every mainstream configuration.
    Some(ticks * 10.0)
}

/// Median wall time of `reps` runs after one warm-up, and mean CPU time per run, in ms.
fn time_ms(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, Option<f64>)> {
    f()?;
    let reps = reps.max(1);
    let mut v = Vec::new();
    let cpu0 = process_cpu_ms();
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let cpu = process_cpu_ms().zip(cpu0).map(|(b, a)| (b - a) / reps as f64);
    v.sort_by(|a, b| a.total_cmp(b));
    Ok((v[v.len() / 2], cpu))
}

/// `time_ms` for two functions run in alternation (one warm-up each, then `reps` rounds of
/// a then b): the medians and mean CPU times of each.
#[allow(clippy::type_complexity)]
fn time_pair_ms(
    reps: usize,
    mut a: impl FnMut() -> Result<()>,
    mut b: impl FnMut() -> Result<()>,
) -> Result<((f64, Option<f64>), (f64, Option<f64>))> {
    a()?;
    b()?;
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    let (mut ca, mut cb) = (Some(0.0), Some(0.0));
    let timed = |f: &mut dyn FnMut() -> Result<()>, t: &mut Vec<f64>, c: &mut Option<f64>| -> Result<()> {
        let (cpu0, w) = (process_cpu_ms(), Instant::now());
        f()?;
        t.push(w.elapsed().as_secs_f64() * 1e3);
        *c = c.zip(process_cpu_ms().zip(cpu0)).map(|(sum, (y, x))| sum + y - x);
        Ok(())
    };
    for _ in 0..reps.max(1) {
        timed(&mut a, &mut ta, &mut ca)?;
        timed(&mut b, &mut tb, &mut cb)?;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.total_cmp(y));
        v[v.len() / 2]
    };
    let n = reps.max(1) as f64;
    Ok(((median(&mut ta), ca.map(|c| c / n)), (median(&mut tb), cb.map(|c| c / n))))
}

/// Each function run in turn, `reps` rounds after one warm-up each: the medians and mean CPU
/// times of each (a busy neighbour then slows them alike).
fn time_alternating(reps: usize, fs: &mut [Box<dyn FnMut() -> Result<()> + '_>]) -> Result<Vec<(f64, Option<f64>)>> {
    for f in fs.iter_mut() {
        f()?;
    }
    let mut times = vec![Vec::new(); fs.len()];
    let mut cpu = vec![Some(0.0); fs.len()];
    for _ in 0..reps.max(1) {
        for (i, f) in fs.iter_mut().enumerate() {
            let (cpu0, w) = (process_cpu_ms(), Instant::now());
            f()?;
            times[i].push(w.elapsed().as_secs_f64() * 1e3);
            cpu[i] = cpu[i].zip(process_cpu_ms().zip(cpu0)).map(|(sum, (y, x))| sum + y - x);
        }
    }
    let n = reps.max(1) as f64;
    Ok(times
        .into_iter()
        .zip(cpu)
        .map(|(mut t, c)| {
            t.sort_by(|x, y| x.total_cmp(y));
            (t[t.len() / 2], c.map(|c| c / n))
        })
        .collect())
}

/// `part` occurs in `name` and does not run on into more letters or digits there.
fn names_part(name: &str, part: &str) -> bool {
    !part.is_empty()
        && name
            .match_indices(part)
            .any(|(i, _)| name[i + part.len()..].chars().next().is_none_or(|c| !c.is_ascii_alphanumeric()))
}

/// What one bench run measured, for the JSON file.
struct Summary {
    device: String,
    peak_tflops: Option<f64>,
    weight_bytes: Option<usize>,
    peak_bytes: Option<usize>,
}

pub fn run(
    json_path: Option<&std::path::Path>,
    reps: usize,
    only: &[String],
    backend: BackendArg,
    model: Option<&str>,
    precision: Option<Precision>,
) -> Result<bool> {
    // A filter selects a row ("vae_decode/512x512/b1") or a group ("vae", "b8"), never a longer
    // name it merely starts ("b1" is not "b16").
    let want = |n: &str| only.is_empty() || only.iter().any(|o| names_part(n, o));
    // The JSON file's folder is checked before minutes of timing, not when the results are in.
    if let Some(p) = json_path {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        super::outdir::prepare(dir)?;
    }
    let mut rows = Vec::new();
    let summary = match backend.open()? {
        Chosen::Cpu { .. } => cpu_rows(reps, precision, &want, &mut rows)?,
        Chosen::Gpu(gpu) => gpu_rows(gpu, reps, model, precision, &want, &mut rows)?,
        Chosen::Emu(dev) => {
            println!("bench: the CUDA backend on the CPU emulator: checks the harness, its times mean nothing");
            let src = model_file::resolve(super::model_spec(model).as_deref(), None)?;
            let bf16 = precision == Some(Precision::Bf16);
            let s = super::bench_device::run(dev.clone(), &src, "emu", bf16, reps, None, &want, &mut rows)?;
            Summary {
                device: crate::backend::cuda::device::Device::describe(&dev),
                peak_tflops: None,
                weight_bytes: Some(s.weight_bytes),
                peak_bytes: Some(s.peak_bytes),
            }
        }
    };
    if let Some(b) = summary.peak_bytes {
        let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
        println!(
            "peak device memory: {:.2} GiB (weights {:.2} GiB + activations)",
            gib(b),
            gib(summary.weight_bytes.unwrap_or(0))
        );
    }
    if let Some(p) = json_path {
        let v = json!({
            "device": summary.device,
            "peak_tflops": summary.peak_tflops,
            "weight_bytes": summary.weight_bytes,
            "peak_memory_bytes": summary.peak_bytes,
            "rows": rows.iter().map(|r| {
                let tflops = r.flops / r.ms / 1e9;
                json!({
                    "name": r.name,
                    "ms": r.ms,
                    "gflops": r.flops / r.ms / 1e6,
                    "tflops": tflops,
                    "fraction_of_peak": summary.peak_tflops.map(|p| tflops / p),
                    "cpu_ms": r.cpu_ms,
                })
            }).collect::<Vec<_>>(),
        });
        crate::io::atomic::write(p, serde_json::to_string_pretty(&v)?.as_bytes())?;
    }
    Ok(true)
}

fn gpu_rows(
    gpu: crate::backend::cuda::gpu::GpuDevice,
    reps: usize,
    model: Option<&str>,
    precision: Option<Precision>,
    want: &dyn Fn(&str) -> bool,
    rows: &mut Vec<Row>,
) -> Result<Summary> {
    use crate::backend::cuda::device::Device;
    let device = gpu.describe();
    println!("bench: {device}");
    let peak = match gpu.cublas_bf16_peak_tflops(8192, 10) {
        Ok(p) => {
            println!("bf16 GEMM peak (cuBLAS, 8192^3, median of 10): {p:.1} TFLOP/s");
            Some(p)
        }
        Err(e) => {
            println!("bf16 GEMM peak: not measured ({e})");
            None
        }
    };
    let src = model_file::resolve(Some(model.unwrap_or("synthetic:generalist")), None)?;
    let bf16 = precision != Some(Precision::F32);
    let s = super::bench_device::run(gpu, &src, "gpu", bf16, reps, peak, want, rows)?;
    Ok(Summary { device, peak_tflops: peak, weight_bytes: Some(s.weight_bytes), peak_bytes: Some(s.peak_bytes) })
}

/// The CPU rows at f32, and with `--precision bf16` the same rows at bf16 beside them (runs
/// alternated, so both see the same neighbours), each row's name ending in its precision.
fn cpu_rows(
    reps: usize,
    precision: Option<Precision>,
    want: &dyn Fn(&str) -> bool,
    rows: &mut Vec<Row>,
) -> Result<Summary> {
    let mut backends = vec![("f32", Cpu::new())];
    if precision == Some(Precision::Bf16) {
        backends.push(("bf16", Cpu::bf16()));
    }
    for (p, be) in &backends {
        println!("bench: benchmarking the CPU path at {p} ({}); the GPU rows need a GPU.", be.name());
    }
    let mut rng = NoiseRng::new(0);
    // A row runs when a filter selects it at any of the precisions (or its group).
    let wanted = |row: &str| backends.iter().any(|(p, _)| want(&format!("cpu/{row}/{p}")));
    let vae_rows = ["vae_encode/512x512/b1", "vae_decode/512x512/b1"];
    let push_rows = |rows: &mut Vec<Row>, row: &str, flops: f64, times: Vec<(f64, Option<f64>)>| {
        for ((p, _), (ms, cpu_ms)) in backends.iter().zip(&times) {
            rows.push(Row { name: format!("cpu/{row}/{p}"), ms: *ms, cpu_ms: *cpu_ms, flops });
            report(rows.last().unwrap(), None);
        }
        if times.len() == 2 {
            println!("{row}: bf16 {:.2}x the speed of f32", times[0].0 / times[1].0);
        }
    };
    if vae_rows.iter().any(|r| wanted(r)) {
        let (vae_cfg, vae_weights) = model_file::synthetic_sd2_vae()?;
        let vaes =
            backends.iter().map(|(_, be)| Vae::load(be, &vae_cfg, &vae_weights)).collect::<Result<Vec<_>, _>>()?;
        let img = Tensor::new(vec![1, 3, 512, 512], rng.normals(3 * 512 * 512))?;
        let lat = Tensor::new(vec![1, 4, 64, 64], rng.normals(4 * 64 * 64))?;
        for (row, encode, flops) in [
            (vae_rows[0], true, vae_encode_flops(&vae_cfg, 512, 512)),
            (vae_rows[1], false, vae_decode_flops(&vae_cfg, 512, 512)),
        ] {
            if !wanted(row) {
                continue;
            }
            let (img, lat) = (&img, &lat);
            let mut fs: Vec<Box<dyn FnMut() -> Result<()> + '_>> = backends
                .iter()
                .zip(&vaes)
                .map(|((_, be), vae)| {
                    Box::new(move || {
                        if encode {
                            vae.encode(be, &be.upload(img)?, None)?;
                        } else {
                            vae.decode(be, &be.upload(lat)?, None)?;
                        }
                        Ok(())
                    }) as Box<dyn FnMut() -> Result<()>>
                })
                .collect();
            let times = time_alternating(reps, &mut fs)?;
            push_rows(rows, row, flops, times);
        }
    }
    if wanted("dit_forward/b1") {
        let t0 = Instant::now();
        let (cfg, weights) = model_file::synthetic_generalist_dit()?;
        let dits = backends.iter().map(|(_, be)| Dit::load(be, &cfg, &weights)).collect::<Result<Vec<_>, _>>()?;
        println!("built the synthetic generalist DiT in {:.1} s", t0.elapsed().as_secs_f64());
        let s = cfg.input_size;
        let x = Tensor::new(vec![1, cfg.in_channels, s, s], rng.normals(cfg.in_channels * s * s))?;
        let x = &x;
        let mut fs: Vec<Box<dyn FnMut() -> Result<()> + '_>> = backends
            .iter()
            .zip(&dits)
            .map(|((_, be), dit)| {
                Box::new(move || {
                    dit.forward(be, &be.upload(x)?, &[501.0], &[Task::Depth.label()], None)?;
                    Ok(())
                }) as Box<dyn FnMut() -> Result<()>>
            })
            .collect();
        let times = time_alternating(reps, &mut fs)?;
        push_rows(rows, "dit_forward/b1", cfg.forward_flops(1), times);
    }
    if want("api") {
        api_overhead_rows(reps, rows)?;
    }
    if want("workers") {
        workers_rows(reps, rows)?;
    }
    let device = backends.iter().map(|(_, be)| be.name()).collect::<Vec<_>>().join(" / ");
    Ok(Summary { device, peak_tflops: None, weight_bytes: None, peak_bytes: None })
}

/// Denoising steps of the API overhead rows.
const API_ROW_STEPS: usize = 10;

/// The per-call overhead of the public API on the CPU at the demo model's size: one depth call
/// through `Session::depth` (image view in, conversions, the session's thread pool, result at
/// the input's size) against the engine's own `predict` on the same request (VAE encode,
/// denoising loop, decode: the model's work), same steps, seed and thread count.
fn api_overhead_rows(reps: usize, rows: &mut Vec<Row>) -> Result<()> {
    use crate::api::{DepthOptions, Device, ImageView, Model, Session};
    use crate::pipeline::tasks::{depth_prompt, Request, SampleOptions};
    let model = Model::open_spec(None, None)?;
    let res = model.resolution();
    let engine = model.cpu_engine(false)?;
    let mut session = Session::new(&model, Device::Cpu { threads: Some(rayon::current_num_threads()) })?;
    let pixels: Vec<u8> = (0..res * res * 3).map(|i| (i * 31 % 251) as u8).collect();
    let image = ImageView::rgb8(&pixels, res, res)?;
    let planes = crate::api::prepare::to_model(&image_planes(&pixels, res), res)?;
    let request = [Request { task: Task::Depth, rgb: planes, prompt: depth_prompt(res) }];
    let sample = SampleOptions { steps: API_ROW_STEPS, ..Default::default() };
    let opts = DepthOptions { num_inference_steps: API_ROW_STEPS, ..Default::default() };
    let flops = model.config().dit.forward_flops(1) * API_ROW_STEPS as f64;
    // The two alternate, run by run, so a busy neighbour slows both alike.
    let raw = || engine.predict(&request, &sample).map(|_| ()).map_err(anyhow::Error::from);
    let api = || session.depth(&image, &opts).map(|_| ()).map_err(anyhow::Error::from);
    let ((raw_ms, raw_cpu), (api_ms, api_cpu)) = time_pair_ms(reps, raw, api)?;
    let name = format!("cpu/api_overhead/{res}x{res}/{API_ROW_STEPS}steps");
    rows.push(Row { name: format!("{name}/engine_predict"), ms: raw_ms, flops, cpu_ms: raw_cpu });
    report(rows.last().unwrap(), None);
    rows.push(Row { name: format!("{name}/session_depth"), ms: api_ms, flops, cpu_ms: api_cpu });
    report(rows.last().unwrap(), None);
    println!("API overhead per call: {:+.2}% (session_depth against engine_predict)", 100.0 * (api_ms / raw_ms - 1.0));
    Ok(())
}

/// Denoising steps of the worker rows.
const WORKER_ROW_STEPS: usize = 4;

/// Throughput of `--devices` on the CPU: the toy validation images (depth, demo model, batches
/// of one) through the batch runner with 1, 2, 4, ... workers, each a session with its share of
/// the cores, as `percept depth --backend cpu --devices ...` runs them.
fn workers_rows(reps: usize, rows: &mut Vec<Row>) -> Result<()> {
    use super::runner::{BatchError, Outcome};
    use crate::api::{DepthOptions, Device, Model, Session};
    let model = Model::open_spec(None, None)?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("toy_data/Hypersim_small/val");
    let files: Vec<std::path::PathBuf> = crate::io::inputs::expand_inputs(&[dir])?
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("rgb_")))
        .collect();
    let images = files
        .iter()
        .map(|f| Ok(super::predict::Interleaved::new(&crate::io::image::load_rgb(f)?)))
        .collect::<Result<Vec<_>>>()?;
    let opts = DepthOptions { num_inference_steps: WORKER_ROW_STEPS, batch_size: 1, ..Default::default() };
    let flops = model.config().dit.forward_flops(1) * (WORKER_ROW_STEPS * images.len()) as f64;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut one_worker_ms = None;
    let mut n = 1;
    while n <= cores.max(2) {
        let threads = (cores / n).max(1);
        let mut sessions = (0..n)
            .map(|_| Session::new(&model, Device::Cpu { threads: Some(threads) }))
            .collect::<crate::error::Result<Vec<_>>>()?;
        let jobs: Vec<usize> = (0..images.len()).collect();
        let (ms, cpu_ms) = time_ms(reps, || {
            let s = super::runner::run(
                sessions.iter_mut().collect(),
                |_| String::new(),
                &jobs,
                1,
                |session, batch| {
                    let view = images[*batch[0]].view().map_err(|e| BatchError::Fatal(e.to_string()))?;
                    session.depth(&view, &opts).map_err(|e| BatchError::Fatal(e.to_string()))?;
                    Ok(vec![Outcome::Done])
                },
                |_, _, _, _| {},
            );
            match s.stopped {
                Some(why) => anyhow::bail!("worker row stopped: {why:?}"),
                None => Ok(()),
            }
        })?;
        rows.push(Row { name: format!("cpu/workers/{n}x{threads}threads/depth_toy"), ms, flops, cpu_ms });
        report(rows.last().unwrap(), None);
        let base = *one_worker_ms.get_or_insert(ms);
        println!("  {n} worker(s): {:.2} inputs/s ({:.2}x one worker)", images.len() as f64 / (ms / 1e3), base / ms);
        n *= 2;
    }
    Ok(())
}

/// RGB8 pixels as [3, H, W] planes in [0, 1] (what the CLI loads from a file).
fn image_planes(pixels: &[u8], res: usize) -> crate::io::image::Image {
    let n = res * res;
    let data = (0..3).flat_map(|c| (0..n).map(move |p| pixels[3 * p + c] as f32 / 255.0)).collect();
    crate::io::image::Image { width: res, height: res, channels: 3, data }
}

/// One line per row; with a measured peak, the achieved fraction of it.
pub fn report(r: &Row, peak_tflops: Option<f64>) {
    print!("{:<40} {:>10.2} ms  {:>9.1} GFLOP/s", r.name, r.ms, r.flops / r.ms / 1e6);
    if let Some(p) = peak_tflops {
        print!("  {:>5.1}% of peak", 100.0 * r.flops / r.ms / 1e9 / p);
    }
    match r.cpu_ms {
        Some(c) => println!("  (CPU {:.1} s a run, {:.1} GFLOP per CPU-second)", c / 1e3, r.flops / c / 1e6),
        None => println!(),
    }
}
