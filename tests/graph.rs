//! Streams, memory operations and graph capture of the device interface (on the emulator, which
//! holds the host side to a GPU's capture rules), the activation pool, and the denoising loop
//! replayed from one captured step.

use crate::support::{fixtures_dir, Rng};
use percept::backend::cuda::backend::Cuda;
use percept::backend::cuda::device::Device;
use percept::backend::cuda::launchers::{self as k, DevPtr};
use percept::backend::cuda::pool::{size_class, Pool};
use percept::backend::Backend;
use percept::emu::{Arch, EmuDevice, LaunchConfig};
use percept::pipeline::Trace;
use percept::verify::fixture::Fixture;
use percept::verify::pipeline::fixture_engine;

fn f32s(dev: &EmuDevice, buf: &percept::emu::EmuBuffer) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(&Device::download(dev, buf).unwrap())
}

fn scale(dev: &EmuDevice, y: u64, x: u64, s: f32, n: usize) -> percept::error::Result<()> {
    k::scale_f32(dev, &LaunchConfig::linear(2, 128), DevPtr(y), DevPtr(x), s, n)
}

#[test]
fn graph_capture_records_without_running_then_replays_with_current_inputs() {
    let dev = EmuDevice::new(Arch::Sm90);
    let n = 300;
    let mut rng = Rng(7);
    let x = Device::upload(&dev, bytemuck::cast_slice(&rng.vec(n))).unwrap();
    let y = Device::alloc(&dev, 4 * n).unwrap();
    let (xa, ya) = (dev.address(&x), dev.address(&y));
    dev.begin_capture().unwrap();
    scale(&dev, ya, xa, 2.0, n).unwrap();
    Device::memset(&dev, ya, 8, 0).unwrap(); // the first two outputs zeroed after the launch
    let graph = dev.end_capture().unwrap();
    assert_eq!(graph.len(), 2);
    // A capture runs nothing: the output is still the poison of fresh memory.
    assert!(f32s(&dev, &y).iter().all(|v| v.is_nan()), "captured work ran during the capture");
    for round in 0..2 {
        let xs = rng.vec(n);
        Device::write(&dev, &x, 0, bytemuck::cast_slice(&xs)).unwrap();
        dev.replay(&graph).unwrap();
        let got = f32s(&dev, &y);
        for i in 0..n {
            let want = if i < 2 { 0.0 } else { 2.0 * xs[i] };
            assert_eq!(got[i], want, "round {round}, element {i}");
        }
    }
}

#[test]
fn graph_capture_refuses_what_a_graph_cannot_hold() {
    let dev = EmuDevice::new(Arch::Sm80);
    let buf = Device::alloc(&dev, 64).unwrap();
    dev.begin_capture().unwrap();
    let refusals = [
        ("alloc", Device::alloc(&dev, 64).err()),
        ("upload", Device::upload(&dev, &[0u8; 16]).err()),
        ("write", Device::write(&dev, &buf, 0, &[0u8; 16]).err()),
        ("download", Device::download(&dev, &buf).err()),
        ("synchronize", Device::synchronize(&dev).err()),
        ("event", Device::record_event(&dev).err()),
        ("nested capture", dev.begin_capture().err()),
    ];
    for (what, err) in refusals {
        let msg = err.unwrap_or_else(|| panic!("{what} was allowed during a capture")).to_string();
        assert!(msg.contains("captur"), "{what}: {msg}");
    }
    // A bad launch is refused at capture time, as the driver would.
    let bad = Device::launch(&dev, "scale_f32", &LaunchConfig::linear(1, 2048), &[]).unwrap_err().to_string();
    assert!(bad.contains("scale_f32"), "{bad}");
    // Another stream of the same device is not capturing.
    let other = Device::fork(&dev).unwrap();
    assert!(Device::alloc(&other, 64).is_ok());
    let graph = dev.end_capture().unwrap();
    assert!(graph.is_empty());
    assert!(dev.end_capture().is_err(), "ending a capture twice");
    assert!(Device::alloc(&dev, 64).is_ok(), "the stream works again after the capture");
}

#[test]
fn memory_operations_are_checked_against_their_buffers() {
    let dev = EmuDevice::new(Arch::Sm80);
    let a = Device::alloc(&dev, 256).unwrap();
    let b = Device::alloc(&dev, 256).unwrap();
    let (pa, pb) = (dev.address(&a), dev.address(&b));
    assert!(Device::memset(&dev, pa + 200, 100, 0).unwrap_err().to_string().contains("overrun"));
    assert!(Device::copy(&dev, pa, pa + 16, 64).unwrap_err().to_string().contains("overlap"));
    assert!(Device::write(&dev, &a, 250, &[0u8; 10]).is_err());
    Device::write(&dev, &a, 0, &[7u8; 256]).unwrap();
    Device::copy(&dev, pb + 128, pa, 128).unwrap();
    let got = Device::download(&dev, &b).unwrap();
    assert!(got[..128].iter().all(|&v| v == 0xFF), "bytes outside the copy changed");
    assert!(got[128..].iter().all(|&v| v == 7));
}

#[test]
fn replaying_a_graph_whose_buffer_was_freed_is_an_error() {
    let dev = EmuDevice::new(Arch::Sm80);
    let x = Device::alloc(&dev, 4 * 64).unwrap();
    let y = Device::alloc(&dev, 4 * 64).unwrap();
    dev.begin_capture().unwrap();
    scale(&dev, dev.address(&y), dev.address(&x), 1.0, 64).unwrap();
    let graph = dev.end_capture().unwrap();
    drop(y);
    let err = dev.replay(&graph).unwrap_err().to_string();
    assert!(err.contains("not emulated device memory"), "{err}");
}

#[test]
fn events_measure_forward_time() {
    let dev = EmuDevice::new(Arch::Sm80);
    let a = Device::record_event(&dev).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let b = Device::record_event(&dev).unwrap();
    let ms = Device::elapsed_ms(&dev, &a, &b).unwrap();
    assert!(ms >= 4.0, "{ms} ms between events 5 ms apart");
    Device::wait_event(&Device::fork(&dev).unwrap(), &b).unwrap();
}

#[test]
fn pool_size_classes_waste_at_most_a_quarter() {
    for n in (1..20_000).chain([1 << 20, (1 << 20) + 1, 3_000_001, 123_456_789]) {
        let c = size_class(n);
        assert!(c >= n && c >= 512, "{n} -> {c}");
        assert!(n < 512 || c as f64 <= n as f64 * 1.25 + 1.0, "{n} -> {c}");
        assert_eq!(size_class(c), c, "a class is its own class");
    }
}

#[test]
fn pool_reuses_freed_buffers_and_keeps_a_graphs_scratch_to_itself() {
    let dev = EmuDevice::new(Arch::Sm80);
    let pool = Pool::new(dev.clone());
    let a = pool.take(1000).unwrap();
    let addr = dev.address(a.buffer());
    drop(a);
    let b = pool.take(900).unwrap(); // same class (1024)
    assert_eq!(dev.address(b.buffer()), addr, "a freed buffer of the class is reused");
    assert_eq!(pool.stats().allocations, 1);
    assert_eq!(pool.stats().in_use, 1024);
    drop(b);
    // During a capture, what the captured work frees belongs to the graph afterwards.
    pool.begin_capture();
    let c = pool.take(1000).unwrap();
    assert_eq!(dev.address(c.buffer()), addr, "the warm pool serves the capture");
    drop(c);
    let c2 = pool.take(1000).unwrap();
    assert_eq!(dev.address(c2.buffer()), addr, "reuse within the capture is stream-ordered, so allowed");
    drop(c2);
    let scratch = pool.end_capture();
    assert_eq!(scratch.len(), 1);
    let d = pool.take(1000).unwrap();
    assert_ne!(dev.address(d.buffer()), addr, "a graph's scratch buffer was handed out while the graph lives");
    drop(scratch);
    let e = pool.take(1000).unwrap();
    assert_eq!(dev.address(e.buffer()), addr, "returned to the pool with the graph");
    drop((d, e));
    let before = pool.stats().reserved;
    assert_eq!(pool.release_cached(), before);
    assert_eq!(pool.stats().reserved, 0);
}

/// The step the captured graph replays: in place (prev = sample) it gives exactly what it gives
/// into a separate buffer, for every prediction type, with and without clipping.
#[test]
fn ddim_step_in_place_matches_the_step_into_another_buffer() {
    let dev = EmuDevice::new(Arch::Sm80);
    let n = 1000;
    let mut rng = Rng(11);
    let (pred, sample) = (rng.vec(n), rng.vec(n));
    for clip in [0.0f32, 0.25] {
        let coef = [0.8f32, 0.6, 0.9, 0.43589, clip];
        for kind in 0..3 {
            let p = Device::upload(&dev, bytemuck::cast_slice(&pred)).unwrap();
            let s = Device::upload(&dev, bytemuck::cast_slice(&sample)).unwrap();
            let c = Device::upload(&dev, bytemuck::cast_slice(&coef)).unwrap();
            let want = Device::alloc(&dev, 4 * n).unwrap();
            let a = |b: &percept::emu::EmuBuffer| DevPtr::of(&dev, b);
            let cfg = LaunchConfig::linear(3, 128);
            k::ddim_step_f32(&dev, &cfg, a(&want), DevPtr::NULL, a(&p), a(&s), n, kind, a(&c)).unwrap();
            k::ddim_step_f32(&dev, &cfg, a(&s), DevPtr::NULL, a(&p), a(&s), n, kind, a(&c)).unwrap();
            assert_eq!(f32s(&dev, &s), f32s(&dev, &want), "prediction type {kind}, clip {clip}");
        }
    }
}

/// The pipeline fixture's engine, denoised with and without the captured step: the replays must
/// give exactly the step-by-step result, and (where the device counts its allocations) more
/// steps must not allocate more.
pub fn denoise_graph_matches_eager<D: Device>(make: impl Fn() -> D) {
    let Some(dir) = fixtures_dir() else { return };
    let fx = Fixture::load(&dir, "pipeline_tiny").unwrap();
    let run = |graphs: bool, steps: usize| {
        let dev = make();
        let (mut engine, _) = fixture_engine(&Cuda::new(dev.clone()), &fx).unwrap();
        engine.use_graphs = graphs;
        let rgb = engine.encode(&fx.tensor("rgb").unwrap()).unwrap();
        let prompt = engine.encode(&fx.tensor("prompt").unwrap()).unwrap();
        let labels = fx.ints("label").unwrap();
        let before = dev.allocation_count();
        let mut trace = Trace::default();
        let x = engine.denoise(&rgb, &prompt, &labels, fx.tensor("noise").unwrap(), steps, &mut trace).unwrap();
        let allocs = dev.allocation_count().zip(before).map(|(a, b)| a - b);
        (engine.backend.download(&x).unwrap().data, allocs)
    };
    let (eager, eager_allocs_6) = run(false, 6);
    let (replayed, graph_allocs_6) = run(true, 6);
    assert_eq!(eager, replayed, "the replayed steps differ from running each step");
    if eager_allocs_6.is_none() {
        return;
    }
    // More steps, no more memory: everything after the first step comes from the warm pool.
    let (_, eager_allocs_2) = run(false, 2);
    let (_, graph_allocs_2) = run(true, 2);
    assert_eq!(eager_allocs_6, eager_allocs_2, "steps after the first allocated device memory");
    assert_eq!(graph_allocs_6, graph_allocs_2, "replayed steps allocated device memory");
    assert!(eager_allocs_2 > Some(0));
}

#[test]
fn denoise_replays_one_captured_step_exactly_and_allocates_nothing_after_warmup() {
    denoise_graph_matches_eager(|| EmuDevice::new(Arch::Sm90));
}

/// A device that refuses the captured step: the run goes on step by step, with the same result,
/// and the fallback is counted (gpu-check flags it in its report).
#[test]
fn denoise_continues_step_by_step_when_the_graph_is_refused() {
    let Some(dir) = fixtures_dir() else { return };
    let fx = Fixture::load(&dir, "pipeline_tiny").unwrap();
    let run = |graphs: bool, refuse: bool| {
        let dev = EmuDevice::new(Arch::Sm90);
        dev.refuse_graphs(refuse);
        let (mut engine, _) = fixture_engine(&Cuda::new(dev), &fx).unwrap();
        engine.use_graphs = graphs;
        let rgb = engine.encode(&fx.tensor("rgb").unwrap()).unwrap();
        let prompt = engine.encode(&fx.tensor("prompt").unwrap()).unwrap();
        let labels = fx.ints("label").unwrap();
        let mut trace = Trace::default();
        let x = engine.denoise(&rgb, &prompt, &labels, fx.tensor("noise").unwrap(), 3, &mut trace).unwrap();
        engine.backend.download(&x).unwrap().data
    };
    let eager = run(false, false);
    let before = percept::pipeline::graph_fallback::count();
    let fallback = run(true, true);
    assert_eq!(eager, fallback, "the step-by-step fallback differs from running each step");
    assert!(percept::pipeline::graph_fallback::count() > before, "the fallback was not counted");
}

#[test]
fn a_model_too_large_for_the_device_is_refused_before_loading() {
    use percept::pipeline::any::cuda_engine;
    use percept::weights::model_file;
    let src = model_file::resolve(None, None).unwrap(); // the embedded demo model
    let small = EmuDevice::with_memory(Arch::Sm90, 64 << 20);
    let err = cuda_engine(Cuda::bf16(small.clone()), &src).err().expect("refused on 64 MiB").to_string();
    assert!(err.contains("GiB") && err.contains("bf16") && err.contains("--backend cpu"), "{err}");
    assert_eq!(small.allocations(), 0, "memory was allocated before the check");
    let roomy = EmuDevice::with_memory(Arch::Sm90, 2 << 30);
    let engine = cuda_engine(Cuda::bf16(roomy.clone()), &src).unwrap();
    let (free, total) = Device::memory_info(&roomy).unwrap().unwrap();
    let weights = engine.backend.weight_bytes(src.dit.iter().chain(src.vae.iter()).map(|(_, t)| t.shape.as_slice()));
    assert!(total - free >= weights, "{} bytes in use, the weights alone take {weights}", total - free);
    // The emulated memory limit itself behaves like a GPU's.
    let dev = EmuDevice::with_memory(Arch::Sm80, 1 << 20);
    let a = Device::alloc(&dev, 600_000).unwrap();
    assert!(Device::alloc(&dev, 600_000).err().unwrap().to_string().contains("out of device memory"));
    drop(a);
    assert_eq!(Device::memory_info(&dev).unwrap(), Some((1 << 20, 1 << 20)));
}

/// `percept bench` on the emulator: the device rows' harness (events, pool high-water mark,
/// JSON) end to end on the demo model; the times themselves mean nothing there.
#[test]
fn bench_device_rows_run_on_the_emulator_and_write_json() {
    let dir = crate::support::temp_dir("bench_emu");
    let json = dir.join("bench.json");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_percept"))
        .args(["bench", "--backend", "cuda-emu", "--reps", "1", "--only", "b1", "--only", "dit_forward/b2"])
        .args(["--only", "attention"])
        .arg("--json")
        .arg(&json)
        .env_remove("PERCEPT_MODEL")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{text}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let names: Vec<&str> = v["rows"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    // "b1" selects every batch-1 row and not b16.
    // Each name ends in its precision (the emulator's default: f32).
    let want = [
        "emu/dit_forward/b1/f32",
        "emu/dit_forward/b2/f32",
        "emu/attention/b8x256x4x32/f32",
        "emu/vae_encode/128x128/b1/f32",
        "emu/vae_decode/128x128/b1/f32",
    ];
    assert_eq!(names, want, "{text}");
    for r in v["rows"].as_array().unwrap() {
        assert!(r["ms"].as_f64().unwrap() > 0.0 && r["tflops"].as_f64().unwrap() > 0.0, "{r}");
    }
    let (weights, peak) = (v["weight_bytes"].as_u64().unwrap(), v["peak_memory_bytes"].as_u64().unwrap());
    assert!(peak > weights && weights > 1_000_000, "weights {weights}, peak {peak}");
}

/// Cancellation and progress between denoising steps, with the step captured and replayed: the
/// progress callback sees every step in order, stopping it or cancelling the token ends the run
/// with `Error::Cancelled` at the next step boundary, and the engine runs normally afterwards.
#[test]
fn denoise_stops_between_steps_when_cancelled_and_reports_progress() {
    use percept::pipeline::control::{CancelToken, Control, Progress};
    use std::sync::{Arc, Mutex};
    let Some(dir) = fixtures_dir() else { return };
    let fx = Fixture::load(&dir, "pipeline_tiny").unwrap();
    let (engine, _) = fixture_engine(&Cuda::new(EmuDevice::new(Arch::Sm90)), &fx).unwrap();
    let rgb = engine.encode(&fx.tensor("rgb").unwrap()).unwrap();
    let prompt = engine.encode(&fx.tensor("prompt").unwrap()).unwrap();
    let labels = fx.ints("label").unwrap();
    let noise = || fx.tensor("noise").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let token = CancelToken::new();
    let stop_after = Arc::new(Mutex::new(usize::MAX));
    let control = Control {
        cancel: Some(token.clone()),
        progress: Some({
            let (seen, stop_after) = (seen.clone(), stop_after.clone());
            Arc::new(move |p: Progress| {
                seen.lock().unwrap().push(p);
                p.step < *stop_after.lock().unwrap()
            })
        }),
    };
    let run = |control: &Control| {
        engine.denoise_with(&rgb, &prompt, &labels, noise(), 5, &mut Trace::default(), control).map(drop)
    };

    run(&control).unwrap();
    let steps: Vec<(usize, usize)> = seen.lock().unwrap().iter().map(|p| (p.step, p.steps)).collect();
    assert_eq!(steps, (1..=5).map(|s| (s, 5)).collect::<Vec<_>>());

    // The callback stops the run after step 3 (a replayed step).
    seen.lock().unwrap().clear();
    *stop_after.lock().unwrap() = 3;
    assert!(matches!(run(&control), Err(percept::Error::Cancelled)));
    assert_eq!(seen.lock().unwrap().len(), 3);

    // A token cancelled before the call stops it before the first step.
    seen.lock().unwrap().clear();
    *stop_after.lock().unwrap() = usize::MAX;
    token.cancel();
    assert!(matches!(run(&control), Err(percept::Error::Cancelled)));
    assert!(seen.lock().unwrap().is_empty());

    // Cleared, the same engine completes and gives the uncontrolled result.
    token.reset();
    let dl = |x| engine.backend.download(&x).unwrap().data;
    let controlled =
        dl(engine.denoise_with(&rgb, &prompt, &labels, noise(), 5, &mut Trace::default(), &control).unwrap());
    let plain = dl(engine.denoise(&rgb, &prompt, &labels, noise(), 5, &mut Trace::default()).unwrap());
    assert_eq!(controlled, plain);
}
