//! The checkpoint compatibility matrix: files saved by PyTorch the ways real code saves them
//! (`tests/data/checkpoints/`, written by `tools/checkpoints/make_matrix.py`), each loaded bit for
//! bit as `torch.load` reads it, or refused naming the file. No PyTorch needed here: what torch
//! read is recorded in `expected.json` beside the files.

use std::path::{Path, PathBuf};
use std::process::Command;

use percept::weights::pt::read_pt;
use serde_json::Value;

fn matrix_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/checkpoints")
}

fn expected() -> Value {
    let text =
        std::fs::read_to_string(matrix_dir().join("expected.json")).expect("tests/data/checkpoints/expected.json");
    serde_json::from_str(&text).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads one case and compares it with what torch read; returns a description of every mismatch.
fn check_case(case: &Value) -> Vec<String> {
    let file = case["file"].as_str().unwrap();
    let path = matrix_dir().join(file);
    let mut bad = Vec::new();
    match (read_pt(&path), case.get("refused")) {
        (Ok(ck), None) => {
            let want = case["tensors"].as_array().unwrap();
            if ck.source_key.as_deref() != case["source_key"].as_str() {
                bad.push(format!(
                    "{file}: state dict taken from {:?}, torch's rule gives {}",
                    ck.source_key, case["source_key"]
                ));
            }
            let names: Vec<&str> = ck.tensors.iter().map(|(n, _)| n.as_str()).collect();
            let want_names: Vec<&str> = want.iter().map(|t| t["name"].as_str().unwrap()).collect();
            if names != want_names {
                bad.push(format!("{file}: tensors {names:?}, torch read {want_names:?}"));
                return bad;
            }
            for ((name, t), w) in ck.tensors.iter().zip(want) {
                let shape: Vec<usize> =
                    w["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                if t.dtype.name() != w["dtype"].as_str().unwrap() || t.shape != shape {
                    bad.push(format!(
                        "{file}: {name} is {} {:?}, torch read {} {shape:?}",
                        t.dtype, t.shape, w["dtype"]
                    ));
                } else if hex(t.bytes.as_bytes()) != w["hex"].as_str().unwrap() {
                    bad.push(format!("{file}: {name}: values differ from torch's"));
                }
            }
        }
        (Err(e), Some(words)) => {
            let msg = e.to_string();
            for w in words.as_array().unwrap().iter().map(|w| w.as_str().unwrap()).chain([file]) {
                if !msg.contains(w) {
                    bad.push(format!("{file}: the refusal does not mention \"{w}\": {msg}"));
                }
            }
        }
        (Ok(_), Some(_)) => bad.push(format!("{file}: loaded, but must be refused")),
        (Err(e), None) => bad.push(format!("{file}: refused, but torch reads it: {e}")),
    }
    bad
}

#[test]
fn checkpoint_matrix_loads_what_torch_loads() {
    let m = expected();
    let cases = m["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "the matrix lost cases: {}", cases.len());
    let mut bad = Vec::new();
    for case in cases {
        bad.extend(check_case(case));
    }
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn checkpoint_matrix_strips_ddp_prefix_and_keeps_optimizer_state_out() {
    let ck = read_pt(&matrix_dir().join("ddp.pt")).unwrap();
    assert!(ck.tensors.iter().all(|(n, _)| !n.starts_with("module.")));
    assert!(ck.get("conv.weight").is_some());
    // Lightning keeps its own `model.` attribute prefix: that is the module's real name.
    let ck = read_pt(&matrix_dir().join("lightning.ckpt")).unwrap();
    assert_eq!(ck.source_key.as_deref(), Some("state_dict"));
    assert!(ck.get("model.conv.weight").is_some());
    // A training checkpoint: EMA weights, not the model's, and nothing from the optimizer.
    let ck = read_pt(&matrix_dir().join("training_ema.pt")).unwrap();
    assert_eq!(ck.source_key.as_deref(), Some("ema"));
    assert_eq!(ck.tensors.len(), 11);
}

/// CRCs are checked wherever the writer recorded them: a checkpoint with CRCs whose storage's
/// CRC field is zeroed (or whose bytes change) is damaged; one saved with
/// `compute_crc32 = False` (every CRC zero) loads.
#[test]
fn checkpoint_crc_checked_where_written() {
    let dir = crate::support::temp_dir("ck_crc");
    let original = std::fs::read(matrix_dir().join("protocol2.pt")).unwrap();
    // The central directory record of protocol2/data/0: CRC at +16, name at +46.
    let name = b"protocol2/data/0";
    let rec = original
        .windows(4)
        .enumerate()
        .rposition(|(i, w)| w == b"PK\x01\x02" && original.get(i + 46..i + 46 + name.len()) == Some(name))
        .expect("central record of data/0");
    let mut zeroed = original.clone();
    zeroed[rec + 16..rec + 20].copy_from_slice(&[0; 4]);
    let path = dir.join("zeroed.pt");
    std::fs::write(&path, &zeroed).unwrap();
    let err = read_pt(&path).unwrap_err().to_string();
    assert!(err.contains("CRC-32") && err.contains("zeroed.pt") && err.contains("data/0"), "{err}");
    assert!(read_pt(&matrix_dir().join("no_crc32.pt")).is_ok());
}

/// Writes, with PyTorch, a checkpoint over 4 GiB (zip64 sizes and offsets) and reads it back.
#[test]
#[ignore = "opt-in, needs PyTorch and ~9 GB of disk and memory: \
            cargo test --release --test main -- --ignored checkpoint_over_4gib \
            (PERCEPT_TORCH_PYTHON names the Python with torch; default python3)"]
fn checkpoint_over_4gib_loads_with_zip64() {
    let dir = crate::support::temp_dir("ck_4gib");
    let python = std::env::var("PERCEPT_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/checkpoints/make_large.py");
    let o = Command::new(&python).arg(&script).arg(&dir).output().expect("run python");
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let want: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("large.json")).unwrap()).unwrap();
    let path = dir.join("large.pt");
    assert!(std::fs::metadata(&path).unwrap().len() > 1 << 32);
    let ck = read_pt(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    for w in want["tensors"].as_array().unwrap() {
        let name = w["name"].as_str().unwrap();
        let t = ck.get(name).unwrap_or_else(|| panic!("{name} missing"));
        let bytes = t.bytes.as_bytes();
        assert_eq!(bytes.len() as u64, w["nbytes"].as_u64().unwrap(), "{name}");
        let sum: u64 = bytes.iter().map(|&b| b as u64).sum();
        assert_eq!(sum, w["byte_sum"].as_u64().unwrap(), "{name}: byte sum");
        assert_eq!(hex(&bytes[bytes.len() - 16..]), w["tail_hex"].as_str().unwrap(), "{name}: last bytes");
    }
}

/// A safetensors file from a header and a data section.
fn safetensors_bytes(header: &str, data_len: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend(std::iter::repeat_n(0u8, data_len));
    b
}

/// The safetensors library's rule: sorted by offset, the tensors tile the data section exactly.
/// Overlapping, gapped, reversed ranges and unclaimed trailing bytes are refused, naming the file
/// and the tensor; any header order and zero-size tensors are fine.
#[test]
fn safetensors_offsets_must_tile_the_data_section() {
    use percept::weights::safetensors::SafetensorsFile;
    let dir = crate::support::temp_dir("st_offsets");
    let t = |name: &str, a: usize, b: usize| {
        format!(r#""{name}":{{"dtype":"F32","shape":[{}],"data_offsets":[{a},{b}]}}"#, (b.max(a) - a.min(b)) / 4)
    };
    let cases: [(&str, String, usize, &[&str]); 6] = [
        ("good", format!("{{{},{},{}}}", t("b", 8, 16), t("empty", 8, 8), t("a", 0, 8)), 16, &[]),
        ("overlap", format!("{{{},{}}}", t("a", 0, 8), t("b", 4, 12)), 12, &["\"b\"", "overlaps tensor \"a\""]),
        ("gap", format!("{{{},{}}}", t("a", 0, 8), t("b", 12, 20)), 20, &["\"b\"", "gap of 4 bytes"]),
        ("late_start", t("a", 4, 12).replace("\"a\"", "{\"a\"") + "}", 12, &["\"a\"", "gap of 4 bytes", "start"]),
        ("reversed", format!("{{{}}}", t("a", 8, 0)), 8, &["\"a\"", "data_offsets"]),
        ("trailing", format!("{{{}}}", t("a", 0, 8)), 12, &["4 unclaimed bytes"]),
    ];
    for (name, header, data, words) in cases {
        let path = dir.join(format!("{name}.safetensors"));
        std::fs::write(&path, safetensors_bytes(&header, data)).unwrap();
        match SafetensorsFile::open(&path) {
            Ok(f) if words.is_empty() => {
                let names: Vec<&str> = f.tensors.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(names, ["a", "empty", "b"], "data order");
            }
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => {
                let msg = e.to_string();
                assert!(!words.is_empty(), "{name}: refused: {msg}");
                for w in words.iter().chain([&&*format!("{name}.safetensors")]) {
                    assert!(msg.contains(w), "{name}: \"{w}\" not in: {msg}");
                }
            }
        }
    }
}
