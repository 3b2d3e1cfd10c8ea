//! The DDIM step on the device: with scalar coefficients, or in place with coefficients read
//! from a device tensor (the captured denoising loop).

use crate::backend::cuda::backend::{Cuda, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launchers::{self as k, DevPtr};
use crate::backend::Backend as _;
use crate::error::Result;
use crate::shape_err;
use crate::tensor::{numel, DType};

impl<D: Device> Cuda<D> {
    pub(in crate::backend::cuda) fn ddim_step(
        &self,
        pred: &GpuTensor<D>,
        sample: &GpuTensor<D>,
        c: &crate::backend::ddim::StepCoefficients,
    ) -> Result<GpuTensor<D>> {
        use crate::backend::ddim::PredictionType;
        if pred.shape != sample.shape {
            return Err(shape_err!("ddim_step: prediction {:?} and sample {:?} differ", pred.shape, sample.shape));
        }
        if c.clip.is_some() {
            // clip_sample is off in every SD-2 config; the rare config with it steps on the host.
            let prev = self.cpu.ddim_step(&self.to_host(pred)?, &self.to_host(sample)?, c)?;
            return self.from_host(&prev);
        }
        let (pred, sample) = (&self.convert(pred, DType::F32)?, &self.convert(sample, DType::F32)?);
        let n = numel(&sample.shape);
        let y = self.empty_as(&sample.shape, DType::F32)?;
        let kind = match c.prediction_type {
            PredictionType::Epsilon => 0,
            PredictionType::VPrediction => 1,
            PredictionType::Sample => 2,
        };
        let (sa, soma) = (c.sqrt_alpha, c.sqrt_one_minus_alpha);
        let (c_x0, c_eps) = (c.sqrt_alpha_prev, c.sqrt_one_minus_alpha_prev);
        let (yp, pp, sp) = (self.ptr(&y), self.ptr(pred), self.ptr(sample));
        k::ddim_step_f32(&self.dev, &self.stride(n), yp, DevPtr::NULL, pp, sp, n, kind, sa, soma, c_x0, c_eps)?;
        Ok(y)
    }

    pub(in crate::backend::cuda) fn ddim_step_in_place(
        &self,
        pred: &GpuTensor<D>,
        sample: &mut GpuTensor<D>,
        coefs: &GpuTensor<D>,
        prediction_type: crate::backend::ddim::PredictionType,
    ) -> Result<()> {
        use crate::backend::ddim::PredictionType;
        if pred.shape != sample.shape || sample.dtype != DType::F32 {
            return Err(shape_err!(
                "ddim_step: prediction {:?} and f32 sample {:?} {:?} must match",
                pred.shape,
                sample.dtype,
                sample.shape
            ));
        }
        if coefs.dtype != DType::F32 || numel(&coefs.shape) != 4 {
            return Err(shape_err!("ddim_step: coefficients {:?} must be 4 f32 values", coefs.shape));
        }
        let pred = &self.convert(pred, DType::F32)?;
        let n = numel(&sample.shape);
        let kind = match prediction_type {
            PredictionType::Epsilon => 0,
            PredictionType::VPrediction => 1,
            PredictionType::Sample => 2,
        };
        let (sp, pp) = (self.ptr(sample), self.ptr(pred));
        k::ddim_step_dev_f32(&self.dev, &self.stride(n), sp, pp, sp, n, kind, self.ptr(coefs))
    }
}
