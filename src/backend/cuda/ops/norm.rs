//! Normalisation: GroupNorm (optionally with SiLU) and the DiT's modulated LayerNorm.

use crate::backend::cuda::backend::{Cuda, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launch::{dim, LaunchConfig};
use crate::backend::cuda::launchers as k;
use crate::backend::{at_least, axes};
use crate::error::Result;
use crate::shape_err;
use crate::tensor::numel;

impl<D: Device> Cuda<D> {
    pub(in crate::backend::cuda) fn group_norm(
        &self,
        x: &GpuTensor<D>,
        gamma: &GpuTensor<D>,
        beta: &GpuTensor<D>,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let (n, c, hw) = {
            let s = at_least("group_norm", "input", &x.shape, 2)?;
            (s[0], s[1], numel(&s[2..]))
        };
        if groups == 0 || c % groups != 0 || numel(&gamma.shape) != c || numel(&beta.shape) != c {
            return Err(shape_err!("group_norm: {c} channels, {groups} groups, gamma {:?}", gamma.shape));
        }
        let y = self.empty(&x.shape)?;
        let cfg = LaunchConfig {
            grid: [dim("group_norm", groups)?, dim("group_norm", n)?, 1],
            block: [256, 1, 1],
            shared_bytes: 0,
        };
        let (yp, xp, gp, bp) = (self.ptr(&y), self.ptr(x), self.ptr(gamma), self.ptr(beta));
        k::group_norm(&self.dev, self.act, &cfg, yp, xp, gp, bp, c, hw, groups, eps, silu as usize)?;
        Ok(y)
    }

    pub(in crate::backend::cuda) fn modulated_layer_norm(
        &self,
        x: &GpuTensor<D>,
        mods: &GpuTensor<D>,
        shift: usize,
        scale: usize,
        eps: f32,
    ) -> Result<GpuTensor<D>> {
        // Statistics and modulation in the input's own storage type (the f32 residual stream under
        // bf16); the result is an activation.
        let mods = &self.convert(mods, x.dtype)?;
        let &[b, t, d] = x.shape.as_slice() else {
            return Err(shape_err!("layer_norm: input {:?} must be [B, T, D]", x.shape));
        };
        let [mb, m] = axes("layer_norm", "modulation", &mods.shape)?;
        if mb != b || (shift.max(scale) + 1) * d > m {
            return Err(shape_err!("layer_norm: modulation {:?} does not fit input {:?}", mods.shape, x.shape));
        }
        let y = self.empty_as(&x.shape, x.dtype)?;
        let shared = dim("layer_norm", d * 4)?;
        if shared > 48 * 1024 {
            self.dev.set_max_dynamic_shared(&Self::entry("layer_norm_modulate", x.dtype), shared)?;
        }
        let base = self.ptr(mods);
        let cfg = LaunchConfig { grid: [dim("layer_norm", b * t)?, 1, 1], block: [128, 1, 1], shared_bytes: shared };
        let (shift, scale) = (base.offset(shift * d * mods.dtype.size()), base.offset(scale * d * mods.dtype.size()));
        k::layer_norm_modulate(&self.dev, x.dtype, &cfg, self.ptr(&y), self.ptr(x), shift, scale, t, d, m, eps)?;
        self.act_of(&y)
    }
}
