//! The CUDA backend. Only this folder talks to CUDA (through cudarc, loaded at run time): the crate
//! builds and runs without CUDA, and reports its absence as `Error::NoCuda`.

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
