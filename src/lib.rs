//! percept: inference engine for the generalist DiT-MoE perception diffusion model.
//!
//! Modules follow the data flow: weights -> model -> scheduler -> pipeline -> cli.
pub mod error;
pub mod io;
pub mod tensor;
pub mod verify;
pub mod weights;

pub use error::{Error, Result};
pub use tensor::{DType, Tensor};
pub mod emu;
