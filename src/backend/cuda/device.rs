//! The one interface the CUDA backend drives a device through: memory (allocate, copy, set),
//! launches by name, streams, events and graph capture/replay. Two implementations: the CPU
//! emulator (`cuda-emu`, always available; `emu/device.rs`) and a real GPU through cudarc (`cuda`,
//! `gpu.rs`). Everything above this file is the same code for both.
//!
//! A handle is one stream of its device: work given to a handle runs in order; `fork` gives a
//! handle on a new stream, and events order work across streams.

use super::launch::{Arg, LaunchConfig};
use crate::error::Result;

pub trait Device: Clone + Send + Sync + 'static {
    type Buffer: Send + Sync + 'static;
    type Event: Send + Sync;
    type Graph: Send + Sync;
    /// Human-readable name (device, architecture).
    fn describe(&self) -> String;
    /// New device memory; its contents are undefined (the emulator poisons it).
    fn alloc(&self, bytes: usize) -> Result<Self::Buffer>;
    /// Copies host bytes into `buf` at `offset`, in stream order, without waiting for the device
    /// (the host bytes may be reused as soon as this returns).
    fn write(&self, buf: &Self::Buffer, offset: usize, bytes: &[u8]) -> Result<()>;
    fn upload(&self, bytes: &[u8]) -> Result<Self::Buffer> {
        let b = self.alloc(bytes.len())?;
        self.write(&b, 0, bytes)?;
        Ok(b)
    }
    /// Waits for the stream's earlier work, then copies the whole buffer to the host.
    fn download(&self, buf: &Self::Buffer) -> Result<Vec<u8>>;
    /// Sets `len` bytes at device address `ptr` to `value`, in stream order.
    fn memset(&self, ptr: u64, len: usize, value: u8) -> Result<()>;
    /// Copies `len` bytes between device addresses, in stream order.
    fn copy(&self, dst: u64, src: u64, len: usize) -> Result<()>;
    /// The device address of a buffer, as kernels see it.
    fn address(&self, buf: &Self::Buffer) -> u64;
    /// Launch a kernel by entry-point name; returns after the launch is queued (the emulator
    /// runs it to completion).
    fn launch(&self, kernel: &str, cfg: &LaunchConfig, args: &[Arg]) -> Result<()>;
    /// Allow `kernel` more than 48 KiB of dynamic shared memory.
    fn set_max_dynamic_shared(&self, kernel: &str, bytes: u32) -> Result<()>;
    /// Waits until the stream's work is done.
    fn synchronize(&self) -> Result<()>;
    /// A handle on the same device whose work goes to a new stream.
    fn fork(&self) -> Result<Self>;
    /// Marks the current point of the stream's work.
    fn record_event(&self) -> Result<Self::Event>;
    /// Later work on this stream waits until `event` (of any stream of the device) is reached.
    fn wait_event(&self, event: &Self::Event) -> Result<()>;
    /// Milliseconds of device time between two events (waits for `end`).
    fn elapsed_ms(&self, start: &Self::Event, end: &Self::Event) -> Result<f32>;
    /// From now on the stream's launches and memory operations are recorded, not run.
    fn begin_capture(&self) -> Result<()>;
    fn end_capture(&self) -> Result<Self::Graph>;
    /// Runs a captured graph on this stream.
    fn replay(&self, graph: &Self::Graph) -> Result<()>;
    /// (free, total) bytes of device memory, where the device has its own.
    fn memory_info(&self) -> Result<Option<(usize, usize)>>;
    /// Device allocations made so far, where the device counts them.
    fn allocation_count(&self) -> Option<u64> {
        None
    }
}
