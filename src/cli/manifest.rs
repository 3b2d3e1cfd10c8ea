//! Run records (manifests) under `OUT/.percept/`: one JSON-lines file per process, so shards and
//! workers sharing an output folder never write the same file.
//!
//! A run first writes a `plan` line (its shard, how many inputs the whole job has, the keys it
//! will do), then one line per input as it finishes (`done` with its outputs, or `failed` with
//! the reason), each carrying the model's fingerprint and the options that change outputs. A rerun
//! counts an input as done only if a `done` line with the same fingerprint and options names it
//! and its outputs exist; `percept status OUT` folds every file into done / failed / missing.
//! A line cut short by a kill is ignored when read back.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// Folder of the run records inside an output folder.
pub const DIR: &str = ".percept";

/// What makes two runs' outputs interchangeable: the model and the options that change outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct RunKey {
    pub model: String,
    pub options: Value,
}

/// How an input ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Done,
    Failed,
}

/// One finished input.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The input's output stem (its identity within the job, the same in every shard).
    pub key: String,
    pub inputs: Vec<String>,
    /// Relative to the output folder, so a rerun from another working directory (or with another
    /// spelling of `--out`) still finds them.
    pub outputs: Vec<String>,
    pub status: Status,
    pub reason: Option<String>,
    pub seconds: f64,
    pub device: String,
    pub shard: String,
    pub run: RunKey,
}

/// One process's record file, appended to as inputs finish.
pub struct Manifest {
    path: PathBuf,
    file: File,
}

impl Manifest {
    /// Create `OUT/.percept/manifest-TAG.jsonl` (appending if a requeued run finds it) and write
    /// the plan line.
    pub fn create(out: &Path, tag: &str, shard: &str, job_inputs: usize, keys: &[String]) -> std::io::Result<Self> {
        let dir = out.join(DIR);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("manifest-{tag}.jsonl"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut m = Manifest { path, file };
        m.line(&json!({"kind": "plan", "shard": shard, "job_inputs": job_inputs, "keys": keys}))?;
        Ok(m)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one finished input. Each line is written whole in one call, so a kill leaves at
    /// most a torn last line, which readers skip.
    pub fn record(&mut self, r: &Record) -> std::io::Result<()> {
        self.line(&json!({
            "kind": match r.status { Status::Done => "done", Status::Failed => "failed" },
            "key": r.key,
            "inputs": r.inputs,
            "outputs": r.outputs,
            "reason": r.reason,
            "seconds": (r.seconds * 1000.0).round() / 1000.0,
            "device": r.device,
            "shard": r.shard,
            "model": r.run.model,
            "options": r.run.options,
        }))
    }

    fn line(&mut self, v: &Value) -> std::io::Result<()> {
        let mut s = v.to_string();
        s.push('\n');
        self.file.write_all(s.as_bytes())?;
        self.file.sync_data()
    }
}

/// Everything the record files of one output folder say.
#[derive(Debug, Default)]
pub struct Ledger {
    /// The output folder the records describe.
    pub dir: PathBuf,
    /// Per key, the last record read (files in name order, lines in order).
    pub latest: BTreeMap<String, Record>,
    /// Keys the job holds now: the latest plan of each record file (a rerun's plan replaces its
    /// earlier ones, so inputs removed since are no longer counted).
    pub planned: BTreeMap<String, String>,
    /// The job's input count as the plans state it (the largest seen).
    pub job_inputs: usize,
    /// Shards that wrote a plan.
    pub shards: Vec<String>,
}

impl Ledger {
    /// Read every `manifest-*.jsonl` under `OUT/.percept/` (none: an empty ledger).
    pub fn read(out: &Path) -> std::io::Result<Ledger> {
        let mut ledger = Ledger { dir: out.to_path_buf(), ..Default::default() };
        let dir = out.join(DIR);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name.starts_with("manifest-") && name.ends_with(".jsonl")
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ledger),
            Err(e) => return Err(e),
        };
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f)?;
            // A torn or foreign line is skipped: the input it was about is simply not done.
            let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect();
            let last_plan = lines.iter().rposition(|v| v["kind"] == "plan");
            for (i, v) in lines.iter().enumerate() {
                if v["kind"] != "plan" || Some(i) == last_plan {
                    ledger.add(v);
                }
            }
        }
        ledger.shards.sort();
        ledger.shards.dedup();
        Ok(ledger)
    }

    fn add(&mut self, v: &Value) {
        let strs = |k: &str| -> Vec<String> {
            v[k].as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
        };
        let shard = v["shard"].as_str().unwrap_or("").to_string();
        let status = match v["kind"].as_str() {
            Some("plan") => {
                self.job_inputs = self.job_inputs.max(v["job_inputs"].as_u64().unwrap_or(0) as usize);
                for k in strs("keys") {
                    self.planned.insert(k, shard.clone());
                }
                self.shards.push(shard);
                return;
            }
            Some("done") => Status::Done,
            Some("failed") => Status::Failed,
            _ => return,
        };
        let Some(key) = v["key"].as_str() else { return };
        let record = Record {
            key: key.to_string(),
            inputs: strs("inputs"),
            outputs: strs("outputs"),
            status,
            reason: v["reason"].as_str().map(String::from),
            seconds: v["seconds"].as_f64().unwrap_or(0.0),
            device: v["device"].as_str().unwrap_or("").to_string(),
            shard,
            run: RunKey { model: v["model"].as_str().unwrap_or("").to_string(), options: v["options"].clone() },
        };
        self.latest.insert(record.key.clone(), record);
    }

    /// Whether `key` was done by a run with the same model and options, its outputs all present.
    pub fn done(&self, key: &str, run: &RunKey) -> bool {
        self.latest.get(key).is_some_and(|r| r.status == Status::Done && &r.run == run && self.outputs_present(r))
    }

    /// Whether every output a record names is in the output folder.
    pub fn outputs_present(&self, r: &Record) -> bool {
        r.outputs.iter().all(|o| self.dir.join(o).exists())
    }

    /// The record of `key` if it was done with another model or other options.
    pub fn done_differently(&self, key: &str, run: &RunKey) -> Option<&Record> {
        self.latest.get(key).filter(|r| r.status == Status::Done && &r.run != run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, status: Status, outputs: Vec<String>, run: &RunKey) -> Record {
        Record {
            key: key.into(),
            inputs: vec![format!("in/{key}.png")],
            outputs,
            status,
            reason: (status == Status::Failed).then(|| "undecodable".into()),
            seconds: 0.5,
            device: "cpu".into(),
            shard: "0/2".into(),
            run: run.clone(),
        }
    }

    #[test]
    fn records_read_back_across_files_and_torn_lines_are_skipped() {
        let dir = std::env::temp_dir().join(format!("percept-manifest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let run = RunKey { model: "m1".into(), options: json!({"steps": 4}) };
        let other = RunKey { model: "m2".into(), options: json!({"steps": 4}) };
        let out_a = dir.join("a_depth.npy");
        std::fs::write(&out_a, b"x").unwrap();
        let keys = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut m0 = Manifest::create(&dir, "shard-0", "0/2", 4, &keys(&["a", "c"])).unwrap();
        let mut m1 = Manifest::create(&dir, "shard-1", "1/2", 4, &keys(&["b", "d"])).unwrap();
        m0.record(&rec("a", Status::Done, vec!["a_depth.npy".into()], &run)).unwrap();
        m1.record(&rec("b", Status::Failed, vec![], &run)).unwrap();
        m1.record(&rec("d", Status::Done, vec!["gone.npy".into()], &run)).unwrap();
        m0.record(&rec("c", Status::Done, vec!["a_depth.npy".into()], &other)).unwrap();
        // A kill in the middle of a line.
        let mut f = OpenOptions::new().append(true).open(m0.path()).unwrap();
        f.write_all(b"{\"kind\": \"done\", \"key\": \"b\", \"outp").unwrap();

        let l = Ledger::read(&dir).unwrap();
        assert_eq!(l.job_inputs, 4);
        assert_eq!(l.shards, vec!["0/2", "1/2"]);
        assert_eq!(l.planned.len(), 4);
        assert!(l.done("a", &run));
        assert!(!l.done("a", &other), "made with another model");
        assert!(!l.done("b", &run), "failed, and the torn line must not count");
        assert!(!l.done("d", &run), "its output is gone");
        assert!(!l.done("c", &run));
        assert_eq!(l.done_differently("c", &run).map(|r| r.run.model.as_str()), Some("m2"));
        assert_eq!(l.latest["b"].reason.as_deref(), Some("undecodable"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_record_folder_is_an_empty_ledger() {
        let l = Ledger::read(Path::new("/nonexistent/percept-out")).unwrap();
        assert!(l.latest.is_empty() && l.planned.is_empty());
    }
}

/// A cheap fingerprint of the files a model comes from: name, size and a CRC of the first and
/// last MiB of each (a safetensors header with its config and offsets sits at the start), so
/// outputs of another model file are told apart without reading gigabytes. Specs that are not
/// files (`synthetic:generalist`) are their own fingerprint.
pub fn fingerprint(files: &[&Path], spec: &str) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut parts = vec![spec.to_string()];
    for path in files {
        let part = (|| -> std::io::Result<String> {
            let mut f = File::open(path)?;
            let len = f.metadata()?.len();
            let mut crc = crc32fast::Hasher::new();
            let mut buf = vec![0u8; (len.min(1 << 20)) as usize];
            f.read_exact(&mut buf)?;
            crc.update(&buf);
            if len > 1 << 20 {
                f.seek(SeekFrom::Start(len.saturating_sub(1 << 20).max(1 << 20)))?;
                buf.clear();
                f.read_to_end(&mut buf)?;
                crc.update(&buf);
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok(format!("{name}:{len}:{:08x}", crc.finalize()))
        })();
        parts.push(part.unwrap_or_else(|e| format!("{}: {e}", path.display())));
    }
    parts.join("|")
}

#[cfg(test)]
mod fingerprint_tests {
    use super::*;

    #[test]
    fn fingerprint_changes_with_the_file_and_not_with_its_folder() {
        let dir = std::env::temp_dir().join(format!("percept-fp-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("b")).unwrap();
        let (a, b) = (dir.join("m.safetensors"), dir.join("b").join("m.safetensors"));
        let big: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
        std::fs::write(&a, &big).unwrap();
        std::fs::write(&b, &big).unwrap();
        let fa = fingerprint(&[&a], "m");
        assert_eq!(fa, fingerprint(&[&b], "m"), "a copy elsewhere is the same model");
        let mut changed = big.clone();
        *changed.last_mut().unwrap() ^= 1;
        std::fs::write(&b, &changed).unwrap();
        assert_ne!(fa, fingerprint(&[&b], "m"), "a changed tail must change the fingerprint");
        assert_eq!(fingerprint(&[], "synthetic:generalist"), "synthetic:generalist");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
