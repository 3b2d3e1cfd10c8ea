//! The kernels' signatures, read from the `.cu` files, and what build.rs generates from them: one
//! typed Rust launcher per entry point (`launchers.rs`, included by `src/backend/cuda/launchers.rs`)
//! and the signature table the kernels' documentation is generated from. An argument list is
//! written once, in the `.cu` file; a signature this parser cannot read fails the build, naming the
//! file, the line and the entry point.

use std::fmt::Write as _;

/// How a kernel parameter is passed (the emulator's `Arg` codes: p, i, u, f, l, L).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ptr,
    I32,
    U32,
    F32,
    I64,
    U64,
}

impl Kind {
    fn code(self) -> char {
        match self {
            Kind::Ptr => 'p',
            Kind::I32 => 'i',
            Kind::U32 => 'u',
            Kind::F32 => 'f',
            Kind::I64 => 'l',
            Kind::U64 => 'L',
        }
    }
}

pub struct Param {
    /// The C type as written, without `__restrict__` (e.g. `const bf16*`).
    pub c_type: String,
    /// The name as written in the `.cu` file.
    pub name: String,
    pub kind: Kind,
}

pub struct Signature {
    pub entry: String,
    /// `kernels/<file>.cu`.
    pub file: String,
    pub params: Vec<Param>,
}

impl Signature {
    /// The storage type the kernel works in: the last dtype token of its name (`<op>_<dtype>`,
    /// `<op>_<variant>_<dtype>`), else the element type of its pointers (bf16 wins over f32).
    pub fn dtype(&self) -> &'static str {
        const DTYPES: [&str; 6] = ["f32", "bf16", "f16", "b16", "i32", "u32"];
        if let Some(t) = self.entry.split('_').rev().find_map(|t| DTYPES.iter().find(|d| **d == t)) {
            return t;
        }
        let pointee = |ty: &str| self.params.iter().any(|p| p.kind == Kind::Ptr && p.c_type.contains(ty));
        if pointee("bf16") {
            "bf16"
        } else if pointee("float") {
            "f32"
        } else {
            "-"
        }
    }

    /// A fast variant (chosen by `PERCEPT_FAST_KERNELS`) carries a `tc…` variant token: the
    /// tensor-core tile kernels beside the simple kernel of the same op.
    pub fn fast(&self) -> bool {
        self.entry.split('_').any(|t| t.starts_with("tc"))
    }
}

/// `text` with comments blanked out (newlines kept, so offsets still give line numbers).
fn strip_comments(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                out.push(' ');
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            for c in text[i..end].chars() {
                out.push(if c == '\n' { '\n' } else { ' ' });
            }
            i = end;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The signature of every entry point in `entries`, from the file's `extern "C" __global__ void
/// [__launch_bounds__(...)] name(params)` definitions. Panics (failing the build) with the file,
/// line and entry point on anything it cannot read.
pub fn parse(file: &str, text: &str, entries: &[String]) -> Vec<Signature> {
    let code = strip_comments(text);
    let mut defs: Vec<(String, usize, String)> = Vec::new(); // (name, offset, params text)
    let marker = "extern \"C\"";
    let mut from = 0;
    while let Some(at) = code[from..].find(marker) {
        let start = from + at;
        from = start + marker.len();
        let fail = |why: &str| -> ! {
            panic!(
                "{file}:{}: cannot read this kernel signature ({why}); write it as \
                 `extern \"C\" __global__ void [__launch_bounds__(...)] name(type name, ...)`",
                line_of(text, start)
            )
        };
        let mut rest = code[from..].trim_start();
        for word in ["__global__", "void"] {
            rest = rest.strip_prefix(word).unwrap_or_else(|| fail(&format!("expected `{word}`"))).trim_start();
        }
        if let Some(r) = rest.strip_prefix("__launch_bounds__") {
            let close = r.find(')').unwrap_or_else(|| fail("unclosed __launch_bounds__"));
            rest = r[close + 1..].trim_start();
        }
        let name_len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        let name = rest[..name_len].to_string();
        let after = rest[name_len..].trim_start();
        let Some(args) = after.strip_prefix('(') else { fail(&format!("no `(` after `{name}`")) };
        let close = args.find(')').unwrap_or_else(|| fail(&format!("unclosed parameter list of `{name}`")));
        if args[..close].contains('(') {
            fail(&format!("parentheses inside the parameter list of `{name}`"));
        }
        defs.push((name, start, args[..close].to_string()));
    }
    entries
        .iter()
        .map(|entry| {
            let Some((_, offset, params)) = defs.iter().find(|(n, _, _)| n == entry) else {
                panic!(
                    "{file}: PERCEPT_KERNEL({entry}) names no `extern \"C\" __global__ void {entry}(...)` \
                     definition in the file"
                )
            };
            let line = line_of(text, *offset);
            let params = if params.trim().is_empty() || params.trim() == "void" {
                Vec::new()
            } else {
                params.split(',').map(|p| parse_param(p, file, line, entry)).collect()
            };
            let mut seen = std::collections::HashSet::new();
            for p in &params {
                assert!(seen.insert(&p.name), "{file}:{line}: {entry}: parameter `{}` appears twice", p.name);
            }
            Signature { entry: entry.clone(), file: file.to_string(), params }
        })
        .collect()
}

fn parse_param(text: &str, file: &str, line: usize, entry: &str) -> Param {
    let spaced = text.replace('*', " * ");
    let words: Vec<&str> = spaced.split_whitespace().filter(|w| *w != "__restrict__").collect();
    let fail = |why: &str| -> ! {
        panic!(
            "{file}:{line}: {entry}: cannot read parameter `{}` ({why}); parameters are pointers \
             (`T*`, `const T* __restrict__`) or int, unsigned, float, long long, unsigned long long",
            text.trim()
        )
    };
    let (name, ty) = words.split_last().unwrap_or_else(|| fail("empty"));
    if !name.chars().all(is_ident) || name.starts_with(|c: char| c.is_ascii_digit()) || ty.is_empty() {
        fail("expected `type name`");
    }
    let stars = ty.iter().filter(|w| **w == "*").count();
    let kind = match stars {
        0 => match ty.iter().copied().filter(|w| *w != "const").collect::<Vec<_>>().join(" ").as_str() {
            "int" | "signed" | "signed int" | "i32" => Kind::I32,
            "unsigned" | "unsigned int" | "u32" => Kind::U32,
            "float" => Kind::F32,
            "long long" | "long long int" | "signed long long" | "i64" => Kind::I64,
            "unsigned long long" | "unsigned long long int" | "u64" => Kind::U64,
            other => fail(&format!("type `{other}` has no launcher argument")),
        },
        1 if ty.last() == Some(&"*") => Kind::Ptr,
        _ => fail("only plain pointers `T*` are kernel parameters here"),
    };
    Param { c_type: ty.join(" ").replace(" *", "*"), name: name.to_string(), kind }
}

/// Rust keywords a C parameter name may collide with.
fn rust_name(name: &str) -> String {
    const KEYWORDS: [&str; 20] = [
        "as", "box", "crate", "dyn", "fn", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
        "self", "trait", "type", "use", "where",
    ];
    if KEYWORDS.contains(&name) {
        format!("r#{name}")
    } else {
        name.to_string()
    }
}

fn rust_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Ptr => "DevPtr",
        Kind::F32 => "f32",
        _ => "usize",
    }
}

fn arg_expr(sig: &Signature, p: &Param) -> String {
    let (e, n) = (&sig.entry, rust_name(&p.name));
    let raw = &p.name;
    match p.kind {
        Kind::Ptr => format!("Arg::Ptr({n}.0)"),
        Kind::F32 => format!("Arg::F32({n})"),
        Kind::I32 => format!("Arg::I32(int({e:?}, {raw:?}, {n})?)"),
        Kind::U32 => format!("Arg::U32(int({e:?}, {raw:?}, {n})?)"),
        Kind::I64 => format!("Arg::I64(int({e:?}, {raw:?}, {n})?)"),
        Kind::U64 => format!("Arg::U64(int({e:?}, {raw:?}, {n})?)"),
    }
}

fn doc_params(sig: &Signature) -> String {
    sig.params.iter().map(|p| format!("{} {}", p.c_type, p.name)).collect::<Vec<_>>().join(", ")
}

/// The typed launchers: one function per entry point, and for each op whose `_f32` and `_bf16`
/// entry points take the same arguments, one that picks the entry point by storage type.
pub fn launchers(sigs: &[Signature]) -> String {
    let mut out = String::from("// Generated by build.rs from the kernels' signatures: do not edit.\n");
    for sig in sigs {
        let params: String =
            sig.params.iter().map(|p| format!(", {}: {}", rust_name(&p.name), rust_type(p.kind))).collect();
        let args: Vec<String> = sig.params.iter().map(|p| arg_expr(sig, p)).collect();
        writeln!(out, "\n/// `{}`: `{}({})`.", sig.file, sig.entry, doc_params(sig)).unwrap();
        writeln!(out, "#[allow(non_snake_case, clippy::too_many_arguments)]").unwrap();
        writeln!(out, "pub fn {}<D: Device>(dev: &D, cfg: &LaunchConfig{params}) -> Result<()> {{", sig.entry).unwrap();
        writeln!(out, "    dev.launch({:?}, cfg, &[{}])", sig.entry, args.join(", ")).unwrap();
        writeln!(out, "}}").unwrap();
    }
    let kinds = |s: &Signature| s.params.iter().map(|p| (p.kind, p.name.clone())).collect::<Vec<_>>();
    for f32_sig in sigs {
        let Some(op) = f32_sig.entry.strip_suffix("_f32") else { continue };
        let Some(bf16_sig) = sigs.iter().find(|s| s.entry == format!("{op}_bf16")) else { continue };
        if kinds(f32_sig) != kinds(bf16_sig) || sigs.iter().any(|s| s.entry == op) {
            continue;
        }
        let params: String =
            f32_sig.params.iter().map(|p| format!(", {}: {}", rust_name(&p.name), rust_type(p.kind))).collect();
        let names: String = f32_sig.params.iter().map(|p| format!(", {}", rust_name(&p.name))).collect();
        writeln!(out, "\n/// `{op}_f32` or `{op}_bf16` (`{}`), by storage type.", f32_sig.file).unwrap();
        writeln!(out, "#[allow(non_snake_case, clippy::too_many_arguments)]").unwrap();
        writeln!(out, "pub fn {op}<D: Device>(dev: &D, dtype: DType, cfg: &LaunchConfig{params}) -> Result<()> {{")
            .unwrap();
        writeln!(out, "    match dtype {{").unwrap();
        writeln!(out, "        DType::F32 => {op}_f32(dev, cfg{names}),").unwrap();
        writeln!(out, "        DType::BF16 => {op}_bf16(dev, cfg{names}),").unwrap();
        writeln!(out, "        other => Err(no_kernel({op:?}, other)),").unwrap();
        writeln!(out, "    }}").unwrap();
        writeln!(out, "}}").unwrap();
    }
    out
}

/// The signatures as data (`SIGNATURES`), for the generated docs and the tests.
pub fn table(sigs: &[Signature]) -> String {
    let mut out = String::from("pub static SIGNATURES: &[KernelSignature] = &[\n");
    for s in sigs {
        let params: Vec<String> =
            s.params.iter().map(|p| format!("({:?}, {:?}, '{}')", p.c_type, p.name, p.kind.code())).collect();
        writeln!(
            out,
            "    KernelSignature {{ entry: {:?}, file: {:?}, dtype: {:?}, fast: {}, params: &[{}] }},",
            s.entry,
            s.file,
            s.dtype(),
            s.fast(),
            params.join(", ")
        )
        .unwrap();
    }
    out.push_str("];\n");
    out
}
