//! All integration tests in one binary (one link step).
mod emu;
mod support;
mod nvrtc;
mod cli;
mod data;
mod ddim;
mod fixtures;
mod io;
mod kernels;
mod ops;
mod postprocess;
mod pt;
mod toydata;
