//! All integration tests in one binary (one link step).
mod fixtures;
mod support;
mod ddim;
mod ops;
