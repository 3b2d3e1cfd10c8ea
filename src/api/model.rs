//! A model: weights and configs, loaded once and shared by every session made from it.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::backend::cpu::Cpu;
use crate::error::Result;
use crate::pipeline::Engine;
use crate::weights::model_file::{self, ModelSource};

/// Weights and configs of the generalist model, loaded once.
///
/// Cheap to clone (an `Arc` inside), `Send + Sync`: load it once and make any number of
/// [`Session`](crate::Session)s from it, on any threads. Tensors stored as aligned f32 stay in
/// the memory-mapped file. CPU sessions share one set of prepared weights (built on the first
/// CPU session, then reused): N CPU sessions do not hold N copies.
///
/// ```
/// let model = percept::Model::demo()?;
/// assert_eq!(model.resolution(), 128);
/// assert!(model.parameter_count() > 1_000_000);
/// # Ok::<(), percept::Error>(())
/// ```
#[derive(Clone)]
pub struct Model {
    inner: Arc<ModelInner>,
}

pub(crate) struct ModelInner {
    pub(crate) source: ModelSource,
    /// The CPU engines every CPU session shares (CPU weights are read-only), built lazily: at
    /// f32 and at bf16.
    cpu_engine: Mutex<[Option<Arc<Engine<Cpu>>>; 2]>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("description", &self.description()).finish()
    }
}

impl Model {
    fn from_source(source: ModelSource) -> Model {
        Model { inner: Arc::new(ModelInner { source, cpu_engine: Mutex::new([None, None]) }) }
    }

    /// A `.safetensors` or PyTorch `.pt` model file; its config from the file's metadata, else
    /// a `config.json` beside it, else inferred from the tensor shapes. The file must hold the
    /// VAE (`vae.*` tensors); otherwise use [`Model::load_with_sd2`].
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let src = model_file::open_file(path.as_ref())?;
        Ok(Self::from_source(model_file::complete(src, None)?))
    }

    /// A model file with the VAE and scheduler of a Stable-Diffusion-2 folder (diffusers layout:
    /// `vae/config.json`, `vae/diffusion_pytorch_model.safetensors`, optionally
    /// `scheduler/scheduler_config.json`).
    pub fn load_with_sd2(path: impl AsRef<Path>, sd2_dir: impl AsRef<Path>) -> Result<Model> {
        let src = model_file::open_file(path.as_ref())?;
        Ok(Self::from_source(model_file::complete(src, Some(sd2_dir.as_ref()))?))
    }

    /// A percept `.safetensors` model in memory (DiT and `vae.*` tensors, config in the
    /// `percept.config` metadata or inferred). The bytes are copied once into an anonymous map.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Model> {
        Ok(Self::from_source(model_file::open_bytes("<model bytes>", &bytes)?))
    }

    /// The small demo model trained on the toy data (128 px), found beside the executable or in
    /// the crate's `toy_data/` folder. Reads no environment variables.
    pub fn demo() -> Result<Model> {
        Self::load(model_file::demo_model_path()?)
    }

    /// The published model's shape (512 px, 2.76 billion DiT values, about 11 GB in f32) with
    /// synthetic weights: for timing and memory planning, not for predictions.
    pub fn synthetic_generalist() -> Result<Model> {
        Ok(Self::from_source(model_file::complete(model_file::synthetic_generalist()?, None)?))
    }

    /// A model spec as the CLI takes it (a file, `synthetic:generalist`, or `None` for the demo
    /// model) with an optional SD-2 folder.
    #[doc(hidden)]
    pub fn open_spec(spec: Option<&str>, sd2: Option<&Path>) -> Result<Model> {
        Ok(Self::from_source(model_file::resolve(spec, sd2)?))
    }

    /// The model's configs (DiT, VAE, resolution).
    #[doc(hidden)]
    pub fn config(&self) -> &crate::weights::config::ModelConfig {
        &self.inner.source.config
    }

    /// The model's input side in pixels (128 for the demo model, 512 for the published one).
    pub fn resolution(&self) -> usize {
        self.inner.source.config.resolution
    }

    /// Where the model came from (file, folder), for messages.
    pub fn description(&self) -> &str {
        &self.inner.source.description
    }

    /// Values in the DiT and the VAE.
    pub fn parameter_count(&self) -> usize {
        let s = &self.inner.source;
        s.dit.iter().chain(s.vae.iter()).map(|(_, t)| t.numel()).sum()
    }

    pub(crate) fn source(&self) -> &ModelSource {
        &self.inner.source
    }

    /// How many holders the shared CPU engine has besides the model (tests: one engine for
    /// every CPU session); 0 before the first CPU session.
    #[doc(hidden)]
    pub fn cpu_engine_users(&self) -> usize {
        let slots = self.inner.cpu_engine.lock().unwrap_or_else(|e| e.into_inner());
        slots.iter().flatten().map(|e| Arc::strong_count(e) - 1).sum()
    }

    /// The CPU engine all CPU sessions at this precision share, built on first use (at bf16
    /// the matrices are converted and packed then, once).
    pub(crate) fn cpu_engine(&self, bf16: bool) -> Result<Arc<Engine<Cpu>>> {
        let mut slots = self.inner.cpu_engine.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[bf16 as usize];
        if let Some(e) = slot.as_ref() {
            return Ok(e.clone());
        }
        let be = if bf16 { Cpu::bf16() } else { Cpu::new() };
        let e = Arc::new(Engine::new(be, &self.inner.source)?);
        *slot = Some(e.clone());
        Ok(e)
    }
}

// A Model is shared between threads (checked at compile time).
const _: () = {
    const fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Model>();
};
