//! `percept eval`: a task over a dataset with ground truth (Hypersim depth, FlyingChairs flow,
//! Pix2Gestalt amodal segmentation). Per-sample and mean metrics, with the baselines the demo's
//! claims are measured against, go to the terminal and to `metrics.json`; one panel per sample
//! (input | prediction | ground truth) goes beside it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::builder::PossibleValue;
use clap::{Args, ValueEnum};
use serde_json::{json, Map, Value};

use super::panels::{depth_panel, flow_panel, segment_panel};
use super::predict::{api_options, planar, session, Interleaved};
use super::shard::Shard;
use super::ModelArgs;
use crate::api::{AmodalResult, DepthResult, FlowResult, ImageView, Options, Session};
use crate::data::chairs::{self, ChairsSample, VALIDATION};
use crate::data::gestalt::{self, GestaltData, GestaltSample};
use crate::data::hypersim::{self, DepthGt, HypersimSample, MAX_DEPTH_M, MIN_DEPTH_M};
use crate::io::flo::Flow;
use crate::io::image::{save_png_rgb8, Image};
use crate::model::task::Task;
use crate::pipeline::tasks::SampleOptions;
use crate::postprocess::metrics::{depth_metrics, epe, epe_with_fit, mask_iou, psnr};

/// The file the metrics go to, inside `--out`.
pub const METRICS_FILE: &str = "metrics.json";

/// `--task`: the task's own name, with the dataset layout `eval` reads for it.
impl ValueEnum for Task {
    fn value_variants<'a>() -> &'a [Self] {
        &Task::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let layout = match self {
            Task::Depth => "Hypersim: scene folders `ai_*` (or `val/ai_*`), optionally a `--list` of `RGB DEPTH` pairs",
            Task::Flow => "FlyingChairs: `FlyingChairs_train_val.txt` and `data/`; the validation split (2)",
            Task::Segment => "Pix2Gestalt: `occlusion/`, `visible_object_mask/`, `whole/`, `whole_mask/`",
        };
        Some(PossibleValue::new(self.name()).help(layout))
    }
}

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    #[arg(long, value_enum)]
    pub task: Task,
    /// Dataset folder (its layout depends on --task).
    #[arg(long)]
    pub data: PathBuf,
    /// Hypersim file list: `RGB DEPTH` paths relative to --data, one pair a line [default: every
    /// rgb_*.png found].
    #[arg(long)]
    pub list: Option<PathBuf>,
    /// Output folder [default: percept_eval_TASK].
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// DDIM steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Ensemble members per sample.
    #[arg(long, default_value_t = 1)]
    pub ensemble: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples per batch.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Take part I of N of the samples (every sample whose position is I modulo N); each shard
    /// writes metrics-shard-I-of-N.json, and the last to finish merges them into metrics.json
    /// [default: from Slurm's array variables, or JOB_COMPLETION_INDEX with --shard-count; 0/1
    /// turns that off].
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// The shard count of a Kubernetes Indexed Job (see the task commands).
    #[arg(long, value_name = "N")]
    pub shard_count: Option<usize>,
}

impl EvalArgs {
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| PathBuf::from(format!("percept_eval_{}", self.task.name())))
    }
}

/// Named metric values of one sample, in display order.
pub type Scores = Vec<(&'static str, f64)>;

/// Depth: AbsRel and delta1 of the prediction (relative depth; any affine relation to metres)
/// after the least-squares scale and shift on the valid pixels, clamped to Hypersim's range;
/// the `_constant` baseline is a constant prediction, which the fit turns into the valid mean.
pub fn depth_scores(pred: &[f32], gt: &DepthGt) -> Result<Scores> {
    let range = Some((MIN_DEPTH_M as f64, MAX_DEPTH_M as f64));
    let m = depth_metrics(pred, &gt.depth, &gt.valid, range)?;
    let constant = depth_metrics(&vec![0.0; pred.len()], &gt.depth, &gt.valid, range)?;
    Ok(vec![
        ("abs_rel", m.abs_rel),
        ("delta1", m.delta1),
        ("abs_rel_constant", constant.abs_rel),
        ("delta1_constant", constant.delta1),
    ])
}

/// Flow: end-point error in pixels at the ground truth's resolution, raw and after the
/// per-component least-squares fit; the `_zero` baseline is no motion.
pub fn flow_scores(pred: &Flow, gt: &Flow) -> Result<Scores> {
    let raw = epe(&pred.u, &gt.u, &pred.v, &gt.v)?;
    let [fit, ..] = epe_with_fit(&pred.u, &gt.u, &pred.v, &gt.v)?;
    let zeros = vec![0.0; gt.u.len()];
    let zero = epe(&zeros, &gt.u, &zeros, &gt.v)?;
    Ok(vec![("epe", raw), ("epe_fit", fit), ("epe_zero", zero)])
}

/// Amodal segmentation: IoU of the predicted object mask (0/1) with the whole mask, PSNR of the
/// predicted whole-object image ([3, h, w] in [0, 1], peak 1); the `_visible` baseline is the
/// visible mask taken as the answer.
pub fn segment_scores(image: &[f32], mask: &[f32], gt: &GestaltData) -> Result<Scores> {
    let binary = |plane: &[f32]| plane.iter().map(|&v| v > 0.5).collect::<Vec<bool>>();
    let whole_mask = binary(&gt.whole_mask.data);
    let iou = mask_iou(&binary(mask), &whole_mask)?;
    let visible = mask_iou(&binary(&gt.visible_mask.data), &whole_mask)?;
    Ok(vec![("iou", iou), ("psnr", psnr(image, &gt.whole.data, 1.0)?), ("iou_visible", visible)])
}

enum Sample {
    Depth(HypersimSample),
    Flow(ChairsSample),
    Segment(GestaltSample),
}

impl Sample {
    fn name(&self) -> &str {
        match self {
            Sample::Depth(s) => &s.name,
            Sample::Flow(s) => &s.name,
            Sample::Segment(s) => &s.name,
        }
    }
}

enum Truth {
    Depth { input: Image, gt: DepthGt },
    Flow { input: Image, gt: Flow },
    Segment(GestaltData),
}

impl Truth {
    fn size(&self) -> (usize, usize) {
        match self {
            Truth::Depth { gt, .. } => (gt.width, gt.height),
            Truth::Flow { gt, .. } => (gt.width, gt.height),
            Truth::Segment(d) => (d.whole.width, d.whole.height),
        }
    }
}

/// One evaluated sample.
struct Scored {
    name: String,
    scores: Scores,
}

fn list_samples(args: &EvalArgs) -> Result<(Vec<Sample>, usize)> {
    if args.list.is_some() && args.task != Task::Depth {
        bail!("--list is for --task depth (a Hypersim file list); FlyingChairs uses its split file and Pix2Gestalt its folders");
    }
    Ok(match args.task {
        Task::Depth => {
            let (s, skipped) = hypersim::list(&args.data, args.list.as_deref())?;
            (s.into_iter().map(Sample::Depth).collect(), skipped)
        }
        Task::Flow => {
            let (s, skipped) = chairs::list(&args.data, VALIDATION)?;
            (s.into_iter().map(Sample::Flow).collect(), skipped)
        }
        Task::Segment => {
            let (s, skipped) = gestalt::list(&args.data)?;
            (s.into_iter().map(Sample::Segment).collect(), skipped)
        }
    })
}

/// The depth prompt's source with ground truth: its valid mask as one plane of 0/1.
fn valid_mask(gt: &DepthGt) -> Image {
    let data = gt.valid.iter().map(|&v| if v { 1.0 } else { 0.0 }).collect();
    Image { width: gt.width, height: gt.height, channels: 1, data }
}

/// Read a sample's files: the model's two inputs (image and prompt source) and the truth.
fn load(sample: &Sample) -> Result<([Interleaved; 2], Truth)> {
    Ok(match sample {
        Sample::Depth(s) => {
            let (input, gt) = hypersim::load(s)?;
            ([Interleaved::new(&input), Interleaved::new(&valid_mask(&gt))], Truth::Depth { input, gt })
        }
        Sample::Flow(s) => {
            let (img1, img2, gt) = chairs::load(s)?;
            ([Interleaved::new(&img1), Interleaved::new(&img2)], Truth::Flow { input: img1, gt })
        }
        Sample::Segment(s) => {
            let d = gestalt::load(s)?;
            ([Interleaved::new(&d.occlusion), Interleaved::new(&d.visible_mask)], Truth::Segment(d))
        }
    })
}

/// A prediction at the ground truth's size.
enum Predicted {
    Depth(DepthResult),
    Flow(FlowResult),
    Segment(AmodalResult),
}

/// One batch of samples of `task` through the session.
fn predict(session: &mut Session, task: Task, inputs: &[[Interleaved; 2]], opts: &Options) -> Result<Vec<Predicted>> {
    let pairs =
        inputs.iter().map(|[a, b]| Ok((a.view()?, b.view()?))).collect::<Result<Vec<(ImageView, ImageView)>>>()?;
    Ok(match task {
        Task::Depth => session.depth_batch_with_valid_masks(&pairs, opts)?.into_iter().map(Predicted::Depth).collect(),
        Task::Flow => session.flow_batch(&pairs, opts)?.into_iter().map(Predicted::Flow).collect(),
        Task::Segment => session.amodal_batch(&pairs, opts)?.into_iter().map(Predicted::Segment).collect(),
    })
}

/// Metrics and panel of one prediction at the ground truth's size.
fn score(name: &str, pred: &Predicted, truth: &Truth, out: &Path) -> Result<Scored> {
    let (w, h) = truth.size();
    let (scores, panel) = match (pred, truth) {
        (Predicted::Depth(r), Truth::Depth { input, gt }) => {
            (depth_scores(&r.depth, gt)?, depth_panel(input, &r.depth, gt)?)
        }
        (Predicted::Flow(r), Truth::Flow { input, gt }) => {
            let uv = planar(&r.flow, 2);
            let n = r.width * r.height;
            let flow = Flow { width: r.width, height: r.height, u: uv[..n].to_vec(), v: uv[n..].to_vec() };
            (flow_scores(&flow, gt)?, flow_panel(input, &flow, gt)?)
        }
        (Predicted::Segment(r), Truth::Segment(gt)) => {
            let image = planar(&r.rgb, 3);
            let mask: Vec<f32> = r.mask.iter().map(|&m| m as f32).collect();
            (segment_scores(&image, &mask, gt)?, segment_panel(&image, gt)?)
        }
        _ => bail!("the prediction is for another task than the sample"),
    };
    if (w, h) != (pred_size(pred)) {
        bail!("the prediction is {:?}, the ground truth {w}x{h}", pred_size(pred));
    }
    save_png_rgb8(&panel_path(out, name), 3 * w, h, &panel)?;
    Ok(Scored { name: name.to_string(), scores })
}

fn pred_size(pred: &Predicted) -> (usize, usize) {
    match pred {
        Predicted::Depth(r) => (r.width, r.height),
        Predicted::Flow(r) => (r.width, r.height),
        Predicted::Segment(r) => (r.width, r.height),
    }
}

/// Where a sample's panel goes.
pub fn panel_path(out: &Path, name: &str) -> PathBuf {
    out.join(format!("{name}_panel.png"))
}

/// Run `percept eval`. Returns false if any sample failed (exit 1); nothing is written when no
/// sample succeeded.
pub fn run(args: &EvalArgs) -> Result<bool> {
    let out = args.out_dir();
    let (samples, skipped) = list_samples(args).with_context(|| format!("listing {} samples", args.task.name()))?;
    if skipped > 0 {
        eprintln!("skipped {skipped} sample(s) whose files are absent");
    }
    if samples.is_empty() {
        bail!("no {} samples with all their files in {}", args.task.name(), args.data.display());
    }
    let shard = super::shard::choose(args.shard.as_deref(), args.shard_count, &|k| std::env::var(k).ok())
        .map_err(anyhow::Error::msg)?;
    let samples = match shard {
        Some((s, from)) => {
            let all = samples.len();
            let samples = s.select(samples);
            eprintln!("shard {s} ({}): {} of {all} samples", from.describe(), samples.len());
            samples
        }
        None => samples,
    };
    let cancel = super::interrupt::install();
    let created = super::outdir::prepare(&out)?;
    let mut session = session(&args.model)?;
    session.set_cancel_token(cancel.clone());
    let sample_opts =
        SampleOptions { steps: args.steps, ensemble: args.ensemble, seed: args.seed, ..Default::default() };
    let opts = api_options(&sample_opts, args.batch);
    let start = Instant::now();
    let mut scored: Vec<Scored> = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut done = 0;
    for chunk in samples.chunks(args.batch.max(1)) {
        if cancel.is_cancelled() {
            break;
        }
        let mut inputs = Vec::new();
        let mut truths = Vec::new();
        for s in chunk {
            match load(s) {
                Ok((input, truth)) => {
                    inputs.push(input);
                    truths.push((s.name(), truth));
                }
                Err(e) => failed.push((s.name().to_string(), format!("{e:#}"))),
            }
        }
        match predict(&mut session, args.task, &inputs, &opts) {
            Err(e) if e.chain().any(|c| matches!(c.downcast_ref(), Some(crate::error::Error::Cancelled))) => break,
            Ok(preds) => {
                for ((name, truth), pred) in truths.iter().zip(&preds) {
                    match score(name, pred, truth, &out) {
                        Ok(s) => scored.push(s),
                        Err(e) => failed.push((name.to_string(), format!("{e:#}"))),
                    }
                }
            }
            Err(e) => failed.extend(truths.iter().map(|(name, _)| (name.to_string(), format!("{e:#}")))),
        }
        done += chunk.len();
        let el = start.elapsed().as_secs_f64();
        eprint!("\r[{done}/{}] {el:.1} s elapsed, {:.2} s per sample   ", samples.len(), el / done as f64);
    }
    eprintln!();
    for (name, why) in &failed {
        eprintln!("failed: {name}: {why}");
    }
    if let Some(sig) = super::interrupt::received() {
        // Means over part of the data would pass for the real numbers: no metrics.json.
        eprintln!(
            "stopped by {sig} at a denoising-step boundary after {done} of {} samples; metrics.json not written \
             (run the command again for the full evaluation)",
            samples.len()
        );
        return Ok(false);
    }
    let mean = mean_scores(&scored);
    print_table(&scored, &mean);
    println!(
        "{} evaluated, {} failed, {skipped} skipped (files absent) ({:.1} s)",
        scored.len(),
        failed.len(),
        start.elapsed().as_secs_f64()
    );
    if scored.is_empty() {
        eprintln!("no sample succeeded; nothing written");
        if created {
            let _ = std::fs::remove_dir(&out); // only if still empty
        }
        return Ok(false);
    }
    let report = metrics_json(args, &scored, &mean, &failed, skipped);
    let Some((shard, _)) = shard else {
        write_metrics(&out.join(METRICS_FILE), &report)?;
        println!("metrics and panels in {}", out.display());
        return Ok(failed.is_empty());
    };
    write_metrics(&out.join(shard_metrics_file(shard)), &report)?;
    // The last shard to finish (any that finds every shard's file) writes the job's metrics.
    let parts: Option<Vec<Value>> = (0..shard.count)
        .map(|index| {
            let text =
                std::fs::read_to_string(out.join(shard_metrics_file(Shard { index, count: shard.count }))).ok()?;
            serde_json::from_str(&text).ok()
        })
        .collect();
    match parts {
        Some(parts) => {
            write_metrics(&out.join(METRICS_FILE), &merge_shard_metrics(&parts))?;
            println!("every shard is done: metrics of the whole job and panels in {}", out.display());
        }
        None => println!("shard {shard} metrics and panels in {}", out.display()),
    }
    Ok(failed.is_empty())
}

fn shard_metrics_file(s: Shard) -> String {
    format!("metrics-{}.json", s.file_tag())
}

fn write_metrics(path: &Path, report: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(report).context("metrics as JSON")?;
    crate::io::atomic::write(path, text.as_bytes())?;
    Ok(())
}

/// One job's metrics from its shards' files: every sample once (in shard order), the means over
/// all of them (an unrepresentable value, e.g. an exact match's infinite PSNR, counts as
/// infinite, as it does unsharded), the failures and skips of every shard.
pub fn merge_shard_metrics(parts: &[Value]) -> Value {
    let samples: Vec<Value> = parts.iter().flat_map(|p| p["samples"].as_array().cloned().unwrap_or_default()).collect();
    let keys: Vec<String> = samples
        .first()
        .and_then(Value::as_object)
        .map(|o| o.keys().filter(|k| *k != "name").cloned().collect())
        .unwrap_or_default();
    let mean: Map<String, Value> = keys
        .iter()
        .map(|k| {
            let sum: f64 = samples.iter().map(|s| s[k].as_f64().unwrap_or(f64::INFINITY)).sum();
            (k.clone(), number(sum / samples.len() as f64))
        })
        .collect();
    let failed: Vec<Value> = parts.iter().flat_map(|p| p["failed"].as_array().cloned().unwrap_or_default()).collect();
    json!({
        "task": parts.first().map(|p| p["task"].clone()).unwrap_or(Value::Null),
        "mean": mean,
        "samples": samples,
        "failed": failed,
        "skipped": parts.first().map(|p| p["skipped"].clone()).unwrap_or(Value::Null),
        "options": parts.first().map(|p| p["options"].clone()).unwrap_or(Value::Null),
        "shards": parts.len(),
    })
}

/// Per-metric means over the evaluated samples (in the samples' metric order).
fn mean_scores(scored: &[Scored]) -> Scores {
    let Some(first) = scored.first() else { return vec![] };
    first
        .scores
        .iter()
        .enumerate()
        .map(|(i, (key, _))| (*key, scored.iter().map(|s| s.scores[i].1).sum::<f64>() / scored.len() as f64))
        .collect()
}

/// A finite number, or null (JSON has no infinity: an exact PSNR match is infinite).
fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null)
}

fn metrics_json(
    args: &EvalArgs,
    scored: &[Scored],
    mean: &Scores,
    failed: &[(String, String)],
    skipped: usize,
) -> Value {
    let object = |scores: &Scores| scores.iter().map(|(k, v)| (k.to_string(), number(*v))).collect::<Map<_, _>>();
    let samples: Vec<Value> = scored
        .iter()
        .map(|s| {
            let mut o = Map::new();
            o.insert("name".into(), json!(s.name));
            o.extend(object(&s.scores));
            Value::Object(o)
        })
        .collect();
    json!({
        "task": args.task.name(),
        "mean": object(mean),
        "samples": samples,
        "failed": failed.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "skipped": skipped,
        "options": {"steps": args.steps, "ensemble": args.ensemble, "seed": args.seed},
    })
}

fn print_table(scored: &[Scored], mean: &Scores) {
    let Some(first) = scored.first() else { return };
    let name_w = scored.iter().map(|s| s.name.len()).max().unwrap_or(0).max(6);
    let widths: Vec<usize> = first.scores.iter().map(|(k, _)| k.len().max(10) + 2).collect();
    let header: String = first.scores.iter().zip(&widths).map(|((k, _), w)| format!("{k:>w$}")).collect();
    println!("{:<name_w$}{header}", "sample");
    let row = |name: &str, scores: &Scores| {
        let cells: String = scores.iter().zip(&widths).map(|((_, v), w)| format!("{v:>w$.4}")).collect();
        println!("{name:<name_w$}{cells}");
    };
    for s in scored {
        row(&s.name, &s.scores);
    }
    row("mean", mean);
}
