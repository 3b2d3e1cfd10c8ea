//! The CUDA device emulated on the CPU. The kernels in `kernels/*.cu` are compiled by the host C++
//! compiler against our own definitions of CUDA's built-ins (`kernels/common/emu_runtime.h`,
//! `runtime.cpp`); this module is the host side: device memory as guarded host allocations, and
//! launches validated against the hardware limits, blocks spread over OS threads, each block's threads
//! run as fibers in a seeded random order.

mod device;
mod entries;
mod launch;
mod limits;
mod memory;
mod stream;

pub use crate::backend::cuda::launch::{Arg, LaunchConfig};
pub use launch::EmuDevice;
pub use limits::{Arch, Limits};
pub use memory::EmuBuffer;
pub use stream::{EmuEvent, EmuGraph};

/// Names of every emulated entry point (real kernels and the planted-bug copies).
pub fn kernel_names() -> impl Iterator<Item = &'static str> {
    entries::EMU_ENTRIES.iter().map(|(name, _)| *name)
}

/// The argument types of entry point `name` as the C++ compiler saw them, one code per parameter
/// (p pointer, i int, u unsigned, f float, l long long, L unsigned long long).
pub fn kernel_signature(name: &str) -> Option<&'static str> {
    launch::signature(name)
}

/// True when the emulated kernels were built with AddressSanitizer (`PERCEPT_EMU_ASAN=1`).
pub const ASAN: bool = cfg!(percept_emu_asan);
