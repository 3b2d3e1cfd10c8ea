//! Status codes, the thread-local last-error message, and the guard every entry point runs its
//! body in (errors become a status plus a message; a panic becomes `PERCEPT_ERR_INTERNAL`
//! instead of unwinding into C, which would be undefined behaviour).

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use percept::ErrorKind;

/// What a call returned. Every function that can fail returns one; on anything but
/// `PERCEPT_OK`, `percept_last_error()` on the same thread says what went wrong.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum percept_status {
    PERCEPT_OK = 0,
    /// A NULL pointer, a bad size, stride or pixel format, an output buffer too small, an
    /// unknown enum value, a params struct not initialised by its `*_default_params()`, or a
    /// session used by two threads at once.
    PERCEPT_ERR_INVALID_ARGUMENT = 1,
    /// A file could not be read.
    PERCEPT_ERR_IO = 2,
    /// A weights file is unreadable or does not fit the model.
    PERCEPT_ERR_WEIGHTS = 3,
    /// A model config is missing a field or has an impossible value.
    PERCEPT_ERR_CONFIG = 4,
    /// The requested device (a CUDA GPU) is not available here.
    PERCEPT_ERR_NO_DEVICE = 5,
    /// A device call or kernel compile failed.
    PERCEPT_ERR_DEVICE = 6,
    /// Host or device memory ran out (the model does not fit, a batch too large).
    PERCEPT_ERR_OUT_OF_MEMORY = 7,
    /// The call was stopped by `percept_session_cancel()` or by its progress callback.
    PERCEPT_ERR_CANCELLED = 8,
    /// A bug in percept (a caught panic); the message says where.
    PERCEPT_ERR_INTERNAL = 9,
}

use percept_status::*;

/// A failed call: the status to return and the message for `percept_last_error()`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: percept_status,
    pub message: String,
}

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure { status: PERCEPT_ERR_INVALID_ARGUMENT, message: message.into() }
    }
}

impl From<percept::Error> for Failure {
    fn from(e: percept::Error) -> Self {
        let status = match e.kind() {
            ErrorKind::InvalidArgument => PERCEPT_ERR_INVALID_ARGUMENT,
            ErrorKind::Io => PERCEPT_ERR_IO,
            ErrorKind::Weights => PERCEPT_ERR_WEIGHTS,
            ErrorKind::Config => PERCEPT_ERR_CONFIG,
            ErrorKind::NoDevice => PERCEPT_ERR_NO_DEVICE,
            ErrorKind::Device => PERCEPT_ERR_DEVICE,
            ErrorKind::OutOfMemory => PERCEPT_ERR_OUT_OF_MEMORY,
            ErrorKind::Cancelled => PERCEPT_ERR_CANCELLED,
            // Internal, and kinds added after this crate was written.
            _ => PERCEPT_ERR_INTERNAL,
        };
        Failure { status, message: e.to_string() }
    }
}

pub(crate) type CResult<T> = Result<T, Failure>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message never holds a NUL of its own; should one slip in, cut it there.
    let message = message.split('\0').next().unwrap_or_default();
    let message = CString::new(message).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = message);
}

/// The message of a panic payload (`panic!` with a literal or a formatted string).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// Run an entry point's body: `Ok` is `PERCEPT_OK`; an error sets the thread's last error and
/// returns its status; a panic is caught and returned as `PERCEPT_ERR_INTERNAL`.
pub(crate) fn guard(body: impl FnOnce() -> CResult<()>) -> percept_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => PERCEPT_OK,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(payload) => {
            set_last_error(&format!("internal error (a bug in percept): {}", panic_message(&*payload)));
            PERCEPT_ERR_INTERNAL
        }
    }
}

/// For the few entry points that return a value rather than a status (getters): a panic
/// returns `fallback` and sets the last error.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            set_last_error(&format!("internal error (a bug in percept): {}", panic_message(&*payload)));
            fallback
        }
    }
}

/// The message of the last call on this thread that did not return `PERCEPT_OK` ("" if none).
///
/// The string is owned by percept and stays valid until the next failing call on this thread;
/// copy it to keep it. Successful calls leave it unchanged.
#[no_mangle]
pub extern "C" fn percept_last_error() -> *const c_char {
    guard_value(std::ptr::null(), || LAST_ERROR.with(|slot| slot.borrow().as_ptr()))
}

/// A status's name as a static string ("PERCEPT_OK", "PERCEPT_ERR_IO", ...); never NULL.
/// Takes an int so that any value, even one outside the enum, can be named.
#[no_mangle]
pub extern "C" fn percept_status_name(status: i32) -> *const c_char {
    let name: &'static [u8] = match status {
        0 => b"PERCEPT_OK\0",
        1 => b"PERCEPT_ERR_INVALID_ARGUMENT\0",
        2 => b"PERCEPT_ERR_IO\0",
        3 => b"PERCEPT_ERR_WEIGHTS\0",
        4 => b"PERCEPT_ERR_CONFIG\0",
        5 => b"PERCEPT_ERR_NO_DEVICE\0",
        6 => b"PERCEPT_ERR_DEVICE\0",
        7 => b"PERCEPT_ERR_OUT_OF_MEMORY\0",
        8 => b"PERCEPT_ERR_CANCELLED\0",
        9 => b"PERCEPT_ERR_INTERNAL\0",
        _ => b"(unknown percept_status)\0",
    };
    name.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last_error() -> String {
        unsafe { CStr::from_ptr(percept_last_error()) }.to_str().unwrap().to_string()
    }

    #[test]
    fn failure_sets_status_and_message() {
        assert_eq!(guard(|| Err(Failure::invalid("width is 0"))), PERCEPT_ERR_INVALID_ARGUMENT);
        assert_eq!(last_error(), "width is 0");
        // Success leaves the last message as it was.
        assert_eq!(guard(|| Ok(())), PERCEPT_OK);
        assert_eq!(last_error(), "width is 0");
    }

    #[test]
    fn panic_becomes_internal() {
        let status = guard(|| panic!("boom {}", 7));
        assert_eq!(status, PERCEPT_ERR_INTERNAL);
        assert_eq!(last_error(), "internal error (a bug in percept): boom 7");
        assert_eq!(guard_value(5, || panic!("again")), 5);
        assert!(last_error().ends_with("again"));
    }

    #[test]
    fn last_error_is_per_thread() {
        guard(|| Err(Failure::invalid("main thread")));
        std::thread::spawn(|| {
            assert_eq!(last_error(), "");
            guard(|| Err(Failure::invalid("other thread")));
            assert_eq!(last_error(), "other thread");
        })
        .join()
        .unwrap();
        assert_eq!(last_error(), "main thread");
    }

    #[test]
    fn status_names() {
        let name = |s: percept_status| unsafe { CStr::from_ptr(percept_status_name(s as i32)) }.to_str().unwrap();
        assert_eq!(name(PERCEPT_OK), "PERCEPT_OK");
        assert_eq!(name(PERCEPT_ERR_CANCELLED), "PERCEPT_ERR_CANCELLED");
        assert_eq!(name(PERCEPT_ERR_INTERNAL), "PERCEPT_ERR_INTERNAL");
        let unknown = unsafe { CStr::from_ptr(percept_status_name(42)) };
        assert_eq!(unknown.to_str().unwrap(), "(unknown percept_status)");
    }
}
