//! Element-wise ops: activations, add, scale, and the gated residual add.

use crate::backend::cuda::backend::{Cuda, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launch::{blocks_for, count, int, Arg, LaunchConfig, THREADS};
use crate::backend::Act;
use crate::error::Result;
use crate::shape_err;
use crate::tensor::numel;

impl<D: Device> Cuda<D> {
    pub(in crate::backend::cuda) fn elementwise(&self, kernel: &str, x: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        let n = numel(&x.shape);
        let y = self.empty(&x.shape)?;
        self.dev.launch(
            kernel,
            &LaunchConfig::linear(blocks_for(n), THREADS),
            &[self.ptr(&y), self.ptr(x), count(kernel, n)?],
        )?;
        Ok(y)
    }

    pub(in crate::backend::cuda) fn act(&self, x: &GpuTensor<D>, act: Act) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        match act {
            Act::None => Ok(x.clone()),
            Act::Silu => self.elementwise(&self.k("silu"), x),
            Act::GeluTanh => self.elementwise(&self.k("gelu_tanh"), x),
        }
    }

    pub(in crate::backend::cuda) fn add(&self, a: &GpuTensor<D>, b: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        let (a, b) = (&self.act_of(a)?, &self.act_of(b)?);
        if a.shape != b.shape {
            return Err(shape_err!("add: shapes {:?} and {:?} differ", a.shape, b.shape));
        }
        let n = numel(&a.shape);
        let y = self.empty(&a.shape)?;
        self.grid_stride(&self.k("add"), n, &[self.ptr(&y), self.ptr(a), self.ptr(b), count("add", n)?])?;
        Ok(y)
    }

    pub(in crate::backend::cuda) fn scale(&self, x: &GpuTensor<D>, s: f32) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let n = numel(&x.shape);
        let y = self.empty(&x.shape)?;
        self.grid_stride(&self.k("scale"), n, &[self.ptr(&y), self.ptr(x), Arg::F32(s), count("scale", n)?])?;
        Ok(y)
    }

    pub(in crate::backend::cuda) fn gated_add(
        &self,
        x: &mut GpuTensor<D>,
        y: &GpuTensor<D>,
        mods: &GpuTensor<D>,
        gate: usize,
    ) -> Result<()> {
        // The residual stream keeps its own storage type (f32 under bf16, as autocast keeps it).
        let (y, mods) = (&self.convert(y, x.dtype)?, &self.convert(mods, x.dtype)?);
        let kernel = format!("gated_add_{}", x.dtype.name());
        if x.shape != y.shape || x.shape.len() != 3 {
            return Err(shape_err!("gated_add: shapes {:?} and {:?}", x.shape, y.shape));
        }
        let (b, t, d) = (x.shape[0], x.shape[1], x.shape[2]);
        let m = *mods.shape.last().unwrap_or(&0);
        if (gate + 1) * d > m {
            return Err(shape_err!("gated_add: chunk {gate} of width {d} is outside modulation {:?}", mods.shape));
        }
        // In place: `x` is the residual stream, owned by the forward pass.
        let i = |v: usize| int("gated_add", v);
        self.grid_stride(
            &kernel,
            b * t * d,
            &[self.ptr(x), self.ptr(y), self.ptr(mods), i(b)?, i(t)?, i(d)?, i(m)?, i(gate * d)?],
        )
    }
}
