//! Cases through the CUDA backend (`Via::Backend`): the op as the model calls it, against the CPU
//! backend's. Every new activation buffer of the device backend starts as NaN.

use std::sync::Arc;

use super::{Ctx, Dt};
use percept::backend::cpu::{Cpu, CpuWeight};
use percept::backend::cuda::backend::{Cuda, GpuTensor};
use percept::backend::cuda::device::Device;
use percept::backend::{Act, Backend, Conv2d, MoeWeights};
use percept::scheduler::PredictionType;
use percept::weights::{Bytes, RawTensor};
use percept::{DType, Result, Tensor};

struct Run<'c, 'a, D: Device> {
    ctx: &'c mut Ctx<'a, D>,
    gpu: Cuda<D>,
}

impl<D: Device> Run<'_, '_, D> {
    fn input(&mut self, shape: &[usize]) -> Result<(Tensor, GpuTensor<D>)> {
        let t = Tensor::new(shape.to_vec(), self.ctx.data(shape.iter().product())).unwrap();
        let g = self.gpu.upload(&t)?;
        Ok((t, g))
    }
    fn weight(&mut self, shape: &[usize], scale: f32) -> Result<(CpuWeight, GpuTensor<D>)> {
        let data = self.ctx.data(shape.iter().product()).into_iter().map(|v| v * scale).collect();
        self.weight_of(shape, data)
    }
    fn weight_of(&mut self, shape: &[usize], data: Vec<f32>) -> Result<(CpuWeight, GpuTensor<D>)> {
        let raw = RawTensor { dtype: DType::F32, shape: shape.to_vec(), bytes: Bytes::F32(Arc::new(data)) };
        Ok((Cpu::new().weight("w", &raw).unwrap(), self.gpu.weight("w", &raw)?))
    }
    /// Compares a device result with the CPU's (shape, then values).
    fn check(&self, what: &str, want: &Tensor, got: &GpuTensor<D>) -> Result<()> {
        let got = self.gpu.download(got)?;
        if got.shape != want.shape {
            self.ctx.mismatch(what, format!("output shape {:?}, expected {:?}", got.shape, want.shape));
        } else {
            self.ctx.check(what, &want.data, &got.data);
        }
        Ok(())
    }
}

fn conv_of(s: &[usize]) -> Conv2d {
    Conv2d { stride: s[0], pad: [s[1], s[2], s[3], s[4]] }
}

pub fn run<D: Device>(ctx: &mut Ctx<'_, D>) -> Result<()> {
    let dt = ctx.case.dtype;
    let gpu = if dt.storage() == DType::BF16 { Cuda::bf16(ctx.dev.clone()) } else { Cuda::new(ctx.dev.clone()) };
    let gpu = gpu.with_fast_kernels(dt == Dt::Bf16Fast);
    gpu.poison_new_buffers(true);
    let op = ctx.case.op;
    let s: Vec<Vec<usize>> = ctx.case.shapes.clone();
    let mut r = Run { ctx, gpu };
    let cpu = Cpu::new();
    match op {
        "linear" => {
            let (x, gx) = r.input(&s[0])?;
            let (k, n) = (s[0][s[0].len() - 1], s[1][0]);
            let (w, gw) = r.weight(&[n, k], 0.2)?;
            let (b, gb) = r.weight(&[n], 1.0)?;
            for act in [Act::None, Act::GeluTanh, Act::Silu] {
                let want = cpu.linear(&x, &w, Some(&b), act).unwrap();
                r.check(&format!("{act:?}"), &want, &r.gpu.linear(&gx, &gw, Some(&gb), act)?)?;
            }
            let want = cpu.linear(&x, &w, None, Act::None).unwrap();
            r.check("no bias", &want, &r.gpu.linear(&gx, &gw, None, Act::None)?)?;
        }
        "act" => {
            let (x, gx) = r.input(&s[0])?;
            for act in [Act::GeluTanh, Act::Silu] {
                r.check(&format!("{act:?}"), &cpu.act(&x, act).unwrap(), &r.gpu.act(&gx, act)?)?;
            }
        }
        "add" => {
            let (x, gx) = r.input(&s[0])?;
            let (y, gy) = r.input(&s[0])?;
            r.check("", &cpu.add(&x, &y).unwrap(), &r.gpu.add(&gx, &gy)?)?;
        }
        "scale" => {
            let (x, gx) = r.input(&s[0])?;
            r.check("", &cpu.scale(&x, -0.7).unwrap(), &r.gpu.scale(&gx, -0.7)?)?;
        }
        "conv2d" => {
            let (img, gimg) = r.input(&s[0])?;
            let (o, k, conv) = (s[1][0], s[1][1], conv_of(&s[2]));
            let (w, gw) = r.weight(&[o, s[0][1], k, k], 0.3)?;
            let (b, gb) = r.weight(&[o], 1.0)?;
            let bias = s[3][0] == 1;
            let want = cpu.conv2d(&img, &w, bias.then_some(&b), conv).unwrap();
            r.check(&format!("{k}x{k} {conv:?}"), &want, &r.gpu.conv2d(&gimg, &gw, bias.then_some(&gb), conv)?)?;
        }
        "upsample_conv2d" => {
            let (img, gimg) = r.input(&s[0])?;
            let (w, gw) = r.weight(&[s[1][0], s[0][1], 3, 3], 0.2)?;
            let (b, gb) = r.weight(&[s[1][0]], 1.0)?;
            let want = cpu.upsample_conv2d(&img, &w, Some(&b), Conv2d::same3x3()).unwrap();
            r.check("3x3", &want, &r.gpu.upsample_conv2d(&gimg, &gw, Some(&gb), Conv2d::same3x3())?)?;
        }
        "upsample_nearest2x" => {
            let (img, gimg) = r.input(&s[0])?;
            r.check("", &cpu.upsample_nearest2x(&img).unwrap(), &r.gpu.upsample_nearest2x(&gimg)?)?;
        }
        "group_norm" => {
            let (x, gx) = r.input(&s[0])?;
            let (c, groups) = (s[0][1], s[1][0]);
            let (gamma, ggamma) = r.weight(&[c], 1.0)?;
            let (beta, gbeta) = r.weight(&[c], 1.0)?;
            for silu in [false, true] {
                let want = cpu.group_norm(&x, &gamma, &beta, groups, 1e-6, silu).unwrap();
                r.check(&format!("silu={silu}"), &want, &r.gpu.group_norm(&gx, &ggamma, &gbeta, groups, 1e-6, silu)?)?;
            }
        }
        "nchw_to_tokens" => {
            let (x, gx) = r.input(&s[0])?;
            r.check("", &cpu.nchw_to_tokens(&x).unwrap(), &r.gpu.nchw_to_tokens(&gx)?)?;
        }
        "tokens_to_nchw" => {
            let &[n, c, h, w] = s[0].as_slice() else { panic!("tokens_to_nchw: shape {:?}", s[0]) };
            let (x, gx) = r.input(&[n, h * w, c])?;
            r.check("", &cpu.tokens_to_nchw(&x, h, w).unwrap(), &r.gpu.tokens_to_nchw(&gx, h, w)?)?;
        }
        "cat_channels" => {
            let (n, h, w) = (s[0][0], s[0][1], s[0][2]);
            let mut parts = Vec::new();
            for &c in &s[1] {
                parts.push(r.input(&[n, c, h, w])?);
            }
            let want = cpu.cat_channels(&parts.iter().map(|p| &p.0).collect::<Vec<_>>()).unwrap();
            let got = r.gpu.cat_channels(&parts.iter().map(|p| &p.1).collect::<Vec<_>>())?;
            r.check(&format!("{} parts", parts.len()), &want, &got)?;
        }
        "slice_channels" => {
            let (x, gx) = r.input(&s[0])?;
            let (start, len) = (s[1][0], s[1][1]);
            r.check("", &cpu.slice_channels(&x, start, len).unwrap(), &r.gpu.slice_channels(&gx, start, len)?)?;
        }
        "modulated_layer_norm" => {
            // The residual stream is f32 at either precision.
            let (h, gh) = r.input(&s[0])?;
            let (mods, gmods) = r.input(&[s[0][0], 6 * s[0][2]])?;
            let (shift, scale) = (s[1][0], s[1][1]);
            let want = cpu.modulated_layer_norm(&h, &mods, shift, scale, 1e-6).unwrap();
            r.check("", &want, &r.gpu.modulated_layer_norm(&gh, &gmods, shift, scale, 1e-6)?)?;
        }
        "gated_add" => {
            let (h, mut gh) = r.input(&s[0])?;
            let (mods, gmods) = r.input(&[s[0][0], 6 * s[0][2]])?;
            let (y, gy) = r.input(&s[0])?;
            let mut want = h.clone();
            cpu.gated_add(&mut want, &y, &mods, s[1][0]).unwrap();
            r.gpu.gated_add(&mut gh, &gy, &gmods, s[1][0])?;
            r.check("", &want, &gh)?;
        }
        "attention" => {
            let &[b, l, heads, hd] = s[0].as_slice() else { panic!("attention: shape {:?}", s[0]) };
            let (qkv, gqkv) = r.input(&[b, l, 3 * heads * hd])?;
            r.check("", &cpu.attention(&qkv, heads).unwrap(), &r.gpu.attention(&gqkv, heads)?)?;
        }
        "embedding" => {
            let (table, gtable) = r.weight(&s[0], 1.0)?;
            let ids: Vec<i64> = s[1].iter().map(|&i| i as i64).collect();
            r.check("", &cpu.embedding(&table, &ids).unwrap(), &r.gpu.embedding(&gtable, &ids)?)?;
        }
        "timestep_features" => {
            let ts = [1.0, 501.0, 999.0, 37.5, 0.0, 417.0];
            let t = Tensor::new(vec![s[0][0]], ts[..s[0][0]].to_vec()).unwrap();
            let gt = r.gpu.upload(&t)?;
            r.check("", &cpu.timestep_features(&t).unwrap(), &r.gpu.timestep_features(&gt)?)?;
        }
        "patch_embed" => {
            let &[b, c, h, w] = s[0].as_slice() else { panic!("patch_embed: shape {:?}", s[0]) };
            let (p, d) = (s[1][0], s[1][1]);
            let (x, gx) = r.input(&[b, c, h, w])?;
            let (cw, gcw) = r.weight(&[2 * d, c, p, p], 0.3)?;
            let (cb, gcb) = r.weight(&[2 * d], 1.0)?;
            let (pos, gpos) = r.weight(&[1, (h / p) * (w / p), d], 1.0)?;
            let labels: Vec<i64> = s[2].iter().map(|&l| l as i64).collect();
            let want = cpu.patch_embed(&x, &cw, &cb, 2, &labels, 1000, &pos, p).unwrap();
            r.check("", &want, &r.gpu.patch_embed(&gx, &gcw, &gcb, 2, &labels, 1000, &gpos, p)?)?;
        }
        "unpatchify" => {
            let &[b, c, p, gh, gw] = s[0].as_slice() else { panic!("unpatchify: shape {:?}", s[0]) };
            let (x, gx) = r.input(&[b, gh * gw, p * p * c])?;
            r.check("", &cpu.unpatchify(&x, p, c, gh, gw).unwrap(), &r.gpu.unpatchify(&gx, p, c, gh, gw)?)?;
        }
        "moe" | "moe_gated_add" => moe(&mut r, op, &s)?,
        "ddim_step" => {
            // The scheduler step in place, each prediction type, without and with clipping (the
            // inputs in [-1, 1] give x0 beyond 0.25 for every type).
            let (pred, gpred) = r.input(&s[0])?;
            let (sample, _) = r.input(&s[0])?;
            for pt in [PredictionType::Epsilon, PredictionType::VPrediction, PredictionType::Sample] {
                let mut unclipped = None;
                for clip in [0.0, 0.25] {
                    let values = [0.8, 0.6, 0.9, 0.435_89, clip];
                    let coefs = Tensor::new(vec![values.len()], values.to_vec()).unwrap();
                    let mut want = sample.clone();
                    cpu.ddim_step(&pred, &mut want, &coefs, pt).unwrap();
                    assert_ne!(unclipped.as_ref(), Some(&want.data), "clipping changed nothing ({pt:?})");
                    unclipped = Some(want.data.clone());
                    let mut gcoefs = r.gpu.upload(&Tensor::zeros(&[values.len()]))?;
                    r.gpu.write(&mut gcoefs, &coefs)?;
                    let mut gs = r.gpu.upload(&sample)?;
                    r.gpu.ddim_step(&gpred, &mut gs, &gcoefs, pt)?;
                    r.check(&format!("{pt:?} clip {clip}"), &want, &gs)?;
                }
            }
        }
        other => panic!("no backend runner for op {other:?}"),
    }
    Ok(())
}

/// An MoE layer ([tokens, D, F, E, k] or [B, T, D, F, E, k] into the gated residual add), routing
/// compared exactly. A second shape [z] leaves expert z without tokens: its gate row is pushed far
/// down and every token's first feature set to 1.
fn moe<D: Device>(r: &mut Run<'_, '_, D>, op: &str, s: &[Vec<usize>]) -> Result<()> {
    let cpu = Cpu::new();
    let gated = op == "moe_gated_add";
    let dims = if gated { &s[0][2..] } else { &s[0][1..] };
    let tokens = if gated { s[0][0] * s[0][1] } else { s[0][0] };
    let (d, f, e, k) = (dims[0], dims[1], dims[2], dims[3]);
    let empty = if gated { None } else { s[1].first().copied() };
    let mut x_data = r.ctx.data(tokens * d);
    let mut gate_data: Vec<f32> = r.ctx.data(e * d).into_iter().map(|v| v * 2.0).collect();
    if let Some(z) = empty {
        for t in 0..tokens {
            x_data[t * d] = 1.0;
        }
        for j in 0..e {
            gate_data[j * d] = if j == z { -100.0 } else { 0.0 };
        }
    }
    let xs = Tensor::new(vec![tokens, d], x_data).unwrap();
    let gxs = r.gpu.upload(&xs)?;
    let (gate, ggate) = r.weight_of(&[e, d], gate_data)?;
    let (mut cw1, mut cb1, mut cw2, mut cb2) = (vec![], vec![], vec![], vec![]);
    let (mut gw1, mut gb1, mut gw2, mut gb2) = (vec![], vec![], vec![], vec![]);
    for _ in 0..e {
        let (a, ga) = r.weight(&[f, d], 0.3)?;
        let (b, gb) = r.weight(&[f], 1.0)?;
        let (c, gc) = r.weight(&[d, f], 0.3)?;
        let (dd, gd) = r.weight(&[d], 1.0)?;
        cw1.push(a);
        cb1.push(b);
        cw2.push(c);
        cb2.push(dd);
        gw1.push(ga);
        gb1.push(gb);
        gw2.push(gc);
        gb2.push(gd);
    }
    let cm = cpu.prepare_moe("moe", MoeWeights { gate, fc1_w: cw1, fc1_b: cb1, fc2_w: cw2, fc2_b: cb2 }).unwrap();
    let gm = r.gpu.prepare_moe("moe", MoeWeights { gate: ggate, fc1_w: gw1, fc1_b: gb1, fc2_w: gw2, fc2_b: gb2 })?;
    if !gated {
        let (want, wr) = cpu.moe(&xs, &cm, k, true).unwrap();
        let (got, gr) = r.gpu.moe(&gxs, &gm, k, true)?;
        let wr = wr.unwrap();
        if let Some(z) = empty {
            assert!(!wr.experts.contains(&(z as i64)), "expert {z} was meant to stay empty");
        }
        r.check("output", &want, &got)?;
        r.ctx.check_eq("routing", &wr.experts, &gr.unwrap().experts);
    } else {
        let (b, t) = (s[0][0], s[0][1]);
        let (res, _) = r.input(&[b, t, d])?;
        let (mods, gmods) = r.input(&[b, 6 * d])?;
        let chunk = s[1][0];
        let (mut want, mut got) = (res.clone(), r.gpu.upload(&res)?);
        let wr = cpu.moe_gated_add(&mut want, &xs, &cm, k, &mods, chunk, true).unwrap();
        let gr = r.gpu.moe_gated_add(&mut got, &gxs, &gm, k, &gmods, chunk, true)?;
        r.check("output", &want, &got)?;
        r.ctx.check_eq("routing", &wr.unwrap().experts, &gr.unwrap().experts);
    }
    Ok(())
}
