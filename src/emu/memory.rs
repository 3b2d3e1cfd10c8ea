//! Device memory of the emulator: host allocations, 256-byte aligned like cudaMalloc, new memory
//! poisoned with 0xFF bytes (NaN as f32 and bf16) so a kernel that reads what nobody wrote shows it.
//! Each allocation is bracketed by guard bytes that launches check afterwards: a kernel that writes
//! past either end fails its launch even without AddressSanitizer. Under AddressSanitizer there are
//! no guards: allocations are exact so the sanitizer sees reads past the end as well.

use std::alloc::{alloc, dealloc, Layout};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::backend::cuda::launch::Arg;
use crate::error::{Error, Result};

pub(crate) const GUARD: usize = if cfg!(percept_emu_asan) { 0 } else { 256 };
const GUARD_BYTE: u8 = 0xA5;
const ALIGN: usize = 256;

/// Live allocations by data start address: (length in bytes).
#[derive(Default)]
pub(crate) struct Registry {
    live: Mutex<BTreeMap<u64, usize>>,
}

impl Registry {
    /// Bytes held by live allocations.
    pub(crate) fn live_bytes(&self) -> usize {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).values().sum()
    }

    /// The allocation containing `ptr` (its start and length); `ptr` may point just past the end.
    pub(crate) fn find(&self, ptr: u64) -> Option<(u64, usize)> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let (&start, &len) = live.range(..=ptr).next_back()?;
        (ptr <= start + len as u64).then_some((start, len))
    }

    /// Names the first guard byte that is no longer intact around the allocation at `start`.
    pub(crate) fn check_guards(&self, start: u64, len: usize) -> Option<String> {
        if GUARD == 0 {
            return None;
        }
        // SAFETY: `start` is a live allocation of `len` bytes with GUARD bytes on each side.
        let (before, after) = unsafe {
            (
                std::slice::from_raw_parts((start as *const u8).sub(GUARD), GUARD),
                std::slice::from_raw_parts((start as *const u8).add(len), GUARD),
            )
        };
        if let Some(i) = after.iter().position(|&b| b != GUARD_BYTE) {
            return Some(format!("wrote {i} bytes past the end of a {len}-byte buffer"));
        }
        if let Some(i) = before.iter().rposition(|&b| b != GUARD_BYTE) {
            return Some(format!("wrote {} bytes before the start of a {len}-byte buffer", GUARD - i));
        }
        None
    }
}

/// A buffer of emulated device memory. Freed on drop.
pub struct EmuBuffer {
    data: *mut u8,
    len: usize,
    registry: Arc<Registry>,
}

// SAFETY: the buffer owns its memory; kernels touch it only during a launch, which the host waits for.
unsafe impl Send for EmuBuffer {}
unsafe impl Sync for EmuBuffer {}

impl EmuBuffer {
    pub(crate) fn new(registry: Arc<Registry>, len: usize) -> Result<Self> {
        let layout = Self::layout(len)?;
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc(layout) };
        if base.is_null() {
            return Err(Error::Cuda(format!("emulator: out of host memory allocating {len} bytes")));
        }
        // SAFETY: base points to `layout.size()` writable bytes.
        unsafe {
            std::ptr::write_bytes(base, GUARD_BYTE, GUARD);
            std::ptr::write_bytes(base.add(GUARD), 0xFF, len);
            std::ptr::write_bytes(base.add(GUARD + len), GUARD_BYTE, layout.size() - GUARD - len);
        }
        let data = unsafe { base.add(GUARD) };
        registry.live.lock().unwrap_or_else(|e| e.into_inner()).insert(data as u64, len);
        Ok(EmuBuffer { data, len, registry })
    }

    fn layout(len: usize) -> Result<Layout> {
        Layout::from_size_align((len + 2 * GUARD).max(1), ALIGN)
            .map_err(|_| Error::Cuda(format!("emulator: cannot allocate {len} bytes")))
    }

    /// The address kernels see.
    pub fn device_ptr(&self) -> u64 {
        self.data as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `len` initialised bytes; no launch runs while the host holds a borrow of `self`.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }

    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }

    /// Copies host values in; `data` must fill the buffer exactly.
    pub fn copy_from<T: bytemuck::Pod>(&mut self, data: &[T]) -> Result<()> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.len() != self.len {
            return Err(Error::Cuda(format!(
                "emulator: copy of {} bytes into a buffer of {} bytes",
                bytes.len(),
                self.len
            )));
        }
        self.as_bytes_mut().copy_from_slice(bytes);
        Ok(())
    }

    /// The contents as values of `T` (the length must be a multiple of its size).
    pub fn to_vec<T: bytemuck::Pod>(&self) -> Result<Vec<T>> {
        let size = std::mem::size_of::<T>();
        if size == 0 || !self.len.is_multiple_of(size) {
            return Err(Error::Cuda(format!(
                "emulator: a {}-byte buffer is not a whole number of {size}-byte values",
                self.len
            )));
        }
        let mut out = vec![T::zeroed(); self.len / size];
        bytemuck::cast_slice_mut::<T, u8>(&mut out).copy_from_slice(self.as_bytes());
        Ok(out)
    }

    pub fn fill_bytes(&mut self, byte: u8) {
        self.as_bytes_mut().fill(byte);
    }
}

impl From<&EmuBuffer> for Arg {
    fn from(b: &EmuBuffer) -> Self {
        Arg::Ptr(b.device_ptr())
    }
}

impl Drop for EmuBuffer {
    fn drop(&mut self) {
        self.registry.live.lock().unwrap_or_else(|e| e.into_inner()).remove(&(self.data as u64));
        if let Ok(layout) = Self::layout(self.len) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { dealloc(self.data.sub(GUARD), layout) };
        }
    }
}
