//! percept's C ABI. The header, `include/percept.h`, is generated from this crate by cbindgen
//! (`cargo run -p percept-capi-header` checks the committed one is current, `-- --write`
//! rewrites it) and states the rules C callers follow: threading, ownership, versioning.
//! Every exported symbol starts with `percept_`; every entry point runs its body under
//! `status::guard`, so no panic crosses into C.
#![allow(non_camel_case_types)]
// The entry points are `unsafe extern "C"` functions whose safety contract is the header's.
#![allow(clippy::missing_safety_doc)]

mod image;
mod model;
mod params;
mod predict;
mod session;
mod status;
#[cfg(test)]
mod tests;

use std::ffi::c_char;

pub use image::*;
pub use model::*;
pub use predict::*;
pub use session::*;
pub use status::*;

/// The ABI version this header describes. Raised when a function's signature or a struct's
/// layout changes incompatibly; compare with `percept_abi_version()` at start-up. Params structs
/// may gain fields at their end without a new version: their `struct_size` says which fields
/// a caller knows.
pub const PERCEPT_ABI_VERSION: u32 = 1;

/// The ABI version of the loaded library: `PERCEPT_ABI_VERSION` of the header it was built from.
#[no_mangle]
pub extern "C" fn percept_abi_version() -> u32 {
    PERCEPT_ABI_VERSION
}

/// The version of this library (the `percept-capi` crate), e.g. "0.1.0": a static string.
#[no_mangle]
pub extern "C" fn percept_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
