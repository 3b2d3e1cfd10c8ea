//! `percept doctor`: what CUDA this machine has, and every kernel compiled through NVRTC with
//! its registers, shared memory and spills.

use anyhow::{bail, Result};

use crate::backend::cuda::nvrtc::{self, GpuArch};

pub fn run(compile_only: bool, arch: Option<&str>) -> Result<bool> {
    let archs: Vec<GpuArch> = match arch {
        Some(a) => vec![GpuArch::parse(a)?],
        None => {
            // Without a GPU to ask, check every architecture we ship for.
            GpuArch::ALL.to_vec()
        }
    };
    if !compile_only {
        match crate::backend::cuda::driver_available() {
            Ok(()) => {
                println!("CUDA driver: found (libcuda); the GPU device layer is not built yet, so no device query")
            }
            Err(e) => println!("CUDA driver: {e}"),
        }
        println!("emulator: built in (--backend cuda-emu), {} kernels", crate::emu::kernel_names().count());
    }
    if let Err(e) = nvrtc::nvrtc_available() {
        bail!("{e}");
    }
    let (major, minor) = nvrtc::nvrtc_version()?;
    println!("NVRTC {major}.{minor}");
    let mut ok = true;
    for a in archs {
        match nvrtc::compile_report(a) {
            Ok(infos) => {
                print!("{}", nvrtc::report_table(&infos));
                if infos.iter().any(|k| k.spills()) {
                    println!("{}: spills found", a.name());
                    ok = false;
                }
            }
            Err(e) => {
                println!("{}: compile failed: {e}", a.name());
                ok = false;
            }
        }
    }
    Ok(ok)
}
