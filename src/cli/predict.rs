//! `percept depth | flow | segment`: files in, outputs beside each other under `--out`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::manifest::{Ledger, Manifest, Record, RunKey, Status};
use super::runner::{BatchError, Outcome};
use super::shard::Shard;
use super::{BackendArg, ModelArgs, ScaleOptions};
use crate::backend::cpu::Cpu;
use crate::backend::cuda::backend::Cuda;
use crate::backend::cuda::gpu::GpuDevice;
use crate::emu::{Arch, EmuDevice};
use crate::io::flo::{write_flo, Flow};
use crate::io::image::{load_mask, load_rgb, save_png_gray16, save_png_gray8, save_png_rgb8, Image};
use crate::io::inputs::{expand_inputs, output_stems, pair_flow_frames, pair_segment};
use crate::io::npy::write_npy_f32;
use crate::io::resize::{resize_area, resize_bilinear, resize_nearest};
use crate::pipeline::any::cuda_engine;
use crate::pipeline::any::AnyEngine;
use crate::pipeline::control::Control;
use crate::pipeline::tasks::{depth_prompt, Prediction, Request, SampleOptions, TaskKind};
use crate::pipeline::Engine;
use crate::postprocess::color::{colorize_depth, flow_to_color};
use crate::postprocess::metrics::amodal_mask;
use crate::tensor::Tensor;
use crate::weights::model_file;

/// One unit of work: the input files, its output stem, and the size to write outputs at.
struct Job {
    inputs: Vec<PathBuf>,
    stem: PathBuf,
}

/// Build the engine on the requested backend, saying which one runs.
pub fn engine(model: &ModelArgs) -> Result<AnyEngine> {
    let t = Instant::now();
    // A GPU that was asked for and is not there fails before the model is read or generated.
    let mut gpu = match model.backend {
        BackendArg::Cuda => Some(GpuDevice::open(0)?),
        _ => None,
    };
    let src = model_file::resolve(model.model.as_deref(), model.sd2.as_deref())?;
    // On a GPU the weights are stored in bf16 (f32 accumulation); `percept verify --precision
    // f32` checks the f32 path. The emulator runs what the GPU would.
    let engine = match model.backend {
        BackendArg::Cpu => AnyEngine::Cpu(Engine::new(Cpu::new(), &src)?),
        BackendArg::CudaEmu => AnyEngine::Emu(cuda_engine(Cuda::bf16(EmuDevice::new(Arch::Sm90)), &src)?),
        BackendArg::Cuda => match gpu.take() {
            Some(dev) => AnyEngine::Gpu(cuda_engine(Cuda::bf16(dev), &src)?),
            None => AnyEngine::Gpu(cuda_engine(Cuda::bf16(GpuDevice::open(0)?), &src)?),
        },
        BackendArg::Auto => match GpuDevice::open(0) {
            Ok(dev) => match cuda_engine(Cuda::bf16(dev), &src) {
                Ok(e) => AnyEngine::Gpu(e),
                Err(e) => {
                    eprintln!("not using the GPU: {e}");
                    AnyEngine::Cpu(Engine::new(Cpu::new(), &src)?)
                }
            },
            Err(e) => {
                log::info!("no usable GPU: {e}");
                AnyEngine::Cpu(Engine::new(Cpu::new(), &src)?)
            }
        },
    };
    log::info!("loaded {} in {:.1} s", src.description, t.elapsed().as_secs_f64());
    let cfg = engine.config();
    eprintln!(
        "model: {} ({} px, DiT depth {} hidden {}, {} experts) on {}",
        src.description,
        cfg.resolution,
        cfg.dit.depth,
        cfg.dit.hidden_size,
        cfg.dit.num_experts,
        engine.backend_name()
    );
    Ok(engine)
}

/// Image [3, H, W] in [0, 1] resized to the model's resolution, mapped to [-1, 1].
pub fn to_model(img: &Image, res: usize) -> Result<Tensor> {
    let data = resize_area(&img.data, img.width, img.height, res, res)?;
    Ok(Tensor::new(vec![3, res, res], data.into_iter().map(|v| v * 2.0 - 1.0).collect())?)
}

fn outputs_for(task: TaskKind, stem: &Path, out: &Path, ensemble: usize) -> Vec<PathBuf> {
    let with = |suffix: &str| {
        let mut name = stem.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        out.join(stem.with_file_name(name))
    };
    match task {
        TaskKind::Depth => {
            let mut v = vec![with("_depth.png"), with("_depth16.png"), with("_depth.npy")];
            if ensemble > 1 {
                v.push(with("_uncertainty.png"));
            }
            v
        }
        TaskKind::Flow => vec![with("_flow.flo"), with("_flow.png")],
        TaskKind::Segment => vec![with("_amodal.png"), with("_mask.png")],
    }
}

/// Run a task over its command-line inputs. Returns false if any input failed.
pub fn run(
    task: TaskKind,
    args: &[PathBuf],
    model: &ModelArgs,
    sample: &SampleOptions,
    out: &Path,
    batch: usize,
    scale: &ScaleOptions,
) -> Result<bool> {
    if args.is_empty() {
        bail!("no inputs given");
    }
    // Outputs written under an input folder are not inputs of the next run.
    let out_abs = std::fs::canonicalize(out).ok();
    let files: Vec<PathBuf> = expand_inputs(args)?
        .into_iter()
        .filter(|f| match (&out_abs, std::fs::canonicalize(f)) {
            (Some(o), Ok(f)) => !f.starts_with(o),
            _ => true,
        })
        .collect();
    if files.is_empty() {
        bail!("no images found in {}", args.iter().map(|a| a.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    let mut failed: Vec<String> = Vec::new();
    let jobs: Vec<Job> = match task {
        TaskKind::Depth => {
            let stems = output_stems(&files);
            files.into_iter().zip(stems).map(|(f, s)| Job { inputs: vec![f], stem: s }).collect()
        }
        TaskKind::Flow => {
            let pairing = pair_flow_frames(&files);
            for p in &pairing.unpaired {
                failed.push(format!("{}: no second frame to pair it with", p.display()));
            }
            let firsts: Vec<PathBuf> = pairing.pairs.iter().map(|(a, _)| a.clone()).collect();
            let stems = output_stems(&firsts);
            pairing.pairs.into_iter().zip(stems).map(|((a, b), s)| Job { inputs: vec![a, b], stem: s }).collect()
        }
        TaskKind::Segment => {
            let (masks, images): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(|p| is_mask_path(p));
            let pairing = pair_segment(&images, &masks);
            for p in &pairing.unpaired {
                failed.push(format!("{}: no matching image/mask (matched by the number before '_')", p.display()));
            }
            let firsts: Vec<PathBuf> = pairing.pairs.iter().map(|(a, _)| a.clone()).collect();
            let stems = output_stems(&firsts);
            pairing.pairs.into_iter().zip(stems).map(|((a, b), s)| Job { inputs: vec![a, b], stem: s }).collect()
        }
    };
    // The position of an input in the sorted list decides its shard (and nothing else does).
    let mut jobs = jobs;
    jobs.sort_by(|a, b| a.inputs.cmp(&b.inputs));
    let job_total = jobs.len();
    let shard = match super::shard::choose(scale.shard.as_deref(), scale.shard_count, &|k| std::env::var(k).ok())
        .map_err(anyhow::Error::msg)?
    {
        Some((s, from)) => {
            let jobs_here = s.select((0..job_total).collect()).len();
            eprintln!("shard {s} ({}): {jobs_here} of {job_total} inputs", from.describe());
            s
        }
        None => Shard::ALL,
    };
    let jobs = shard.select(jobs);
    let outputs_of = |j: &Job| outputs_for(task, &j.stem, out, sample.ensemble);
    let cancel = super::interrupt::install();
    super::outdir::prepare_for(out, jobs.iter().flat_map(outputs_of))?;
    let sample = &SampleOptions {
        control: Control { cancel: Some(cancel.clone()), ..sample.control.clone() },
        ..sample.clone()
    };
    let engine = engine(model)?;
    let res = engine.config().resolution;

    // Resume: what this model with these options already made is done; outputs of another model
    // or other options are recomputed only with --overwrite.
    let run_key = RunKey { model: model_fingerprint(model), options: output_options(task, sample, &engine) };
    let ledger = Ledger::read(out).with_context(|| format!("reading the run records in {}", out.display()))?;
    let key = |j: &Job| j.stem.display().to_string();
    let (mut done, mut todo, mut conflicts) = (Vec::new(), Vec::new(), Vec::new());
    for job in jobs {
        let k = key(&job);
        let present = outputs_of(&job).iter().all(|p| p.exists());
        if ledger.done(&k, &run_key) {
            done.push(job);
        } else if present && !scale.overwrite && ledger.done_differently(&k, &run_key).is_some() {
            conflicts.push(job);
        } else if present && !scale.overwrite && !ledger.latest.contains_key(&k) {
            done.push(job); // outputs from a run without records, or killed between write and record
        } else {
            todo.push(job);
        }
    }
    if !done.is_empty() {
        eprintln!("skipping {} input(s) whose outputs already exist in {}", done.len(), out.display());
    }
    for job in &conflicts {
        failed.push(format!(
            "{}: its outputs in {} were made with another model or other options; pass --overwrite to recompute them",
            job.inputs[0].display(),
            out.display()
        ));
    }
    let keys: Vec<String> = done.iter().chain(&todo).chain(&conflicts).map(key).collect();
    let manifest = Mutex::new(
        Manifest::create(out, &shard.file_tag(), &shard.to_string(), job_total, &keys)
            .with_context(|| format!("writing the run record under {}", out.join(super::manifest::DIR).display()))?,
    );

    let total = todo.len();
    let start = Instant::now();
    let finished_n = AtomicUsize::new(0);
    let workers = vec![&engine];
    let summary = super::runner::run(
        workers,
        |e| e.backend_name(),
        &todo,
        batch,
        |engine, batch| run_batch(engine, task, batch, sample, out, res),
        |job, outcome, device, secs| {
            let n = finished_n.fetch_add(1, Ordering::SeqCst) + 1;
            let (status, reason) = match outcome {
                Outcome::Done => (Status::Done, None),
                Outcome::Failed(why) => (Status::Failed, Some(why.clone())),
            };
            let record = Record {
                key: key(job),
                inputs: job.inputs.iter().map(|p| p.display().to_string()).collect(),
                outputs: match status {
                    Status::Done => outputs_of(job).iter().map(|p| p.display().to_string()).collect(),
                    Status::Failed => vec![],
                },
                status,
                reason,
                seconds: secs,
                device: device.to_string(),
                shard: shard.to_string(),
                run: run_key.clone(),
            };
            let mut m = manifest.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = m.record(&record) {
                log::warn!("could not append to the run record {}: {e}", m.path().display());
            }
            let el = start.elapsed().as_secs_f64();
            eprint!("\r[{n}/{total}] {:.1} s elapsed, {:.2} s per input   ", el, el / n as f64);
        },
    );
    if finished_n.load(Ordering::SeqCst) > 0 {
        eprintln!();
    }
    failed.extend(summary.failed.iter().cloned());
    for f in &failed {
        eprintln!("failed: {f}");
    }
    let stopped = match &summary.stopped {
        Some(Some(why)) => Some(format!("stopped: {why}")),
        Some(None) => Some(match super::interrupt::received() {
            Some(sig) => format!("stopped by {sig} at a denoising-step boundary"),
            None => "cancelled".to_string(),
        }),
        None => None,
    };
    if let Some(why) = &stopped {
        eprintln!(
            "{why}; {} input(s) not done. Run the same command again to resume: inputs whose outputs exist are \
             skipped, and the rest give what an uninterrupted run gives.",
            summary.not_done
        );
    }
    for line in summary.throughput_lines() {
        eprintln!("{line}");
    }
    println!(
        "{} written, {} skipped (already done), {} failed; outputs in {} ({:.1} s)",
        summary.done,
        done.len(),
        failed.len(),
        out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(failed.is_empty() && stopped.is_none())
}

/// One batch on one engine: load, predict, write. A load failure fails that input alone; a
/// prediction error on the inputs fails the batch (the runner retries it input by input); a
/// failed write or a device error stops the run.
fn run_batch(
    engine: &AnyEngine,
    task: TaskKind,
    batch: &[&Job],
    sample: &SampleOptions,
    out: &Path,
    res: usize,
) -> Result<Vec<Outcome>, BatchError> {
    let mut outcomes = vec![Outcome::Done; batch.len()];
    let mut requests = Vec::new();
    let mut loaded = Vec::new();
    for (i, job) in batch.iter().enumerate() {
        match load_job(task, job, res) {
            Ok((req, size)) => {
                requests.push(req);
                loaded.push((i, size));
            }
            Err(e) => outcomes[i] = Outcome::Failed(format!("{e:#}")),
        }
    }
    let preds = engine.predict(&requests, sample).map_err(|e| match e {
        crate::error::Error::Cancelled => BatchError::Cancelled,
        e @ (crate::error::Error::Input(_) | crate::error::Error::Shape(_)) => {
            BatchError::Inputs(format!("{}: {e}", batch[0].inputs[0].display()))
        }
        e => BatchError::Fatal(e.to_string()),
    })?;
    for ((i, (w, h)), pred) in loaded.into_iter().zip(&preds) {
        let job = batch[i];
        // A write that fails (a full disk, a folder gone or read-only) would fail for the next
        // input too: stop the run, keep everything written so far.
        write_outputs(task, pred, &job.stem, out, res, w, h, sample.ensemble)
            .map_err(|e| BatchError::Fatal(format!("{}: {e:#}", job.inputs[0].display())))?;
    }
    Ok(outcomes)
}

/// A fingerprint of the model the run uses (see `manifest::fingerprint`).
fn model_fingerprint(model: &ModelArgs) -> String {
    let spec = model.model.clone().or_else(|| std::env::var("PERCEPT_MODEL").ok().filter(|s| !s.is_empty()));
    let spec = spec.unwrap_or_else(|| {
        model_file::demo_model_candidates()
            .into_iter()
            .find(|p| p.exists())
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    });
    let sd2 = model.sd2.clone().or_else(|| std::env::var_os("PERCEPT_SD2").map(PathBuf::from));
    let mut files: Vec<PathBuf> = Vec::new();
    if Path::new(&spec).is_file() {
        files.push(PathBuf::from(&spec));
    }
    if let Some(dir) = &sd2 {
        files.push(dir.join("vae").join("diffusion_pytorch_model.safetensors"));
    }
    let name = Path::new(&spec).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(spec.clone());
    super::manifest::fingerprint(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>(), &name)
}

/// The options that change a run's outputs, as its run records keep them.
fn output_options(task: TaskKind, sample: &SampleOptions, engine: &AnyEngine) -> serde_json::Value {
    let backend = match engine {
        AnyEngine::Cpu(_) => "cpu f32",
        AnyEngine::Emu(_) => "cuda-emu bf16",
        AnyEngine::Gpu(_) => "cuda bf16",
    };
    serde_json::json!({
        "task": format!("{task:?}").to_lowercase(),
        "steps": sample.steps,
        "ensemble": sample.ensemble,
        "seed": sample.seed,
        "backend": backend,
    })
}

fn is_mask_path(p: &Path) -> bool {
    let s = p.to_string_lossy().to_lowercase();
    s.contains("mask")
}

/// Load a job's images at the model's resolution; also returns the (upright) input size.
fn load_job(task: TaskKind, job: &Job, res: usize) -> Result<(Request, (usize, usize))> {
    let first = load_rgb(&job.inputs[0]).with_context(|| format!("{}", job.inputs[0].display()))?;
    let size = (first.width, first.height);
    let rgb = to_model(&first, res)?;
    let prompt = match task {
        TaskKind::Depth => depth_prompt(res),
        TaskKind::Flow => {
            let second = load_rgb(&job.inputs[1]).with_context(|| format!("{}", job.inputs[1].display()))?;
            to_model(&second, res)?
        }
        TaskKind::Segment => {
            let mask = load_mask(&job.inputs[1]).with_context(|| format!("{}", job.inputs[1].display()))?;
            segment_prompt(&mask, res)?
        }
    };
    Ok((Request { task, rgb, prompt }, size))
}

/// The segment prompt: a visible-object mask (one plane in [0, 1]) at the model's resolution
/// (nearest resize) as 3 channels of -1/1.
pub fn segment_prompt(mask: &Image, res: usize) -> Result<Tensor> {
    let m = resize_nearest(&mask.data, mask.width, mask.height, res, res)?;
    let plane: Vec<f32> = m.iter().map(|&v| if v > 0.5 { 1.0 } else { -1.0 }).collect();
    Ok(Tensor::new(vec![3, res, res], [plane.clone(), plane.clone(), plane].concat())?)
}

/// A prediction brought to an input's size, as the task commands write it.
pub enum AtInputSize {
    /// Relative depth in [0, 1] and, for an ensemble, its spread.
    Depth { depth: Vec<f32>, uncertainty: Option<Vec<f32>> },
    /// Pixels at the input's resolution.
    Flow(Flow),
    /// The amodal image [3, h, w] in [0, 1] and its object mask (0/1, found at the model's
    /// resolution and resized nearest).
    Segment { image: Vec<f32>, mask: Vec<f32> },
}

/// Resize a prediction at the model's resolution `res` to `w` x `h`: bilinear for values,
/// nearest for the mask; flow is rescaled to pixels at the new size.
pub fn to_input_size(pred: &Prediction, res: usize, w: usize, h: usize) -> Result<AtInputSize> {
    let back = |plane: &[f32]| resize_bilinear(plane, res, res, w, h);
    Ok(match pred {
        Prediction::Depth { depth, uncertainty } => AtInputSize::Depth {
            depth: back(depth)?.into_iter().map(|v| v.clamp(0.0, 1.0)).collect(),
            uncertainty: uncertainty.as_deref().map(back).transpose()?,
        },
        Prediction::Flow { u, v } => {
            let (sx, sy) = (w as f32 / res as f32, h as f32 / res as f32);
            let u: Vec<f32> = back(u)?.into_iter().map(|x| x * sx).collect();
            let v: Vec<f32> = back(v)?.into_iter().map(|x| x * sy).collect();
            AtInputSize::Flow(Flow { width: w, height: h, u, v })
        }
        Prediction::Segment { image } => {
            let img01: Vec<f32> = image.iter().map(|v| (v + 1.0) / 2.0).collect();
            let mask_f: Vec<f32> = amodal_mask(&img01).iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
            AtInputSize::Segment {
                image: resize_bilinear(&img01, res, res, w, h)?,
                mask: resize_nearest(&mask_f, res, res, w, h)?,
            }
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn write_outputs(
    task: TaskKind,
    pred: &Prediction,
    stem: &Path,
    out: &Path,
    res: usize,
    w: usize,
    h: usize,
    k: usize,
) -> Result<()> {
    let paths = outputs_for(task, stem, out, k);
    match to_input_size(pred, res, w, h)? {
        AtInputSize::Depth { depth, uncertainty } => {
            save_png_rgb8(&paths[0], w, h, &colorize_depth(&depth))?;
            save_png_gray16(&paths[1], w, h, &depth)?;
            write_npy_f32(&paths[2], &[h, w], &depth)?;
            if let (Some(u), Some(p)) = (uncertainty, paths.get(3)) {
                save_png_gray16(p, w, h, &u)?;
            }
        }
        AtInputSize::Flow(flow) => {
            save_png_rgb8(&paths[1], w, h, &flow_to_color(&flow.u, &flow.v)?)?;
            write_flo(&paths[0], &flow)?;
        }
        AtInputSize::Segment { image, mask } => {
            save_png_rgb8(&paths[0], w, h, &image)?;
            save_png_gray8(&paths[1], w, h, &mask)?;
        }
    }
    Ok(())
}
