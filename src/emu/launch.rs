//! Launching an emulated kernel: validate like the driver would, then run every block.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

use super::entries::{percept_emu_run_block, RawEntry, EMU_ENTRIES};
use super::limits::{Arch, Limits};
use super::memory::{EmuBuffer, Registry};
use super::stream::{EmuOp, EmuStream};
use crate::backend::cuda::launch::{Arg, LaunchConfig};
use crate::error::{Error, Result};
use crate::util::hash::fnv1a64;

struct Kernel {
    entry: *const RawEntry,
    signature: &'static str,
}
// SAFETY: entries are immutable statics of the C++ side.
unsafe impl Send for Kernel {}
unsafe impl Sync for Kernel {}

fn kernels() -> &'static HashMap<&'static str, Kernel> {
    static TABLE: OnceLock<HashMap<&'static str, Kernel>> = OnceLock::new();
    TABLE.get_or_init(|| {
        EMU_ENTRIES
            .iter()
            .map(|&(name, get)| {
                // SAFETY: the generated accessor returns a pointer to a static entry with C strings.
                let entry = unsafe { get() };
                let signature = unsafe { CStr::from_ptr((*entry).signature) }.to_str().unwrap_or("?");
                (name, Kernel { entry, signature })
            })
            .collect()
    })
}

pub(super) fn signature(name: &str) -> Option<&'static str> {
    kernels().get(name).map(|k| k.signature)
}

struct Inner {
    arch: Arch,
    seed: AtomicU64,
    registry: Arc<Registry>,
    optin: Mutex<HashMap<String, u32>>,
    /// Device allocations made so far (what a memory plan must keep constant once warm).
    allocations: AtomicU64,
    /// Emulated device memory size, if limited (else host memory is the limit).
    memory_limit: Option<usize>,
    /// Every capture fails at its end, as on a driver that cannot instantiate the graph (tests of
    /// the step-by-step fallback).
    refuse_graphs: AtomicBool,
}

/// An emulated device. Launches are synchronous; cloning shares the device and its stream,
/// `fork` gives a handle on a new stream of the same device.
#[derive(Clone)]
pub struct EmuDevice {
    inner: Arc<Inner>,
    pub(crate) stream: Arc<EmuStream>,
}

impl EmuDevice {
    pub fn new(arch: Arch) -> Self {
        Self::build(arch, None)
    }

    /// A device with `bytes` of memory: allocations beyond fail as out of memory, and
    /// `memory_info` reports it like a GPU's.
    pub fn with_memory(arch: Arch, bytes: usize) -> Self {
        Self::build(arch, Some(bytes))
    }

    fn build(arch: Arch, memory_limit: Option<usize>) -> Self {
        EmuDevice {
            inner: Arc::new(Inner {
                arch,
                seed: AtomicU64::new(0),
                registry: Arc::default(),
                optin: Mutex::default(),
                allocations: AtomicU64::new(0),
                memory_limit,
                refuse_graphs: AtomicBool::new(false),
            }),
            stream: Arc::default(),
        }
    }

    /// From now on every graph capture fails when it ends (the stream is usable again), as a
    /// driver that cannot capture or instantiate the step would make it: for tests of the
    /// step-by-step fallback.
    pub fn refuse_graphs(&self, on: bool) {
        self.inner.refuse_graphs.store(on, Ordering::Relaxed);
    }

    pub(crate) fn graphs_refused(&self) -> bool {
        self.inner.refuse_graphs.load(Ordering::Relaxed)
    }

    /// (free, total) bytes when the device has a memory size.
    pub fn memory_info(&self) -> Option<(usize, usize)> {
        self.inner.memory_limit.map(|total| (total.saturating_sub(self.inner.registry.live_bytes()), total))
    }

    /// A handle on the same device (memory, kernels, settings) whose work goes to a new stream.
    pub fn fork(&self) -> Self {
        EmuDevice { inner: self.inner.clone(), stream: Arc::default() }
    }

    /// How many device allocations this device has made.
    pub fn allocations(&self) -> u64 {
        self.inner.allocations.load(Ordering::Relaxed)
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn arch(&self) -> Arch {
        self.inner.arch
    }

    pub fn limits(&self) -> Limits {
        self.inner.arch.limits()
    }

    /// Seeds the order in which each block's threads run between barriers.
    pub fn set_schedule_seed(&self, seed: u64) {
        self.inner.seed.store(seed, Ordering::Relaxed);
    }

    /// New memory, poisoned (every byte 0xFF). Refused while this stream captures a graph: a GPU
    /// graph replays fixed addresses, so everything a captured step uses must exist before.
    pub fn alloc(&self, bytes: usize) -> Result<EmuBuffer> {
        self.stream.refuse_while_capturing("allocating device memory")?;
        if let Some((free, total)) = self.memory_info() {
            if bytes > free {
                return Err(Error::OutOfMemory(format!(
                    "out of device memory allocating {bytes} bytes ({free} of {total} bytes free)"
                )));
            }
        }
        self.inner.allocations.fetch_add(1, Ordering::Relaxed);
        EmuBuffer::new(self.inner.registry.clone(), bytes)
    }

    pub fn htod<T: bytemuck::Pod>(&self, data: &[T]) -> Result<EmuBuffer> {
        let mut b = self.alloc(std::mem::size_of_val(data))?;
        b.copy_from(data)?;
        Ok(b)
    }

    /// The opt-in of cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES).
    pub fn set_max_dynamic_shared(&self, kernel: &str, bytes: u32) -> Result<()> {
        Self::kernel(kernel)?;
        let max = self.limits().max_shared_optin_bytes;
        if bytes > max {
            return Err(Error::Cuda(format!(
                "{kernel}: cannot opt in to {bytes} bytes of shared memory on {}, the maximum is {max}",
                self.inner.arch.name()
            )));
        }
        self.inner.optin.lock().unwrap_or_else(|e| e.into_inner()).insert(kernel.to_string(), bytes);
        Ok(())
    }

    fn kernel(name: &str) -> Result<&'static Kernel> {
        kernels().get(name).ok_or_else(|| Error::Cuda(format!("emulator: no kernel named {name:?} (see kernels/*.cu)")))
    }

    /// Runs `kernel` over the grid and returns when every block has finished; while the stream
    /// captures, checks the launch as the driver would and records it instead.
    pub fn launch(&self, kernel: &str, cfg: &LaunchConfig, args: &[Arg]) -> Result<()> {
        if self.stream.is_capturing() {
            self.validate(kernel, cfg, args)?;
            return self.stream.record(EmuOp::Launch { kernel: kernel.to_string(), cfg: *cfg, args: args.to_vec() });
        }
        self.launch_now(kernel, cfg, args)
    }

    /// Limits, argument types and pointers of a launch, as checked before it runs.
    fn validate(&self, kernel: &str, cfg: &LaunchConfig, args: &[Arg]) -> Result<Checked> {
        let k = Self::kernel(kernel)?;
        let optin = self.inner.optin.lock().unwrap_or_else(|e| e.into_inner()).get(kernel).copied();
        self.limits().check(kernel, cfg.grid, cfg.block, cfg.shared_bytes, optin)?;
        let codes: String = args.iter().map(Arg::code).collect();
        if codes != k.signature {
            return Err(Error::Cuda(format!(
                "launch of {kernel}: arguments have types {codes:?}, the kernel takes {:?} \
                 (p pointer, i int, u unsigned, f float, l long long, L unsigned long long)",
                k.signature
            )));
        }
        let mut buffers = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if let Arg::Ptr(p) = *a {
                if p == 0 {
                    continue;
                }
                let found = self.inner.registry.find(p).ok_or_else(|| {
                    Error::Cuda(format!("launch of {kernel}: argument {i} ({p:#x}) is not emulated device memory"))
                })?;
                buffers.push((i, found));
            }
        }
        Ok((optin, buffers))
    }

    pub(crate) fn launch_now(&self, kernel: &str, cfg: &LaunchConfig, args: &[Arg]) -> Result<()> {
        let k = Self::kernel(kernel)?;
        let (optin, buffers) = self.validate(kernel, cfg, args)?;
        let mut slots: Vec<u64> = args.iter().map(Arg::bits).collect();
        let mut ptrs: Vec<*mut c_void> = slots.iter_mut().map(|s| s as *mut u64 as *mut c_void).collect();
        let params = SharedParams(ptrs.as_mut_ptr());
        let seed = self.inner.seed.load(Ordering::Relaxed) ^ fnv1a64(kernel.as_bytes());
        let limits = self.limits();
        let shared_limit = optin.map_or(limits.default_shared_bytes, |_| limits.max_shared_optin_bytes) as usize;
        let [gx, gy, gz] = cfg.grid;
        let total = gx as u64 * gy as u64 * gz as u64;
        let result = (0..total).into_par_iter().try_for_each(|b| {
            let idx =
                [(b % gx as u64) as u32, ((b / gx as u64) % gy as u64) as u32, (b / (gx as u64 * gy as u64)) as u32];
            let mut err = [0 as c_char; 1024];
            let params = &params;
            // SAFETY: the entry and the parameter slots outlive the launch; the kernel reads its
            // parameters and touches only device memory the caller handed it.
            let rc = unsafe {
                percept_emu_run_block(
                    k.entry,
                    params.0,
                    cfg.grid.as_ptr(),
                    cfg.block.as_ptr(),
                    idx.as_ptr(),
                    cfg.shared_bytes as usize,
                    shared_limit,
                    seed,
                    err.as_mut_ptr(),
                    err.len(),
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
                Err(Error::Cuda(format!("emulated kernel {kernel}: {msg}")))
            }
        });
        drop(ptrs);
        result?;
        for (i, (start, len)) in buffers {
            if let Some(what) = self.inner.registry.check_guards(start, len) {
                return Err(Error::Cuda(format!("emulated kernel {kernel}: argument {i}: {what}")));
            }
        }
        Ok(())
    }
}

/// A checked launch: its shared-memory opt-in and its pointer arguments' allocations
/// (argument index, (start, length)).
type Checked = (Option<u32>, Vec<(usize, (u64, usize))>);

struct SharedParams(*mut *mut c_void);
// SAFETY: the parameter array is only read during the launch.
unsafe impl Sync for SharedParams {}
