//! Linear layers (GEMM with fused bias and activation), and the GEMM whose epilogue is the
//! DiT block's gated residual add: simple tiles, bf16 tensor-core tiles, or (fast) 128x128 tiles.

use crate::backend::cuda::backend::{Cuda, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launch::{dim, int, Arg, LaunchConfig};
use crate::backend::Act;
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
        if w.shape.len() != 2 || w.shape[1] != k {
            return Err(shape_err!("linear: input {:?} does not fit weight {:?}", x.shape, w.shape));
        }
        let (m, n) = (numel(&x.shape) / k.max(1), w.shape[0]);
        // Sizes and grid checked before anything is allocated.
        let (mi, ni, ki) = (int("linear", m)?, int("linear", n)?, int("linear", k)?);
        let tc = self.tc128(k);
        let tile = if tc { 128 } else { 32 };
        let grid = [dim("linear", n.div_ceil(tile))?, dim("linear", m.div_ceil(tile))?, 1];
        let mut shape = x.shape.clone();
        *shape.last_mut().unwrap() = n;
        let y = self.empty(&shape)?;
        let bias = b.map_or(Arg::Ptr(0), |b| self.ptr(b));
        let gelu = Arg::I32((act == Act::GeluTanh) as i32);
        let args = [self.ptr(&y), self.ptr(x), self.ptr(w), bias, mi, ni, ki, gelu, Arg::I32(1)];
        if tc {
            let cfg = LaunchConfig { grid, block: [256, 1, 1], shared_bytes: 0 };
            self.dev.launch("gemm_bf16_tc128", &cfg, &args)?;
        } else if self.act == DType::BF16 {
            // Tensor cores: bf16 operands, f32 accumulation, bf16 output.
            let cfg = LaunchConfig { grid, block: [128, 1, 1], shared_bytes: 0 };
            self.dev.launch("gemm_bf16_mma", &cfg, &args)?;
        } else {
            let cfg = LaunchConfig { grid, block: [256, 1, 1], shared_bytes: 0 };
            self.dev.launch("gemm_f32", &cfg, &args[..8])?;
        }
        if act == Act::Silu {
            return self.elementwise(&self.k("silu"), &y);
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
        let m = *mods.shape.last().unwrap_or(&0);
        if w.shape != [d, k] || numel(&a.shape) != bsz * t * k || mods.shape[0] != bsz || (gate + 1) * d > m {
            return Err(shape_err!(
                "linear_gated_add: x {:?}, input {:?}, weight {:?}, modulation {:?} (chunk {gate}) do not fit",
                x.shape,
                a.shape,
                w.shape,
                mods.shape
            ));
        }
        let rows = bsz * t;
        let i = |v: usize| int("linear_gated_add", v);
        let gate_ptr = Arg::Ptr(self.dev.address(mods.buf.buffer()) + (gate * d * 4) as u64);
        let cfg = LaunchConfig {
            grid: [dim("linear_gated_add", d.div_ceil(128))?, dim("linear_gated_add", rows.div_ceil(128))?, 1],
            block: [256, 1, 1],
            shared_bytes: 0,
        };
        let bias = b.map_or(Arg::Ptr(0), |b| self.ptr(b));
        let args = [self.ptr(x), self.ptr(a), self.ptr(w), bias, i(rows)?, i(d)?, i(k)?, gate_ptr, i(t)?, i(m)?];
        self.dev.launch("gemm_bf16_tc128_gated_add", &cfg, &args)
    }
}
