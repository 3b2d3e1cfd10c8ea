//! All integration tests in one binary (one link step).
mod ddim;
mod fixtures;
mod ops;
mod support;
mod toydata;
mod postprocess;
mod data;
mod io;
mod pt;
