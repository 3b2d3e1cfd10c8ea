//! Softmax attention over packed qkv: tensor-core tiles (fast, bf16), warp tiles for head
//! dims of whole 8s up to 128, or the wide kernel for any head dim.

use crate::backend::cuda::backend::{Cuda, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launch::{dim, LaunchConfig};
use crate::backend::cuda::launchers as k;
use crate::error::Result;
use crate::shape_err;
use crate::tensor::DType;

impl<D: Device> Cuda<D> {
    pub(in crate::backend::cuda) fn attention(&self, qkv: &GpuTensor<D>, heads: usize) -> Result<GpuTensor<D>> {
        let qkv = &self.act_of(qkv)?;
        let &[b, l, d3] = qkv.shape.as_slice() else {
            return Err(shape_err!("attention: qkv {:?} must be [B, L, 3D]", qkv.shape));
        };
        if heads == 0 || d3 % (3 * heads) != 0 {
            return Err(shape_err!("attention: qkv width {d3} is not 3 x {heads} heads"));
        }
        let hd = d3 / 3 / heads;
        let y = self.empty(&[b, l, heads * hd])?;
        let (yp, qp, scale) = (self.ptr(&y), self.ptr(qkv), 1.0 / (hd as f32).sqrt());
        if self.fast && self.act == DType::BF16 && hd % 8 == 0 && hd <= 128 {
            // Tensor cores: 64 query rows a block; Q, K and V tiles of 64 rows in dynamic shared.
            let shared = dim("attention", 3 * 64 * (hd.next_multiple_of(16) + 8) * 2)?;
            if shared > 48 * 1024 {
                self.dev.set_max_dynamic_shared("attention_tc_bf16", shared)?;
            }
            let cfg = LaunchConfig {
                grid: [dim("attention", l.div_ceil(64))?, dim("attention", heads)?, dim("attention", b)?],
                block: [128, 1, 1],
                shared_bytes: shared,
            };
            k::attention_tc_bf16(&self.dev, &cfg, yp, qp, l, heads, hd, scale)?;
        } else if hd % 8 == 0 && hd <= 128 {
            let cfg = LaunchConfig {
                grid: [dim("attention", l.div_ceil(16))?, dim("attention", heads)?, dim("attention", b)?],
                block: [128, 1, 1],
                shared_bytes: 0,
            };
            k::attention(&self.dev, self.act, &cfg, yp, qp, l, heads, hd, scale)?;
        } else {
            let shared = dim("attention", 4 * (l + hd))?;
            if shared > 48 * 1024 {
                self.dev.set_max_dynamic_shared(&Self::entry("attention_wide", self.act), shared)?;
            }
            let cfg = LaunchConfig {
                grid: [dim("attention", l)?, dim("attention", heads)?, dim("attention", b)?],
                block: [256, 1, 1],
                shared_bytes: shared,
            };
            k::attention_wide(&self.dev, self.act, &cfg, yp, qp, l, heads, hd, scale)?;
        }
        Ok(y)
    }
}
