//! The CUDA backend. Only this folder talks to CUDA (through cudarc, loaded at run time): the crate
//! builds and runs without CUDA, and reports its absence as `Error::NoCuda`.
//!
//! `backend.rs`: the backend's state and `impl Backend`, one line per op; `ops/<family>.rs`: each
//! op family's launches and its choice of kernel (simple or fast variant); `tensors.rs`: device
//! tensors and launch helpers; `graph.rs`: captured steps; `launch.rs`: what a launch is (both
//! devices); `device.rs`: the device interface, implemented by `gpu.rs` (cudarc, kernels compiled
//! by `nvrtc.rs` from `kernels.rs`) and by the emulator (`crate::emu`); `pool.rs`: activation
//! memory; `probe.rs`: any two devices' warp-level primitives compared.

pub mod backend;
pub mod device;
pub mod gpu;
mod graph;
pub mod kernels;
pub mod launch;
pub mod launchers;
pub mod nvrtc;
mod ops;
pub mod pool;
pub mod probe;
mod tensors;

pub use backend::{Cuda, GpuMoe, GpuTensor};
pub use graph::CudaGraph;

use crate::error::{Error, Result};

/// Ok when the CUDA driver library can be loaded (a GPU may still be absent).
pub fn driver_available() -> Result<()> {
    // SAFETY: only tries to dlopen the library.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(Error::NoCuda(
            "the CUDA driver (libcuda.so) was not found: this machine has no usable NVIDIA driver; \
             try --backend cpu or --backend cuda-emu"
                .into(),
        ))
    }
}
