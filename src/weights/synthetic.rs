//! The fixtures' synthetic-weight rule (`fnv1a64-splitmix64-v1`): every element of a tensor is
//! a hash of the tensor's name and the element index, scaled into [offset - scale, offset + scale].
//! Full-size models can then be built without a weights file (`--model synthetic:generalist`).

use std::sync::Arc;

use rayon::prelude::*;
use serde_json::Value;

use super::{Bytes, RawTensor};
use crate::error::{Error, Result};
use crate::tensor::DType;
use crate::util::hash::fnv1a64;
use crate::util::rng::splitmix64_at;

pub const RULE: &str = "fnv1a64-splitmix64-v1";

/// The (scale, offset) table of the published generalist's shape.
pub const GENERALIST_DIT_TABLE: &str = include_str!("tables/synthetic_generalist_dit.json");
/// The (scale, offset) table of the SD-2 VAE's shape.
pub const SD2_VAE_TABLE: &str = include_str!("tables/synthetic_sd2_vae.json");

/// Element `i` of the tensor keyed `key` (the FNV-1a of its name): SplitMix64's output `i` from
/// that key, its top 24 bits as u in [0, 1), mapped to offset + scale * (2u - 1).
#[inline]
fn value(key: u64, i: u64, scale: f64, offset: f64) -> f32 {
    let z = splitmix64_at(key, i);
    let u = (z >> 40) as f64 / 16777216.0;
    // Two separately rounded f64 operations (no FMA), then one rounding to f32, as the rule says.
    let prod = std::hint::black_box(scale * (2.0 * u - 1.0));
    (offset + prod) as f32
}

/// `n` values of tensor `name` under the rule, generated in parallel.
pub fn synth(name: &str, n: usize, scale: f64, offset: f64) -> Vec<f32> {
    let key = fnv1a64(name.as_bytes());
    let mut out = vec![0f32; n];
    out.par_chunks_mut(1 << 16).enumerate().for_each(|(c, chunk)| {
        let base = (c << 16) as u64;
        for (j, x) in chunk.iter_mut().enumerate() {
            *x = value(key, base + j as u64, scale, offset);
        }
    });
    out
}

/// MAE's fixed 2-D sin-cos position embedding [grid*grid, dim], computed in f64.
/// Dims [0, D/2) encode the column, [D/2, D) the row; each half is [sin(p w_j)..., cos(p w_j)...].
pub fn sincos_pos_embed(dim: usize, grid: usize) -> Vec<f32> {
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter).map(|j| 1.0 / 10000f64.powf(j as f64 / quarter as f64)).collect();
    let mut out = vec![0f32; grid * grid * dim];
    for h in 0..grid {
        for w in 0..grid {
            let row = &mut out[(h * grid + w) * dim..][..dim];
            for (half, pos) in [(0, w as f64), (1, h as f64)] {
                let base = half * dim / 2;
                for j in 0..quarter {
                    row[base + j] = (pos * omega[j]).sin() as f32;
                    row[base + quarter + j] = (pos * omega[j]).cos() as f32;
                }
            }
        }
    }
    out
}

/// Build every tensor of a synthetic table (`{tensors: {name: {shape, scale, offset} | {shape,
/// init: "sincos"}}}`), in table order.
pub fn build_from_table(table: &Value) -> Result<Vec<(String, RawTensor)>> {
    let tensors = table
        .get("tensors")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::Weights("synthetic table has no \"tensors\" object".into()))?;
    let mut out = Vec::with_capacity(tensors.len());
    for (name, spec) in tensors {
        let shape: Vec<usize> = spec["shape"]
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect())
            .ok_or_else(|| Error::Weights(format!("synthetic table: tensor \"{name}\" has no shape")))?;
        let n: usize = shape.iter().product();
        let data = if spec.get("init").and_then(Value::as_str) == Some("sincos") {
            let (t, d) = (shape[shape.len() - 2], shape[shape.len() - 1]);
            let grid = (t as f64).sqrt().round() as usize;
            if grid * grid != t {
                return Err(Error::Weights(format!("synthetic table: \"{name}\" has {t} tokens, not a square grid")));
            }
            sincos_pos_embed(d, grid)
        } else {
            let scale = spec["scale"].as_f64();
            let offset = spec["offset"].as_f64();
            match (scale, offset) {
                (Some(s), Some(o)) => synth(name, n, s, o),
                _ => return Err(Error::Weights(format!("synthetic table: tensor \"{name}\" lacks scale/offset"))),
            }
        };
        out.push((name.clone(), RawTensor { dtype: DType::F32, shape, bytes: Bytes::F32(Arc::new(data)) }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_readme_check_values() {
        assert_eq!(fnv1a64(b"blocks.0.attn.qkv.weight"), 0xb8eed840ed199670);
        assert_eq!(
            synth("blocks.0.attn.qkv.weight", 4, 1.0, 0.0),
            vec![0.46731603145599365, -0.1981898546218872, 0.650843620300293, -0.6938408613204956]
        );
        assert_eq!(
            synth("blocks.0.adaLN_modulation.1.bias", 3, 0.2, 0.05),
            vec![0.23004066944122314, -0.0027692317962646484, -0.10803721100091934]
        );
    }
}
