//! All integration tests in one binary (one link step).
mod emu;
mod support;
mod nvrtc;
