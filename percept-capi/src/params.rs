//! Reading what C hands in: params structs (versioned by their leading `struct_size`), C
//! strings and paths, and the NULL checks around handles.

use std::ffi::{c_char, CStr};
use std::path::PathBuf;

use crate::status::{CResult, Failure};

/// A `#[repr(C)]` params struct whose first field is `struct_size: usize`.
///
/// # Safety
/// The implementing type must be `#[repr(C)]` with `struct_size: usize` as its first field.
pub(crate) unsafe trait Params: Copy {
    /// The C name, for messages ("percept_session_params").
    const NAME: &'static str;
    /// The defaults, as `percept_*_default_params()` returns them.
    fn defaults() -> Self;
}

/// Read a params struct: NULL means the defaults. A `struct_size` below this version's size
/// is refused (a struct not initialised by its `*_default_params()`, or a caller built against
/// an older header than any this library knows); a larger one (a newer header) is read up to
/// the fields this version knows.
///
/// # Safety
/// `p` is NULL or points to at least `struct_size` readable bytes.
pub(crate) unsafe fn read_params<T: Params>(p: *const T) -> CResult<T> {
    if p.is_null() {
        return Ok(T::defaults());
    }
    let size = std::ptr::read_unaligned(p.cast::<usize>());
    let expected = std::mem::size_of::<T>();
    if size < expected {
        return Err(Failure::invalid(format!(
            "{name}.struct_size is {size}, expected {expected}: initialise the struct with {name_fn}()",
            name = T::NAME,
            name_fn = T::NAME.replace("_params", "_default_params")
        )));
    }
    Ok(std::ptr::read_unaligned(p))
}

/// An optional path argument (NULL: none). Any bytes are accepted on Unix, as the OS does.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
pub(crate) unsafe fn path_arg(p: *const c_char, what: &str) -> CResult<Option<PathBuf>> {
    if p.is_null() {
        return Ok(None);
    }
    let bytes = CStr::from_ptr(p).to_bytes();
    if bytes.is_empty() {
        return Err(Failure::invalid(format!("{what} is an empty string (pass NULL for none)")));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(Some(PathBuf::from(std::ffi::OsStr::from_bytes(bytes))))
    }
    #[cfg(not(unix))]
    {
        let s = std::str::from_utf8(bytes).map_err(|_| Failure::invalid(format!("{what} is not valid UTF-8")))?;
        Ok(Some(PathBuf::from(s)))
    }
}

/// A handle argument that must not be NULL.
///
/// # Safety
/// `p` is NULL or a live handle returned by this library.
pub(crate) unsafe fn handle<'a, T>(p: *const T, what: &str) -> CResult<&'a T> {
    p.as_ref().ok_or_else(|| Failure::invalid(format!("{what} is NULL")))
}

/// Check an out-pointer for a new handle and set it to NULL (what it holds if the call fails).
///
/// # Safety
/// `out` is NULL or valid for a write of a pointer.
pub(crate) unsafe fn clear_out<T>(out: *mut *mut T, what: &str) -> CResult<()> {
    if out.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    *out = std::ptr::null_mut();
    Ok(())
}
