//! `percept depth | flow | segment`: files in, outputs beside each other under `--out`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::backend::{say_auto_chose_cpu, Chosen};
use super::manifest::{Ledger, Manifest, Record, RunKey, Status};
use super::runner::{BatchError, Outcome};
use super::shard::Shard;
use super::{BackendArg, ModelArgs, ScaleOptions};
use crate::api::{
    AmodalResult, DepthResult, Device, FlowResult, ImageView, Model, Options, Precision, Session, SessionOptions,
};
use crate::backend::cuda::gpu::GpuDevice;
use crate::error::ErrorKind;
use crate::io::flo::{write_flo, Flow};
use crate::io::image::{load_mask, load_rgb, save_png_gray16, save_png_gray8, save_png_rgb8, Image};
use crate::io::inputs::{expand_inputs, output_stems, pair_flow_frames, pair_segment};
use crate::io::npy::write_npy_f32;
use crate::model::task::Task;
use crate::pipeline::tasks::SampleOptions;
use crate::postprocess::color::{colorize_depth, flow_to_color};
use crate::weights::model_file;

/// One unit of work: the input files, its output stem, and the size to write outputs at.
struct Job {
    inputs: Vec<PathBuf>,
    stem: PathBuf,
}

/// The device a `--backend` names at the `--precision` given (`None`: the device's default,
/// bf16 on a GPU, f32 on the CPU and the emulator).
pub fn session_options(backend: BackendArg, precision: Option<super::Precision>) -> SessionOptions {
    let opts = SessionOptions::new(backend.device());
    match precision {
        Some(super::Precision::F32) => opts.with_precision(Precision::F32),
        Some(super::Precision::Bf16) => opts.with_precision(Precision::Bf16),
        None => opts,
    }
}

/// Load the model and open a session on the requested backend, saying which one runs.
pub fn session(model: &ModelArgs) -> Result<Session> {
    let m = open_model(model)?;
    let session = open_session(&m, session_options(model.backend, model.precision))?;
    say_model(&m, &session.device_name());
    Ok(session)
}

/// A session with `opts`, saying why when `--backend auto` chose the CPU.
fn open_session(m: &Model, opts: SessionOptions) -> Result<Session> {
    let session = Session::with_options(m, opts)?;
    if let Some(why) = session.auto_chose_cpu_because() {
        say_auto_chose_cpu(why);
    }
    Ok(session)
}

/// The model of `--model`/`--sd2` (or the environment, or the demo model). A GPU that was asked
/// for and is not there fails before the model is read or generated.
fn open_model(model: &ModelArgs) -> Result<Model> {
    let t = Instant::now();
    if model.backend == BackendArg::Cuda {
        GpuDevice::open(0)?;
    }
    let m = Model::open_spec(model.model_spec().as_deref(), model.sd2_dir().as_deref())?;
    log::info!("loaded {} in {:.1} s", m.description(), t.elapsed().as_secs_f64());
    Ok(m)
}

fn say_model(m: &Model, device: &str) {
    let cfg = m.config();
    eprintln!(
        "model: {} ({} px, DiT depth {} hidden {}, {} experts) on {device}",
        m.description(),
        cfg.resolution,
        cfg.dit.depth,
        cfg.dit.hidden_size,
        cfg.dit.num_experts,
    );
}

/// One session per worker of `--devices` (one session without it): GPUs by ordinal (`all`: every
/// GPU), or with `--backend cpu` / `cuda-emu` as many workers as listed, the CPU's cores split
/// between them. Sessions share the model's weights.
fn worker_sessions(model: &ModelArgs, devices: Option<&str>) -> Result<Vec<Session>> {
    let m = open_model(model)?;
    let opts = session_options(model.backend, model.precision);
    let Some(list) = devices else {
        let s = open_session(&m, opts)?;
        say_model(&m, &s.device_name());
        return Ok(vec![s]);
    };
    let gpu = matches!(model.backend.open()?, Chosen::Gpu(_));
    let ids: Vec<usize> = if list.trim() == "all" {
        if gpu {
            (0..GpuDevice::count()?).collect()
        } else {
            vec![0]
        }
    } else {
        list.split(',')
            .map(|d| d.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| anyhow::anyhow!("--devices \"{list}\": expected a list of device numbers (0,1,...) or all"))?
    };
    if ids.is_empty() {
        bail!("--devices \"{list}\" names no device");
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut sessions = Vec::new();
    for &id in &ids {
        let mut o = opts.clone();
        o.device = if gpu {
            Device::Cuda { ordinal: id }
        } else if model.backend == BackendArg::CudaEmu {
            Device::CudaEmu
        } else {
            Device::Cpu { threads: Some((cores / ids.len()).max(1)) }
        };
        sessions.push(Session::with_options(&m, o).with_context(|| format!("device {id} of --devices {list}"))?);
    }
    let names: Vec<String> = sessions.iter().map(Session::device_name).collect();
    say_model(&m, &format!("{} worker(s): {}", sessions.len(), names.join(", ")));
    Ok(sessions)
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
    pub fn view(&self) -> crate::error::Result<ImageView<'_>> {
        Ok(if self.channels == 1 {
            ImageView::gray_f32(&self.data, self.width, self.height)?
        } else {
            ImageView::rgb_f32(&self.data, self.width, self.height)?
        })
    }
}

fn outputs_for(task: Task, stem: &Path, out: &Path, ensemble: usize) -> Vec<PathBuf> {
    let with = |suffix: &str| {
        let mut name = stem.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        out.join(stem.with_file_name(name))
    };
    match task {
        Task::Depth => {
            let mut v = vec![with("_depth.png"), with("_depth16.png"), with("_depth.npy")];
            if ensemble > 1 {
                v.push(with("_uncertainty.png"));
            }
            v
        }
        Task::Flow => vec![with("_flow.flo"), with("_flow.png")],
        Task::Segment => vec![with("_amodal.png"), with("_mask.png")],
    }
}

/// Run a task over its command-line inputs. Returns false if any input failed.
pub fn run(
    task: Task,
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
        Task::Depth => {
            let stems = output_stems(&files);
            files.into_iter().zip(stems).map(|(f, s)| Job { inputs: vec![f], stem: s }).collect()
        }
        Task::Flow => {
            let pairing = pair_flow_frames(&files);
            for p in &pairing.unpaired {
                failed.push(format!("{}: no second frame to pair it with", p.display()));
            }
            let firsts: Vec<PathBuf> = pairing.pairs.iter().map(|(a, _)| a.clone()).collect();
            let stems = output_stems(&firsts);
            pairing.pairs.into_iter().zip(stems).map(|((a, b), s)| Job { inputs: vec![a, b], stem: s }).collect()
        }
        Task::Segment => {
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
    let mut sessions = worker_sessions(model, scale.devices.as_deref())?;
    for s in &mut sessions {
        s.set_cancel_token(cancel.clone());
    }
    let opts = api_options(sample, batch);

    // Resume: what this model with these options already made is done; outputs of another model
    // or other options are recomputed only with --overwrite.
    let run_key = RunKey { model: model_fingerprint(model), options: output_options(task, sample, &sessions[0]) };
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
    let workers: Vec<(usize, Session)> = sessions.into_iter().enumerate().collect();
    let several = workers.len() > 1;
    let summary = super::runner::run(
        workers,
        |(i, s)| if several { format!("[{i}] {}", s.device_name()) } else { s.device_name() },
        &todo,
        batch,
        |(_, session), batch| run_batch(session, task, batch, &opts, sample.ensemble, out),
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
                    Status::Done => {
                        outputs_of(job).iter().map(|p| p.strip_prefix(out).unwrap_or(p).display().to_string()).collect()
                    }
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

/// One batch on one session: load, predict, write. A load failure fails that input alone; a
/// prediction error on the inputs fails the batch (the runner retries it input by input); a
/// failed write or a device error stops the run.
fn run_batch(
    session: &mut Session,
    task: Task,
    batch: &[&Job],
    opts: &Options,
    ensemble: usize,
    out: &Path,
) -> Result<Vec<Outcome>, BatchError> {
    let mut outcomes = vec![Outcome::Done; batch.len()];
    let mut loaded = Vec::new();
    let mut at = Vec::new();
    for (i, job) in batch.iter().enumerate() {
        match load_job(task, job) {
            Ok(images) => {
                loaded.push(images);
                at.push(i);
            }
            Err(e) => outcomes[i] = Outcome::Failed(format!("{e:#}")),
        }
    }
    let results = predict(session, task, &loaded, opts).map_err(|e| match e.kind() {
        ErrorKind::Cancelled => BatchError::Cancelled,
        ErrorKind::InvalidArgument => BatchError::Inputs(format!("{}: {e}", batch[at[0]].inputs[0].display())),
        _ => BatchError::Fatal(e.to_string()),
    })?;
    for (i, result) in at.into_iter().zip(&results) {
        let job = batch[i];
        // A write that fails (a full disk, a folder gone or read-only) would fail for the next
        // input too: stop the run, keep everything written so far.
        write_outputs(result, &job.stem, out, ensemble)
            .map_err(|e| BatchError::Fatal(format!("{}: {e:#}", job.inputs[0].display())))?;
    }
    Ok(outcomes)
}

/// A fingerprint of the model the run uses (see `manifest::fingerprint`).
fn model_fingerprint(model: &ModelArgs) -> String {
    let spec = model.model_spec().unwrap_or_else(|| {
        model_file::demo_model_candidates()
            .into_iter()
            .find(|p| p.exists())
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    });
    let mut files: Vec<PathBuf> = Vec::new();
    if Path::new(&spec).is_file() {
        files.push(PathBuf::from(&spec));
    }
    if let Some(dir) = model.sd2_dir() {
        files.push(dir.join("vae").join("diffusion_pytorch_model.safetensors"));
    }
    let name = Path::new(&spec).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(spec.clone());
    super::manifest::fingerprint(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>(), &name)
}

/// The options that change a run's outputs, as its run records keep them (the device kind:
/// the CPU computes in f32, a GPU and the emulator in bf16 by default).
fn output_options(task: Task, sample: &SampleOptions, session: &Session) -> serde_json::Value {
    let name = session.device_name();
    let kind = name.split(" (").next().unwrap_or(&name).to_string();
    serde_json::json!({
        "task": task.name(),
        "steps": sample.steps,
        "ensemble": sample.ensemble,
        "seed": sample.seed,
        "device": kind,
    })
}

fn is_mask_path(p: &Path) -> bool {
    let s = p.to_string_lossy().to_lowercase();
    s.contains("mask")
}

/// Load a job's images: the image, and the second frame or the mask (CHW planes in [0, 1]).
fn load_job(task: Task, job: &Job) -> Result<Vec<Interleaved>> {
    let first = load_rgb(&job.inputs[0]).with_context(|| format!("{}", job.inputs[0].display()))?;
    let mut images = vec![Interleaved::new(&first)];
    match task {
        Task::Depth => {}
        Task::Flow => {
            let second = load_rgb(&job.inputs[1]).with_context(|| format!("{}", job.inputs[1].display()))?;
            images.push(Interleaved::new(&second));
        }
        Task::Segment => {
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
    task: Task,
    loaded: &[Vec<Interleaved>],
    opts: &Options,
) -> crate::error::Result<Vec<TaskResult>> {
    if loaded.is_empty() {
        return Ok(vec![]);
    }
    let views = loaded
        .iter()
        .map(|imgs| imgs.iter().map(Interleaved::view).collect::<crate::error::Result<Vec<_>>>())
        .collect::<crate::error::Result<Vec<_>>>()?;
    let pairs = || views.iter().map(|v| (v[0], v[1])).collect::<Vec<_>>();
    Ok(match task {
        Task::Depth => {
            let images: Vec<ImageView> = views.iter().map(|v| v[0]).collect();
            session.depth_batch(&images, opts)?.into_iter().map(TaskResult::Depth).collect()
        }
        Task::Flow => session.flow_batch(&pairs(), opts)?.into_iter().map(TaskResult::Flow).collect(),
        Task::Segment => session.amodal_batch(&pairs(), opts)?.into_iter().map(TaskResult::Segment).collect(),
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
            let paths = outputs_for(Task::Depth, stem, out, k);
            let (w, h) = (r.width, r.height);
            save_png_rgb8(&paths[0], w, h, &colorize_depth(&r.depth))?;
            save_png_gray16(&paths[1], w, h, &r.depth)?;
            write_npy_f32(&paths[2], &[h, w], &r.depth)?;
            if let (Some(u), Some(p)) = (&r.uncertainty, paths.get(3)) {
                save_png_gray16(p, w, h, u)?;
            }
        }
        TaskResult::Flow(r) => {
            let paths = outputs_for(Task::Flow, stem, out, k);
            let uv = planar(&r.flow, 2);
            let n = r.width * r.height;
            let flow = Flow { width: r.width, height: r.height, u: uv[..n].to_vec(), v: uv[n..].to_vec() };
            save_png_rgb8(&paths[1], r.width, r.height, &flow_to_color(&flow.u, &flow.v)?)?;
            write_flo(&paths[0], &flow)?;
        }
        TaskResult::Segment(r) => {
            let paths = outputs_for(Task::Segment, stem, out, k);
            let mask: Vec<f32> = r.mask.iter().map(|&m| m as f32).collect();
            save_png_rgb8(&paths[0], r.width, r.height, &planar(&r.rgb, 3))?;
            save_png_gray8(&paths[1], r.width, r.height, &mask)?;
        }
    }
    Ok(())
}
