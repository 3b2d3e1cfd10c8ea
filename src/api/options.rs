//! Per-call options, with diffusers' names (`MarigoldDepthPipeline`) and percept's defaults.

use std::fmt;

use super::control::ProgressFn;
use super::results::Latent;

/// Options of one call (`depth`, `flow`, `amodal` and their `_batch` / `_into` forms).
///
/// The three tasks share one struct ([`DepthOptions`], [`FlowOptions`] and [`AmodalOptions`]
/// are names for it); `output_uncertainty` only means something for depth. Build it from
/// `Default` and change what you need:
///
/// ```
/// let opts = percept::DepthOptions { num_inference_steps: 10, seed: 7, ..Default::default() };
/// assert_eq!(opts.ensemble_size, 1);
/// ```
#[derive(Clone)]
pub struct Options {
    /// DDIM steps (default 50).
    pub num_inference_steps: usize,
    /// Ensemble members per input (default 1): depth is aligned and reduced as Marigold does
    /// (affine alignment + median), amodal by the median, flow by the mean.
    pub ensemble_size: usize,
    /// Seed of the initial noise (default 0). The noise depends only on the seed, the member
    /// and the part, so a result does not depend on which other inputs share its batch.
    pub seed: u64,
    /// Inputs per model batch in the `_batch` calls (default 4); results do not depend on it.
    pub batch_size: usize,
    /// `true` (default): results at the input's size; `false`: at the model's resolution
    /// (a square, `Model::resolution()` on a side; flow then in pixels at that size).
    pub match_input_resolution: bool,
    /// Return the ensemble's spread with a depth result (default `false`; `None` unless
    /// `ensemble_size > 1`).
    pub output_uncertainty: bool,
    /// Initial noise instead of the seed's, shape `[rows, C, h, w]` as described at
    /// [`Latent`]; used for every input of a call (as the seed's noise is).
    pub latents: Option<Latent>,
    /// Return the final denoised latent with each result (default `false`).
    pub output_latent: bool,
    /// Called after every denoising step; returning `false` stops the call
    /// (`Error::Cancelled`).
    pub progress: Option<ProgressFn>,
}

/// Options of a depth call.
pub type DepthOptions = Options;
/// Options of a flow call (`output_uncertainty` is ignored).
pub type FlowOptions = Options;
/// Options of an amodal call (`output_uncertainty` is ignored).
pub type AmodalOptions = Options;

impl Default for Options {
    fn default() -> Self {
        Options {
            num_inference_steps: 50,
            ensemble_size: 1,
            seed: 0,
            batch_size: 4,
            match_input_resolution: true,
            output_uncertainty: false,
            latents: None,
            output_latent: false,
            progress: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("num_inference_steps", &self.num_inference_steps)
            .field("ensemble_size", &self.ensemble_size)
            .field("seed", &self.seed)
            .field("batch_size", &self.batch_size)
            .field("match_input_resolution", &self.match_input_resolution)
            .field("output_uncertainty", &self.output_uncertainty)
            .field("latents", &self.latents.as_ref().map(|l| &l.shape))
            .field("output_latent", &self.output_latent)
            .field("progress", &self.progress.as_ref().map(|_| "Fn(Progress) -> bool"))
            .finish()
    }
}
