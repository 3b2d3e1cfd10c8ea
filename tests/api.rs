//! The public API end to end on the demo model: image formats, options, results at the input's
//! size, errors, latents in and out, sessions kept warm (no device allocation and no capture
//! after warm-up), several sessions on several threads, cancellation.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use percept::{
    DepthOptions, Device, Error, ErrorKind, FlowOptions, ImageView, Latent, Model, PixelFormat, Precision, Session,
    SessionOptions,
};

fn demo() -> Model {
    Model::demo().expect("the demo model is in toy_data/")
}

/// A smooth RGB8 test picture with some structure.
fn picture(w: usize, h: usize, phase: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            v.push(((x * 255) / w) as u8);
            v.push(((y * 255) / h) as u8);
            v.push((((x + y + phase) * 7) % 256) as u8);
        }
    }
    v
}

fn quick(steps: usize) -> DepthOptions {
    DepthOptions { num_inference_steps: steps, seed: 5, ..Default::default() }
}

fn cpu1() -> Device {
    Device::Cpu { threads: Some(1) }
}

#[test]
fn depth_is_at_the_input_size_and_the_same_for_every_pixel_format() {
    let model = demo();
    let mut s = Session::new(&model, cpu1()).unwrap();
    let (w, h) = (48, 36);
    let rgb = picture(w, h, 0);
    let base = s.depth(&ImageView::rgb8(&rgb, w, h).unwrap(), &quick(3)).unwrap();
    assert_eq!((base.width, base.height, base.depth.len()), (w, h, w * h));
    assert!(base.depth.iter().all(|d| (0.0..=1.0).contains(d)));
    assert!(base.uncertainty.is_none() && base.latent.is_none());
    let spread =
        base.depth.iter().cloned().fold(f32::MIN, f32::max) - base.depth.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 0.01, "depth is flat: {spread}");
    // RGBA with opaque alpha, RGB f32 and a strided RGB8 view hold the same pixels.
    let rgba: Vec<u8> = rgb.chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
    let f: Vec<f32> = rgb.iter().map(|&v| v as f32 / 255.0).collect();
    let stride = w * 3 + 5;
    let mut strided = vec![0u8; stride * h];
    for y in 0..h {
        strided[y * stride..y * stride + w * 3].copy_from_slice(&rgb[y * w * 3..(y + 1) * w * 3]);
    }
    let views = [
        ImageView::rgba8(&rgba, w, h).unwrap(),
        ImageView::rgb_f32(&f, w, h).unwrap(),
        ImageView::new(&strided, w, h, stride, PixelFormat::Rgb8).unwrap(),
    ];
    for v in views {
        let r = s.depth(&v, &quick(3)).unwrap();
        assert_eq!(r.depth, base.depth, "{:?}", v.format());
    }
    // Gray8 is RGB with three equal channels.
    let gray: Vec<u8> = (0..w * h).map(|i| (i * 13 % 256) as u8).collect();
    let gray3: Vec<u8> = gray.iter().flat_map(|&g| [g, g, g]).collect();
    let a = s.depth(&ImageView::gray8(&gray, w, h).unwrap(), &quick(2)).unwrap();
    let b = s.depth(&ImageView::rgb8(&gray3, w, h).unwrap(), &quick(2)).unwrap();
    assert_eq!(a.depth, b.depth);
}

#[test]
fn into_variants_and_model_resolution_outputs() {
    let model = demo();
    let mut s = Session::new(&model, cpu1()).unwrap();
    let (w, h) = (30, 20);
    let rgb = picture(w, h, 3);
    let img = ImageView::rgb8(&rgb, w, h).unwrap();
    let want = s.depth(&img, &quick(2)).unwrap();
    let mut out = vec![f32::NAN; w * h];
    s.depth_into(&img, &quick(2), &mut out).unwrap();
    assert_eq!(out, want.depth);
    let err = s.depth_into(&img, &quick(2), &mut [0.0; 7]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    // At the model's resolution instead.
    let res = model.resolution();
    let opts = DepthOptions { match_input_resolution: false, ..quick(2) };
    let r = s.depth(&img, &opts).unwrap();
    assert_eq!((r.width, r.height, r.depth.len()), (res, res, res * res));
    // Flow: interleaved u, v at the input's size; into equals the result.
    let rgb2 = picture(w, h, 9);
    let img2 = ImageView::rgb8(&rgb2, w, h).unwrap();
    let fopts = FlowOptions { num_inference_steps: 2, ..Default::default() };
    let f = s.flow(&img, &img2, &fopts).unwrap();
    assert_eq!((f.width, f.height, f.flow.len()), (w, h, w * h * 2));
    assert!(f.flow.iter().all(|v| v.is_finite()));
    let mut fo = vec![0.0; w * h * 2];
    s.flow_into(&img, &img2, &fopts, &mut fo).unwrap();
    assert_eq!(fo, f.flow);
    // Amodal: RGB in [0, 1] and a 0/1 mask; any mask format.
    let mask: Vec<u8> = (0..w * h).map(|i| if (i % w) > w / 3 && (i / w) > h / 3 { 255 } else { 0 }).collect();
    let m = ImageView::gray8(&mask, w, h).unwrap();
    let a = s.amodal(&img, &m, &fopts).unwrap();
    assert_eq!((a.rgb.len(), a.mask.len()), (w * h * 3, w * h));
    assert!(a.rgb.iter().all(|v| (0.0..=1.0).contains(v)) && a.mask.iter().all(|&v| v <= 1));
    let (mut ro, mut mo) = (vec![0.0; w * h * 3], vec![9u8; w * h]);
    s.amodal_into(&img, &m, &fopts, &mut ro, &mut mo).unwrap();
    assert_eq!((ro, mo), (a.rgb, a.mask));
}

#[test]
fn batches_give_the_results_of_single_calls() {
    let model = demo();
    let mut s = Session::new(&model, cpu1()).unwrap();
    let pics: Vec<Vec<u8>> = (0..3).map(|i| picture(24 + 8 * i, 20, i)).collect();
    let views: Vec<ImageView> =
        pics.iter().enumerate().map(|(i, p)| ImageView::rgb8(p, 24 + 8 * i, 20).unwrap()).collect();
    let opts = DepthOptions { batch_size: 2, ..quick(2) };
    let batch = s.depth_batch(&views, &opts).unwrap();
    assert_eq!(batch.len(), 3);
    for (v, b) in views.iter().zip(&batch) {
        let one = s.depth(v, &quick(2)).unwrap();
        assert_eq!(b.width, v.width());
        for (x, y) in one.depth.iter().zip(&b.depth) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
}

#[test]
fn ensembles_give_uncertainty_and_latents_go_out_and_back_in() {
    let model = demo();
    let mut s = Session::new(&model, cpu1()).unwrap();
    let (w, h) = (32, 32);
    let rgb = picture(w, h, 1);
    let img = ImageView::rgb8(&rgb, w, h).unwrap();
    let opts = DepthOptions { ensemble_size: 3, output_uncertainty: true, output_latent: true, ..quick(2) };
    let r = s.depth(&img, &opts).unwrap();
    let u = r.uncertainty.as_ref().expect("uncertainty of an ensemble");
    assert_eq!(u.len(), w * h);
    assert!(u.iter().all(|v| v.is_finite() && *v >= 0.0) && u.iter().any(|&v| v > 0.0));
    let lat = r.latent.expect("latent asked for");
    let side = lat.shape[2];
    assert_eq!(side * 4, model.resolution(), "the demo VAE downsamples 4x");
    assert_eq!(lat.shape, vec![3, 4, side, side]);
    assert_eq!(lat.data.len(), 3 * 4 * side * side);
    // Latents in replace the seed's noise: the same latents give the same result whatever the
    // seed, other latents another one.
    let noise = Latent {
        shape: vec![1, 4, side, side],
        data: (0..4 * side * side).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect(),
    };
    let mut with = |seed: u64, l: &Latent| {
        let o = DepthOptions { latents: Some(l.clone()), seed, ..quick(2) };
        s.depth(&img, &o).unwrap().depth
    };
    let a = with(1, &noise);
    assert_eq!(a, with(2, &noise));
    let mut other = noise.clone();
    other.data.iter_mut().for_each(|v| *v = -*v);
    assert_ne!(a, with(1, &other));
    // A latent of the wrong shape is the caller's error.
    let bad = DepthOptions {
        latents: Some(Latent { shape: vec![2, 4, side, side], data: vec![0.0; 8 * side * side] }),
        ..quick(2)
    };
    assert_eq!(s.depth(&img, &bad).unwrap_err().kind(), ErrorKind::InvalidArgument);
    for shape in [vec![usize::MAX, 2, 2, 2], vec![4], vec![1, 4, side, side + 1]] {
        let odd = DepthOptions { latents: Some(Latent { shape, data: vec![0.0; 8] }), ..quick(1) };
        assert_eq!(s.depth(&img, &odd).unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
    // Flow latents hold both parts.
    let f = s.flow(&img, &img, &FlowOptions { output_latent: true, ..quick(2) }).unwrap();
    assert_eq!(f.latent.unwrap().shape, vec![2, 4, side, side]);
}

#[test]
fn bad_arguments_are_errors_with_kinds_not_panics() {
    let model = demo();
    let mut s = Session::new(&model, cpu1()).unwrap();
    let rgb = picture(8, 8, 0);
    let img = ImageView::rgb8(&rgb, 8, 8).unwrap();
    let other = ImageView::rgb8(&rgb[..4 * 4 * 3], 4, 4).unwrap();
    let kind = |r: Result<(), Error>| r.unwrap_err().kind();
    assert_eq!(kind(s.depth(&img, &quick(0)).map(|_| ())), ErrorKind::InvalidArgument);
    assert_eq!(
        kind(s.depth(&img, &DepthOptions { ensemble_size: 0, ..quick(1) }).map(|_| ())),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(s.depth(&img, &DepthOptions { batch_size: 0, ..quick(1) }).map(|_| ())),
        ErrorKind::InvalidArgument
    );
    assert_eq!(kind(s.flow(&img, &other, &quick(1)).map(|_| ())), ErrorKind::InvalidArgument);
    assert_eq!(kind(s.amodal(&img, &other, &quick(1)).map(|_| ())), ErrorKind::InvalidArgument);
    assert_eq!(kind(ImageView::rgb8(&rgb, 9, 8).map(|_| ())), ErrorKind::InvalidArgument);
    assert_eq!(kind(ImageView::rgb8(&rgb, 0, 8).map(|_| ())), ErrorKind::InvalidArgument);
    assert_eq!(kind(ImageView::new(&rgb, 8, 8, 20, PixelFormat::Rgb8).map(|_| ())), ErrorKind::InvalidArgument);
    assert_eq!(
        kind(ImageView::new(&rgb, usize::MAX, 2, usize::MAX, PixelFormat::RgbaF32).map(|_| ())),
        ErrorKind::InvalidArgument
    );
    assert_eq!(kind("tpu:0".parse::<Device>().map(|_| ())), ErrorKind::InvalidArgument);
    assert_eq!(kind("cpu:0".parse::<Device>().map(|_| ())), ErrorKind::InvalidArgument);
    assert_eq!(kind(Model::load("/nonexistent/model.safetensors").map(|_| ())), ErrorKind::Io);
    assert_eq!(kind(Model::from_bytes(b"not a model at all".to_vec()).map(|_| ())), ErrorKind::Weights);
    assert_eq!(kind(Model::from_bytes(vec![]).map(|_| ())), ErrorKind::Weights);
    // A session is still fine after all of that.
    assert_eq!(s.depth(&img, &quick(1)).unwrap().depth.len(), 64);
}

#[test]
fn a_model_from_bytes_predicts_as_the_file_does() {
    let path = percept::weights::model_file::demo_model_path().unwrap();
    let from_bytes = Model::from_bytes(std::fs::read(&path).unwrap()).unwrap();
    let model = demo();
    assert_eq!(from_bytes.parameter_count(), model.parameter_count());
    assert_eq!(from_bytes.resolution(), model.resolution());
    let rgb = picture(16, 16, 2);
    let img = ImageView::rgb8(&rgb, 16, 16).unwrap();
    let a = Session::new(&model, cpu1()).unwrap().depth(&img, &quick(2)).unwrap();
    let b = Session::new(&from_bytes, cpu1()).unwrap().depth(&img, &quick(2)).unwrap();
    assert_eq!(a, b);
}

/// N threads, N sessions on one model: each thread's results are the one-thread results, and
/// the CPU sessions share one set of weights.
#[test]
fn sessions_on_several_threads_give_the_one_thread_results() {
    let model = demo();
    let inputs: Vec<(usize, Vec<u8>)> = (0..3).map(|i| (i, picture(20 + 4 * i, 24, 5 * i))).collect();
    let mut single = Session::new(&model, cpu1()).unwrap();
    let want: Vec<Vec<f32>> = inputs
        .iter()
        .map(|(i, p)| single.depth(&ImageView::rgb8(p, 20 + 4 * i, 24).unwrap(), &quick(2)).unwrap().depth)
        .collect();
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let model = model.clone();
            let inputs = inputs.clone();
            std::thread::spawn(move || {
                let mut s = Session::new(&model, cpu1()).unwrap();
                // Each thread runs the inputs in another order.
                (0..inputs.len())
                    .map(|k| {
                        let (i, p) = &inputs[(k + t) % inputs.len()];
                        (*i, s.depth(&ImageView::rgb8(p, 20 + 4 * i, 24).unwrap(), &quick(2)).unwrap().depth)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    assert!(model.cpu_engine_users() >= 1);
    for t in threads {
        for (i, got) in t.join().unwrap() {
            assert_eq!(got, want[i], "input {i}");
        }
    }
    // One engine (one set of prepared weights) behind every CPU session.
    let a = Session::new(&model, cpu1()).unwrap();
    let b = Session::new(&model, Device::Cpu { threads: Some(2) }).unwrap();
    assert_eq!(model.cpu_engine_users(), 3, "single, a and b share one engine");
    drop((a, b));
    assert_eq!(model.cpu_engine_users(), 1);
}

/// A cancel from another thread ends the running call at the next step boundary with
/// `Cancelled`; the session then runs normally, and a progress callback can stop a call too.
#[test]
fn a_cancelled_call_returns_promptly_and_the_session_stays_usable() {
    let model = demo();
    let mut s = Session::new(&model, cpu1()).unwrap();
    let rgb = picture(32, 32, 4);
    let img = ImageView::rgb8(&rgb, 32, 32).unwrap();
    let want = s.depth(&img, &quick(3)).unwrap();
    let steps_seen = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<()>();
    let seen = steps_seen.clone();
    let tx = std::sync::Mutex::new(tx);
    let opts = DepthOptions {
        num_inference_steps: 200,
        progress: Some(Arc::new(move |p: percept::Progress| {
            seen.store(p.step, Ordering::SeqCst);
            if p.step == 2 {
                let _ = tx.lock().unwrap().send(());
            }
            true
        })),
        ..quick(200)
    };
    let token = s.cancel_token();
    let canceller = std::thread::spawn(move || {
        rx.recv().unwrap();
        token.cancel();
        Instant::now()
    });
    let err = s.depth(&img, &opts).unwrap_err();
    let returned = Instant::now();
    let cancelled_at = canceller.join().unwrap();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    let at = steps_seen.load(Ordering::SeqCst);
    assert!((2..=4).contains(&at), "stopped after step {at} of 200");
    assert!(returned.duration_since(cancelled_at) < Duration::from_secs(20));
    // Usable afterwards, with the same results as before.
    assert_eq!(s.depth(&img, &quick(3)).unwrap(), want);
    // A progress callback returning false stops the call the same way.
    let stop = DepthOptions { progress: Some(Arc::new(|p: percept::Progress| p.step < 1)), ..quick(5) };
    assert!(matches!(s.depth(&img, &stop), Err(Error::Cancelled)));
    assert_eq!(s.depth(&img, &quick(3)).unwrap(), want);
}

/// On the CUDA backend (emulated): after warm-up a call of the same shape allocates no device
/// memory and captures no graph, and its result is exactly a cold session's (which runs the
/// first step eagerly and captures the second); two shapes in turn stay warm.
#[test]
fn a_warm_session_allocates_nothing_and_captures_nothing() {
    let model = demo();
    let res = model.resolution();
    let mut warm = Session::new(&model, Device::CudaEmu).unwrap();
    warm.warmup(1, 2).unwrap();
    let (allocs, captures) = (warm.device_allocations().expect("the emulator counts"), warm.graph_captures());
    assert_eq!(captures, 1, "warm-up captures its step once");
    let rgb = picture(40, 30, 6);
    let img = ImageView::rgb8(&rgb, 40, 30).unwrap();
    let got = warm.depth(&img, &quick(2)).unwrap();
    assert_eq!(warm.device_allocations(), Some(allocs), "a warm call allocated device memory");
    assert_eq!(warm.graph_captures(), captures, "a warm call captured a graph");
    let cold = Session::new(&model, Device::CudaEmu).unwrap().depth(&img, &quick(2)).unwrap();
    assert_eq!(got.depth, cold.depth, "replaying every step differs from a cold call");
    // Another shape: captured on its first call; after one more round of both shapes (the
    // capture took buffers the other shape's encoder and decoder used), both stay warm.
    let flow = |steps| FlowOptions { num_inference_steps: steps, ..Default::default() };
    let plain = vec![0.25f32; 3 * res * res];
    let v = ImageView::rgb_f32(&plain, res, res).unwrap();
    warm.flow(&v, &v, &flow(2)).unwrap();
    assert_eq!(warm.graph_captures(), captures + 1);
    warm.flow(&v, &v, &flow(1)).unwrap();
    warm.depth(&img, &quick(1)).unwrap();
    let settled = (warm.device_allocations(), warm.graph_captures());
    warm.flow(&v, &v, &flow(1)).unwrap();
    warm.depth(&img, &quick(1)).unwrap();
    assert_eq!((warm.device_allocations(), warm.graph_captures()), settled);
}

/// Too little device memory is `ErrorKind::OutOfMemory`, for the weights (checked before
/// loading) and for a single allocation.
#[test]
fn too_little_device_memory_is_out_of_memory() {
    use percept::backend::cuda::backend::Cuda;
    use percept::emu::{Arch, EmuDevice};
    let src = percept::weights::model_file::resolve(None, None).unwrap();
    let small = EmuDevice::with_memory(Arch::Sm90, 64 << 20);
    let err = percept::pipeline::any::cuda_engine(Cuda::bf16(small), &src).err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::OutOfMemory, "{err}");
    let dev = EmuDevice::with_memory(Arch::Sm80, 1 << 20);
    let err = dev.alloc(2 << 20).err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::OutOfMemory, "{err}");
}

/// A bf16 CPU session: its own engine beside the f32 one, depth close to the f32 session's (the
/// same model at bf16 storage), and the device name says bf16.
#[test]
fn a_bf16_cpu_session_predicts_close_to_the_f32_one() {
    let model = demo();
    let rgb = picture(32, 24, 5);
    let img = ImageView::rgb8(&rgb, 32, 24).unwrap();
    let mut f32s = Session::new(&model, cpu1()).unwrap();
    let mut bf16s = Session::with_options(&model, SessionOptions::new(cpu1()).with_precision(Precision::Bf16)).unwrap();
    assert!(bf16s.device_name().contains("bf16"), "{}", bf16s.device_name());
    let a = f32s.depth(&img, &quick(2)).unwrap().depth;
    let b = bf16s.depth(&img, &quick(2)).unwrap().depth;
    let num: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
    let rel = (num / den).sqrt();
    assert!(rel > 0.0 && rel < 5e-2, "bf16 depth {rel:.3e} from f32");
}
