//! The CUDA backend: every op of `Backend` as launches of our kernels on a `Device` (the real GPU
//! or the CPU emulator). Activations and weights are f32 device buffers here; the bf16 path
//! comes beside it. These are the simple, easy-to-trust kernels; fast variants go beside them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::device::Device;
use super::pool::{Block, Pool, PoolStats};
use crate::backend::cpu::Cpu;
use crate::backend::{Act, Backend, Conv2d, MoeWeights, Routing};
use crate::emu::{Arg, LaunchConfig};
use crate::error::{Error, Result};
use crate::shape_err;
use crate::tensor::{numel, DType, Tensor};
use crate::weights::RawTensor;

/// A tensor on the device: a shared buffer and its shape (row-major).
pub struct GpuTensor<D: Device> {
    pub buf: Arc<Block<D>>,
    pub shape: Vec<usize>,
    /// F32 or BF16.
    pub dtype: DType,
}

impl<D: Device> Clone for GpuTensor<D> {
    fn clone(&self) -> Self {
        GpuTensor { buf: self.buf.clone(), shape: self.shape.clone(), dtype: self.dtype }
    }
}

/// One MoE layer on the device: experts stacked so one grouped launch serves them all.
pub struct GpuMoe<D: Device> {
    pub experts: usize,
    pub hidden: usize,
    pub gate: GpuTensor<D>,
    /// [E, F, D], [E, F], [E, D, F], [E, D]
    pub fc1_w: GpuTensor<D>,
    pub fc1_b: GpuTensor<D>,
    pub fc2_w: GpuTensor<D>,
    pub fc2_b: GpuTensor<D>,
}

/// An MoE layer's expert outputs before the combine (see `Cuda::moe_experts`).
struct MoeRun<D: Device> {
    /// [tokens * k, D], expert-sorted rows.
    y: GpuTensor<D>,
    ids: Block<D>,
    wts: Block<D>,
    /// Row of y for each (token, slot) entry.
    pos: Block<D>,
    tokens: usize,
    d: usize,
}

pub struct Cuda<D: Device> {
    pub dev: D,
    /// Host-side helpers (weight concatenation at load).
    cpu: Cpu,
    /// Storage type of activations and of weights with two or more axes (biases and norm
    /// parameters stay f32); arithmetic is f32 either way.
    act: DType,
    /// Where every activation lives (see pool.rs).
    pool: Pool<D>,
    /// Label and id arrays already on the device, by content: the same labels every step, so
    /// a step uploads nothing (and can be captured).
    ids: Arc<Mutex<HashMap<Vec<i64>, Arc<Block<D>>>>>,
    /// Use the fast kernel variants where one exists (bf16 GEMMs and MoE expert layers on
    /// 128x128 tensor-core tiles). Off by default until they have passed on a GPU; on with
    /// PERCEPT_FAST_KERNELS=1 or `with_fast_kernels`.
    fast: bool,
}

impl<D: Device> Clone for Cuda<D> {
    fn clone(&self) -> Self {
        Cuda {
            dev: self.dev.clone(),
            cpu: Cpu,
            act: self.act,
            pool: self.pool.clone(),
            ids: self.ids.clone(),
            fast: self.fast,
        }
    }
}

/// One denoising step captured on the device, with the scratch buffers its replays use.
pub struct CudaGraph<D: Device> {
    graph: D::Graph,
    _scratch: Vec<Block<D>>,
}

impl<D: Device> CudaGraph<D> {
    pub fn graph(&self) -> &D::Graph {
        &self.graph
    }
}

const THREADS: u32 = 256;

fn blocks_for(n: usize) -> u32 {
    (n.div_ceil(THREADS as usize)).clamp(1, 65_535) as u32
}

/// `v` as the integer type a kernel parameter or launch dimension takes, or a clear error naming
/// the op: a size that wrapped on the way to a kernel would make it index the wrong memory.
/// Every size, count and offset handed to a kernel goes through here (grid-stride element counts
/// are 64-bit; the per-axis sizes are 32-bit, the kernels widening their products to 64 bits).
pub fn checked<T: TryFrom<usize>>(op: &str, what: &str, v: usize) -> Result<T> {
    T::try_from(v).map_err(|_| {
        Error::Shape(format!(
            "{op}: {what} = {v} does not fit the kernel's {} parameter (tensor too large for this kernel)",
            std::any::type_name::<T>()
        ))
    })
}

/// A 32-bit `int` kernel parameter (see `checked`).
fn int(op: &str, v: usize) -> Result<Arg> {
    checked::<i32>(op, "size", v).map(Arg::I32)
}

/// A 64-bit element count (`long long n`) for the element-wise kernels.
fn count(op: &str, v: usize) -> Result<Arg> {
    checked::<i64>(op, "element count", v).map(Arg::I64)
}

/// A launch dimension (grid size or shared-memory bytes).
fn dim(op: &str, v: usize) -> Result<u32> {
    checked::<u32>(op, "launch dimension", v)
}

impl<D: Device> Cuda<D> {
    /// f32 activations and weights (true f32: no reduced-precision tensor-core math).
    pub fn new(dev: D) -> Self {
        Self::with_storage(dev, DType::F32)
    }

    /// bf16 storage for activations and weights, f32 accumulation; the scheduler state stays f32.
    pub fn bf16(dev: D) -> Self {
        Self::with_storage(dev, DType::BF16)
    }

    fn with_storage(dev: D, act: DType) -> Self {
        let fast = crate::backend::switches::DevSwitches::from_env().fast_kernels;
        Cuda { pool: Pool::new(dev.clone()), dev, cpu: Cpu, act, ids: Arc::default(), fast }
    }

    /// The same backend with the fast kernel variants on or off.
    pub fn with_fast_kernels(mut self, on: bool) -> Self {
        self.fast = on;
        self
    }

    /// The bf16 tensor-core tile kernels apply: fast variants on, bf16, whole 16-byte K chunks.
    fn tc128(&self, k: usize) -> bool {
        self.fast && self.act == DType::BF16 && k % 8 == 0
    }

    /// Device bytes the given weights take here: tensors with two or more axes in the storage
    /// type, the rest in f32.
    pub fn weight_bytes<'a>(&self, shapes: impl IntoIterator<Item = &'a [usize]>) -> usize {
        shapes.into_iter().map(|s| numel(s) * if s.len() >= 2 { self.act.size() } else { DType::F32.size() }).sum()
    }

    /// A clear error, before anything is loaded, when weights of `bytes` bytes and the working
    /// memory a run needs beside them do not fit in the device's free memory.
    pub fn check_fits(&self, what: &str, bytes: usize) -> Result<()> {
        let Some((free, total)) = self.dev.memory_info()? else { return Ok(()) };
        // Room for activations and the pool beside the weights: a 512x512 batch of one needs a
        // few hundred MiB; larger batches are checked by the allocations themselves.
        let margin = (total / 32).max(256 << 20);
        if bytes + margin > free {
            let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
            return Err(Error::OutOfMemory(format!(
                "{what} needs {:.2} GiB of device memory for its weights in {} (plus {:.2} GiB to work in), \
                 but {} has {:.2} GiB free of {:.2} GiB: use --backend cpu, or a device with more memory",
                gib(bytes),
                self.act.name(),
                gib(margin),
                self.dev.describe(),
                gib(free),
                gib(total)
            )));
        }
        Ok(())
    }

    /// Fill every new activation buffer with NaN before use (tests: an unwritten output element
    /// then shows, on a GPU as on the emulator).
    pub fn poison_new_buffers(&self, on: bool) {
        self.pool.set_poison(on);
    }

    /// The activation pool's counters (the weights are not in it).
    pub fn memory_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Gives the pool's cached buffers back to the device.
    pub fn release_cached(&self) -> usize {
        self.pool.release_cached()
    }

    /// An id array on the device, uploaded once per distinct content.
    fn ids_on_device(&self, ids: &[i64]) -> Result<Arc<Block<D>>> {
        let mut cache = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = cache.get(ids) {
            return Ok(b.clone());
        }
        // Only ever a handful of label sets; bound it anyway, generously: a captured step kept
        // by a session (api::Session keeps at most four) reads its label block by address.
        if cache.len() >= 1024 {
            cache.clear();
        }
        let b = Arc::new(Block::owned(self.dev.upload(bytemuck::cast_slice(ids))?));
        cache.insert(ids.to_vec(), b.clone());
        Ok(b)
    }

    fn addr(&self, b: &Block<D>) -> Arg {
        Arg::Ptr(self.dev.address(b.buffer()))
    }

    /// Entry point `<op>_<dtype>` for the activation type.
    fn k(&self, op: &str) -> String {
        format!("{op}_{}", self.act.name())
    }

    /// `t` in the activation storage type (converted on the device when it differs).
    fn act_of(&self, t: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        self.convert(t, self.act)
    }

    fn convert(&self, t: &GpuTensor<D>, to: DType) -> Result<GpuTensor<D>> {
        if t.dtype == to {
            return Ok(t.clone());
        }
        let n = numel(&t.shape);
        let y = self.empty_as(&t.shape, to)?;
        let kernel = if to == DType::BF16 { "convert_f32_to_bf16" } else { "convert_bf16_to_f32" };
        self.grid_stride(kernel, n, &[self.ptr(&y), self.ptr(t), count(kernel, n)?])?;
        Ok(y)
    }

    fn ptr(&self, t: &GpuTensor<D>) -> Arg {
        self.addr(&t.buf)
    }

    fn empty(&self, shape: &[usize]) -> Result<GpuTensor<D>> {
        self.empty_as(shape, self.act)
    }

    fn empty_as(&self, shape: &[usize], dtype: DType) -> Result<GpuTensor<D>> {
        let buf = self.pool.take(numel(shape) * dtype.size())?;
        Ok(GpuTensor { buf: Arc::new(buf), shape: shape.to_vec(), dtype })
    }

    /// A weight's memory: exactly its size, outside the pool.
    fn owned_as(&self, shape: &[usize], dtype: DType) -> Result<GpuTensor<D>> {
        let buf = self.dev.alloc(numel(shape) * dtype.size())?;
        Ok(GpuTensor { buf: Arc::new(Block::owned(buf)), shape: shape.to_vec(), dtype })
    }

    fn to_host(&self, t: &GpuTensor<D>) -> Result<Tensor> {
        let bytes = self.dev.download(t.buf.buffer())?;
        let n = numel(&t.shape);
        let data = match t.dtype {
            DType::BF16 => {
                bytes[..n * 2].chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            _ => bytemuck::pod_collect_to_vec::<u8, f32>(&bytes[..n * 4]),
        };
        Tensor::new(t.shape.clone(), data)
    }

    /// An f32 activation from host values, in a pool buffer.
    fn from_host(&self, t: &Tensor) -> Result<GpuTensor<D>> {
        let y = self.empty_as(&t.shape, DType::F32)?;
        self.dev.write(y.buf.buffer(), 0, bytemuck::cast_slice(&t.data))?;
        Ok(y)
    }

    /// A parameter on the device, in its own exact allocation: biases and norm parameters (one
    /// axis) in f32, the rest in the activation type, converted once here.
    fn weight_from(&self, t: Tensor) -> Result<GpuTensor<D>> {
        let f32 = GpuTensor {
            buf: Arc::new(Block::owned(self.dev.upload(bytemuck::cast_slice(&t.data))?)),
            shape: t.shape.clone(),
            dtype: DType::F32,
        };
        if t.shape.len() < 2 || self.act == DType::F32 {
            return Ok(f32);
        }
        let n = numel(&t.shape);
        let w = self.owned_as(&t.shape, self.act)?;
        self.grid_stride("convert_f32_to_bf16", n, &[self.ptr(&w), self.ptr(&f32), count("convert_f32_to_bf16", n)?])?;
        Ok(w)
    }

    /// Routing, sorting, gathering and both expert layers of an MoE layer over the token rows of
    /// `x` (already in the activation type): the expert outputs in expert-sorted order and what
    /// the combine needs to bring them back.
    fn moe_experts(&self, x: &GpuTensor<D>, w: &GpuMoe<D>, top_k: usize) -> Result<MoeRun<D>> {
        let d = *x.shape.last().unwrap_or(&0);
        let n_tok = numel(&x.shape) / d.max(1);
        let (e, f, k) = (w.experts, w.hidden, top_k);
        let rows = n_tok * k;
        let i = |v: usize| int("moe", v);
        let ids = self.pool.take(rows * 4)?;
        let wts = self.pool.take(rows * 4)?;
        let a = |b: &Block<D>| self.addr(b);
        self.dev.launch(
            &self.k("moe_route"),
            &LaunchConfig { grid: [dim("moe", n_tok)?, 1, 1], block: [128, 1, 1], shared_bytes: 0 },
            &[a(&ids), a(&wts), self.ptr(x), self.ptr(&w.gate), i(d)?, i(e)?, i(k)?],
        )?;
        let offsets = self.pool.take((e + 1) * 4)?;
        let sorted = self.pool.take(rows * 4)?;
        let pos = self.pool.take(rows * 4)?;
        self.dev.launch(
            "moe_count_sort_i32",
            &LaunchConfig { grid: [1, 1, 1], block: [1024, 1, 1], shared_bytes: 0 },
            &[a(&offsets), a(&sorted), a(&pos), a(&ids), i(rows)?, i(e)?],
        )?;
        let xs = self.empty(&[rows, d])?;
        self.dev.launch(
            &self.k("moe_gather"),
            &LaunchConfig { grid: [dim("moe", rows)?, 1, 1], block: [128, 1, 1], shared_bytes: 0 },
            &[self.ptr(&xs), self.ptr(x), a(&sorted), i(k)?, i(d)?],
        )?;
        let fc = |y: &GpuTensor<D>,
                  xin: &GpuTensor<D>,
                  wt: &GpuTensor<D>,
                  bias: &GpuTensor<D>,
                  nout: usize,
                  kin: usize,
                  gelu: bool| {
            let (tile, kernel) =
                if self.tc128(kin) { (128, "moe_expert_fc_tc128".to_string()) } else { (32, self.k("moe_expert_fc")) };
            let cfg = LaunchConfig {
                grid: [dim("moe", nout.div_ceil(tile))?, dim("moe", rows.div_ceil(tile) + e)?, 1],
                block: [256, 1, 1],
                shared_bytes: 0,
            };
            self.dev.launch(
                &kernel,
                &cfg,
                &[
                    self.ptr(y),
                    self.ptr(xin),
                    self.ptr(wt),
                    self.ptr(bias),
                    a(&offsets),
                    i(e)?,
                    i(nout)?,
                    i(kin)?,
                    i(gelu as usize)?,
                ],
            )
        };
        let h = self.empty(&[rows, f])?;
        fc(&h, &xs, &w.fc1_w, &w.fc1_b, f, d, true)?;
        let y = self.empty(&[rows, d])?;
        fc(&y, &h, &w.fc2_w, &w.fc2_b, d, f, false)?;
        Ok(MoeRun { y, ids, wts, pos, tokens: n_tok, d })
    }

    fn routing_of(&self, run: &MoeRun<D>, top_k: usize, record: bool) -> Result<Option<Routing>> {
        if !record {
            return Ok(None);
        }
        let rows = run.tokens * top_k;
        let ids: Vec<i32> = bytemuck::pod_collect_to_vec(&self.dev.download(run.ids.buffer())?[..rows * 4]);
        let weights: Vec<f32> = bytemuck::pod_collect_to_vec(&self.dev.download(run.wts.buffer())?[..rows * 4]);
        Ok(Some(Routing { top_k, experts: ids.into_iter().map(|v| v as i64).collect(), weights }))
    }

    /// conv2d of `x`, or (`up` = 1) of `x` upsampled 2x (nearest) with the upsampling done by the
    /// conv's own loads: the upsampled tensor never exists.
    fn conv2d_up(
        &self,
        x: &GpuTensor<D>,
        w: &GpuTensor<D>,
        b: Option<&GpuTensor<D>>,
        p: Conv2d,
        up: usize,
    ) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let (&[n, c, h, wd], &[o, wc, kh, kw]) = (x.shape.as_slice(), w.shape.as_slice()) else {
            return Err(shape_err!("conv2d: input {:?} and weight {:?} must be 4-D", x.shape, w.shape));
        };
        let (h, wd) = (h << up, wd << up);
        if wc != c {
            return Err(shape_err!("conv2d: input has {c} channels, weight {:?} expects {wc}", w.shape));
        }
        let (oh, ow) = crate::backend::cpu::conv::out_size(h, wd, kh, kw, p)
            .ok_or_else(|| shape_err!("conv2d: input {:?} is smaller than the kernel {:?}", x.shape, w.shape))?;
        let y = self.empty(&[n, o, oh, ow])?;
        let op = if up == 1 { "conv2d_up2" } else { "conv2d" };
        let (tile, kernel) = if self.tc128(c * kh * kw) {
            (128, if up == 1 { "conv2d_tc_up2_bf16".to_string() } else { "conv2d_tc_bf16".to_string() })
        } else {
            (32, self.k(op))
        };
        let cfg = LaunchConfig {
            grid: [dim(op, (oh * ow).div_ceil(tile))?, dim(op, o.div_ceil(tile))?, dim(op, n)?],
            block: [256, 1, 1],
            shared_bytes: 0,
        };
        let i = |v: usize| int("conv2d", v);
        self.dev.launch(
            &kernel,
            &cfg,
            &[
                self.ptr(&y),
                self.ptr(x),
                self.ptr(w),
                b.map_or(Arg::Ptr(0), |b| self.ptr(b)),
                i(c)?,
                i(h)?,
                i(wd)?,
                i(o)?,
                i(kh)?,
                i(kw)?,
                i(p.stride)?,
                i(p.pad[0])?,
                i(p.pad[1])?,
                i(oh)?,
                i(ow)?,
            ],
        )?;
        Ok(y)
    }

    /// A 1-D grid-stride launch over `n` elements.
    fn grid_stride(&self, kernel: &str, n: usize, args: &[Arg]) -> Result<()> {
        self.dev.launch(kernel, &LaunchConfig::linear(blocks_for(n), THREADS), args)
    }

    /// Same-shaped parameters stacked along a new first axis, copied on the device.
    fn stack(&self, parts: &[&GpuTensor<D>]) -> Result<GpuTensor<D>> {
        let each = numel(&parts[0].shape);
        let mut shape = vec![parts.len()];
        shape.extend_from_slice(&parts[0].shape);
        let dtype = parts[0].dtype;
        let y = self.owned_as(&shape, dtype)?;
        let base = self.dev.address(y.buf.buffer());
        let copy = format!("scale_{}", dtype.name());
        for (j, p) in parts.iter().enumerate() {
            if numel(&p.shape) != each {
                return Err(shape_err!("stack: {:?} and {:?} differ", parts[0].shape, p.shape));
            }
            let dst = Arg::Ptr(base + (j * each * dtype.size()) as u64);
            self.grid_stride(&copy, each, &[dst, self.ptr(p), Arg::F32(1.0), count(&copy, each)?])?;
        }
        Ok(y)
    }

    fn elementwise(&self, kernel: &str, x: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        let n = numel(&x.shape);
        let y = self.empty(&x.shape)?;
        self.dev.launch(
            kernel,
            &LaunchConfig::linear(blocks_for(n), THREADS),
            &[self.ptr(&y), self.ptr(x), count(kernel, n)?],
        )?;
        Ok(y)
    }
}

impl<D: Device> Backend for Cuda<D> {
    type T = GpuTensor<D>;
    type W = GpuTensor<D>;
    type M = GpuMoe<D>;
    type Graph = CudaGraph<D>;

    fn name(&self) -> String {
        self.dev.describe()
    }
    fn shape<'a>(&self, t: &'a GpuTensor<D>) -> &'a [usize] {
        &t.shape
    }
    fn upload(&self, t: &Tensor) -> Result<GpuTensor<D>> {
        self.from_host(t)
    }
    fn download(&self, t: &GpuTensor<D>) -> Result<Tensor> {
        self.to_host(t)
    }
    fn weight(&self, name: &str, raw: &RawTensor) -> Result<GpuTensor<D>> {
        let data = raw.to_f32_vec().map_err(|e| Error::Weights(format!("tensor \"{name}\": {e}")))?;
        self.weight_from(Tensor::new(raw.shape.clone(), data)?)
    }
    fn weight_cat(&self, name: &str, raws: &[&RawTensor]) -> Result<GpuTensor<D>> {
        let w = self.cpu.weight_cat(name, raws)?;
        self.weight_from(Tensor::new(w.shape.clone(), w.data().to_vec())?)
    }

    fn linear(&self, x: &GpuTensor<D>, w: &GpuTensor<D>, b: Option<&GpuTensor<D>>, act: Act) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let k = *x.shape.last().unwrap_or(&0);
        if w.shape.len() != 2 || w.shape[1] != k {
            return Err(shape_err!("linear: input {:?} does not fit weight {:?}", x.shape, w.shape));
        }
        let (m, n) = (numel(&x.shape) / k.max(1), w.shape[0]);
        // Sizes and grid checked before anything is allocated.
        let (mi, ni, ki) = (int("linear", m)?, int("linear", n)?, int("linear", k)?);
        let tc = self.tc128(k);
        let tile = if tc { 128 } else { 32 };
        let grid = [dim("linear", n.div_ceil(tile))?, dim("linear", m.div_ceil(tile))?, 1];
        let mut shape = x.shape.clone();
        *shape.last_mut().unwrap() = n;
        let y = self.empty(&shape)?;
        let bias = b.map_or(Arg::Ptr(0), |b| self.ptr(b));
        let gelu = Arg::I32((act == Act::GeluTanh) as i32);
        let args = [self.ptr(&y), self.ptr(x), self.ptr(w), bias, mi, ni, ki, gelu, Arg::I32(1)];
        if tc {
            let cfg = LaunchConfig { grid, block: [256, 1, 1], shared_bytes: 0 };
            self.dev.launch("gemm_bf16_tc128", &cfg, &args)?;
        } else if self.act == DType::BF16 {
            // Tensor cores: bf16 operands, f32 accumulation, bf16 output.
            let cfg = LaunchConfig { grid, block: [128, 1, 1], shared_bytes: 0 };
            self.dev.launch("gemm_bf16_mma", &cfg, &args)?;
        } else {
            let cfg = LaunchConfig { grid, block: [256, 1, 1], shared_bytes: 0 };
            self.dev.launch("gemm_f32", &cfg, &args[..8])?;
        }
        if act == Act::Silu {
            return self.elementwise(&self.k("silu"), &y);
        }
        Ok(y)
    }
    fn act(&self, x: &GpuTensor<D>, act: Act) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        match act {
            Act::None => Ok(x.clone()),
            Act::Silu => self.elementwise(&self.k("silu"), x),
            Act::GeluTanh => self.elementwise(&self.k("gelu_tanh"), x),
        }
    }
    fn add(&self, a: &GpuTensor<D>, b: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        let (a, b) = (&self.act_of(a)?, &self.act_of(b)?);
        if a.shape != b.shape {
            return Err(shape_err!("add: shapes {:?} and {:?} differ", a.shape, b.shape));
        }
        let n = numel(&a.shape);
        let y = self.empty(&a.shape)?;
        self.grid_stride(&self.k("add"), n, &[self.ptr(&y), self.ptr(a), self.ptr(b), count("add", n)?])?;
        Ok(y)
    }
    fn scale(&self, x: &GpuTensor<D>, s: f32) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let n = numel(&x.shape);
        let y = self.empty(&x.shape)?;
        self.grid_stride(&self.k("scale"), n, &[self.ptr(&y), self.ptr(x), Arg::F32(s), count("scale", n)?])?;
        Ok(y)
    }
    fn conv2d(&self, x: &GpuTensor<D>, w: &GpuTensor<D>, b: Option<&GpuTensor<D>>, p: Conv2d) -> Result<GpuTensor<D>> {
        self.conv2d_up(x, w, b, p, 0)
    }
    fn upsample_conv2d(
        &self,
        x: &GpuTensor<D>,
        w: &GpuTensor<D>,
        b: Option<&GpuTensor<D>>,
        p: Conv2d,
    ) -> Result<GpuTensor<D>> {
        self.conv2d_up(x, w, b, p, 1)
    }
    fn upsample_nearest2x(&self, x: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let &[n, c, h, w] = x.shape.as_slice() else {
            return Err(shape_err!("upsample: input {:?} must be NCHW", x.shape));
        };
        let y = self.empty(&[n, c, 2 * h, 2 * w])?;
        let i = |v: usize| int("upsample", v);
        self.grid_stride(
            &self.k("upsample_nearest2x"),
            4 * n * c * h * w,
            &[self.ptr(&y), self.ptr(x), i(n * c)?, i(h)?, i(w)?],
        )?;
        Ok(y)
    }
    fn group_norm(
        &self,
        x: &GpuTensor<D>,
        gamma: &GpuTensor<D>,
        beta: &GpuTensor<D>,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let (n, c) = (x.shape[0], x.shape[1]);
        if groups == 0 || c % groups != 0 || numel(&gamma.shape) != c || numel(&beta.shape) != c {
            return Err(shape_err!("group_norm: {c} channels, {groups} groups, gamma {:?}", gamma.shape));
        }
        let hw = numel(&x.shape) / (n * c);
        let y = self.empty(&x.shape)?;
        let cfg = LaunchConfig {
            grid: [dim("group_norm", groups)?, dim("group_norm", n)?, 1],
            block: [256, 1, 1],
            shared_bytes: 0,
        };
        self.dev.launch(
            &self.k("group_norm"),
            &cfg,
            &[
                self.ptr(&y),
                self.ptr(x),
                self.ptr(gamma),
                self.ptr(beta),
                int("group_norm", c)?,
                int("group_norm", hw)?,
                int("group_norm", groups)?,
                Arg::F32(eps),
                Arg::I32(silu as i32),
            ],
        )?;
        Ok(y)
    }
    fn modulated_layer_norm(
        &self,
        x: &GpuTensor<D>,
        mods: &GpuTensor<D>,
        shift: usize,
        scale: usize,
        eps: f32,
    ) -> Result<GpuTensor<D>> {
        // Statistics and modulation in the input's own storage type (the f32 residual stream under
        // bf16); the result is an activation.
        let mods = &self.convert(mods, x.dtype)?;
        let kernel = format!("layer_norm_modulate_{}", x.dtype.name());
        let &[b, t, d] = x.shape.as_slice() else {
            return Err(shape_err!("layer_norm: input {:?} must be [B, T, D]", x.shape));
        };
        let m = *mods.shape.last().unwrap_or(&0);
        if mods.shape[0] != b || (shift.max(scale) + 1) * d > m {
            return Err(shape_err!("layer_norm: modulation {:?} does not fit input {:?}", mods.shape, x.shape));
        }
        let y = self.empty_as(&x.shape, x.dtype)?;
        let shared = dim("layer_norm", d * 4)?;
        if shared > 48 * 1024 {
            self.dev.set_max_dynamic_shared(&kernel, shared)?;
        }
        let base = self.dev.address(mods.buf.buffer());
        let cfg = LaunchConfig { grid: [dim("layer_norm", b * t)?, 1, 1], block: [128, 1, 1], shared_bytes: shared };
        self.dev.launch(
            &kernel,
            &cfg,
            &[
                self.ptr(&y),
                self.ptr(x),
                Arg::Ptr(base + (shift * d * mods.dtype.size()) as u64),
                Arg::Ptr(base + (scale * d * mods.dtype.size()) as u64),
                int("layer_norm", t)?,
                int("layer_norm", d)?,
                int("layer_norm", m)?,
                Arg::F32(eps),
            ],
        )?;
        self.act_of(&y)
    }
    fn gated_add(&self, x: &mut GpuTensor<D>, y: &GpuTensor<D>, mods: &GpuTensor<D>, gate: usize) -> Result<()> {
        // The residual stream keeps its own storage type (f32 under bf16, as autocast keeps it).
        let (y, mods) = (&self.convert(y, x.dtype)?, &self.convert(mods, x.dtype)?);
        let kernel = format!("gated_add_{}", x.dtype.name());
        if x.shape != y.shape || x.shape.len() != 3 {
            return Err(shape_err!("gated_add: shapes {:?} and {:?}", x.shape, y.shape));
        }
        let (b, t, d) = (x.shape[0], x.shape[1], x.shape[2]);
        let m = *mods.shape.last().unwrap_or(&0);
        if (gate + 1) * d > m {
            return Err(shape_err!("gated_add: chunk {gate} of width {d} is outside modulation {:?}", mods.shape));
        }
        // In place: `x` is the residual stream, owned by the forward pass.
        let i = |v: usize| int("gated_add", v);
        self.grid_stride(
            &kernel,
            b * t * d,
            &[self.ptr(x), self.ptr(y), self.ptr(mods), i(b)?, i(t)?, i(d)?, i(m)?, i(gate * d)?],
        )
    }
    fn attention(&self, qkv: &GpuTensor<D>, heads: usize) -> Result<GpuTensor<D>> {
        let qkv = &self.act_of(qkv)?;
        let &[b, l, d3] = qkv.shape.as_slice() else {
            return Err(shape_err!("attention: qkv {:?} must be [B, L, 3D]", qkv.shape));
        };
        if heads == 0 || d3 % (3 * heads) != 0 {
            return Err(shape_err!("attention: qkv width {d3} is not 3 x {heads} heads"));
        }
        let hd = d3 / 3 / heads;
        let y = self.empty(&[b, l, heads * hd])?;
        let i = |v: usize| int("attention", v);
        let args = [self.ptr(&y), self.ptr(qkv), i(l)?, i(heads)?, i(hd)?, Arg::F32(1.0 / (hd as f32).sqrt())];
        if self.fast && self.act == DType::BF16 && hd % 8 == 0 && hd <= 128 {
            // Tensor cores: 64 query rows a block; Q, K and V tiles of 64 rows in dynamic shared.
            let shared = dim("attention", 3 * 64 * (hd.next_multiple_of(16) + 8) * 2)?;
            if shared > 48 * 1024 {
                self.dev.set_max_dynamic_shared("attention_tc_bf16", shared)?;
            }
            let cfg = LaunchConfig {
                grid: [dim("attention", l.div_ceil(64))?, dim("attention", heads)?, dim("attention", b)?],
                block: [128, 1, 1],
                shared_bytes: shared,
            };
            self.dev.launch("attention_tc_bf16", &cfg, &args)?;
        } else if hd % 8 == 0 && hd <= 128 {
            let cfg = LaunchConfig {
                grid: [dim("attention", l.div_ceil(16))?, dim("attention", heads)?, dim("attention", b)?],
                block: [128, 1, 1],
                shared_bytes: 0,
            };
            self.dev.launch(&self.k("attention"), &cfg, &args)?;
        } else {
            let shared = dim("attention", 4 * (l + hd))?;
            if shared > 48 * 1024 {
                self.dev.set_max_dynamic_shared(&self.k("attention_wide"), shared)?;
            }
            let cfg = LaunchConfig {
                grid: [dim("attention", l)?, dim("attention", heads)?, dim("attention", b)?],
                block: [256, 1, 1],
                shared_bytes: shared,
            };
            self.dev.launch(&self.k("attention_wide"), &cfg, &args)?;
        }
        Ok(y)
    }
    fn embedding(&self, table: &GpuTensor<D>, ids: &[i64]) -> Result<GpuTensor<D>> {
        let (rows, d) = (table.shape[0], table.shape[1]);
        if let Some(bad) = ids.iter().find(|&&id| id < 0 || id as usize >= rows) {
            return Err(Error::Input(format!("label {bad} is outside the embedding table's {rows} rows")));
        }
        let (rows_arg, d_arg) = (int("embedding", rows)?, int("embedding", d)?);
        let cfg =
            LaunchConfig { grid: [dim("embedding", ids.len().max(1))?, 1, 1], block: [128, 1, 1], shared_bytes: 0 };
        let idb = self.ids_on_device(ids)?;
        let y = self.empty(&[ids.len(), d])?;
        let args = [self.ptr(&y), self.ptr(table), self.addr(&idb), rows_arg, d_arg];
        self.dev.launch(&self.k("embedding"), &cfg, &args)?;
        Ok(y)
    }
    fn patch_embed(
        &self,
        x: &GpuTensor<D>,
        conv_w: &GpuTensor<D>,
        conv_b: &GpuTensor<D>,
        n_convs: usize,
        labels: &[i64],
        first_label: i64,
        pos: &GpuTensor<D>,
        patch: usize,
    ) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let &[b, c, h, w] = x.shape.as_slice() else {
            return Err(shape_err!("patch_embed: input {:?} must be NCHW", x.shape));
        };
        if labels.len() != b {
            return Err(shape_err!("patch_embed: {} labels for a batch of {b}", labels.len()));
        }
        if n_convs == 0 || conv_w.shape[0] % n_convs != 0 || numel(&conv_b.shape) != conv_w.shape[0] {
            return Err(shape_err!("patch_embed: {n_convs} convs do not fit weight {:?}", conv_w.shape));
        }
        let d = conv_w.shape[0] / n_convs;
        let t = (h / patch) * (w / patch);
        if numel(&pos.shape) != t * d {
            return Err(shape_err!("patch_embed: pos_embed {:?} does not fit {t} tokens of {d}", pos.shape));
        }
        let lb = self.ids_on_device(labels)?;
        let y = self.empty(&[b, t, d])?;
        let i = |v: usize| int("patch_embed", v);
        let cfg = LaunchConfig {
            grid: [dim("patch_embed", t)?, dim("patch_embed", b)?, 1],
            block: [128, 1, 1],
            shared_bytes: dim("patch_embed", 4 * c * patch * patch)?,
        };
        let args = [
            self.ptr(&y),
            self.ptr(x),
            self.ptr(conv_w),
            self.ptr(conv_b),
            self.addr(&lb),
            Arg::I64(first_label),
            i(n_convs)?,
            self.ptr(pos),
            i(c)?,
            i(h)?,
            i(w)?,
            i(d)?,
            i(patch)?,
        ];
        self.dev.launch(&self.k("patch_embed"), &cfg, &args)?;
        // The residual stream starts here: f32 whatever the activation type.
        self.convert(&y, DType::F32)
    }
    fn unpatchify(
        &self,
        x: &GpuTensor<D>,
        patch: usize,
        channels: usize,
        gh: usize,
        gw: usize,
    ) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let &[b, t, f] = x.shape.as_slice() else {
            return Err(shape_err!("unpatchify: input {:?} must be [B, T, F]", x.shape));
        };
        if t != gh * gw || f != patch * patch * channels {
            return Err(shape_err!("unpatchify: {:?} is not {gh}x{gw} tokens of {patch}x{patch}x{channels}", x.shape));
        }
        let y = self.empty(&[b, channels, gh * patch, gw * patch])?;
        let i = |v: usize| int("unpatchify", v);
        self.grid_stride(
            &self.k("unpatchify"),
            b * t * f,
            &[self.ptr(&y), self.ptr(x), i(b)?, i(channels)?, i(patch)?, i(gh)?, i(gw)?],
        )?;
        Ok(y)
    }
    fn prepare_moe(&self, _name: &str, w: MoeWeights<GpuTensor<D>>) -> Result<GpuMoe<D>> {
        Ok(GpuMoe {
            experts: w.fc1_w.len(),
            hidden: w.fc1_w[0].shape[0],
            fc1_w: self.stack(&w.fc1_w.iter().collect::<Vec<_>>())?,
            fc1_b: self.stack(&w.fc1_b.iter().collect::<Vec<_>>())?,
            fc2_w: self.stack(&w.fc2_w.iter().collect::<Vec<_>>())?,
            fc2_b: self.stack(&w.fc2_b.iter().collect::<Vec<_>>())?,
            gate: w.gate,
        })
    }
    fn moe(
        &self,
        x: &GpuTensor<D>,
        w: &GpuMoe<D>,
        top_k: usize,
        record: bool,
    ) -> Result<(GpuTensor<D>, Option<Routing>)> {
        let x = &self.act_of(x)?;
        let run = self.moe_experts(x, w, top_k)?;
        let out = self.empty(&x.shape)?;
        let (a, i) = (|b: &Block<D>| self.addr(b), |v: usize| int("moe", v));
        self.dev.launch(
            &self.k("moe_combine"),
            &LaunchConfig { grid: [dim("moe", run.tokens)?, 1, 1], block: [128, 1, 1], shared_bytes: 0 },
            &[self.ptr(&out), self.ptr(&run.y), a(&run.wts), a(&run.ids), a(&run.pos), i(top_k)?, i(run.d)?],
        )?;
        Ok((out, self.routing_of(&run, top_k, record)?))
    }
    fn linear_gated_add(
        &self,
        x: &mut GpuTensor<D>,
        a: &GpuTensor<D>,
        w: &GpuTensor<D>,
        b: Option<&GpuTensor<D>>,
        mods: &GpuTensor<D>,
        gate: usize,
    ) -> Result<()> {
        let k = *a.shape.last().unwrap_or(&0);
        if !self.tc128(k) || x.dtype != DType::F32 {
            let y = self.linear(a, w, b, Act::None)?;
            return self.gated_add(x, &y, mods, gate);
        }
        let (a, mods) = (&self.act_of(a)?, &self.convert(mods, DType::F32)?);
        let &[bsz, t, d] = x.shape.as_slice() else {
            return Err(shape_err!("linear_gated_add: x {:?} must be [B, T, D]", x.shape));
        };
        let m = *mods.shape.last().unwrap_or(&0);
        if w.shape != [d, k] || numel(&a.shape) != bsz * t * k || mods.shape[0] != bsz || (gate + 1) * d > m {
            return Err(shape_err!(
                "linear_gated_add: x {:?}, input {:?}, weight {:?}, modulation {:?} (chunk {gate}) do not fit",
                x.shape,
                a.shape,
                w.shape,
                mods.shape
            ));
        }
        let rows = bsz * t;
        let i = |v: usize| int("linear_gated_add", v);
        let gate_ptr = Arg::Ptr(self.dev.address(mods.buf.buffer()) + (gate * d * 4) as u64);
        let cfg = LaunchConfig {
            grid: [dim("linear_gated_add", d.div_ceil(128))?, dim("linear_gated_add", rows.div_ceil(128))?, 1],
            block: [256, 1, 1],
            shared_bytes: 0,
        };
        let bias = b.map_or(Arg::Ptr(0), |b| self.ptr(b));
        let args = [self.ptr(x), self.ptr(a), self.ptr(w), bias, i(rows)?, i(d)?, i(k)?, gate_ptr, i(t)?, i(m)?];
        self.dev.launch("gemm_bf16_tc128_gated_add", &cfg, &args)
    }
    fn moe_gated_add(
        &self,
        x: &mut GpuTensor<D>,
        m_in: &GpuTensor<D>,
        w: &GpuMoe<D>,
        top_k: usize,
        mods: &GpuTensor<D>,
        gate: usize,
        record: bool,
    ) -> Result<Option<Routing>> {
        // The residual stream is f32 at either precision (see gated_add); the combined expert
        // rows go straight into it, never stored.
        let mods = &self.convert(mods, DType::F32)?;
        let &[b, t, d] = x.shape.as_slice() else {
            return Err(shape_err!("moe_gated_add: x {:?} must be [B, T, D]", x.shape));
        };
        let m = *mods.shape.last().unwrap_or(&0);
        if x.dtype != DType::F32 || numel(&m_in.shape) != b * t * d || mods.shape[0] != b || (gate + 1) * d > m {
            return Err(shape_err!(
                "moe_gated_add: x {:?} {:?}, input {:?}, modulation {:?} (chunk {gate}) do not fit",
                x.dtype,
                x.shape,
                m_in.shape,
                mods.shape
            ));
        }
        let m_in = &self.act_of(m_in)?;
        let run = self.moe_experts(m_in, w, top_k)?;
        let (a, i) = (|b: &Block<D>| self.addr(b), |v: usize| int("moe_gated_add", v));
        self.dev.launch(
            &self.k("moe_combine_gated_add"),
            &LaunchConfig { grid: [dim("moe_gated_add", run.tokens)?, 1, 1], block: [128, 1, 1], shared_bytes: 0 },
            &[
                self.ptr(x),
                self.ptr(&run.y),
                a(&run.wts),
                a(&run.ids),
                a(&run.pos),
                i(top_k)?,
                i(d)?,
                self.ptr(mods),
                i(t)?,
                i(m)?,
                i(gate * d)?,
            ],
        )?;
        self.routing_of(&run, top_k, record)
    }
    fn nchw_to_tokens(&self, x: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let &[n, c, h, w] = x.shape.as_slice() else {
            return Err(shape_err!("nchw_to_tokens: input {:?} must be NCHW", x.shape));
        };
        let hw = h * w;
        let y = self.empty(&[n, hw, c])?;
        let cfg = LaunchConfig {
            grid: [
                dim("nchw_to_tokens", hw.div_ceil(32))?,
                dim("nchw_to_tokens", c.div_ceil(32))?,
                dim("nchw_to_tokens", n)?,
            ],
            block: [32, 8, 1],
            shared_bytes: 0,
        };
        self.dev.launch(
            &self.k("nchw_to_tokens"),
            &cfg,
            &[self.ptr(&y), self.ptr(x), int("nchw_to_tokens", c)?, int("nchw_to_tokens", hw)?],
        )?;
        Ok(y)
    }
    fn tokens_to_nchw(&self, x: &GpuTensor<D>, h: usize, w: usize) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let &[n, l, c] = x.shape.as_slice() else {
            return Err(shape_err!("tokens_to_nchw: input {:?} must be [N, L, C]", x.shape));
        };
        if l != h * w {
            return Err(shape_err!("tokens_to_nchw: {l} tokens is not {h}x{w}"));
        }
        let y = self.empty(&[n, c, h, w])?;
        let cfg = LaunchConfig {
            grid: [
                dim("tokens_to_nchw", c.div_ceil(32))?,
                dim("tokens_to_nchw", l.div_ceil(32))?,
                dim("tokens_to_nchw", n)?,
            ],
            block: [32, 8, 1],
            shared_bytes: 0,
        };
        self.dev.launch(
            &self.k("tokens_to_nchw"),
            &cfg,
            &[self.ptr(&y), self.ptr(x), int("tokens_to_nchw", l)?, int("tokens_to_nchw", c)?],
        )?;
        Ok(y)
    }
    fn cat_channels(&self, parts: &[&GpuTensor<D>]) -> Result<GpuTensor<D>> {
        let owned = parts.iter().map(|p| self.act_of(p)).collect::<Result<Vec<_>>>()?;
        let parts: Vec<&GpuTensor<D>> = owned.iter().collect();
        let parts = parts.as_slice();
        let first = parts.first().ok_or_else(|| shape_err!("cat_channels: no inputs"))?;
        let (n, hw) = (first.shape[0], numel(&first.shape[2..]));
        for p in parts {
            if p.shape[0] != n || numel(&p.shape[2..]) != hw {
                return Err(shape_err!("cat_channels: {:?} does not fit {:?}", p.shape, first.shape));
            }
        }
        // The kernel joins up to three inputs; longer lists fold left.
        let mut acc = (*first).clone();
        let mut rest = &parts[1..];
        while !rest.is_empty() {
            let take = rest.len().min(2);
            let (b, c) = (rest[0], if take == 2 { Some(rest[1]) } else { None });
            let (ca, cb, cc) = (acc.shape[1], b.shape[1], c.map_or(0, |c| c.shape[1]));
            let mut shape = first.shape.clone();
            shape[1] = ca + cb + cc;
            let y = self.empty(&shape)?;
            let i = |v: usize| int("cat_channels", v);
            self.grid_stride(
                &self.k("cat_channels"),
                n * (ca + cb + cc) * hw,
                &[
                    self.ptr(&y),
                    self.ptr(&acc),
                    self.ptr(b),
                    c.map_or(Arg::Ptr(0), |c| self.ptr(c)),
                    i(n)?,
                    i(ca)?,
                    i(cb)?,
                    i(cc)?,
                    i(hw)?,
                ],
            )?;
            acc = y;
            rest = &rest[take..];
        }
        Ok(acc)
    }
    fn slice_channels(&self, x: &GpuTensor<D>, start: usize, len: usize) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let (n, c) = (x.shape[0], x.shape[1]);
        if start + len > c {
            return Err(shape_err!("slice_channels: {start}..{} of {c} channels", start + len));
        }
        let hw = numel(&x.shape[2..]);
        let mut shape = x.shape.clone();
        shape[1] = len;
        let y = self.empty(&shape)?;
        let i = |v: usize| int("slice_channels", v);
        self.grid_stride(
            &self.k("slice_channels"),
            n * len * hw,
            &[self.ptr(&y), self.ptr(x), i(n)?, i(c)?, i(start)?, i(len)?, i(hw)?],
        )?;
        Ok(y)
    }
    fn reshape(&self, x: GpuTensor<D>, shape: &[usize]) -> Result<GpuTensor<D>> {
        if numel(shape) != numel(&x.shape) {
            return Err(shape_err!("cannot reshape {:?} to {shape:?}", x.shape));
        }
        Ok(GpuTensor { buf: x.buf, shape: shape.to_vec(), dtype: x.dtype })
    }
    fn write(&self, dst: &mut GpuTensor<D>, src: &Tensor) -> Result<()> {
        if dst.dtype != DType::F32 || numel(&dst.shape) != src.data.len() {
            return Err(shape_err!("write: {:?} f32 values into a {:?} {:?} tensor", src.shape, dst.dtype, dst.shape));
        }
        self.dev.write(dst.buf.buffer(), 0, bytemuck::cast_slice(&src.data))
    }
    fn timestep_features(&self, t: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        use crate::model::dit::FREQ_DIM;
        if t.dtype != DType::F32 || t.shape.len() != 1 {
            return Err(shape_err!("timestep_features: t must be f32 [B], not {:?} {:?}", t.dtype, t.shape));
        }
        let (b, half) = (t.shape[0], FREQ_DIM / 2);
        let y = self.empty(&[b, FREQ_DIM])?;
        let i = |v: usize| int("timestep_features", v);
        self.grid_stride(&self.k("timestep_features"), b * half, &[self.ptr(&y), self.ptr(t), i(b)?, i(half)?])?;
        Ok(y)
    }
    fn ddim_step(
        &self,
        pred: &GpuTensor<D>,
        sample: &mut GpuTensor<D>,
        coefs: &GpuTensor<D>,
        prediction_type: crate::scheduler::PredictionType,
    ) -> Result<()> {
        use crate::scheduler::PredictionType;
        if pred.shape != sample.shape || sample.dtype != DType::F32 {
            return Err(shape_err!(
                "ddim_step: prediction {:?} and f32 sample {:?} {:?} must match",
                pred.shape,
                sample.dtype,
                sample.shape
            ));
        }
        let want = crate::scheduler::ddim::StepCoefficients::VALUES;
        if coefs.dtype != DType::F32 || numel(&coefs.shape) != want {
            return Err(shape_err!("ddim_step: coefficients {:?} must be {want} f32 values", coefs.shape));
        }
        let pred = &self.convert(pred, DType::F32)?;
        let n = numel(&sample.shape);
        let kind = match prediction_type {
            PredictionType::Epsilon => 0,
            PredictionType::VPrediction => 1,
            PredictionType::Sample => 2,
        };
        self.grid_stride(
            "ddim_step_f32",
            n,
            &[
                self.ptr(sample),
                Arg::Ptr(0), // no pred_x0
                self.ptr(pred),
                self.ptr(sample),
                count("ddim_step", n)?,
                Arg::I32(kind),
                self.ptr(coefs),
            ],
        )
    }
    fn capture(&self, step: &mut dyn FnMut() -> Result<()>) -> Result<Option<CudaGraph<D>>> {
        self.pool.begin_capture();
        if let Err(e) = self.dev.begin_capture() {
            drop(self.pool.end_capture());
            return Err(e);
        }
        let ran = step();
        // The capture always ends, so the stream is usable again whatever happened.
        let graph = self.dev.end_capture();
        let scratch = self.pool.end_capture();
        ran?;
        Ok(Some(CudaGraph { graph: graph?, _scratch: scratch }))
    }
    fn replay(&self, graph: &CudaGraph<D>) -> Result<()> {
        self.dev.replay(&graph.graph)
    }
    fn wait(&self) -> Result<()> {
        self.dev.synchronize()
    }
}
