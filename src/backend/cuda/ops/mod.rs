//! The CUDA backend's ops by family: each file is an `impl Cuda` block with the family's
//! launches and its choice between the simple kernel and a fast variant.

mod attention;
mod conv;
mod convert;
mod ddim;
mod elementwise;
mod embed;
mod layout;
mod linear;
mod moe;
mod norm;
