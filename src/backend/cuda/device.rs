//! The one interface the CUDA backend drives a device through: allocate, copy, launch by name.
//! Two implementations: the CPU emulator (`cuda-emu`, always available) and a real GPU through
//! cudarc (`cuda`). Everything above this file is the same code for both.

use crate::emu::{Arg, EmuBuffer, EmuDevice, LaunchConfig};
use crate::error::Result;

pub trait Device: Clone + Send + Sync + 'static {
    type Buffer: Send + Sync + 'static;
    /// Human-readable name (device, architecture).
    fn describe(&self) -> String;
    /// New device memory; its contents are undefined (the emulator poisons it).
    fn alloc(&self, bytes: usize) -> Result<Self::Buffer>;
    fn upload(&self, bytes: &[u8]) -> Result<Self::Buffer>;
    fn download(&self, buf: &Self::Buffer) -> Result<Vec<u8>>;
    /// The device address of a buffer, as kernels see it.
    fn address(&self, buf: &Self::Buffer) -> u64;
    /// Launch a kernel by entry-point name; returns after the launch is queued (the emulator
    /// runs it to completion).
    fn launch(&self, kernel: &str, cfg: &LaunchConfig, args: &[Arg]) -> Result<()>;
    /// Allow `kernel` more than 48 KiB of dynamic shared memory.
    fn set_max_dynamic_shared(&self, kernel: &str, bytes: u32) -> Result<()>;
}

impl Device for EmuDevice {
    type Buffer = EmuBuffer;
    fn describe(&self) -> String {
        format!("cuda-emu ({} limits, CPU emulation)", self.arch().name())
    }
    fn alloc(&self, bytes: usize) -> Result<EmuBuffer> {
        EmuDevice::alloc(self, bytes.max(4))
    }
    fn upload(&self, bytes: &[u8]) -> Result<EmuBuffer> {
        let mut b = EmuDevice::alloc(self, bytes.len().max(4))?;
        b.as_bytes_mut()[..bytes.len()].copy_from_slice(bytes);
        Ok(b)
    }
    fn download(&self, buf: &EmuBuffer) -> Result<Vec<u8>> {
        Ok(buf.as_bytes().to_vec())
    }
    fn address(&self, buf: &EmuBuffer) -> u64 {
        buf.device_ptr()
    }
    fn launch(&self, kernel: &str, cfg: &LaunchConfig, args: &[Arg]) -> Result<()> {
        EmuDevice::launch(self, kernel, cfg, args)
    }
    fn set_max_dynamic_shared(&self, kernel: &str, bytes: u32) -> Result<()> {
        EmuDevice::set_max_dynamic_shared(self, kernel, bytes)
    }
}
