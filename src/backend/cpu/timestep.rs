//! The sinusoidal timestep features of the DiT's timestep embedder: the CPU twin of the
//! `timestep_features` kernel (kernels/embed.cu), and what `Backend::timestep_features` computes.

use crate::tensor::Tensor;

/// Width of the sinusoidal timestep features.
pub const FREQ_DIM: usize = 256;

/// `[cos(t f), sin(t f)]` with `f_i = exp(-ln(10000) i / 128)`, in f32 as the authors compute it.
pub fn timestep_features(t: &[f32]) -> Tensor {
    let half = FREQ_DIM / 2;
    let freqs: Vec<f32> = (0..half).map(|i| (-(10000f64.ln() as f32) * i as f32 / half as f32).exp()).collect();
    let mut data = Vec::with_capacity(t.len() * FREQ_DIM);
    for &tv in t {
        let args: Vec<f32> = freqs.iter().map(|f| tv * f).collect();
        data.extend(args.iter().map(|a| (*a as f64).cos() as f32));
        data.extend(args.iter().map(|a| (*a as f64).sin() as f32));
    }
    Tensor { shape: vec![t.len(), FREQ_DIM], data }
}
