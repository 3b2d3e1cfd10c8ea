//! Every kernel of `kernels/` executed by the CPU emulator against plain reference loops, on fresh
//! random inputs of odd shapes, outputs poisoned before each launch, under several thread orders;
//! the launch limits; the warp primitives against the PTX ISA layouts; and planted bugs that the
//! emulator must catch.

use crate::support::{rel_l2, Rng};
use half::bf16;
use percept::emu::{Arch, Arg, EmuBuffer, EmuDevice, LaunchConfig};

/// Thread orders every kernel test runs under.
const SEEDS: [u64; 3] = [1, 0x5eed, 0xdead_beef];
const F32_TOL: f64 = 1e-5;
const BF16_TOL: f64 = 1e-2;

fn device() -> EmuDevice {
    EmuDevice::new(Arch::Sm80)
}

fn out_f32(dev: &EmuDevice, n: usize) -> EmuBuffer {
    let mut b = dev.alloc(4 * n).unwrap();
    b.copy_from(&vec![f32::NAN; n]).unwrap();
    b
}

fn to_bf16(v: &[f32]) -> Vec<bf16> {
    v.iter().map(|&x| bf16::from_f32(x)).collect()
}

fn from_bf16(v: &[bf16]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

fn check(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite output (an element was never written)");
    let err = rel_l2(got, want);
    assert!(err < tol, "{what}: relative L2 error {err:e} >= {tol:e}");
}

fn blocks_for(n: usize, threads: usize) -> u32 {
    n.div_ceil(threads) as u32
}

// ---------------------------------------------------------------------------------------------
// ddim

fn ddim_reference(out: &[f32], sample: &[f32], pred_type: i32, a_t: f64, a_prev: f64) -> Vec<f32> {
    let (sa, s1a) = (a_t.sqrt(), (1.0 - a_t).sqrt());
    out.iter()
        .zip(sample)
        .map(|(&o, &s)| {
            let (o, s) = (o as f64, s as f64);
            let (x0, eps) = match pred_type {
                0 => ((s - s1a * o) / sa, o),
                1 => (sa * s - s1a * o, sa * o + s1a * s),
                _ => (o, (s - sa * o) / s1a),
            };
            (a_prev.sqrt() * x0 + (1.0 - a_prev).sqrt() * eps) as f32
        })
        .collect()
}

#[test]
fn emu_ddim_step_f32_matches_reference() {
    let dev = device();
    let mut rng = Rng(11);
    for (n, pred_type, a_t, a_prev) in [(1000, 1, 0.3, 0.45), (37, 0, 0.9, 0.95), (4099, 2, 0.05, 0.2)] {
        let (mo, s) = (rng.vec(n), rng.vec(n));
        let want = ddim_reference(&mo, &s, pred_type, a_t, a_prev);
        let (d_mo, d_s) = (dev.htod(&mo).unwrap(), dev.htod(&s).unwrap());
        for seed in SEEDS {
            dev.set_schedule_seed(seed);
            let prev = out_f32(&dev, n);
            let x0 = out_f32(&dev, n);
            let args = [
                Arg::from(&prev),
                Arg::from(&x0),
                Arg::from(&d_mo),
                Arg::from(&d_s),
                Arg::I64(n as i64),
                Arg::I32(pred_type),
                Arg::F32((a_t as f32).sqrt()),
                Arg::F32((1.0 - a_t as f32).sqrt()),
                Arg::F32((a_prev as f32).sqrt()),
                Arg::F32((1.0 - a_prev as f32).sqrt()),
            ];
            // Fewer blocks than elements / threads: the grid-stride loop must cover the rest.
            dev.launch("ddim_step_f32", &LaunchConfig::linear(3, 128), &args).unwrap();
            check(&format!("ddim n={n} type={pred_type}"), &prev.to_vec::<f32>().unwrap(), &want, F32_TOL);
            assert!(x0.to_vec::<f32>().unwrap().iter().all(|v| v.is_finite()), "pred_x0 not written");
        }
        // pred_x0 may be null.
        let prev = out_f32(&dev, n);
        let args = [
            Arg::from(&prev),
            Arg::Ptr(0),
            Arg::from(&d_mo),
            Arg::from(&d_s),
            Arg::I64(n as i64),
            Arg::I32(pred_type),
            Arg::F32((a_t as f32).sqrt()),
            Arg::F32((1.0 - a_t as f32).sqrt()),
            Arg::F32((a_prev as f32).sqrt()),
            Arg::F32((1.0 - a_prev as f32).sqrt()),
        ];
        dev.launch("ddim_step_f32", &LaunchConfig::linear(blocks_for(n, 256), 256), &args).unwrap();
        check("ddim without pred_x0", &prev.to_vec::<f32>().unwrap(), &want, F32_TOL);
    }
}

// ---------------------------------------------------------------------------------------------
// elementwise

fn silu_ref(x: f32) -> f32 {
    let x = x as f64;
    (x / (1.0 + (-x).exp())) as f32
}

fn gelu_tanh_ref(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())) as f32
}

#[test]
fn emu_elementwise_matches_reference() {
    let dev = device();
    let mut rng = Rng(12);
    for n in [1, 333, 2053] {
        let x: Vec<f32> = rng.vec(n).iter().map(|v| v * 6.0).collect();
        let xb = to_bf16(&x);
        for (op, f) in [("silu", silu_ref as fn(f32) -> f32), ("gelu_tanh", gelu_tanh_ref)] {
            let want: Vec<f32> = x.iter().map(|&v| f(v)).collect();
            let want_b: Vec<f32> = xb.iter().map(|v| bf16::from_f32(f(v.to_f32())).to_f32()).collect();
            let (dx, dxb) = (dev.htod(&x).unwrap(), dev.htod(&xb).unwrap());
            for seed in SEEDS {
                dev.set_schedule_seed(seed);
                let y = out_f32(&dev, n);
                let cfg = LaunchConfig::linear(blocks_for(n, 128).min(5), 128);
                dev.launch(&format!("{op}_f32"), &cfg, &[(&y).into(), (&dx).into(), Arg::I64(n as i64)]).unwrap();
                check(&format!("{op}_f32 n={n}"), &y.to_vec().unwrap(), &want, F32_TOL);
                let yb = dev.alloc(2 * n).unwrap();
                dev.launch(&format!("{op}_bf16"), &cfg, &[(&yb).into(), (&dxb).into(), Arg::I64(n as i64)]).unwrap();
                check(&format!("{op}_bf16 n={n}"), &from_bf16(&yb.to_vec().unwrap()), &want_b, BF16_TOL);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// group_norm

#[allow(clippy::too_many_arguments)]
fn group_norm_ref(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    n: usize,
    c: usize,
    hw: usize,
    g: usize,
    eps: f64,
    silu: bool,
) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    let cpg = c / g;
    for b in 0..n {
        for gi in 0..g {
            let base = (b * c + gi * cpg) * hw;
            let xs = &x[base..base + cpg * hw];
            let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / xs.len() as f64;
            let rstd = 1.0 / (var + eps).sqrt();
            for (i, &v) in xs.iter().enumerate() {
                let ch = gi * cpg + i / hw;
                let o = ((v as f64 - mean) * rstd * gamma[ch] as f64 + beta[ch] as f64) as f32;
                y[base + i] = if silu { silu_ref(o) } else { o };
            }
        }
    }
    y
}

fn run_group_norm(
    dev: &EmuDevice,
    kernel: &str,
    x: &EmuBuffer,
    gamma: &EmuBuffer,
    beta: &EmuBuffer,
    shape: (usize, usize, usize, usize),
    silu: bool,
) -> Vec<f32> {
    let (n, c, hw, g) = shape;
    let y = out_f32(dev, n * c * hw);
    let cfg = LaunchConfig { grid: [g as u32, n as u32, 1], block: [256, 1, 1], shared_bytes: 0 };
    let args = [
        (&y).into(),
        x.into(),
        gamma.into(),
        beta.into(),
        Arg::I32(c as i32),
        Arg::I32(hw as i32),
        Arg::I32(g as i32),
        Arg::F32(1e-6),
        Arg::I32(silu as i32),
    ];
    dev.launch(kernel, &cfg, &args).unwrap();
    y.to_vec().unwrap()
}

#[test]
fn emu_group_norm_f32_matches_reference() {
    let dev = device();
    let mut rng = Rng(13);
    for (shape, silu) in [((2, 12, 37, 4), true), ((1, 32, 63, 32), false), ((3, 6, 301, 3), true)] {
        let (n, c, hw, g) = shape;
        // An offset mean makes a one-pass variance visibly worse.
        let x: Vec<f32> = rng.vec(n * c * hw).iter().map(|v| 3.0 + 2.0 * v).collect();
        let (gamma, beta) = (rng.vec(c), rng.vec(c));
        let want = group_norm_ref(&x, &gamma, &beta, n, c, hw, g, 1e-6, silu);
        let (dx, dg, db) = (dev.htod(&x).unwrap(), dev.htod(&gamma).unwrap(), dev.htod(&beta).unwrap());
        for seed in SEEDS {
            dev.set_schedule_seed(seed);
            let got = run_group_norm(&dev, "group_norm_f32", &dx, &dg, &db, shape, silu);
            check(&format!("group_norm {shape:?}"), &got, &want, F32_TOL);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// layer_norm

fn layer_norm_ref(x: &[f32], shift: &[f32], scale: &[f32], t: usize, d: usize, eps: f64) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for (r, row) in x.chunks(d).enumerate() {
        let b = r / t;
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        for i in 0..d {
            let nrm = (row[i] as f64 - mean) * rstd;
            y[r * d + i] = (nrm * (1.0 + scale[b * d + i] as f64) + shift[b * d + i] as f64) as f32;
        }
    }
    y
}

fn layer_norm_launch(
    dev: &EmuDevice,
    y: &EmuBuffer,
    bufs: [&EmuBuffer; 3],
    (b, t, d): (usize, usize, usize),
    shared_bytes: u32,
) -> percept::Result<()> {
    let cfg = LaunchConfig { grid: [(b * t) as u32, 1, 1], block: [128, 1, 1], shared_bytes };
    let args = [
        y.into(),
        bufs[0].into(),
        bufs[1].into(),
        bufs[2].into(),
        Arg::I32(t as i32),
        Arg::I32(d as i32),
        Arg::I32(d as i32),
        Arg::F32(1e-6),
    ];
    dev.launch("layer_norm_modulate_f32", &cfg, &args)
}

#[test]
fn emu_layer_norm_modulate_f32_matches_reference() {
    let dev = device();
    let mut rng = Rng(14);
    for (b, t, d) in [(2, 5, 72), (1, 3, 1152), (3, 7, 33)] {
        let x: Vec<f32> = rng.vec(b * t * d).iter().map(|v| 1.5 + v).collect();
        let (shift, scale) = (rng.vec(b * d), rng.vec(b * d));
        let want = layer_norm_ref(&x, &shift, &scale, t, d, 1e-6);
        let (dx, dsh, dsc) = (dev.htod(&x).unwrap(), dev.htod(&shift).unwrap(), dev.htod(&scale).unwrap());
        for seed in SEEDS {
            dev.set_schedule_seed(seed);
            let y = out_f32(&dev, b * t * d);
            layer_norm_launch(&dev, &y, [&dx, &dsh, &dsc], (b, t, d), (4 * d) as u32).unwrap();
            check(&format!("layer_norm {:?}", (b, t, d)), &y.to_vec().unwrap(), &want, F32_TOL);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gemm

fn gemm_ref(a: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, n: usize, k: usize, gelu: bool) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = bias.map_or(0.0, |b| b[j] as f64);
            for p in 0..k {
                acc += a[i * k + p] as f64 * w[j * k + p] as f64;
            }
            c[i * n + j] = if gelu { gelu_tanh_ref(acc as f32) } else { acc as f32 };
        }
    }
    c
}

const GEMM_SHAPES: [(usize, usize, usize); 4] = [(33, 17, 45), (64, 64, 64), (1, 70, 3), (50, 40, 100)];

fn gemm_grid(m: usize, n: usize) -> [u32; 3] {
    [n.div_ceil(32) as u32, m.div_ceil(32) as u32, 1]
}

fn run_gemm_f32(
    dev: &EmuDevice,
    kernel: &str,
    a: &EmuBuffer,
    w: &EmuBuffer,
    bias: Option<&EmuBuffer>,
    (m, n, k): (usize, usize, usize),
    gelu: bool,
) -> percept::Result<Vec<f32>> {
    let c = out_f32(dev, m * n);
    let cfg = LaunchConfig { grid: gemm_grid(m, n), block: [256, 1, 1], shared_bytes: 0 };
    let bias = bias.map_or(Arg::Ptr(0), Arg::from);
    let args = [
        (&c).into(),
        a.into(),
        w.into(),
        bias,
        Arg::I32(m as i32),
        Arg::I32(n as i32),
        Arg::I32(k as i32),
        Arg::I32(gelu as i32),
    ];
    dev.launch(kernel, &cfg, &args)?;
    c.to_vec()
}

#[test]
fn emu_gemm_f32_matches_reference() {
    let dev = device();
    let mut rng = Rng(15);
    for (i, &(m, n, k)) in GEMM_SHAPES.iter().enumerate() {
        let (a, w, bias) = (rng.vec(m * k), rng.vec(n * k), rng.vec(n));
        let (with_bias, gelu) = (i % 2 == 0, i % 3 == 0);
        let want = gemm_ref(&a, &w, with_bias.then_some(&bias[..]), m, n, k, gelu);
        let (da, dw, db) = (dev.htod(&a).unwrap(), dev.htod(&w).unwrap(), dev.htod(&bias).unwrap());
        for seed in SEEDS {
            dev.set_schedule_seed(seed);
            let got = run_gemm_f32(&dev, "gemm_f32", &da, &dw, with_bias.then_some(&db), (m, n, k), gelu).unwrap();
            check(&format!("gemm_f32 {:?}", (m, n, k)), &got, &want, F32_TOL);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_gemm_bf16(
    dev: &EmuDevice,
    kernel: &str,
    a: &EmuBuffer,
    w: &EmuBuffer,
    bias: Option<&EmuBuffer>,
    (m, n, k): (usize, usize, usize),
    gelu: bool,
    out_bf16: bool,
) -> percept::Result<Vec<f32>> {
    let c = if out_bf16 { dev.alloc(2 * m * n)? } else { out_f32(dev, m * n) };
    let cfg = LaunchConfig { grid: gemm_grid(m, n), block: [128, 1, 1], shared_bytes: 0 };
    let bias = bias.map_or(Arg::Ptr(0), Arg::from);
    let args = [
        (&c).into(),
        a.into(),
        w.into(),
        bias,
        Arg::I32(m as i32),
        Arg::I32(n as i32),
        Arg::I32(k as i32),
        Arg::I32(gelu as i32),
        Arg::I32(out_bf16 as i32),
    ];
    dev.launch(kernel, &cfg, &args)?;
    Ok(if out_bf16 { from_bf16(&c.to_vec()?) } else { c.to_vec()? })
}

#[test]
fn emu_gemm_mma_bf16_matches_reference() {
    let dev = device();
    let mut rng = Rng(16);
    for (i, &(m, n, k)) in GEMM_SHAPES.iter().enumerate() {
        let (a, w, bias) = (to_bf16(&rng.vec(m * k)), to_bf16(&rng.vec(n * k)), rng.vec(n));
        let (with_bias, gelu) = (i % 2 == 1, i % 3 == 0);
        // The reference takes the same bf16-rounded inputs: with f32 output the only differences are
        // in accumulation order, so the f32 tolerance holds.
        let want = gemm_ref(&from_bf16(&a), &from_bf16(&w), with_bias.then_some(&bias[..]), m, n, k, gelu);
        let (da, dw, db) = (dev.htod(&a).unwrap(), dev.htod(&w).unwrap(), dev.htod(&bias).unwrap());
        for seed in SEEDS {
            dev.set_schedule_seed(seed);
            for out_bf16 in [false, true] {
                let got =
                    run_gemm_bf16(&dev, "gemm_mma_bf16", &da, &dw, with_bias.then_some(&db), (m, n, k), gelu, out_bf16)
                        .unwrap();
                let tol = if out_bf16 { BF16_TOL } else { F32_TOL };
                check(&format!("gemm_mma_bf16 {:?} out_bf16={out_bf16}", (m, n, k)), &got, &want, tol);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// warp primitives against the PTX ISA fragment layouts (g = lane / 4, t = lane % 4)

fn lo_hi(word: u32) -> [u16; 2] {
    [word as u16, (word >> 16) as u16]
}

#[test]
fn emu_mma_fragments_follow_ptx_layout() {
    let dev = device();
    let mut rng = Rng(17);
    for (kernel, to_f32) in [
        ("probe_mma_bf16", (|h: u16| bf16::from_bits(h).to_f32()) as fn(u16) -> f32),
        ("probe_mma_f16", |h: u16| half::f16::from_bits(h).to_f32()),
    ] {
        let from = |x: f32| {
            if kernel.ends_with("bf16") {
                bf16::from_f32(x).to_bits()
            } else {
                half::f16::from_f32(x).to_bits()
            }
        };
        let a: Vec<u32> = (0..128).map(|_| from(rng.uniform()) as u32 | (from(rng.uniform()) as u32) << 16).collect();
        let b: Vec<u32> = (0..64).map(|_| from(rng.uniform()) as u32 | (from(rng.uniform()) as u32) << 16).collect();
        let c = rng.vec(128);
        // The matrices as the layout places them.
        let (mut am, mut bm, mut cm) = ([[0f32; 16]; 16], [[0f32; 8]; 16], [[0f32; 8]; 16]);
        for l in 0..32 {
            let (g, t) = (l / 4, l % 4);
            for h in 0..2 {
                am[g][2 * t + h] = to_f32(lo_hi(a[4 * l])[h]);
                am[g + 8][2 * t + h] = to_f32(lo_hi(a[4 * l + 1])[h]);
                am[g][2 * t + 8 + h] = to_f32(lo_hi(a[4 * l + 2])[h]);
                am[g + 8][2 * t + 8 + h] = to_f32(lo_hi(a[4 * l + 3])[h]);
                bm[2 * t + h][g] = to_f32(lo_hi(b[2 * l])[h]);
                bm[2 * t + 8 + h][g] = to_f32(lo_hi(b[2 * l + 1])[h]);
                cm[g][2 * t + h] = c[4 * l + h];
                cm[g + 8][2 * t + h] = c[4 * l + 2 + h];
            }
        }
        let (da, db, dc) = (dev.htod(&a).unwrap(), dev.htod(&b).unwrap(), dev.htod(&c).unwrap());
        let d = out_f32(&dev, 128);
        dev.launch(kernel, &LaunchConfig::linear(1, 32), &[(&d).into(), (&da).into(), (&db).into(), (&dc).into()])
            .unwrap();
        let got = d.to_vec::<f32>().unwrap();
        for l in 0..32 {
            let (g, t) = (l / 4, l % 4);
            for q in 0..4 {
                let (i, j) = (g + 8 * (q / 2), 2 * t + q % 2);
                let want = cm[i][j] as f64 + (0..16).map(|k| am[i][k] as f64 * bm[k][j] as f64).sum::<f64>();
                assert!(
                    (got[4 * l + q] as f64 - want).abs() < 1e-6,
                    "{kernel}: lane {l} d[{q}] = {} want {want}",
                    got[4 * l + q]
                );
            }
        }
    }
}

#[test]
fn emu_ldmatrix_follows_ptx_layout() {
    let dev = device();
    let src: Vec<u16> = (0..256u16).map(|i| i.wrapping_mul(37) ^ 0x5a5a).collect();
    let m = |j: usize, r: usize, c: usize| src[64 * j + 8 * r + c];
    let out = dev.alloc(4 * 32 * 11).unwrap();
    let dsrc = dev.htod(&src).unwrap();
    dev.launch("probe_ldmatrix_b16", &LaunchConfig::linear(1, 32), &[(&out).into(), (&dsrc).into()]).unwrap();
    let got = out.to_vec::<u32>().unwrap();
    for l in 0..32 {
        let (g, t) = (l / 4, l % 4);
        let pack = |lo: u16, hi: u16| lo as u32 | (hi as u32) << 16;
        for j in 0..4 {
            assert_eq!(got[11 * l + j], pack(m(j, g, 2 * t), m(j, g, 2 * t + 1)), "x4 lane {l} matrix {j}");
            assert_eq!(got[11 * l + 4 + j], pack(m(j, 2 * t, g), m(j, 2 * t + 1, g)), "x4.trans lane {l} matrix {j}");
        }
        for j in 0..2 {
            assert_eq!(got[11 * l + 8 + j], pack(m(j, g, 2 * t), m(j, g, 2 * t + 1)), "x2 lane {l} matrix {j}");
        }
        assert_eq!(got[11 * l + 10], pack(m(0, g, 2 * t), m(0, g, 2 * t + 1)), "x1 lane {l}");
    }
}

#[test]
fn emu_warp_shuffles_and_ballots_follow_ptx() {
    let dev = device();
    let mut rng = Rng(18);
    let input: Vec<u32> = (0..32).map(|_| rng.next_u64() as u32).collect();
    let out = dev.alloc(4 * 32 * 8).unwrap();
    let din = dev.htod(&input).unwrap();
    for seed in SEEDS {
        dev.set_schedule_seed(seed);
        dev.launch("probe_warp_u32", &LaunchConfig::linear(1, 32), &[(&out).into(), (&din).into()]).unwrap();
        let got = out.to_vec::<u32>().unwrap();
        let ballot = |p: &dyn Fn(usize) -> bool| (0..32).filter(|&l| p(l)).fold(0u32, |b, l| b | 1 << l);
        for l in 0..32 {
            let o = &got[8 * l..8 * l + 8];
            assert_eq!(o[0], input[(l * 7 + 3) & 31], "shfl idx lane {l}");
            assert_eq!(o[1], input[(l & !7) + ((l + 5) & 7)], "shfl idx width 8 lane {l}");
            assert_eq!(o[2], input[l ^ 6], "shfl xor lane {l}");
            let seg = l & !15;
            assert_eq!(o[3], if l + 3 < seg + 16 { input[l + 3] } else { input[l] }, "shfl down lane {l}");
            assert_eq!(o[4], if l >= seg + 5 { input[l - 5] } else { input[l] }, "shfl up lane {l}");
            assert_eq!(o[5], ballot(&|i| input[i] & 1 == 1), "ballot lane {l}");
            assert_eq!(o[6], ballot(&|i| i % 3 == 0), "ballot lane {l}");
            assert_eq!(o[7], if l & 1 == 1 { input[l ^ 2] } else { input[l] }, "partial-mask shfl lane {l}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// launch validation

#[test]
fn emu_launch_limits_are_enforced() {
    let dev = device();
    let y = out_f32(&dev, 64);
    let x = dev.htod(&vec![1.0f32; 64]).unwrap();
    let args = [(&y).into(), (&x).into(), Arg::I64(64)];
    let launch = |grid: [u32; 3], block: [u32; 3], shared: u32| {
        dev.launch("silu_f32", &LaunchConfig { grid, block, shared_bytes: shared }, &args)
    };
    let refused = |r: percept::Result<()>, what: &str| {
        let e = r.expect_err(what).to_string();
        assert!(e.contains("silu_f32"), "{what}: message does not name the kernel: {e}");
        e
    };
    launch([1, 1, 1], [1024, 1, 1], 0).unwrap();
    refused(launch([1, 1, 1], [1025, 1, 1], 0), "1025 threads");
    refused(launch([1, 1, 1], [64, 32, 1], 0), "2048 threads in 2-D");
    refused(launch([1, 1, 1], [1, 1, 65], 0), "block.z 65");
    refused(launch([1, 1, 1], [0, 1, 1], 0), "empty block");
    refused(launch([1, 65536, 1], [32, 1, 1], 0), "grid.y 65536");
    refused(launch([1, 1, 65536], [32, 1, 1], 0), "grid.z 65536");
    launch([1, 1, 1], [32, 1, 1], 48 * 1024).unwrap();
    let e = refused(launch([1, 1, 1], [32, 1, 1], 48 * 1024 + 4), "dynamic shared above 48 KiB without opt-in");
    assert!(e.contains("opt in"), "{e}");
    dev.set_max_dynamic_shared("silu_f32", 100 * 1024).unwrap();
    launch([1, 1, 1], [32, 1, 1], 100 * 1024).unwrap();
    refused(launch([1, 1, 1], [32, 1, 1], 100 * 1024 + 4), "above the opt-in");
    assert!(dev.set_max_dynamic_shared("silu_f32", 164 * 1024).is_err(), "sm_80 allows at most 163 KiB");
    let hopper = EmuDevice::new(Arch::Sm90);
    hopper.set_max_dynamic_shared("silu_f32", 227 * 1024).unwrap();
    assert!(hopper.set_max_dynamic_shared("silu_f32", 228 * 1024).is_err(), "sm_90 allows at most 227 KiB");

    let cfg = LaunchConfig::linear(1, 32);
    refused(dev.launch("silu_f32", &cfg, &[(&y).into(), (&x).into()]), "missing argument");
    refused(dev.launch("silu_f32", &cfg, &[(&y).into(), (&x).into(), Arg::F32(64.0)]), "float for a count");
    refused(dev.launch("silu_f32", &cfg, &[(&y).into(), Arg::Ptr(0x1000), Arg::I64(64)]), "not device memory");
    assert!(dev.launch("no_such_kernel", &cfg, &[]).is_err());
}

#[test]
fn emu_deadlock_and_misuse_are_reported() {
    // A 33-thread block has a one-lane second warp: a full-mask shuffle there names absent lanes.
    let dev = device();
    let out = dev.alloc(4 * 33 * 8).unwrap();
    let din = dev.htod(&[0u32; 33]).unwrap();
    let e = dev
        .launch("probe_warp_u32", &LaunchConfig::linear(1, 33), &[(&out).into(), (&din).into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("__shfl_sync") && e.contains("beyond"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// planted bugs (kernels/planted/bugs.txt): each copy of a real kernel must be caught

#[test]
fn emu_planted_missing_sync_gives_wrong_results() {
    let dev = device();
    let mut rng = Rng(19);
    let (m, n, k) = (50, 40, 100);
    let (a, w) = (rng.vec(m * k), rng.vec(n * k));
    let want = gemm_ref(&a, &w, None, m, n, k, false);
    let (da, dw) = (dev.htod(&a).unwrap(), dev.htod(&w).unwrap());
    for seed in SEEDS {
        dev.set_schedule_seed(seed);
        let got = run_gemm_f32(&dev, "gemm_f32__missing_sync", &da, &dw, None, (m, n, k), false).unwrap();
        let err = rel_l2(&got, &want);
        assert!(err.is_nan() || err >= F32_TOL, "seed {seed}: the missing barrier went unnoticed (error {err:e})");
    }
}

#[test]
fn emu_planted_missing_cp_async_wait_gives_wrong_results() {
    let dev = device();
    let mut rng = Rng(21);
    let (m, n, k) = (33, 17, 45);
    let (a, w) = (rng.vec(m * k), rng.vec(n * k));
    let want = gemm_ref(&a, &w, None, m, n, k, false);
    let (da, dw) = (dev.htod(&a).unwrap(), dev.htod(&w).unwrap());
    let got = run_gemm_f32(&dev, "gemm_f32__missing_cp_async_wait", &da, &dw, None, (m, n, k), false).unwrap();
    let err = rel_l2(&got, &want);
    assert!(err.is_nan() || err > 0.1, "reading before cp.async landed went unnoticed (error {err:e})");
}

#[test]
fn emu_planted_wrong_mma_fragment_gives_wrong_results() {
    let dev = device();
    let mut rng = Rng(20);
    let (m, n, k) = (33, 17, 45);
    let (a, w) = (to_bf16(&rng.vec(m * k)), to_bf16(&rng.vec(n * k)));
    let want = gemm_ref(&from_bf16(&a), &from_bf16(&w), None, m, n, k, false);
    let (da, dw) = (dev.htod(&a).unwrap(), dev.htod(&w).unwrap());
    let got =
        run_gemm_bf16(&dev, "gemm_mma_bf16__wrong_mma_fragment", &da, &dw, None, (m, n, k), false, false).unwrap();
    let err = rel_l2(&got, &want);
    assert!(err > 0.1, "the wrong fragment row went unnoticed (error {err:e})");
}

/// Runs `child` (one of the `planted_asan_child_*` tests) in a fresh process and returns its output:
/// AddressSanitizer ends the process it finds an error in.
fn run_child(child: &str) -> (bool, String) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([child, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("PERCEPT_PLANTED_CHILD", "1")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn off_by_one_store(dev: &EmuDevice) -> percept::Result<()> {
    let n = 100;
    let x = dev.htod(&vec![0.5f32; n])?;
    let y = out_f32(dev, n);
    dev.launch(
        "silu_f32__off_by_one_store",
        &LaunchConfig::linear(1, 128),
        &[(&y).into(), (&x).into(), Arg::I64(n as i64)],
    )
}

fn too_small_dynamic_shared(dev: &EmuDevice) -> percept::Result<()> {
    let (b, t, d) = (1, 2, 72);
    let x = dev.htod(&vec![0.5f32; b * t * d])?;
    let p = dev.htod(&vec![0.1f32; b * d])?;
    let y = out_f32(dev, b * t * d);
    // One float short of the row the kernel caches.
    layer_norm_launch(dev, &y, [&x, &p, &p], (b, t, d), (4 * d - 4) as u32)
}

#[test]
#[ignore = "run by emu_planted_out_of_bounds_is_caught in a child process"]
fn planted_asan_child_off_by_one() {
    if std::env::var("PERCEPT_PLANTED_CHILD").is_ok() {
        off_by_one_store(&device()).unwrap();
    }
}

/// group_norm with its 32-slot reduction scratch cut to 4 slots, run with 8 warps.
fn too_small_static_shared(dev: &EmuDevice) -> percept::Result<()> {
    let (n, c, hw, g) = (1usize, 8usize, 20usize, 2usize);
    let x = dev.htod(&vec![0.5f32; n * c * hw])?;
    let p = dev.htod(&vec![1.0f32; c])?;
    let y = out_f32(dev, n * c * hw);
    let cfg = LaunchConfig { grid: [g as u32, n as u32, 1], block: [256, 1, 1], shared_bytes: 0 };
    let args = [
        (&y).into(),
        (&x).into(),
        (&p).into(),
        (&p).into(),
        Arg::I32(c as i32),
        Arg::I32(hw as i32),
        Arg::I32(g as i32),
        Arg::F32(1e-6),
        Arg::I32(0),
    ];
    dev.launch("group_norm_f32__small_shared", &cfg, &args)
}

#[test]
#[ignore = "run by emu_planted_out_of_bounds_is_caught in a child process"]
fn planted_asan_child_small_static_shared() {
    if std::env::var("PERCEPT_PLANTED_CHILD").is_ok() {
        too_small_static_shared(&device()).unwrap();
    }
}

#[test]
#[ignore = "run by emu_planted_out_of_bounds_is_caught in a child process"]
fn planted_asan_child_small_shared() {
    if std::env::var("PERCEPT_PLANTED_CHILD").is_ok() {
        too_small_dynamic_shared(&device()).unwrap();
    }
}

#[test]
fn emu_planted_out_of_bounds_is_caught() {
    if percept::emu::ASAN {
        for child in ["emu::planted_asan_child_off_by_one", "emu::planted_asan_child_small_shared"] {
            let (ok, output) = run_child(child);
            assert!(!ok && output.contains("AddressSanitizer"), "{child}: no AddressSanitizer report:\n{output}");
        }
    } else {
        let e = off_by_one_store(&device()).unwrap_err().to_string();
        assert!(e.contains("past the end"), "off-by-one store: {e}");
        let e = too_small_dynamic_shared(&device()).unwrap_err().to_string();
        assert!(e.contains("past the end") && e.contains("shared"), "too-small shared buffer: {e}");
    }
}

#[test]
fn emu_atomics_count_exactly() {
    let dev = device();
    let (blocks, threads) = (7usize, 96usize);
    let total = blocks * threads;
    // Halves and quarters: the float sum is exact in any order.
    let x: Vec<f32> = (0..total).map(|i| (i % 4) as f32 * 0.25).collect();
    let counts = dev.htod(&[0i32; 3]).unwrap();
    let sum = dev.htod(&[0f32]).unwrap();
    let dx = dev.htod(&x).unwrap();
    dev.launch(
        "probe_atomic_i32",
        &LaunchConfig::linear(blocks as u32, threads as u32),
        &[(&counts).into(), (&sum).into(), (&dx).into()],
    )
    .unwrap();
    let c = counts.to_vec::<i32>().unwrap();
    let per_block = (0..threads as i32).sum::<i32>();
    assert_eq!(c, vec![total as i32, total as i32 - 1, per_block * blocks as i32]);
    assert_eq!(sum.to_vec::<f32>().unwrap()[0], x.iter().sum::<f32>());
}

#[test]
fn emu_planted_divergent_shuffle_is_a_deadlock() {
    let dev = device();
    let out = dev.alloc(4 * 32 * 8).unwrap();
    let din = dev.htod(&[1u32; 32]).unwrap();
    let e = dev
        .launch("probe_warp_u32__divergent_shuffle", &LaunchConfig::linear(1, 32), &[(&out).into(), (&din).into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("deadlock") && e.contains("__shfl_sync"), "{e}");
}

#[test]
fn emu_shared_memory_totals_are_limited() {
    // layer_norm has 128 bytes of static shared memory: with 48 KiB of dynamic memory the block
    // exceeds the default 48 KiB, and is fine once opted in.
    let dev = device();
    let (b, t, d) = (1, 1, 64);
    let x = dev.htod(&vec![0.5f32; d]).unwrap();
    let p = dev.htod(&vec![0.0f32; d]).unwrap();
    let y = out_f32(&dev, d);
    let e = layer_norm_launch(&dev, &y, [&x, &p, &p], (b, t, d), 48 * 1024).unwrap_err().to_string();
    assert!(e.contains("static") && e.contains("exceed"), "{e}");
    dev.set_max_dynamic_shared("layer_norm_modulate_f32", 48 * 1024).unwrap();
    layer_norm_launch(&dev, &y, [&x, &p, &p], (b, t, d), 48 * 1024).unwrap();
}

/// The authors' scheduler (ddim fixture): the 10-step eta-0 chains of all five configs, each step
/// one launch of the emulated kernel fed the previous step's output.
#[test]
fn emu_ddim_step_f32_matches_fixture_chains() {
    let Some(dir) = crate::support::fixtures_dir() else {
        return;
    };
    let fx = percept::verify::fixture::Fixture::load(&dir, "ddim").unwrap();
    let dev = device();
    for cfg in ["a", "b", "c", "d", "e"] {
        let pred_type = match fx.config()["configs"][cfg]["prediction_type"].as_str() {
            Some("epsilon") => 0,
            Some("v_prediction") => 1,
            Some("sample") => 2,
            other => panic!("config {cfg}: prediction_type {other:?}"),
        };
        let alphas = fx.tensor(&format!("{cfg}.alphas_cumprod")).unwrap().data;
        let final_alpha = fx.tensor(&format!("{cfg}.final_alpha_cumprod")).unwrap().data[0];
        let timesteps = fx.ints(&format!("{cfg}.chain.timesteps")).unwrap();
        let outputs = fx.tensor(&format!("{cfg}.chain.model_output")).unwrap();
        let mut sample = dev.htod(&fx.tensor(&format!("{cfg}.chain.sample0")).unwrap().data).unwrap();
        let n = sample.len() / 4;
        let (mut prevs, mut x0s) = (Vec::new(), Vec::new());
        for (i, &t) in timesteps.iter().enumerate() {
            // diffusers: prev_t = t - train_steps // steps, alphas and their roots in f32.
            let prev_t = t - 1000 / timesteps.len() as i64;
            let a_t = alphas[t as usize];
            let a_prev = if prev_t >= 0 { alphas[prev_t as usize] } else { final_alpha };
            let model_output = dev.htod(&outputs.data[i * n..(i + 1) * n]).unwrap();
            let (prev, x0) = (out_f32(&dev, n), out_f32(&dev, n));
            let args = [
                Arg::from(&prev),
                Arg::from(&x0),
                Arg::from(&model_output),
                Arg::from(&sample),
                Arg::I64(n as i64),
                Arg::I32(pred_type),
                Arg::F32(a_t.sqrt()),
                Arg::F32((1.0 - a_t).sqrt()),
                Arg::F32(a_prev.sqrt()),
                Arg::F32((1.0 - a_prev).sqrt()),
            ];
            dev.launch("ddim_step_f32", &LaunchConfig::linear(blocks_for(n, 128), 128), &args).unwrap();
            prevs.extend(prev.to_vec::<f32>().unwrap());
            x0s.extend(x0.to_vec::<f32>().unwrap());
            sample = prev;
        }
        for (what, got) in [("prev_sample", &prevs), ("pred_original_sample", &x0s)] {
            let check = percept::verify::compare(&fx, &format!("{cfg}.chain.{what}"), got, "f32").unwrap();
            assert_eq!(check.pass, Some(true), "{}", check.line());
        }
    }
}

#[test]
#[ignore = "run by emu_illegal_address_names_the_kernel in a child process"]
fn planted_child_illegal_address() {
    if std::env::var("PERCEPT_PLANTED_CHILD").is_ok() {
        let dev = device();
        // n far beyond the 4-byte buffers: the grid-stride loop walks off the heap.
        let (x, y) = (dev.htod(&[1.0f32]).unwrap(), dev.htod(&[0.0f32]).unwrap());
        let args = [(&y).into(), (&x).into(), Arg::I64(i32::MAX as i64)];
        let _ = dev.launch("silu_f32", &LaunchConfig::linear(1, 32), &args);
    }
}

#[test]
fn emu_illegal_address_names_the_kernel() {
    let (ok, output) = run_child("emu::planted_child_illegal_address");
    assert!(!ok, "the child survived a wild access:\n{output}");
    let named = output.contains("percept emulator: kernel silu_f32") || output.contains("AddressSanitizer");
    assert!(named, "the crash does not name the kernel:\n{output}");
}

#[test]
fn emu_bf16_f16_conversions_round_to_nearest_even() {
    let dev = device();
    let mut rng = Rng(22);
    let mut x: Vec<f32> = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN_POSITIVE,
        1e-45,
        65504.0,
        65519.99,
        65520.0,
        -65520.0,
        6.0e-8,
        2.9802322e-8,
        2.9802326e-8,
        5.9604645e-8,
        1.0e-5,
        6.097555e-5,
        6.1035156e-5,
        3.0e-5,
        1.00390625,
        1.01171875,
        1.0039063,
        3.3895314e38,
        3.4e38,
    ];
    // Ties and their neighbours for bf16 (16 dropped bits) and f16 (13), and wide random values.
    for _ in 0..2000 {
        let bits = rng.next_u64() as u32;
        x.push(f32::from_bits(bits));
        x.push(f32::from_bits((bits & 0xFFFF_0000) | 0x8000));
        x.push(f32::from_bits((bits & 0xC7FF_E000) | 0x1000));
        x.push(rng.uniform() * 70000.0);
    }
    let n = x.len();
    let (bf, hf) = (dev.alloc(2 * n).unwrap(), dev.alloc(2 * n).unwrap());
    let (bf_back, hf_back) = (out_f32(&dev, n), out_f32(&dev, n));
    let dx = dev.htod(&x).unwrap();
    let args = [(&bf).into(), (&hf).into(), (&bf_back).into(), (&hf_back).into(), (&dx).into(), Arg::I32(n as i32)];
    dev.launch("probe_convert_f32", &LaunchConfig::linear(blocks_for(n, 256), 256), &args).unwrap();
    let (bf, hf) = (bf.to_vec::<u16>().unwrap(), hf.to_vec::<u16>().unwrap());
    let (bf_back, hf_back) = (bf_back.to_vec::<f32>().unwrap(), hf_back.to_vec::<f32>().unwrap());
    for i in 0..n {
        let (b, h) = (bf16::from_f32(x[i]), half::f16::from_f32(x[i]));
        if x[i].is_nan() {
            assert!(
                bf16::from_bits(bf[i]).is_nan() && half::f16::from_bits(hf[i]).is_nan(),
                "NaN {:#x}",
                x[i].to_bits()
            );
            assert!(bf_back[i].is_nan() && hf_back[i].is_nan());
            continue;
        }
        assert_eq!(bf[i], b.to_bits(), "bf16 of {:e} ({:#010x})", x[i], x[i].to_bits());
        assert_eq!(hf[i], h.to_bits(), "f16 of {:e} ({:#010x})", x[i], x[i].to_bits());
        assert_eq!(bf_back[i].to_bits(), b.to_f32().to_bits(), "bf16 {:#06x} to f32", bf[i]);
        assert_eq!(hf_back[i].to_bits(), h.to_f32().to_bits(), "f16 {:#06x} to f32", hf[i]);
    }
}

#[test]
fn emu_planted_ldmatrix_from_global_is_refused() {
    let dev = device();
    let src = dev.htod(&[0u16; 256]).unwrap();
    let out = dev.alloc(4 * 32 * 11).unwrap();
    let e = dev
        .launch(
            "probe_ldmatrix_b16__ldmatrix_from_global",
            &LaunchConfig::linear(1, 32),
            &[(&out).into(), (&src).into()],
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("ldmatrix") && e.contains("not a 16-byte row in shared memory"), "{e}");
}

/// `<op>_<dtype>` (the simple kernel) or `<op>_<variant>_<dtype>` (a fast variant): the dtype last
/// and nowhere before it, except in a conversion's `<from>_to_<to>`.
fn entry_name_is_op_variant_dtype(entry: &str) -> bool {
    const DTYPES: [&str; 6] = ["f32", "bf16", "f16", "i32", "u32", "b16"];
    let parts: Vec<&str> = entry.split('_').collect();
    let Some((last, rest)) = parts.split_last() else { return false };
    !rest.is_empty()
        && DTYPES.contains(last)
        && rest.iter().enumerate().all(|(i, p)| !DTYPES.contains(p) || parts.get(i + 1) == Some(&"to"))
}

#[test]
fn entry_name_rule_tells_the_old_names_from_the_new() {
    for good in
        ["gemm_f32", "gemm_tc128_bf16", "gemm_gated_add_tc128_bf16", "conv2d_up2_tc_bf16", "convert_bf16_to_f32"]
    {
        assert!(entry_name_is_op_variant_dtype(good), "{good}");
    }
    for bad in ["gemm_bf16_tc128", "gemm_bf16_mma", "moe_expert_fc_tc128", "silu", "f32"] {
        assert!(!entry_name_is_op_variant_dtype(bad), "{bad}");
    }
}

#[test]
fn emu_table_covers_every_kernel_module() {
    use percept::backend::cuda::kernels::{MODULES, PLANTED_MODULES};
    let emulated: Vec<&str> = percept::emu::kernel_names().collect();
    for module in MODULES.iter().chain(PLANTED_MODULES) {
        assert!(!module.entries.is_empty(), "kernels/{}.cu exports no PERCEPT_KERNEL", module.name);
        for entry in module.entries {
            assert!(emulated.contains(entry), "{entry} (kernels/{}.cu) has no emulated entry", module.name);
        }
    }
    for module in MODULES {
        for entry in module.entries {
            assert!(
                entry_name_is_op_variant_dtype(entry),
                "{entry}: entry points are <op>_<dtype> or <op>_<variant>_<dtype>"
            );
        }
    }
    assert_eq!(emulated.len(), MODULES.iter().chain(PLANTED_MODULES).map(|m| m.entries.len()).sum::<usize>());
    // NVRTC sees the dialect, never the emulator's host header.
    for module in MODULES {
        assert!(!module.source.contains("#include <"), "kernels/{}.cu includes a system header", module.name);
        assert!(module.source.contains("#ifdef PERCEPT_EMU"), "kernels/{}.cu lacks the inlined dialect", module.name);
    }
}
