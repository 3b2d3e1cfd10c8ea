//! Compiling the kernel modules with NVRTC to CUBIN for one architecture, with ptxas's resource
//! report (`--ptxas-options=-v`), cached on disk by (source hash, architecture, options) under
//! `$XDG_CACHE_HOME/percept/nvrtc` (or `~/.cache/percept/nvrtc`).

use std::ffi::{c_char, CString};
use std::path::Path;

use cudarc::nvrtc::{result, sys};

use super::kernels::{KernelModule, MODULES};
use crate::error::{Error, Result};
use crate::util::hash::fnv1a64;

/// The architectures the engine builds for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GpuArch {
    Sm80,
    Sm89,
    Sm90a,
}

impl GpuArch {
    pub const ALL: [GpuArch; 3] = [GpuArch::Sm80, GpuArch::Sm89, GpuArch::Sm90a];

    pub fn name(self) -> &'static str {
        match self {
            GpuArch::Sm80 => "sm_80",
            GpuArch::Sm89 => "sm_89",
            GpuArch::Sm90a => "sm_90a",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        GpuArch::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| Error::Input(format!("unknown architecture {s:?}; expected sm_80, sm_89 or sm_90a")))
    }

    /// The architecture to build for on a device of compute capability `major.minor`.
    pub fn for_compute_capability(major: u32, minor: u32) -> Option<Self> {
        match (major, minor) {
            (8, 0) | (8, 6) | (8, 7) => Some(GpuArch::Sm80),
            (8, 9) => Some(GpuArch::Sm89),
            (9, 0) => Some(GpuArch::Sm90a),
            _ => None,
        }
    }
}

/// The fixed NVRTC options; part of the cache key.
pub fn options(arch: GpuArch) -> Vec<String> {
    vec![
        "-std=c++17".into(),
        format!("--gpu-architecture={}", arch.name()),
        "-default-device".into(),
        "-lineinfo".into(),
        "--ptxas-options=-v".into(),
    ]
}

/// A compiled module.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub module: &'static str,
    pub arch: GpuArch,
    pub cubin: Vec<u8>,
    /// NVRTC's log, with ptxas's report.
    pub log: String,
    /// True when it came from the disk cache.
    pub cached: bool,
}

impl Compiled {
    /// Compiler warnings in the log (ptxas's informational lines are not warnings).
    pub fn warnings(&self) -> Vec<String> {
        log_warnings(&self.log)
    }

    pub fn kernel_infos(&self) -> Vec<KernelInfo> {
        parse_ptxas_log(self.module, self.arch, &self.log)
    }
}

/// ptxas's resource report for one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelInfo {
    pub module: String,
    pub kernel: String,
    pub arch: GpuArch,
    pub registers: u32,
    pub static_shared_bytes: u32,
    pub stack_frame_bytes: u32,
    pub spill_store_bytes: u32,
    pub spill_load_bytes: u32,
}

impl KernelInfo {
    pub fn spills(&self) -> bool {
        self.spill_store_bytes > 0 || self.spill_load_bytes > 0
    }
}

/// Ok when libnvrtc can be loaded.
pub fn nvrtc_available() -> Result<()> {
    // SAFETY: only tries to dlopen the library.
    if unsafe { sys::is_culib_present() } {
        Ok(())
    } else {
        Err(Error::NoCuda(
            "NVRTC (libnvrtc.so) was not found: install the CUDA toolkit, or run scripts/ensure-nvrtc \
             (pip wheel nvidia-cuda-nvrtc==13.0.88) and add the directory it prints to LD_LIBRARY_PATH"
                .into(),
        ))
    }
}

/// NVRTC's version, e.g. (13, 0).
pub fn nvrtc_version() -> Result<(i32, i32)> {
    nvrtc_available()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two valid out-pointers.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| Error::Cuda(format!("nvrtcVersion failed: {e:?}")))?;
    Ok((major, minor))
}

/// The disk cache's key for `module` on `arch`: its source, the architecture and the options.
/// Not NVRTC's version: a CUBIN compiled by any NVRTC runs on its architecture, and a cache packed
/// on another machine (scripts/gpu-pack) must serve a device that has no NVRTC to ask.
pub fn cache_key(module: &KernelModule, arch: GpuArch) -> u64 {
    fnv1a64(format!("{:016x}|{}|{}", module.hash, arch.name(), options(arch).join(" ")).as_bytes())
}

/// The cache files' stem for `module` on `arch` (`.cubin` and `.log` beside it).
pub fn cache_stem(module: &KernelModule, arch: GpuArch) -> String {
    format!("{}-{}-{:016x}", module.name, arch.name(), cache_key(module, arch))
}

/// Compiles `module` for `arch`, or loads it from the disk cache (the folder the developer
/// switches name, `backend::switches`); NVRTC is only needed on a miss.
pub fn compile(module: &'static KernelModule, arch: GpuArch) -> Result<Compiled> {
    compile_in(module, arch, crate::backend::switches::DevSwitches::from_env().kernel_cache_dir.as_deref())
}

/// `compile` with the cache in `cache_dir` (`None`: no disk cache).
pub fn compile_in(module: &'static KernelModule, arch: GpuArch, cache_dir: Option<&Path>) -> Result<Compiled> {
    let cache = cache_dir.map(|d| d.join(cache_stem(module, arch)));
    if let Some(base) = &cache {
        if let (Ok(cubin), Ok(log)) =
            (std::fs::read(base.with_extension("cubin")), std::fs::read_to_string(base.with_extension("log")))
        {
            return Ok(Compiled { module: module.name, arch, cubin, log, cached: true });
        }
    }
    let (major, minor) = nvrtc_version().map_err(|e| {
        Error::NoCuda(format!("kernels/{}.cu for {} is not in the kernel cache, and {e}", module.name, arch.name()))
    })?;
    let (cubin, body) = compile_uncached(module, &options(arch), arch)?;
    // The log says which NVRTC built the CUBIN (no longer part of the key).
    let log = format!("NVRTC {major}.{minor}\n{body}");
    if let Some(base) = &cache {
        // A cache that cannot be written only costs time.
        if let Some(dir) = base.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = crate::io::atomic::write(&base.with_extension("log"), log.as_bytes());
        let _ = crate::io::atomic::write(&base.with_extension("cubin"), &cubin);
    }
    Ok(Compiled { module: module.name, arch, cubin, log, cached: false })
}

fn compile_uncached(module: &KernelModule, opts: &[String], arch: GpuArch) -> Result<(Vec<u8>, String)> {
    let file = format!("kernels/{}.cu", module.name);
    let fail =
        |what: &str, e: result::NvrtcError| Error::Cuda(format!("nvrtc: {file} for {}: {what}: {e:?}", arch.name()));
    let src = CString::new(module.source).map_err(|_| Error::Cuda(format!("nvrtc: {file} contains a NUL byte")))?;
    let name = CString::new(file.clone()).map_err(|_| Error::Cuda(format!("nvrtc: bad file name {file}")))?;
    let prog = result::create_program(&src, Some(&name)).map_err(|e| fail("create program", e))?;
    // SAFETY: `prog` is a live program until destroyed below; options are valid C strings.
    let compiled = unsafe { result::compile_program(prog, opts) };
    let log = unsafe { result::get_program_log(prog) }.map(|l| c_chars_to_string(&l)).unwrap_or_default();
    let outcome = match compiled {
        Err(e) => Err(Error::Cuda(format!("nvrtc: {file} failed to compile for {} ({e:?}):\n{log}", arch.name()))),
        Ok(()) => unsafe { get_cubin(prog) }.map_err(|e| fail("get CUBIN", e)),
    };
    // SAFETY: created above, destroyed once.
    let _ = unsafe { result::destroy_program(prog) };
    Ok((outcome?, log))
}

/// # Safety
/// `prog` must be a live, successfully compiled program.
unsafe fn get_cubin(prog: sys::nvrtcProgram) -> Result<Vec<u8>, result::NvrtcError> {
    let mut size = 0usize;
    sys::nvrtcGetCUBINSize(prog, &mut size).result()?;
    let mut cubin = vec![0u8; size];
    sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr() as *mut c_char).result()?;
    Ok(cubin)
}

fn c_chars_to_string(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Compiles every kernel module for `arch` (through the cache) and returns ptxas's report for each
/// entry point: what `percept doctor --compile-only` prints. A compile error is an error; warnings
/// and spills are in the result for the caller to judge (see `check_report`).
pub fn compile_report(arch: GpuArch) -> Result<Vec<KernelInfo>> {
    let mut infos = Vec::new();
    for module in MODULES {
        let compiled = compile(module, arch)?;
        let found = compiled.kernel_infos();
        for entry in module.entries {
            if !found.iter().any(|k| k.kernel == *entry) {
                return Err(Error::Cuda(format!(
                    "nvrtc: kernels/{}.cu for {}: ptxas reported nothing for entry point {entry}; log:\n{}",
                    module.name,
                    arch.name(),
                    compiled.log
                )));
            }
        }
        infos.extend(found);
    }
    Ok(infos)
}

/// Every module for `arch`, failing on a compile error, any warning or any spill.
pub fn check_all(arch: GpuArch) -> Result<Vec<KernelInfo>> {
    let mut problems = Vec::new();
    for module in MODULES {
        let compiled = compile(module, arch)?;
        for w in compiled.warnings() {
            problems.push(format!("kernels/{}.cu ({}): {w}", module.name, arch.name()));
        }
    }
    let infos = compile_report(arch)?;
    for k in infos.iter().filter(|k| k.spills()) {
        problems.push(format!(
            "kernels/{}.cu ({}): {} spills ({} bytes stored, {} loaded)",
            k.module,
            arch.name(),
            k.kernel,
            k.spill_store_bytes,
            k.spill_load_bytes
        ));
    }
    if problems.is_empty() {
        Ok(infos)
    } else {
        Err(Error::Cuda(problems.join("\n")))
    }
}

/// The `percept doctor --compile-only` table: one row per kernel.
pub fn report_table(infos: &[KernelInfo]) -> String {
    let mut out = format!(
        "{:<7} {:<16} {:<28} {:>5} {:>12} {:>12} {:>12}\n",
        "arch", "module", "kernel", "regs", "static smem", "stack", "spill st/ld"
    );
    for k in infos {
        out.push_str(&format!(
            "{:<7} {:<16} {:<28} {:>5} {:>12} {:>12} {:>12}\n",
            k.arch.name(),
            k.module,
            k.kernel,
            k.registers,
            k.static_shared_bytes,
            k.stack_frame_bytes,
            format!("{}/{}", k.spill_store_bytes, k.spill_load_bytes)
        ));
    }
    out
}

/// Lines of an NVRTC log that are warnings (from the front end or from ptxas).
pub fn log_warnings(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.to_ascii_lowercase().contains("warning") && !l.starts_with("Remark"))
        .map(|l| l.trim().to_string())
        .collect()
}

/// Parses ptxas's `-v` report:
/// ```text
/// ptxas info    : Compiling entry function 'gemm_f32' for 'sm_80'
/// ptxas info    : Function properties for gemm_f32
/// ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
/// ptxas info    : Used 31 registers, used 1 barriers, 4352 bytes smem, 400 bytes cmem[0]
/// ```
pub fn parse_ptxas_log(module: &str, arch: GpuArch, log: &str) -> Vec<KernelInfo> {
    let mut infos: Vec<KernelInfo> = Vec::new();
    let mut current: Option<usize> = None;
    for line in log.lines() {
        let line = line.trim();
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let kernel = rest.split('\'').next().unwrap_or("").to_string();
            infos.push(KernelInfo {
                module: module.to_string(),
                kernel,
                arch,
                registers: 0,
                static_shared_bytes: 0,
                stack_frame_bytes: 0,
                spill_store_bytes: 0,
                spill_load_bytes: 0,
            });
            current = Some(infos.len() - 1);
        } else if let Some(rest) = line.split("Function properties for ").nth(1) {
            // Device functions get properties too; only entry functions own a row.
            current = infos.iter().position(|k| k.kernel == rest.trim());
        } else if let Some(i) = current {
            let k = &mut infos[i];
            for part in line.split([',', ':']) {
                let words: Vec<&str> = part.split_whitespace().collect();
                let num = |i: usize| words.get(i).and_then(|w| w.parse::<u32>().ok()).unwrap_or(0);
                // "Used N registers" and "[ptxas .] N bytes <what>".
                if let Some(i) = words.iter().position(|&w| w == "registers") {
                    if i >= 2 && words[i - 2] == "Used" {
                        k.registers = num(i - 1);
                    }
                }
                if let Some(i) = words.iter().position(|&w| w == "bytes") {
                    match (i.checked_sub(1).map(num), &words[i + 1..]) {
                        (Some(n), ["smem", ..]) => k.static_shared_bytes = n,
                        (Some(n), ["stack", "frame", ..]) => k.stack_frame_bytes = n,
                        (Some(n), ["spill", "stores", ..]) => k.spill_store_bytes = n,
                        (Some(n), ["spill", "loads", ..]) => k.spill_load_bytes = n,
                        _ => {}
                    }
                }
            }
        }
    }
    infos
}
