//! Small building blocks every layer may use: the seeded generator and the hash that noise, toy
//! data, synthetic weights, test inputs and kernel cache keys are all built on.
pub mod hash;
pub mod rng;
