//! The emulator as one implementation of the CUDA backend's `Device` interface.

use super::{EmuBuffer, EmuDevice, EmuEvent, EmuGraph};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launch::{Arg, LaunchConfig};
use crate::error::Result;

impl Device for EmuDevice {
    type Buffer = EmuBuffer;
    type Event = EmuEvent;
    type Graph = EmuGraph;
    fn describe(&self) -> String {
        format!("cuda-emu ({} limits, CPU emulation)", self.arch().name())
    }
    fn alloc(&self, bytes: usize) -> Result<EmuBuffer> {
        EmuDevice::alloc(self, bytes.max(4))
    }
    fn write(&self, buf: &EmuBuffer, offset: usize, bytes: &[u8]) -> Result<()> {
        EmuDevice::write(self, buf, offset, bytes)
    }
    fn download(&self, buf: &EmuBuffer) -> Result<Vec<u8>> {
        self.stream.refuse_while_capturing("copying device memory to the host")?;
        Ok(buf.as_bytes().to_vec())
    }
    fn memset(&self, ptr: u64, len: usize, value: u8) -> Result<()> {
        EmuDevice::memset(self, ptr, len, value)
    }
    fn copy(&self, dst: u64, src: u64, len: usize) -> Result<()> {
        EmuDevice::copy(self, dst, src, len)
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
    fn synchronize(&self) -> Result<()> {
        EmuDevice::synchronize(self)
    }
    fn fork(&self) -> Result<Self> {
        Ok(EmuDevice::fork(self))
    }
    fn record_event(&self) -> Result<EmuEvent> {
        EmuDevice::record_event(self)
    }
    fn wait_event(&self, _event: &EmuEvent) -> Result<()> {
        // Every emulated operation has finished when its call returns.
        Ok(())
    }
    fn elapsed_ms(&self, start: &EmuEvent, end: &EmuEvent) -> Result<f32> {
        EmuDevice::elapsed_ms(self, start, end)
    }
    fn begin_capture(&self) -> Result<()> {
        EmuDevice::begin_capture(self)
    }
    fn end_capture(&self) -> Result<EmuGraph> {
        EmuDevice::end_capture(self)
    }
    fn replay(&self, graph: &EmuGraph) -> Result<()> {
        EmuDevice::replay(self, graph)
    }
    fn memory_info(&self) -> Result<Option<(usize, usize)>> {
        Ok(EmuDevice::memory_info(self))
    }
    fn allocation_count(&self) -> Option<u64> {
        Some(self.allocations())
    }
}
