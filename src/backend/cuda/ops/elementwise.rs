//! Element-wise ops: activations, add, scale, and the gated residual add.

use crate::backend::cuda::backend::{Cuda, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launchers as k;
use crate::backend::{axes, Act};
use crate::error::Result;
use crate::shape_err;
use crate::tensor::numel;

impl<D: Device> Cuda<D> {
    /// `act` of `x` (already in the activation type): a new tensor, or `x` itself for `None`.
    pub(in crate::backend::cuda) fn elementwise(&self, act: Act, x: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        if act == Act::None {
            return Ok(x.clone());
        }
        let n = numel(&x.shape);
        let y = self.empty(&x.shape)?;
        let (cfg, yp, xp) = (self.stride(n), self.ptr(&y), self.ptr(x));
        if act == Act::Silu {
            k::silu(&self.dev, self.act, &cfg, yp, xp, n)?;
        } else {
            k::gelu_tanh(&self.dev, self.act, &cfg, yp, xp, n)?;
        }
        Ok(y)
    }

    pub(in crate::backend::cuda) fn act(&self, x: &GpuTensor<D>, act: Act) -> Result<GpuTensor<D>> {
        self.elementwise(act, &self.act_of(x)?)
    }

    pub(in crate::backend::cuda) fn add(&self, a: &GpuTensor<D>, b: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        let (a, b) = (&self.act_of(a)?, &self.act_of(b)?);
        if a.shape != b.shape {
            return Err(shape_err!("add: shapes {:?} and {:?} differ", a.shape, b.shape));
        }
        let n = numel(&a.shape);
        let y = self.empty(&a.shape)?;
        k::add(&self.dev, self.act, &self.stride(n), self.ptr(&y), self.ptr(a), self.ptr(b), n)?;
        Ok(y)
    }

    pub(in crate::backend::cuda) fn scale(&self, x: &GpuTensor<D>, s: f32) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let n = numel(&x.shape);
        let y = self.empty(&x.shape)?;
        k::scale(&self.dev, self.act, &self.stride(n), self.ptr(&y), self.ptr(x), s, n)?;
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
        if x.shape != y.shape || x.shape.len() != 3 {
            return Err(shape_err!("gated_add: shapes {:?} and {:?}", x.shape, y.shape));
        }
        let (b, t, d) = (x.shape[0], x.shape[1], x.shape[2]);
        let [mb, m] = axes("gated_add", "modulation", &mods.shape)?;
        if mb != b || (gate + 1) * d > m {
            return Err(shape_err!(
                "gated_add: chunk {gate} of width {d} for {b} samples is outside modulation {:?}",
                mods.shape
            ));
        }
        // In place: `x` is the residual stream, owned by the forward pass.
        let cfg = self.stride(b * t * d);
        k::gated_add(&self.dev, x.dtype, &cfg, self.ptr(x), self.ptr(y), self.ptr(mods), b, t, d, m, gate * d)
    }
}
