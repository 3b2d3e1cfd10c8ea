//! The task pipeline (SPEC.md): encode rgb and prompt once, denoise K ensemble members as one
//! batch under the task label, decode, and reduce the members to one prediction.

pub mod noise;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::dit::Dit;
use crate::model::vae::Vae;
use crate::scheduler::Ddim;
use crate::tensor::Tensor;
use crate::weights::config::ModelConfig;

/// Task labels of the generalist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Depth,
    Segment,
    FlowX,
    FlowY,
}

impl Task {
    pub fn label(self) -> i64 {
        match self {
            Task::Depth => 1000,
            Task::Segment => 1001,
            Task::FlowX => 1002,
            Task::FlowY => 1003,
        }
    }
}

/// Everything needed to run the tasks on one backend.
pub struct Engine<B: Backend> {
    pub backend: B,
    pub config: ModelConfig,
    pub dit: Dit<B>,
    pub vae: Vae<B>,
    pub scheduler: Ddim,
}

/// What `denoise` can record along the way.
#[derive(Default)]
pub struct Trace {
    pub record: bool,
    /// Latent after each step, [steps][N, C, h, w].
    pub latents: Vec<Tensor>,
    /// Full DiT output at each step.
    pub model_out: Vec<Tensor>,
    pub timesteps: Vec<i64>,
}

impl<B: Backend> Engine<B> {
    /// Latent channels the DiT denoises (a third of its input channels).
    pub fn latent_channels(&self) -> usize {
        self.dit.cfg.in_channels / 3
    }

    /// Images [N, 3, H, W] in [-1, 1] -> scaled latents.
    pub fn encode(&self, images: &Tensor) -> Result<B::T> {
        self.vae.encode(&self.backend, &self.backend.upload(images)?, None)
    }

    /// Denoise `noise` [N, c, h, w] from pure noise to a clean latent with the DiT, conditioned
    /// on `rgb` and `prompt` latents (each [N, c, h, w]) and per-sample labels.
    pub fn denoise(
        &self,
        rgb: &B::T,
        prompt: &B::T,
        labels: &[i64],
        noise: Tensor,
        steps: usize,
        trace: &mut Trace,
    ) -> Result<B::T> {
        let be = &self.backend;
        let n = noise.shape[0];
        if labels.len() != n || be.shape(rgb)[0] != n || be.shape(prompt)[0] != n {
            return Err(Error::Shape(format!(
                "denoise: batch of {n} noise latents needs as many labels ({}) and rgb/prompt latents",
                labels.len()
            )));
        }
        let timesteps = self.scheduler.timesteps(steps)?;
        let c = self.latent_channels();
        // The latent stays on the device for the whole loop: no host round trip per step.
        let mut x = be.upload(&noise)?;
        for &t in &timesteps {
            let coefs = self.scheduler.coefficients(t, steps)?;
            let input = be.cat_channels(&[rgb, prompt, &x])?; // [N, 3c, h, w]
            let out = self.dit.forward(be, &input, &vec![t as f32; n], labels, None)?; // [N, out, h, w]
            let pred = be.slice_channels(&out, 0, c)?;
            x = be.ddim_step(&pred, &x, &coefs)?;
            if trace.record {
                trace.model_out.push(be.download(&out)?);
                trace.latents.push(be.download(&x)?);
            }
        }
        trace.timesteps = timesteps;
        Ok(x)
    }

    /// Latents -> images [N, 3, H, W] (not clamped).
    pub fn decode(&self, latents: &B::T) -> Result<Tensor> {
        self.backend.download(&self.vae.decode(&self.backend, latents, None)?)
    }
}
pub mod tasks;

impl<B: Backend> Engine<B> {
    /// Put a model on a backend: load and check the DiT and the VAE, build the scheduler (the
    /// model's or the SD-2 folder's config, else the SD-2 defaults).
    pub fn new(backend: B, src: &crate::weights::model_file::ModelSource) -> Result<Self> {
        let vae_cfg =
            src.config.vae.clone().ok_or_else(|| Error::Config(format!("{}: no VAE config", src.description)))?;
        let sched_cfg = match &src.scheduler {
            Some(v) => crate::scheduler::SchedulerConfig::from_json(v)?,
            None => crate::scheduler::SchedulerConfig::sd2(),
        };
        let dit = Dit::load(&backend, &src.config.dit, &src.dit)?;
        let vae = Vae::load(&backend, &vae_cfg, &src.vae)?;
        let down = vae_cfg.downscale();
        if src.config.dit.input_size * down != src.config.resolution {
            return Err(Error::Config(format!(
                "{}: resolution {} does not match the DiT's {}x{} latents and the VAE's factor {down}",
                src.description, src.config.resolution, src.config.dit.input_size, src.config.dit.input_size
            )));
        }
        if src.config.dit.in_channels != 3 * vae_cfg.latent_channels {
            return Err(Error::Config(format!(
                "{}: the DiT takes {} input channels, but three VAE latents have {}",
                src.description,
                src.config.dit.in_channels,
                3 * vae_cfg.latent_channels
            )));
        }
        Ok(Engine { scheduler: Ddim::new(&sched_cfg)?, config: src.config.clone(), dit, vae, backend })
    }
}
pub mod any;
