//! The task pipeline (SPEC.md): encode rgb and prompt once, denoise K ensemble members as one
//! batch under the task label, decode, and reduce the members to one prediction.

pub mod control;
pub mod noise;

use self::control::Control;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::dit::Dit;
use crate::model::vae::Vae;
use crate::scheduler::{Ddim, StepCoefficients};
use crate::tensor::Tensor;
use crate::weights::config::ModelConfig;

/// Everything needed to run the tasks on one backend.
pub struct Engine<B: Backend> {
    pub backend: B,
    pub config: ModelConfig,
    pub dit: Dit<B>,
    pub vae: Vae<B>,
    pub scheduler: Ddim,
    /// Capture one denoising step as a graph and replay it for the others, where the backend
    /// can (on by default; off to compare against the step-by-step loop).
    pub use_graphs: bool,
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

impl Trace {
    fn push<B: Backend>(&mut self, be: &B, model_out: &B::T, latent: &B::T) -> Result<()> {
        if self.record {
            self.model_out.push(be.download(model_out)?);
            self.latents.push(be.download(latent)?);
        }
        Ok(())
    }
}

/// The device state of one denoising loop: the latent, the step's scalars, the captured step
/// and the buffer its model output lands in.
pub struct LoopState<B: Backend> {
    x: B::T,
    t_dev: B::T,
    coefs_dev: B::T,
    graph: Option<B::Graph>,
    last_out: Option<B::T>,
}

impl<B: Backend> LoopState<B> {
    fn new(be: &B, noise: &Tensor) -> Result<Self> {
        let n = noise.shape.first().copied().unwrap_or(0);
        Ok(LoopState {
            x: be.upload(noise)?,
            t_dev: be.upload(&Tensor::zeros(&[n]))?,
            coefs_dev: be.upload(&Tensor::zeros(&[StepCoefficients::VALUES]))?,
            graph: None,
            last_out: None,
        })
    }
}

struct CachedState<B: Backend> {
    labels: Vec<i64>,
    shape: Vec<usize>,
    rgb: B::T,
    prompt: B::T,
    state: LoopState<B>,
}

/// Denoising states kept between calls (see `Engine::denoise_cached`), one per shape and label
/// set, at most `capacity` (the least recently used is dropped, and its device memory freed).
pub struct DenoiseCache<B: Backend> {
    states: Vec<CachedState<B>>,
    capacity: usize,
    captures: u64,
}

impl<B: Backend> DenoiseCache<B> {
    pub fn new(capacity: usize) -> Self {
        DenoiseCache { states: Vec::new(), capacity, captures: 0 }
    }
    /// Steps captured as graphs so far.
    pub fn captures(&self) -> u64 {
        self.captures
    }
    /// Drop every kept state (and the device memory it holds).
    pub fn clear(&mut self) {
        self.states.clear();
    }
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
        self.denoise_with(rgb, prompt, labels, noise, steps, trace, &Control::default())
    }

    /// `denoise`, checking `control` before each step and reporting each step to it:
    /// `Error::Cancelled` at the first step boundary after a cancel.
    #[allow(clippy::too_many_arguments)]
    pub fn denoise_with(
        &self,
        rgb: &B::T,
        prompt: &B::T,
        labels: &[i64],
        noise: Tensor,
        steps: usize,
        trace: &mut Trace,
        control: &Control,
    ) -> Result<B::T> {
        let be = &self.backend;
        let n = noise.shape[0];
        if labels.len() != n || be.shape(rgb)[0] != n || be.shape(prompt)[0] != n {
            return Err(Error::Shape(format!(
                "denoise: batch of {n} noise latents needs as many labels ({}) and rgb/prompt latents",
                labels.len()
            )));
        }
        let mut state = LoopState::new(be, &noise)?;
        self.denoise_loop(rgb, prompt, labels, &mut state, steps, trace, control)?;
        Ok(state.x)
    }

    /// `denoise_with` on host latents, in the device state `cache` keeps for this shape and
    /// labels: the first call of a shape captures its step; later calls write their inputs into
    /// the same buffers and replay that step for every step, so they allocate no device memory
    /// and capture nothing. Returns the final latent, which lives in the cache until the next
    /// call.
    #[allow(clippy::too_many_arguments)]
    pub fn denoise_cached<'c>(
        &self,
        cache: &'c mut DenoiseCache<B>,
        rgb: &Tensor,
        prompt: &Tensor,
        labels: &[i64],
        noise: &Tensor,
        steps: usize,
        control: &Control,
    ) -> Result<&'c B::T> {
        let be = &self.backend;
        let n = noise.shape.first().copied().unwrap_or(0);
        if labels.len() != n || rgb.shape != noise.shape || prompt.shape != noise.shape {
            return Err(Error::Shape(format!(
                "denoise: {:?} noise latents need {n} labels (got {}) and rgb/prompt latents of that shape ({:?}, {:?})",
                noise.shape,
                labels.len(),
                rgb.shape,
                prompt.shape
            )));
        }
        let entry = match cache.states.iter().position(|s| s.labels == labels && s.shape == noise.shape) {
            Some(i) => {
                let mut e = cache.states.remove(i);
                be.write(&mut e.rgb, rgb)?;
                be.write(&mut e.prompt, prompt)?;
                be.write(&mut e.state.x, noise)?;
                e
            }
            None => CachedState {
                labels: labels.to_vec(),
                shape: noise.shape.clone(),
                rgb: be.upload(rgb)?,
                prompt: be.upload(prompt)?,
                state: LoopState::new(be, noise)?,
            },
        };
        if cache.states.len() >= cache.capacity.max(1) {
            cache.states.remove(0); // the least recently used
        }
        cache.states.push(entry);
        let e = cache.states.last_mut().expect("just pushed");
        let had_graph = e.state.graph.is_some();
        let ran = self.denoise_loop(&e.rgb, &e.prompt, labels, &mut e.state, steps, &mut Trace::default(), control);
        if !had_graph && e.state.graph.is_some() {
            cache.captures += 1;
        }
        // On an error the buffers may hold a half-denoised latent; the next call rewrites them.
        ran?;
        Ok(&cache.states.last().expect("just pushed").state.x)
    }

    /// The denoising loop on `state`, which holds the latent (updated in place), the step's
    /// scalars on the device and, once captured, the step's graph.
    #[allow(clippy::too_many_arguments)]
    fn denoise_loop(
        &self,
        rgb: &B::T,
        prompt: &B::T,
        labels: &[i64],
        state: &mut LoopState<B>,
        steps: usize,
        trace: &mut Trace,
        control: &Control,
    ) -> Result<()> {
        let be = &self.backend;
        let n = labels.len();
        let timesteps = self.scheduler.timesteps(steps)?;
        let c = self.latent_channels();
        let prediction_type = self.scheduler.config().prediction_type;
        // The latent stays on the device for the whole loop, updated in place; each step's
        // timestep and DDIM coefficients are written into device tensors before the step, so
        // the step itself is the same device work every time: run once (which warms the memory
        // pool and compiles the kernels), then captured as a graph and replayed for the rest
        // where the backend has graphs. Nothing is uploaded, allocated or synchronised inside a
        // replayed step.
        let LoopState { x, t_dev, coefs_dev, graph, last_out } = state;
        let mut graphs = self.use_graphs;
        // With a cancel token or a progress callback, wait for each step to finish on the
        // device before reporting it: a GPU's host runs ahead of the device by every replay it
        // has enqueued, so without the wait a cancel would only be seen after all of them.
        // The wait costs one graph launch's latency per step (microseconds against the
        // milliseconds of a step).
        let wait = control.is_active();
        for (i, &t) in timesteps.iter().enumerate() {
            control.check()?;
            let coefs = self.scheduler.coefficients(t, steps)?;
            if graph.is_none() {
                *last_out = None; // its memory serves this step: the pool holds one step's worth
            }
            be.write(t_dev, &Tensor::new(vec![n], vec![t as f32; n])?)?;
            be.write(coefs_dev, &Tensor::new(vec![StepCoefficients::VALUES], coefs.values().to_vec())?)?;
            let mut step = || -> Result<()> {
                let input = be.cat_channels(&[rgb, prompt, &*x])?; // [N, 3c, h, w]
                let out = self.dit.forward_t(be, &input, t_dev, labels, None)?; // [N, out, h, w]
                let pred = be.slice_channels(&out, 0, c)?;
                be.ddim_step(&pred, x, coefs_dev, prediction_type)?;
                *last_out = Some(out);
                Ok(())
            };
            if let Some(g) = &*graph {
                be.replay(g)?;
            } else if graphs && i > 0 {
                // A capture the device refuses costs speed, not the run: step by step instead.
                *graph = be.capture(&mut step).unwrap_or_else(|e| {
                    graph_fallback::report(&e);
                    None
                });
                match &*graph {
                    Some(g) => be.replay(g)?,
                    None => {
                        graphs = false;
                        step()?;
                    }
                }
            } else {
                step()?;
            }
            if trace.record {
                let out = last_out.as_ref().ok_or_else(|| Error::Shape("denoise: no model output to trace".into()))?;
                trace.push(be, out, x)?;
            }
            if wait {
                be.wait()?;
            }
            control.step_done(i + 1, timesteps.len())?;
        }
        trace.timesteps = timesteps;
        Ok(())
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
        Ok(Engine {
            scheduler: Ddim::new(&sched_cfg)?,
            config: src.config.clone(),
            dit,
            vae,
            backend,
            use_graphs: true,
        })
    }
}
pub mod any;

/// Denoising runs that fell back from a captured graph to running each step (`denoise`): said
/// once per process on stderr, counted for reports (scripts/gpu-check flags the fallback).
pub mod graph_fallback {
    use std::sync::atomic::{AtomicUsize, Ordering};

    static COUNT: AtomicUsize = AtomicUsize::new(0);

    /// The message printed (once) when a capture fails.
    pub const MESSAGE: &str = "capturing the denoising step as a graph failed; continuing step by step";

    pub(crate) fn report(err: &crate::error::Error) {
        if COUNT.fetch_add(1, Ordering::Relaxed) == 0 {
            eprintln!("warning: {MESSAGE} ({err})");
        }
    }

    /// How many denoising runs of this process fell back.
    pub fn count() -> usize {
        COUNT.load(Ordering::Relaxed)
    }
}
