//! percept: inference engine for the generalist DiT-MoE perception diffusion model (depth,
//! optical flow, amodal segmentation).
//!
//! Load a [`Model`] once, make a [`Session`] per thread on a [`Device`], and call
//! [`Session::depth`], [`Session::flow`] or [`Session::amodal`] on borrowed [`ImageView`]s:
//!
//! ```
//! use percept::{DepthOptions, Device, ImageView, Model, Session};
//! let model = Model::demo()?;                                   // weights loaded once
//! let mut session = Session::new(&model, Device::Cpu { threads: Some(1) })?;
//! let pixels = vec![128u8; 64 * 48 * 3];
//! let image = ImageView::rgb8(&pixels, 64, 48)?;
//! let opts = DepthOptions { num_inference_steps: 2, seed: 1, ..Default::default() };
//! let depth = session.depth(&image, &opts)?;                    // 64 x 48, in [0, 1]
//! assert_eq!(depth.depth.len(), 64 * 48);
//! # Ok::<(), percept::Error>(())
//! ```
//!
//! Errors are [`Error`]s; [`Error::kind`] gives a stable [`ErrorKind`]. No call panics on bad
//! input, and the library reads no environment variable for a user choice (model, device);
//! developer switches are listed in `backend::switches`.
//!
//! The modules below the API follow the data flow: weights -> model -> scheduler -> pipeline ->
//! api (and the `percept` command line on top, behind the default `cli` feature). They are
//! public for percept's own tests, benches and bindings, not a stable interface.

// Modules in data-flow order (rustfmt keeps it: one group each): each imports only modules
// declared above it, which tests/layers.rs checks; `backend` never imports `emu`, the emulator
// being one implementation of its device interface.

// errors every layer returns
pub mod error;

// host tensors
#[doc(hidden)]
pub mod tensor;

// files: images, .npy, .flo, atomic writes
#[doc(hidden)]
pub mod io;

// checkpoints and configs
#[doc(hidden)]
pub mod weights;

// the ops: CPU, CUDA (device interface, kernels)
#[doc(hidden)]
pub mod backend;

// the CUDA device emulated on the CPU
#[doc(hidden)]
pub mod emu;

// DiT-MoE and VAE on a backend
#[doc(hidden)]
pub mod model;

// DDIM
#[doc(hidden)]
pub mod scheduler;

// ensembling, metrics, colours
#[doc(hidden)]
pub mod postprocess;

// tasks and ensembles
#[doc(hidden)]
pub mod pipeline;

// the public Model/Session API
pub mod api;

// dataset layouts
#[doc(hidden)]
pub mod data;

// generated toy data
#[doc(hidden)]
pub mod toydata;

// golden fixtures
#[doc(hidden)]
pub mod verify;

// the command line
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;

pub use api::{
    AmodalOptions, AmodalResult, CancelToken, DepthOptions, DepthResult, Device, FlowOptions, FlowResult, ImageView,
    Latent, Model, Options, PixelFormat, Precision, Progress, ProgressFn, Session, SessionOptions,
};
pub use error::{Error, ErrorKind, Result};
#[doc(hidden)]
pub use tensor::{DType, Tensor};
