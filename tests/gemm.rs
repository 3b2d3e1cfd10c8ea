//! Every GEMM engine this CPU runs and both convolution paths against f64 loops, at shapes that
//! cross every blocking edge of the AVX-512 kernel (12-row slivers, 32-column panels,
//! 512-column tasks, 384-deep blocks) and of the AMX kernel (32-row slivers, 32-deep steps,
//! 256-deep blocks, 256-row chunks), with strided and transposed operands, accumulation, and
//! threads on and off.

use percept::backend::cpu::conv::conv2d_image_with;
use percept::backend::cpu::gemm::{matmul_with, Engine, Mat};
use percept::backend::Conv2d;
use percept::tensor::rel_l2;

use crate::support::{reference_conv, Rng};

fn engines() -> Vec<Engine> {
    let v = Engine::available();
    if !v.contains(&Engine::Amx) {
        eprintln!("note: this CPU (or OS) has no AMX: the Amx GEMM engine is not tested here");
    }
    v
}

#[test]
fn gemm_engines_match_f64_loops_across_block_edges() {
    let mut rng = Rng(11);
    // (m, n, k): tails in every dimension, several column tasks, depth over one block.
    for &(m, n, k) in &[
        (1, 1, 1),
        (5, 7, 3),
        (13, 33, 5),
        (12, 32, 384),
        (37, 530, 400),
        (130, 1100, 800),
        (4, 1030, 9),
        (32, 32, 256),
        (300, 100, 70),
        (70, 40, 545),
    ] {
        let a = rng.vec(m * k);
        let b = rng.vec(k * n);
        let c0 = rng.vec(m * n);
        for transposed in [false, true] {
            // Transposed: b holds [n, k] and the product uses its transpose.
            let bm = if transposed { Mat::transposed(&b, k) } else { Mat::rows(&b, n) };
            let at = |p: usize, j: usize| if transposed { b[j * k + p] } else { b[p * n + j] };
            for accumulate in [false, true] {
                let mut want = vec![0f64; m * n];
                for i in 0..m {
                    for j in 0..n {
                        let s: f64 = (0..k).map(|p| a[i * k + p] as f64 * at(p, j) as f64).sum();
                        want[i * n + j] = s + if accumulate { c0[i * n + j] as f64 } else { 0.0 };
                    }
                }
                let want: Vec<f32> = want.into_iter().map(|v| v as f32).collect();
                for engine in engines() {
                    for threads in [false, true] {
                        let mut out = c0.clone();
                        matmul_with(engine, m, n, k, Mat::rows(&a, k), bm, &mut out, n, accumulate, threads);
                        let e = rel_l2(&out, &want);
                        assert!(e < 1e-6, "{engine:?} {m}x{n}x{k} t{transposed} acc{accumulate} thr{threads}: {e:e}");
                    }
                }
            }
        }
    }
}

#[test]
fn every_engine_keeps_f32_accuracy_over_deep_sums() {
    // The AMX engine sums six bf16 cross products per f32 product: its error against f64 must
    // stay at f32's level (dropping a needed term, e.g. three products only, would give ~1e-5)
    // over the model's deepest sums, with values of mixed magnitudes.
    let mut rng = Rng(14);
    let (m, n, k) = (40, 48, 4608);
    let scale = |rng: &mut Rng, v: f32| v * (2f32).powi((rng.uniform() * 12.0) as i32);
    let a: Vec<f32> = rng.vec(m * k).into_iter().map(|v| scale(&mut rng, v)).collect();
    let b: Vec<f32> = rng.vec(k * n).into_iter().map(|v| scale(&mut rng, v)).collect();
    let want: Vec<f64> =
        (0..m * n).map(|ij| (0..k).map(|p| a[ij / n * k + p] as f64 * b[p * n + ij % n] as f64).sum()).collect();
    let err = |out: &[f32]| {
        let num: f64 = out.iter().zip(&want).map(|(&o, &w)| (o as f64 - w).powi(2)).sum();
        let den: f64 = want.iter().map(|w| w * w).sum();
        (num / den).sqrt()
    };
    let errors: Vec<(Engine, f64)> = engines()
        .into_iter()
        .map(|engine| {
            let mut out = vec![f32::NAN; m * n];
            matmul_with(engine, m, n, k, Mat::rows(&a, k), Mat::rows(&b, n), &mut out, n, false, true);
            (engine, err(&out))
        })
        .collect();
    eprintln!("relative errors over depth {k}: {errors:?}");
    for &(engine, e) in &errors {
        assert!(e < 5e-7, "{engine:?}: relative error {e:e} over depth {k} ({errors:?})");
    }
}

#[test]
fn gemm_writes_only_its_tile_of_a_wider_output() {
    // Output rows with a stride wider than n (a band of a larger image): the gap must survive.
    let mut rng = Rng(12);
    let (m, n, k, ldo) = (25, 70, 50, 90);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    for engine in engines() {
        let mut out = vec![7.0f32; m * ldo];
        matmul_with(engine, m, n, k, Mat::rows(&a, k), Mat::rows(&b, n), &mut out, ldo, false, true);
        for i in 0..m {
            assert!(out[i * ldo + n..(i + 1) * ldo].iter().all(|&v| v == 7.0), "{engine:?}: row {i} gap written");
            let s: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + 3]).sum();
            assert!((out[i * ldo + 3] - s).abs() < 1e-4, "{engine:?}: row {i}");
        }
    }
}

#[test]
fn conv_paths_match_f64_loops() {
    let mut rng = Rng(13);
    // (c, o, h, w, k, params): odd widths (panels crossing output rows), stride 2 with the VAE's
    // one-sided padding, depth over one block (c * 9 > 384), pointwise.
    let cases = [
        (3, 5, 9, 11, 3, Conv2d::same3x3()),
        (50, 14, 17, 40, 3, Conv2d::same3x3()),
        (45, 13, 20, 33, 3, Conv2d::down3x3()),
        (8, 3, 64, 64, 3, Conv2d::same3x3()),
        (6, 9, 8, 12, 2, Conv2d::patch(2)),
        (20, 7, 10, 9, 1, Conv2d::pointwise()),
    ];
    for (c, o, h, w, k, p) in cases {
        let x = rng.vec(c * h * w);
        let wt = rng.vec(o * c * k * k);
        let bias = rng.vec(o);
        let [pt, pl, pb, pr] = p.pad;
        let oh = (h + pt + pb - k) / p.stride + 1;
        let ow = (w + pl + pr - k) / p.stride + 1;
        let want = reference_conv(&x, (1, c, h, w), &wt, &bias, o, k, p);
        for engine in engines() {
            let mut out = vec![f32::NAN; o * oh * ow];
            conv2d_image_with(engine, &x, c, h, w, &wt, Some(&bias), o, k, k, p, &mut out);
            let e = rel_l2(&out, &want);
            assert!(e < 1e-6, "{engine:?} conv c{c} o{o} {h}x{w} k{k} {p:?}: {e:e}");
        }
    }
}

#[test]
fn fast_exp_is_within_two_ulp_of_exp() {
    use percept::backend::cpu::elementwise::{exp_f32, gelu_tanh, silu};
    let mut worst = 0f64;
    let mut x = -87.0f32;
    while x < 88.0 {
        let want = (x as f64).exp();
        worst = worst.max(((exp_f32(x) as f64 - want) / want).abs());
        x += 0.001_37;
    }
    assert!(worst < 2.5e-7, "exp_f32 relative error {worst:e}");
    // The activations at their far ends stay finite and at their limits.
    for x in [-200.0f32, -90.0, 90.0, 200.0] {
        let (s, g) = (silu(x), gelu_tanh(x));
        let want = if x > 0.0 { x } else { 0.0 };
        assert!((s - want).abs() < 1e-6 && (g - want).abs() < 1e-6, "silu({x}) = {s}, gelu({x}) = {g}");
    }
}
