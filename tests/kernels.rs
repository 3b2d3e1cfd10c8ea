//! The simple kernels of every Backend op (kernels/{attention,conv2d,embed,layout,moe}.cu) run by
//! the CPU emulator against the CPU backend's ops, on fresh random inputs of odd shapes, outputs
//! poisoned with NaN before each launch, under two thread orders. The _bf16 entry points get the
//! same inputs rounded to bf16 (the CPU reference sees the rounded values) and a 1e-2 tolerance.

use std::sync::Arc;

use crate::support::Rng;
use half::bf16;
use percept::backend::cpu::{elementwise, Cpu, CpuWeight};
use percept::backend::{Act, Backend, Conv2d, MoeWeights};
use percept::emu::{Arch, Arg, EmuBuffer, EmuDevice, LaunchConfig};
use percept::tensor::rel_l2;
use percept::weights::{Bytes, RawTensor};
use percept::{DType, Tensor};

const SEEDS: [u64; 2] = [7, 0xc0ffee];
const F32_TOL: f64 = 1e-5;
const BF16_TOL: f64 = 1e-2;

fn device() -> EmuDevice {
    EmuDevice::new(Arch::Sm80)
}

fn tensor(shape: &[usize], data: Vec<f32>) -> Tensor {
    Tensor::new(shape.to_vec(), data).unwrap()
}

fn weight(shape: &[usize], data: Vec<f32>) -> CpuWeight {
    let raw = RawTensor { dtype: DType::F32, shape: shape.to_vec(), bytes: Bytes::F32(Arc::new(data)) };
    Cpu.weight("test", &raw).unwrap()
}

/// NaN-filled output: an element the kernel never writes fails the check.
fn poisoned(dev: &EmuDevice, n: usize) -> EmuBuffer {
    let mut b = dev.alloc(4 * n.max(1)).unwrap();
    b.copy_from(&vec![f32::NAN; n.max(1)]).unwrap();
    b
}

fn poisoned_i32(dev: &EmuDevice, n: usize) -> EmuBuffer {
    let mut b = dev.alloc(4 * n.max(1)).unwrap();
    b.copy_from(&vec![-7i32; n.max(1)]).unwrap();
    b
}

fn p(b: &EmuBuffer) -> Arg {
    Arg::from(b)
}

fn i(v: usize) -> Arg {
    Arg::I32(v as i32)
}

fn f32s(b: &EmuBuffer, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = b.to_vec().unwrap();
    v.truncate(n);
    v
}

fn check(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite output (an element was never written)");
    let err = rel_l2(got, want);
    assert!(err < tol, "{what}: relative L2 error {err:e} >= {tol:e}");
}

/// Fewer blocks than elements / threads, so grid-stride loops must cover the rest.
fn strided(n: usize) -> LaunchConfig {
    LaunchConfig::linear(n.div_ceil(128).clamp(1, 5) as u32, 128)
}

fn cfg(grid: [usize; 3], block: [u32; 3], shared_bytes: u32) -> LaunchConfig {
    LaunchConfig { grid: grid.map(|g| g as u32), block, shared_bytes }
}

/// Storage type of a kernel's activations and weight matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dt {
    F32,
    Bf16,
}

const DTS: [Dt; 2] = [Dt::F32, Dt::Bf16];

impl Dt {
    fn kernel(self, op: &str) -> String {
        match self {
            Dt::F32 => format!("{op}_f32"),
            Dt::Bf16 => format!("{op}_bf16"),
        }
    }
    fn tol(self) -> f64 {
        match self {
            Dt::F32 => F32_TOL,
            Dt::Bf16 => BF16_TOL,
        }
    }
    /// The values the kernel will actually see.
    fn round(self, v: &[f32]) -> Vec<f32> {
        match self {
            Dt::F32 => v.to_vec(),
            Dt::Bf16 => v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect(),
        }
    }
    fn up(self, dev: &EmuDevice, v: &[f32]) -> EmuBuffer {
        match self {
            Dt::F32 => dev.htod(v).unwrap(),
            Dt::Bf16 => dev.htod(&v.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>()).unwrap(),
        }
    }
    /// NaN-filled output of n elements.
    fn out(self, dev: &EmuDevice, n: usize) -> EmuBuffer {
        match self {
            Dt::F32 => poisoned(dev, n),
            Dt::Bf16 => dev.htod(&vec![bf16::NAN; n.max(1)]).unwrap(),
        }
    }
    fn down(self, b: &EmuBuffer, n: usize) -> Vec<f32> {
        match self {
            Dt::F32 => f32s(b, n),
            Dt::Bf16 => b.to_vec::<bf16>().unwrap()[..n].iter().map(|v| v.to_f32()).collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// layout.cu

#[test]
fn kernels_nchw_tokens_transposes_match_cpu() {
    let dev = device();
    let mut rng = Rng(101);
    for (n, c, h, w) in [(1, 5, 3, 7), (3, 37, 6, 11), (2, 64, 8, 4)] {
        let data = rng.vec(n * c * h * w);
        for dt in DTS {
            let x = tensor(&[n, c, h, w], dt.round(&data));
            let want = Cpu.nchw_to_tokens(&x).unwrap();
            let back = Cpu.tokens_to_nchw(&want, h, w).unwrap();
            let (dx, dtok) = (dt.up(&dev, &x.data), dt.up(&dev, &want.data));
            let hw = h * w;
            for seed in SEEDS {
                dev.set_schedule_seed(seed);
                let y = dt.out(&dev, x.numel());
                let launch = cfg([hw.div_ceil(32), c.div_ceil(32), n], [32, 8, 1], 0);
                dev.launch(&dt.kernel("nchw_to_tokens"), &launch, &[p(&y), p(&dx), i(c), i(hw)]).unwrap();
                let what = format!("nchw_to_tokens {dt:?} {n}x{c}x{h}x{w}");
                check(&what, &dt.down(&y, x.numel()), &want.data, dt.tol());
                let y = dt.out(&dev, x.numel());
                let launch = cfg([c.div_ceil(32), hw.div_ceil(32), n], [32, 8, 1], 0);
                dev.launch(&dt.kernel("tokens_to_nchw"), &launch, &[p(&y), p(&dtok), i(hw), i(c)]).unwrap();
                let what = format!("tokens_to_nchw {dt:?} {n}x{hw}x{c}");
                check(&what, &dt.down(&y, x.numel()), &back.data, dt.tol());
            }
        }
    }
}

#[test]
fn kernels_cat_and_slice_channels_match_cpu() {
    let dev = device();
    let mut rng = Rng(102);
    for (n, chans, h, w) in [(1, vec![3, 5], 4, 7), (3, vec![4, 1, 6], 5, 3), (2, vec![8, 8, 4], 2, 9)] {
        let datas: Vec<Vec<f32>> = chans.iter().map(|&c| rng.vec(n * c * h * w)).collect();
        for dt in DTS {
            let parts: Vec<Tensor> =
                chans.iter().zip(&datas).map(|(&c, d)| tensor(&[n, c, h, w], dt.round(d))).collect();
            let refs: Vec<&Tensor> = parts.iter().collect();
            let want = Cpu.cat_channels(&refs).unwrap();
            let bufs: Vec<EmuBuffer> = parts.iter().map(|t| dt.up(&dev, &t.data)).collect();
            let ct: usize = chans.iter().sum();
            let third = if chans.len() == 3 { p(&bufs[2]) } else { Arg::Ptr(0) };
            let cc = if chans.len() == 3 { chans[2] } else { 0 };
            let dcat = dt.up(&dev, &want.data);
            for seed in SEEDS {
                dev.set_schedule_seed(seed);
                let y = dt.out(&dev, want.numel());
                let args = [p(&y), p(&bufs[0]), p(&bufs[1]), third, i(n), i(chans[0]), i(chans[1]), i(cc), i(h * w)];
                dev.launch(&dt.kernel("cat_channels"), &strided(want.numel()), &args).unwrap();
                check(&format!("cat {dt:?} {chans:?}"), &dt.down(&y, want.numel()), &want.data, dt.tol());
                for (start, len) in [(0, 1), (1, ct - 2), (ct - 3, 3)] {
                    let want_s = Cpu.slice_channels(&want, start, len).unwrap();
                    let y = dt.out(&dev, want_s.numel());
                    let args = [p(&y), p(&dcat), i(n), i(ct), i(start), i(len), i(h * w)];
                    dev.launch(&dt.kernel("slice_channels"), &strided(want_s.numel()), &args).unwrap();
                    let what = format!("slice {dt:?} {start}+{len} of {ct}");
                    check(&what, &dt.down(&y, want_s.numel()), &want_s.data, dt.tol());
                }
            }
        }
    }
}

#[test]
fn kernels_add_scale_gated_add_bias_act_match_cpu() {
    let dev = device();
    let mut rng = Rng(103);
    for (b, t, d) in [(1, 3, 5), (3, 17, 24)] {
        let n = b * t * d;
        let (a_data, c_data, mods_data) = (rng.vec(n), rng.vec(n), rng.vec(b * 6 * d));
        let bias = rng.vec(d);
        let dbias = dev.htod(&bias).unwrap();
        for dt in DTS {
            let a = tensor(&[b, t, d], dt.round(&a_data));
            let c = tensor(&[b, t, d], dt.round(&c_data));
            let mods = tensor(&[b, 6 * d], dt.round(&mods_data));
            let (da, dc, dmods) = (dt.up(&dev, &a.data), dt.up(&dev, &c.data), dt.up(&dev, &mods.data));
            let sum = Cpu.add(&a, &c).unwrap();
            let scaled = Cpu.scale(&a, -1.75).unwrap();
            let gate = 4;
            let mut gated = a.clone();
            Cpu.gated_add(&mut gated, &c, &mods, gate).unwrap();
            for seed in SEEDS {
                dev.set_schedule_seed(seed);
                let y = dt.out(&dev, n);
                dev.launch(&dt.kernel("add"), &strided(n), &[p(&y), p(&da), p(&dc), Arg::I64(n as i64)]).unwrap();
                check(&format!("add {dt:?}"), &dt.down(&y, n), &sum.data, dt.tol());
                let y = dt.out(&dev, n);
                let args = [p(&y), p(&da), Arg::F32(-1.75), Arg::I64(n as i64)];
                dev.launch(&dt.kernel("scale"), &strided(n), &args).unwrap();
                check(&format!("scale {dt:?}"), &dt.down(&y, n), &scaled.data, dt.tol());

                let x = dt.up(&dev, &a.data);
                let args = [p(&x), p(&dc), p(&dmods), i(b), i(t), i(d), i(6 * d), i(gate * d)];
                dev.launch(&dt.kernel("gated_add"), &strided(n), &args).unwrap();
                check(&format!("gated_add {dt:?}"), &dt.down(&x, n), &gated.data, dt.tol());

                for (act, code) in [(Act::None, 0), (Act::GeluTanh, 1), (Act::Silu, 2)] {
                    for with_bias in [true, false] {
                        let mut want = a.data.clone();
                        elementwise::bias_act(&mut want, with_bias.then_some(&bias[..]), d, act);
                        let y = dt.up(&dev, &a.data);
                        let bias_arg = if with_bias { p(&dbias) } else { Arg::Ptr(0) };
                        let args = [p(&y), bias_arg, i(b * t), i(d), Arg::I32(code)];
                        dev.launch(&dt.kernel("bias_act"), &strided(n), &args).unwrap();
                        let what = format!("bias_act {dt:?} {act:?} bias={with_bias}");
                        check(&what, &dt.down(&y, n), &want, dt.tol());
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// conv2d.cu

fn run_conv(
    dev: &EmuDevice,
    rng: &mut Rng,
    (n, c, h, w): (usize, usize, usize, usize),
    (o, k): (usize, usize),
    conv: Conv2d,
    with_bias: bool,
) {
    let (x_data, w_data, bdata) = (rng.vec(n * c * h * w), rng.vec(o * c * k * k), rng.vec(o));
    let db = dev.htod(&bdata).unwrap();
    for dt in DTS {
        let x = tensor(&[n, c, h, w], dt.round(&x_data));
        let wdata = dt.round(&w_data);
        let bias_w = with_bias.then(|| weight(&[o], bdata.clone()));
        let want = Cpu.conv2d(&x, &weight(&[o, c, k, k], wdata.clone()), bias_w.as_ref(), conv).unwrap();
        let (oh, ow) = (want.shape[2], want.shape[3]);
        let (dx, dw) = (dt.up(dev, &x.data), dt.up(dev, &wdata));
        for seed in SEEDS {
            dev.set_schedule_seed(seed);
            let y = dt.out(dev, want.numel());
            let args = [
                p(&y),
                p(&dx),
                p(&dw),
                if with_bias { p(&db) } else { Arg::Ptr(0) },
                i(c),
                i(h),
                i(w),
                i(o),
                i(k),
                i(k),
                i(conv.stride),
                i(conv.pad[0]),
                i(conv.pad[1]),
                i(oh),
                i(ow),
            ];
            let launch = cfg([(oh * ow).div_ceil(32), o.div_ceil(32), n], [256, 1, 1], 0);
            dev.launch(&dt.kernel("conv2d"), &launch, &args).unwrap();
            let what = format!("conv2d {dt:?} x {:?} o={o} k={k} {conv:?}", x.shape);
            check(&what, &dt.down(&y, want.numel()), &want.data, dt.tol());
        }
    }
}

#[test]
fn kernels_conv2d_matches_cpu() {
    let dev = device();
    let mut rng = Rng(104);
    run_conv(&dev, &mut rng, (1, 3, 9, 7), (5, 3), Conv2d::same3x3(), true);
    run_conv(&dev, &mut rng, (3, 37, 10, 13), (33, 3), Conv2d::down3x3(), true);
    run_conv(&dev, &mut rng, (2, 20, 6, 5), (40, 1), Conv2d::pointwise(), false);
    run_conv(&dev, &mut rng, (1, 4, 8, 12), (36, 2), Conv2d::patch(2), true);
    run_conv(&dev, &mut rng, (1, 6, 7, 5), (3, 3), Conv2d::down3x3(), false);
    // Four different pads: top and left must not be mixed up.
    let odd = Conv2d { stride: 2, pad: [2, 0, 1, 3] };
    run_conv(&dev, &mut rng, (2, 5, 6, 9), (7, 3), odd, true);
    // Several channel tiles and a long K (70 * 9 = 630, not a multiple of 16).
    run_conv(&dev, &mut rng, (1, 70, 5, 4), (65, 3), Conv2d::same3x3(), true);
}

#[test]
fn kernels_upsample_nearest2x_matches_cpu() {
    let dev = device();
    let mut rng = Rng(105);
    for (n, c, h, w) in [(1, 3, 5, 7), (3, 2, 4, 1)] {
        let data = rng.vec(n * c * h * w);
        for dt in DTS {
            let x = tensor(&[n, c, h, w], dt.round(&data));
            let want = Cpu.upsample_nearest2x(&x).unwrap();
            let dx = dt.up(&dev, &x.data);
            for seed in SEEDS {
                dev.set_schedule_seed(seed);
                let y = dt.out(&dev, want.numel());
                let args = [p(&y), p(&dx), i(n * c), i(h), i(w)];
                dev.launch(&dt.kernel("upsample_nearest2x"), &strided(want.numel()), &args).unwrap();
                check(&format!("upsample {dt:?}"), &dt.down(&y, want.numel()), &want.data, dt.tol());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// attention.cu

fn run_attention(dev: &EmuDevice, rng: &mut Rng, (b, l, heads, hd): (usize, usize, usize, usize), wide: bool) {
    let d = heads * hd;
    // Spread-out scores so the softmax is far from uniform.
    let data: Vec<f32> = rng.vec(b * l * 3 * d).iter().map(|v| v * 2.5).collect();
    let scale = 1.0 / (hd as f32).sqrt();
    for dt in DTS {
        let qkv = dt.round(&data);
        let want = Cpu.attention(&tensor(&[b, l, 3 * d], qkv.clone()), heads).unwrap();
        let dq = dt.up(dev, &qkv);
        for seed in SEEDS {
            dev.set_schedule_seed(seed);
            let y = dt.out(dev, want.numel());
            let args = [p(&y), p(&dq), i(l), i(heads), i(hd), Arg::F32(scale)];
            if wide {
                let shared = 4 * (l + hd) as u32;
                dev.launch(&dt.kernel("attention_wide"), &cfg([l, heads, b], [256, 1, 1], shared), &args).unwrap();
            } else {
                dev.launch(&dt.kernel("attention"), &cfg([l.div_ceil(16), heads, b], [128, 1, 1], 0), &args).unwrap();
            }
            let what = format!("attention {dt:?} wide={wide} b={b} l={l} h={heads} hd={hd}");
            check(&what, &dt.down(&y, want.numel()), &want.data, dt.tol());
        }
    }
}

#[test]
fn kernels_attention_flash_matches_cpu() {
    let dev = device();
    let mut rng = Rng(106);
    run_attention(&dev, &mut rng, (1, 37, 2, 72), false);
    run_attention(&dev, &mut rng, (3, 16, 1, 8), false);
    run_attention(&dev, &mut rng, (1, 45, 2, 128), false);
    run_attention(&dev, &mut rng, (2, 5, 3, 24), false);
    // Many key tiles: the running max and sum are rescaled again and again.
    run_attention(&dev, &mut rng, (1, 150, 1, 16), false);
}

#[test]
fn kernels_attention_wide_matches_cpu() {
    let dev = device();
    let mut rng = Rng(107);
    run_attention(&dev, &mut rng, (1, 21, 1, 512), true);
    run_attention(&dev, &mut rng, (3, 9, 2, 72), true);
}

// ---------------------------------------------------------------------------------------------
// embed.cu

#[test]
fn kernels_patch_embed_and_unpatchify_match_cpu() {
    let dev = device();
    let mut rng = Rng(108);
    // Labels 999 and 1003 fall outside the two convs: zeros + pos.
    for ((b, c, h, w, pch, d), labels) in [
        ((3, 4, 8, 6, 2, 40), vec![1001i64, 999, 1000]),
        ((1, 3, 6, 9, 3, 7), vec![1000]),
        ((2, 2, 4, 4, 2, 33), vec![1003, 1001]),
    ] {
        let t = (h / pch) * (w / pch);
        let k = c * pch * pch;
        let (x_data, w0_data, w1_data) = (rng.vec(b * c * h * w), rng.vec(d * k), rng.vec(d * k));
        let (b0, b1) = (rng.vec(d), rng.vec(d));
        let pos_data = rng.vec(t * d);
        let tok_data = rng.vec(b * t * k);
        let db = dev.htod(&[b0.clone(), b1.clone()].concat()).unwrap();
        let dl = dev.htod(&labels).unwrap();
        for dt in DTS {
            let x = tensor(&[b, c, h, w], dt.round(&x_data));
            let (w0, w1, pos) = (dt.round(&w0_data), dt.round(&w1_data), dt.round(&pos_data));
            let conv_w = weight(&[2 * d, c, pch, pch], [w0.clone(), w1.clone()].concat());
            let conv_b = weight(&[2 * d], [b0.clone(), b1.clone()].concat());
            let want =
                Cpu.patch_embed(&x, &conv_w, &conv_b, 2, &labels, 1000, &weight(&[1, t, d], pos.clone()), pch).unwrap();
            let (dx, dw, dp) = (dt.up(&dev, &x.data), dt.up(&dev, &[w0, w1].concat()), dt.up(&dev, &pos));
            for seed in SEEDS {
                dev.set_schedule_seed(seed);
                let y = dt.out(&dev, want.numel());
                let args = [
                    p(&y),
                    p(&dx),
                    p(&dw),
                    p(&db),
                    p(&dl),
                    Arg::I64(1000),
                    i(2),
                    p(&dp),
                    i(c),
                    i(h),
                    i(w),
                    i(d),
                    i(pch),
                ];
                dev.launch(&dt.kernel("patch_embed"), &cfg([t, b, 1], [32, 1, 1], 4 * k as u32), &args).unwrap();
                let what = format!("patch_embed {dt:?} {:?} labels {labels:?}", x.shape);
                check(&what, &dt.down(&y, want.numel()), &want.data, dt.tol());
            }

            // unpatchify: the inverse layout, with C channels per patch pixel.
            let (gh, gw) = (h / pch, w / pch);
            let tok = tensor(&[b, t, k], dt.round(&tok_data));
            let want = Cpu.unpatchify(&tok, pch, c, gh, gw).unwrap();
            let dtok = dt.up(&dev, &tok.data);
            for seed in SEEDS {
                dev.set_schedule_seed(seed);
                let y = dt.out(&dev, want.numel());
                let args = [p(&y), p(&dtok), i(b), i(c), i(pch), i(gh), i(gw)];
                dev.launch(&dt.kernel("unpatchify"), &strided(want.numel()), &args).unwrap();
                check(&format!("unpatchify {dt:?}"), &dt.down(&y, want.numel()), &want.data, dt.tol());
            }
        }
    }
}

#[test]
fn kernels_embedding_and_timestep_features_match_cpu() {
    let dev = device();
    let mut rng = Rng(109);
    let (rows, d) = (11, 37);
    let table_data = rng.vec(rows * d);
    let ids = vec![3i64, 0, 10, 3, 7];
    let di = dev.htod(&ids).unwrap();
    let ts: Vec<f32> = vec![0.0, 1.0, 999.0, 417.0, 33.5];
    let want_t = percept::model::dit::timestep_features(&ts);
    let dts = dev.htod(&ts).unwrap();
    for dt in DTS {
        let table = dt.round(&table_data);
        let want = Cpu.embedding(&weight(&[rows, d], table.clone()), &ids).unwrap();
        let dtab = dt.up(&dev, &table);
        for seed in SEEDS {
            dev.set_schedule_seed(seed);
            let y = dt.out(&dev, want.numel());
            let args = [p(&y), p(&dtab), p(&di), i(rows), i(d)];
            dev.launch(&dt.kernel("embedding"), &cfg([ids.len(), 1, 1], [32, 1, 1], 0), &args).unwrap();
            check(&format!("embedding {dt:?}"), &dt.down(&y, want.numel()), &want.data, dt.tol());

            let y = dt.out(&dev, want_t.numel());
            let args = [p(&y), p(&dts), i(ts.len()), i(128)];
            dev.launch(&dt.kernel("timestep_features"), &strided(ts.len() * 128), &args).unwrap();
            let what = format!("timestep_features {dt:?}");
            check(&what, &dt.down(&y, want_t.numel()), &want_t.data, dt.tol());
        }
    }
}

/// The timestep features of every DDIM timestep, bit for bit as the CPU computes them: the kernel
/// takes the frequencies' exponential in f64 (a GPU's expf may be 2 ulp off), which rounds to the
/// CPU's f32 expf for each of the 128 arguments, so no device or FMA contraction moves them.
#[test]
fn kernels_timestep_features_are_exact_for_every_timestep() {
    let half = 128;
    for i in 0..half {
        let x = -(10000f64.ln() as f32) * i as f32 / half as f32;
        assert_eq!((x as f64).exp() as f32, x.exp(), "frequency {i}: f32 exp vs f64 exp rounded");
    }
    let dev = device();
    let ts: Vec<f32> = (0..1000).map(|t| t as f32).chain([0.5, 37.5, 998.25]).collect();
    let want = percept::model::dit::timestep_features(&ts);
    let (y, dts) = (Dt::F32.out(&dev, want.numel()), dev.htod(&ts).unwrap());
    let args = [p(&y), p(&dts), i(ts.len()), i(half)];
    dev.launch("timestep_features_f32", &strided(ts.len() * half), &args).unwrap();
    let got = Dt::F32.down(&y, want.numel());
    let differ = got.iter().zip(&want.data).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!(differ, 0, "{differ} of {} features differ from the CPU's", got.len());
}

// ---------------------------------------------------------------------------------------------
// moe.cu

/// The stable counting sort the kernel must reproduce: entries grouped by expert, in index order.
fn counting_sort(ids: &[i32], e: usize) -> (Vec<i32>, Vec<i32>, Vec<i32>) {
    let mut offsets = vec![0i32; e + 1];
    for &x in ids {
        offsets[x as usize + 1] += 1;
    }
    for j in 0..e {
        offsets[j + 1] += offsets[j];
    }
    let mut next = offsets.clone();
    let (mut sorted, mut pos) = (vec![0i32; ids.len()], vec![0i32; ids.len()]);
    for (entry, &x) in ids.iter().enumerate() {
        let at = next[x as usize] as usize;
        next[x as usize] += 1;
        sorted[at] = entry as i32;
        pos[entry] = at as i32;
    }
    (offsets, sorted, pos)
}

/// Random MoE weights: gate [E, D] and per expert fc1 [F, D] + [F], fc2 [D, F] + [D].
struct MoeData {
    gate: Vec<f32>,
    fc1_w: Vec<Vec<f32>>,
    fc1_b: Vec<Vec<f32>>,
    fc2_w: Vec<Vec<f32>>,
    fc2_b: Vec<Vec<f32>>,
}

/// Route, sort, gather, both expert layers and combine on the device, against `Cpu::moe`.
/// `empty`: an expert whose gate logit is pushed far down so it receives no token.
fn run_moe(dev: &EmuDevice, rng: &mut Rng, (n, d, f, e, k): (usize, usize, usize, usize, usize), empty: Option<usize>) {
    let mut x_data = rng.vec(n * d);
    let mut m = MoeData {
        gate: rng.vec(e * d).iter().map(|v| v * 2.0).collect(),
        fc1_w: (0..e).map(|_| rng.vec(f * d)).collect(),
        fc1_b: (0..e).map(|_| rng.vec(f)).collect(),
        fc2_w: (0..e).map(|_| rng.vec(d * f)).collect(),
        fc2_b: (0..e).map(|_| rng.vec(d)).collect(),
    };
    if let Some(z) = empty {
        for t in 0..n {
            x_data[t * d] = 1.0;
        }
        for j in 0..e {
            m.gate[j * d] = if j == z { -100.0 } else { 0.0 };
        }
    }
    let (b1, b2) = (dev.htod(&m.fc1_b.concat()).unwrap(), dev.htod(&m.fc2_b.concat()).unwrap());
    let rows = n * k;
    for dt in DTS {
        let x = dt.round(&x_data);
        let gate = dt.round(&m.gate);
        let fc1_w: Vec<Vec<f32>> = m.fc1_w.iter().map(|v| dt.round(v)).collect();
        let fc2_w: Vec<Vec<f32>> = m.fc2_w.iter().map(|v| dt.round(v)).collect();
        let weights = MoeWeights {
            gate: weight(&[e, d], gate.clone()),
            fc1_w: fc1_w.iter().map(|v| weight(&[f, d], v.clone())).collect(),
            fc1_b: m.fc1_b.iter().map(|v| weight(&[f], v.clone())).collect(),
            fc2_w: fc2_w.iter().map(|v| weight(&[d, f], v.clone())).collect(),
            fc2_b: m.fc2_b.iter().map(|v| weight(&[d], v.clone())).collect(),
        };
        let (want, routing) = Cpu.moe(&tensor(&[n, d], x.clone()), &weights, k, true).unwrap();
        let routing = routing.unwrap();
        let want_ids: Vec<i32> = routing.experts.iter().map(|&v| v as i32).collect();
        if let Some(z) = empty {
            assert!(!want_ids.contains(&(z as i32)), "expert {z} was meant to stay empty");
        }
        let (want_off, want_sorted, want_pos) = counting_sort(&want_ids, e);

        let (dx, dgate) = (dt.up(dev, &x), dt.up(dev, &gate));
        let (w1, w2) = (dt.up(dev, &fc1_w.concat()), dt.up(dev, &fc2_w.concat()));
        let what = format!("moe {dt:?} n={n} d={d} f={f} e={e} k={k}");
        for seed in SEEDS {
            dev.set_schedule_seed(seed);
            let ids = poisoned_i32(dev, rows);
            let wts = poisoned(dev, rows);
            let args = [p(&ids), p(&wts), p(&dx), p(&dgate), i(d), i(e), i(k)];
            dev.launch(&dt.kernel("moe_route"), &cfg([n, 1, 1], [128, 1, 1], 0), &args).unwrap();
            assert_eq!(ids.to_vec::<i32>().unwrap()[..rows], want_ids[..], "{what}: expert ids");
            check(&format!("{what}: weights"), &f32s(&wts, rows), &routing.weights, F32_TOL);

            let (offsets, sorted, pos) = (poisoned_i32(dev, e + 1), poisoned_i32(dev, rows), poisoned_i32(dev, rows));
            let args = [p(&offsets), p(&sorted), p(&pos), p(&ids), i(rows), i(e)];
            dev.launch("moe_count_sort_i32", &cfg([1, 1, 1], [1024, 1, 1], 0), &args).unwrap();
            assert_eq!(offsets.to_vec::<i32>().unwrap()[..e + 1], want_off[..], "{what}: offsets");
            assert_eq!(sorted.to_vec::<i32>().unwrap()[..rows], want_sorted[..], "{what}: sorted entries");
            assert_eq!(pos.to_vec::<i32>().unwrap()[..rows], want_pos[..], "{what}: entry positions");

            let xs = dt.out(dev, rows * d);
            let args = [p(&xs), p(&dx), p(&sorted), i(k), i(d)];
            dev.launch(&dt.kernel("moe_gather"), &cfg([rows, 1, 1], [32, 1, 1], 0), &args).unwrap();
            let tile_rows = rows.div_ceil(32) + e;
            let h = dt.out(dev, rows * f);
            let args = [p(&h), p(&xs), p(&w1), p(&b1), p(&offsets), i(e), i(f), i(d), Arg::I32(1)];
            dev.launch(&dt.kernel("moe_expert_fc"), &cfg([f.div_ceil(32), tile_rows, 1], [256, 1, 1], 0), &args)
                .unwrap();
            let y = dt.out(dev, rows * d);
            let args = [p(&y), p(&h), p(&w2), p(&b2), p(&offsets), i(e), i(d), i(f), Arg::I32(0)];
            dev.launch(&dt.kernel("moe_expert_fc"), &cfg([d.div_ceil(32), tile_rows, 1], [256, 1, 1], 0), &args)
                .unwrap();
            let out = dt.out(dev, n * d);
            let args = [p(&out), p(&y), p(&wts), p(&ids), p(&pos), i(k), i(d)];
            dev.launch(&dt.kernel("moe_combine"), &cfg([n, 1, 1], [32, 1, 1], 0), &args).unwrap();
            check(&format!("{what}: output"), &dt.down(&out, n * d), &want.data, dt.tol());
        }
    }
}

#[test]
fn kernels_moe_pipeline_matches_cpu() {
    let dev = device();
    let mut rng = Rng(110);
    run_moe(&dev, &mut rng, (37, 24, 40, 8, 2), Some(5));
    run_moe(&dev, &mut rng, (5, 16, 8, 4, 1), None);
    run_moe(&dev, &mut rng, (70, 40, 33, 6, 3), Some(0));
}

#[test]
fn kernels_moe_count_sort_is_stable_with_empty_experts() {
    let dev = device();
    let mut rng = Rng(111);
    for (n, e) in [(1, 3), (97, 9), (2050, 16)] {
        // Experts 1 and e-1 never appear.
        let ids: Vec<i32> = (0..n)
            .map(|_| {
                let v = (rng.next_u64() % e as u64) as i32;
                if v == 1 || v == e as i32 - 1 {
                    0
                } else {
                    v
                }
            })
            .collect();
        let (want_off, want_sorted, want_pos) = counting_sort(&ids, e);
        let dids = dev.htod(&ids).unwrap();
        for seed in SEEDS {
            dev.set_schedule_seed(seed);
            let (offsets, sorted, pos) = (poisoned_i32(&dev, e + 1), poisoned_i32(&dev, n), poisoned_i32(&dev, n));
            // 96 threads: fewer warps than experts, so a warp sorts several.
            let args = [p(&offsets), p(&sorted), p(&pos), p(&dids), i(n), i(e)];
            dev.launch("moe_count_sort_i32", &cfg([1, 1, 1], [96, 1, 1], 0), &args).unwrap();
            assert_eq!(offsets.to_vec::<i32>().unwrap()[..e + 1], want_off[..], "offsets n={n}");
            assert_eq!(sorted.to_vec::<i32>().unwrap()[..n], want_sorted[..], "sorted n={n}");
            assert_eq!(pos.to_vec::<i32>().unwrap()[..n], want_pos[..], "positions n={n}");
        }
    }
}
