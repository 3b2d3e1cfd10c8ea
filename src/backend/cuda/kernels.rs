//! The kernel sources, embedded by build.rs: one module per `kernels/*.cu` file, its
//! `common/*.cuh` includes inlined, so NVRTC compiles exactly the text the emulator was built from.

/// One `kernels/<name>.cu` file.
#[derive(Debug)]
pub struct KernelModule {
    /// The file stem, e.g. `group_norm`.
    pub name: &'static str,
    /// The source NVRTC compiles.
    pub source: &'static str,
    /// FNV-1a of `source`: part of the compile cache key.
    pub hash: u64,
    /// The entry points (`PERCEPT_KERNEL(...)`), named `<op>_<dtype>` (the simple
    /// kernel) or `<op>_<variant>_<dtype>` (a fast variant, e.g. `gemm_tc128_bf16`).
    pub entries: &'static [&'static str],
}

include!(concat!(env!("OUT_DIR"), "/kernel_modules.rs"));

/// The module that defines entry point `kernel`, among the real kernels.
pub fn module_of(kernel: &str) -> Option<&'static KernelModule> {
    MODULES.iter().find(|m| m.entries.contains(&kernel))
}
