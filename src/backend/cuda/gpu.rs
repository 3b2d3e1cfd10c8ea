//! The real GPU behind the `Device` interface, through cudarc's driver API (loaded at run time).
//! Kernels are compiled by NVRTC for the device's own architecture on first use and cached on
//! disk (`nvrtc.rs`). Launches go to one stream in order; `download` synchronises.
//!
//! Status: written against cudarc 0.19's driver API; not yet run on a GPU (no session so far had
//! one). `scripts/gpu-check` exercises it first thing when a GPU is at hand.

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::{Arc, Mutex};

use cudarc::driver::{result, sys};

use super::device::Device;
use super::kernels::module_of;
use super::nvrtc::{self, GpuArch};
use crate::emu::{Arg, LaunchConfig};
use crate::error::{Error, Result};

fn cu<T>(what: &str, r: std::result::Result<T, result::DriverError>) -> Result<T> {
    r.map_err(|e| Error::Cuda(format!("{what}: {e:?}")))
}

struct Inner {
    ctx: sys::CUcontext,
    stream: sys::CUstream,
    arch: GpuArch,
    name: String,
    functions: Mutex<HashMap<String, sys::CUfunction>>,
    modules: Mutex<HashMap<&'static str, sys::CUmodule>>,
}

// SAFETY: CUDA handles may be used from any thread once the context is made current there.
unsafe impl Send for Inner {}
unsafe impl Sync for Inner {}

#[derive(Clone)]
pub struct GpuDevice {
    inner: Arc<Inner>,
}

/// Device memory, freed when dropped.
pub struct GpuBuffer {
    ptr: sys::CUdeviceptr,
    len: usize,
    ctx: sys::CUcontext,
}

// SAFETY: a device address; freeing makes the owning context current first.
unsafe impl Send for GpuBuffer {}
unsafe impl Sync for GpuBuffer {}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        // SAFETY: ptr came from malloc_sync in this context and is freed once.
        unsafe {
            let _ = result::ctx::set_current(self.ctx);
            let _ = result::free_sync(self.ptr);
        }
    }
}

impl GpuDevice {
    /// Open GPU `ordinal`: checks the driver and NVRTC are present, never panics.
    pub fn open(ordinal: usize) -> Result<Self> {
        super::driver_available()?;
        nvrtc::nvrtc_available()?;
        cu("cuInit", result::init())?;
        let count = cu("cuDeviceGetCount", result::device::get_count())?;
        if count <= ordinal as i32 {
            return Err(Error::NoCuda(format!(
                "no CUDA device {ordinal} ({count} found); try --backend cpu or --backend cuda-emu"
            )));
        }
        let dev = cu("cuDeviceGet", result::device::get(ordinal as i32))?;
        let name = cu("cuDeviceGetName", result::device::get_name(dev))?;
        // SAFETY: dev is a valid device handle.
        let (major, minor) = unsafe {
            (
                cu(
                    "compute capability",
                    result::device::get_attribute(
                        dev,
                        sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                    ),
                )?,
                cu(
                    "compute capability",
                    result::device::get_attribute(
                        dev,
                        sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                    ),
                )?,
            )
        };
        let arch = GpuArch::for_compute_capability(major as u32, minor as u32).ok_or_else(|| {
            Error::NoCuda(format!("{name} has compute capability {major}.{minor}; percept needs sm_80 or newer"))
        })?;
        // SAFETY: retaining the primary context of a valid device.
        let ctx = unsafe { cu("cuDevicePrimaryCtxRetain", result::primary_ctx::retain(dev))? };
        unsafe { cu("cuCtxSetCurrent", result::ctx::set_current(ctx))? };
        let stream = cu("cuStreamCreate", result::stream::create(result::stream::StreamKind::NonBlocking))?;
        Ok(GpuDevice {
            inner: Arc::new(Inner {
                ctx,
                stream,
                arch,
                name: format!("{name} (sm_{major}{minor})"),
                functions: Mutex::default(),
                modules: Mutex::default(),
            }),
        })
    }

    fn current(&self) -> Result<()> {
        // SAFETY: the context lives as long as this device.
        unsafe { cu("cuCtxSetCurrent", result::ctx::set_current(self.inner.ctx)) }
    }

    pub fn synchronize(&self) -> Result<()> {
        self.current()?;
        // SAFETY: our own stream.
        unsafe { cu("cuStreamSynchronize", result::stream::synchronize(self.inner.stream)) }
    }

    fn function(&self, kernel: &str) -> Result<sys::CUfunction> {
        if let Some(f) = self.inner.functions.lock().unwrap_or_else(|e| e.into_inner()).get(kernel) {
            return Ok(*f);
        }
        let module = module_of(kernel).ok_or_else(|| Error::Cuda(format!("no kernel named {kernel:?}")))?;
        let mut modules = self.inner.modules.lock().unwrap_or_else(|e| e.into_inner());
        let m = match modules.get(module.name) {
            Some(m) => *m,
            None => {
                let compiled = nvrtc::compile(module, self.inner.arch)?;
                // SAFETY: a complete CUBIN image from NVRTC for this device's architecture.
                let m = unsafe {
                    cu("cuModuleLoadData", result::module::load_data(compiled.cubin.as_ptr() as *const c_void))?
                };
                modules.insert(module.name, m);
                m
            }
        };
        let cname = CString::new(kernel).map_err(|_| Error::Cuda(format!("bad kernel name {kernel:?}")))?;
        // SAFETY: m is a loaded module.
        let f = unsafe { cu(&format!("cuModuleGetFunction({kernel})"), result::module::get_function(m, cname))? };
        self.inner.functions.lock().unwrap_or_else(|e| e.into_inner()).insert(kernel.to_string(), f);
        Ok(f)
    }
}

impl Device for GpuDevice {
    type Buffer = GpuBuffer;
    fn describe(&self) -> String {
        format!("cuda: {}", self.inner.name)
    }
    fn alloc(&self, bytes: usize) -> Result<GpuBuffer> {
        self.current()?;
        let len = bytes.max(4);
        // SAFETY: plain allocation in the current context.
        let ptr = unsafe { result::malloc_sync(len) }.map_err(|e| {
            let (free, total) = result::mem_get_info().unwrap_or((0, 0));
            Error::Cuda(format!(
                "out of GPU memory allocating {len} bytes ({e:?}; {} MiB free of {} MiB): use a smaller batch or --backend cpu",
                free >> 20,
                total >> 20
            ))
        })?;
        Ok(GpuBuffer { ptr, len, ctx: self.inner.ctx })
    }
    fn upload(&self, bytes: &[u8]) -> Result<GpuBuffer> {
        let b = self.alloc(bytes.len())?;
        // Ordered after earlier launches on our stream by synchronising first.
        self.synchronize()?;
        // SAFETY: b holds at least bytes.len() bytes.
        unsafe { cu("cuMemcpyHtoD", result::memcpy_htod_sync(b.ptr, bytes))? };
        Ok(b)
    }
    fn download(&self, buf: &GpuBuffer) -> Result<Vec<u8>> {
        self.synchronize()?;
        let mut out = vec![0u8; buf.len];
        // SAFETY: out has buf.len bytes.
        unsafe { cu("cuMemcpyDtoH", result::memcpy_dtoh_sync(&mut out, buf.ptr))? };
        Ok(out)
    }
    fn address(&self, buf: &GpuBuffer) -> u64 {
        buf.ptr
    }
    fn launch(&self, kernel: &str, cfg: &LaunchConfig, args: &[Arg]) -> Result<()> {
        self.current()?;
        let f = self.function(kernel)?;
        // cuLaunchKernel takes a pointer to each argument value.
        let mut values: Vec<u64> = args
            .iter()
            .map(|a| match *a {
                Arg::Ptr(p) => p,
                Arg::I32(v) => v as u32 as u64,
                Arg::U32(v) => v as u64,
                Arg::F32(v) => v.to_bits() as u64,
                Arg::I64(v) => v as u64,
                Arg::U64(v) => v,
            })
            .collect();
        let mut params: Vec<*mut c_void> = values.iter_mut().map(|v| v as *mut u64 as *mut c_void).collect();
        // SAFETY: little-endian: a 4-byte argument reads the low half of its u64 slot.
        unsafe {
            cu(
                &format!("launch {kernel}"),
                result::launch_kernel(
                    f,
                    (cfg.grid[0], cfg.grid[1], cfg.grid[2]),
                    (cfg.block[0], cfg.block[1], cfg.block[2]),
                    cfg.shared_bytes,
                    self.inner.stream,
                    &mut params,
                ),
            )
        }
    }
    fn set_max_dynamic_shared(&self, kernel: &str, bytes: u32) -> Result<()> {
        self.current()?;
        let f = self.function(kernel)?;
        // SAFETY: f is a loaded function.
        unsafe {
            cu(
                "cuFuncSetAttribute",
                result::function::set_function_attribute(
                    f,
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    bytes as i32,
                ),
            )
        }
    }
}
