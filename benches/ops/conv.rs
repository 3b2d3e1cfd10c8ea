//! Every distinct convolution of the SD-2 VAE at a 512x512 image (encoder and decoder), and the
//! 3x3 convs once more through the im2col + `gemm` crate path for comparison.

use criterion::{black_box, Criterion, Throughput};
use percept::backend::cpu::conv::conv2d_image_with;
use percept::backend::cpu::gemm::Engine;
use percept::backend::cpu::Cpu;
use percept::backend::{Backend, Conv2d};

use super::{tensor, weight, DEVICE};

/// (stage, in channels, out channels, input side, kernel, params).
pub const STAGES: &[(&str, usize, usize, usize, usize, Conv2d)] = &[
    ("enc_conv_in", 3, 128, 512, 3, Conv2d::same3x3()),
    ("res", 128, 128, 512, 3, Conv2d::same3x3()),
    ("down", 128, 128, 512, 3, Conv2d::down3x3()),
    ("res_in", 128, 256, 256, 3, Conv2d::same3x3()),
    ("res", 256, 256, 256, 3, Conv2d::same3x3()),
    ("down", 256, 256, 256, 3, Conv2d::down3x3()),
    ("res", 512, 512, 128, 3, Conv2d::same3x3()),
    ("down", 512, 512, 128, 3, Conv2d::down3x3()),
    ("res", 512, 512, 64, 3, Conv2d::same3x3()),
    ("dec_conv_in", 4, 512, 64, 3, Conv2d::same3x3()),
    ("res_in", 512, 256, 256, 3, Conv2d::same3x3()),
    ("res_in", 256, 128, 512, 3, Conv2d::same3x3()),
    ("shortcut", 256, 128, 512, 1, Conv2d::pointwise()),
    ("dec_conv_out", 128, 3, 512, 3, Conv2d::same3x3()),
];

pub fn name(stage: &str, c: usize, o: usize, hw: usize, k: usize, p: Conv2d) -> String {
    format!("{stage}_{k}x{k}s{}_c{c}_o{o}_{hw}x{hw}", p.stride)
}

pub fn flops(c: usize, o: usize, hw: usize, k: usize, p: Conv2d) -> u64 {
    let ohw = (hw + p.pad[0] + p.pad[2] - k) / p.stride + 1;
    2 * (o * c * k * k * ohw * ohw) as u64
}

pub fn bench(c: &mut Criterion) {
    let be = Cpu::new();
    let mut g = c.benchmark_group(format!("{DEVICE}/conv2d"));
    for &(stage, ci, o, hw, k, p) in STAGES {
        let x = tensor(&[1, ci, hw, hw], 20);
        let w = weight(&be, &[o, ci, k, k], 21);
        let b = weight(&be, &[o], 22);
        g.throughput(Throughput::Elements(flops(ci, o, hw, k, p)));
        g.bench_function(name(stage, ci, o, hw, k, p), |bch| {
            bch.iter(|| black_box(be.conv2d(&x, &w, Some(&b), p).expect("conv2d")))
        });
    }
    g.finish();
    // The previous path (im2col in bands + the `gemm` crate) at the 3x3 shapes that dominate.
    let mut g = c.benchmark_group(format!("{DEVICE}/conv2d_im2col_gemm_crate"));
    for &(stage, ci, o, hw, k, p) in STAGES.iter().filter(|s| s.1 >= 128 && s.4 == 3) {
        let x = tensor(&[ci, hw, hw], 20);
        let w = weight(&be, &[o, ci, k, k], 21);
        let b = weight(&be, &[o], 22);
        let ohw = (hw + p.pad[0] + p.pad[2] - k) / p.stride + 1;
        let mut out = vec![0f32; o * ohw * ohw];
        g.throughput(Throughput::Elements(flops(ci, o, hw, k, p)));
        g.bench_function(name(stage, ci, o, hw, k, p), |bch| {
            bch.iter(|| {
                conv2d_image_with(
                    Engine::GemmCrate,
                    &x.data,
                    ci,
                    hw,
                    hw,
                    w.data(),
                    Some(b.data()),
                    o,
                    k,
                    k,
                    p,
                    &mut out,
                );
                black_box(&out);
            })
        });
    }
    g.finish();
}
