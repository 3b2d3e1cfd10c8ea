//! The DDIM step on the device: with scalar coefficients, or in place with coefficients read
//! from a device tensor (the captured denoising loop).

use crate::backend::cuda::backend::{Cuda, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launch::{count, Arg};
use crate::backend::Backend as _;
use crate::error::Result;
use crate::shape_err;
use crate::tensor::{numel, DType};

impl<D: Device> Cuda<D> {
    pub(in crate::backend::cuda) fn ddim_step(
        &self,
        pred: &GpuTensor<D>,
        sample: &GpuTensor<D>,
        c: &crate::scheduler::ddim::StepCoefficients,
    ) -> Result<GpuTensor<D>> {
        use crate::scheduler::PredictionType;
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
        self.grid_stride(
            "ddim_step_f32",
            n,
            &[
                self.ptr(&y),
                Arg::Ptr(0),
                self.ptr(pred),
                self.ptr(sample),
                count("ddim_step", n)?,
                Arg::I32(kind),
                Arg::F32(c.sqrt_alpha),
                Arg::F32(c.sqrt_one_minus_alpha),
                Arg::F32(c.sqrt_alpha_prev),
                Arg::F32(c.sqrt_one_minus_alpha_prev),
            ],
        )?;
        Ok(y)
    }

    pub(in crate::backend::cuda) fn ddim_step_in_place(
        &self,
        pred: &GpuTensor<D>,
        sample: &mut GpuTensor<D>,
        coefs: &GpuTensor<D>,
        prediction_type: crate::scheduler::PredictionType,
    ) -> Result<()> {
        use crate::scheduler::PredictionType;
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
        self.grid_stride(
            "ddim_step_dev_f32",
            n,
            &[
                self.ptr(sample),
                self.ptr(pred),
                self.ptr(sample),
                count("ddim_step", n)?,
                Arg::I32(kind),
                self.ptr(coefs),
            ],
        )
    }
}
