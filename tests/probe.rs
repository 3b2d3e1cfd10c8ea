//! The emulated-vs-real primitive comparison (`percept doctor --probe` on a GPU), exercised here
//! between two emulated devices: it must agree with itself under other thread orders, and catch a
//! device whose mma interprets fragments differently.

use percept::backend::cuda::device::Device;
use percept::backend::cuda::probe::compare;
use percept::emu::{Arch, Arg, EmuBuffer, EmuDevice, EmuEvent, EmuGraph, LaunchConfig};

/// An emulated device whose bf16 mma is secretly the f16 one: a wrong primitive.
#[derive(Clone)]
struct WrongMma(EmuDevice);

impl Device for WrongMma {
    type Buffer = EmuBuffer;
    type Event = EmuEvent;
    type Graph = EmuGraph;
    fn describe(&self) -> String {
        "wrong mma".into()
    }
    fn alloc(&self, bytes: usize) -> percept::Result<EmuBuffer> {
        Device::alloc(&self.0, bytes)
    }
    fn write(&self, buf: &EmuBuffer, offset: usize, bytes: &[u8]) -> percept::Result<()> {
        Device::write(&self.0, buf, offset, bytes)
    }
    fn download(&self, buf: &EmuBuffer) -> percept::Result<Vec<u8>> {
        Device::download(&self.0, buf)
    }
    fn memset(&self, ptr: u64, len: usize, value: u8) -> percept::Result<()> {
        Device::memset(&self.0, ptr, len, value)
    }
    fn copy(&self, dst: u64, src: u64, len: usize) -> percept::Result<()> {
        Device::copy(&self.0, dst, src, len)
    }
    fn synchronize(&self) -> percept::Result<()> {
        Device::synchronize(&self.0)
    }
    fn fork(&self) -> percept::Result<Self> {
        Ok(WrongMma(Device::fork(&self.0)?))
    }
    fn record_event(&self) -> percept::Result<EmuEvent> {
        Device::record_event(&self.0)
    }
    fn wait_event(&self, event: &EmuEvent) -> percept::Result<()> {
        Device::wait_event(&self.0, event)
    }
    fn elapsed_ms(&self, start: &EmuEvent, end: &EmuEvent) -> percept::Result<f32> {
        Device::elapsed_ms(&self.0, start, end)
    }
    fn begin_capture(&self) -> percept::Result<()> {
        Device::begin_capture(&self.0)
    }
    fn end_capture(&self) -> percept::Result<EmuGraph> {
        Device::end_capture(&self.0)
    }
    fn replay(&self, graph: &EmuGraph) -> percept::Result<()> {
        Device::replay(&self.0, graph)
    }
    fn memory_info(&self) -> percept::Result<Option<(usize, usize)>> {
        Device::memory_info(&self.0)
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
