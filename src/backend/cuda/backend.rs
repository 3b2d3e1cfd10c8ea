//! The CUDA backend: every op of `Backend` as launches of our kernels on a `Device` (the real GPU
//! or the CPU emulator). Activations and weights are f32 or bf16 device buffers. Each op family
//! lives in `ops/<family>.rs` as an `impl Cuda` block holding its launches and its choice between
//! the simple kernel and a fast variant; this file holds the backend's state and the `Backend`
//! impl, one line per op. The device tensors and launch helpers are in `tensors.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::device::Device;
use super::graph::CudaGraph;
use super::pool::{Block, Pool, PoolStats};
use crate::backend::cpu::Cpu;
use crate::backend::{Act, Backend, Conv2d, MoeWeights, Routing};
use crate::error::{Error, Result};
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

pub struct Cuda<D: Device> {
    pub dev: D,
    /// Host-side helpers (weight concatenation at load).
    pub(super) cpu: Cpu,
    /// Storage type of activations and of weights with two or more axes (biases and norm
    /// parameters stay f32); arithmetic is f32 either way.
    pub(super) act: DType,
    /// Where every activation lives (see pool.rs).
    pub(super) pool: Pool<D>,
    /// Label and id arrays already on the device, by content: the same labels every step, so
    /// a step uploads nothing (and can be captured).
    pub(super) ids: Arc<Mutex<HashMap<Vec<i64>, Arc<Block<D>>>>>,
    /// Use the fast kernel variants where one exists (bf16 GEMMs and MoE expert layers on
    /// 128x128 tensor-core tiles). Off by default until they have passed on a GPU; on with
    /// PERCEPT_FAST_KERNELS=1 or `with_fast_kernels`.
    pub(super) fast: bool,
}

impl<D: Device> Clone for Cuda<D> {
    fn clone(&self) -> Self {
        Cuda {
            dev: self.dev.clone(),
            cpu: Cpu::new(),
            act: self.act,
            pool: self.pool.clone(),
            ids: self.ids.clone(),
            fast: self.fast,
        }
    }
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
        Cuda { pool: Pool::new(dev.clone()), dev, cpu: Cpu::new(), act, ids: Arc::default(), fast }
    }

    /// The same backend with the fast kernel variants on or off.
    pub fn with_fast_kernels(mut self, on: bool) -> Self {
        self.fast = on;
        self
    }

    /// The bf16 tensor-core tile kernels apply: fast variants on, bf16, whole 16-byte K chunks.
    pub(in crate::backend::cuda) fn tc128(&self, k: usize) -> bool {
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
}

/// Each op is the inherent method of the same name in `ops/` (inherent methods come first in
/// method resolution, so these calls do not recurse): one line per op.
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
        Cuda::weight(self, name, raw)
    }
    fn weight_cat(&self, name: &str, raws: &[&RawTensor]) -> Result<GpuTensor<D>> {
        Cuda::weight_cat(self, name, raws)
    }
    fn weight_f32(&self, name: &str, raws: &[&RawTensor]) -> Result<GpuTensor<D>> {
        Cuda::weight_f32(self, name, raws)
    }

    fn linear(&self, x: &GpuTensor<D>, w: &GpuTensor<D>, b: Option<&GpuTensor<D>>, act: Act) -> Result<GpuTensor<D>> {
        Cuda::linear(self, x, w, b, act)
    }
    fn act(&self, x: &GpuTensor<D>, act: Act) -> Result<GpuTensor<D>> {
        Cuda::act(self, x, act)
    }
    fn add(&self, a: &GpuTensor<D>, b: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        Cuda::add(self, a, b)
    }
    fn scale(&self, x: &GpuTensor<D>, s: f32) -> Result<GpuTensor<D>> {
        Cuda::scale(self, x, s)
    }
    fn conv2d(&self, x: &GpuTensor<D>, w: &GpuTensor<D>, b: Option<&GpuTensor<D>>, p: Conv2d) -> Result<GpuTensor<D>> {
        Cuda::conv2d(self, x, w, b, p)
    }
    fn upsample_conv2d(
        &self,
        x: &GpuTensor<D>,
        w: &GpuTensor<D>,
        b: Option<&GpuTensor<D>>,
        p: Conv2d,
    ) -> Result<GpuTensor<D>> {
        Cuda::upsample_conv2d(self, x, w, b, p)
    }
    fn upsample_nearest2x(&self, x: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        Cuda::upsample_nearest2x(self, x)
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
        Cuda::group_norm(self, x, gamma, beta, groups, eps, silu)
    }
    fn modulated_layer_norm(
        &self,
        x: &GpuTensor<D>,
        mods: &GpuTensor<D>,
        shift: usize,
        scale: usize,
        eps: f32,
    ) -> Result<GpuTensor<D>> {
        Cuda::modulated_layer_norm(self, x, mods, shift, scale, eps)
    }
    fn gated_add(&self, x: &mut GpuTensor<D>, y: &GpuTensor<D>, mods: &GpuTensor<D>, gate: usize) -> Result<()> {
        Cuda::gated_add(self, x, y, mods, gate)
    }
    fn attention(&self, qkv: &GpuTensor<D>, heads: usize) -> Result<GpuTensor<D>> {
        Cuda::attention(self, qkv, heads)
    }
    fn embedding(&self, table: &GpuTensor<D>, ids: &[i64]) -> Result<GpuTensor<D>> {
        Cuda::embedding(self, table, ids)
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
        Cuda::patch_embed(self, x, conv_w, conv_b, n_convs, labels, first_label, pos, patch)
    }
    fn unpatchify(
        &self,
        x: &GpuTensor<D>,
        patch: usize,
        channels: usize,
        gh: usize,
        gw: usize,
    ) -> Result<GpuTensor<D>> {
        Cuda::unpatchify(self, x, patch, channels, gh, gw)
    }
    fn prepare_moe(&self, name: &str, w: MoeWeights<GpuTensor<D>>) -> Result<GpuMoe<D>> {
        Cuda::prepare_moe(self, name, w)
    }
    fn moe(
        &self,
        x: &GpuTensor<D>,
        w: &GpuMoe<D>,
        top_k: usize,
        record: bool,
    ) -> Result<(GpuTensor<D>, Option<Routing>)> {
        Cuda::moe(self, x, w, top_k, record)
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
        Cuda::linear_gated_add(self, x, a, w, b, mods, gate)
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
        Cuda::moe_gated_add(self, x, m_in, w, top_k, mods, gate, record)
    }
    fn nchw_to_tokens(&self, x: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        Cuda::nchw_to_tokens(self, x)
    }
    fn tokens_to_nchw(&self, x: &GpuTensor<D>, h: usize, w: usize) -> Result<GpuTensor<D>> {
        Cuda::tokens_to_nchw(self, x, h, w)
    }
    fn cat_channels(&self, parts: &[&GpuTensor<D>]) -> Result<GpuTensor<D>> {
        Cuda::cat_channels(self, parts)
    }
    fn slice_channels(&self, x: &GpuTensor<D>, start: usize, len: usize) -> Result<GpuTensor<D>> {
        Cuda::slice_channels(self, x, start, len)
    }
    fn reshape(&self, x: GpuTensor<D>, shape: &[usize]) -> Result<GpuTensor<D>> {
        Cuda::reshape(self, x, shape)
    }
    fn write(&self, dst: &mut GpuTensor<D>, src: &Tensor) -> Result<()> {
        Cuda::write(self, dst, src)
    }
    fn timestep_features(&self, t: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        Cuda::timestep_features(self, t)
    }
    fn ddim_step(
        &self,
        pred: &GpuTensor<D>,
        sample: &mut GpuTensor<D>,
        coefs: &GpuTensor<D>,
        prediction_type: crate::backend::ddim::PredictionType,
    ) -> Result<()> {
        Cuda::ddim_step(self, pred, sample, coefs, prediction_type)
    }
    fn capture(&self, step: &mut dyn FnMut() -> Result<()>) -> Result<Option<CudaGraph<D>>> {
        Cuda::capture(self, step)
    }
    fn replay(&self, graph: &CudaGraph<D>) -> Result<()> {
        Cuda::replay(self, graph)
    }
    fn wait(&self) -> Result<()> {
        self.dev.synchronize()
    }
}
