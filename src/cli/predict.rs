//! `percept depth | flow | segment`: files in, outputs beside each other under `--out`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{BackendArg, ModelArgs};
use crate::api::{
    AmodalResult, DepthResult, Device, FlowResult, ImageView, Model, Options, Precision, Session, SessionOptions,
};
use crate::backend::cuda::gpu::GpuDevice;
use crate::io::flo::{write_flo, Flow};
use crate::io::image::{load_mask, load_rgb, save_png_gray16, save_png_gray8, save_png_rgb8, Image};
use crate::io::inputs::{expand_inputs, output_stems, pair_flow_frames, pair_segment};
use crate::io::npy::write_npy_f32;
use crate::pipeline::tasks::{SampleOptions, TaskKind};
use crate::postprocess::color::{colorize_depth, flow_to_color};

/// One unit of work: the input files, its output stem, and the size to write outputs at.
struct Job {
    inputs: Vec<PathBuf>,
    stem: PathBuf,
}

/// The device a `--backend` names. The emulator runs what the GPU would (bf16 storage).
pub fn session_options(backend: BackendArg) -> SessionOptions {
    match backend {
        BackendArg::Auto => SessionOptions::new(Device::Auto),
        BackendArg::Cpu => SessionOptions::new(Device::Cpu { threads: None }),
        BackendArg::Cuda => SessionOptions::new(Device::Cuda { ordinal: 0 }),
        BackendArg::CudaEmu => SessionOptions::new(Device::CudaEmu).with_precision(Precision::Bf16),
    }
}

/// Load the model and open a session on the requested backend, saying which one runs.
pub fn session(model: &ModelArgs) -> Result<Session> {
    let t = Instant::now();
    // A GPU that was asked for and is not there fails before the model is read or generated.
    if model.backend == BackendArg::Cuda {
        GpuDevice::open(0)?;
    }
    let m = Model::open_spec(model.model_spec().as_deref(), model.sd2_dir().as_deref())?;
    // On a GPU the weights are stored in bf16 (f32 accumulation); `percept verify --precision
    // f32` checks the f32 path.
    let session = Session::with_options(&m, session_options(model.backend))?;
    log::info!("loaded {} in {:.1} s", m.description(), t.elapsed().as_secs_f64());
    let cfg = m.config();
    eprintln!(
        "model: {} ({} px, DiT depth {} hidden {}, {} experts) on {}",
        m.description(),
        cfg.resolution,
        cfg.dit.depth,
        cfg.dit.hidden_size,
        cfg.dit.num_experts,
        session.device_name()
    );
    Ok(session)
}

/// The API's options for the sampling flags (`batch` inputs per model batch).
pub fn api_options(sample: &SampleOptions, batch: usize) -> Options {
    Options {
        num_inference_steps: sample.steps,
        ensemble_size: sample.ensemble,
        seed: sample.seed,
        batch_size: batch.max(1),
        output_uncertainty: true,
        progress: sample.control.progress.clone(),
        ..Default::default()
    }
}

/// A loaded image (planes in [0, 1]) as a view the API reads: interleaved f32, exactly the
/// same values.
pub struct Interleaved {
    width: usize,
    height: usize,
    channels: usize,
    data: Vec<f32>,
}

impl Interleaved {
    pub fn new(img: &Image) -> Interleaved {
        let n = img.width * img.height;
        let c = img.channels;
        let data = (0..n).flat_map(|p| (0..c).map(move |ch| (ch, p))).map(|(ch, p)| img.data[ch * n + p]).collect();
        Interleaved { width: img.width, height: img.height, channels: c, data }
    }
    pub fn view(&self) -> Result<ImageView<'_>> {
        Ok(if self.channels == 1 {
            ImageView::gray_f32(&self.data, self.width, self.height)?
        } else {
            ImageView::rgb_f32(&self.data, self.width, self.height)?
        })
    }
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
    let mut session = session(model)?;
    if let Some(token) = &sample.control.cancel {
        session.set_cancel_token(token.clone());
    }
    let opts = api_options(sample, batch);
    let total = todo.len();
    let start = Instant::now();
    let mut written = 0usize;
    for (bi, chunk) in todo.chunks(batch.max(1)).enumerate() {
        let mut loaded = Vec::new();
        let mut ok_jobs = Vec::new();
        for job in chunk {
            match load_job(task, job) {
                Ok(images) => {
                    loaded.push(images);
                    ok_jobs.push(job);
                }
                Err(e) => failed.push(format!("{e:#}")),
            }
        }
        let results = predict(&mut session, task, &loaded, &opts)?;
        for (job, result) in ok_jobs.iter().zip(&results) {
            match write_outputs(result, &job.stem, out, sample.ensemble) {
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

/// Load a job's images: the image, and the second frame or the mask (CHW planes in [0, 1]).
fn load_job(task: TaskKind, job: &Job) -> Result<Vec<Interleaved>> {
    let first = load_rgb(&job.inputs[0]).with_context(|| format!("{}", job.inputs[0].display()))?;
    let mut images = vec![Interleaved::new(&first)];
    match task {
        TaskKind::Depth => {}
        TaskKind::Flow => {
            let second = load_rgb(&job.inputs[1]).with_context(|| format!("{}", job.inputs[1].display()))?;
            images.push(Interleaved::new(&second));
        }
        TaskKind::Segment => {
            let mask = load_mask(&job.inputs[1]).with_context(|| format!("{}", job.inputs[1].display()))?;
            images.push(Interleaved::new(&mask));
        }
    }
    Ok(images)
}

/// A task's result at its input's size.
pub enum TaskResult {
    Depth(DepthResult),
    Flow(FlowResult),
    Segment(AmodalResult),
}

/// One batch of loaded jobs through the session.
fn predict(
    session: &mut Session,
    task: TaskKind,
    loaded: &[Vec<Interleaved>],
    opts: &Options,
) -> Result<Vec<TaskResult>> {
    if loaded.is_empty() {
        return Ok(vec![]);
    }
    let views = loaded
        .iter()
        .map(|imgs| imgs.iter().map(Interleaved::view).collect::<Result<Vec<_>>>())
        .collect::<Result<Vec<_>>>()?;
    let pairs = || views.iter().map(|v| (v[0], v[1])).collect::<Vec<_>>();
    Ok(match task {
        TaskKind::Depth => {
            let images: Vec<ImageView> = views.iter().map(|v| v[0]).collect();
            session.depth_batch(&images, opts)?.into_iter().map(TaskResult::Depth).collect()
        }
        TaskKind::Flow => session.flow_batch(&pairs(), opts)?.into_iter().map(TaskResult::Flow).collect(),
        TaskKind::Segment => session.amodal_batch(&pairs(), opts)?.into_iter().map(TaskResult::Segment).collect(),
    })
}

/// Interleaved pixels (`channels` per pixel) as CHW planes, as the file writers take them.
pub fn planar(data: &[f32], channels: usize) -> Vec<f32> {
    let n = data.len() / channels.max(1);
    (0..channels).flat_map(|c| (0..n).map(move |p| data[p * channels + c])).collect()
}

fn write_outputs(result: &TaskResult, stem: &Path, out: &Path, k: usize) -> Result<()> {
    match result {
        TaskResult::Depth(r) => {
            let paths = outputs_for(TaskKind::Depth, stem, out, k);
            let (w, h) = (r.width, r.height);
            save_png_rgb8(&paths[0], w, h, &colorize_depth(&r.depth))?;
            save_png_gray16(&paths[1], w, h, &r.depth)?;
            write_npy_f32(&paths[2], &[h, w], &r.depth)?;
            if let (Some(u), Some(p)) = (&r.uncertainty, paths.get(3)) {
                save_png_gray16(p, w, h, u)?;
            }
        }
        TaskResult::Flow(r) => {
            let paths = outputs_for(TaskKind::Flow, stem, out, k);
            let uv = planar(&r.flow, 2);
            let n = r.width * r.height;
            let flow = Flow { width: r.width, height: r.height, u: uv[..n].to_vec(), v: uv[n..].to_vec() };
            save_png_rgb8(&paths[1], r.width, r.height, &flow_to_color(&flow.u, &flow.v)?)?;
            write_flo(&paths[0], &flow)?;
        }
        TaskResult::Segment(r) => {
            let paths = outputs_for(TaskKind::Segment, stem, out, k);
            let mask: Vec<f32> = r.mask.iter().map(|&m| m as f32).collect();
            save_png_rgb8(&paths[0], r.width, r.height, &planar(&r.rgb, 3))?;
            save_png_gray8(&paths[1], r.width, r.height, &mask)?;
        }
    }
    Ok(())
}
