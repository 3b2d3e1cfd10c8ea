//! `percept depth | flow | segment`: files in, outputs beside each other under `--out`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{BackendArg, ModelArgs};
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
    let src = model_file::resolve(model.model_spec().as_deref(), model.sd2_dir().as_deref())?;
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
    // Resume: skip inputs whose outputs are all there.
    let (done, todo): (Vec<Job>, Vec<Job>) =
        jobs.into_iter().partition(|j| outputs_for(task, &j.stem, out, sample.ensemble).iter().all(|p| p.exists()));
    if !done.is_empty() {
        eprintln!("skipping {} input(s) whose outputs already exist in {}", done.len(), out.display());
    }
    let engine = engine(model)?;
    let res = engine.config().resolution;
    let total = todo.len();
    let start = Instant::now();
    let mut written = 0usize;
    for (bi, chunk) in todo.chunks(batch.max(1)).enumerate() {
        let mut requests = Vec::new();
        let mut sizes = Vec::new();
        let mut ok_jobs = Vec::new();
        for job in chunk {
            match load_job(task, job, res) {
                Ok((req, size)) => {
                    requests.push(req);
                    sizes.push(size);
                    ok_jobs.push(job);
                }
                Err(e) => failed.push(format!("{e:#}")),
            }
        }
        let preds = engine.predict(&requests, sample)?;
        for ((job, pred), (w, h)) in ok_jobs.iter().zip(&preds).zip(&sizes) {
            match write_outputs(task, pred, &job.stem, out, res, *w, *h, sample.ensemble) {
                Ok(()) => written += 1,
                Err(e) => failed.push(format!("{}: {e:#}", job.inputs[0].display())),
            }
        }
        let done_n = ((bi + 1) * batch).min(total);
        let el = start.elapsed().as_secs_f64();
        eprint!("\r[{done_n}/{total}] {:.1} s elapsed, {:.2} s per input   ", el, el / done_n.max(1) as f64);
    }
    if total > 0 {
        eprintln!();
    }
    for f in &failed {
        eprintln!("failed: {f}");
    }
    println!(
        "{written} written, {} skipped (already done), {} failed; outputs in {} ({:.1} s)",
        done.len(),
        failed.len(),
        out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(failed.is_empty())
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
