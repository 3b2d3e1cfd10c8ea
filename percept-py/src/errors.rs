//! The engine's errors as one Python exception, `percept._percept.Error(kind, message)`; the
//! Python layer (percept/_errors.py) turns it into the `PerceptError` family, whose classes also
//! derive from the builtin ones (ValueError, OSError, MemoryError...), which a Rust-defined
//! exception cannot do.

use percept::ErrorKind;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::PyErr;

create_exception!(_percept, Error, PyException, "An engine error: args are (kind, message).");

/// The name the Python layer maps to an exception class.
pub fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidArgument => "InvalidArgument",
        ErrorKind::Io => "Io",
        ErrorKind::Weights => "Weights",
        ErrorKind::Config => "Config",
        ErrorKind::NoDevice => "NoDevice",
        ErrorKind::Device => "Device",
        ErrorKind::OutOfMemory => "OutOfMemory",
        ErrorKind::Cancelled => "Cancelled",
        _ => "Internal",
    }
}

pub fn to_py_err(e: percept::Error) -> PyErr {
    Error::new_err((kind_name(e.kind()), e.to_string()))
}
