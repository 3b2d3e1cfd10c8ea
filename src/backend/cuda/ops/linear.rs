//! Linear layers (GEMM with fused bias and activation), and the GEMM whose epilogue is the
//! DiT block's gated residual add: simple tiles, bf16 tensor-core tiles, or (fast) 128x128 tiles.

use crate::backend::cuda::backend::{Cuda, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launch::{checked, dim, LaunchConfig};
use crate::backend::cuda::launchers as k;
use crate::backend::{axes, Act};
use crate::error::Result;
use crate::shape_err;
use crate::tensor::{numel, DType};

impl<D: Device> Cuda<D> {
    pub(in crate::backend::cuda) fn linear(
        &self,
        x: &GpuTensor<D>,
        w: &GpuTensor<D>,
        b: Option<&GpuTensor<D>>,
        act: Act,
    ) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let k = *x.shape.last().unwrap_or(&0);
        if x.shape.is_empty() || w.shape.len() != 2 || w.shape[1] != k {
            return Err(shape_err!("linear: input {:?} does not fit weight {:?}", x.shape, w.shape));
        }
        let (m, n) = (numel(&x.shape) / k.max(1), w.shape[0]);
        if let Some(b) = b.filter(|b| numel(&b.shape) != n) {
            return Err(shape_err!("linear: bias {:?} does not fit weight {:?}", b.shape, w.shape));
        }
        // Sizes and grid checked before anything is allocated.
        for v in [m, n, k] {
            checked::<i32>("linear", "size", v)?;
        }
        let tc = self.tc128(k);
        let tile = if tc { 128 } else { 32 };
        let grid = [dim("linear", n.div_ceil(tile))?, dim("linear", m.div_ceil(tile))?, 1];
        let mut shape = x.shape.clone();
        *shape.last_mut().unwrap() = n;
        let y = self.empty(&shape)?;
        let (yp, xp, wp, bias) = (self.ptr(&y), self.ptr(x), self.ptr(w), self.ptr_or_null(b));
        let gelu = (act == Act::GeluTanh) as usize;
        if tc {
            let cfg = LaunchConfig { grid, block: [256, 1, 1], shared_bytes: 0 };
            k::gemm_tc128_bf16(&self.dev, &cfg, yp, xp, wp, bias, m, n, k, gelu, 1)?;
        } else if self.act == DType::BF16 {
            // Tensor cores: bf16 operands, f32 accumulation, bf16 output.
            let cfg = LaunchConfig { grid, block: [128, 1, 1], shared_bytes: 0 };
            k::gemm_mma_bf16(&self.dev, &cfg, yp, xp, wp, bias, m, n, k, gelu, 1)?;
        } else {
            let cfg = LaunchConfig { grid, block: [256, 1, 1], shared_bytes: 0 };
            k::gemm_f32(&self.dev, &cfg, yp, xp, wp, bias, m, n, k, gelu)?;
        }
        if act == Act::Silu {
            return self.elementwise(Act::Silu, &y);
        }
        Ok(y)
    }

    pub(in crate::backend::cuda) fn linear_gated_add(
        &self,
        x: &mut GpuTensor<D>,
        a: &GpuTensor<D>,
        w: &GpuTensor<D>,
        b: Option<&GpuTensor<D>>,
        mods: &GpuTensor<D>,
        gate: usize,
    ) -> Result<()> {
        let k = *a.shape.last().unwrap_or(&0);
        if !self.tc128(k) || x.dtype != DType::F32 {
            let y = self.linear(a, w, b, Act::None)?;
            return self.gated_add(x, &y, mods, gate);
        }
        let (a, mods) = (&self.act_of(a)?, &self.convert(mods, DType::F32)?);
        let &[bsz, t, d] = x.shape.as_slice() else {
            return Err(shape_err!("linear_gated_add: x {:?} must be [B, T, D]", x.shape));
        };
        let [mb, m] = axes("linear_gated_add", "modulation", &mods.shape)?;
        let bias_fits = b.is_none_or(|b| numel(&b.shape) == d);
        if w.shape != [d, k] || numel(&a.shape) != bsz * t * k || mb != bsz || (gate + 1) * d > m || !bias_fits {
            return Err(shape_err!(
                "linear_gated_add: x {:?}, input {:?}, weight {:?}, modulation {:?} (chunk {gate}) do not fit",
                x.shape,
                a.shape,
                w.shape,
                mods.shape
            ));
        }
        let rows = bsz * t;
        let gate_ptr = self.ptr(mods).offset(gate * d * 4);
        let cfg = LaunchConfig {
            grid: [dim("linear_gated_add", d.div_ceil(128))?, dim("linear_gated_add", rows.div_ceil(128))?, 1],
            block: [256, 1, 1],
            shared_bytes: 0,
        };
        let (xp, ap, wp, bias) = (self.ptr(x), self.ptr(a), self.ptr(w), self.ptr_or_null(b));
        k::gemm_gated_add_tc128_bf16(&self.dev, &cfg, xp, ap, wp, bias, rows, d, k, gate_ptr, t, m)
    }
}
