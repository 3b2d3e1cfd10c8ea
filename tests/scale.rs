//! Scale-out end to end with the `percept` binary and the demo model on the CPU: shards from the
//! flag and from Slurm's array variables cover a job exactly once with the outputs of one run,
//! a bad input fails alone, run records decide what a rerun redoes (another model or other
//! options only with --overwrite), and `percept status` reports the whole job.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{output_text as text, temp_dir, toy_images as inputs};

fn percept(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_percept"));
    c.args(args).current_dir(cwd).env_remove("PERCEPT_MODEL").env_remove("PERCEPT_SD2");
    for k in ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP", "SLURM_ARRAY_TASK_COUNT"] {
        c.env_remove(k);
    }
    c.env_remove("JOB_COMPLETION_INDEX");
    c.envs(env.iter().copied());
    c.output().expect("run percept")
}

/// Output files of a run (run records aside), sorted, with a checksum of their bytes.
fn outputs(dir: &Path) -> Vec<(String, u32)> {
    let mut v: Vec<(String, u32)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), crc32fast::hash(&std::fs::read(&p).unwrap())))
        .collect();
    v.sort();
    v
}

const DEPTH: [&str; 7] = ["depth", "in", "--backend", "cpu", "--steps", "3", "--seed"];

/// Batches of one: the same input then gives the same bits in any shard (other batchings agree
/// within float rounding; tests/faults.rs checks that bound).
fn depth(dir: &Path, out: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args: Vec<&str> = DEPTH.to_vec();
    args.extend(["0", "--batch", "1", "--out", out]);
    args.extend_from_slice(extra);
    percept(&args, dir, env)
}

#[test]
fn scale_shards_from_the_flag_and_from_slurm_cover_the_job_once() {
    let dir = temp_dir("scale_shards");
    inputs(&dir, 5);
    let o = depth(&dir, "one", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let want = outputs(&dir.join("one"));
    assert_eq!(want.len(), 15);
    // The records name outputs relative to the output folder: a rerun from another working
    // directory (another spelling of the same --out) finds them done.
    let name = dir.file_name().unwrap().to_str().unwrap();
    let (ins, out) = (format!("{name}/in"), format!("{name}/one"));
    let args = ["depth", &ins, "--backend", "cpu", "--steps", "3", "--seed", "0", "--batch", "1", "--out", &out];
    let o = percept(&args, dir.parent().unwrap(), &[]);
    assert!(text(&o).contains("0 written, 5 skipped"), "{}", text(&o));

    // Two shards by the flag, three as a Slurm array --array=4-8:2.
    for i in 0..2 {
        let shard = format!("{i}/2");
        let o = depth(&dir, "flag", &["--shard", &shard], &[]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains(&format!("shard {i}/2 (from --shard)")), "{}", text(&o));
    }
    assert_eq!(outputs(&dir.join("flag")), want, "two shards differ from one run");
    for id in ["4", "6", "8"] {
        let env = [
            ("SLURM_ARRAY_TASK_ID", id),
            ("SLURM_ARRAY_TASK_MIN", "4"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        let o = depth(&dir, "slurm", &[], &env);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("from the Slurm array task"), "{}", text(&o));
    }
    assert_eq!(outputs(&dir.join("slurm")), want, "three Slurm shards differ from one run");
    let o = percept(&["status", "slurm"], &dir, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().last(), Some("5 done, 0 failed, 0 missing"));
    // --shard 0/1 turns the environment's default off: the whole list.
    let env = [("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_COUNT", "3")];
    let o = depth(&dir, "all", &["--shard", "0/1"], &env);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(outputs(&dir.join("all")), want);
}

#[test]
fn scale_bad_inputs_fail_alone_and_records_decide_what_a_rerun_redoes() {
    let dir = temp_dir("scale_records");
    let ins = inputs(&dir, 3);
    std::fs::write(ins.join("img1b.png"), b"not a png").unwrap();
    // The bad file shares a batch with img1: only it fails.
    let mut args: Vec<&str> = DEPTH.to_vec();
    args.extend(["0", "--batch", "2", "--out", "o"]);
    let o = percept(&args, &dir, &[]);
    let msg = text(&o);
    assert_eq!(o.status.code(), Some(1), "{msg}");
    assert!(msg.contains("failed: ") && msg.contains("img1b.png"), "{msg}");
    assert!(msg.contains("3 written, 0 skipped (already done), 1 failed"), "{msg}");
    assert!(msg.contains("throughput: ") && msg.contains("inputs/s overall"), "{msg}");
    let o = percept(&["status", "o"], &dir, &[]);
    let status = text(&o);
    assert_eq!(o.status.code(), Some(1), "{status}");
    assert!(status.contains("failed: img1b:"), "{status}");
    assert!(status.ends_with("3 done, 1 failed, 0 missing\n"), "{status}");
    std::fs::remove_file(ins.join("img1b.png")).unwrap();

    // Same model and options: nothing to redo.
    let o = depth(&dir, "o", &[], &[]);
    assert!(text(&o).contains("0 written, 3 skipped"), "{}", text(&o));
    // Other options: the outputs are not counted as done, and not overwritten without asking.
    let before = outputs(&dir.join("o"));
    let mut args: Vec<&str> = DEPTH.to_vec();
    args.extend(["7", "--batch", "1", "--out", "o"]);
    let o = percept(&args, &dir, &[]);
    let msg = text(&o);
    assert_eq!(o.status.code(), Some(1), "{msg}");
    assert!(msg.contains("--overwrite"), "{msg}");
    assert_eq!(outputs(&dir.join("o")), before, "outputs changed without --overwrite");
    args.push("--overwrite");
    let o = percept(&args, &dir, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("3 written"), "{}", text(&o));
    assert_ne!(outputs(&dir.join("o")), before, "--overwrite did not recompute");
    let o = percept(&["status", "o"], &dir, &[]);
    assert!(o.status.success(), "{}", text(&o));
}

/// `--devices` on the CPU: two workers (sessions sharing the model, each with half the cores)
/// fed from one queue give the outputs of one worker (depth `.npy` within 1e-5: the workers'
/// thread counts differ from the single run's), one throughput line per worker and one overall.
#[test]
fn scale_devices_run_cpu_workers_from_one_queue() {
    let dir = temp_dir("scale_devices");
    inputs(&dir, 5);
    let o = depth(&dir, "one", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = depth(&dir, "two", &["--devices", "0,1"], &[]);
    let msg = text(&o);
    assert!(o.status.success(), "{msg}");
    assert!(msg.contains("2 worker(s)"), "{msg}");
    for w in ["on [0] ", "on [1] ", "inputs/s overall (5 inputs, 2 worker(s)"] {
        assert!(msg.contains(w), "no throughput line with {w:?}: {msg}");
    }
    let names = |d: &str| outputs(&dir.join(d)).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names("one"), names("two"));
    for i in 0..5 {
        let npy = |d: &str| percept::io::npy::read_npy_f32(&dir.join(d).join(format!("img{i}_depth.npy"))).unwrap().1;
        let (a, b) = (npy("one"), npy("two"));
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-5, "img{i}: {worst} from the single worker's");
    }
    let o = depth(&dir, "bad", &["--devices", "0,x"], &[]);
    assert!(!o.status.success() && text(&o).contains("--devices"), "{}", text(&o));
}

/// `eval --shard`: each shard writes its own metrics file and the last one merges them into the
/// job's metrics.json, equal to an unsharded evaluation (batches of one: the same bits).
#[test]
fn scale_eval_shards_merge_into_the_unsharded_metrics() {
    let dir = temp_dir("scale_eval");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("toy_data/Hypersim_small");
    let list = dir.join("list.txt");
    let pairs: Vec<String> = (0..5)
        .map(|f| format!("val/ai_001_010/rgb_cam_00_fr000{f}.png val/ai_001_010/depth_plane_cam_00_fr000{f}.png"))
        .collect::<Vec<_>>();
    std::fs::write(&list, pairs[..4].join("\n")).unwrap();
    let eval = |out: &str, extra: &[&str]| {
        let mut a = vec!["eval", "--task", "depth", "--data", data.to_str().unwrap(), "--list"];
        a.extend([list.to_str().unwrap(), "--steps", "2", "--batch", "1", "--backend", "cpu", "--out", out]);
        a.extend_from_slice(extra);
        percept(&a, &dir, &[])
    };
    let o = eval("one", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = eval("sharded", &["--shard", "1/2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!dir.join("sharded/metrics.json").exists(), "metrics.json before every shard finished");
    assert!(dir.join("sharded/metrics-shard-00001-of-00002.json").exists());
    let o = eval("sharded", &["--shard", "0/2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("every shard is done"), "{}", text(&o));
    let read = |d: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(d).join("metrics.json")).unwrap()).unwrap()
    };
    let (one, merged) = (read("one"), read("sharded"));
    assert_eq!(merged["samples"].as_array().unwrap().len(), 4);
    for (k, v) in one["mean"].as_object().unwrap() {
        let (a, b) = (v.as_f64().unwrap(), merged["mean"][k].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "mean {k}: {a} unsharded, {b} merged");
    }
}
