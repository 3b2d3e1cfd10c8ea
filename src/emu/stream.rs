//! Streams, events, memory operations and graph capture of the emulated device.
//!
//! Everything the emulator does is synchronous, so streams never overlap and events only carry
//! host time. What matters is that the host side is held to a GPU's rules: while a stream
//! captures, launches and memory operations are checked and recorded instead of run (a real
//! capture does not execute either), and anything a captured graph could not contain fails with
//! a clear error: allocating device memory (a replay reuses the captured addresses), copying from
//! or to host memory, synchronising. A replay runs the recorded operations in order.

use std::sync::Mutex;
use std::time::Instant;

use super::launch::EmuDevice;
use super::memory::EmuBuffer;
use crate::backend::cuda::launch::{Arg, LaunchConfig};
use crate::error::{Error, Result};

/// One recorded operation of a captured stream.
#[derive(Clone, Debug)]
pub(crate) enum EmuOp {
    Launch { kernel: String, cfg: LaunchConfig, args: Vec<Arg> },
    Memset { ptr: u64, len: usize, value: u8 },
    Copy { dst: u64, src: u64, len: usize },
}

/// A stream's capture state: `Some` while capturing, holding what was recorded so far.
#[derive(Default)]
pub(crate) struct EmuStream {
    capture: Mutex<Option<Vec<EmuOp>>>,
}

impl EmuStream {
    pub(crate) fn is_capturing(&self) -> bool {
        self.capture.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    pub(crate) fn record(&self, op: EmuOp) -> Result<()> {
        match self.capture.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(ops) => {
                ops.push(op);
                Ok(())
            }
            None => Err(Error::Cuda("emulator: recording outside a capture".into())),
        }
    }

    pub(crate) fn refuse_while_capturing(&self, what: &str) -> Result<()> {
        if self.is_capturing() {
            return Err(Error::Cuda(format!(
                "{what} while the stream captures a graph: a graph replays fixed device addresses and \
                 has no host work in it, so everything a captured step touches must exist beforehand \
                 (run the step once before capturing it)"
            )));
        }
        Ok(())
    }
}

/// A captured sequence of launches and memory operations, replayable on its device.
pub struct EmuGraph {
    ops: Vec<EmuOp>,
}

impl EmuGraph {
    /// Number of recorded operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A point in a stream's work, with the host time it was reached (the emulator is synchronous).
#[derive(Clone, Copy, Debug)]
pub struct EmuEvent {
    at: Instant,
}

impl EmuDevice {
    /// `len` bytes at `ptr` must lie inside one live allocation.
    fn check_range(&self, what: &str, ptr: u64, len: usize) -> Result<()> {
        let (start, alen) = self
            .registry()
            .find(ptr)
            .ok_or_else(|| Error::Cuda(format!("{what}: {ptr:#x} is not emulated device memory")))?;
        if ptr + len as u64 > start + alen as u64 {
            return Err(Error::Cuda(format!(
                "{what}: {len} bytes at offset {} overrun the {alen}-byte allocation",
                ptr - start
            )));
        }
        Ok(())
    }

    /// Copies host bytes into device memory at `buf` + `offset` (cuMemcpyHtoDAsync).
    pub fn write(&self, buf: &EmuBuffer, offset: usize, bytes: &[u8]) -> Result<()> {
        self.stream.refuse_while_capturing("copying host memory to the device")?;
        let ptr = buf.device_ptr() + offset as u64;
        self.check_range("write", ptr, bytes.len())?;
        // SAFETY: the range was checked against a live allocation; no launch runs meanwhile.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr as *mut u8, bytes.len()) };
        Ok(())
    }

    /// Sets `len` bytes at device address `ptr` to `value` (cuMemsetD8Async).
    pub fn memset(&self, ptr: u64, len: usize, value: u8) -> Result<()> {
        self.check_range("memset", ptr, len)?;
        if self.stream.is_capturing() {
            return self.stream.record(EmuOp::Memset { ptr, len, value });
        }
        // SAFETY: checked range of a live allocation.
        unsafe { std::ptr::write_bytes(ptr as *mut u8, value, len) };
        Ok(())
    }

    /// Copies `len` bytes between device addresses (cuMemcpyDtoDAsync); the ranges must not overlap.
    pub fn copy(&self, dst: u64, src: u64, len: usize) -> Result<()> {
        self.check_range("copy (destination)", dst, len)?;
        self.check_range("copy (source)", src, len)?;
        if dst < src + len as u64 && src < dst + len as u64 {
            return Err(Error::Cuda(format!("copy: {len}-byte ranges at {src:#x} and {dst:#x} overlap")));
        }
        if self.stream.is_capturing() {
            return self.stream.record(EmuOp::Copy { dst, src, len });
        }
        // SAFETY: both ranges checked, disjoint.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, len) };
        Ok(())
    }

    /// Waits for the stream's work (immediate: launches are synchronous). Refused while
    /// capturing, as cuStreamSynchronize is.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.refuse_while_capturing("synchronising")
    }

    pub fn record_event(&self) -> Result<EmuEvent> {
        self.stream.refuse_while_capturing("recording a timing event")?;
        Ok(EmuEvent { at: Instant::now() })
    }

    pub fn elapsed_ms(&self, start: &EmuEvent, end: &EmuEvent) -> Result<f32> {
        Ok(end.at.saturating_duration_since(start.at).as_secs_f32() * 1e3)
    }

    /// From now on this stream records instead of running (cuStreamBeginCapture).
    pub fn begin_capture(&self) -> Result<()> {
        let mut c = self.stream.capture.lock().unwrap_or_else(|e| e.into_inner());
        if c.is_some() {
            return Err(Error::Cuda("begin_capture: the stream is already capturing".into()));
        }
        *c = Some(Vec::new());
        Ok(())
    }

    /// Ends the capture and returns what was recorded (cuStreamEndCapture + instantiate).
    pub fn end_capture(&self) -> Result<EmuGraph> {
        let ops = self
            .stream
            .capture
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| Error::Cuda("end_capture: the stream is not capturing".into()))?;
        if self.graphs_refused() {
            return Err(Error::Cuda(
                "end_capture: graph instantiation refused (EmuDevice::refuse_graphs, standing in for a driver \
                 that cannot capture the step)"
                    .into(),
            ));
        }
        Ok(EmuGraph { ops })
    }

    /// Runs a captured graph's operations in order (cuGraphLaunch), each checked again: a buffer
    /// the graph uses must still be alive.
    pub fn replay(&self, graph: &EmuGraph) -> Result<()> {
        self.stream.refuse_while_capturing("replaying a graph")?;
        for op in &graph.ops {
            match op {
                EmuOp::Launch { kernel, cfg, args } => self.launch_now(kernel, cfg, args)?,
                EmuOp::Memset { ptr, len, value } => self.memset(*ptr, *len, *value)?,
                EmuOp::Copy { dst, src, len } => self.copy(*dst, *src, *len)?,
            }
        }
        Ok(())
    }
}
