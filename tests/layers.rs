//! Layers point down only: every module under `src/` imports (`crate::<module>`) only the modules
//! `src/lib.rs` declares above it, so `backend` never reaches up into `model`, `scheduler`,
//! `pipeline`, `cli` or the emulator that implements its device interface.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The modules of `src/lib.rs` in declaration order.
fn module_order() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines().filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';')).map(str::to_string).collect()
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// (line number, module) of each `crate::<module>` in `text` naming one of `modules`.
fn crate_refs(text: &str, modules: &[String]) -> Vec<(usize, String)> {
    let mut refs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // `percept_crate::x` or `$crate::x` are not this crate's paths.
            let before = code[..at].chars().last();
            if modules.contains(&name) && !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
                refs.push((i + 1, name));
            }
        }
    }
    refs
}

/// Each `crate::<m>` in the files of module `owner` (src/<owner>.rs or src/<owner>/**).
fn refs_of(owner: &str, modules: &[String]) -> Vec<(PathBuf, usize, String)> {
    let mut files = Vec::new();
    let dir = src().join(owner);
    if dir.is_dir() {
        rust_files(&dir, &mut files);
    }
    let file = src().join(format!("{owner}.rs"));
    if file.is_file() {
        files.push(file);
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        out.extend(crate_refs(&text, modules).into_iter().map(|(line, m)| (f.clone(), line, m)));
    }
    out
}

#[test]
fn modules_import_only_the_layers_declared_above_them() {
    let order = module_order();
    for m in ["error", "tensor", "weights", "backend", "emu", "model", "scheduler", "pipeline", "api", "cli"] {
        assert!(order.iter().any(|o| o == m), "src/lib.rs no longer declares `pub mod {m};`: {order:?}");
    }
    let rank: HashMap<&str, usize> = order.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
    let mut upward = Vec::new();
    for owner in &order {
        for (file, line, target) in refs_of(owner, &order) {
            if rank[target.as_str()] > rank[owner.as_str()] {
                upward.push(format!("{}:{line}: `{owner}` imports `crate::{target}`", file.display()));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up the layers of src/lib.rs (move what is needed down, or the module up):\n{}",
        upward.join("\n")
    );
}

#[test]
fn backend_imports_nothing_above_it() {
    // Spelled out beside the general rule: `emu` is declared after `backend` and depends on it,
    // never the reverse (the probe in backend/cuda compares any two `Device`s).
    let order = module_order();
    let forbidden = ["model", "scheduler", "pipeline", "api", "cli", "emu", "verify"];
    let found: Vec<String> = refs_of("backend", &order)
        .into_iter()
        .filter(|(_, _, m)| forbidden.contains(&m.as_str()))
        .map(|(f, line, m)| format!("{}:{line}: crate::{m}", f.display()))
        .collect();
    assert!(found.is_empty(), "src/backend imports from layers above it:\n{}", found.join("\n"));
}

#[test]
fn the_scan_sees_an_upward_import() {
    let modules: Vec<String> = ["backend", "model"].map(String::from).to_vec();
    let text = "use crate::model::dit::FREQ_DIM;\n// crate::model in a comment\nlet x = $crate::model::y;\n";
    assert_eq!(crate_refs(text, &modules), vec![(1, "model".to_string())]);
}
