//! What a kernel launch is, for both devices (the GPU and the emulator): the argument values,
//! the grid, and the checked conversions every size goes through on its way to a kernel.

use crate::error::{Error, Result};

/// A kernel argument, passed by value like cuLaunchKernel's `void** kernelParams`.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// A device address (a buffer's address plus a byte offset), or 0 for a null pointer.
    Ptr(u64),
    I32(i32),
    U32(u32),
    F32(f32),
    I64(i64),
    U64(u64),
}

impl Arg {
    /// The argument's type code, as in a kernel's signature string (p pointer, i int,
    /// u unsigned, f float, l long long, L unsigned long long).
    pub fn code(&self) -> char {
        match self {
            Arg::Ptr(_) => 'p',
            Arg::I32(_) => 'i',
            Arg::U32(_) => 'u',
            Arg::F32(_) => 'f',
            Arg::I64(_) => 'l',
            Arg::U64(_) => 'L',
        }
    }

    /// The argument's bits, zero-extended to a 64-bit parameter slot.
    pub fn bits(&self) -> u64 {
        match *self {
            Arg::Ptr(p) => p,
            Arg::I32(v) => v as u32 as u64,
            Arg::U32(v) => v as u64,
            Arg::F32(v) => v.to_bits() as u64,
            Arg::I64(v) => v as u64,
            Arg::U64(v) => v,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct LaunchConfig {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared_bytes: u32,
}

impl LaunchConfig {
    /// A 1-D launch.
    pub fn linear(blocks: u32, threads: u32) -> Self {
        LaunchConfig { grid: [blocks, 1, 1], block: [threads, 1, 1], shared_bytes: 0 }
    }
}

/// Threads per block of the 1-D grid-stride kernels.
pub const THREADS: u32 = 256;

/// Blocks of a 1-D grid-stride launch over `n` elements.
pub fn blocks_for(n: usize) -> u32 {
    (n.div_ceil(THREADS as usize)).clamp(1, 65_535) as u32
}

/// `v` as the integer type a launch dimension (or a size checked before anything is allocated)
/// takes, or a clear error naming the op: a size that wrapped on the way to a kernel would make it
/// index the wrong memory. Kernel parameters are checked the same way by the generated launchers
/// (`launchers.rs`; grid-stride element counts are 64-bit, the per-axis sizes 32-bit, the kernels
/// widening their products to 64 bits).
pub fn checked<T: TryFrom<usize>>(op: &str, what: &str, v: usize) -> Result<T> {
    T::try_from(v).map_err(|_| {
        Error::Shape(format!(
            "{op}: {what} = {v} does not fit the kernel's {} parameter (tensor too large for this kernel)",
            std::any::type_name::<T>()
        ))
    })
}

/// A launch dimension (grid size or shared-memory bytes).
pub fn dim(op: &str, v: usize) -> Result<u32> {
    checked::<u32>(op, "launch dimension", v)
}
