//! Developer switches: the one place that reads them from the environment.
//!
//! | variable | effect | default |
//! |---|---|---|
//! | `PERCEPT_FAST_KERNELS=1` | CUDA: the fast kernel variants (bf16 tensor-core tiles) | off |
//! | `PERCEPT_CPU_AMX=0` | CPU: the AVX-512 GEMM engines instead of the AMX ones (f32 and bf16 products) | AMX where the CPU has it |
//! | `PERCEPT_CUDA_SYNC=1` | CUDA: wait for every kernel after launching it (errors at the launch that caused them) | off |
//! | `PERCEPT_KERNEL_CACHE=DIR` | CUDA: where compiled kernels are cached | `$XDG_CACHE_HOME/percept/nvrtc`, else `~/.cache/percept/nvrtc` |
//!
//! The library's API takes each of them per session too (`SessionOptions`); a value set there
//! wins over the environment. User choices (model, device) are never read from the
//! environment by the library.

use std::path::PathBuf;

/// The developer switches' values (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevSwitches {
    pub fast_kernels: bool,
    pub cpu_amx: bool,
    pub sync_launches: bool,
    pub kernel_cache_dir: Option<PathBuf>,
}

impl Default for DevSwitches {
    /// Every switch at its default, ignoring the `PERCEPT_` variables.
    fn default() -> Self {
        DevSwitches { fast_kernels: false, cpu_amx: true, sync_launches: false, kernel_cache_dir: default_cache_dir() }
    }
}

impl DevSwitches {
    /// The switches as the environment sets them (defaults for those unset).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let d = DevSwitches::default();
        DevSwitches {
            fast_kernels: var("PERCEPT_FAST_KERNELS").map_or(d.fast_kernels, |v| v == "1"),
            cpu_amx: var("PERCEPT_CPU_AMX").map_or(d.cpu_amx, |v| v != "0"),
            sync_launches: var("PERCEPT_CUDA_SYNC").map_or(d.sync_launches, |v| v == "1"),
            kernel_cache_dir: var("PERCEPT_KERNEL_CACHE").map(PathBuf::from).or(d.kernel_cache_dir),
        }
    }
}

/// `$XDG_CACHE_HOME/percept/nvrtc`, else `$HOME/.cache/percept/nvrtc`.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("percept").join("nvrtc"))
}
