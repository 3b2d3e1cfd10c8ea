//! All integration tests in one binary (one link step).
mod data;
mod ddim;
mod fixtures;
mod gemm;
mod io;
mod ops;
mod postprocess;
mod pt;
mod support;
mod toydata;
