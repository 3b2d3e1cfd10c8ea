//! One error type for the library. Messages are lowercase and name the file, tensor, op or
//! argument involved, say what was expected and what was found, and where possible what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed. The OS error is part of the message and deliberately
    /// not also a `source`: a chain printer (`{:#}`) would say it twice.
    #[error("{path}: {}", describe_io(.err))]
    Io { path: PathBuf, err: std::io::Error },
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
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io { path: path.into(), err }
    }

    /// Whether this is a write that failed for lack of space (disk full or quota exceeded): a
    /// run stops there rather than fail every later write the same way.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { err, .. } if is_disk_full(err))
    }
}

/// ENOSPC or EDQUOT.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

/// The OS error, with the disk-full case said in words.
fn describe_io(e: &std::io::Error) -> String {
    if is_disk_full(e) {
        format!("the disk is full ({e})")
    } else {
        e.to_string()
    }
}

/// `bail!`-style helpers that keep call sites short.
#[macro_export]
macro_rules! shape_err {
    ($($arg:tt)*) => { $crate::error::Error::Shape(format!($($arg)*)) };
}
