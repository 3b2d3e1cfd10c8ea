//! What the tasks return: plain row-major, interleaved buffers (what numpy and C callers want).

/// A latent: the DiT's working state, `shape` `[rows, channels, h, w]`, row-major f32.
///
/// Rows are the ensemble members (and for flow, the two parts, x then y, each `ensemble_size`
/// rows): `rows = ensemble_size * parts`, `parts` being 2 for flow and 1 otherwise. The
/// spatial size is the model's resolution divided by the VAE's factor: 32 x 32 for the demo
/// model (128 px, factor 4), 64 x 64 for the published one (512 px, factor 8).
#[derive(Clone, Debug, PartialEq)]
pub struct Latent {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Relative depth of one image.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthResult {
    pub width: usize,
    pub height: usize,
    /// `height * width` values of relative (affine-invariant) depth in [0, 1], row-major.
    pub depth: Vec<f32>,
    /// The ensemble's spread per pixel (`height * width`), when `output_uncertainty` was asked
    /// for and `ensemble_size > 1`; `None` otherwise.
    pub uncertainty: Option<Vec<f32>>,
    /// The final denoised latent, when `output_latent` was asked for.
    pub latent: Option<Latent>,
}

/// Optical flow from the first frame to the second.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowResult {
    pub width: usize,
    pub height: usize,
    /// `height * width * 2` values, interleaved `u, v` per pixel, in pixels at this size.
    pub flow: Vec<f32>,
    pub latent: Option<Latent>,
}

/// Amodal segmentation: the whole object, on white.
#[derive(Clone, Debug, PartialEq)]
pub struct AmodalResult {
    pub width: usize,
    pub height: usize,
    /// `height * width * 3` values in [0, 1], interleaved RGB.
    pub rgb: Vec<f32>,
    /// `height * width` values: 1 where the object is, 0 elsewhere (found at the model's
    /// resolution, resized nearest).
    pub mask: Vec<u8>,
    pub latent: Option<Latent>,
}
