//! The emulated-vs-real primitive comparison (`percept doctor --probe` on a GPU), exercised here
//! between two emulated devices: it must agree with itself under other thread orders, and catch a
//! device whose mma interprets fragments differently.

use percept::backend::cuda::device::Device;
use percept::backend::cuda::probe::compare;
use percept::emu::{Arch, Arg, EmuBuffer, EmuDevice, LaunchConfig};

/// An emulated device whose bf16 mma is secretly the f16 one: a wrong primitive.
#[derive(Clone)]
struct WrongMma(EmuDevice);

impl Device for WrongMma {
    type Buffer = EmuBuffer;
    fn describe(&self) -> String {
        "wrong mma".into()
    }
    fn alloc(&self, bytes: usize) -> percept::Result<EmuBuffer> {
        Device::alloc(&self.0, bytes)
    }
    fn upload(&self, bytes: &[u8]) -> percept::Result<EmuBuffer> {
        Device::upload(&self.0, bytes)
    }
    fn download(&self, buf: &EmuBuffer) -> percept::Result<Vec<u8>> {
        Device::download(&self.0, buf)
    }
    fn address(&self, buf: &EmuBuffer) -> u64 {
        Device::address(&self.0, buf)
    }
    fn launch(&self, kernel: &str, cfg: &LaunchConfig, args: &[Arg]) -> percept::Result<()> {
        let k = if kernel == "probe_mma_bf16" { "probe_mma_f16" } else { kernel };
        Device::launch(&self.0, k, cfg, args)
    }
    fn set_max_dynamic_shared(&self, kernel: &str, bytes: u32) -> percept::Result<()> {
        Device::set_max_dynamic_shared(&self.0, kernel, bytes)
    }
}

#[test]
fn probe_comparison_agrees_across_schedules_and_catches_a_wrong_primitive() {
    let (a, b) = (EmuDevice::new(Arch::Sm90), EmuDevice::new(Arch::Sm80));
    a.set_schedule_seed(1);
    b.set_schedule_seed(2);
    for seed in [3, 4] {
        let r = compare(&a, &b, seed).unwrap();
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|p| p.pass), "{r:?}");
    }
    let r = compare(&WrongMma(a.clone()), &b, 5).unwrap();
    let mma = r.iter().find(|p| p.probe == "probe_mma_bf16").unwrap();
    assert!(!mma.pass && mma.max_diff > 1e-2, "a wrong mma must show: {r:?}");
    assert!(r.iter().filter(|p| p.probe != "probe_mma_bf16").all(|p| p.pass));
}
