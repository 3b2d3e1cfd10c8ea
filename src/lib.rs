//! percept: inference engine for the generalist DiT-MoE perception diffusion model.
//!
//! Modules follow the data flow: weights -> model -> scheduler -> pipeline -> cli, on top of
//! `tensor`, `backend`, `error` and `io`.
pub mod backend;
pub mod cli;
pub mod data;
pub mod error;
pub mod io;
pub mod tensor;
pub mod model;
pub mod pipeline;
pub mod postprocess;
pub mod scheduler;
pub mod toydata;
pub mod verify;
pub mod weights;

pub use error::{Error, Result};
pub use tensor::{DType, Tensor};
pub mod emu;
// The lead hooks this into src/backend/mod.rs as `pub mod cuda;`; until then it lives here.
#[path = "backend/cuda/mod.rs"]
pub mod cuda_backend;
