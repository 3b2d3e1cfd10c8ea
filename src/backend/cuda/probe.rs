//! The emulator's warp-level primitives against a real GPU's: the same probe kernels
//! (kernels/primitives.cu) on both devices with the same random fragments. A fragment-layout
//! error shows as an O(1) difference; accumulation order only as f32 rounding.

use super::device::Device;
use super::launch::LaunchConfig;
use super::launchers::{self as k, DevPtr};
use crate::error::{Error, Result};
use crate::util::rng::SplitMix64;

/// One probe's comparison.
#[derive(Clone, Debug)]
pub struct ProbeResult {
    pub probe: &'static str,
    /// Largest |a - b| / max(1, |b|) over the outputs (bit patterns compared exactly for ldmatrix).
    pub max_diff: f64,
    pub pass: bool,
}

fn run<D: Device>(dev: &D, kernel: &str, out_bytes: usize, inputs: &[&[u8]]) -> Result<Vec<u8>> {
    let out = dev.alloc(out_bytes)?;
    let bufs = inputs.iter().map(|b| dev.upload(b)).collect::<Result<Vec<_>>>()?;
    let (o, ins) = (DevPtr::of(dev, &out), bufs.iter().map(|b| DevPtr::of(dev, b)).collect::<Vec<_>>());
    let cfg = LaunchConfig::linear(1, 32);
    match (kernel, ins.as_slice()) {
        ("probe_mma_bf16", &[a, b, c]) => k::probe_mma_bf16(dev, &cfg, o, a, b, c)?,
        ("probe_mma_f16", &[a, b, c]) => k::probe_mma_f16(dev, &cfg, o, a, b, c)?,
        ("probe_ldmatrix_b16", &[src]) => k::probe_ldmatrix_b16(dev, &cfg, o, src)?,
        _ => return Err(Error::Cuda(format!("probe: no launch for {kernel} with {} inputs", ins.len()))),
    }
    Ok(dev.download(&out)?[..out_bytes].to_vec())
}

/// Run every probe on `a` and `b` with fragments drawn from `seed`; `b` is the reference.
pub fn compare<A: Device, B: Device>(a: &A, b: &B, seed: u64) -> Result<Vec<ProbeResult>> {
    let mut rng = SplitMix64(seed);
    let mut results = Vec::new();
    for (probe, bits) in [
        ("probe_mma_bf16", (|x: f32| half::bf16::from_f32(x).to_bits()) as fn(f32) -> u16),
        ("probe_mma_f16", |x: f32| half::f16::from_f32(x).to_bits()),
    ] {
        let mut pack = |n: usize| -> Vec<u32> {
            (0..n).map(|_| bits(rng.uniform()) as u32 | (bits(rng.uniform()) as u32) << 16).collect()
        };
        let (fa, fb) = (pack(128), pack(64));
        let fc: Vec<f32> = (0..128).map(|_| rng.uniform()).collect();
        let inputs: [&[u8]; 3] = [bytemuck::cast_slice(&fa), bytemuck::cast_slice(&fb), bytemuck::cast_slice(&fc)];
        let ga: Vec<f32> = bytemuck::pod_collect_to_vec(&run(a, probe, 512, &inputs)?);
        let gb: Vec<f32> = bytemuck::pod_collect_to_vec(&run(b, probe, 512, &inputs)?);
        let max_diff = ga
            .iter()
            .zip(&gb)
            .map(|(x, y)| (*x as f64 - *y as f64).abs() / (*y as f64).abs().max(1.0))
            .fold(0.0, f64::max);
        results.push(ProbeResult { probe, max_diff, pass: max_diff < 1e-5 });
    }
    let src: Vec<u16> = (0..256).map(|_| rng.next_u64() as u16).collect();
    let inputs: [&[u8]; 1] = [bytemuck::cast_slice(&src)];
    let (ga, gb) =
        (run(a, "probe_ldmatrix_b16", 4 * 32 * 11, &inputs)?, run(b, "probe_ldmatrix_b16", 4 * 32 * 11, &inputs)?);
    let differing = ga.chunks_exact(4).zip(gb.chunks_exact(4)).filter(|(x, y)| x != y).count();
    results.push(ProbeResult { probe: "probe_ldmatrix_b16", max_diff: differing as f64, pass: differing == 0 });
    Ok(results)
}
