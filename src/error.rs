//! One error type for the library. Messages are lowercase and name the file, tensor, op or
//! argument involved, say what was expected and what was found, and where possible what to do.

use std::path::PathBuf;

///
/// `#[non_exhaustive]`: match on [`Error::kind`] (stable, coarse) where a binding or a caller
/// needs to branch, and print the error for the details.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The device (or the host, for a CPU run) has no room for what the call needs: the model's
    /// weights, or the activations of a batch (try a smaller `batch_size` or another device).
    #[error("out of memory: {0}")]
    OutOfMemory(String),
}

/// What kind of failure an [`Error`] is: coarse, stable categories for callers and bindings
/// (the C ABI's status codes and Python's exception classes map one to one onto these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument or input (image, mask, option, latent) is unusable.
    InvalidArgument,
    /// Reading or writing a file failed.
    Io,
    /// A weights file or checkpoint is unreadable or does not fit the model.
    Weights,
    /// A config is missing a field or has an impossible value.
    Config,
    /// The requested device is not available here (no driver, no GPU, no NVRTC).
    NoDevice,
    /// A device call or kernel compile failed.
    Device,
    /// Not enough memory for the weights or the batch.
    OutOfMemory,
    /// The call was stopped by its cancel token or progress callback.
    Cancelled,
    /// A bug in percept (a shape that should have fitted, a malformed fixture).
    Internal,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// The error's category (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::Weights(_) | Error::Checkpoint(_) => ErrorKind::Weights,
            Error::Config(_) => ErrorKind::Config,
            Error::Input(_) => ErrorKind::InvalidArgument,
            Error::Shape(_) | Error::Fixture(_) => ErrorKind::Internal,
            Error::NoCuda(_) => ErrorKind::NoDevice,
            Error::Cuda(_) => ErrorKind::Device,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::OutOfMemory(_) => ErrorKind::OutOfMemory,
        }
    }
}

/// `bail!`-style helpers that keep call sites short.
#[doc(hidden)]
#[macro_export]
macro_rules! shape_err {
    ($($arg:tt)*) => { $crate::error::Error::Shape(format!($($arg)*)) };
}
