//! Bad shapes into the public `Backend` ops return `Error::Shape` naming the op, never panic: the
//! same mismatched calls on the CPU backend and on the CUDA backend over the emulator (f32, and
//! bf16 with the fast kernels, whose fused paths check their own shapes).

use std::sync::Arc;

use percept::backend::cpu::Cpu;
use percept::backend::cuda::backend::Cuda;
use percept::backend::{Act, Backend, Conv2d, MoeWeights};
use percept::emu::{Arch, EmuDevice};
use percept::weights::{Bytes, RawTensor};
use percept::{Error, Result, Tensor};

fn raw(shape: &[usize]) -> RawTensor {
    let n = shape.iter().product::<usize>();
    let data = (0..n).map(|i| (i % 7) as f32 * 0.125 - 0.375).collect();
    RawTensor { dtype: percept::DType::F32, shape: shape.to_vec(), bytes: Bytes::F32(Arc::new(data)) }
}

fn act<B: Backend>(be: &B, shape: &[usize]) -> B::T {
    let n = shape.iter().product::<usize>();
    be.upload(&Tensor::new(shape.to_vec(), (0..n).map(|i| (i % 5) as f32 * 0.25).collect()).unwrap()).unwrap()
}

fn weight<B: Backend>(be: &B, shape: &[usize]) -> B::W {
    be.weight("w", &raw(shape)).unwrap()
}

/// An MoE layer with `experts` experts of width 8 and hidden 16.
fn moe_weights<B: Backend>(be: &B, experts: usize) -> MoeWeights<B::W> {
    MoeWeights {
        gate: weight(be, &[experts.max(1), 8]),
        fc1_w: (0..experts).map(|_| weight(be, &[16, 8])).collect(),
        fc1_b: (0..experts).map(|_| weight(be, &[16])).collect(),
        fc2_w: (0..experts).map(|_| weight(be, &[8, 16])).collect(),
        fc2_b: (0..experts).map(|_| weight(be, &[8])).collect(),
    }
}

/// Each bad call: (the op's name as the error must give it, what the call returned).
fn bad_calls<B: Backend>(be: &B) -> Vec<(&'static str, Result<()>)> {
    let ok = |r: Result<B::T>| r.map(|_| ());
    let mut out: Vec<(&'static str, Result<()>)> = Vec::new();
    let w34 = weight(be, &[3, 4]);
    out.push(("linear", ok(be.linear(&act(be, &[2, 5]), &w34, None, Act::None))));
    out.push(("linear", ok(be.linear(&act(be, &[2, 4]), &w34, Some(&weight(be, &[2])), Act::None))));
    out.push(("linear", ok(be.linear(&act(be, &[]), &weight(be, &[3, 1]), None, Act::None))));
    let x = act(be, &[1, 3, 6, 6]);
    out.push(("conv2d", ok(be.conv2d(&x, &weight(be, &[4, 2, 3, 3]), None, Conv2d::same3x3()))));
    let w4333 = weight(be, &[4, 3, 3, 3]);
    out.push(("conv2d", ok(be.conv2d(&x, &w4333, Some(&weight(be, &[3])), Conv2d::same3x3()))));
    out.push(("conv2d", ok(be.upsample_conv2d(&x, &w4333, Some(&weight(be, &[5])), Conv2d::same3x3()))));
    let (g4, b4) = (weight(be, &[4]), weight(be, &[4]));
    out.push(("group_norm", ok(be.group_norm(&act(be, &[8]), &g4, &b4, 2, 1e-5, false))));
    out.push(("group_norm", ok(be.group_norm(&act(be, &[1, 4, 3]), &g4, &b4, 3, 1e-5, false))));
    let h = act(be, &[2, 3, 8]);
    out.push(("layer_norm", ok(be.modulated_layer_norm(&h, &act(be, &[]), 0, 1, 1e-6))));
    out.push(("layer_norm", ok(be.modulated_layer_norm(&h, &act(be, &[2, 8]), 0, 1, 1e-6))));
    let mut x3 = act(be, &[2, 3, 8]);
    out.push(("gated_add", be.gated_add(&mut x3, &act(be, &[2, 3, 8]), &act(be, &[2, 16]), 2)));
    out.push(("gated_add", be.gated_add(&mut x3, &act(be, &[2, 3, 8]), &act(be, &[1, 48]), 2)));
    out.push(("gated_add", be.gated_add(&mut x3, &act(be, &[2, 3, 4]), &act(be, &[2, 48]), 2)));
    // The fused attention residual (fast bf16) or its unfused fallback: the error names
    // `linear_gated_add` or `gated_add`.
    let wsq = weight(be, &[8, 8]);
    out.push(("gated_add", be.linear_gated_add(&mut x3, &act(be, &[2, 3, 8]), &wsq, None, &act(be, &[]), 2)));
    out.push(("gated_add", be.linear_gated_add(&mut x3, &act(be, &[2, 3, 8]), &wsq, None, &act(be, &[2, 16]), 2)));
    out.push(("attention", ok(be.attention(&act(be, &[1, 4, 24]), 0))));
    out.push(("attention", ok(be.attention(&act(be, &[4, 24]), 2))));
    out.push(("embedding", ok(be.embedding(&weight(be, &[6]), &[1, 2]))));
    let (pw, pb, pos) = (weight(be, &[2 * 8, 2, 2, 2]), weight(be, &[16]), weight(be, &[1, 4, 8]));
    let img = act(be, &[1, 3, 4, 4]);
    out.push(("patch_embed", ok(be.patch_embed(&img, &pw, &pb, 2, &[1000], 1000, &pos, 2))));
    out.push(("patch_embed", ok(be.patch_embed(&img, &weight(be, &[16, 3, 2, 2]), &pb, 2, &[1000], 1000, &pos, 0))));
    out.push(("patch_embed", ok(be.patch_embed(&img, &weight(be, &[16]), &pb, 2, &[1000], 1000, &pos, 2))));
    out.push(("unpatchify", ok(be.unpatchify(&act(be, &[1, 4, 12]), 2, 3, 2, 3))));
    let rows = act(be, &[6, 8]);
    let moe = |w: MoeWeights<B::W>, x: &B::T, k: usize| -> Result<()> {
        let m = be.prepare_moe("blocks.0.moe", w)?;
        be.moe(x, &m, k, false).map(|_| ())
    };
    out.push(("moe", moe(moe_weights(be, 0), &rows, 1)));
    out.push(("moe", moe(moe_weights(be, 2), &rows, 3)));
    out.push(("moe", moe(moe_weights(be, 2), &act(be, &[6, 5]), 1)));
    let mut bad_fc = moe_weights(be, 2);
    bad_fc.fc2_w[1] = weight(be, &[8, 12]);
    out.push(("moe", moe(bad_fc, &rows, 1)));
    out.push(("nchw_to_tokens", ok(be.nchw_to_tokens(&act(be, &[3, 4])))));
    out.push(("tokens_to_nchw", ok(be.tokens_to_nchw(&act(be, &[1, 6, 2]), 2, 2))));
    let (a, b) = (act(be, &[1, 2, 3, 3]), act(be, &[1, 2, 2, 3]));
    out.push(("cat_channels", ok(be.cat_channels(&[&a, &b]))));
    out.push(("cat_channels", ok(be.cat_channels(&[&a, &act(be, &[4])]))));
    out.push(("slice_channels", ok(be.slice_channels(&act(be, &[5]), 0, 1))));
    out.push(("slice_channels", ok(be.slice_channels(&a, 1, 2))));
    out.push(("add", ok(be.add(&act(be, &[2, 3]), &act(be, &[3, 2])))));
    out.push(("upsample", ok(be.upsample_nearest2x(&act(be, &[2, 3])))));
    out.push(("weight_cat", be.weight_cat("w", &[&raw(&[2, 3]), &raw(&[])]).map(|_| ())));
    out
}

/// Every bad call gave `Error::Shape` with the op's name in its message; all failures listed.
fn assert_shape_errors<B: Backend>(be: &B) {
    let mut wrong = Vec::new();
    for (i, (op, r)) in bad_calls(be).into_iter().enumerate() {
        match r {
            Err(Error::Shape(msg)) if msg.contains(op) => {}
            Err(Error::Shape(msg)) => wrong.push(format!("case {i} ({op}): message does not name the op: {msg}")),
            Err(e) => wrong.push(format!("case {i} ({op}): not a shape error: {e:?}")),
            Ok(()) => wrong.push(format!("case {i} ({op}): accepted")),
        }
    }
    assert!(wrong.is_empty(), "{}:\n{}", be.name(), wrong.join("\n"));
}

#[test]
fn cpu_bad_shapes_are_shape_errors() {
    assert_shape_errors(&Cpu::new());
}

#[test]
fn cuda_emu_f32_bad_shapes_are_shape_errors() {
    assert_shape_errors(&Cuda::new(EmuDevice::new(Arch::Sm89)));
}

#[test]
fn cuda_emu_bf16_fast_bad_shapes_are_shape_errors() {
    assert_shape_errors(&Cuda::bf16(EmuDevice::new(Arch::Sm89)).with_fast_kernels(true));
}
