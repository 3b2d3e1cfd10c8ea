//! Feeding jobs to workers: one worker per device (a session each), all taking batches from one
//! queue (a worker that finishes takes the next batch, so a fast device does more), a batch that
//! fails on its inputs retried job by job, and a stop for what no retry can fix.
//!
//! Generic over the worker and the job so the scheduling is tested without a model.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// How one job ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Done,
    /// The reason, naming the input.
    Failed(String),
}

/// Why a whole batch failed.
#[derive(Clone, Debug, PartialEq)]
pub enum BatchError {
    /// Something about its inputs: retry them one by one.
    Inputs(String),
    /// What no retry can fix (a full disk, a lost device, a vanished output folder): stop.
    Fatal(String),
    /// The run was cancelled (a signal): stop, nothing failed.
    Cancelled,
}

/// Per-worker accounting for the throughput lines.
#[derive(Clone, Debug, Default)]
pub struct WorkerStats {
    pub device: String,
    pub jobs: usize,
    pub seconds: f64,
}

/// How the run ended.
#[derive(Debug, Default)]
pub struct Summary {
    pub done: usize,
    pub failed: Vec<String>,
    /// Jobs never finished (stopped before them).
    pub not_done: usize,
    /// Set when the run stopped early: the reason (None for a cancel).
    pub stopped: Option<Option<String>>,
    pub workers: Vec<WorkerStats>,
    pub seconds: f64,
}

/// Run `jobs` in batches of `batch` on `workers` (one thread each). `process` runs one batch on a
/// worker and returns one outcome per job; `finished` is told each job's outcome (for run
/// records and the progress line) with the worker's device name and the seconds its batch took.
pub fn run<W, J>(
    workers: Vec<W>,
    device: impl Fn(&W) -> String + Sync,
    jobs: &[J],
    batch: usize,
    process: impl Fn(&mut W, &[&J]) -> Result<Vec<Outcome>, BatchError> + Sync,
    finished: impl Fn(&J, &Outcome, &str, f64) + Sync,
) -> Summary
where
    W: Send,
    J: Sync,
{
    let batches: Vec<Vec<&J>> = jobs.chunks(batch.max(1)).map(|c| c.iter().collect()).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let summary = Mutex::new(Summary::default());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for mut w in workers {
            let (batches, next, stop, summary, process, finished, device) =
                (&batches, &next, &stop, &summary, &process, &finished, &device);
            scope.spawn(move || {
                let name = device(&w);
                let mut stats = WorkerStats { device: name.clone(), ..Default::default() };
                while !stop.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(batch) = batches.get(i) else { break };
                    let t = Instant::now();
                    let result = match process(&mut w, batch) {
                        Err(BatchError::Inputs(why)) if batch.len() > 1 => {
                            log::warn!("a batch of {} failed ({why}); retrying its inputs one by one", batch.len());
                            retry_alone(&mut w, batch, process)
                        }
                        Err(BatchError::Inputs(why)) => Ok(vec![Outcome::Failed(why)]),
                        other => other,
                    };
                    let secs = t.elapsed().as_secs_f64();
                    let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok(outcomes) => {
                            for (job, o) in batch.iter().zip(&outcomes) {
                                finished(job, o, &name, secs / batch.len() as f64);
                                match o {
                                    Outcome::Done => s.done += 1,
                                    Outcome::Failed(why) => s.failed.push(why.clone()),
                                }
                            }
                            stats.jobs += batch.len();
                            stats.seconds += secs;
                        }
                        Err(e) => {
                            stop.store(true, Ordering::SeqCst);
                            s.not_done += batch.len();
                            if s.stopped.is_none() {
                                s.stopped = Some(match e {
                                    BatchError::Fatal(why) | BatchError::Inputs(why) => Some(why),
                                    BatchError::Cancelled => None,
                                });
                            }
                        }
                    }
                }
                summary.lock().unwrap_or_else(|e| e.into_inner()).workers.push(stats);
            });
        }
    });
    let mut s = summary.into_inner().unwrap_or_else(|e| e.into_inner());
    // Batches nobody took after the stop.
    let taken = next.load(Ordering::SeqCst).min(batches.len());
    s.not_done += batches[taken..].iter().map(Vec::len).sum::<usize>();
    s.workers.sort_by(|a, b| a.device.cmp(&b.device));
    s.seconds = start.elapsed().as_secs_f64();
    s
}

/// A failed batch's jobs, each alone: the ones that still fail are named, the rest done.
fn retry_alone<W, J>(
    w: &mut W,
    batch: &[&J],
    process: &(impl Fn(&mut W, &[&J]) -> Result<Vec<Outcome>, BatchError> + Sync),
) -> Result<Vec<Outcome>, BatchError> {
    let mut out = Vec::with_capacity(batch.len());
    for job in batch {
        match process(w, std::slice::from_ref(job)) {
            Ok(mut o) => out.push(o.pop().unwrap_or(Outcome::Failed("no result".into()))),
            Err(BatchError::Inputs(why)) => out.push(Outcome::Failed(why)),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

impl Summary {
    /// The throughput lines printed before a run's summary line.
    pub fn throughput_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .workers
            .iter()
            .filter(|w| w.jobs > 0)
            .map(|w| {
                format!(
                    "throughput: {:.3} inputs/s on {} ({} inputs in {:.1} s)",
                    w.jobs as f64 / w.seconds.max(1e-9),
                    w.device,
                    w.jobs,
                    w.seconds
                )
            })
            .collect();
        let n: usize = self.workers.iter().map(|w| w.jobs).sum();
        if n > 0 {
            lines.push(format!(
                "throughput: {:.3} inputs/s overall ({n} inputs, {} worker(s), {:.1} s)",
                n as f64 / self.seconds.max(1e-9),
                self.workers.len(),
                self.seconds
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake device: fails batches holding a "bad" job, optionally a fatal error at a job.
    struct Fake {
        name: &'static str,
        batches: Vec<Vec<u32>>,
    }

    fn process(w: &mut Fake, batch: &[&u32]) -> Result<Vec<Outcome>, BatchError> {
        w.batches.push(batch.iter().map(|j| **j).collect());
        std::thread::sleep(std::time::Duration::from_millis(2));
        if batch.iter().any(|j| **j == 99) {
            return Err(BatchError::Fatal("disk full".into()));
        }
        if batch.iter().any(|j| **j % 7 == 3) {
            let bad = batch.iter().find(|j| ***j % 7 == 3).unwrap();
            return Err(BatchError::Inputs(format!("input {bad} is undecodable")));
        }
        Ok(batch.iter().map(|_| Outcome::Done).collect())
    }

    #[test]
    fn every_job_runs_once_and_a_bad_batch_is_retried_job_by_job() {
        let jobs: Vec<u32> = (0..40).collect();
        let seen = Mutex::new(Vec::new());
        let workers = vec![Fake { name: "a", batches: vec![] }, Fake { name: "b", batches: vec![] }];
        let s = run(
            workers,
            |w| w.name.to_string(),
            &jobs,
            4,
            process,
            |j, o, _, _| seen.lock().unwrap().push((*j, o.clone())),
        );
        let mut seen = seen.into_inner().unwrap();
        seen.sort_by_key(|(j, _)| *j);
        assert_eq!(seen.iter().map(|(j, _)| *j).collect::<Vec<_>>(), jobs, "each job reported once");
        let failed: Vec<u32> = seen.iter().filter(|(_, o)| matches!(o, Outcome::Failed(_))).map(|(j, _)| *j).collect();
        assert_eq!(failed, vec![3, 10, 17, 24, 31, 38], "only the bad inputs fail");
        assert_eq!(s.done, 34);
        assert_eq!(s.failed.len(), 6);
        assert!(s.failed[0].contains("undecodable"));
        assert_eq!(s.not_done, 0);
        assert!(s.stopped.is_none());
        assert_eq!(s.workers.len(), 2);
        assert!(s.workers.iter().all(|w| w.jobs > 0), "both workers took batches: {:?}", s.workers);
        assert_eq!(s.workers.iter().map(|w| w.jobs).sum::<usize>(), 40);
        assert_eq!(s.throughput_lines().len(), 3);
    }

    #[test]
    fn a_fatal_error_stops_every_worker_and_counts_what_is_left() {
        let jobs: Vec<u32> = (90..130).collect();
        let workers = vec![Fake { name: "a", batches: vec![] }, Fake { name: "b", batches: vec![] }];
        let s = run(workers, |w| w.name.to_string(), &jobs, 4, process, |_, _, _, _| {});
        assert_eq!(s.stopped, Some(Some("disk full".into())));
        assert_eq!(s.done + s.failed.len() + s.not_done, 40, "{s:?}");
        assert!(s.not_done >= 4 && s.done < 36, "the run went on after the fatal error: {s:?}");
    }

    #[test]
    fn a_cancel_stops_without_failures() {
        let jobs: Vec<u32> = (0..12).collect();
        let workers = vec![Fake { name: "a", batches: vec![] }];
        let calls = AtomicUsize::new(0);
        let s = run(
            workers,
            |w| w.name.to_string(),
            &jobs,
            2,
            |_, b| {
                if calls.fetch_add(1, Ordering::SeqCst) == 2 {
                    return Err(BatchError::Cancelled);
                }
                Ok(b.iter().map(|_| Outcome::Done).collect())
            },
            |_, _, _, _| {},
        );
        assert_eq!(s.stopped, Some(None));
        assert_eq!((s.done, s.failed.len(), s.not_done), (4, 0, 8));
    }
}
