//! `percept status OUT`: what a (possibly sharded) job has done so far, from the run records
//! under `OUT/.percept/`: done, failed and missing inputs for the whole job.

use std::path::Path;

use anyhow::{Context, Result};

use super::manifest::{Ledger, Status};

/// Counts for the whole job.
#[derive(Debug, PartialEq, Eq)]
pub struct JobStatus {
    pub job_inputs: usize,
    pub done: usize,
    pub failed: Vec<(String, String)>,
    /// Planned by some shard, neither done nor failed.
    pub missing: Vec<String>,
    /// Inputs of shards that never wrote a plan (known only by count).
    pub unplanned: usize,
    pub shards: Vec<String>,
    /// Distinct (model, options) among the done records: more than one means mixed outputs.
    pub run_variants: usize,
}

pub fn job_status(out: &Path) -> Result<JobStatus> {
    let ledger = Ledger::read(out).with_context(|| format!("reading the run records in {}", out.display()))?;
    let mut done = 0;
    let mut failed = Vec::new();
    let mut variants: Vec<&super::manifest::RunKey> = Vec::new();
    // Only the inputs the job holds now (records of inputs since removed are history).
    let current = |k: &String| ledger.planned.is_empty() || ledger.planned.contains_key(k);
    for r in ledger.latest.values().filter(|r| current(&r.key)) {
        match r.status {
            Status::Done if ledger.outputs_present(r) => {
                done += 1;
                if !variants.contains(&&r.run) {
                    variants.push(&r.run);
                }
            }
            Status::Done => {}
            Status::Failed => failed.push((r.key.clone(), r.reason.clone().unwrap_or_default())),
        }
    }
    let missing: Vec<String> = ledger
        .planned
        .keys()
        .filter(|k| ledger.latest.get(*k).is_none_or(|r| r.status == Status::Done && !ledger.outputs_present(r)))
        .cloned()
        .collect();
    let known = if ledger.planned.is_empty() { ledger.latest.len() } else { ledger.planned.len() };
    Ok(JobStatus {
        job_inputs: ledger.job_inputs,
        done,
        failed,
        missing,
        unplanned: ledger.job_inputs.saturating_sub(known),
        shards: ledger.shards.clone(),
        run_variants: variants.len(),
    })
}

/// Print the status; Ok(true) when every input of the job is done.
pub fn run(out: &Path) -> Result<bool> {
    if !out.join(super::manifest::DIR).is_dir() {
        anyhow::bail!(
            "{}: no run records (no {} folder): nothing was run into it yet",
            out.display(),
            super::manifest::DIR
        );
    }
    let s = job_status(out)?;
    println!("job: {} inputs; run records from shard(s) {}", s.job_inputs, s.shards.join(", "));
    for (key, reason) in &s.failed {
        println!("failed: {key}: {reason}");
    }
    for key in s.missing.iter().take(20) {
        println!("missing: {key}");
    }
    if s.missing.len() > 20 {
        println!("missing: ... and {} more", s.missing.len() - 20);
    }
    if s.unplanned > 0 {
        println!("missing: {} input(s) of shards that have not started yet", s.unplanned);
    }
    if s.run_variants > 1 {
        println!("note: the done outputs were made with {} different models or option sets", s.run_variants);
    }
    let missing = s.missing.len() + s.unplanned;
    println!("{} done, {} failed, {} missing", s.done, s.failed.len(), missing);
    Ok(s.failed.is_empty() && missing == 0)
}
