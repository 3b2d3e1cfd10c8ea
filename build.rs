//! Embeds every `kernels/*.cu` (with its `common/*.cuh` includes inlined) for NVRTC, and compiles the
//! same sources with the host C++ compiler into the emulator's static library.
//!
//! `PERCEPT_EMU_ASAN=1` at build time builds the emulated kernels with AddressSanitizer (tests only);
//! `PERCEPT_EMU_UCONTEXT=1` switches fibers with ucontext instead of the x86-64 assembly switch.
//! `PERCEPT_EMU_FMA=1` builds them with FMA contraction (`-mfma -ffp-contract=fast`), as NVRTC
//! compiles for a GPU: rounding that a fused multiply-add changes shows on the CPU (tests only).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

#[path = "build/launchers.rs"]
mod launchers;

struct KernelFile {
    /// File stem, e.g. `group_norm`.
    stem: String,
    /// Source with quoted `.cuh` includes inlined: what NVRTC compiles.
    expanded: String,
    /// Entry points named by `PERCEPT_KERNEL(name)`.
    entries: Vec<String>,
    /// The file the host compiler builds (a planted copy lives in OUT_DIR).
    path: PathBuf,
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let kernels_dir = root.join("kernels");
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=src/emu/runtime.cpp");
    println!("cargo:rerun-if-changed=src/util/hash.rs");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-env-changed=PERCEPT_EMU_ASAN");
    println!("cargo:rerun-if-env-changed=PERCEPT_EMU_UCONTEXT");
    println!("cargo:rerun-if-env-changed=PERCEPT_EMU_FMA");
    println!("cargo:rustc-check-cfg=cfg(percept_emu_asan)");

    let mut files = Vec::new();
    let mut signatures = Vec::new();
    let mut names: Vec<PathBuf> = fs::read_dir(&kernels_dir)
        .expect("kernels/ is readable")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    names.sort();
    for path in names {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(&path).unwrap();
        let expanded = expand_includes(&text, &kernels_dir, &mut HashSet::new(), &kernel_label(&kernels_dir, &path));
        let entries = kernel_entries(&text);
        signatures.extend(launchers::parse(&format!("kernels/{stem}.cu"), &text, &entries));
        files.push(KernelFile { stem, expanded, entries, path });
    }
    let planted = planted_copies(&kernels_dir, &files, &out);

    let mut table = String::new();
    write_modules(&mut table, "MODULES", &files);
    write_modules(&mut table, "PLANTED_MODULES", &planted);
    fs::write(out.join("kernel_modules.rs"), table).unwrap();
    fs::write(out.join("emu_entries.rs"), emu_entries(files.iter().chain(&planted))).unwrap();
    fs::write(out.join("launchers.rs"), launchers::launchers(&signatures)).unwrap();
    fs::write(out.join("kernel_signatures.rs"), launchers::table(&signatures)).unwrap();

    build_emulator(&root, &out, files.iter().chain(&planted));
}

/// Inlines `#include "x.cuh"` (relative to `kernels/` or `kernels/common/`), once per file. Other
/// includes stay: `emu_runtime.h` sits behind `#ifdef PERCEPT_EMU`, which NVRTC never defines.
/// `#line` markers around every inlined header (and blank lines for the lines dropped) keep line
/// numbers true, so an NVRTC error or a compute-sanitizer report names `kernels/<file>:LINE`;
/// `label` is the name of the file `text` came from, as those reports should print it.
fn expand_includes(text: &str, dir: &Path, seen: &mut HashSet<PathBuf>, label: &str) -> String {
    let mut out = String::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t == "#pragma once" {
            out.push('\n');
            continue;
        }
        if let Some(name) = t.strip_prefix("#include \"").and_then(|r| r.strip_suffix('"')) {
            if name.ends_with(".cuh") {
                let path = [dir.join(name), dir.join("common").join(name)]
                    .into_iter()
                    .find(|p| p.exists())
                    .unwrap_or_else(|| panic!("kernel include {name:?} not found under {}", dir.display()));
                let path = path.canonicalize().unwrap();
                if seen.insert(path.clone()) {
                    let inner = fs::read_to_string(&path).unwrap();
                    let inner_label = kernel_label(dir, &path);
                    writeln!(out, "#line 1 \"{inner_label}\"").unwrap();
                    out.push_str(&expand_includes(&inner, dir, seen, &inner_label));
                    writeln!(out, "#line {} \"{label}\"", n + 2).unwrap();
                } else {
                    out.push('\n');
                }
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `kernels/...` for a file under the kernels folder (what error reports name), else its path.
fn kernel_label(kernels_dir: &Path, path: &Path) -> String {
    let dir = kernels_dir.canonicalize().unwrap_or_else(|_| kernels_dir.to_path_buf());
    match path.strip_prefix(&dir) {
        Ok(rel) => format!("kernels/{}", rel.display()),
        Err(_) => path.display().to_string(),
    }
}

fn kernel_entries(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("PERCEPT_KERNEL(")?.strip_suffix(')'))
        .map(|s| s.trim().to_string())
        .collect()
}

/// `kernels/planted/bugs.txt` lists bugs to plant in copies of real kernels (for the tests that show
/// the emulator catches them). Records are blocks of `bug:`, `file:`, `find:`, `replace:` lines; `find`
/// must occur exactly once, so a copy cannot silently drift from the kernel it copies. Entry points
/// of the copy get the suffix `__<bug>`.
fn planted_copies(kernels_dir: &Path, files: &[KernelFile], out: &Path) -> Vec<KernelFile> {
    let spec_path = kernels_dir.join("planted/bugs.txt");
    let Ok(spec) = fs::read_to_string(&spec_path) else {
        return Vec::new();
    };
    let dir = out.join("planted");
    fs::create_dir_all(&dir).unwrap();
    let mut copies = Vec::new();
    for record in spec.split("\n\n").filter(|r| r.lines().any(|l| l.starts_with("bug:"))) {
        let field = |key: &str| -> String {
            record
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("{}: record without {key:?}:\n{record}", spec_path.display()))
                .trim()
                .to_string()
        };
        let (bug, file) = (field("bug:"), field("file:"));
        let (find, replace) = (field("find:").replace("\\n", "\n"), field("replace:").replace("\\n", "\n"));
        let original = files
            .iter()
            .find(|f| f.path.file_name().unwrap().to_string_lossy() == file)
            .unwrap_or_else(|| panic!("planted bug {bug}: no kernel file {file}"));
        let text = fs::read_to_string(&original.path).unwrap();
        let hits = text.matches(find.as_str()).count();
        assert_eq!(hits, 1, "planted bug {bug}: {find:?} occurs {hits} times in {file}, expected once");
        let mut patched = text.replacen(find.as_str(), &replace, 1);
        for entry in &original.entries {
            patched = rename_identifier(&patched, entry, &format!("{entry}__{bug}"));
        }
        let path = dir.join(format!("{}__{bug}.cu", original.stem));
        fs::write(&path, &patched).unwrap();
        let expanded = expand_includes(
            &patched,
            kernels_dir,
            &mut HashSet::new(),
            &format!("kernels/planted/{}__{bug}.cu", original.stem),
        );
        let entries = original.entries.iter().map(|e| format!("{e}__{bug}")).collect();
        copies.push(KernelFile { stem: format!("{}__{bug}", original.stem), expanded, entries, path });
    }
    copies
}

fn rename_identifier(text: &str, from: &str, to: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while let Some(i) = rest.find(from) {
        let before_ok = !rest[..i].chars().next_back().is_some_and(is_ident);
        let after_ok = !rest[i + from.len()..].chars().next().is_some_and(is_ident);
        out.push_str(&rest[..i]);
        out.push_str(if before_ok && after_ok { to } else { from });
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}

// The crate's own FNV-1a (a build script cannot use the crate it builds): the kernel cache keys
// hash these values with it again at run time.
include!("src/util/hash.rs");

fn write_modules(out: &mut String, name: &str, files: &[KernelFile]) {
    writeln!(out, "pub static {name}: &[KernelModule] = &[").unwrap();
    for f in files {
        writeln!(
            out,
            "    KernelModule {{ name: {:?}, source: {:?}, hash: {:#018x}, entries: &{:?} }},",
            f.stem,
            f.expanded,
            fnv1a64(f.expanded.as_bytes()),
            f.entries
        )
        .unwrap();
    }
    writeln!(out, "];").unwrap();
}

fn emu_entries<'a>(files: impl Iterator<Item = &'a KernelFile>) -> String {
    let mut decls = String::from("extern \"C\" {\n");
    let mut table =
        String::from("pub(crate) static EMU_ENTRIES: &[(&str, unsafe extern \"C\" fn() -> *const RawEntry)] = &[\n");
    for f in files {
        for e in &f.entries {
            writeln!(decls, "    fn percept_emu_entry_{e}() -> *const RawEntry;").unwrap();
            writeln!(table, "    ({e:?}, percept_emu_entry_{e}),").unwrap();
        }
    }
    decls.push_str("}\n");
    table.push_str("];\n");
    decls + &table
}

fn build_emulator<'a>(root: &Path, out: &Path, files: impl Iterator<Item = &'a KernelFile>) {
    let asan = std::env::var("PERCEPT_EMU_ASAN").is_ok_and(|v| v == "1");
    let wrappers = out.join("emu");
    fs::create_dir_all(&wrappers).unwrap();
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .opt_level(2)
        .define("PERCEPT_EMU", None)
        // Planted copies in OUT_DIR include "common/..." like the originals.
        .include(root.join("kernels"))
        .flag_if_supported("-Wno-unused-parameter")
        .file(root.join("src/emu/runtime.cpp"));
    // The .cu files are C++ under PERCEPT_EMU; a wrapper keeps error lines pointing at the .cu file.
    for f in files {
        let wrapper = wrappers.join(format!("{}.cpp", f.stem));
        let text = format!("#include \"{}\"\n", f.path.display());
        if fs::read_to_string(&wrapper).ok().as_deref() != Some(text.as_str()) {
            fs::write(&wrapper, text).unwrap();
        }
        build.file(wrapper);
    }
    if std::env::var("PERCEPT_EMU_UCONTEXT").is_ok_and(|v| v == "1") {
        build.define("PERCEPT_EMU_UCONTEXT", None);
    }
    if std::env::var("PERCEPT_EMU_FMA").is_ok_and(|v| v == "1") {
        // a * b + c contracted to one fused multiply-add wherever the compiler can, as on a GPU.
        build.flag("-mfma").flag("-ffp-contract=fast");
    }
    if asan {
        build.define("PERCEPT_EMU_ASAN", None).flag("-fsanitize=address").flag("-fno-omit-frame-pointer").debug(true);
        println!("cargo:rustc-link-lib=dylib=asan");
        println!("cargo:rustc-cfg=percept_emu_asan");
    }
    build.compile("percept_emu");
}
