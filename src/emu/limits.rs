//! Launch limits of the architectures the engine targets (CUDA programming guide, compute
//! capabilities 8.0, 8.9 and 9.0). The emulator refuses what the hardware would refuse.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Sm80,
    Sm89,
    Sm90,
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_threads_per_block: u32,
    pub max_block_dim: [u32; 3],
    pub max_grid_dim: [u32; 3],
    /// Dynamic shared memory a launch may use without opting in (cuFuncSetAttribute).
    pub default_shared_bytes: u32,
    /// The most shared memory one block may use after opting in.
    pub max_shared_optin_bytes: u32,
}

impl Arch {
    pub fn limits(self) -> Limits {
        let max_shared_optin_bytes = match self {
            Arch::Sm80 => 163 * 1024,
            Arch::Sm89 => 99 * 1024,
            Arch::Sm90 => 227 * 1024,
        };
        Limits {
            max_threads_per_block: 1024,
            max_block_dim: [1024, 1024, 64],
            max_grid_dim: [i32::MAX as u32, 65535, 65535],
            default_shared_bytes: 48 * 1024,
            max_shared_optin_bytes,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Sm80 => "sm_80",
            Arch::Sm89 => "sm_89",
            Arch::Sm90 => "sm_90",
        }
    }
}

impl Limits {
    /// Checks a launch's shape; `optin` is the dynamic shared size the kernel opted in to, if any.
    pub fn check(&self, kernel: &str, grid: [u32; 3], block: [u32; 3], shared: u32, optin: Option<u32>) -> Result<()> {
        let err = |what: String| Err(Error::Cuda(format!("launch of {kernel}: {what}")));
        const AXES: [&str; 3] = ["x", "y", "z"];
        for d in 0..3 {
            if block[d] == 0 || block[d] > self.max_block_dim[d] {
                return err(format!("block.{} = {}, must be in 1..={}", AXES[d], block[d], self.max_block_dim[d]));
            }
            if grid[d] == 0 || grid[d] > self.max_grid_dim[d] {
                return err(format!("grid.{} = {}, must be in 1..={}", AXES[d], grid[d], self.max_grid_dim[d]));
            }
        }
        let threads = block.iter().map(|&b| b as u64).product::<u64>();
        if threads > self.max_threads_per_block as u64 {
            return err(format!("block {block:?} has {threads} threads, the limit is {}", self.max_threads_per_block));
        }
        let allowed = optin.unwrap_or(self.default_shared_bytes);
        if shared > allowed {
            return err(match optin {
                None if shared <= self.max_shared_optin_bytes => format!(
                    "{shared} bytes of dynamic shared memory exceed the default {} bytes; opt in first \
                     (set_max_dynamic_shared, cuFuncSetAttribute on a GPU)",
                    self.default_shared_bytes
                ),
                _ => format!("{shared} bytes of dynamic shared memory exceed the {allowed} bytes allowed"),
            });
        }
        Ok(())
    }
}
