//! Stopping a run between denoising steps and reporting its progress: one mechanism for the
//! library's cancel tokens and progress callbacks and for the CLI's signal handling.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A flag another thread (or a signal handler) sets to stop a run at the next step boundary.
/// Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    /// Ask the run to stop; it returns `Error::Cancelled` at its next step boundary.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// Clear the flag (after a cancelled call has returned, so the next call runs).
    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Where a run is: `step` of `steps` denoising steps done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub step: usize,
    pub steps: usize,
}

/// Called after each denoising step; returning false stops the run (`Error::Cancelled`).
pub type ProgressFn = Arc<dyn Fn(Progress) -> bool + Send + Sync>;

/// What a run checks between its denoising steps. The default checks nothing.
#[derive(Clone, Default)]
pub struct Control {
    pub cancel: Option<CancelToken>,
    pub progress: Option<ProgressFn>,
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control")
            .field("cancel", &self.cancel)
            .field("progress", &self.progress.as_ref().map(|_| "Fn(Progress) -> bool"))
            .finish()
    }
}

impl Control {
    /// Whether anything is checked or reported (a token or a callback is set).
    pub fn is_active(&self) -> bool {
        self.cancel.is_some() || self.progress.is_some()
    }
    /// Before a step: stop if cancelled.
    pub fn check(&self) -> Result<()> {
        match &self.cancel {
            Some(c) if c.is_cancelled() => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }
    /// After step `step` (1-based) of `steps`: report it; stop if the callback says so or the
    /// token was cancelled meanwhile.
    pub fn step_done(&self, step: usize, steps: usize) -> Result<()> {
        if let Some(p) = &self.progress {
            if !p(Progress { step, steps }) {
                return Err(Error::Cancelled);
            }
        }
        self.check()
    }
}
