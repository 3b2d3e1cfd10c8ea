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
pub mod moe;
pub mod norm;
pub(crate) mod simd;
pub mod timestep;

use rayon::prelude::*;

use super::{Act, Backend, Conv2d, MoeWeights, Routing};
use crate::error::{Error, Result};
use crate::shape_err;
use crate::tensor::{numel, DType, Tensor};
use crate::weights::RawTensor;

/// A parameter on the CPU: borrowed from the memory-mapped file when it is stored as aligned
/// f32, converted once otherwise.
pub struct CpuWeight {
    pub shape: Vec<usize>,
    storage: WeightStorage,
}

enum WeightStorage {
    Borrowed(RawTensor),
    Owned(Vec<f32>),
}

impl CpuWeight {
    pub fn data(&self) -> &[f32] {
        match &self.storage {
            WeightStorage::Borrowed(r) => r.as_f32_slice().expect("checked at creation"),
            WeightStorage::Owned(v) => v,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

impl Cpu {
    pub fn new() -> Self {
        Cpu
    }
}

fn refs(v: &[CpuWeight]) -> Vec<&[f32]> {
    v.iter().map(|w| w.data()).collect()
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
        let storage = if raw.dtype == DType::F32 && raw.as_f32_slice().is_some() {
            WeightStorage::Borrowed(raw.clone())
        } else {
            WeightStorage::Owned(raw.to_f32_vec().map_err(|e| Error::Weights(format!("tensor \"{name}\": {e}")))?)
        };
        Ok(CpuWeight { shape: raw.shape.clone(), storage })
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
        Ok(CpuWeight { shape, storage: WeightStorage::Owned(data) })
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
        gemm::matmul_bt(m, n, k, &x.data, w.data(), &mut out, true);
        elementwise::bias_act(&mut out, b.map(|b| b.data()), n, act);
        let mut shape = x.shape.clone();
        *shape.last_mut().unwrap() = n;
        Tensor::new(shape, out)
    }
    fn act(&self, x: &Tensor, act: Act) -> Result<Tensor> {
        let mut y = x.clone();
        elementwise::apply(act, &mut y.data);
        Ok(y)
    }
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        if a.shape != b.shape {
            return Err(shape_err!("add: shapes {:?} and {:?} differ", a.shape, b.shape));
        }
        // One pass writing a fresh buffer (a clone first would read and write `a` twice).
        let data: Vec<f32> = a.data.par_iter().zip(b.data.par_iter()).map(|(x, y)| x + y).collect();
        Tensor::new(a.shape.clone(), data)
    }
    fn scale(&self, x: &Tensor, s: f32) -> Result<Tensor> {
        let data: Vec<f32> = x.data.par_iter().map(|v| v * s).collect();
        Tensor::new(x.shape.clone(), data)
    }
    fn conv2d(&self, x: &Tensor, w: &CpuWeight, b: Option<&CpuWeight>, p: Conv2d) -> Result<Tensor> {
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
            conv::conv2d_image(
                &x.data[i * c * h * wd..(i + 1) * c * h * wd],
                c,
                h,
                wd,
                w.data(),
                b.map(|b| b.data()),
                o,
                kh,
                kw,
                p,
                &mut out[i * o * oh * ow..(i + 1) * o * oh * ow],
            );
        }
        Tensor::new(vec![n, o, oh, ow], out)
    }
    fn upsample_nearest2x(&self, x: &Tensor) -> Result<Tensor> {
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
        let (c, hw) = {
            let s = super::at_least("group_norm", "input", &x.shape, 2)?;
            (s[1], numel(&s[2..]))
        };
        if groups == 0 || c % groups != 0 || gamma.data().len() != c || beta.data().len() != c {
            return Err(shape_err!("group_norm: {c} channels, {groups} groups, gamma {:?}", gamma.shape));
        }
        let mut out = vec![0f32; x.numel()];
        norm::group_norm(&x.data, &mut out, c, hw, groups, gamma.data(), beta.data(), eps, silu);
        Tensor::new(x.shape.clone(), out)
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
        norm::modulated_layer_norm(&x.data, &mut out, b, t, d, &mods.data, m, shift * d, scale * d, eps);
        Tensor::new(x.shape.clone(), out)
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
        let &[b, l, d3] = qkv.shape.as_slice() else {
            return Err(shape_err!("attention: qkv {:?} must be [B, L, 3D]", qkv.shape));
        };
        if heads == 0 || d3 % (3 * heads) != 0 {
            return Err(shape_err!("attention: qkv width {d3} is not 3 x {heads} heads"));
        }
        let hd = d3 / 3 / heads;
        Tensor::new(vec![b, l, d3 / 3], attention::attention(&qkv.data, b, l, heads, hd))
    }
    fn embedding(&self, table: &CpuWeight, ids: &[i64]) -> Result<Tensor> {
        let [rows, d] = super::axes("embedding", "table", &table.shape)?;
        let mut out = Vec::with_capacity(ids.len() * d);
        for &id in ids {
            if id < 0 || id as usize >= rows {
                return Err(Error::Input(format!("label {id} is outside the embedding table's {rows} rows")));
            }
            out.extend_from_slice(&table.data()[id as usize * d..(id as usize + 1) * d]);
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
        if pos.data().len() != t * d {
            return Err(shape_err!("patch_embed: pos_embed {:?} does not fit {t} tokens of {d}", pos.shape));
        }
        let mut out = vec![0f32; b * t * d];
        for i in 0..b {
            let dst = &mut out[i * t * d..(i + 1) * t * d];
            let sel = labels[i] - first_label;
            if sel >= 0 && (sel as usize) < n_convs {
                let sel = sel as usize;
                let cw = &conv_w.data()[sel * per_conv..(sel + 1) * per_conv];
                let cb = &conv_b.data()[sel * d..(sel + 1) * d];
                let mut conv_out = vec![0f32; d * t];
                conv::conv2d_image(
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
            dst.par_iter_mut().zip(pos.data().par_iter()).for_each(|(v, p)| *v += p);
        }
        Tensor::new(vec![b, t, d], out)
    }
    fn unpatchify(&self, x: &Tensor, patch: usize, channels: usize, gh: usize, gw: usize) -> Result<Tensor> {
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
        let (e, d, f) = super::moe_dims("moe", w, |w| &w.shape)?;
        super::moe_input("moe", &x.shape, &w.gate.shape, top_k)?;
        let n = x.numel() / d.max(1);
        let routing = moe::route(&x.data, n, d, w.gate.data(), e, top_k);
        let out = moe::experts(
            &x.data,
            n,
            d,
            f,
            &routing,
            &refs(&w.fc1_w),
            &refs(&w.fc1_b),
            &refs(&w.fc2_w),
            &refs(&w.fc2_b),
        );
        Ok((Tensor::new(x.shape.clone(), out)?, record.then_some(routing)))
    }
    fn nchw_to_tokens(&self, x: &Tensor) -> Result<Tensor> {
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
    fn ddim_step(&self, pred: &Tensor, sample: &Tensor, c: &crate::backend::ddim::StepCoefficients) -> Result<Tensor> {
        if pred.shape != sample.shape {
            return Err(shape_err!("ddim_step: prediction {:?} and sample {:?} differ", pred.shape, sample.shape));
        }
        let mut prev = sample.clone();
        prev.data.par_iter_mut().zip(pred.data.par_iter()).for_each(|(x, p)| *x = c.apply(*p, *x).0);
        Ok(prev)
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
        Ok(timestep::timestep_features(&t.data))
    }
    fn ddim_step_in_place(
        &self,
        pred: &Tensor,
        sample: &mut Tensor,
        coefs: &Tensor,
        prediction_type: crate::backend::ddim::PredictionType,
    ) -> Result<()> {
        if coefs.data.len() != 4 {
            return Err(shape_err!("ddim_step: coefficients {:?} must hold 4 values", coefs.shape));
        }
        let c = crate::backend::ddim::StepCoefficients::from_values(&coefs.data, prediction_type);
        *sample = self.ddim_step(pred, sample, &c)?;
        Ok(())
    }
    fn capture(&self, _step: &mut dyn FnMut() -> Result<()>) -> Result<Option<Self::Graph>> {
        Ok(None)
    }
    fn replay(&self, graph: &Self::Graph) -> Result<()> {
        match *graph {}
    }
}
