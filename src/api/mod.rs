//! The public Rust API: a [`Model`] loaded once, [`Session`]s on devices, the three tasks on
//! borrowed images with typed options and results. Everything here is re-exported at the crate
//! root; the C ABI (`percept-capi`) and the Python bindings (`percept-py`) are built on it.

pub mod control;
pub mod image;
pub mod model;
pub mod options;
#[doc(hidden)]
pub mod prepare;
pub mod results;
pub mod session;

pub use control::{CancelToken, Progress, ProgressFn};
pub use image::{ImageView, PixelFormat};
pub use model::Model;
pub use options::{AmodalOptions, DepthOptions, FlowOptions, Options};
pub use results::{AmodalResult, DepthResult, FlowResult, Latent};
pub use session::{Device, Precision, Session, SessionOptions};
