//! `percept demo`: the three tasks on the bundled toy data with the embedded demo model, metrics
//! beside the baselines a model must beat, panels in `--out`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::eval::{self, EvalArgs, METRICS_FILE};
use super::ModelArgs;
use crate::model::task::Task;

/// The crate's bundled toy data (fixed at build time), or `toy_data/` beside the executable.
pub fn toy_data_dir() -> PathBuf {
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("toy_data"))) {
        if dir.join("Hypersim_small").is_dir() {
            return dir;
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("toy_data")
}

/// Ensemble members for the amodal task. The demo model's single samples still miss or blot parts
/// of the hidden object (IoU 0.738 at K=1, below the visible mask's 0.796); the per-pixel median of
/// K samples (SPEC's reduction) cancels uncorrelated blots: 0.800 at K=3, 0.804 at K=5 (see
/// tools/train/README.md). Depth and flow already beat their baselines with one sample.
const SEGMENT_ENSEMBLE: usize = 5;

/// One task's result: (metric, model value, baseline name, baseline value, higher is better).
struct Claim {
    task: Task,
    metric: &'static str,
    baseline: &'static str,
    higher_is_better: bool,
}

const CLAIMS: [Claim; 3] = [
    Claim { task: Task::Depth, metric: "abs_rel", baseline: "abs_rel_constant", higher_is_better: false },
    Claim { task: Task::Flow, metric: "epe", baseline: "epe_zero", higher_is_better: false },
    Claim { task: Task::Segment, metric: "iou", baseline: "iou_visible", higher_is_better: true },
];

/// Mean metrics of one eval run, read back from its metrics.json.
fn means(dir: &Path) -> Result<serde_json::Value> {
    let p = dir.join(METRICS_FILE);
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(serde_json::from_str::<serde_json::Value>(&text)?["mean"].clone())
}

pub fn run(out: &Path, model: &ModelArgs, steps: usize, seed: u64) -> Result<bool> {
    let data = toy_data_dir();
    let tasks = [
        (Task::Depth, data.join("Hypersim_small/val"), Some(data.join("data_split/hysim_filename_list_val.txt"))),
        (Task::Flow, data.join("FlyingChairs_small"), None),
        (Task::Segment, data.join("Pix2Gestalt_small/val"), None),
    ];
    // Every task's folder is checked before the first task runs (each eval checks its own too).
    for (task, _, _) in &tasks {
        super::outdir::prepare(&out.join(task.name()))?;
    }
    let mut ok = true;
    for (task, dir, list) in tasks {
        eprintln!("== {} on {}", task.name(), dir.display());
        let args = EvalArgs {
            task,
            data: dir,
            list,
            out: Some(out.join(task.name())),
            model: model.clone(),
            steps,
            ensemble: if task == Task::Segment { SEGMENT_ENSEMBLE } else { 1 },
            seed,
            batch: 8,
            shard: Some("0/1".into()), // the whole toy data set, whatever job array it runs in
            shard_count: None,
        };
        ok &= eval::run(&args)?;
    }
    println!("\n{:<8} {:<8} {:>10}   {:<18} {:>10}  beaten", "task", "metric", "model", "baseline", "value");
    let mut all_beaten = true;
    for c in CLAIMS {
        let m = means(&out.join(c.task.name()))?;
        let (v, b) = (m[c.metric].as_f64().unwrap_or(f64::NAN), m[c.baseline].as_f64().unwrap_or(f64::NAN));
        let beaten = if c.higher_is_better { v > b } else { v < b };
        all_beaten &= beaten;
        println!(
            "{:<8} {:<8} {:>10.4}   {:<18} {:>10.4}  {}",
            c.task,
            c.metric,
            v,
            c.baseline,
            b,
            if beaten { "yes" } else { "NO" }
        );
    }
    println!("panels and metrics.json under {}", out.display());
    if !all_beaten {
        eprintln!("warning: the model does not beat every baseline on this data");
    }
    Ok(ok)
}
