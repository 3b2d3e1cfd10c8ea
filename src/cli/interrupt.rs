//! SIGTERM (a batch scheduler's preemption notice) and SIGINT (Ctrl-C) stop a run at the next
//! denoising-step boundary instead of killing it mid-write: the handler only sets the run's
//! [`CancelToken`] (an atomic store, async-signal-safe); the engine returns `Error::Cancelled`
//! between steps and the command finishes the writes of the batch it has, then reports what was
//! done and how to resume. A second signal terminates at once (the default action): the user
//! insists, and outputs are still never partial under their final names (written to a temporary
//! name, fsynced, renamed).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use crate::pipeline::control::CancelToken;

static TOKEN: OnceLock<CancelToken> = OnceLock::new();
/// The first signal received, or 0.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

#[cfg(unix)]
extern "C" fn on_signal(sig: libc::c_int) {
    if SIGNAL.swap(sig, Ordering::SeqCst) != 0 {
        // SAFETY: signal() and raise() are async-signal-safe.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
        return;
    }
    if let Some(t) = TOKEN.get() {
        t.cancel();
    }
}

/// Installs the handlers (once per process) and returns the token they cancel.
pub fn install() -> CancelToken {
    let token = TOKEN.get_or_init(CancelToken::new).clone();
    #[cfg(unix)]
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a valid handler; SA_RESTART so that a read or write in
        // flight completes instead of failing with EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                log::warn!("could not install the handler for signal {sig}: {}", std::io::Error::last_os_error());
            }
        }
    }
    token
}

/// The signal that stopped the run, by name, if any.
pub fn received() -> Option<&'static str> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        #[cfg(unix)]
        libc::SIGTERM => Some("SIGTERM"),
        #[cfg(unix)]
        libc::SIGINT => Some("SIGINT (Ctrl-C)"),
        _ => Some("a signal"),
    }
}

/// The exit status for a run that returned `default`: 128 + the signal number after a signal
/// (the shell's convention: 143 for SIGTERM, 130 for Ctrl-C), else `default`.
pub fn exit_status(default: i32) -> i32 {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => default,
        sig => 128 + sig,
    }
}
