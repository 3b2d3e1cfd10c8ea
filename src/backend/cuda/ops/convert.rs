//! Storage-type conversion (f32 <-> bf16) on the device.

use crate::backend::cuda::backend::{Cuda, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launchers as k;
use crate::error::Result;
use crate::tensor::{numel, DType};

impl<D: Device> Cuda<D> {
    /// `t` in the activation storage type (converted on the device when it differs).
    pub(in crate::backend::cuda) fn act_of(&self, t: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        self.convert(t, self.act)
    }

    pub(in crate::backend::cuda) fn convert(&self, t: &GpuTensor<D>, to: DType) -> Result<GpuTensor<D>> {
        if t.dtype == to {
            return Ok(t.clone());
        }
        let n = numel(&t.shape);
        let y = self.empty_as(&t.shape, to)?;
        let cfg = self.stride(n);
        if to == DType::BF16 {
            k::convert_f32_to_bf16(&self.dev, &cfg, self.ptr(&y), self.ptr(t), n)?;
        } else {
            k::convert_bf16_to_f32(&self.dev, &cfg, self.ptr(&y), self.ptr(t), n)?;
        }
        Ok(y)
    }
}
