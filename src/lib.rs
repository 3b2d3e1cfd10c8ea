//! percept: inference engine for the generalist DiT-MoE perception diffusion model.
//!
//! Modules follow the data flow: weights -> model -> scheduler -> pipeline -> cli.
pub mod error;
pub mod tensor;
pub mod io;
pub mod data;
pub mod weights;
pub mod verify;

pub use error::{Error, Result};
pub use tensor::{DType, Tensor};
