//! percept: inference engine for the generalist DiT-MoE perception diffusion model.
//!
//! Modules follow the data flow: weights -> model -> scheduler -> pipeline -> cli, on top of
//! `tensor`, `backend`, `error` and `io`.
pub mod backend;
pub mod cli;
pub mod data;
pub mod error;
pub mod io;
pub mod model;
pub mod pipeline;
pub mod postprocess;
pub mod scheduler;
pub mod tensor;
pub mod toydata;
pub mod verify;
pub mod weights;

pub use error::{Error, Result};
pub use tensor::{DType, Tensor};
pub mod emu;
