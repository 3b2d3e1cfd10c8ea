//! Shared helpers: seeded inputs and parameters for the CPU backend.

pub mod attention;
pub mod conv;
pub mod ddim;
pub mod device;
pub mod gemm;
pub mod gemm_bf16;
pub mod linear;
pub mod moe;
pub mod norm;

use std::sync::Arc;

use percept::backend::cpu::{Cpu, CpuWeight};
use percept::backend::Backend;
use percept::tensor::{DType, Tensor};
use percept::weights::{Bytes, RawTensor};

/// The device prefix of the CPU backend's bench ids (device.rs benches the CUDA backend).
pub const DEVICE: &str = "cpu";

/// `n` values uniform in [-scale, scale), from a fixed-seed xorshift (no data files needed).
pub fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

pub fn tensor(shape: &[usize], seed: u64) -> Tensor {
    Tensor::new(shape.to_vec(), values(shape.iter().product(), seed, 1.0)).expect("shape and data agree")
}

/// A parameter of `shape` with values scaled like a fan-in initialisation.
pub fn weight(be: &Cpu, shape: &[usize], seed: u64) -> CpuWeight {
    let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
    let data = values(shape.iter().product(), seed, 1.0 / (fan_in as f32).sqrt());
    let raw = RawTensor { dtype: DType::F32, shape: shape.to_vec(), bytes: Bytes::F32(Arc::new(data)) };
    be.weight("bench", &raw).expect("f32 weight")
}
