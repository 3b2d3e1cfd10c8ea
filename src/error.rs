//! One error type for the library. Messages are lowercase and name the file, tensor, op or
//! argument involved, say what was expected and what was found, and where possible what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A weights file is unreadable or does not match the model's config.
    #[error("weights: {0}")]
    Weights(String),
    /// A PyTorch checkpoint was refused.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A config (model, VAE, scheduler) is missing a field or has an impossible value.
    #[error("config: {0}")]
    Config(String),
    /// An op got tensors whose shapes do not fit together.
    #[error("shape: {0}")]
    Shape(String),
    /// A user-supplied input (image, mask, flow file, argument) is unusable.
    #[error("input: {0}")]
    Input(String),
    /// A fixture file is malformed.
    #[error("fixture: {0}")]
    Fixture(String),
    /// CUDA (driver, NVRTC or a device) is not usable here.
    #[error("cuda: {0}")]
    NoCuda(String),
    /// A CUDA call or kernel compile failed.
    #[error("cuda: {0}")]
    Cuda(String),
    /// The run was stopped between denoising steps (cancel token, progress callback, signal).
    #[error("cancelled")]
    Cancelled,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// `bail!`-style helpers that keep call sites short.
#[macro_export]
macro_rules! shape_err {
    ($($arg:tt)*) => { $crate::error::Error::Shape(format!($($arg)*)) };
}
