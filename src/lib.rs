//! percept: inference engine for the generalist DiT-MoE perception diffusion model.
//!
//! Modules follow the data flow: weights -> model -> scheduler -> pipeline -> cli, on top of
//! `tensor`, `backend`, `error` and `io`.
pub mod backend;
pub mod cli;
pub mod error;
pub mod io;
pub mod model;
pub mod pipeline;
pub mod scheduler;
pub mod tensor;
pub mod postprocess;
pub mod data;
pub mod weights;
pub mod verify;
pub mod toydata;

pub use error::{Error, Result};
pub use tensor::{DType, Tensor};
