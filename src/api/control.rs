//! Stopping a call and watching it: the API uses the pipeline's own mechanism
//! (`pipeline::control`), re-exported here, so the CLI's signal handling, the C ABI's cancel
//! function and Python's `KeyboardInterrupt` all stop a run the same way.
//!
//! * [`CancelToken`]: `Send + Sync`, cheap to clone (clones share one flag). Get a session's
//!   token with [`Session::cancel_token`](crate::Session::cancel_token), hand it to another
//!   thread and call [`CancelToken::cancel`]: the running call returns [`Error::Cancelled`]
//!   at the next boundary between denoising steps. The session clears the flag when that
//!   call returns (whatever it returns), so the next call runs normally; a cancel made while
//!   no call runs stops the next call before its first step.
//! * [`ProgressFn`]: called after every denoising step with a [`Progress`]; returning `false`
//!   stops the call the same way.
//!
//! [`Error::Cancelled`]: crate::Error::Cancelled
pub use crate::pipeline::control::{CancelToken, Progress, ProgressFn};
