//! The DDIM step on the device, in place, with its coefficients (clipping included) read from a
//! device tensor, so the captured denoising loop replays it unchanged.

use crate::backend::cuda::backend::{Cuda, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launchers::{self as k, DevPtr};
use crate::backend::ddim::{PredictionType, StepCoefficients};
use crate::error::Result;
use crate::shape_err;
use crate::tensor::{numel, DType};

impl<D: Device> Cuda<D> {
    pub(in crate::backend::cuda) fn ddim_step(
        &self,
        pred: &GpuTensor<D>,
        sample: &mut GpuTensor<D>,
        coefs: &GpuTensor<D>,
        prediction_type: PredictionType,
    ) -> Result<()> {
        if pred.shape != sample.shape || sample.dtype != DType::F32 {
            return Err(shape_err!(
                "ddim_step: prediction {:?} and f32 sample {:?} {:?} must match",
                pred.shape,
                sample.dtype,
                sample.shape
            ));
        }
        let want = StepCoefficients::VALUES;
        if coefs.dtype != DType::F32 || numel(&coefs.shape) != want {
            return Err(shape_err!("ddim_step: coefficients {:?} must be {want} f32 values", coefs.shape));
        }
        let pred = &self.convert(pred, DType::F32)?;
        let n = numel(&sample.shape);
        let kind = match prediction_type {
            PredictionType::Epsilon => 0,
            PredictionType::VPrediction => 1,
            PredictionType::Sample => 2,
        };
        let (sp, pp) = (self.ptr(sample), self.ptr(pred));
        // In place (the sample is read and written element by element); no pred_x0 output.
        k::ddim_step_f32(&self.dev, &self.stride(n), sp, DevPtr::NULL, pp, sp, n, kind, self.ptr(coefs))
    }
}
