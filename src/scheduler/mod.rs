//! The noise scheduler: diffusers' `DDIMScheduler` with eta = 0, configured like the SD-2
//! folder's `scheduler/scheduler_config.json` (SPEC.md "Scheduler").
pub mod ddim;

pub use crate::backend::ddim::PredictionType;
pub use ddim::{Ddim, StepCoefficients};

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BetaSchedule {
    Linear,
    ScaledLinear,
    SquaredcosCapV2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestepSpacing {
    Leading,
    Trailing,
    Linspace,
}

/// The fields of diffusers' scheduler config that DDIM reads. Keys this engine does not use
/// (`_class_name`, `skip_prk_steps`, ...) are ignored; keys that would change the result in a
/// way we do not implement (`thresholding`, `rescale_betas_zero_snr`) are refused.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    pub beta_schedule: BetaSchedule,
    pub beta_start: f64,
    pub beta_end: f64,
    pub num_train_timesteps: usize,
    pub prediction_type: PredictionType,
    pub set_alpha_to_one: bool,
    pub steps_offset: i64,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub timestep_spacing: TimestepSpacing,
    /// diffusers' `trained_betas`: when given, replaces the schedule.
    pub trained_betas: Option<Vec<f64>>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self::sd2()
    }
}

impl SchedulerConfig {
    /// Stable Diffusion 2's scheduler, what the authors' pipeline runs with. A key missing from a
    /// config file takes this value (not diffusers' class default).
    pub fn sd2() -> Self {
        SchedulerConfig {
            beta_schedule: BetaSchedule::ScaledLinear,
            beta_start: 0.00085,
            beta_end: 0.012,
            num_train_timesteps: 1000,
            prediction_type: PredictionType::VPrediction,
            set_alpha_to_one: false,
            steps_offset: 1,
            clip_sample: false,
            clip_sample_range: 1.0,
            timestep_spacing: TimestepSpacing::Leading,
            trained_betas: None,
        }
    }

    /// Read `scheduler_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: not valid JSON ({e})", path.display())))?;
        Self::from_json(&json).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parse a scheduler config object; `null` counts as absent.
    pub fn from_json(json: &Value) -> Result<Self> {
        let obj = json
            .as_object()
            .ok_or_else(|| Error::Config(format!("scheduler config must be a JSON object, found {}", kind_of(json))))?;
        let get = |key: &str| obj.get(key).filter(|v| !v.is_null());
        let mut cfg = Self::sd2();

        if let Some(v) = get("beta_schedule") {
            cfg.beta_schedule = match string(v, "beta_schedule")? {
                "linear" => BetaSchedule::Linear,
                "scaled_linear" => BetaSchedule::ScaledLinear,
                "squaredcos_cap_v2" => BetaSchedule::SquaredcosCapV2,
                other => return Err(unsupported("beta_schedule", other, "linear, scaled_linear, squaredcos_cap_v2")),
            };
        }
        if let Some(v) = get("beta_start") {
            cfg.beta_start = number(v, "beta_start")?;
        }
        if let Some(v) = get("beta_end") {
            cfg.beta_end = number(v, "beta_end")?;
        }
        if let Some(v) = get("num_train_timesteps") {
            let n = number(v, "num_train_timesteps")?;
            if n < 1.0 || n.fract() != 0.0 || n > 1e7 {
                return Err(Error::Config(format!(
                    "scheduler config: \"num_train_timesteps\" must be a positive integer, found {v}"
                )));
            }
            cfg.num_train_timesteps = n as usize;
        }
        if let Some(v) = get("prediction_type") {
            cfg.prediction_type = match string(v, "prediction_type")? {
                "epsilon" => PredictionType::Epsilon,
                "v_prediction" => PredictionType::VPrediction,
                "sample" => PredictionType::Sample,
                other => return Err(unsupported("prediction_type", other, "epsilon, v_prediction, sample")),
            };
        }
        if let Some(v) = get("set_alpha_to_one") {
            cfg.set_alpha_to_one = boolean(v, "set_alpha_to_one")?;
        }
        if let Some(v) = get("steps_offset") {
            let n = number(v, "steps_offset")?;
            if n.fract() != 0.0 || n.abs() > 1e9 {
                return Err(Error::Config(format!("scheduler config: \"steps_offset\" must be an integer, found {v}")));
            }
            cfg.steps_offset = n as i64;
        }
        if let Some(v) = get("clip_sample") {
            cfg.clip_sample = boolean(v, "clip_sample")?;
        }
        if let Some(v) = get("clip_sample_range") {
            cfg.clip_sample_range = number(v, "clip_sample_range")?;
        }
        if let Some(v) = get("timestep_spacing") {
            cfg.timestep_spacing = match string(v, "timestep_spacing")? {
                "leading" => TimestepSpacing::Leading,
                "trailing" => TimestepSpacing::Trailing,
                "linspace" => TimestepSpacing::Linspace,
                other => return Err(unsupported("timestep_spacing", other, "leading, trailing, linspace")),
            };
        }
        if let Some(v) = get("trained_betas") {
            let list = v.as_array().ok_or_else(|| {
                Error::Config(format!(
                    "scheduler config: \"trained_betas\" must be a list of numbers, found {}",
                    kind_of(v)
                ))
            })?;
            let betas = list.iter().map(|b| number(b, "trained_betas")).collect::<Result<Vec<f64>>>()?;
            cfg.trained_betas = Some(betas);
        }
        for key in ["thresholding", "rescale_betas_zero_snr"] {
            if let Some(v) = get(key) {
                if boolean(v, key)? {
                    return Err(Error::Config(format!(
                        "scheduler config: \"{key}\": true is not supported by this engine (only false)"
                    )));
                }
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Values that parse but cannot describe a schedule.
    pub fn validate(&self) -> Result<()> {
        if self.num_train_timesteps == 0 {
            return Err(Error::Config("scheduler config: \"num_train_timesteps\" must be at least 1".into()));
        }
        if let Some(b) = &self.trained_betas {
            if b.len() != self.num_train_timesteps {
                return Err(Error::Config(format!(
                    "scheduler config: \"trained_betas\" has {} values but \"num_train_timesteps\" is {}",
                    b.len(),
                    self.num_train_timesteps
                )));
            }
        }
        for (key, v) in [("beta_start", self.beta_start), ("beta_end", self.beta_end)] {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::Config(format!(
                    "scheduler config: \"{key}\" must be a finite number >= 0, found {v}"
                )));
            }
        }
        if self.clip_sample && !(self.clip_sample_range.is_finite() && self.clip_sample_range > 0.0) {
            return Err(Error::Config(format!(
                "scheduler config: \"clip_sample_range\" must be > 0, found {}",
                self.clip_sample_range
            )));
        }
        Ok(())
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn unsupported(key: &str, found: &str, expected: &str) -> Error {
    Error::Config(format!("scheduler config: \"{key}\" is \"{found}\", expected one of {expected}"))
}

fn string<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v.as_str()
        .ok_or_else(|| Error::Config(format!("scheduler config: \"{key}\" must be a string, found {}", kind_of(v))))
}

fn number(v: &Value, key: &str) -> Result<f64> {
    v.as_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| Error::Config(format!("scheduler config: \"{key}\" must be a number, found {v}")))
}

fn boolean(v: &Value, key: &str) -> Result<bool> {
    v.as_bool().ok_or_else(|| Error::Config(format!("scheduler config: \"{key}\" must be true or false, found {v}")))
}
