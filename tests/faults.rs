//! Faults during a run, end to end with the `percept` binary and the demo model on the CPU:
//! an output folder that cannot be written (refused before any compute), SIGTERM / Ctrl-C (stop
//! at a step boundary, resumable), SIGKILL (no partial file under a final name), a full disk
//! (clear error, nothing half-written, a rerun completes), and results that do not depend on
//! batch composition or input order.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{output_text as text, temp_dir, toy_images as inputs};

fn percept_cmd(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_percept"));
    c.args(args).current_dir(cwd).env_remove("PERCEPT_MODEL").env_remove("PERCEPT_SD2");
    c
}

fn percept(args: &[&str], cwd: &Path) -> Output {
    percept_cmd(args, cwd).output().expect("run percept")
}

/// Depth on the CPU with the demo model: `percept depth ARGS... --steps S --out OUT`.
fn depth_args<'a>(ins: &[&'a str], out: &'a str, steps: &'a str, batch: &'a str) -> Vec<&'a str> {
    let mut a = vec!["depth"];
    a.extend_from_slice(ins);
    a.extend(["--steps", steps, "--batch", batch, "--out", out, "--backend", "cpu"]);
    a
}

/// Every file under `dir` (relative names, sorted).
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Outputs (not hidden temporary or probe files) in `dir`.
fn outputs(dir: &Path) -> usize {
    files(dir).iter().filter(|f| !f.starts_with('.')).count()
}

/// Temporary or probe files left in `dir` (the run records' folder `.percept` is meant to stay).
fn leftovers(dir: &Path) -> Vec<String> {
    files(dir).into_iter().filter(|f| f.starts_with('.') && f != ".percept").collect()
}

/// Every output file in `dir` equals the one of the same name in `reference`, byte for byte;
/// returns how many there are.
fn assert_same_as(dir: &Path, reference: &Path) -> usize {
    let names: Vec<String> = files(dir).into_iter().filter(|f| !f.starts_with('.')).collect();
    for n in &names {
        let (a, b) = (std::fs::read(dir.join(n)).unwrap(), std::fs::read(reference.join(n)).unwrap());
        assert!(a == b, "{n} differs from the uninterrupted run's");
    }
    names.len()
}

fn wait_for_file(dir: &Path, suffix: &str, child: &mut Child, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if files(dir).iter().any(|f| f.ends_with(suffix) && !f.starts_with('.')) {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn faults_output_folder_refused_before_any_compute() {
    let dir = temp_dir("faults_outdir");
    let ins = inputs(&dir, 1);
    std::fs::write(dir.join("blocker"), b"a file where a folder should be").unwrap();
    let t = Instant::now();
    let o = percept(&depth_args(&[ins.to_str().unwrap()], "blocker/out", "50", "4"), &dir);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let msg = text(&o);
    assert!(msg.contains("output folder blocker/out cannot be created") && msg.contains("blocker is a file"), "{msg}");
    // Refused before the model was even loaded (that line comes first in a run).
    assert!(!msg.contains("model: "), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(20));
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("toy_data/Hypersim_small");
    let o = percept(&["eval", "--task", "depth", "--data", data.to_str().unwrap(), "--out", "blocker/e"], &dir);
    let msg = text(&o);
    assert_eq!(o.status.code(), Some(2), "{msg}");
    assert!(msg.contains("output folder blocker/e cannot be created") && !msg.contains("model: "), "{msg}");
    // demo and bench --json check their folders before any model time too.
    let o = percept(&["demo", "--out", "blocker/d", "--steps", "1"], &dir);
    let msg = text(&o);
    assert_eq!(o.status.code(), Some(2), "{msg}");
    assert!(msg.contains("output folder blocker/d/depth cannot be created") && !msg.contains("model: "), "{msg}");
    let o = percept(&["bench", "--backend", "cpu", "--json", "blocker/b/bench.json"], &dir);
    let msg = text(&o);
    assert_eq!(o.status.code(), Some(2), "{msg}");
    assert!(msg.contains("output folder blocker/b cannot be created") && !msg.contains("cpu/"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(40));
}

/// SIGTERM and then Ctrl-C stop a run at a step boundary: exit 128+signal, no temporary file,
/// every written file complete, a message saying how to resume; the rerun finishes with exactly
/// the outputs of an uninterrupted run.
#[test]
fn faults_sigterm_and_ctrl_c_stop_cleanly_and_resume_exactly() {
    let dir = temp_dir("faults_signals");
    let ins = inputs(&dir, 6);
    let ins = ins.to_str().unwrap();
    let steps = "30";
    let o = percept(&depth_args(&[ins], "ref", steps, "1"), &dir);
    assert!(o.status.success(), "{}", text(&o));
    let out = dir.join("out");
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let mut child = percept_cmd(&depth_args(&[ins], "out", steps, "1"), &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let before = outputs(&out);
        assert!(
            wait_for_file(&out, "_depth.npy", &mut child, Duration::from_secs(120)) || before > 0,
            "no output appeared"
        );
        // Wait for one more output beyond what was there, so the run is mid-way.
        let t = Instant::now();
        while outputs(&out) <= before && t.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(10));
        }
        signal(&child, sig);
        let sent = Instant::now();
        let o = child.wait_with_output().unwrap();
        let stopped_in = sent.elapsed();
        let msg = text(&o);
        assert_eq!(o.status.code(), Some(code), "{msg}");
        assert!(stopped_in < Duration::from_secs(15), "took {stopped_in:?} to stop");
        assert!(msg.contains("at a denoising-step boundary") && msg.contains("Run the same command again"), "{msg}");
        assert!(leftovers(&out).is_empty(), "left behind: {:?}", leftovers(&out));
        let n = assert_same_as(&out, &dir.join("ref"));
        assert!(n.is_multiple_of(3) && n < 18, "{n} files after the stop: {:?}", files(&out));
    }
    let o = percept(&depth_args(&[ins], "out", steps, "1"), &dir);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("skipped (already done)"));
    assert_eq!(assert_same_as(&out, &dir.join("ref")), 18);
}

/// SIGKILL cannot be handled: what it leaves under final names must still be complete files.
#[test]
fn faults_sigkill_leaves_no_partial_output() {
    let dir = temp_dir("faults_sigkill");
    let ins = inputs(&dir, 4);
    let ins = ins.to_str().unwrap();
    let out = dir.join("out");
    let mut child = percept_cmd(&depth_args(&[ins], "out", "20", "1"), &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for_file(&out, "_depth.npy", &mut child, Duration::from_secs(120)));
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    for f in files(&out).iter().filter(|f| !f.starts_with('.')) {
        let p = out.join(f);
        if f.ends_with(".npy") {
            let (shape, v) = percept::io::npy::read_npy_f32(&p).unwrap();
            assert_eq!(shape.iter().product::<usize>(), v.len(), "{f}");
        } else {
            assert!(image::open(&p).is_ok(), "{f} is not a complete image");
        }
    }
    // What a killed write leaves under a temporary name goes with the next run into the folder
    // (this machine's ended processes only: another node's, or a running process's, stays).
    let dead = u32::MAX - 1; // above any pid_max
    let stale = percept::io::atomic::temp_name_of(&out.join("x_depth.npy"), dead);
    let live = percept::io::atomic::temp_name_of(&out.join("y_depth.npy"), std::process::id());
    let other_host = out.join(format!(".z_depth.npy.tmp-some-other-node-{dead}"));
    for p in [&stale, &live, &other_host] {
        std::fs::write(p, b"partial").unwrap();
    }
    let o = percept(&depth_args(&[ins], "out", "20", "1"), &dir);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(files(&out).iter().filter(|f| f.ends_with("_depth.npy")).count(), 4);
    assert!(!stale.exists() && live.exists() && other_host.exists(), "{:?}", files(&out));
    assert!(text(&o).contains("removed 1 temporary file(s)"), "{}", text(&o));
}

/// A small tmpfs mounted for one test, unmounted however the test ends.
struct Mount(PathBuf);

impl Mount {
    /// None (with the reason printed) where mounting is not possible: not root, or a container
    /// without the capability. Under CI (root) this still only skips: lacking the privilege is
    /// not a failure of percept.
    fn tmpfs(at: &Path, bytes: usize) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: mounting a small tmpfs to fill needs root");
            return None;
        }
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "percept-test", at.to_str().unwrap()])
            .output();
        match o {
            Ok(o) if o.status.success() => Some(Mount(at.to_path_buf())),
            Ok(o) => {
                eprintln!("skipping: cannot mount a tmpfs here: {}", String::from_utf8_lossy(&o.stderr).trim());
                None
            }
            Err(e) => {
                eprintln!("skipping: cannot run mount: {e}");
                None
            }
        }
    }
    fn resize(&self, bytes: usize) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}"), self.0.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A disk that fills mid-run: the error says the disk is full and where, once; nothing partial
/// or temporary is left; exit non-zero; after space is freed the rerun completes the rest, equal
/// to an uninterrupted run.
#[test]
fn faults_full_disk_stops_cleanly_and_rerun_completes() {
    let dir = temp_dir("faults_disk_full");
    let ins = inputs(&dir, 4);
    let ins = ins.to_str().unwrap();
    let o = percept(&depth_args(&[ins], "ref", "2", "1"), &dir);
    assert!(o.status.success(), "{}", text(&o));
    let per_input: u64 = files(&dir.join("ref"))
        .iter()
        .filter(|f| f.starts_with("img0_"))
        .map(|f| std::fs::metadata(dir.join("ref").join(f)).unwrap().len().div_ceil(4096) * 4096)
        .sum();
    // Room for two inputs and a half: the third input's writes hit the full disk.
    let Some(mount) = Mount::tmpfs(&dir.join("mnt"), (per_input * 5 / 2) as usize) else { return };
    let out = dir.join("mnt");
    let o = percept(&depth_args(&[ins], "mnt", "2", "1"), &dir);
    let msg = text(&o);
    assert_eq!(o.status.code(), Some(1), "{msg}");
    let line =
        msg.lines().find(|l| l.contains("the disk is full")).unwrap_or_else(|| panic!("no disk-full line: {msg}"));
    assert!(line.contains("mnt/img2_"), "the line must name the file: {line}");
    assert_eq!(line.matches("os error").count(), 1, "the cause once: {line}");
    assert!(msg.contains("Run the same command again"), "{msg}");
    assert!(leftovers(&out).is_empty(), "left behind: {:?}", leftovers(&out));
    let partial = assert_same_as(&out, &dir.join("ref"));
    assert!((6..12).contains(&partial), "{partial} files: {:?}", files(&out));
    mount.resize(64 << 20);
    let o = percept(&depth_args(&[ins], "mnt", "2", "1"), &dir);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(assert_same_as(&out, &dir.join("ref")), 12);
}

/// The same input gives the same depth alone, in a folder, in any batch, in any order: noise
/// depends only on the seed, the member and the flow part (1e-5 absolute on the `.npy`).
#[test]
fn faults_results_independent_of_batch_and_order() {
    let dir = temp_dir("faults_batching");
    let ins = inputs(&dir, 3);
    let folder = ins.to_str().unwrap();
    let file = |i: usize| ins.join(format!("img{i}.png")).to_string_lossy().into_owned();
    let (f0, f1, f2) = (file(0), file(1), file(2));
    let runs: [(&str, Vec<&str>, &str); 4] = [
        ("b1", vec![folder], "1"),
        ("b3", vec![folder], "3"),
        ("b2_reversed", vec![f2.as_str(), f1.as_str(), f0.as_str()], "2"),
        ("alone", vec![f1.as_str()], "4"),
    ];
    for (out, args, batch) in &runs {
        let o = percept(&depth_args(args, out, "4", batch), &dir);
        assert!(o.status.success(), "{out}: {}", text(&o));
    }
    let npy = |run: &str, i: usize| {
        percept::io::npy::read_npy_f32(&dir.join(run).join(format!("img{i}_depth.npy"))).unwrap().1
    };
    let mut worst = 0f32;
    for i in 0..3 {
        let want = npy("b1", i);
        for (run, _, _) in &runs[1..] {
            if *run == "alone" && i != 1 {
                continue;
            }
            let got = npy(run, i);
            assert_eq!(got.len(), want.len());
            let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(d <= 1e-5, "img{i} in {run}: {d} from the batch-1 run");
            worst = worst.max(d);
        }
    }
    eprintln!("largest difference across batchings: {worst:e}");
}

/// A failed write says its OS error once (it used to come twice: message and source chain).
#[test]
fn faults_write_error_names_its_cause_once() {
    let dir = temp_dir("faults_once");
    std::fs::write(dir.join("blocker"), b"x").unwrap();
    let e = percept::io::atomic::write(&dir.join("blocker/x.npy"), b"data").unwrap_err();
    let msg = format!("{:#}", anyhow::Error::from(e));
    assert_eq!(msg.matches("os error").count(), 1, "{msg}");
    assert!(msg.contains("blocker"), "{msg}");
}

/// `eval` stops on SIGTERM too, and writes no metrics.json over part of the data.
#[test]
fn faults_eval_sigterm_writes_no_partial_metrics() {
    let dir = temp_dir("faults_eval_signal");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("toy_data/Hypersim_small");
    let mut child = percept_cmd(
        &["eval", "--task", "depth", "--data", data.to_str().unwrap(), "--out", "e", "--steps", "30", "--batch", "1"],
        &dir,
    )
    .arg("--backend")
    .arg("cpu")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    assert!(wait_for_file(&dir.join("e"), "_panel.png", &mut child, Duration::from_secs(120)), "no panel appeared");
    signal(&child, libc::SIGTERM);
    let o = child.wait_with_output().unwrap();
    let msg = text(&o);
    assert_eq!(o.status.code(), Some(143), "{msg}");
    assert!(msg.contains("stopped by SIGTERM") && msg.contains("metrics.json not written"), "{msg}");
    assert!(!dir.join("e/metrics.json").exists());
    assert!(leftovers(&dir.join("e")).is_empty(), "left behind: {:?}", leftovers(&dir.join("e")));
}
