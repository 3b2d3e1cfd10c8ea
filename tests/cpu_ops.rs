//! The CPU backend's ops against plain, obviously-correct loops on random inputs of odd shapes.
//! These loops are the second opinion behind the fixtures (which pin one shape per op).

use std::sync::Arc;

use percept::backend::cpu::Cpu;
use percept::backend::{Act, Backend, Conv2d, MoeWeights};
use percept::tensor::{rel_l2, DType, Tensor};
use percept::weights::{Bytes, RawTensor};

use crate::support::{reference_conv, Rng};

fn raw(shape: &[usize], data: Vec<f32>) -> RawTensor {
    RawTensor { dtype: DType::F32, shape: shape.to_vec(), bytes: Bytes::F32(Arc::new(data)) }
}

fn t(shape: &[usize], rng: &mut Rng) -> Tensor {
    Tensor::new(shape.to_vec(), rng.vec(shape.iter().product())).unwrap()
}

fn close(got: &[f32], want: &[f32], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let e = rel_l2(got, want);
    assert!(e < tol, "{what}: rel L2 {e:e} >= {tol:e}");
}

#[test]
fn conv2d_matches_direct_loops_for_every_kind() {
    let be = Cpu::new();
    let mut rng = Rng(11);
    for (k, p, h, w) in [
        (3, Conv2d::same3x3(), 7, 5),
        (3, Conv2d::down3x3(), 9, 6),
        (1, Conv2d::pointwise(), 5, 3),
        (2, Conv2d::patch(2), 6, 8),
        (3, Conv2d::same3x3(), 40, 33),
    ] {
        let (n, c, o) = (2, 5, 7);
        let x = t(&[n, c, h, w], &mut rng);
        let wv = rng.vec(o * c * k * k);
        let bv = rng.vec(o);
        let wt = be.weight("w", &raw(&[o, c, k, k], wv.clone())).unwrap();
        let bt = be.weight("b", &raw(&[o], bv.clone())).unwrap();
        let got = be.conv2d(&x, &wt, Some(&bt), p).unwrap();
        close(
            &got.data,
            &reference_conv(&x.data, (n, c, h, w), &wv, &bv, o, k, p),
            1e-5,
            &format!("conv k{k} {p:?} {h}x{w}"),
        );
    }
}

#[test]
fn attention_matches_direct_softmax() {
    let be = Cpu::new();
    let mut rng = Rng(5);
    for (b, l, heads, hd) in
        [(2, 7, 3, 8), (1, 130, 2, 72), (3, 1, 1, 16), (1, 600, 1, 40), (1, 70, 5, 13), (1, 1100, 4, 8)]
    {
        let d = heads * hd;
        let qkv = t(&[b, l, 3 * d], &mut rng);
        let got = be.attention(&qkv, heads).unwrap();
        let mut want = vec![0f32; b * l * d];
        for bi in 0..b {
            for h in 0..heads {
                for i in 0..l {
                    let q = |j: usize| qkv.data[(bi * l + i) * 3 * d + h * hd + j] as f64;
                    let kk = |t: usize, j: usize| qkv.data[(bi * l + t) * 3 * d + d + h * hd + j] as f64;
                    let v = |t: usize, j: usize| qkv.data[(bi * l + t) * 3 * d + 2 * d + h * hd + j] as f64;
                    let s: Vec<f64> =
                        (0..l).map(|t| (0..hd).map(|j| q(j) * kk(t, j)).sum::<f64>() / (hd as f64).sqrt()).collect();
                    let m = s.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for j in 0..hd {
                        want[(bi * l + i) * d + h * hd + j] = ((0..l).map(|t| e[t] * v(t, j)).sum::<f64>() / z) as f32;
                    }
                }
            }
        }
        close(&got.data, &want, 1e-5, &format!("attention b{b} l{l} h{heads} hd{hd}"));
    }
}

#[test]
fn group_norm_and_modulated_layer_norm_match_their_formulas() {
    let be = Cpu::new();
    let mut rng = Rng(3);
    let (n, c, h, w, g) = (2, 6, 5, 3, 3);
    let x = t(&[n, c, h, w], &mut rng);
    let (gv, bv) = (rng.vec(c), rng.vec(c));
    let gamma = be.weight("g", &raw(&[c], gv.clone())).unwrap();
    let beta = be.weight("b", &raw(&[c], bv.clone())).unwrap();
    for silu in [false, true] {
        let got = be.group_norm(&x, &gamma, &beta, g, 1e-6, silu).unwrap();
        let mut want = vec![0f32; x.numel()];
        let per = c / g * h * w;
        for ni in 0..n {
            for gi in 0..g {
                let s = &x.data[(ni * g + gi) * per..][..per];
                let mean = s.iter().map(|&v| v as f64).sum::<f64>() / per as f64;
                let var = s.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / per as f64;
                for (j, v) in s.iter().enumerate() {
                    let ch = gi * (c / g) + j / (h * w);
                    let y = (*v as f64 - mean) / (var + 1e-6).sqrt() * gv[ch] as f64 + bv[ch] as f64;
                    want[(ni * g + gi) * per + j] = if silu { (y / (1.0 + (-y).exp())) as f32 } else { y as f32 };
                }
            }
        }
        close(&got.data, &want, 1e-6, "group_norm");
    }
    let (b, tk, d) = (2, 3, 10);
    let x = t(&[b, tk, d], &mut rng);
    let mods = t(&[b, 6 * d], &mut rng);
    let got = be.modulated_layer_norm(&x, &mods, 3, 4, 1e-6).unwrap();
    let mut want = vec![0f32; x.numel()];
    for r in 0..b * tk {
        let s = &x.data[r * d..(r + 1) * d];
        let mean = s.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = s.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        for i in 0..d {
            let (shift, scale) = (mods.data[(r / tk) * 6 * d + 3 * d + i], mods.data[(r / tk) * 6 * d + 4 * d + i]);
            want[r * d + i] = ((s[i] as f64 - mean) / (var + 1e-6).sqrt() * (1.0 + scale as f64) + shift as f64) as f32;
        }
    }
    close(&got.data, &want, 1e-6, "modulated_layer_norm");
}

#[test]
fn moe_routes_top_k_and_combines_unnormalised_weights() {
    let be = Cpu::new();
    let mut rng = Rng(9);
    // (40, 37, 400, 3, 2) crosses the GEMM's depth blocks and column panels; top-1 over two
    // experts sends more than a thread's share of the rows to one of them (run alone, threaded).
    for (n, d, f, e, k) in [(13, 8, 12, 5, 2), (4, 6, 4, 3, 1), (9, 4, 6, 4, 3), (40, 37, 400, 3, 2), (30, 5, 8, 2, 1)]
    {
        let x = t(&[n, d], &mut rng);
        let gate = rng.vec(e * d);
        let (w1, b1, w2, b2): (Vec<_>, Vec<_>, Vec<_>, Vec<_>) = (0..e)
            .map(|_| (rng.vec(f * d), rng.vec(f), rng.vec(d * f), rng.vec(d)))
            .fold((vec![], vec![], vec![], vec![]), |mut acc, (a, b, c, dd)| {
                acc.0.push(a);
                acc.1.push(b);
                acc.2.push(c);
                acc.3.push(dd);
                acc
            });
        let wts = || MoeWeights {
            gate: be.weight("gate", &raw(&[e, d], gate.clone())).unwrap(),
            fc1_w: w1.iter().map(|v| be.weight("", &raw(&[f, d], v.clone())).unwrap()).collect(),
            fc1_b: b1.iter().map(|v| be.weight("", &raw(&[f], v.clone())).unwrap()).collect(),
            fc2_w: w2.iter().map(|v| be.weight("", &raw(&[d, f], v.clone())).unwrap()).collect(),
            fc2_b: b2.iter().map(|v| be.weight("", &raw(&[d], v.clone())).unwrap()).collect(),
        };
        // As stored, and as prepared at load (the experts' weights packed for the GEMM).
        let (got, routing) = be.moe(&x, &wts(), k, true).unwrap();
        let (got_prepared, _) = be.moe(&x, &be.prepare_moe("moe", wts()).unwrap(), k, false).unwrap();
        let routing = routing.unwrap();
        let mut want = vec![0f32; n * d];
        for i in 0..n {
            let xi = &x.data[i * d..(i + 1) * d];
            let logits: Vec<f64> =
                (0..e).map(|ex| (0..d).map(|j| gate[ex * d + j] as f64 * xi[j] as f64).sum()).collect();
            let m = logits.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
            let p: Vec<f64> = logits.iter().map(|l| (l - m).exp() / z).collect();
            let mut order: Vec<usize> = (0..e).collect();
            order.sort_by(|a, b| p[*b].partial_cmp(&p[*a]).unwrap());
            for (slot, &ex) in order[..k].iter().enumerate() {
                assert_eq!(routing.experts[i * k + slot], ex as i64, "token {i} slot {slot}");
                let h: Vec<f64> = (0..f)
                    .map(|r| {
                        let v = b1[ex][r] as f64 + (0..d).map(|j| w1[ex][r * d + j] as f64 * xi[j] as f64).sum::<f64>();
                        0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh())
                    })
                    .collect();
                for o in 0..d {
                    let y = b2[ex][o] as f64 + (0..f).map(|r| w2[ex][o * f + r] as f64 * h[r]).sum::<f64>();
                    want[i * d + o] += (p[ex] * y) as f32;
                }
            }
        }
        close(&got.data, &want, 1e-5, &format!("moe n{n} e{e} k{k}"));
        close(&got_prepared.data, &want, 1e-5, &format!("moe n{n} e{e} k{k}, prepared"));
    }
}

#[test]
fn linear_with_fused_activations() {
    let be = Cpu::new();
    let mut rng = Rng(21);
    // The second shape crosses the GEMM's depth blocks, column panels and tasks, so the fused
    // epilogue runs on partial tiles and after the last depth block only.
    for (m, k, n) in [(17, 9, 11), (30, 400, 600)] {
        let x = t(&[m, k], &mut rng);
        let (wv, bv) = (rng.vec(n * k), rng.vec(n));
        let w = be.weight("w", &raw(&[n, k], wv.clone())).unwrap();
        let b = be.weight("b", &raw(&[n], bv.clone())).unwrap();
        for act in [Act::None, Act::Silu, Act::GeluTanh] {
            let got = be.linear(&x, &w, Some(&b), act).unwrap();
            let want: Vec<f32> = (0..m * n)
                .map(|i| {
                    let v = bv[i % n] as f64
                        + (0..k).map(|j| x.data[(i / n) * k + j] as f64 * wv[(i % n) * k + j] as f64).sum::<f64>();
                    (match act {
                        Act::None => v,
                        Act::Silu => v / (1.0 + (-v).exp()),
                        Act::GeluTanh => {
                            0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh())
                        }
                    }) as f32
                })
                .collect();
            close(&got.data, &want, 1e-6, &format!("linear {m}x{k}x{n} {act:?}"));
        }
    }
}

#[test]
fn unpatchify_and_token_layouts_round_trip() {
    let be = Cpu::new();
    let mut rng = Rng(2);
    let (b, gh, gw, p, c) = (2, 3, 4, 2, 5);
    let x = t(&[b, gh * gw, p * p * c], &mut rng);
    let img = be.unpatchify(&x, p, c, gh, gw).unwrap();
    assert_eq!(img.shape, vec![b, c, gh * p, gw * p]);
    for bi in 0..b {
        for tok in 0..gh * gw {
            for pp in 0..p {
                for q in 0..p {
                    for ci in 0..c {
                        let want = x.data[(bi * gh * gw + tok) * p * p * c + (pp * p + q) * c + ci];
                        let (y, xx) = ((tok / gw) * p + pp, (tok % gw) * p + q);
                        assert_eq!(img.data[((bi * c + ci) * gh * p + y) * gw * p + xx], want);
                    }
                }
            }
        }
    }
    let tokens = be.nchw_to_tokens(&img).unwrap();
    assert_eq!(be.tokens_to_nchw(&tokens, gh * p, gw * p).unwrap(), img);
}
