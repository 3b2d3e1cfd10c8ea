//! Files in and out: atomic writes, images, flow files, numpy arrays.
pub mod atomic;
pub mod flo;
