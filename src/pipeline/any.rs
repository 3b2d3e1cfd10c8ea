//! An engine on whichever backend was chosen at run time (one `match`, here).

use super::tasks::{Prediction, Request, SampleOptions};
use super::Engine;
use crate::backend::cpu::Cpu;
use crate::backend::cuda::backend::Cuda;
use crate::backend::cuda::gpu::GpuDevice;
use crate::backend::Backend;
use crate::emu::EmuDevice;
use crate::error::Result;
use crate::weights::config::ModelConfig;

/// An engine on a CUDA backend, after checking that the model's weights fit in the device's
/// free memory (a clear error instead of an allocation failure halfway through loading).
pub fn cuda_engine<D: crate::backend::cuda::device::Device>(
    be: Cuda<D>,
    src: &crate::weights::model_file::ModelSource,
) -> Result<Engine<Cuda<D>>> {
    let shapes = src.dit.iter().chain(src.vae.iter()).map(|(_, t)| t.shape.as_slice());
    be.check_fits(&src.description, be.weight_bytes(shapes))?;
    Engine::new(be, src)
}

pub enum AnyEngine {
    Cpu(Engine<Cpu>),
    Emu(Engine<Cuda<EmuDevice>>),
    Gpu(Engine<Cuda<GpuDevice>>),
}

impl AnyEngine {
    pub fn config(&self) -> &ModelConfig {
        match self {
            AnyEngine::Cpu(e) => &e.config,
            AnyEngine::Emu(e) => &e.config,
            AnyEngine::Gpu(e) => &e.config,
        }
    }
    pub fn backend_name(&self) -> String {
        match self {
            AnyEngine::Cpu(e) => e.backend.name(),
            AnyEngine::Emu(e) => e.backend.name(),
            AnyEngine::Gpu(e) => e.backend.name(),
        }
    }
    pub fn predict(&self, requests: &[Request], opts: &SampleOptions) -> Result<Vec<Prediction>> {
        match self {
            AnyEngine::Cpu(e) => e.predict(requests, opts),
            AnyEngine::Emu(e) => e.predict(requests, opts),
            AnyEngine::Gpu(e) => e.predict(requests, opts),
        }
    }
}
