//! DDIM (eta = 0) exactly as diffusers' `DDIMScheduler` computes it: the coefficient table in
//! float32 (as diffusers builds it), the timestep lists of `set_timesteps`, and `step`. The
//! model output arrives as a host slice; this module never touches a device.

use super::{BetaSchedule, SchedulerConfig, TimestepSpacing};
pub use crate::backend::ddim::StepCoefficients;
use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Ddim {
    config: SchedulerConfig,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
}

impl Ddim {
    pub fn new(config: &SchedulerConfig) -> Result<Ddim> {
        config.validate()?;
        let t = config.num_train_timesteps;
        let betas: Vec<f32> = match (&config.trained_betas, config.beta_schedule) {
            (Some(b), _) => b.iter().map(|&x| x as f32).collect(),
            (None, BetaSchedule::Linear) => torch_linspace_f32(config.beta_start as f32, config.beta_end as f32, t),
            (None, BetaSchedule::ScaledLinear) => {
                torch_linspace_f32(config.beta_start.sqrt() as f32, config.beta_end.sqrt() as f32, t)
                    .into_iter()
                    .map(|b| b * b)
                    .collect()
            }
            (None, BetaSchedule::SquaredcosCapV2) => cosine_betas(t),
        };
        // torch's CPU cumprod accumulates float32 inputs in double and rounds each output
        let mut acc = 1.0f64;
        let alphas_cumprod: Vec<f32> = betas
            .iter()
            .map(|&b| {
                acc *= (1.0f32 - b) as f64;
                acc as f32
            })
            .collect();
        if alphas_cumprod.iter().any(|a| !(a.is_finite() && *a > 0.0 && *a <= 1.0)) {
            return Err(Error::Config(
                "scheduler config: the betas give alphas_cumprod outside (0, 1]; check beta_start/beta_end/trained_betas"
                    .into(),
            ));
        }
        let final_alpha_cumprod = if config.set_alpha_to_one { 1.0 } else { alphas_cumprod[0] };
        Ok(Ddim { config: config.clone(), alphas_cumprod, final_alpha_cumprod })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    pub fn final_alpha_cumprod(&self) -> f32 {
        self.final_alpha_cumprod
    }

    /// diffusers' `set_timesteps(n)`, largest first. Note diffusers' own quirk, kept here: for
    /// "trailing" spacing and some `n` (61, 103, ... of 1000) numpy's float `arange` yields
    /// n + 1 entries, the last being -1; callers iterate over the returned list, not `0..n`.
    pub fn timesteps(&self, n: usize) -> Result<Vec<i64>> {
        let t = self.config.num_train_timesteps;
        if n == 0 || n > t {
            return Err(Error::Input(format!(
                "scheduler: {n} inference steps requested; expected 1 ..= {t} (the number of training timesteps)"
            )));
        }
        let ts = match self.config.timestep_spacing {
            TimestepSpacing::Linspace => {
                let last = (t - 1) as f64;
                let step = if n > 1 { last / (n - 1) as f64 } else { 0.0 };
                (0..n)
                    .rev()
                    .map(|i| if n > 1 && i == n - 1 { last } else { i as f64 * step })
                    .map(|v| v.round_ties_even() as i64)
                    .collect()
            }
            TimestepSpacing::Leading => {
                let ratio = (t / n) as i64;
                (0..n as i64).rev().map(|i| i * ratio + self.config.steps_offset).collect()
            }
            TimestepSpacing::Trailing => {
                // numpy's arange(t, 0, -ratio): length ceil(t / ratio), values start + i * delta
                // with delta = (start + step) - start
                let ratio = t as f64 / n as f64;
                let start = t as f64;
                let len = (start / ratio).ceil() as usize;
                let delta = (start - ratio) - start;
                (0..len).map(|i| (start + i as f64 * delta).round_ties_even() as i64 - 1).collect()
            }
        };
        Ok(ts)
    }

    /// The scalars for `step(t)` in an `n`-step schedule.
    pub fn coefficients(&self, t: i64, num_inference_steps: usize) -> Result<StepCoefficients> {
        if num_inference_steps == 0 {
            return Err(Error::Input("scheduler: step() needs num_inference_steps >= 1".into()));
        }
        let train = self.config.num_train_timesteps as i64;
        let alpha = self.alpha_at(t)?;
        let prev_t = t - train / num_inference_steps as i64;
        let alpha_prev = if prev_t >= 0 { self.alpha_at(prev_t)? } else { self.final_alpha_cumprod };
        Ok(StepCoefficients {
            sqrt_alpha: alpha.sqrt(),
            sqrt_one_minus_alpha: (1.0f32 - alpha).sqrt(),
            sqrt_alpha_prev: alpha_prev.sqrt(),
            sqrt_one_minus_alpha_prev: (1.0f32 - alpha_prev).sqrt(),
            prediction_type: self.config.prediction_type,
            clip: self.config.clip_sample.then_some(self.config.clip_sample_range),
        })
    }

    /// diffusers' `step(model_output, t, sample, eta=0)`: writes `prev_sample` into `prev` and,
    /// when asked, `pred_original_sample` into `pred_x0`.
    pub fn step(
        &self,
        model_output: &[f32],
        t: i64,
        num_inference_steps: usize,
        sample: &[f32],
        prev: &mut [f32],
        pred_x0: Option<&mut [f32]>,
    ) -> Result<()> {
        let n = sample.len();
        if model_output.len() != n || prev.len() != n || pred_x0.as_ref().is_some_and(|p| p.len() != n) {
            return Err(Error::Shape(format!(
                "ddim step: model_output has {} elements, sample {}, prev {}, pred_x0 {:?}; all must match",
                model_output.len(),
                n,
                prev.len(),
                pred_x0.as_ref().map(|p| p.len())
            )));
        }
        let c = self.coefficients(t, num_inference_steps)?;
        match pred_x0 {
            Some(x0_out) => {
                for i in 0..n {
                    let (p, x0) = c.apply(model_output[i], sample[i]);
                    prev[i] = p;
                    x0_out[i] = x0;
                }
            }
            None => {
                for i in 0..n {
                    prev[i] = c.apply(model_output[i], sample[i]).0;
                }
            }
        }
        Ok(())
    }

    /// `alphas_cumprod[t]` with Python's indexing: diffusers indexes a tensor, so t = -1 (which
    /// its trailing spacing can produce) reads the last entry.
    fn alpha_at(&self, t: i64) -> Result<f32> {
        let len = self.alphas_cumprod.len() as i64;
        let idx = if t < 0 { t + len } else { t };
        if !(0..len).contains(&idx) {
            return Err(Error::Input(format!(
                "scheduler: timestep {t} is outside the table of {len} training timesteps"
            )));
        }
        Ok(self.alphas_cumprod[idx as usize])
    }
}

/// `torch.linspace(start, end, steps, dtype=float32)` on the CPU, to the bit: the step is an
/// f32, the first half counts up from `start` and the second half down from `end`, each
/// element one fused multiply-add (the compiled kernel contracts `start + step * i`; plain
/// multiply-then-add differs from diffusers' table in 121 of SD-2's 1000 entries).
fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| if i < halfway { step.mul_add(i as f32, start) } else { (-step).mul_add((steps - i - 1) as f32, end) })
        .collect()
}

/// diffusers' `betas_for_alpha_bar` with the cosine transform (f64, capped at 0.999, then f32).
fn cosine_betas(t: usize) -> Vec<f32> {
    let alpha_bar = |x: f64| ((x + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos().powi(2);
    (0..t)
        .map(|i| {
            let t1 = i as f64 / t as f64;
            let t2 = (i + 1) as f64 / t as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}
