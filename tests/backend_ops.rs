//! Every op of the CUDA backend against the CPU backend, through the `Device` interface, so the
//! same checks run on the emulator (always) and on a real GPU (when there is one): fresh random
//! inputs of odd shapes, every new activation buffer filled with NaN first (an element a kernel
//! forgets to write fails the check), relative L2 error under 1e-5 at f32 and 1e-2 at bf16.
//! Inputs and weights are bf16-representable so both backends see the same values and the MoE
//! routes the same way at either precision.
//!
//! On a machine without a GPU the GPU test says so and passes; `PERCEPT_REQUIRE_GPU=1` (set by
//! scripts/gpu-check) makes the absence a failure.

use std::sync::Arc;

use crate::support::Rng;
use percept::backend::cpu::{Cpu, CpuWeight};
use percept::backend::cuda::backend::{Cuda, GpuTensor};
use percept::backend::cuda::device::Device;
use percept::backend::{Act, Backend, Conv2d, MoeWeights};
use percept::emu::{Arch, EmuDevice};
use percept::scheduler::ddim::StepCoefficients;
use percept::scheduler::PredictionType;
use percept::tensor::rel_l2;
use percept::weights::{Bytes, RawTensor};
use percept::{DType, Tensor};

struct Pair<D: Device> {
    gpu: Cuda<D>,
    tol: f64,
    rng: Rng,
    label: String,
}

fn bf16_values(v: Vec<f32>) -> Vec<f32> {
    v.into_iter().map(|x| half::bf16::from_f32(x).to_f32()).collect()
}

impl<D: Device> Pair<D> {
    fn data(&mut self, n: usize) -> Vec<f32> {
        bf16_values(self.rng.vec(n))
    }
    fn input(&mut self, shape: &[usize]) -> (Tensor, GpuTensor<D>) {
        let t = Tensor::new(shape.to_vec(), self.data(shape.iter().product())).unwrap();
        let g = self.gpu.upload(&t).unwrap();
        (t, g)
    }
    fn weight(&mut self, shape: &[usize], scale: f32) -> (CpuWeight, GpuTensor<D>) {
        let data = bf16_values(self.rng.vec(shape.iter().product()).into_iter().map(|v| v * scale).collect());
        let raw = RawTensor { dtype: DType::F32, shape: shape.to_vec(), bytes: Bytes::F32(Arc::new(data)) };
        (Cpu.weight("w", &raw).unwrap(), self.gpu.weight("w", &raw).unwrap())
    }
    fn check(&self, what: &str, want: &Tensor, got: &GpuTensor<D>) {
        let got = self.gpu.download(got).unwrap();
        assert_eq!(got.shape, want.shape, "{}: {what}: shape", self.label);
        assert!(
            got.data.iter().all(|v| v.is_finite()),
            "{}: {what}: non-finite output (unwritten element?)",
            self.label
        );
        let err = rel_l2(&got.data, &want.data);
        assert!(err < self.tol, "{}: {what}: relative L2 error {err:e} >= {:e}", self.label, self.tol);
    }
}

fn check_every_op<D: Device>(dev: D, name: &str) {
    // The simple kernels at both precisions, then bf16 with the fast variants.
    for (precision, tol, fast) in [(DType::F32, 1e-5, false), (DType::BF16, 1e-2, false), (DType::BF16, 1e-2, true)] {
        let gpu = if precision == DType::BF16 { Cuda::bf16(dev.clone()) } else { Cuda::new(dev.clone()) };
        let gpu = gpu.with_fast_kernels(fast);
        gpu.poison_new_buffers(true);
        let label = format!("{name} {}{}", precision.name(), if fast { " fast" } else { "" });
        let mut p = Pair { gpu, tol, rng: Rng(0x0b5 + tol.to_bits() + fast as u64), label };
        let cpu = Cpu;

        let (x, gx) = p.input(&[2, 37, 45]);
        let (w, gw) = p.weight(&[53, 45], 0.2);
        let (b, gb) = p.weight(&[53], 1.0);
        for act in [Act::None, Act::GeluTanh, Act::Silu] {
            let want = cpu.linear(&x, &w, Some(&b), act).unwrap();
            p.check(&format!("linear {act:?}"), &want, &p.gpu.linear(&gx, &gw, Some(&gb), act).unwrap());
        }
        p.check(
            "linear, no bias",
            &cpu.linear(&x, &w, None, Act::None).unwrap(),
            &p.gpu.linear(&gx, &gw, None, Act::None).unwrap(),
        );
        // K a multiple of 8 (the fast tiles' condition) but not of their 32-deep slices; M and N
        // across several 128-wide tiles with ragged edges.
        let (x8, gx8) = p.input(&[2, 150, 72]);
        let (w8, gw8) = p.weight(&[136, 72], 0.2);
        let (b8, gb8) = p.weight(&[136], 1.0);
        for act in [Act::None, Act::GeluTanh] {
            let want = cpu.linear(&x8, &w8, Some(&b8), act).unwrap();
            p.check(&format!("linear K=72 {act:?}"), &want, &p.gpu.linear(&gx8, &gw8, Some(&gb8), act).unwrap());
        }
        for act in [Act::GeluTanh, Act::Silu] {
            p.check(&format!("act {act:?}"), &cpu.act(&x, act).unwrap(), &p.gpu.act(&gx, act).unwrap());
        }
        let (y, gy) = p.input(&[2, 37, 45]);
        p.check("add", &cpu.add(&x, &y).unwrap(), &p.gpu.add(&gx, &gy).unwrap());
        p.check("scale", &cpu.scale(&x, -0.7).unwrap(), &p.gpu.scale(&gx, -0.7).unwrap());

        let (img, gimg) = p.input(&[2, 5, 9, 11]);
        for (kernel, conv) in [(3, Conv2d::same3x3()), (3, Conv2d::down3x3()), (1, Conv2d::pointwise())] {
            let (w, gw) = p.weight(&[7, 5, kernel, kernel], 0.3);
            let (b, gb) = p.weight(&[7], 1.0);
            let want = cpu.conv2d(&img, &w, Some(&b), conv).unwrap();
            p.check(
                &format!("conv2d {kernel}x{kernel} {conv:?}"),
                &want,
                &p.gpu.conv2d(&gimg, &gw, Some(&gb), conv).unwrap(),
            );
        }
        // K = C*9 a multiple of 8 (the tensor-core conv's condition) and ragged 128-tiles:
        // 136 output channels, 13x11 = 143 output pixels.
        let (img8, gimg8) = p.input(&[2, 8, 13, 11]);
        for conv in [Conv2d::same3x3(), Conv2d::down3x3()] {
            let (w, gw) = p.weight(&[136, 8, 3, 3], 0.2);
            let (b, gb) = p.weight(&[136], 1.0);
            let want = cpu.conv2d(&img8, &w, Some(&b), conv).unwrap();
            p.check(&format!("conv2d C=8 {conv:?}"), &want, &p.gpu.conv2d(&gimg8, &gw, Some(&gb), conv).unwrap());
        }
        for (cin, img_c, g_c) in [(5, &img, &gimg), (8, &img8, &gimg8)] {
            // The decoder's upsampler: 2x nearest then 3x3, fused on the device (C=8: the
            // tensor-core kernel's K).
            let (w, gw) = p.weight(&[136, cin, 3, 3], 0.2);
            let (b, gb) = p.weight(&[136], 1.0);
            let want = cpu.upsample_conv2d(img_c, &w, Some(&b), Conv2d::same3x3()).unwrap();
            let got = p.gpu.upsample_conv2d(g_c, &gw, Some(&gb), Conv2d::same3x3()).unwrap();
            p.check(&format!("upsample_conv2d C={cin}"), &want, &got);
        }
        p.check("upsample", &cpu.upsample_nearest2x(&img).unwrap(), &p.gpu.upsample_nearest2x(&gimg).unwrap());
        let (gn, ggn) = p.input(&[2, 12, 5, 7]);
        let (gamma, ggamma) = p.weight(&[12], 1.0);
        let (beta, gbeta) = p.weight(&[12], 1.0);
        for silu in [false, true] {
            let want = cpu.group_norm(&gn, &gamma, &beta, 4, 1e-6, silu).unwrap();
            p.check(
                &format!("group_norm silu={silu}"),
                &want,
                &p.gpu.group_norm(&ggn, &ggamma, &gbeta, 4, 1e-6, silu).unwrap(),
            );
        }
        p.check("nchw_to_tokens", &cpu.nchw_to_tokens(&gn).unwrap(), &p.gpu.nchw_to_tokens(&ggn).unwrap());
        let (tok, gtok) = p.input(&[2, 35, 6]);
        p.check(
            "tokens_to_nchw",
            &cpu.tokens_to_nchw(&tok, 5, 7).unwrap(),
            &p.gpu.tokens_to_nchw(&gtok, 5, 7).unwrap(),
        );
        let (c1, g1) = p.input(&[2, 3, 5, 7]);
        let (c2, g2) = p.input(&[2, 1, 5, 7]);
        let want = cpu.cat_channels(&[&c1, &c2, &gn, &c1]).unwrap();
        p.check("cat_channels x4", &want, &p.gpu.cat_channels(&[&g1, &g2, &ggn, &g1]).unwrap());
        p.check("slice_channels", &cpu.slice_channels(&gn, 3, 5).unwrap(), &p.gpu.slice_channels(&ggn, 3, 5).unwrap());

        // The DiT block's pieces; the residual stream is f32 at either precision.
        let (h, _) = p.input(&[2, 19, 40]);
        let gh = p.gpu.upload(&h).unwrap();
        let (mods, gmods) = p.input(&[2, 6 * 40]);
        let want = cpu.modulated_layer_norm(&h, &mods, 3, 4, 1e-6).unwrap();
        p.check("modulated_layer_norm", &want, &p.gpu.modulated_layer_norm(&gh, &gmods, 3, 4, 1e-6).unwrap());
        let (r, gr) = p.input(&[2, 19, 40]);
        let (mut hc, mut ghc) = (h.clone(), p.gpu.upload(&h).unwrap());
        cpu.gated_add(&mut hc, &r, &mods, 2).unwrap();
        p.gpu.gated_add(&mut ghc, &gr, &gmods, 2).unwrap();
        p.check("gated_add", &hc, &ghc);
        for (heads, hd, l) in [(2, 24, 33), (3, 12, 33), (2, 72, 150), (1, 128, 70)] {
            // hd 24, 72 (the DiT's, padded to 80 for the tensor cores), 128: the flash kernels;
            // hd 12 (not a multiple of 8): the wide one. Ragged last tiles; 150 and 70 tokens
            // take the online softmax across key tiles.
            let (qkv, gqkv) = p.input(&[2, l, 3 * heads * hd]);
            let want = cpu.attention(&qkv, heads).unwrap();
            p.check(&format!("attention {heads}x{hd}, {l} tokens"), &want, &p.gpu.attention(&gqkv, heads).unwrap());
        }
        let (table, gtable) = p.weight(&[10, 16], 1.0);
        let ids = [3, 0, 9, 3];
        p.check("embedding", &cpu.embedding(&table, &ids).unwrap(), &p.gpu.embedding(&gtable, &ids).unwrap());
        let t = Tensor::new(vec![4], vec![1.0, 501.0, 999.0, 37.5]).unwrap();
        let gt = p.gpu.upload(&t).unwrap();
        p.check("timestep_features", &cpu.timestep_features(&t).unwrap(), &p.gpu.timestep_features(&gt).unwrap());
        let (lat, glat) = p.input(&[2, 6, 8, 8]);
        let (cw, gcw) = p.weight(&[2 * 16, 6, 2, 2], 0.3);
        let (cb, gcb) = p.weight(&[2 * 16], 1.0);
        let (pos, gpos) = p.weight(&[1, 16, 16], 1.0);
        let labels = [1001, 1000];
        let want = cpu.patch_embed(&lat, &cw, &cb, 2, &labels, 1000, &pos, 2).unwrap();
        p.check("patch_embed", &want, &p.gpu.patch_embed(&glat, &gcw, &gcb, 2, &labels, 1000, &gpos, 2).unwrap());
        let (pt, gpt) = p.input(&[2, 16, 2 * 2 * 3]);
        p.check("unpatchify", &cpu.unpatchify(&pt, 2, 3, 4, 4).unwrap(), &p.gpu.unpatchify(&gpt, 2, 3, 4, 4).unwrap());

        // MoE: 4 experts, top-2, routing compared exactly; 150 tokens so an expert's rows can
        // span two 128-row tiles.
        let (xs, gxs) = p.input(&[150, 24]);
        let (gate, ggate) = p.weight(&[4, 24], 1.0);
        let (mut cw1, mut cb1, mut cw2, mut cb2) = (vec![], vec![], vec![], vec![]);
        let (mut gw1, mut gb1, mut gw2, mut gb2) = (vec![], vec![], vec![], vec![]);
        for _ in 0..4 {
            let (a, ga) = p.weight(&[40, 24], 0.3);
            let (b, gb) = p.weight(&[40], 1.0);
            let (c, gc) = p.weight(&[24, 40], 0.3);
            let (d, gd) = p.weight(&[24], 1.0);
            (cw1.push(a), cb1.push(b), cw2.push(c), cb2.push(d));
            (gw1.push(ga), gb1.push(gb), gw2.push(gc), gb2.push(gd));
        }
        let cm = cpu.prepare_moe("moe", MoeWeights { gate, fc1_w: cw1, fc1_b: cb1, fc2_w: cw2, fc2_b: cb2 }).unwrap();
        let gm = p
            .gpu
            .prepare_moe("moe", MoeWeights { gate: ggate, fc1_w: gw1, fc1_b: gb1, fc2_w: gw2, fc2_b: gb2 })
            .unwrap();
        let (want, wr) = cpu.moe(&xs, &cm, 2, true).unwrap();
        let (got, gr) = p.gpu.moe(&gxs, &gm, 2, true).unwrap();
        p.check("moe", &want, &got);
        assert_eq!(wr.unwrap().experts, gr.unwrap().experts, "{}: moe routing", p.label);
        // The same layer into the gated residual add (fused on the device): x [2, 75, 24] f32.
        let (res, _) = p.input(&[2, 75, 24]);
        let (mods6, gmods6) = p.input(&[2, 6 * 24]);
        let (mut want, mut got) = (res.clone(), p.gpu.upload(&res).unwrap());
        let wr = cpu.moe_gated_add(&mut want, &xs, &cm, 2, &mods6, 5, true).unwrap();
        let gr = p.gpu.moe_gated_add(&mut got, &gxs, &gm, 2, &gmods6, 5, true).unwrap();
        p.check("moe_gated_add", &want, &got);
        assert_eq!(wr.unwrap().experts, gr.unwrap().experts, "{}: moe_gated_add routing", p.label);

        // The scheduler step, both forms.
        let (pred, gpred) = p.input(&[2, 4, 5, 5]);
        let (sample, _) = p.input(&[2, 4, 5, 5]);
        for pt in [PredictionType::Epsilon, PredictionType::VPrediction, PredictionType::Sample] {
            let c = StepCoefficients::from_values(&[0.8, 0.6, 0.9, 0.435_89], pt);
            let gs = p.gpu.upload(&sample).unwrap();
            let want = cpu.ddim_step(&pred, &sample, &c).unwrap();
            p.check(&format!("ddim_step {pt:?}"), &want, &p.gpu.ddim_step(&gpred, &gs, &c).unwrap());
            let mut coefs = p.gpu.upload(&Tensor::zeros(&[4])).unwrap();
            p.gpu.write(&mut coefs, &Tensor::new(vec![4], c.values().to_vec()).unwrap()).unwrap();
            let mut gs = p.gpu.upload(&sample).unwrap();
            p.gpu.ddim_step_in_place(&gpred, &mut gs, &coefs, pt).unwrap();
            p.check(&format!("ddim_step_in_place {pt:?}"), &want, &gs);
        }
    }
}

#[test]
fn backend_ops_match_cpu_on_the_emulator() {
    let dev = EmuDevice::new(Arch::Sm80);
    dev.set_schedule_seed(3);
    check_every_op(dev, "cuda-emu");
}

#[test]
fn backend_ops_match_cpu_on_the_gpu() {
    match percept::backend::cuda::gpu::GpuDevice::open(0) {
        Ok(gpu) => check_every_op(gpu, "gpu"),
        Err(e) if std::env::var_os("PERCEPT_REQUIRE_GPU").is_some() => panic!("PERCEPT_REQUIRE_GPU is set: {e}"),
        Err(e) => eprintln!("skipped: no GPU here ({e})"),
    }
}
