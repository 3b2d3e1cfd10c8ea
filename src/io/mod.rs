//! Files in and out: atomic writes, images (load, resize, save), flow files, numpy arrays, CLI inputs.
pub mod atomic;
pub mod flo;
pub mod image;
pub mod inputs;
pub mod npy;
pub mod resize;
