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
