//! The real GPU behind the `Device` interface, through cudarc's driver API (loaded at run time).
//! Kernels are compiled by NVRTC for the device's own architecture on first use and cached on
//! disk (`nvrtc.rs`). A handle is one stream: launches, copies and memsets go to it in order and
//! never wait for the device; only `download`, `synchronize` and `elapsed_ms` do.
//!
//! Status: written against cudarc 0.19's driver API; not yet run on a GPU (no session so far had
//! one). `scripts/gpu-check` exercises it first thing when a GPU is at hand.

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{result, sys};

use super::device::Device;
use super::kernels::module_of;
use super::launch::{Arg, LaunchConfig};
use super::nvrtc::{self, GpuArch};
use crate::error::{Error, Result};

fn cu<T>(what: &str, r: std::result::Result<T, result::DriverError>) -> Result<T> {
    r.map_err(|e| Error::Cuda(format!("{what}: {e:?}")))
}

struct Inner {
    ctx: sys::CUcontext,
    arch: GpuArch,
    name: String,
    functions: Mutex<HashMap<String, sys::CUfunction>>,
    modules: Mutex<HashMap<&'static str, sys::CUmodule>>,
    /// Where compiled kernels are cached (`backend::switches`).
    cache_dir: Option<std::path::PathBuf>,
    /// Wait for every kernel after launching it (outside captures), so an error shows at the
    /// launch that caused it.
    sync_launches: bool,
}

// SAFETY: CUDA handles may be used from any thread once the context is made current there.
unsafe impl Send for Inner {}
unsafe impl Sync for Inner {}

/// A stream of the device, destroyed with its last handle.
struct Stream {
    raw: sys::CUstream,
    ctx: sys::CUcontext,
    /// Between begin_capture and end_capture (no synchronising then, even in sync mode).
    capturing: AtomicBool,
}

// SAFETY: as for Inner.
unsafe impl Send for Stream {}
unsafe impl Sync for Stream {}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: our own stream, destroyed once, in its context.
        unsafe {
            let _ = result::ctx::set_current(self.ctx);
            let _ = result::stream::destroy(self.raw);
        }
    }
}

#[derive(Clone)]
pub struct GpuDevice {
    inner: Arc<Inner>,
    stream: Arc<Stream>,
}

/// A CUDA event with timing, destroyed when dropped.
pub struct GpuEvent {
    raw: sys::CUevent,
    ctx: sys::CUcontext,
}

// SAFETY: as for Inner.
unsafe impl Send for GpuEvent {}
unsafe impl Sync for GpuEvent {}

impl Drop for GpuEvent {
    fn drop(&mut self) {
        // SAFETY: our own event, destroyed once.
        unsafe {
            let _ = result::ctx::set_current(self.ctx);
            let _ = result::event::destroy(self.raw);
        }
    }
}

/// A captured and instantiated CUDA graph.
pub struct GpuGraph {
    graph: sys::CUgraph,
    exec: sys::CUgraphExec,
    ctx: sys::CUcontext,
}

// SAFETY: as for Inner.
unsafe impl Send for GpuGraph {}
unsafe impl Sync for GpuGraph {}

impl Drop for GpuGraph {
    fn drop(&mut self) {
        // SAFETY: our own graph and its executable, destroyed once.
        unsafe {
            let _ = result::ctx::set_current(self.ctx);
            let _ = result::graph::exec_destroy(self.exec);
            let _ = result::graph::destroy(self.graph);
        }
    }
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
    /// How many GPUs the driver sees (an error where there is no driver).
    pub fn count() -> Result<usize> {
        super::driver_available()?;
        cu("cuInit", result::init())?;
        Ok(cu("cuDeviceGetCount", result::device::get_count())?.max(0) as usize)
    }

    /// Open GPU `ordinal`: checks the driver and NVRTC are present, never panics. The developer
    /// switches come from the environment.
    pub fn open(ordinal: usize) -> Result<Self> {
        Self::open_with(ordinal, &crate::backend::switches::DevSwitches::from_env())
    }

    /// `open` with the given developer switches (kernel cache folder, sync after launch).
    pub fn open_with(ordinal: usize, switches: &crate::backend::switches::DevSwitches) -> Result<Self> {
        super::driver_available()?;
        // NVRTC is not needed here: kernels come from the disk cache (a packed one on a machine
        // without NVRTC, see scripts/gpu-pack) and only a cache miss compiles, saying so.
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
                arch,
                name: format!("{name} (sm_{major}{minor})"),
                functions: Mutex::default(),
                modules: Mutex::default(),
                cache_dir: switches.kernel_cache_dir.clone(),
                sync_launches: switches.sync_launches,
            }),
            stream: Arc::new(Stream { raw: stream, ctx, capturing: AtomicBool::new(false) }),
        })
    }

    /// The driver's CUDA version as "major.minor".
    pub fn driver_version() -> Result<String> {
        super::driver_available()?;
        let mut v = 0;
        // SAFETY: writes one int.
        unsafe { cu("cuDriverGetVersion", sys::cuDriverGetVersion(&mut v).result())? };
        Ok(format!("{}.{}", v / 1000, (v % 1000) / 10))
    }

    pub fn arch(&self) -> GpuArch {
        self.inner.arch
    }

    /// cuBLAS's bf16 GEMM throughput (f32 accumulation) on an n x n x n product, in TFLOP/s: the
    /// device's practical tensor-core peak, measured in the same run as what is compared to it.
    /// The median of `reps` timed products after a warm-up, timed with events on this stream.
    pub fn cublas_bf16_peak_tflops(&self, n: usize, reps: usize) -> Result<f64> {
        use cudarc::cublas::{result as blas, sys as bsys};
        // SAFETY: only tries to dlopen the library.
        if !unsafe { bsys::is_culib_present() } {
            return Err(Error::NoCuda("cuBLAS (libcublas) was not found: no GEMM peak to compare with".into()));
        }
        let bytes = n * n * 2;
        let (a, b, c) = (self.alloc(bytes)?, self.alloc(bytes)?, self.alloc(bytes)?);
        // Small finite bf16 values (0x3C3C ~ 0.0115) rather than whatever the memory held.
        for buf in [&a, &b] {
            self.memset(buf.ptr, bytes, 0x3C)?;
        }
        self.current()?;
        let blas_err = |what: &str, e: blas::CublasError| Error::Cuda(format!("{what}: {e:?}"));
        let handle = blas::create_handle().map_err(|e| blas_err("cublasCreate", e))?;
        let run = || -> Result<f64> {
            // SAFETY: a live handle; our stream.
            unsafe { blas::set_stream(handle, self.stream.raw as bsys::cudaStream_t) }
                .map_err(|e| blas_err("cublasSetStream", e))?;
            let (alpha, beta) = (1.0f32, 0.0f32);
            let gemm = || -> Result<()> {
                let ni = n as i32;
                // SAFETY: three n x n bf16 buffers; alpha/beta are host f32 scalars (compute 32F).
                unsafe {
                    blas::gemm_ex(
                        handle,
                        bsys::cublasOperation_t::CUBLAS_OP_N,
                        bsys::cublasOperation_t::CUBLAS_OP_N,
                        ni,
                        ni,
                        ni,
                        &alpha as *const f32 as *const c_void,
                        a.ptr as *const c_void,
                        bsys::cudaDataType::CUDA_R_16BF,
                        ni,
                        b.ptr as *const c_void,
                        bsys::cudaDataType::CUDA_R_16BF,
                        ni,
                        &beta as *const f32 as *const c_void,
                        c.ptr as *mut c_void,
                        bsys::cudaDataType::CUDA_R_16BF,
                        ni,
                        bsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                        bsys::cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
                    )
                }
                .map_err(|e| blas_err("cublasGemmEx", e))
            };
            gemm()?;
            let mut times = Vec::new();
            for _ in 0..reps.max(1) {
                let start = self.record_event()?;
                gemm()?;
                let end = self.record_event()?;
                times.push(self.elapsed_ms(&start, &end)? as f64);
            }
            times.sort_by(f64::total_cmp);
            Ok(2.0 * (n as f64).powi(3) / (times[times.len() / 2] * 1e-3) / 1e12)
        };
        let result = run();
        // SAFETY: created above, destroyed once.
        unsafe {
            let _ = blas::destroy_handle(handle);
        }
        result
    }

    /// Compiles (or takes from the cache) and loads every kernel module, resolving every entry
    /// point: what `percept doctor` checks on a GPU. Returns the number of entry points.
    pub fn load_all(&self) -> Result<usize> {
        self.current()?;
        let mut n = 0;
        for m in super::kernels::MODULES {
            for entry in m.entries {
                self.function(entry)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn current(&self) -> Result<()> {
        // SAFETY: the context lives as long as this device.
        unsafe { cu("cuCtxSetCurrent", result::ctx::set_current(self.inner.ctx)) }
    }

    fn sync_stream(&self) -> Result<()> {
        self.current()?;
        // SAFETY: our own stream.
        unsafe { cu("cuStreamSynchronize", result::stream::synchronize(self.stream.raw)) }
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
                let compiled = nvrtc::compile_in(module, self.inner.arch, self.inner.cache_dir.as_deref())?;
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

/// True when `err` is a fault that poisons the CUDA context (an illegal address, a kernel trap,
/// a launch failure): every later call in the process fails too, so whatever remains must run in
/// a fresh process to be checked at all.
pub fn is_sticky_fault(err: &Error) -> bool {
    const STICKY: [&str; 11] = [
        "CUDA_ERROR_ILLEGAL_ADDRESS",
        "CUDA_ERROR_LAUNCH_FAILED",
        "CUDA_ERROR_MISALIGNED_ADDRESS",
        "CUDA_ERROR_ILLEGAL_INSTRUCTION",
        "CUDA_ERROR_INVALID_PC",
        "CUDA_ERROR_INVALID_ADDRESS_SPACE",
        "CUDA_ERROR_HARDWARE_STACK_ERROR",
        "CUDA_ERROR_ASSERT",
        "CUDA_ERROR_LAUNCH_TIMEOUT",
        "CUDA_ERROR_ECC_UNCORRECTABLE",
        "CUDA_ERROR_CONTEXT_IS_DESTROYED",
    ];
    let msg = err.to_string();
    STICKY.iter().any(|code| msg.contains(code))
}

impl Device for GpuDevice {
    type Buffer = GpuBuffer;
    type Event = GpuEvent;
    type Graph = GpuGraph;
    fn describe(&self) -> String {
        format!("cuda: {}", self.inner.name)
    }
    fn alloc(&self, bytes: usize) -> Result<GpuBuffer> {
        self.current()?;
        let len = bytes.max(4);
        // SAFETY: plain allocation in the current context.
        let ptr = unsafe { result::malloc_sync(len) }.map_err(|e| {
            // Only the driver's own out-of-memory code is reported as such: any other failure
            // here (a sticky fault from an earlier kernel, a lost context) says what it is.
            if e.0 != sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
                return Error::Cuda(format!("cuMemAlloc of {len} bytes: {e:?}"));
            }
            let (free, total) = result::mem_get_info().unwrap_or((0, 0));
            let msg = format!(
                "out of GPU memory allocating {len} bytes ({e:?}; {} MiB free of {} MiB): use a smaller batch or --backend cpu",
                free >> 20,
                total >> 20
            );
            if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
                Error::OutOfMemory(msg)
            } else {
                Error::Cuda(msg)
            }
        })?;
        Ok(GpuBuffer { ptr, len, ctx: self.inner.ctx })
    }
    fn write(&self, buf: &GpuBuffer, offset: usize, bytes: &[u8]) -> Result<()> {
        if offset + bytes.len() > buf.len {
            return Err(Error::Cuda(format!(
                "write of {} bytes at offset {offset} overruns a {}-byte buffer",
                bytes.len(),
                buf.len
            )));
        }
        self.current()?;
        // SAFETY: the range lies in the buffer. From pageable memory the driver stages the bytes
        // before returning, so the host slice may go away afterwards; the copy is stream-ordered.
        unsafe { cu("cuMemcpyHtoDAsync", result::memcpy_htod_async(buf.ptr + offset as u64, bytes, self.stream.raw)) }
    }
    fn download(&self, buf: &GpuBuffer) -> Result<Vec<u8>> {
        self.sync_stream()?;
        let mut out = vec![0u8; buf.len];
        // SAFETY: out has buf.len bytes; the stream's work that produced them is done.
        unsafe { cu("cuMemcpyDtoH", result::memcpy_dtoh_sync(&mut out, buf.ptr))? };
        Ok(out)
    }
    fn memset(&self, ptr: u64, len: usize, value: u8) -> Result<()> {
        self.current()?;
        // SAFETY: the caller passes a range of its own buffer.
        unsafe { cu("cuMemsetD8Async", result::memset_d8_async(ptr, value, len, self.stream.raw)) }
    }
    fn copy(&self, dst: u64, src: u64, len: usize) -> Result<()> {
        self.current()?;
        // SAFETY: the caller passes ranges of its own buffers.
        unsafe { cu("cuMemcpyDtoDAsync", result::memcpy_dtod_async(dst, src, len, self.stream.raw)) }
    }
    fn address(&self, buf: &GpuBuffer) -> u64 {
        buf.ptr
    }
    fn launch(&self, kernel: &str, cfg: &LaunchConfig, args: &[Arg]) -> Result<()> {
        self.current()?;
        let f = self.function(kernel)?;
        // cuLaunchKernel takes a pointer to each argument value.
        let mut values: Vec<u64> = args.iter().map(Arg::bits).collect();
        let mut params: Vec<*mut c_void> = values.iter_mut().map(|v| v as *mut u64 as *mut c_void).collect();
        let shape = || format!("grid {:?}, block {:?}, {} bytes dynamic shared", cfg.grid, cfg.block, cfg.shared_bytes);
        // SAFETY: little-endian: a 4-byte argument reads the low half of its u64 slot.
        unsafe {
            result::launch_kernel(
                f,
                (cfg.grid[0], cfg.grid[1], cfg.grid[2]),
                (cfg.block[0], cfg.block[1], cfg.block[2]),
                cfg.shared_bytes,
                self.stream.raw,
                &mut params,
            )
        }
        .map_err(|e| Error::Cuda(format!("launch {kernel} ({}): {e:?}", shape())))?;
        if self.inner.sync_launches && !self.stream.capturing.load(Ordering::Relaxed) {
            // SAFETY: our own stream.
            unsafe { result::stream::synchronize(self.stream.raw) }.map_err(|e| {
                Error::Cuda(format!("kernel {kernel} ({}) failed (PERCEPT_CUDA_SYNC=1): {e:?}", shape()))
            })?;
        }
        Ok(())
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
    fn synchronize(&self) -> Result<()> {
        self.sync_stream()
    }
    fn fork(&self) -> Result<Self> {
        self.current()?;
        let raw = cu("cuStreamCreate", result::stream::create(result::stream::StreamKind::NonBlocking))?;
        Ok(GpuDevice {
            inner: self.inner.clone(),
            stream: Arc::new(Stream { raw, ctx: self.inner.ctx, capturing: AtomicBool::new(false) }),
        })
    }
    fn record_event(&self) -> Result<GpuEvent> {
        self.current()?;
        let raw = cu("cuEventCreate", result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
        let ev = GpuEvent { raw, ctx: self.inner.ctx };
        // SAFETY: our own event and stream.
        unsafe { cu("cuEventRecord", result::event::record(ev.raw, self.stream.raw))? };
        Ok(ev)
    }
    fn wait_event(&self, event: &GpuEvent) -> Result<()> {
        self.current()?;
        // SAFETY: live event and stream of this context.
        unsafe {
            cu(
                "cuStreamWaitEvent",
                result::stream::wait_event(self.stream.raw, event.raw, sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT),
            )
        }
    }
    fn elapsed_ms(&self, start: &GpuEvent, end: &GpuEvent) -> Result<f32> {
        self.current()?;
        // SAFETY: live events recorded on this device.
        unsafe {
            cu("cuEventSynchronize", result::event::synchronize(end.raw))?;
            cu("cuEventElapsedTime", result::event::elapsed(start.raw, end.raw))
        }
    }
    fn begin_capture(&self) -> Result<()> {
        self.current()?;
        // Thread-local mode: an allocation, free or synchronisation on this thread during the
        // capture is an error, as the emulator makes it.
        // SAFETY: our own stream.
        let begun = unsafe {
            cu(
                "cuStreamBeginCapture",
                result::stream::begin_capture(
                    self.stream.raw,
                    sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
                ),
            )
        };
        self.stream.capturing.store(begun.is_ok(), Ordering::Relaxed);
        begun
    }
    fn end_capture(&self) -> Result<GpuGraph> {
        self.current()?;
        self.stream.capturing.store(false, Ordering::Relaxed);
        // SAFETY: the stream is capturing (else the driver reports it).
        let graph = unsafe { cu("cuStreamEndCapture", result::stream::end_capture(self.stream.raw))? };
        // SAFETY: a complete graph from the capture.
        let exec = unsafe { result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)) };
        match exec {
            Ok(exec) => Ok(GpuGraph { graph, exec, ctx: self.inner.ctx }),
            Err(e) => {
                // SAFETY: the graph is ours and not used again.
                unsafe {
                    let _ = result::graph::destroy(graph);
                }
                Err(Error::Cuda(format!("cuGraphInstantiate: {e:?}")))
            }
        }
    }
    fn replay(&self, graph: &GpuGraph) -> Result<()> {
        self.current()?;
        // SAFETY: an instantiated graph of this context.
        unsafe { cu("cuGraphLaunch", result::graph::launch(graph.exec, self.stream.raw)) }
    }
    fn memory_info(&self) -> Result<Option<(usize, usize)>> {
        self.current()?;
        Ok(Some(cu("cuMemGetInfo", result::mem_get_info())?))
    }
}
