//! 2-D convolution as a GEMM over the column matrix. With the AVX-512 engine the GEMM packs its
//! operand straight from the image (implicit GEMM: no column buffer); otherwise im2col runs a
//! band of output rows at a time so the buffer stays small (a 512x512x128 3x3 conv would need
//! 1.2 GB in one piece).

use rayon::prelude::*;

use super::gemm::{matmul_with, Engine, Mat};
use crate::backend::Conv2d;

/// Column-buffer budget per band, in f32 values.
const BAND_VALUES: usize = 1 << 21;

/// x [C, H, W] (one image) -> out [O, OH, OW]; w [O, C*kh*kw]; bias [O], on a chosen GEMM
/// engine (the backend's, or the benchmarks' comparison).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_image_with(
    engine: Engine,
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    o: usize,
    kh: usize,
    kw: usize,
    p: Conv2d,
    out: &mut [f32],
) {
    let [pt, pl, pb, pr] = p.pad;
    let oh = (h + pt + pb - kh) / p.stride + 1;
    let ow = (w + pl + pr - kw) / p.stride + 1;
    let ck = c * kh * kw;
    let plane = oh * ow;
    // Pointwise conv: the input already is the column matrix.
    if kh == 1 && kw == 1 && p.stride == 1 && p.pad == [0; 4] {
        matmul_with(engine, o, plane, c, Mat::rows(weight, c), Mat::rows(x, plane), out, plane, false, true);
    } else if cfg!(target_arch = "x86_64") && engine != Engine::GemmCrate {
        #[cfg(target_arch = "x86_64")]
        {
            use super::gemm_avx512::{ConvRhs, Rhs};
            assert!(x.len() >= c * h * w && weight.len() >= o * ck && out.len() >= o * plane, "conv: short buffers");
            // The bias goes in first so the product accumulates onto it (no second pass).
            if let Some(b) = bias {
                out[..o * plane].par_chunks_mut(plane).zip(b.par_iter()).for_each(|(row, &b)| row.fill(b));
            }
            let rhs = ConvRhs { x, h, w, kh, kw, stride: p.stride, pad_top: pt, pad_left: pl, ow };
            let threads = super::gemm::threads(o, plane, ck, true);
            let product = match engine {
                Engine::Amx => super::gemm_amx::matmul,
                Engine::AmxBf16Values => super::gemm_amx::matmul_bf16_values,
                _ => super::gemm_avx512::matmul,
            };
            product(o, plane, ck, Mat::rows(weight, ck), Rhs::Conv(rhs), out, plane, bias.is_some(), threads);
            return;
        }
    } else {
        let band = (BAND_VALUES / (ck * ow).max(1)).clamp(1, oh);
        let mut col = vec![0f32; ck * band * ow];
        let mut y0 = 0;
        while y0 < oh {
            let rows = band.min(oh - y0);
            let n = rows * ow;
            // col[(ci, ky, kx), (y, x)] = x[ci, y*s + ky - pt, x*s + kx - pl] (0 outside).
            col[..ck * n].par_chunks_mut(n).enumerate().for_each(|(r, dst)| {
                let ci = r / (kh * kw);
                let ky = (r / kw) % kh;
                let kx = r % kw;
                let src = &x[ci * h * w..(ci + 1) * h * w];
                for yy in 0..rows {
                    let iy = ((y0 + yy) * p.stride + ky) as isize - pt as isize;
                    let d = &mut dst[yy * ow..(yy + 1) * ow];
                    if iy < 0 || iy >= h as isize {
                        d.fill(0.0);
                        continue;
                    }
                    let srow = &src[iy as usize * w..(iy as usize + 1) * w];
                    for (xx, v) in d.iter_mut().enumerate() {
                        let ix = (xx * p.stride + kx) as isize - pl as isize;
                        *v = if ix >= 0 && ix < w as isize { srow[ix as usize] } else { 0.0 };
                    }
                }
            });
            matmul_with(
                engine,
                o,
                n,
                ck,
                Mat::rows(weight, ck),
                Mat::rows(&col[..ck * n], n),
                &mut out[y0 * ow..],
                plane,
                false,
                true,
            );
            y0 += rows;
        }
    }
    if let Some(b) = bias {
        out.par_chunks_mut(plane).zip(b.par_iter()).for_each(|(row, b)| row.iter_mut().for_each(|v| *v += b));
    }
}

/// Output size of a convolution.
pub fn out_size(h: usize, w: usize, kh: usize, kw: usize, p: Conv2d) -> Option<(usize, usize)> {
    let [pt, pl, pb, pr] = p.pad;
    if h + pt + pb < kh || w + pl + pr < kw || p.stride == 0 {
        return None;
    }
    Some(((h + pt + pb - kh) / p.stride + 1, (w + pl + pr - kw) / p.stride + 1))
}
