//! `percept doctor`: what CUDA this machine has, and every kernel compiled through NVRTC with
//! its registers, shared memory and spills.

use anyhow::Result;

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

/// The device rows: name, compute capability, driver, memory; every kernel loaded on it.
/// Returns the GPU's architecture, or None (with the reason printed) when there is no GPU, and
/// false when a kernel failed to load there.
fn device_rows() -> (Option<GpuArch>, bool) {
    use crate::backend::cuda::device::Device;
    use crate::backend::cuda::gpu::GpuDevice;
    match GpuDevice::driver_version() {
        Ok(v) => println!("CUDA driver: {v}"),
        Err(e) => {
            println!("CUDA driver: {e}");
            return (None, true);
        }
    }
    let gpu = match GpuDevice::open(0) {
        Ok(g) => g,
        Err(e) => {
            println!("GPU: {e}");
            return (None, true);
        }
    };
    println!("GPU 0: {} ({})", gpu.describe(), gpu.arch().name());
    if let Ok(Some((free, total))) = gpu.memory_info() {
        println!("memory: {} MiB free of {} MiB", free >> 20, total >> 20);
    }
    let loaded = match gpu.load_all() {
        Ok(n) => {
            println!("kernels: {n} entry points compiled for {} and loaded", gpu.arch().name());
            true
        }
        Err(e) => {
            println!("kernels: loading failed: {e}");
            false
        }
    };
    (Some(gpu.arch()), loaded)
}

pub fn run(compile_only: bool, arch: Option<&str>) -> Result<bool> {
    let (gpu_arch, loaded) = if compile_only { (None, true) } else { device_rows() };
    let archs: Vec<GpuArch> = match (arch, gpu_arch) {
        (Some(a), _) => vec![GpuArch::parse(a)?],
        (None, Some(a)) => vec![a],
        // Without a GPU to ask, check every architecture we ship for.
        (None, None) => GpuArch::ALL.to_vec(),
    };
    if !compile_only {
        println!("emulator: built in (--backend cuda-emu), {} kernels", crate::emu::kernel_names().count());
    }
    // Without NVRTC the kernels can still come from the cache (a packed one on a GPU machine
    // without the toolkit); a module missing there is then reported by name below.
    match nvrtc::nvrtc_version() {
        Ok((major, minor)) => println!("NVRTC {major}.{minor}"),
        Err(e) => println!("NVRTC: {e}; kernels only from the cache"),
    }
    let mut ok = loaded;
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
