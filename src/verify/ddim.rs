//! The `ddim` fixture: diffusers' `DDIMScheduler` tables, timesteps and a 10-step chain for
//! several configs (tensor names `<cfg>.<what>`).

use std::collections::HashMap;

use super::fixture::Fixture;
use super::{compare, Check};
use crate::error::{Error, Result};
use crate::scheduler::{Ddim, SchedulerConfig};

pub fn verify_ddim(fx: &Fixture, precision: &str) -> Result<Vec<Check>> {
    let configs = fx.config()["configs"]
        .as_object()
        .ok_or_else(|| Error::Fixture(format!("{}: config.configs is not an object", fx.name)))?;
    let step_counts: Vec<usize> = match fx.config()["step_counts"].as_array() {
        Some(a) => a.iter().filter_map(|v| v.as_u64()).map(|v| v as usize).collect(),
        None => vec![1, 10, 25, 50],
    };
    let chain_steps = fx.config()["chain_steps"].as_u64().unwrap_or(10) as usize;

    let mut got: HashMap<String, Vec<f32>> = HashMap::new();
    let mut notes: HashMap<String, String> = HashMap::new();
    for (name, cfg_json) in configs {
        let ddim = Ddim::new(&SchedulerConfig::from_json(cfg_json)?)?;
        got.insert(format!("{name}.alphas_cumprod"), ddim.alphas_cumprod().to_vec());
        got.insert(format!("{name}.final_alpha_cumprod"), vec![ddim.final_alpha_cumprod()]);
        for &n in &step_counts {
            let ts = ddim.timesteps(n)?;
            got.insert(format!("{name}.timesteps_{n}"), ts.iter().map(|&t| t as f32).collect());
        }

        let chain_key = format!("{name}.chain.sample0");
        if fx.io.get(&chain_key).is_none() {
            continue;
        }
        let timesteps = ddim.timesteps(chain_steps)?;
        let stored = fx.ints(&format!("{name}.chain.timesteps"))?;
        if stored != timesteps {
            notes.insert(
                format!("{name}.chain.prev_sample"),
                format!("our timesteps {timesteps:?} differ from the fixture's {stored:?}"),
            );
        }
        let mut sample = fx.tensor(&chain_key)?.data;
        let model_output = fx.tensor(&format!("{name}.chain.model_output"))?.data;
        let per_step = sample.len();
        if model_output.len() != per_step * timesteps.len() {
            return Err(Error::Fixture(format!(
                "{}: {name}.chain.model_output has {} values, expected {} steps x {per_step}",
                fx.name,
                model_output.len(),
                timesteps.len()
            )));
        }
        let (mut prevs, mut x0s) = (Vec::new(), Vec::new());
        let mut prev = vec![0.0f32; per_step];
        let mut x0 = vec![0.0f32; per_step];
        for (i, &t) in timesteps.iter().enumerate() {
            let mo = &model_output[i * per_step..(i + 1) * per_step];
            ddim.step(mo, t, chain_steps, &sample, &mut prev, Some(&mut x0))?;
            prevs.extend_from_slice(&prev);
            x0s.extend_from_slice(&x0);
            sample.copy_from_slice(&prev);
        }
        got.insert(format!("{name}.chain.prev_sample"), prevs);
        got.insert(format!("{name}.chain.pred_original_sample"), x0s);
    }
    checks_for_outputs(fx, &got, &notes, precision)
}

/// One check per output the JSON lists, in its order; an output we did not compute fails.
pub(crate) fn checks_for_outputs(
    fx: &Fixture,
    got: &HashMap<String, Vec<f32>>,
    notes: &HashMap<String, String>,
    precision: &str,
) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    for name in fx.outputs() {
        let mut check = match got.get(&name) {
            Some(values) => compare(fx, &name, values, precision)?,
            None => Check {
                fixture: fx.name.clone(),
                output: name.clone(),
                error: f64::INFINITY,
                tolerance: fx.tolerance(&name, precision),
                pass: Some(false),
                note: "not computed by this engine".into(),
            },
        };
        if let Some(n) = notes.get(&name) {
            check.note = n.clone();
            if check.pass.is_some() {
                check.pass = Some(false);
            }
        }
        checks.push(check);
    }
    Ok(checks)
}
