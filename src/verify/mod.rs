//! `percept verify`: run every fixture in a folder and compare with the authors' outputs.
pub mod fixture;
