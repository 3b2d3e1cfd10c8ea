//! `percept doctor`: what CUDA this machine has, and every kernel compiled through NVRTC with
//! its registers, shared memory and spills.

use anyhow::{bail, Result};

use crate::backend::cuda::nvrtc::{self, GpuArch};

/// Emulated vs real mma.sync / ldmatrix on random fragments (needs a GPU).
pub fn probe() -> Result<bool> {
    use crate::backend::cuda::gpu::GpuDevice;
    use crate::emu::{Arch, EmuDevice};
    let gpu = GpuDevice::open(0)?;
    let results = crate::backend::cuda::probe::compare(&EmuDevice::new(Arch::Sm90), &gpu, 0x5eed)?;
    println!("emulator vs {}:", crate::backend::cuda::device::Device::describe(&gpu));
    for r in &results {
        println!("{:<22} max diff {:>10.3e}  {}", r.probe, r.max_diff, if r.pass { "PASS" } else { "FAIL" });
    }
    Ok(results.iter().all(|r| r.pass))
}

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
