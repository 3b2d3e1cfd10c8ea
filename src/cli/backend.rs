//! `--backend`: one choice for every command (task commands, eval, demo, verify, bench), with
//! one meaning of `auto`: the CUDA GPU when a driver and a device are usable, else the CPU,
//! saying why (`api::session::auto_gpu`, which the library's `Device::Auto` uses too).

use clap::ValueEnum;

use crate::api::session::auto_gpu;
use crate::api::Device;
use crate::backend::cuda::gpu::GpuDevice;
use crate::backend::switches::DevSwitches;
use crate::emu::{Arch, EmuDevice};
use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// The GPU if one is usable, else the CPU (saying why).
    Auto,
    Cpu,
    /// GPU 0; an error if there is none.
    Cuda,
    /// The CUDA backend on the CPU emulator (slow; for tests and development).
    #[value(name = "cuda-emu")]
    CudaEmu,
}

/// Where a `--backend` runs, for the commands that drive a backend themselves (verify, bench).
pub enum Chosen {
    /// The CPU; with `auto`, why not the GPU.
    Cpu {
        because: Option<String>,
    },
    Gpu(GpuDevice),
    Emu(EmuDevice),
}

impl BackendArg {
    /// The library's device for this choice (the task commands, eval and demo run sessions).
    pub fn device(self) -> Device {
        match self {
            BackendArg::Auto => Device::Auto,
            BackendArg::Cpu => Device::Cpu { threads: None },
            BackendArg::Cuda => Device::Cuda { ordinal: 0 },
            BackendArg::CudaEmu => Device::CudaEmu,
        }
    }

    /// Open the device this choice means here; `auto` without a usable GPU is the CPU, and says
    /// why on stderr (as the session commands do, see `say_auto_chose_cpu`).
    pub fn open(self) -> Result<Chosen> {
        Ok(match self {
            BackendArg::Cpu => Chosen::Cpu { because: None },
            BackendArg::Cuda => Chosen::Gpu(GpuDevice::open(0)?),
            BackendArg::CudaEmu => Chosen::Emu(EmuDevice::new(Arch::Sm90)),
            BackendArg::Auto => match auto_gpu(&DevSwitches::from_env()) {
                Ok(gpu) => Chosen::Gpu(gpu),
                Err(why) => {
                    say_auto_chose_cpu(&why);
                    Chosen::Cpu { because: Some(why) }
                }
            },
        })
    }
}

/// The line every command prints when `--backend auto` runs on the CPU.
pub fn say_auto_chose_cpu(because: &str) {
    eprintln!("backend auto: running on the CPU ({because})");
}
