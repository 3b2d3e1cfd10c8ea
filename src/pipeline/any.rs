//! Engines on the CUDA backends (the API's `Session` holds whichever backend was chosen).

use super::Engine;
use crate::backend::cuda::backend::Cuda;
use crate::error::Result;

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
