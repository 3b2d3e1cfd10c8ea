//! Verification of the `pipeline` fixtures: the authors' `single_infer` with injected noise.

use super::fixture::Fixture;
use super::models::fixture_weights;
use super::{compare, Check};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::dit::Dit;
use crate::model::vae::Vae;
use crate::pipeline::{Engine, Trace};
use crate::scheduler::{Ddim, SchedulerConfig};
use crate::tensor::Tensor;
use crate::weights::config::{DitConfig, ModelConfig, VaeConfig};

/// Stack per-step tensors [steps][N, ...] into case-major [N, steps, ...].
fn case_major(steps: &[Tensor]) -> Vec<f32> {
    let n = steps[0].shape[0];
    let inner = steps[0].numel() / n;
    let mut out = Vec::with_capacity(n * steps.len() * inner);
    for i in 0..n {
        for s in steps {
            out.extend_from_slice(&s.data[i * inner..(i + 1) * inner]);
        }
    }
    out
}

/// The engine of a `pipeline` fixture (its DiT and VAE sub-fixtures and scheduler) on `be`, and
/// the fixture's step count.
pub fn fixture_engine<B: Backend + Clone>(be: &B, fx: &Fixture) -> Result<(Engine<B>, usize)> {
    let cfg = fx.config();
    let sub = |key: &str| -> Result<Fixture> {
        let name = cfg[key].as_str().ok_or_else(|| Error::Fixture(format!("{}: config has no \"{key}\"", fx.name)))?;
        Fixture::load(&fx.dir, name)
    };
    let (dit_fx, vae_fx) = (sub("dit_fixture")?, sub("vae_fixture")?);
    let dit_cfg = DitConfig::from_json(dit_fx.config())?;
    let vae_cfg = VaeConfig::from_json(vae_fx.config())?;
    let sched_cfg = SchedulerConfig::from_json(&cfg["scheduler"])?;
    let engine = Engine {
        backend: be.clone(),
        config: ModelConfig {
            resolution: dit_cfg.input_size * vae_cfg.downscale(),
            dit: dit_cfg.clone(),
            vae: Some(vae_cfg.clone()),
            scheduler: Some(cfg["scheduler"].clone()),
            flow_scale: 75.0,
        },
        dit: Dit::load(be, &dit_cfg, &fixture_weights(&dit_fx, "weights")?)?,
        vae: Vae::load(be, &vae_cfg, &fixture_weights(&vae_fx, "weights")?)?,
        scheduler: Ddim::new(&sched_cfg)?,
        use_graphs: true,
    };
    let steps = cfg["num_inference_steps"].as_u64().unwrap_or(4) as usize;
    Ok((engine, steps))
}

pub fn verify_pipeline<B: Backend + Clone>(be: &B, fx: &Fixture, precision: &str) -> Result<Vec<Check>> {
    let (engine, steps) = fixture_engine(be, fx)?;
    let rgb = engine.encode(&fx.tensor("rgb")?)?;
    let prompt = engine.encode(&fx.tensor("prompt")?)?;
    let labels = fx.ints("label")?;
    let noise = fx.tensor("noise")?;
    let mut trace = Trace { record: true, ..Default::default() };
    let latent = engine.denoise(&rgb, &prompt, &labels, noise, steps, &mut trace)?;
    let decoded = engine.decode(&latent)?;
    let mut checks = Vec::new();
    for name in fx.outputs() {
        let got: Vec<f32> = match name.as_str() {
            "decoded" => decoded.data.clone(),
            "rgb_latent" => be.download(&rgb)?.data,
            "prompt_latent" => be.download(&prompt)?.data,
            "timesteps" => trace.timesteps.iter().map(|&t| t as f32).collect(),
            "latents" => case_major(&trace.latents),
            "model_out" => case_major(&trace.model_out),
            _ => continue,
        };
        checks.push(compare(fx, &name, &got, precision)?);
    }
    Ok(checks)
}
