//! All integration tests in one binary (one link step).
mod cli;
mod data;
mod ddim;
mod demo;
mod emu;
mod eval;
mod fixtures;
mod gemm;
mod io;
mod kernels;
mod nvrtc;
mod ops;
mod postprocess;
mod probe;
mod pt;
mod support;
mod toydata;
