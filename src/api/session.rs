//! A session: one model on one device, with the device's memory pool and captured graphs kept
//! warm between calls. One thread at a time (`&mut self`, `Send`); make one session per thread.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use super::control::CancelToken;
use super::image::ImageView;
use super::model::Model;
use super::options::{AmodalOptions, DepthOptions, FlowOptions, Options};
use super::prepare::{segment_prompt, to_input_size, to_model, valid_depth_prompt, AtInputSize};
use super::results::{AmodalResult, DepthResult, FlowResult, Latent};
use crate::backend::cpu::Cpu;
use crate::backend::cuda::backend::Cuda;
use crate::backend::cuda::gpu::GpuDevice;
use crate::backend::switches::DevSwitches;
use crate::backend::Backend;
use crate::emu::{Arch, EmuDevice};
use crate::error::{Error, Result};
use crate::model::task::Task;
use crate::pipeline::any::cuda_engine;
use crate::pipeline::control::Control;
use crate::pipeline::tasks::{depth_prompt, Prediction, Request, SampleOptions};
use crate::pipeline::{DenoiseCache, Engine};
use crate::tensor::Tensor;

/// Where a session runs.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum Device {
    /// The first GPU if one is usable and the model fits, else the CPU.
    #[default]
    Auto,
    /// The CPU, on a thread pool of its own with `threads` threads (`None`: one per core).
    Cpu { threads: Option<usize> },
    /// The GPU with this ordinal.
    Cuda { ordinal: usize },
    /// The CUDA backend on the CPU emulator (slow; for tests and development).
    CudaEmu,
}

impl FromStr for Device {
    type Err = Error;
    /// `auto`, `cpu`, `cpu:N` (N threads), `cuda` (GPU 0), `cuda:N`, `cuda-emu`.
    ///
    /// ```
    /// use percept::Device;
    /// assert_eq!("cuda:1".parse::<Device>()?, Device::Cuda { ordinal: 1 });
    /// assert_eq!("cpu:2".parse::<Device>()?, Device::Cpu { threads: Some(2) });
    /// assert!("tpu".parse::<Device>().is_err());
    /// # Ok::<(), percept::Error>(())
    /// ```
    fn from_str(s: &str) -> Result<Device> {
        let bad = || Error::Input(format!("device \"{s}\": expected auto, cpu, cpu:THREADS, cuda, cuda:N or cuda-emu"));
        let s_l = s.trim().to_ascii_lowercase();
        Ok(match s_l.as_str() {
            "auto" => Device::Auto,
            "cpu" => Device::Cpu { threads: None },
            "cuda" | "gpu" => Device::Cuda { ordinal: 0 },
            "cuda-emu" | "cuda_emu" => Device::CudaEmu,
            other => {
                if let Some(n) = other.strip_prefix("cpu:") {
                    let n: usize = n.parse().map_err(|_| bad())?;
                    if n == 0 {
                        return Err(bad());
                    }
                    Device::Cpu { threads: Some(n) }
                } else if let Some(n) = other.strip_prefix("cuda:") {
                    Device::Cuda { ordinal: n.parse().map_err(|_| bad())? }
                } else {
                    return Err(bad());
                }
            }
        })
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Auto => write!(f, "auto"),
            Device::Cpu { threads: None } => write!(f, "cpu"),
            Device::Cpu { threads: Some(n) } => write!(f, "cpu:{n}"),
            Device::Cuda { ordinal } => write!(f, "cuda:{ordinal}"),
            Device::CudaEmu => write!(f, "cuda-emu"),
        }
    }
}

/// Storage precision of weights and activations (arithmetic accumulates in f32 either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    F32,
    Bf16,
}

/// How a session is made. `SessionOptions::default()` then set fields, or the `with_` methods.
///
/// The developer switches (`fast_kernels`, `cpu_amx`, `sync_launches`, `kernel_cache_dir`)
/// default to what the environment says (`backend::switches`, the one place that reads it);
/// a value set here wins.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SessionOptions {
    pub device: Device,
    /// `None`: the device's default, f32 on the CPU and the emulator, bf16 on a GPU. On the CPU,
    /// bf16 computes what a GPU's bf16 path does (bf16 weights and activations, f32 sums).
    pub precision: Option<Precision>,
    /// CUDA: the fast kernel variants (bf16 tensor-core tiles).
    pub fast_kernels: Option<bool>,
    /// CPU: the AMX GEMM where the CPU has it (`false`: AVX-512 or the portable GEMM).
    pub cpu_amx: Option<bool>,
    /// GPU: synchronise after every kernel launch (slow; errors show at their launch). The
    /// emulator runs each launch to completion anyway.
    pub sync_launches: Option<bool>,
    /// CUDA: where compiled kernels are cached.
    pub kernel_cache_dir: Option<PathBuf>,
}

impl SessionOptions {
    pub fn new(device: Device) -> Self {
        SessionOptions { device, ..Default::default() }
    }
    pub fn with_precision(mut self, p: Precision) -> Self {
        self.precision = Some(p);
        self
    }
    pub fn with_fast_kernels(mut self, on: bool) -> Self {
        self.fast_kernels = Some(on);
        self
    }
    pub fn with_cpu_amx(mut self, on: bool) -> Self {
        self.cpu_amx = Some(on);
        self
    }
    pub fn with_sync_launches(mut self, on: bool) -> Self {
        self.sync_launches = Some(on);
        self
    }
    pub fn with_kernel_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.kernel_cache_dir = Some(dir.into());
        self
    }

    /// The switches this session runs with: these options over the environment's.
    fn switches(&self) -> DevSwitches {
        let env = DevSwitches::from_env();
        DevSwitches {
            fast_kernels: self.fast_kernels.unwrap_or(env.fast_kernels),
            cpu_amx: self.cpu_amx.unwrap_or(env.cpu_amx),
            sync_launches: self.sync_launches.unwrap_or(env.sync_launches),
            kernel_cache_dir: self.kernel_cache_dir.clone().or(env.kernel_cache_dir),
        }
    }
}

/// How many denoising states (shape and label set, each with its captured step and buffers) a
/// session keeps warm.
const WARM_SHAPES: usize = 4;

/// The engine a session runs on, and the denoising states it keeps warm.
enum Runner {
    /// The model's shared CPU engine, on this session's own thread pool.
    Cpu {
        engine: Arc<Engine<Cpu>>,
        pool: rayon::ThreadPool,
        cache: DenoiseCache<Cpu>,
    },
    Emu {
        engine: Box<Engine<Cuda<EmuDevice>>>,
        cache: DenoiseCache<Cuda<EmuDevice>>,
    },
    Gpu {
        engine: Box<Engine<Cuda<GpuDevice>>>,
        cache: DenoiseCache<Cuda<GpuDevice>>,
    },
}

impl Runner {
    fn cpu(engine: Arc<Engine<Cpu>>, pool: rayon::ThreadPool) -> Self {
        Runner::Cpu { engine, pool, cache: DenoiseCache::new(WARM_SHAPES) }
    }
    fn emu(engine: Engine<Cuda<EmuDevice>>) -> Self {
        Runner::Emu { engine: Box::new(engine), cache: DenoiseCache::new(WARM_SHAPES) }
    }
    fn gpu(engine: Engine<Cuda<GpuDevice>>) -> Self {
        Runner::Gpu { engine: Box::new(engine), cache: DenoiseCache::new(WARM_SHAPES) }
    }
}

/// Run `$body` with `$e` bound to the session's engine and `$c` to its denoising cache (on the
/// CPU, inside the session's thread pool).
macro_rules! on_engine {
    ($runner:expr, $e:ident, $c:ident => $body:expr) => {
        match $runner {
            Runner::Cpu { engine, pool, cache } => {
                let ($e, $c): (&Engine<Cpu>, _) = (engine, cache);
                pool.install(|| $body)
            }
            Runner::Emu { engine, cache } => {
                let ($e, $c): (&Engine<Cuda<EmuDevice>>, _) = (engine, cache);
                $body
            }
            Runner::Gpu { engine, cache } => {
                let ($e, $c): (&Engine<Cuda<GpuDevice>>, _) = (engine, cache);
                $body
            }
        }
    };
}

/// One model on one device, ready to run the three tasks.
///
/// `Send` but not `Sync`: use a session from one thread at a time (its methods take
/// `&mut self`); for parallel work make one session per thread from the same [`Model`]. CPU
/// sessions share the model's weights; each GPU or emulator session holds its own copy on the
/// device, its own memory pool and captured graphs.
///
/// ```
/// use percept::{DepthOptions, Device, ImageView, Model, Session};
/// let model = Model::demo()?;
/// let mut session = Session::new(&model, Device::Cpu { threads: Some(1) })?;
/// let (w, h) = (40, 30);
/// let pixels: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
/// let image = ImageView::rgb8(&pixels, w, h)?;
/// let opts = DepthOptions { num_inference_steps: 2, ..Default::default() };
/// let result = session.depth(&image, &opts)?;
/// assert_eq!((result.width, result.height, result.depth.len()), (w, h, w * h));
/// assert!(result.depth.iter().all(|d| (0.0..=1.0).contains(d)));
/// # Ok::<(), percept::Error>(())
/// ```
pub struct Session {
    model: Model,
    runner: Runner,
    cancel: CancelToken,
    /// Why `Device::Auto` runs this session on the CPU (`None`: it was not asked to choose, or
    /// it chose the GPU).
    cpu_because: Option<String>,
}

/// The GPU `Device::Auto` takes: GPU 0 when a CUDA driver and a device are usable, else why
/// not (and `auto` then means the CPU). The one meaning of `auto`: the command line's
/// `--backend auto` resolves through here too, in every command.
#[doc(hidden)]
pub fn auto_gpu(switches: &DevSwitches) -> std::result::Result<GpuDevice, String> {
    GpuDevice::open_with(0, switches).map_err(|e| format!("no usable GPU: {e}"))
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("model", &self.model).field("device", &self.device_name()).finish()
    }
}

impl Session {
    /// A session on `device` with the default options.
    pub fn new(model: &Model, device: Device) -> Result<Session> {
        Self::with_options(model, SessionOptions::new(device))
    }

    /// A session with `opts`. A GPU that was asked for and is not usable is an error
    /// (`ErrorKind::NoDevice`); `Device::Auto` falls back to the CPU (at the precision asked for, f32 by default) when there is no
    /// usable GPU or the model does not fit it (with a `log` warning in the second case).
    pub fn with_options(model: &Model, opts: SessionOptions) -> Result<Session> {
        let sw = opts.switches();
        let src = model.source();
        let mut cpu_because = None;
        let runner = match opts.device {
            Device::Cpu { threads } => cpu_runner(model, threads, opts.precision, &sw)?,
            Device::CudaEmu => {
                let dev = EmuDevice::new(Arch::Sm90);
                let be = match opts.precision.unwrap_or(Precision::F32) {
                    Precision::F32 => Cuda::new(dev),
                    Precision::Bf16 => Cuda::bf16(dev),
                };
                Runner::emu(cuda_engine(be.with_fast_kernels(sw.fast_kernels), src)?)
            }
            Device::Cuda { ordinal } => {
                Runner::gpu(gpu_engine(GpuDevice::open_with(ordinal, &sw)?, opts.precision, &sw, model)?)
            }
            Device::Auto => {
                let cpu = || cpu_runner(model, None, opts.precision, &sw);
                match auto_gpu(&sw) {
                    Ok(dev) => match gpu_engine(dev, opts.precision, &sw, model) {
                        Ok(e) => Runner::gpu(e),
                        Err(e) => {
                            log::warn!("not using the GPU: {e}");
                            cpu_because = Some(format!("the GPU cannot run the model: {e}"));
                            cpu()?
                        }
                    },
                    Err(why) => {
                        log::info!("{why}");
                        cpu_because = Some(why);
                        cpu()?
                    }
                }
            }
        };
        Ok(Session { model: model.clone(), runner, cancel: CancelToken::new(), cpu_because })
    }

    /// Why `Device::Auto` chose the CPU for this session, if it did.
    #[doc(hidden)]
    pub fn auto_chose_cpu_because(&self) -> Option<&str> {
        self.cpu_because.as_deref()
    }

    /// What runs this session, e.g. `cpu (2 threads, AMX GEMM)`.
    pub fn device_name(&self) -> String {
        match &self.runner {
            Runner::Cpu { engine, pool, .. } => pool.install(|| engine.backend.name()),
            Runner::Emu { engine, .. } => engine.backend.name(),
            Runner::Gpu { engine, .. } => engine.backend.name(),
        }
    }

    /// Denoising steps this session has captured as graphs (tests: a warm call captures none).
    #[doc(hidden)]
    pub fn graph_captures(&self) -> u64 {
        match &self.runner {
            Runner::Cpu { cache, .. } => cache.captures(),
            Runner::Emu { cache, .. } => cache.captures(),
            Runner::Gpu { cache, .. } => cache.captures(),
        }
    }

    /// Device allocations made so far, where the device counts them (the emulator).
    #[doc(hidden)]
    pub fn device_allocations(&self) -> Option<u64> {
        use crate::backend::cuda::device::Device as _;
        match &self.runner {
            Runner::Cpu { .. } => None,
            Runner::Emu { engine, .. } => engine.backend.dev.allocation_count(),
            Runner::Gpu { engine, .. } => engine.backend.dev.allocation_count(),
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Make depth calls of `batch` inputs (ensemble 1) warm: after this, such a call allocates
    /// no device memory and captures no graph. Runs one call of `steps` steps (fills the memory
    /// pool, compiles the kernels, captures the denoising step) and one of a single step (the
    /// capture keeps some of the pool's buffers as the graph's own, so the encoder and decoder
    /// need the pool filled once more). Any shape gets warm the same way after its first two
    /// calls; a session keeps four shapes warm (the least recently used is dropped).
    pub fn warmup(&mut self, batch: usize, steps: usize) -> Result<()> {
        let res = self.model.resolution();
        let gray = vec![0.5f32; 3 * res * res];
        let view = ImageView::rgb_f32(&gray, res, res)?;
        let images = vec![view; batch.max(1)];
        let opts = Options { num_inference_steps: steps.max(1), batch_size: batch.max(1), ..Default::default() };
        self.depth_batch(&images, &opts)?;
        self.depth_batch(&images, &Options { num_inference_steps: 1, ..opts })?;
        Ok(())
    }

    /// A token that stops this session's running call from another thread (see
    /// [`CancelToken`]).
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Use `token` as this session's cancel token from now on (one that something else, e.g. a
    /// signal handler, also holds). As with the session's own token, the session clears it
    /// when a call returns.
    pub fn set_cancel_token(&mut self, token: CancelToken) {
        self.cancel = token;
    }

    /// Relative depth of one image.
    pub fn depth(&mut self, image: &ImageView, opts: &DepthOptions) -> Result<DepthResult> {
        one(self.depth_batch(std::slice::from_ref(image), opts)?)
    }

    /// Relative depth of several images, `opts.batch_size` per model batch.
    pub fn depth_batch(&mut self, images: &[ImageView], opts: &DepthOptions) -> Result<Vec<DepthResult>> {
        let inputs: Vec<Input> = images.iter().map(|i| Input::Depth { image: *i, valid: None }).collect();
        self.run(&inputs, opts)?.into_iter().map(Output::into_depth).collect()
    }

    /// Relative depth with a valid-depth mask as the prompt (a percept extension: the model
    /// was trained with the valid mask of its ground truth as the depth prompt, which is what
    /// `percept eval` passes; mask pixels are read as amodal masks are, see [`ImageView`]).
    /// The plain calls prompt with an all-valid mask.
    pub fn depth_with_valid_mask(
        &mut self,
        image: &ImageView,
        valid: &ImageView,
        opts: &DepthOptions,
    ) -> Result<DepthResult> {
        one(self.depth_batch_with_valid_masks(&[(*image, *valid)], opts)?)
    }

    /// `depth_with_valid_mask` for several (image, valid mask) pairs.
    pub fn depth_batch_with_valid_masks(
        &mut self,
        pairs: &[(ImageView, ImageView)],
        opts: &DepthOptions,
    ) -> Result<Vec<DepthResult>> {
        let inputs: Vec<Input> = pairs.iter().map(|(i, v)| Input::Depth { image: *i, valid: Some(*v) }).collect();
        self.run(&inputs, opts)?.into_iter().map(Output::into_depth).collect()
    }

    /// `depth` written into `depth_out` (`height * width` values at the output size: the
    /// input's, or the model's resolution squared without `match_input_resolution`).
    /// Uncertainty and latents are not returned here.
    pub fn depth_into(&mut self, image: &ImageView, opts: &DepthOptions, depth_out: &mut [f32]) -> Result<()> {
        let (w, h) = self.out_size(image, opts);
        check_out("depth_out", depth_out.len(), w * h)?;
        let r = self.depth(image, opts)?;
        depth_out.copy_from_slice(&r.depth);
        Ok(())
    }

    /// Optical flow from `frame1` to `frame2` (same size).
    pub fn flow(&mut self, frame1: &ImageView, frame2: &ImageView, opts: &FlowOptions) -> Result<FlowResult> {
        one(self.flow_batch(&[(*frame1, *frame2)], opts)?)
    }

    /// Optical flow of several frame pairs.
    pub fn flow_batch(&mut self, pairs: &[(ImageView, ImageView)], opts: &FlowOptions) -> Result<Vec<FlowResult>> {
        let inputs: Vec<Input> = pairs.iter().map(|(a, b)| Input::Flow(*a, *b)).collect();
        self.run(&inputs, opts)?.into_iter().map(Output::into_flow).collect()
    }

    /// `flow` written into `flow_out` (`height * width * 2`, interleaved u, v).
    pub fn flow_into(
        &mut self,
        f1: &ImageView,
        f2: &ImageView,
        opts: &FlowOptions,
        flow_out: &mut [f32],
    ) -> Result<()> {
        let (w, h) = self.out_size(f1, opts);
        check_out("flow_out", flow_out.len(), w * h * 2)?;
        let r = self.flow(f1, f2, opts)?;
        flow_out.copy_from_slice(&r.flow);
        Ok(())
    }

    /// Amodal segmentation: the whole object, from an image and its visible-object mask (any
    /// format; see [`ImageView`]).
    pub fn amodal(&mut self, image: &ImageView, mask: &ImageView, opts: &AmodalOptions) -> Result<AmodalResult> {
        one(self.amodal_batch(&[(*image, *mask)], opts)?)
    }

    /// Amodal segmentation of several (image, mask) pairs.
    pub fn amodal_batch(
        &mut self,
        pairs: &[(ImageView, ImageView)],
        opts: &AmodalOptions,
    ) -> Result<Vec<AmodalResult>> {
        let inputs: Vec<Input> = pairs.iter().map(|(a, b)| Input::Amodal(*a, *b)).collect();
        self.run(&inputs, opts)?.into_iter().map(Output::into_amodal).collect()
    }

    /// `amodal` written into `rgb_out` (`height * width * 3`) and `mask_out` (`height * width`).
    pub fn amodal_into(
        &mut self,
        image: &ImageView,
        mask: &ImageView,
        opts: &AmodalOptions,
        rgb_out: &mut [f32],
        mask_out: &mut [u8],
    ) -> Result<()> {
        let (w, h) = self.out_size(image, opts);
        check_out("rgb_out", rgb_out.len(), w * h * 3)?;
        check_out("mask_out", mask_out.len(), w * h)?;
        let r = self.amodal(image, mask, opts)?;
        rgb_out.copy_from_slice(&r.rgb);
        mask_out.copy_from_slice(&r.mask);
        Ok(())
    }

    fn out_size(&self, image: &ImageView, opts: &Options) -> (usize, usize) {
        if opts.match_input_resolution {
            (image.width(), image.height())
        } else {
            (self.model.resolution(), self.model.resolution())
        }
    }

    /// Every call ends here: inputs to requests, batches through the engine, results back at
    /// the output size. The cancel flag is cleared when the call returns.
    fn run(&mut self, inputs: &[Input], opts: &Options) -> Result<Vec<Output>> {
        let out = self.run_inner(inputs, opts);
        self.cancel.reset();
        out
    }

    fn run_inner(&mut self, inputs: &[Input], opts: &Options) -> Result<Vec<Output>> {
        check_options(opts)?;
        let res = self.model.resolution();
        let init = match &opts.latents {
            Some(l) => {
                let n = l.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                if l.shape.len() != 4 || n != Some(l.data.len()) {
                    return Err(Error::Input(format!(
                        "latents: shape {:?} must be [rows, channels, h, w] and hold its {} values",
                        l.shape,
                        l.data.len()
                    )));
                }
                Some(Tensor::new(l.shape.clone(), l.data.clone())?)
            }
            None => None,
        };
        let sample = SampleOptions {
            steps: opts.num_inference_steps,
            ensemble: opts.ensemble_size,
            seed: opts.seed,
            control: Control { cancel: Some(self.cancel.clone()), progress: opts.progress.clone() },
        };
        let mut outputs = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(opts.batch_size) {
            let mut requests = Vec::with_capacity(chunk.len());
            let mut sizes = Vec::with_capacity(chunk.len());
            for input in chunk {
                let (req, size) = input.request(res)?;
                requests.push(req);
                sizes.push(if opts.match_input_resolution { size } else { (res, res) });
            }
            let (preds, latents) =
                on_engine!(&mut self.runner, e, c => e.predict_full(&requests, &sample, init.as_ref(), c))?;
            let rows = latents.shape.first().copied().unwrap_or(0) / requests.len().max(1);
            for (i, (pred, (w, h))) in preds.iter().zip(sizes).enumerate() {
                let latent = if opts.output_latent {
                    let mut shape = latents.shape.clone();
                    shape[0] = rows;
                    let n: usize = shape.iter().product();
                    Some(Latent { shape, data: latents.data[i * n..(i + 1) * n].to_vec() })
                } else {
                    None
                };
                outputs.push(Output::new(pred, res, w, h, opts, latent)?);
            }
        }
        Ok(outputs)
    }
}

fn check_options(opts: &Options) -> Result<()> {
    if opts.num_inference_steps == 0 {
        return Err(Error::Input("num_inference_steps must be at least 1".into()));
    }
    if opts.ensemble_size == 0 {
        return Err(Error::Input("ensemble_size must be at least 1".into()));
    }
    if opts.batch_size == 0 {
        return Err(Error::Input("batch_size must be at least 1".into()));
    }
    Ok(())
}

fn check_out(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::Input(format!("{what} holds {got} values; this call writes {want}")));
    }
    Ok(())
}

fn one<T>(v: Vec<T>) -> Result<T> {
    v.into_iter().next().ok_or_else(|| Error::Shape("a call of one input returned no result".into()))
}

fn cpu_runner(model: &Model, threads: Option<usize>, precision: Option<Precision>, sw: &DevSwitches) -> Result<Runner> {
    if threads == Some(0) {
        return Err(Error::Input("Device::Cpu: threads must be at least 1".into()));
    }
    let amx = sw.cpu_amx;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .thread_name(|i| format!("percept-cpu-{i}"))
        .start_handler(move |_| crate::backend::cpu::gemm::set_thread_amx(amx))
        .build()
        .map_err(|e| Error::Input(format!("cannot start {} CPU threads: {e}", threads.unwrap_or(0))))?;
    Ok(Runner::cpu(model.cpu_engine(precision == Some(Precision::Bf16))?, pool))
}

fn gpu_engine(
    dev: GpuDevice,
    precision: Option<Precision>,
    sw: &DevSwitches,
    model: &Model,
) -> Result<Engine<Cuda<GpuDevice>>> {
    let be = match precision.unwrap_or(Precision::Bf16) {
        Precision::F32 => Cuda::new(dev),
        Precision::Bf16 => Cuda::bf16(dev),
    };
    cuda_engine(be.with_fast_kernels(sw.fast_kernels), model.source())
}

/// One input of a call, borrowed.
enum Input<'a> {
    Depth { image: ImageView<'a>, valid: Option<ImageView<'a>> },
    Flow(ImageView<'a>, ImageView<'a>),
    Amodal(ImageView<'a>, ImageView<'a>),
}

impl Input<'_> {
    /// The request at the model's resolution and the input's size.
    fn request(&self, res: usize) -> Result<(Request, (usize, usize))> {
        let (task, first, prompt) = match self {
            Input::Depth { image, valid } => {
                let prompt = match valid {
                    Some(v) => {
                        same_size("valid-depth mask", image, v)?;
                        valid_depth_prompt(&v.to_mask_plane(), res)?
                    }
                    None => depth_prompt(res),
                };
                (Task::Depth, image, prompt)
            }
            Input::Flow(a, b) => {
                same_size("second frame", a, b)?;
                (Task::Flow, a, to_model(&b.to_rgb_planes(), res)?)
            }
            Input::Amodal(image, mask) => {
                same_size("mask", image, mask)?;
                (Task::Segment, image, segment_prompt(&mask.to_mask_plane(), res)?)
            }
        };
        let rgb = to_model(&first.to_rgb_planes(), res)?;
        Ok((Request { task, rgb, prompt }, (first.width(), first.height())))
    }
}

fn same_size(what: &str, a: &ImageView, b: &ImageView) -> Result<()> {
    if (a.width(), a.height()) != (b.width(), b.height()) {
        return Err(Error::Input(format!(
            "the {what} is {}x{}, the image {}x{}: they must have the same size",
            b.width(),
            b.height(),
            a.width(),
            a.height()
        )));
    }
    Ok(())
}

/// One result before it is typed.
enum Output {
    Depth(DepthResult),
    Flow(FlowResult),
    Amodal(AmodalResult),
}

impl Output {
    fn new(
        pred: &Prediction,
        res: usize,
        w: usize,
        h: usize,
        opts: &Options,
        latent: Option<Latent>,
    ) -> Result<Output> {
        Ok(match to_input_size(pred, res, w, h)? {
            AtInputSize::Depth { depth, uncertainty } => Output::Depth(DepthResult {
                width: w,
                height: h,
                depth,
                uncertainty: if opts.output_uncertainty { uncertainty } else { None },
                latent,
            }),
            AtInputSize::Flow(f) => {
                let flow = f.u.iter().zip(&f.v).flat_map(|(&u, &v)| [u, v]).collect();
                Output::Flow(FlowResult { width: w, height: h, flow, latent })
            }
            AtInputSize::Segment { image, mask } => {
                let n = w * h;
                let rgb = (0..n).flat_map(|p| [image[p], image[n + p], image[2 * n + p]]).collect();
                let mask = mask.iter().map(|&m| u8::from(m > 0.5)).collect();
                Output::Amodal(AmodalResult { width: w, height: h, rgb, mask, latent })
            }
        })
    }
    fn into_depth(self) -> Result<DepthResult> {
        match self {
            Output::Depth(r) => Ok(r),
            _ => Err(Error::Shape("a depth call returned another task's result".into())),
        }
    }
    fn into_flow(self) -> Result<FlowResult> {
        match self {
            Output::Flow(r) => Ok(r),
            _ => Err(Error::Shape("a flow call returned another task's result".into())),
        }
    }
    fn into_amodal(self) -> Result<AmodalResult> {
        match self {
            Output::Amodal(r) => Ok(r),
            _ => Err(Error::Shape("an amodal call returned another task's result".into())),
        }
    }
}

// A Session moves to the thread that uses it (checked at compile time).
const _: () = {
    const fn is_send<T: Send>() {}
    is_send::<Session>();
};
