//! The CPU backend: plain Rust, multithreaded with rayon, matrix products through `gemm`.
//! It is the correctness oracle for the GPU kernels and what runs without a GPU.

pub mod alloc;
pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod gemm;
#[cfg(target_arch = "x86_64")]
mod gemm_amx;
#[cfg(target_arch = "x86_64")]
mod gemm_avx512;
pub mod gemm_bf16;
pub mod moe;
pub mod norm;
mod release;
pub(crate) mod simd;
pub mod timestep;

use std::borrow::Cow;

use rayon::prelude::*;

use super::{Act, Backend, Conv2d, MoeWeights, Routing};
use crate::error::{Error, Result};
use crate::shape_err;
use crate::tensor::{numel, DType, Tensor};
use crate::weights::RawTensor;
use gemm_bf16::PackedBf16;
use moe::Matrix;

/// A parameter on the CPU: borrowed from the memory-mapped file when it is stored as aligned
/// f32, converted once otherwise; at bf16, matrices (two axes) are packed bf16.
pub struct CpuWeight {
    pub shape: Vec<usize>,
    storage: WeightStorage,
}

enum WeightStorage {
    Borrowed(RawTensor),
    Owned(Vec<f32>),
    /// A [n, k] matrix rounded to bf16 and packed for `gemm_bf16` (bf16 backend only).
    Packed(PackedBf16),
}

impl CpuWeight {
    /// The f32 values. Panics for a packed bf16 matrix (see `to_f32`, `matrix`), which only the
    /// bf16 backend makes and reads through `matrix`.
    pub fn data(&self) -> &[f32] {
        match &self.storage {
            WeightStorage::Borrowed(r) => r.as_f32_slice().expect("checked at creation"),
            WeightStorage::Owned(v) => v,
            WeightStorage::Packed(_) => panic!("CpuWeight::data on a packed bf16 matrix {:?}", self.shape),
        }
    }

    /// The values as f32, whatever the storage (a copy for a packed matrix).
    pub fn to_f32(&self) -> Cow<'_, [f32]> {
        match &self.storage {
            WeightStorage::Packed(p) => Cow::Owned(p.to_f32()),
            _ => Cow::Borrowed(self.data()),
        }
    }

    /// The weight as the right operand of a product.
    pub fn matrix(&self) -> Matrix<'_> {
        match &self.storage {
            WeightStorage::Packed(p) => Matrix::Bf16(p),
            _ => Matrix::F32(self.data()),
        }
    }

    /// Bytes this weight holds outside the model file.
    pub fn owned_bytes(&self) -> usize {
        match &self.storage {
            WeightStorage::Borrowed(_) => 0,
            WeightStorage::Owned(v) => v.len() * 4,
            WeightStorage::Packed(p) => p.bytes(),
        }
    }
}

/// The CPU backend. At f32 (`Cpu::new()`, or the value `Cpu`) everything is f32. At bf16
/// (`Cpu::bf16()`) it computes what the CUDA backend's bf16 path computes: matrix weights in
/// bf16 (biases, norm parameters and other one-axis tensors in f32), products of bf16 values
/// summed in f32, and every op's output rounded to bf16 where the CUDA path stores bf16; the
/// residual stream, norm statistics and the scheduler state stay f32.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    bf16: bool,
}

impl Cpu {
    /// f32 weights and activations.
    pub fn new() -> Self {
        Cpu { bf16: false }
    }

    /// bf16 storage (see the type's notes).
    pub fn bf16() -> Self {
        Cpu { bf16: true }
    }

    pub fn is_bf16(&self) -> bool {
        self.bf16
    }

    /// The engine of the convolutions, whose operands at bf16 hold bf16 values (weights
    /// rounded at load, inputs by `input`).
    fn conv_engine(&self) -> gemm::Engine {
        if self.bf16 {
            gemm::Engine::for_bf16_values()
        } else {
            gemm::Engine::best()
        }
    }

    /// `x` as an op reads it: at bf16 rounded to bf16 (where the CUDA path converts its inputs
    /// to the storage type), as is otherwise.
    fn input<'a>(&self, x: &'a Tensor) -> Cow<'a, Tensor> {
        if !self.bf16 || gemm_bf16::is_bf16(&x.data) {
            return Cow::Borrowed(x);
        }
        let mut y = x.clone();
        gemm_bf16::round_slice(&mut y.data);
        Cow::Owned(y)
    }

    /// An op's output as stored: rounded to bf16 at bf16.
    fn output(&self, mut t: Tensor) -> Tensor {
        if self.bf16 {
            gemm_bf16::round_slice(&mut t.data);
        }
        t
    }

    fn output_of(&self, r: Result<Tensor>) -> Result<Tensor> {
        r.map(|t| self.output(t))
    }

    /// A weight from f32 values: at bf16, matrices packed, tensors of three or more axes
    /// rounded; one-axis tensors stay f32.
    fn weight_from_values(&self, shape: Vec<usize>, values: Cow<'_, [f32]>, raw: Option<&RawTensor>) -> CpuWeight {
        let storage = if self.bf16 && shape.len() == 2 && shape[0] > 0 && shape[1] > 0 {
            WeightStorage::Packed(PackedBf16::from_f32(&values, shape[0], shape[1]))
        } else if self.bf16 && shape.len() > 2 {
            // Convolution weights (and the position table) stay f32 values rounded to bf16: the
            // convolutions run on the f32 engine, whose sums of these exact bf16 products are
            // the bf16 engine's up to order, and which this CPU runs faster (PERF.md).
            let mut v = values.into_owned();
            gemm_bf16::round_slice(&mut v);
            WeightStorage::Owned(v)
        } else {
            match (values, raw) {
                (Cow::Borrowed(_), Some(r)) => WeightStorage::Borrowed(r.clone()),
                (v, _) => WeightStorage::Owned(v.into_owned()),
            }
        };
        CpuWeight { shape, storage }
    }
}

impl Cpu {
    /// Routing and experts of an MoE layer: the f32 sums of the weighted expert rows.
    fn moe_combined(
        &self,
        x: &Tensor,
        w: &MoeWeights<CpuWeight>,
        top_k: usize,
        record: bool,
    ) -> Result<(Tensor, Option<Routing>)> {
        let x = &*self.input(x);
        let (e, d, f) = super::moe_dims("moe", w, |w| &w.shape)?;
        super::moe_input("moe", &x.shape, &w.gate.shape, top_k)?;
        let n = x.numel() / d.max(1);
        let routing = moe::route(&x.data, n, d, w.gate.matrix(), e, top_k);
        let out = moe::experts(
            &x.data,
            n,
            d,
            f,
            &routing,
            &matrices(&w.fc1_w),
            &refs(&w.fc1_b),
            &matrices(&w.fc2_w),
            &refs(&w.fc2_b),
        );
        Ok((Tensor::new(x.shape.clone(), out)?, record.then_some(routing)))
    }
}

fn refs(v: &[CpuWeight]) -> Vec<&[f32]> {
    v.iter().map(|w| w.data()).collect()
}

fn matrices(v: &[CpuWeight]) -> Vec<Matrix<'_>> {
    v.iter().map(|w| w.matrix()).collect()
}

fn last_dim(t: &Tensor) -> usize {
    *t.shape.last().unwrap_or(&1)
}

impl Backend for Cpu {
    type T = Tensor;
    type W = CpuWeight;
    type M = MoeWeights<CpuWeight>;
    /// The CPU captures nothing: there is no launch overhead to save.
    type Graph = std::convert::Infallible;

    fn name(&self) -> String {
        // The GEMM engine decides most of the speed (and the last bits of the results).
        if self.bf16 {
            let engine = gemm_bf16::Bf16Engine::best().label();
            return format!("cpu ({} threads, bf16, {engine} GEMM)", rayon::current_num_threads());
        }
        format!("cpu ({} threads, {} GEMM)", rayon::current_num_threads(), gemm::Engine::best().label())
    }
    fn shape<'a>(&self, t: &'a Tensor) -> &'a [usize] {
        &t.shape
    }
    fn upload(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
    fn download(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
    fn weight(&self, name: &str, raw: &RawTensor) -> Result<CpuWeight> {
        let shape = raw.shape.clone();
        if self.bf16 && shape.len() == 2 && raw.dtype == DType::BF16 && raw.numel() > 0 {
            // A bf16 matrix of the file is packed as it is (no rounding, no f32 copy).
            let bytes = raw.bytes.as_bytes();
            if bytes.len() != raw.numel() * 2 {
                return Err(Error::Weights(format!(
                    "tensor \"{name}\": {:?} bf16 needs {} bytes",
                    shape,
                    raw.numel() * 2
                )));
            }
            let bits: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            let packed = PackedBf16::from_bits(&bits, shape[0], shape[1]);
            release::release_mapped(raw);
            return Ok(CpuWeight { shape, storage: WeightStorage::Packed(packed) });
        }
        let values = match raw.as_f32_slice() {
            Some(s) if raw.dtype == DType::F32 => Cow::Borrowed(s),
            _ => Cow::Owned(raw.to_f32_vec().map_err(|e| Error::Weights(format!("tensor \"{name}\": {e}")))?),
        };
        let w = self.weight_from_values(shape, values, Some(raw));
        if w.owned_bytes() > 0 && self.bf16 {
            release::release_mapped(raw);
        }
        Ok(w)
    }
    fn weight_f32(&self, name: &str, raws: &[&RawTensor]) -> Result<CpuWeight> {
        match raws {
            [one] => Cpu::new().weight(name, one),
            _ => Cpu::new().weight_cat(name, raws),
        }
    }
    fn weight_cat(&self, name: &str, raws: &[&RawTensor]) -> Result<CpuWeight> {
        let mut data = Vec::new();
        let mut rows = 0;
        if let Some(r) = raws.iter().find(|r| r.shape.is_empty()) {
            return Err(shape_err!("weight_cat: {name}: cannot concatenate a scalar ({:?}) along rows", r.shape));
        }
        let cols: usize = raws.first().map(|r| r.shape[1..].iter().product()).unwrap_or(0);
        for r in raws {
            let c: usize = r.shape[1..].iter().product();
            if c != cols {
                return Err(Error::Weights(format!("{name}: cannot concatenate {:?} with {cols} columns", r.shape)));
            }
            rows += r.shape[0];
            data.extend(r.to_f32_vec()?);
        }
        let mut shape = raws.first().map(|r| r.shape.clone()).unwrap_or_default();
        if !shape.is_empty() {
            shape[0] = rows;
        }
        let w = self.weight_from_values(shape, Cow::Owned(data), None);
        if self.bf16 {
            raws.iter().for_each(|r| release::release_mapped(r));
        }
        Ok(w)
    }

    fn linear(&self, x: &Tensor, w: &CpuWeight, b: Option<&CpuWeight>, act: Act) -> Result<Tensor> {
        let k = last_dim(x);
        if x.shape.is_empty() || w.shape.len() != 2 || w.shape[1] != k {
            return Err(shape_err!("linear: input {:?} does not fit weight {:?}", x.shape, w.shape));
        }
        let n = w.shape[0];
        if let Some(b) = b.filter(|b| b.data().len() != n) {
            return Err(shape_err!("linear: bias {:?} does not fit weight {:?}", b.shape, w.shape));
        }
        let m = x.numel() / k.max(1);
        let mut out = vec![0f32; m * n];
        let matrix = w.matrix();
        // A bf16 product rounds its input itself.
        let x = if matches!(matrix, Matrix::F32(_)) { self.input(x) } else { Cow::Borrowed(x) };
        matrix.matmul_bt(m, n, k, &x.data, &mut out, true);
        if self.bf16 && act == Act::Silu {
            // The CUDA path stores the product, then applies SiLU in a kernel of its own.
            elementwise::bias_act(&mut out, b.map(|b| b.data()), n, Act::None);
            gemm_bf16::round_slice(&mut out);
            elementwise::apply(Act::Silu, &mut out);
        } else {
            elementwise::bias_act(&mut out, b.map(|b| b.data()), n, act);
        }
        let mut shape = x.shape.clone();
        *shape.last_mut().unwrap() = n;
        self.output_of(Tensor::new(shape, out))
    }
    fn act(&self, x: &Tensor, act: Act) -> Result<Tensor> {
        let mut y = self.input(x).into_owned();
        elementwise::apply(act, &mut y.data);
        Ok(self.output(y))
    }
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let (a, b) = (&*self.input(a), &*self.input(b));
        if a.shape != b.shape {
            return Err(shape_err!("add: shapes {:?} and {:?} differ", a.shape, b.shape));
        }
        // One pass writing a fresh buffer (a clone first would read and write `a` twice).
        let data: Vec<f32> = a.data.par_iter().zip(b.data.par_iter()).map(|(x, y)| x + y).collect();
        self.output_of(Tensor::new(a.shape.clone(), data))
    }
    fn scale(&self, x: &Tensor, s: f32) -> Result<Tensor> {
        let x = &*self.input(x);
        let data: Vec<f32> = x.data.par_iter().map(|v| v * s).collect();
        self.output_of(Tensor::new(x.shape.clone(), data))
    }
    fn conv2d(&self, x: &Tensor, w: &CpuWeight, b: Option<&CpuWeight>, p: Conv2d) -> Result<Tensor> {
        let x = &*self.input(x);
        let w_values = w.to_f32();
        let (&[n, c, h, wd], &[o, wc, kh, kw]) = (x.shape.as_slice(), w.shape.as_slice()) else {
            return Err(shape_err!("conv2d: input {:?} and weight {:?} must be 4-D", x.shape, w.shape));
        };
        if wc != c {
            return Err(shape_err!("conv2d: input has {c} channels, weight {:?} expects {wc}", w.shape));
        }
        if let Some(b) = b.filter(|b| b.data().len() != o) {
            return Err(shape_err!("conv2d: bias {:?} does not fit weight {:?}", b.shape, w.shape));
        }
        let (oh, ow) = conv::out_size(h, wd, kh, kw, p)
            .ok_or_else(|| shape_err!("conv2d: input {:?} is smaller than the kernel {:?}", x.shape, w.shape))?;
        let mut out = vec![0f32; n * o * oh * ow];
        for i in 0..n {
            conv::conv2d_image_with(
                self.conv_engine(),
                &x.data[i * c * h * wd..(i + 1) * c * h * wd],
                c,
                h,
                wd,
                &w_values,
                b.map(|b| b.data()),
                o,
                kh,
                kw,
                p,
                &mut out[i * o * oh * ow..(i + 1) * o * oh * ow],
            );
        }
        self.output_of(Tensor::new(vec![n, o, oh, ow], out))
    }
    fn upsample_nearest2x(&self, x: &Tensor) -> Result<Tensor> {
        // Copies of inputs rounded to bf16 need no rounding of their own.
        let x = &*self.input(x);
        let &[n, c, h, w] = x.shape.as_slice() else {
            return Err(shape_err!("upsample: input {:?} must be NCHW", x.shape));
        };
        let mut out = vec![0f32; n * c * 4 * h * w];
        out.par_chunks_mut(4 * h * w).zip(x.data.par_chunks(h * w)).for_each(|(dst, src)| {
            for y in 0..2 * h {
                let s = &src[(y / 2) * w..(y / 2 + 1) * w];
                let d = &mut dst[y * 2 * w..(y + 1) * 2 * w];
                for (xx, v) in d.iter_mut().enumerate() {
                    *v = s[xx / 2];
                }
            }
        });
        Tensor::new(vec![n, c, 2 * h, 2 * w], out)
    }
    fn group_norm(
        &self,
        x: &Tensor,
        gamma: &CpuWeight,
        beta: &CpuWeight,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> Result<Tensor> {
        let x = &*self.input(x);
        let (c, hw) = {
            let s = super::at_least("group_norm", "input", &x.shape, 2)?;
            (s[1], numel(&s[2..]))
        };
        if groups == 0 || c % groups != 0 || gamma.data().len() != c || beta.data().len() != c {
            return Err(shape_err!("group_norm: {c} channels, {groups} groups, gamma {:?}", gamma.shape));
        }
        let mut out = vec![0f32; x.numel()];
        norm::group_norm(&x.data, &mut out, c, hw, groups, gamma.data(), beta.data(), eps, silu);
        self.output_of(Tensor::new(x.shape.clone(), out))
    }
    fn modulated_layer_norm(&self, x: &Tensor, mods: &Tensor, shift: usize, scale: usize, eps: f32) -> Result<Tensor> {
        let &[b, t, d] = x.shape.as_slice() else {
            return Err(shape_err!("layer_norm: input {:?} must be [B, T, D]", x.shape));
        };
        let [mb, m] = super::axes("layer_norm", "modulation", &mods.shape)?;
        if mb != b || (shift.max(scale) + 1) * d > m {
            return Err(shape_err!("layer_norm: modulation {:?} does not fit input {:?}", mods.shape, x.shape));
        }
        let mut out = vec![0f32; x.numel()];
        // Statistics from the (f32) input as it is; the result is an activation.
        norm::modulated_layer_norm(&x.data, &mut out, b, t, d, &mods.data, m, shift * d, scale * d, eps);
        self.output_of(Tensor::new(x.shape.clone(), out))
    }
    fn gated_add(&self, x: &mut Tensor, y: &Tensor, mods: &Tensor, gate: usize) -> Result<()> {
        if x.shape != y.shape || x.dims() != 3 {
            return Err(shape_err!("gated_add: shapes {:?} and {:?}", x.shape, y.shape));
        }
        let (b, t, d) = (x.shape[0], x.shape[1], x.shape[2]);
        let [mb, m] = super::axes("gated_add", "modulation", &mods.shape)?;
        if mb != b || (gate + 1) * d > m {
            return Err(shape_err!(
                "gated_add: chunk {gate} of width {d} for {b} samples is outside modulation {:?}",
                mods.shape
            ));
        }
        x.data.par_chunks_mut(d).zip(y.data.par_chunks(d)).enumerate().for_each(|(row, (xr, yr))| {
            let g = &mods.data[(row / t) * m + gate * d..][..d];
            for i in 0..d {
                xr[i] += g[i] * yr[i];
            }
        });
        Ok(())
    }
    fn attention(&self, qkv: &Tensor, heads: usize) -> Result<Tensor> {
        let qkv = &*self.input(qkv);
        let &[b, l, d3] = qkv.shape.as_slice() else {
            return Err(shape_err!("attention: qkv {:?} must be [B, L, 3D]", qkv.shape));
        };
        if heads == 0 || d3 % (3 * heads) != 0 {
            return Err(shape_err!("attention: qkv width {d3} is not 3 x {heads} heads"));
        }
        let hd = d3 / 3 / heads;
        self.output_of(Tensor::new(vec![b, l, d3 / 3], attention::attention(&qkv.data, b, l, heads, hd)))
    }
    fn embedding(&self, table: &CpuWeight, ids: &[i64]) -> Result<Tensor> {
        let [rows, d] = super::axes("embedding", "table", &table.shape)?;
        let mut out = Vec::with_capacity(ids.len() * d);
        for &id in ids {
            if id < 0 || id as usize >= rows {
                return Err(Error::Input(format!("label {id} is outside the embedding table's {rows} rows")));
            }
            match table.matrix() {
                Matrix::F32(v) => out.extend_from_slice(&v[id as usize * d..(id as usize + 1) * d]),
                Matrix::Bf16(p) => out.extend(p.row_f32(id as usize)),
            }
        }
        Tensor::new(vec![ids.len(), d], out)
    }
    fn patch_embed(
        &self,
        x: &Tensor,
        conv_w: &CpuWeight,
        conv_b: &CpuWeight,
        n_convs: usize,
        labels: &[i64],
        first_label: i64,
        pos: &CpuWeight,
        patch: usize,
    ) -> Result<Tensor> {
        // In f32 at every precision (see the trait): the input as given, the f32 engine.
        let (conv_w_values, pos_values) = (conv_w.to_f32(), pos.to_f32());
        let &[b, c, h, w] = x.shape.as_slice() else {
            return Err(shape_err!("patch_embed: input {:?} must be NCHW", x.shape));
        };
        if labels.len() != b {
            return Err(shape_err!("patch_embed: {} labels for a batch of {b}", labels.len()));
        }
        let [nd, ..] = super::axes::<4>("patch_embed", "conv weight", &conv_w.shape)?;
        if n_convs == 0
            || patch == 0
            || nd % n_convs != 0
            || conv_w.shape[1..] != [c, patch, patch]
            || conv_b.data().len() != nd
        {
            return Err(shape_err!(
                "patch_embed: {n_convs} convs of patch {patch} over {c} channels do not fit weight {:?}, bias {:?}",
                conv_w.shape,
                conv_b.shape
            ));
        }
        let d = nd / n_convs;
        let per_conv = d * c * patch * patch;
        let (gh, gw) = (h / patch, w / patch);
        let t = gh * gw;
        if pos_values.len() != t * d {
            return Err(shape_err!("patch_embed: pos_embed {:?} does not fit {t} tokens of {d}", pos.shape));
        }
        let mut out = vec![0f32; b * t * d];
        for i in 0..b {
            let dst = &mut out[i * t * d..(i + 1) * t * d];
            let sel = labels[i] - first_label;
            if sel >= 0 && (sel as usize) < n_convs {
                let sel = sel as usize;
                let cw = &conv_w_values[sel * per_conv..(sel + 1) * per_conv];
                let cb = &conv_b.data()[sel * d..(sel + 1) * d];
                let mut conv_out = vec![0f32; d * t];
                conv::conv2d_image_with(
                    gemm::Engine::best(),
                    &x.data[i * c * h * w..(i + 1) * c * h * w],
                    c,
                    h,
                    w,
                    cw,
                    Some(cb),
                    d,
                    patch,
                    patch,
                    Conv2d::patch(patch),
                    &mut conv_out,
                );
                // [D, T] -> [T, D]
                dst.par_chunks_mut(d).enumerate().for_each(|(tok, row)| {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = conv_out[j * t + tok];
                    }
                });
            }
            dst.par_iter_mut().zip(pos_values.par_iter()).for_each(|(v, p)| *v += p);
        }
        Tensor::new(vec![b, t, d], out)
    }
    fn unpatchify(&self, x: &Tensor, patch: usize, channels: usize, gh: usize, gw: usize) -> Result<Tensor> {
        let x = &*self.input(x);
        let &[b, t, f] = x.shape.as_slice() else {
            return Err(shape_err!("unpatchify: input {:?} must be [B, T, F]", x.shape));
        };
        if t != gh * gw || f != patch * patch * channels {
            return Err(shape_err!("unpatchify: {:?} is not {gh}x{gw} tokens of {patch}x{patch}x{channels}", x.shape));
        }
        let (h, w) = (gh * patch, gw * patch);
        let mut out = vec![0f32; b * channels * h * w];
        for bi in 0..b {
            for tok in 0..t {
                let (th, tw) = (tok / gw, tok % gw);
                let src = &x.data[(bi * t + tok) * f..][..f];
                for p in 0..patch {
                    for q in 0..patch {
                        for c in 0..channels {
                            out[((bi * channels + c) * h + th * patch + p) * w + tw * patch + q] =
                                src[(p * patch + q) * channels + c];
                        }
                    }
                }
            }
        }
        Tensor::new(vec![b, channels, h, w], out)
    }
    fn prepare_moe(&self, _name: &str, w: MoeWeights<CpuWeight>) -> Result<MoeWeights<CpuWeight>> {
        Ok(w)
    }
    fn moe(
        &self,
        x: &Tensor,
        w: &MoeWeights<CpuWeight>,
        top_k: usize,
        record: bool,
    ) -> Result<(Tensor, Option<Routing>)> {
        let (out, routing) = self.moe_combined(x, w, top_k, record)?;
        Ok((self.output(out), routing))
    }
    fn moe_gated_add(
        &self,
        x: &mut Tensor,
        m_in: &Tensor,
        w: &MoeWeights<CpuWeight>,
        top_k: usize,
        mods: &Tensor,
        gate: usize,
        record: bool,
    ) -> Result<Option<Routing>> {
        // The combined expert rows go into the f32 residual stream unrounded, as on CUDA.
        let (out, routing) = self.moe_combined(m_in, w, top_k, record)?;
        let out = out.reshape(&x.shape)?;
        self.gated_add(x, &out, mods, gate)?;
        Ok(routing)
    }
    fn nchw_to_tokens(&self, x: &Tensor) -> Result<Tensor> {
        let x = &*self.input(x);
        let &[n, c, h, w] = x.shape.as_slice() else {
            return Err(shape_err!("nchw_to_tokens: input {:?} must be NCHW", x.shape));
        };
        let l = h * w;
        let mut out = vec![0f32; x.numel()];
        out.par_chunks_mut(l * c).zip(x.data.par_chunks(c * l)).for_each(|(dst, src)| {
            for ci in 0..c {
                for p in 0..l {
                    dst[p * c + ci] = src[ci * l + p];
                }
            }
        });
        Tensor::new(vec![n, l, c], out)
    }
    fn tokens_to_nchw(&self, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let x = &*self.input(x);
        let &[n, l, c] = x.shape.as_slice() else {
            return Err(shape_err!("tokens_to_nchw: input {:?} must be [N, L, C]", x.shape));
        };
        if l != h * w {
            return Err(shape_err!("tokens_to_nchw: {l} tokens is not {h}x{w}"));
        }
        let mut out = vec![0f32; x.numel()];
        out.par_chunks_mut(c * l).zip(x.data.par_chunks(l * c)).for_each(|(dst, src)| {
            for p in 0..l {
                for ci in 0..c {
                    dst[ci * l + p] = src[p * c + ci];
                }
            }
        });
        Tensor::new(vec![n, c, h, w], out)
    }
    fn cat_channels(&self, parts: &[&Tensor]) -> Result<Tensor> {
        let owned: Vec<Cow<Tensor>> = parts.iter().map(|p| self.input(p)).collect();
        let parts: Vec<&Tensor> = owned.iter().map(|p| &**p).collect();
        let parts = parts.as_slice();
        let first = parts.first().ok_or_else(|| shape_err!("cat_channels: no inputs"))?;
        for p in parts {
            super::at_least("cat_channels", "input", &p.shape, 2)?;
        }
        let (n, hw) = (first.shape[0], numel(&first.shape[2..]));
        let mut c_total = 0;
        for p in parts {
            if p.shape[0] != n || numel(&p.shape[2..]) != hw {
                return Err(shape_err!("cat_channels: {:?} does not fit {:?}", p.shape, first.shape));
            }
            c_total += p.shape[1];
        }
        let mut out = Vec::with_capacity(n * c_total * hw);
        for i in 0..n {
            for p in parts {
                let sz = p.shape[1] * hw;
                out.extend_from_slice(&p.data[i * sz..(i + 1) * sz]);
            }
        }
        let mut shape = first.shape.clone();
        shape[1] = c_total;
        Tensor::new(shape, out)
    }
    fn slice_channels(&self, x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        let x = &*self.input(x);
        let s = super::at_least("slice_channels", "input", &x.shape, 2)?;
        let (n, c) = (s[0], s[1]);
        if start + len > c {
            return Err(shape_err!("slice_channels: {start}..{} of {c} channels", start + len));
        }
        let hw = numel(&x.shape[2..]);
        let mut out = Vec::with_capacity(n * len * hw);
        for i in 0..n {
            out.extend_from_slice(&x.data[(i * c + start) * hw..(i * c + start + len) * hw]);
        }
        let mut shape = x.shape.clone();
        shape[1] = len;
        Tensor::new(shape, out)
    }
    fn reshape(&self, x: Tensor, shape: &[usize]) -> Result<Tensor> {
        x.reshape(shape)
    }
    fn write(&self, dst: &mut Tensor, src: &Tensor) -> Result<()> {
        if dst.data.len() != src.data.len() {
            return Err(shape_err!("write: {:?} values into a tensor {:?}", src.shape, dst.shape));
        }
        dst.data.copy_from_slice(&src.data);
        Ok(())
    }
    fn timestep_features(&self, t: &Tensor) -> Result<Tensor> {
        Ok(self.output(timestep::timestep_features(&t.data)))
    }
    fn ddim_step(
        &self,
        pred: &Tensor,
        sample: &mut Tensor,
        coefs: &Tensor,
        prediction_type: crate::backend::ddim::PredictionType,
    ) -> Result<()> {
        use crate::backend::ddim::StepCoefficients;
        if pred.shape != sample.shape {
            return Err(shape_err!("ddim_step: prediction {:?} and sample {:?} differ", pred.shape, sample.shape));
        }
        if coefs.data.len() != StepCoefficients::VALUES {
            return Err(shape_err!(
                "ddim_step: coefficients {:?} must hold {} values",
                coefs.shape,
                StepCoefficients::VALUES
            ));
        }
        let c = StepCoefficients::from_values(&coefs.data, prediction_type);
        sample.data.par_iter_mut().zip(pred.data.par_iter()).for_each(|(x, p)| *x = c.apply(*p, *x).0);
        Ok(())
    }
    fn capture(&self, _step: &mut dyn FnMut() -> Result<()>) -> Result<Option<Self::Graph>> {
        Ok(None)
    }
    fn replay(&self, graph: &Self::Graph) -> Result<()> {
        match *graph {}
    }
}
