//! The CUDA backend: every op of `Backend` as launches of our kernels on a `Device`. Activations
//! and weights are f32 device buffers here (the bf16 path comes beside it). Ops whose kernel is
//! not written yet run through the CPU backend with an explicit copy, listed by `fallback_ops()`,
//! so the pipeline works end to end while kernels land one by one.

use std::sync::{Arc, Mutex};

use super::device::Device;
use crate::backend::cpu::Cpu;
use crate::backend::{Act, Backend, Conv2d, MoeWeights, Routing};
use crate::emu::{Arg, LaunchConfig};
use crate::error::{Error, Result};
use crate::shape_err;
use crate::tensor::{numel, Tensor};
use crate::weights::{Bytes, RawTensor};

/// A tensor on the device: a shared buffer and its shape (f32, row-major).
pub struct GpuTensor<D: Device> {
    pub buf: Arc<D::Buffer>,
    pub shape: Vec<usize>,
}

impl<D: Device> Clone for GpuTensor<D> {
    fn clone(&self) -> Self {
        GpuTensor { buf: self.buf.clone(), shape: self.shape.clone() }
    }
}

pub struct Cuda<D: Device> {
    pub dev: D,
    cpu: Cpu,
    fallbacks: Arc<Mutex<std::collections::BTreeSet<&'static str>>>,
}

impl<D: Device> Clone for Cuda<D> {
    fn clone(&self) -> Self {
        Cuda { dev: self.dev.clone(), cpu: Cpu, fallbacks: self.fallbacks.clone() }
    }
}

const THREADS: u32 = 256;

fn blocks_for(n: usize) -> u32 {
    (n.div_ceil(THREADS as usize)).clamp(1, 65_535) as u32
}

impl<D: Device> Cuda<D> {
    pub fn new(dev: D) -> Self {
        Cuda { dev, cpu: Cpu, fallbacks: Arc::default() }
    }

    /// Ops that ran through the CPU because their kernel is not written yet.
    pub fn fallback_ops(&self) -> Vec<&'static str> {
        self.fallbacks.lock().map(|f| f.iter().copied().collect()).unwrap_or_default()
    }

    fn ptr(&self, t: &GpuTensor<D>) -> Arg {
        Arg::Ptr(self.dev.address(&t.buf))
    }

    fn empty(&self, shape: &[usize]) -> Result<GpuTensor<D>> {
        Ok(GpuTensor { buf: Arc::new(self.dev.alloc(numel(shape) * 4)?), shape: shape.to_vec() })
    }

    fn to_host(&self, t: &GpuTensor<D>) -> Result<Tensor> {
        let bytes = self.dev.download(&t.buf)?;
        let n = numel(&t.shape);
        Tensor::new(t.shape.clone(), bytemuck::pod_collect_to_vec::<u8, f32>(&bytes[..n * 4]))
    }

    fn from_host(&self, t: &Tensor) -> Result<GpuTensor<D>> {
        Ok(GpuTensor { buf: Arc::new(self.dev.upload(bytemuck::cast_slice(&t.data))?), shape: t.shape.clone() })
    }

    fn host_weight(&self, t: &GpuTensor<D>) -> Result<crate::backend::cpu::CpuWeight> {
        let h = self.to_host(t)?;
        let raw = RawTensor { dtype: crate::DType::F32, shape: h.shape, bytes: Bytes::F32(Arc::new(h.data)) };
        self.cpu.weight("fallback", &raw)
    }

    fn note_fallback(&self, op: &'static str) {
        if let Ok(mut f) = self.fallbacks.lock() {
            if f.insert(op) {
                log::info!("{}: {op} has no kernel yet; running it on the CPU", self.dev.describe());
            }
        }
    }

    fn elementwise(&self, kernel: &str, x: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        let n = numel(&x.shape);
        let y = self.empty(&x.shape)?;
        self.dev.launch(
            kernel,
            &LaunchConfig::linear(blocks_for(n), THREADS),
            &[self.ptr(&y), self.ptr(x), Arg::I32(n as i32)],
        )?;
        Ok(y)
    }
}

impl<D: Device> Backend for Cuda<D> {
    type T = GpuTensor<D>;
    type W = GpuTensor<D>;
    type M = MoeWeights<GpuTensor<D>>;

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
        self.from_host(&Tensor::new(raw.shape.clone(), data)?)
    }
    fn weight_cat(&self, name: &str, raws: &[&RawTensor]) -> Result<GpuTensor<D>> {
        let w = self.cpu.weight_cat(name, raws)?;
        self.from_host(&Tensor::new(w.shape.clone(), w.data().to_vec())?)
    }

    fn linear(&self, x: &GpuTensor<D>, w: &GpuTensor<D>, b: Option<&GpuTensor<D>>, act: Act) -> Result<GpuTensor<D>> {
        let k = *x.shape.last().unwrap_or(&0);
        if w.shape.len() != 2 || w.shape[1] != k {
            return Err(shape_err!("linear: input {:?} does not fit weight {:?}", x.shape, w.shape));
        }
        let (m, n) = (numel(&x.shape) / k.max(1), w.shape[0]);
        let mut shape = x.shape.clone();
        *shape.last_mut().unwrap() = n;
        let y = self.empty(&shape)?;
        let cfg = LaunchConfig {
            grid: [n.div_ceil(32) as u32, m.div_ceil(32) as u32, 1],
            block: [256, 1, 1],
            shared_bytes: 0,
        };
        let bias = b.map_or(Arg::Ptr(0), |b| self.ptr(b));
        let gelu = (act == Act::GeluTanh) as i32;
        self.dev.launch(
            "gemm_f32",
            &cfg,
            &[
                self.ptr(&y),
                self.ptr(x),
                self.ptr(w),
                bias,
                Arg::I32(m as i32),
                Arg::I32(n as i32),
                Arg::I32(k as i32),
                Arg::I32(gelu),
            ],
        )?;
        if act == Act::Silu {
            return self.elementwise("silu_f32", &y);
        }
        Ok(y)
    }
    fn act(&self, x: &GpuTensor<D>, act: Act) -> Result<GpuTensor<D>> {
        match act {
            Act::None => Ok(x.clone()),
            Act::Silu => self.elementwise("silu_f32", x),
            Act::GeluTanh => self.elementwise("gelu_tanh_f32", x),
        }
    }
    fn add(&self, a: &GpuTensor<D>, b: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        self.note_fallback("add");
        self.from_host(&self.cpu.add(&self.to_host(a)?, &self.to_host(b)?)?)
    }
    fn scale(&self, x: &GpuTensor<D>, s: f32) -> Result<GpuTensor<D>> {
        self.note_fallback("scale");
        self.from_host(&self.cpu.scale(&self.to_host(x)?, s)?)
    }
    fn conv2d(&self, x: &GpuTensor<D>, w: &GpuTensor<D>, b: Option<&GpuTensor<D>>, p: Conv2d) -> Result<GpuTensor<D>> {
        self.note_fallback("conv2d");
        let bw = match b {
            Some(b) => Some(self.host_weight(b)?),
            None => None,
        };
        self.from_host(&self.cpu.conv2d(&self.to_host(x)?, &self.host_weight(w)?, bw.as_ref(), p)?)
    }
    fn upsample_nearest2x(&self, x: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        self.note_fallback("upsample_nearest2x");
        self.from_host(&self.cpu.upsample_nearest2x(&self.to_host(x)?)?)
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
        let (n, c) = (x.shape[0], x.shape[1]);
        if groups == 0 || c % groups != 0 || numel(&gamma.shape) != c || numel(&beta.shape) != c {
            return Err(shape_err!("group_norm: {c} channels, {groups} groups, gamma {:?}", gamma.shape));
        }
        let hw = numel(&x.shape) / (n * c);
        let y = self.empty(&x.shape)?;
        let cfg = LaunchConfig { grid: [groups as u32, n as u32, 1], block: [256, 1, 1], shared_bytes: 0 };
        self.dev.launch(
            "group_norm_f32",
            &cfg,
            &[
                self.ptr(&y),
                self.ptr(x),
                self.ptr(gamma),
                self.ptr(beta),
                Arg::I32(c as i32),
                Arg::I32(hw as i32),
                Arg::I32(groups as i32),
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
        let &[b, t, d] = x.shape.as_slice() else {
            return Err(shape_err!("layer_norm: input {:?} must be [B, T, D]", x.shape));
        };
        let m = *mods.shape.last().unwrap_or(&0);
        if mods.shape[0] != b || (shift.max(scale) + 1) * d > m {
            return Err(shape_err!("layer_norm: modulation {:?} does not fit input {:?}", mods.shape, x.shape));
        }
        let y = self.empty(&x.shape)?;
        let shared = (d * 4) as u32;
        if shared > 48 * 1024 {
            self.dev.set_max_dynamic_shared("layer_norm_modulate_f32", shared)?;
        }
        let base = self.dev.address(&mods.buf);
        let cfg = LaunchConfig { grid: [(b * t) as u32, 1, 1], block: [128, 1, 1], shared_bytes: shared };
        self.dev.launch(
            "layer_norm_modulate_f32",
            &cfg,
            &[
                self.ptr(&y),
                self.ptr(x),
                Arg::Ptr(base + (shift * d * 4) as u64),
                Arg::Ptr(base + (scale * d * 4) as u64),
                Arg::I32(t as i32),
                Arg::I32(d as i32),
                Arg::I32(m as i32),
                Arg::F32(eps),
            ],
        )?;
        Ok(y)
    }
    fn gated_add(&self, x: &mut GpuTensor<D>, y: &GpuTensor<D>, mods: &GpuTensor<D>, gate: usize) -> Result<()> {
        self.note_fallback("gated_add");
        let mut h = self.to_host(x)?;
        self.cpu.gated_add(&mut h, &self.to_host(y)?, &self.to_host(mods)?, gate)?;
        *x = self.from_host(&h)?;
        Ok(())
    }
    fn attention(&self, qkv: &GpuTensor<D>, heads: usize) -> Result<GpuTensor<D>> {
        self.note_fallback("attention");
        self.from_host(&self.cpu.attention(&self.to_host(qkv)?, heads)?)
    }
    fn embedding(&self, table: &GpuTensor<D>, ids: &[i64]) -> Result<GpuTensor<D>> {
        self.note_fallback("embedding");
        self.from_host(&self.cpu.embedding(&self.host_weight(table)?, ids)?)
    }
    fn patch_embed(
        &self,
        x: &GpuTensor<D>,
        convs: &[(GpuTensor<D>, GpuTensor<D>)],
        labels: &[i64],
        first_label: i64,
        pos: &GpuTensor<D>,
        patch: usize,
    ) -> Result<GpuTensor<D>> {
        self.note_fallback("patch_embed");
        let cw =
            convs.iter().map(|(w, b)| Ok((self.host_weight(w)?, self.host_weight(b)?))).collect::<Result<Vec<_>>>()?;
        let out = self.cpu.patch_embed(&self.to_host(x)?, &cw, labels, first_label, &self.host_weight(pos)?, patch)?;
        self.from_host(&out)
    }
    fn unpatchify(
        &self,
        x: &GpuTensor<D>,
        patch: usize,
        channels: usize,
        gh: usize,
        gw: usize,
    ) -> Result<GpuTensor<D>> {
        self.note_fallback("unpatchify");
        self.from_host(&self.cpu.unpatchify(&self.to_host(x)?, patch, channels, gh, gw)?)
    }
    fn prepare_moe(&self, _name: &str, w: MoeWeights<GpuTensor<D>>) -> Result<MoeWeights<GpuTensor<D>>> {
        Ok(w)
    }
    fn moe(
        &self,
        x: &GpuTensor<D>,
        w: &MoeWeights<GpuTensor<D>>,
        top_k: usize,
        record: bool,
    ) -> Result<(GpuTensor<D>, Option<Routing>)> {
        self.note_fallback("moe");
        let hw = |v: &[GpuTensor<D>]| v.iter().map(|t| self.host_weight(t)).collect::<Result<Vec<_>>>();
        let cw = MoeWeights {
            gate: self.host_weight(&w.gate)?,
            fc1_w: hw(&w.fc1_w)?,
            fc1_b: hw(&w.fc1_b)?,
            fc2_w: hw(&w.fc2_w)?,
            fc2_b: hw(&w.fc2_b)?,
        };
        let (y, r) = self.cpu.moe(&self.to_host(x)?, &cw, top_k, record)?;
        Ok((self.from_host(&y)?, r))
    }
    fn nchw_to_tokens(&self, x: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        self.note_fallback("nchw_to_tokens");
        self.from_host(&self.cpu.nchw_to_tokens(&self.to_host(x)?)?)
    }
    fn tokens_to_nchw(&self, x: &GpuTensor<D>, h: usize, w: usize) -> Result<GpuTensor<D>> {
        self.note_fallback("tokens_to_nchw");
        self.from_host(&self.cpu.tokens_to_nchw(&self.to_host(x)?, h, w)?)
    }
    fn cat_channels(&self, parts: &[&GpuTensor<D>]) -> Result<GpuTensor<D>> {
        self.note_fallback("cat_channels");
        let hs = parts.iter().map(|p| self.to_host(p)).collect::<Result<Vec<_>>>()?;
        self.from_host(&self.cpu.cat_channels(&hs.iter().collect::<Vec<_>>())?)
    }
    fn slice_channels(&self, x: &GpuTensor<D>, start: usize, len: usize) -> Result<GpuTensor<D>> {
        self.note_fallback("slice_channels");
        self.from_host(&self.cpu.slice_channels(&self.to_host(x)?, start, len)?)
    }
    fn reshape(&self, x: GpuTensor<D>, shape: &[usize]) -> Result<GpuTensor<D>> {
        if numel(shape) != numel(&x.shape) {
            return Err(shape_err!("cannot reshape {:?} to {shape:?}", x.shape));
        }
        Ok(GpuTensor { buf: x.buf, shape: shape.to_vec() })
    }
}
