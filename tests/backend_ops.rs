//! Every op of the CUDA backend against the CPU backend, through the `Device` interface, so the
//! same checks run on the emulator (always) and on a real GPU (when there is one): fresh random
//! inputs of odd shapes, every new activation buffer filled with NaN first (an element a kernel
//! forgets to write fails the check), relative L2 error under 1e-5 at f32 and 1e-2 at bf16.
//! Inputs and weights are bf16-representable so both backends see the same values and the MoE
//! routes the same way at either precision.
//!
//! The checks come in named sections (`OPS`) run for each variant (`VARIANTS`: precision, simple or
//! fast kernels). A mismatch or an error is recorded with its op, shape, variant and error, and the
//! run goes on: the test fails once at the end listing every one. After a device fault that
//! poisons the CUDA context, the sections not yet checked are listed (`gpu-ops: not checked after
//! a device fault: VARIANT OPS`) so scripts/gpu-check can rerun them in a fresh process. The GPU
//! tests live in `tests/gpu.rs` (selected by the `gpu::` filter); the emulator runs the same checks
//! here.

use std::cell::RefCell;
use std::sync::Arc;

use crate::support::Rng;
use percept::backend::cpu::{Cpu, CpuWeight};
use percept::backend::cuda::backend::{Cuda, GpuTensor};
use percept::backend::cuda::device::Device;
use percept::backend::{Act, Backend, Conv2d, MoeWeights};
use percept::emu::{Arch, EmuDevice};
use percept::scheduler::PredictionType;
use percept::tensor::rel_l2;
use percept::weights::{Bytes, RawTensor};
use percept::Result;
use percept::{DType, Tensor};

/// One precision and kernel choice the ops are checked at.
pub struct Variant {
    pub name: &'static str,
    pub precision: DType,
    pub tol: f64,
    pub fast: bool,
}

/// The simple kernels at both precisions, then bf16 with the fast variants.
pub const VARIANTS: [Variant; 3] = [
    Variant { name: "f32", precision: DType::F32, tol: 1e-5, fast: false },
    Variant { name: "bf16", precision: DType::BF16, tol: 1e-2, fast: false },
    Variant { name: "bf16-fast", precision: DType::BF16, tol: 1e-2, fast: true },
];

/// The check sections, in order.
pub const OPS: [&str; 20] = [
    "linear",
    "linear_k72",
    "act",
    "add_scale",
    "conv2d",
    "conv2d_c8",
    "upsample_conv2d",
    "upsample",
    "group_norm",
    "layout",
    "modulated_layer_norm",
    "gated_add",
    "attention",
    "embedding",
    "timestep_features",
    "patch_embed",
    "unpatchify",
    "moe",
    "moe_gated_add",
    "ddim_step",
];

/// What a run of the checks found.
#[derive(Default)]
pub struct Outcome {
    /// One line per mismatch or error: variant, op, output shape, error.
    pub mismatches: Vec<String>,
    /// Sections left unchecked after a device fault, per variant.
    pub not_checked: Vec<(String, Vec<String>)>,
    /// Sections run to the end without an error.
    pub sections_run: usize,
}

impl Outcome {
    /// Prints the rerun line for each variant with sections left, then fails listing everything
    /// (or returns when all passed).
    pub fn assert_all_pass(&self) {
        for (variant, ops) in &self.not_checked {
            println!("gpu-ops: not checked after a device fault: {variant} {}", ops.join(","));
        }
        let mut problems = self.mismatches.clone();
        for (variant, ops) in &self.not_checked {
            problems.push(format!("{variant}: not checked after a device fault: {}", ops.join(", ")));
        }
        assert!(
            problems.is_empty(),
            "{} problem(s) in {} section run(s):\n{}",
            problems.len(),
            self.sections_run,
            problems.join("\n")
        );
        assert!(self.sections_run > 0, "no section was run");
    }
}

/// Variants and sections chosen by `PERCEPT_GPU_VARIANTS` and `PERCEPT_GPU_OPS` (comma lists;
/// default all): how scripts/gpu-check runs each variant in its own process and reruns what a
/// device fault left unchecked.
pub fn selection_from_env() -> (Vec<&'static Variant>, Vec<&'static str>) {
    let list = |var: &str| -> Option<Vec<String>> {
        let v = std::env::var(var).ok().filter(|v| !v.trim().is_empty())?;
        Some(v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
    };
    let variants = match list("PERCEPT_GPU_VARIANTS") {
        None => VARIANTS.iter().collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                VARIANTS
                    .iter()
                    .find(|v| v.name == n)
                    .unwrap_or_else(|| panic!("PERCEPT_GPU_VARIANTS: unknown variant {n:?} (f32, bf16, bf16-fast)"))
            })
            .collect(),
    };
    let ops = match list("PERCEPT_GPU_OPS") {
        None => OPS.to_vec(),
        Some(names) => names
            .iter()
            .map(|n| {
                *OPS.iter()
                    .find(|o| *o == n)
                    .unwrap_or_else(|| panic!("PERCEPT_GPU_OPS: unknown op {n:?}; ops: {OPS:?}"))
            })
            .collect(),
    };
    (variants, ops)
}

struct Pair<D: Device> {
    gpu: Cuda<D>,
    tol: f64,
    rng: Rng,
    label: String,
    mismatches: RefCell<Vec<String>>,
}

fn bf16_values(v: Vec<f32>) -> Vec<f32> {
    v.into_iter().map(|x| half::bf16::from_f32(x).to_f32()).collect()
}

impl<D: Device> Pair<D> {
    fn data(&mut self, n: usize) -> Vec<f32> {
        bf16_values(self.rng.vec(n))
    }
    fn input(&mut self, shape: &[usize]) -> Result<(Tensor, GpuTensor<D>)> {
        let t = Tensor::new(shape.to_vec(), self.data(shape.iter().product())).unwrap();
        let g = self.gpu.upload(&t)?;
        Ok((t, g))
    }
    fn weight(&mut self, shape: &[usize], scale: f32) -> Result<(CpuWeight, GpuTensor<D>)> {
        let data = bf16_values(self.rng.vec(shape.iter().product()).into_iter().map(|v| v * scale).collect());
        let raw = RawTensor { dtype: DType::F32, shape: shape.to_vec(), bytes: Bytes::F32(Arc::new(data)) };
        Ok((Cpu.weight("w", &raw).unwrap(), self.gpu.weight("w", &raw)?))
    }
    fn mismatch(&self, what: &str, shape: &[usize], error: String) {
        self.mismatches.borrow_mut().push(format!("{}: {what} {shape:?}: {error}", self.label));
    }
    /// Compares a device result with the CPU's; a mismatch is recorded, not raised.
    fn check(&self, what: &str, want: &Tensor, got: &GpuTensor<D>) -> Result<()> {
        let got = self.gpu.download(got)?;
        if got.shape != want.shape {
            self.mismatch(what, &want.shape, format!("output shape {:?}", got.shape));
        } else if !got.data.iter().all(|v| v.is_finite()) {
            self.mismatch(what, &want.shape, "non-finite output (unwritten element?)".into());
        } else {
            let err = rel_l2(&got.data, &want.data);
            if !(err < self.tol) {
                self.mismatch(what, &want.shape, format!("relative L2 error {err:e} >= {:e}", self.tol));
            }
        }
        Ok(())
    }
    fn check_eq<T: PartialEq + std::fmt::Debug>(&self, what: &str, want: &T, got: &T) {
        if want != got {
            self.mismatch(what, &[], format!("{got:?} != {want:?}"));
        }
    }
}

/// Runs the chosen sections for each chosen variant on `dev`, named `name` in the report.
pub fn check_ops<D: Device>(dev: D, name: &str, variants: &[&Variant], ops: &[&str]) -> Outcome {
    let mut outcome = Outcome::default();
    let mut fault = false;
    for v in variants {
        if fault {
            outcome.not_checked.push((v.name.to_string(), ops.iter().map(|s| s.to_string()).collect()));
            continue;
        }
        let gpu = if v.precision == DType::BF16 { Cuda::bf16(dev.clone()) } else { Cuda::new(dev.clone()) };
        let gpu = gpu.with_fast_kernels(v.fast);
        gpu.poison_new_buffers(true);
        let label = format!("{name} {}", v.name);
        let seed = 0x0b5 + v.tol.to_bits() + v.fast as u64;
        let mut p = Pair { gpu, tol: v.tol, rng: Rng(seed), label, mismatches: RefCell::default() };
        for (i, op) in ops.iter().enumerate() {
            let before = p.mismatches.borrow().len();
            match run_section(&mut p, op) {
                Ok(()) => outcome.sections_run += 1,
                Err(e) => {
                    p.mismatch(op, &[], format!("error: {e}"));
                    if percept::backend::cuda::gpu::is_sticky_fault(&e) {
                        fault = true;
                        let rest: Vec<String> = ops[i + 1..].iter().map(|s| s.to_string()).collect();
                        if !rest.is_empty() {
                            outcome.not_checked.push((v.name.to_string(), rest));
                        }
                    }
                }
            }
            let failed = p.mismatches.borrow().len() - before;
            println!(
                "gpu-ops: {} {op}: {}",
                v.name,
                if failed == 0 { "ok".to_string() } else { format!("{failed} FAILED") }
            );
            if fault {
                break;
            }
        }
        outcome.mismatches.extend(p.mismatches.into_inner());
    }
    outcome
}

fn run_section<D: Device>(p: &mut Pair<D>, op: &str) -> Result<()> {
    let cpu = Cpu;
    match op {
        "linear" => {
            let (x, gx) = p.input(&[2, 37, 45])?;
            let (w, gw) = p.weight(&[53, 45], 0.2)?;
            let (b, gb) = p.weight(&[53], 1.0)?;
            for act in [Act::None, Act::GeluTanh, Act::Silu] {
                let want = cpu.linear(&x, &w, Some(&b), act).unwrap();
                p.check(&format!("linear {act:?}"), &want, &p.gpu.linear(&gx, &gw, Some(&gb), act)?)?;
            }
            let want = cpu.linear(&x, &w, None, Act::None).unwrap();
            p.check("linear, no bias", &want, &p.gpu.linear(&gx, &gw, None, Act::None)?)?;
        }
        "linear_k72" => {
            // K a multiple of 8 (the fast tiles' condition) but not of their 32-deep slices; M and
            // N across several 128-wide tiles with ragged edges.
            let (x8, gx8) = p.input(&[2, 150, 72])?;
            let (w8, gw8) = p.weight(&[136, 72], 0.2)?;
            let (b8, gb8) = p.weight(&[136], 1.0)?;
            for act in [Act::None, Act::GeluTanh] {
                let want = cpu.linear(&x8, &w8, Some(&b8), act).unwrap();
                p.check(&format!("linear K=72 {act:?}"), &want, &p.gpu.linear(&gx8, &gw8, Some(&gb8), act)?)?;
            }
        }
        "act" => {
            let (x, gx) = p.input(&[2, 37, 45])?;
            for act in [Act::GeluTanh, Act::Silu] {
                p.check(&format!("act {act:?}"), &cpu.act(&x, act).unwrap(), &p.gpu.act(&gx, act)?)?;
            }
        }
        "add_scale" => {
            let (x, gx) = p.input(&[2, 37, 45])?;
            let (y, gy) = p.input(&[2, 37, 45])?;
            p.check("add", &cpu.add(&x, &y).unwrap(), &p.gpu.add(&gx, &gy)?)?;
            p.check("scale", &cpu.scale(&x, -0.7).unwrap(), &p.gpu.scale(&gx, -0.7)?)?;
        }
        "conv2d" => {
            let (img, gimg) = p.input(&[2, 5, 9, 11])?;
            for (kernel, conv) in [(3, Conv2d::same3x3()), (3, Conv2d::down3x3()), (1, Conv2d::pointwise())] {
                let (w, gw) = p.weight(&[7, 5, kernel, kernel], 0.3)?;
                let (b, gb) = p.weight(&[7], 1.0)?;
                let want = cpu.conv2d(&img, &w, Some(&b), conv).unwrap();
                let got = p.gpu.conv2d(&gimg, &gw, Some(&gb), conv)?;
                p.check(&format!("conv2d {kernel}x{kernel} {conv:?}"), &want, &got)?;
            }
        }
        "conv2d_c8" => {
            // K = C*9 a multiple of 8 (the tensor-core conv's condition) and ragged 128-tiles:
            // 136 output channels, 13x11 = 143 output pixels.
            let (img8, gimg8) = p.input(&[2, 8, 13, 11])?;
            for conv in [Conv2d::same3x3(), Conv2d::down3x3()] {
                let (w, gw) = p.weight(&[136, 8, 3, 3], 0.2)?;
                let (b, gb) = p.weight(&[136], 1.0)?;
                let want = cpu.conv2d(&img8, &w, Some(&b), conv).unwrap();
                p.check(&format!("conv2d C=8 {conv:?}"), &want, &p.gpu.conv2d(&gimg8, &gw, Some(&gb), conv)?)?;
            }
        }
        "upsample_conv2d" => {
            // The decoder's upsampler: 2x nearest then 3x3, fused on the device (C=8: the
            // tensor-core kernel's K).
            for (cin, shape) in [(5, [2, 5, 9, 11]), (8, [2, 8, 13, 11])] {
                let (img, gimg) = p.input(&shape)?;
                let (w, gw) = p.weight(&[136, cin, 3, 3], 0.2)?;
                let (b, gb) = p.weight(&[136], 1.0)?;
                let want = cpu.upsample_conv2d(&img, &w, Some(&b), Conv2d::same3x3()).unwrap();
                let got = p.gpu.upsample_conv2d(&gimg, &gw, Some(&gb), Conv2d::same3x3())?;
                p.check(&format!("upsample_conv2d C={cin}"), &want, &got)?;
            }
        }
        "upsample" => {
            let (img, gimg) = p.input(&[2, 5, 9, 11])?;
            p.check("upsample", &cpu.upsample_nearest2x(&img).unwrap(), &p.gpu.upsample_nearest2x(&gimg)?)?;
        }
        "group_norm" => {
            let (gn, ggn) = p.input(&[2, 12, 5, 7])?;
            let (gamma, ggamma) = p.weight(&[12], 1.0)?;
            let (beta, gbeta) = p.weight(&[12], 1.0)?;
            for silu in [false, true] {
                let want = cpu.group_norm(&gn, &gamma, &beta, 4, 1e-6, silu).unwrap();
                let got = p.gpu.group_norm(&ggn, &ggamma, &gbeta, 4, 1e-6, silu)?;
                p.check(&format!("group_norm silu={silu}"), &want, &got)?;
            }
        }
        "layout" => {
            let (gn, ggn) = p.input(&[2, 12, 5, 7])?;
            p.check("nchw_to_tokens", &cpu.nchw_to_tokens(&gn).unwrap(), &p.gpu.nchw_to_tokens(&ggn)?)?;
            let (tok, gtok) = p.input(&[2, 35, 6])?;
            p.check("tokens_to_nchw", &cpu.tokens_to_nchw(&tok, 5, 7).unwrap(), &p.gpu.tokens_to_nchw(&gtok, 5, 7)?)?;
            let (c1, g1) = p.input(&[2, 3, 5, 7])?;
            let (c2, g2) = p.input(&[2, 1, 5, 7])?;
            let want = cpu.cat_channels(&[&c1, &c2, &gn, &c1]).unwrap();
            p.check("cat_channels x4", &want, &p.gpu.cat_channels(&[&g1, &g2, &ggn, &g1])?)?;
            p.check("slice_channels", &cpu.slice_channels(&gn, 3, 5).unwrap(), &p.gpu.slice_channels(&ggn, 3, 5)?)?;
        }
        "modulated_layer_norm" => {
            // The DiT block's pieces; the residual stream is f32 at either precision.
            let (h, gh) = p.input(&[2, 19, 40])?;
            let (mods, gmods) = p.input(&[2, 6 * 40])?;
            let want = cpu.modulated_layer_norm(&h, &mods, 3, 4, 1e-6).unwrap();
            p.check("modulated_layer_norm", &want, &p.gpu.modulated_layer_norm(&gh, &gmods, 3, 4, 1e-6)?)?;
        }
        "gated_add" => {
            let (h, mut gh) = p.input(&[2, 19, 40])?;
            let (mods, gmods) = p.input(&[2, 6 * 40])?;
            let (r, gr) = p.input(&[2, 19, 40])?;
            let mut hc = h.clone();
            cpu.gated_add(&mut hc, &r, &mods, 2).unwrap();
            p.gpu.gated_add(&mut gh, &gr, &gmods, 2)?;
            p.check("gated_add", &hc, &gh)?;
        }
        "attention" => {
            for (heads, hd, l) in [(2, 24, 33), (3, 12, 33), (2, 72, 150), (1, 128, 70)] {
                // hd 24, 72 (the DiT's, padded to 80 for the tensor cores), 128: the flash
                // kernels; hd 12 (not a multiple of 8): the wide one. Ragged last tiles; 150 and
                // 70 tokens take the online softmax across key tiles.
                let (qkv, gqkv) = p.input(&[2, l, 3 * heads * hd])?;
                let want = cpu.attention(&qkv, heads).unwrap();
                p.check(&format!("attention {heads}x{hd}, {l} tokens"), &want, &p.gpu.attention(&gqkv, heads)?)?;
            }
        }
        "embedding" => {
            let (table, gtable) = p.weight(&[10, 16], 1.0)?;
            let ids = [3, 0, 9, 3];
            p.check("embedding", &cpu.embedding(&table, &ids).unwrap(), &p.gpu.embedding(&gtable, &ids)?)?;
        }
        "timestep_features" => {
            let t = Tensor::new(vec![4], vec![1.0, 501.0, 999.0, 37.5]).unwrap();
            let gt = p.gpu.upload(&t)?;
            p.check("timestep_features", &cpu.timestep_features(&t).unwrap(), &p.gpu.timestep_features(&gt)?)?;
        }
        "patch_embed" => {
            let (lat, glat) = p.input(&[2, 6, 8, 8])?;
            let (cw, gcw) = p.weight(&[2 * 16, 6, 2, 2], 0.3)?;
            let (cb, gcb) = p.weight(&[2 * 16], 1.0)?;
            let (pos, gpos) = p.weight(&[1, 16, 16], 1.0)?;
            let labels = [1001, 1000];
            let want = cpu.patch_embed(&lat, &cw, &cb, 2, &labels, 1000, &pos, 2).unwrap();
            p.check("patch_embed", &want, &p.gpu.patch_embed(&glat, &gcw, &gcb, 2, &labels, 1000, &gpos, 2)?)?;
        }
        "unpatchify" => {
            let (pt, gpt) = p.input(&[2, 16, 2 * 2 * 3])?;
            p.check("unpatchify", &cpu.unpatchify(&pt, 2, 3, 4, 4).unwrap(), &p.gpu.unpatchify(&gpt, 2, 3, 4, 4)?)?;
        }
        "moe" | "moe_gated_add" => {
            // MoE: 4 experts, top-2, routing compared exactly; 150 tokens so an expert's rows can
            // span two 128-row tiles.
            let (xs, gxs) = p.input(&[150, 24])?;
            let (gate, ggate) = p.weight(&[4, 24], 1.0)?;
            let (mut cw1, mut cb1, mut cw2, mut cb2) = (vec![], vec![], vec![], vec![]);
            let (mut gw1, mut gb1, mut gw2, mut gb2) = (vec![], vec![], vec![], vec![]);
            for _ in 0..4 {
                let (a, ga) = p.weight(&[40, 24], 0.3)?;
                let (b, gb) = p.weight(&[40], 1.0)?;
                let (c, gc) = p.weight(&[24, 40], 0.3)?;
                let (d, gd) = p.weight(&[24], 1.0)?;
                (cw1.push(a), cb1.push(b), cw2.push(c), cb2.push(d));
                (gw1.push(ga), gb1.push(gb), gw2.push(gc), gb2.push(gd));
            }
            let cm =
                cpu.prepare_moe("moe", MoeWeights { gate, fc1_w: cw1, fc1_b: cb1, fc2_w: cw2, fc2_b: cb2 }).unwrap();
            let gm =
                p.gpu.prepare_moe("moe", MoeWeights { gate: ggate, fc1_w: gw1, fc1_b: gb1, fc2_w: gw2, fc2_b: gb2 })?;
            if op == "moe" {
                let (want, wr) = cpu.moe(&xs, &cm, 2, true).unwrap();
                let (got, gr) = p.gpu.moe(&gxs, &gm, 2, true)?;
                p.check("moe", &want, &got)?;
                p.check_eq("moe routing", &wr.unwrap().experts, &gr.unwrap().experts);
            } else {
                // The same layer into the gated residual add (fused on the device): x [2, 75, 24] f32.
                let (res, _) = p.input(&[2, 75, 24])?;
                let (mods6, gmods6) = p.input(&[2, 6 * 24])?;
                let (mut want, mut got) = (res.clone(), p.gpu.upload(&res)?);
                let wr = cpu.moe_gated_add(&mut want, &xs, &cm, 2, &mods6, 5, true).unwrap();
                let gr = p.gpu.moe_gated_add(&mut got, &gxs, &gm, 2, &gmods6, 5, true)?;
                p.check("moe_gated_add", &want, &got)?;
                p.check_eq("moe_gated_add routing", &wr.unwrap().experts, &gr.unwrap().experts);
            }
        }
        "ddim_step" => {
            // The scheduler step in place, each prediction type, without and with clipping (the
            // inputs in [-1, 1] give x0 beyond 0.25 for every type).
            let (pred, gpred) = p.input(&[2, 4, 5, 5])?;
            let (sample, _) = p.input(&[2, 4, 5, 5])?;
            for pt in [PredictionType::Epsilon, PredictionType::VPrediction, PredictionType::Sample] {
                let mut unclipped = None;
                for clip in [0.0, 0.25] {
                    let values = [0.8, 0.6, 0.9, 0.435_89, clip];
                    let coefs = Tensor::new(vec![values.len()], values.to_vec()).unwrap();
                    let mut want = sample.clone();
                    cpu.ddim_step(&pred, &mut want, &coefs, pt).unwrap();
                    assert_ne!(unclipped.as_ref(), Some(&want.data), "clipping changed nothing ({pt:?})");
                    unclipped = Some(want.data.clone());
                    let mut gcoefs = p.gpu.upload(&Tensor::zeros(&[values.len()]))?;
                    p.gpu.write(&mut gcoefs, &coefs)?;
                    let mut gs = p.gpu.upload(&sample)?;
                    p.gpu.ddim_step(&gpred, &mut gs, &gcoefs, pt)?;
                    p.check(&format!("ddim_step {pt:?} clip {clip}"), &want, &gs)?;
                }
            }
        }
        other => panic!("no check section {other:?}"),
    }
    Ok(())
}

#[test]
fn backend_ops_match_cpu_on_the_emulator() {
    let dev = EmuDevice::new(Arch::Sm80);
    dev.set_schedule_seed(3);
    check_ops(dev, "cuda-emu", &VARIANTS.iter().collect::<Vec<_>>(), &OPS).assert_all_pass();
}

/// One failing check hides nothing: with a tolerance nothing meets, every check of the chosen
/// sections is reported (op, shape, variant, error), not just the first.
#[test]
fn backend_ops_report_every_mismatch_not_the_first() {
    let dev = EmuDevice::new(Arch::Sm80);
    let strict = Variant { name: "f32-zero-tol", precision: DType::F32, tol: 0.0, fast: false };
    let outcome = check_ops(dev, "cuda-emu", &[&strict], &["add_scale", "layout", "embedding"]);
    assert_eq!(outcome.sections_run, 3);
    assert!(outcome.not_checked.is_empty());
    let names = ["add", "scale", "nchw_to_tokens", "tokens_to_nchw", "cat_channels x4", "slice_channels", "embedding"];
    assert_eq!(outcome.mismatches.len(), names.len(), "{:#?}", outcome.mismatches);
    for (line, name) in outcome.mismatches.iter().zip(names) {
        assert!(line.starts_with(&format!("cuda-emu f32-zero-tol: {name} [")), "{line}");
        assert!(line.contains(">= 0e0"), "{line}");
    }
    let panic = std::panic::catch_unwind(|| outcome.assert_all_pass()).unwrap_err();
    let msg = panic.downcast_ref::<String>().unwrap();
    assert!(msg.starts_with("7 problem(s) in 3 section run(s)"), "{msg}");
}

/// Sizes past a kernel's index width are refused on the host with the op named, before anything
/// is allocated; element-wise ops take 64-bit counts, so a tensor of more than 2^31 elements gets
/// as far as its allocation (refused here by a small emulated device as out of memory).
#[test]
fn sizes_past_the_kernels_index_width_are_refused_before_allocating() {
    use percept::backend::cuda::pool::Block;
    let dev = EmuDevice::with_memory(Arch::Sm80, 64 << 20);
    let gpu = Cuda::new(dev.clone());
    // Tensors whose shapes claim more than they hold: nothing may read them.
    let fake = |shape: Vec<usize>| GpuTensor {
        buf: Arc::new(Block::owned(Device::alloc(&dev, 64).unwrap())),
        shape,
        dtype: DType::F32,
    };
    let rows = (1usize << 31) + 5; // 2^31 + 5 rows of 8: past i32 rows, 2^34 elements
    let (x, w, table) = (fake(vec![rows, 8]), fake(vec![16, 8]), fake(vec![1usize << 32, 4]));
    let before = Device::allocation_count(&dev);
    let e = gpu.linear(&x, &w, None, Act::None).err().expect("a linear of 2^31 rows was accepted").to_string();
    assert!(e.contains("linear") && e.contains(&rows.to_string()) && e.contains("i32"), "{e}");
    let e = gpu.embedding(&table, &[0]).err().expect("a 2^32-row table").to_string();
    assert!(e.contains("embedding") && e.contains("i32"), "{e}");
    assert_eq!(Device::allocation_count(&dev), before, "a refused op allocated device memory");
    // 3 x 2^30 elements: a valid 64-bit count; only the output's 12 GiB are refused.
    let big = fake(vec![3, 1 << 30]);
    let e = gpu.scale(&big, 2.0).err().expect("12 GiB fit in 64 MiB").to_string();
    assert!(e.contains("out of device memory"), "{e}");
    assert!(percept::backend::cuda::launch::checked::<i64>("scale", "element count", 3 << 30).is_ok());
}

/// Faults that poison the CUDA context (the rest of the op test must rerun in a fresh process) are
/// told from errors that leave it usable.
#[test]
fn sticky_device_faults_are_told_from_other_errors() {
    use percept::backend::cuda::gpu::is_sticky_fault;
    use percept::error::Error;
    let driver = |code: &str| Error::Cuda(format!("launch gemm_f32 (grid [1, 1, 1]): DriverError({code}, \"...\")"));
    for code in ["CUDA_ERROR_ILLEGAL_ADDRESS", "CUDA_ERROR_LAUNCH_FAILED", "CUDA_ERROR_MISALIGNED_ADDRESS"] {
        assert!(is_sticky_fault(&driver(code)), "{code}");
    }
    for code in ["CUDA_ERROR_OUT_OF_MEMORY", "CUDA_ERROR_INVALID_VALUE", "CUDA_ERROR_NOT_FOUND"] {
        assert!(!is_sticky_fault(&driver(code)), "{code}");
    }
    assert!(!is_sticky_fault(&Error::Shape("linear: size = 3000000000 does not fit".into())));
}
