//! One DDIM step (eta = 0) element by element: the step's scalar coefficients and the arithmetic
//! every backend's `ddim_step` reproduces. The scheduler (`scheduler::ddim`) computes the
//! coefficients from its tables; the backends only apply them.

/// What the model predicts (diffusers' `prediction_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PredictionType {
    Epsilon,
    VPrediction,
    Sample,
}

/// The scalars of one `step(t)`: float32 values, as diffusers holds them in 0-d float32
/// tensors; the per-element arithmetic with them happens in f64 (see [`StepCoefficients::apply`]).
/// A device kernel takes these four numbers and reproduces `step` element for element.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCoefficients {
    /// sqrt(alphas_cumprod[t])
    pub sqrt_alpha: f32,
    /// sqrt(1 - alphas_cumprod[t])
    pub sqrt_one_minus_alpha: f32,
    /// sqrt(alpha_prev): alphas_cumprod[prev_t], or final_alpha_cumprod when prev_t < 0
    pub sqrt_alpha_prev: f32,
    /// sqrt(1 - alpha_prev): the eps coefficient of the "direction pointing to x_t"
    pub sqrt_one_minus_alpha_prev: f32,
    pub prediction_type: PredictionType,
    /// `Some(r)`: clamp the predicted x0 to [-r, r] (diffusers' `clip_sample`).
    pub clip: Option<f64>,
}

impl StepCoefficients {
    /// The four scalars of the step as the device-resident step reads them: sqrt_alpha,
    /// sqrt_one_minus_alpha, sqrt_alpha_prev, sqrt_one_minus_alpha_prev.
    pub fn values(&self) -> [f32; 4] {
        [self.sqrt_alpha, self.sqrt_one_minus_alpha, self.sqrt_alpha_prev, self.sqrt_one_minus_alpha_prev]
    }

    /// The inverse of `values` (no clipping).
    pub fn from_values(v: &[f32], prediction_type: PredictionType) -> Self {
        StepCoefficients {
            sqrt_alpha: v[0],
            sqrt_one_minus_alpha: v[1],
            sqrt_alpha_prev: v[2],
            sqrt_one_minus_alpha_prev: v[3],
            prediction_type,
            clip: None,
        }
    }

    /// One element: returns (prev_sample, pred_original_sample).
    #[inline]
    pub fn apply(&self, model_output: f32, sample: f32) -> (f32, f32) {
        let (mo, x) = (model_output as f64, sample as f64);
        let sa = self.sqrt_alpha as f64;
        let sb = self.sqrt_one_minus_alpha as f64;
        let (mut x0, eps) = match self.prediction_type {
            PredictionType::Epsilon => ((x - sb * mo) / sa, mo),
            PredictionType::Sample => (mo, (x - sa * mo) / sb),
            PredictionType::VPrediction => (sa * x - sb * mo, sa * mo + sb * x),
        };
        if let Some(r) = self.clip {
            // diffusers clamps x0 but keeps the eps derived from the unclamped prediction
            x0 = x0.clamp(-r, r);
        }
        let prev = self.sqrt_alpha_prev as f64 * x0 + self.sqrt_one_minus_alpha_prev as f64 * eps;
        (prev as f32, x0 as f32)
    }
}
