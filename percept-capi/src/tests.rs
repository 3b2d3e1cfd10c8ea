//! The entry points called as C calls them: argument checks (status, message, nothing written),
//! params versioning, handle lifetimes, and the three tasks on the demo model against the Rust
//! API they wrap.

use std::ffi::{c_void, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicU32, Ordering};

use percept::{DepthOptions, Device, ImageView, Model, Session};

use crate::percept_status::*;
use crate::*;

const STEPS: u32 = 2;

fn last_error() -> String {
    unsafe { CStr::from_ptr(percept_last_error()) }.to_string_lossy().into_owned()
}

/// `status` is an invalid-argument failure whose message holds `needle`.
fn assert_invalid(status: percept_status, needle: &str) {
    assert_eq!(status, PERCEPT_ERR_INVALID_ARGUMENT, "message: {}", last_error());
    let message = last_error();
    assert!(message.contains(needle), "message {message:?} does not mention {needle:?}");
}

fn demo_model() -> *mut percept_model {
    let mut model = null_mut();
    assert_eq!(unsafe { percept_model_load(null(), null(), &mut model) }, PERCEPT_OK, "{}", last_error());
    model
}

fn cpu_session(model: *const percept_model) -> *mut percept_session {
    let mut params = percept_session_default_params();
    params.device = PERCEPT_DEVICE_CPU;
    params.cpu_threads = 1;
    let mut session = null_mut();
    assert_eq!(unsafe { percept_session_new(model, &params, &mut session) }, PERCEPT_OK, "{}", last_error());
    session
}

/// A 40 x 30 RGB8 test pattern, rows padded to `stride` bytes.
fn pattern(stride: usize) -> Vec<u8> {
    let (w, h) = (40, 30);
    let mut data = vec![0u8; stride * (h - 1) + w * 3];
    for y in 0..h {
        for x in 0..w * 3 {
            data[y * stride + x] = ((x * 7 + y * 13) % 251) as u8;
        }
    }
    data
}

fn rgb8(data: &[u8], stride: usize) -> percept_image {
    percept_image { data: data.as_ptr().cast(), width: 40, height: 30, stride, format: PERCEPT_PIXEL_RGB8 }
}

fn params(steps: u32) -> percept_predict_params {
    let mut p = percept_predict_default_params();
    p.num_inference_steps = steps;
    p
}

unsafe fn depth(
    session: *mut percept_session,
    image: &percept_image,
    p: &percept_predict_params,
    out: &mut [f32],
) -> percept_status {
    percept_depth(session, image, p, out.as_mut_ptr(), out.len(), null_mut(), 0)
}

#[test]
fn abi_version_and_defaults() {
    assert_eq!(percept_abi_version(), PERCEPT_ABI_VERSION);
    assert_eq!(unsafe { CStr::from_ptr(percept_version()) }.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    let p = percept_predict_default_params();
    assert_eq!(p.struct_size, std::mem::size_of::<percept_predict_params>());
    assert_eq!((p.num_inference_steps, p.ensemble_size, p.seed), (50, 1, 0));
    assert!(p.match_input_resolution && p.progress.is_none());
    let s = percept_session_default_params();
    assert_eq!((s.device, s.precision, s.cpu_threads), (PERCEPT_DEVICE_AUTO, PERCEPT_PRECISION_DEFAULT, 0));
    assert!(percept_model_default_params().sd2_dir.is_null());
}

#[test]
fn missing_model_file_names_it_and_returns_no_handle() {
    let path = CString::new("no/such/dir/model.safetensors").unwrap();
    let mut model = std::ptr::dangling_mut::<percept_model>();
    let status = unsafe { percept_model_load(path.as_ptr(), null(), &mut model) };
    assert!(matches!(status, PERCEPT_ERR_IO | PERCEPT_ERR_WEIGHTS), "{status:?}");
    assert!(last_error().contains("no/such/dir/model.safetensors"), "{}", last_error());
    assert!(model.is_null());
    assert_invalid(unsafe { percept_model_load(path.as_ptr(), null(), null_mut()) }, "out");
    let bytes = b"not a safetensors file";
    let status = unsafe { percept_model_load_from_memory(bytes.as_ptr().cast(), bytes.len(), &mut model) };
    assert_ne!(status, PERCEPT_OK);
    assert!(model.is_null());
}

#[test]
fn params_struct_size_is_checked() {
    let model = demo_model();
    let mut session = null_mut();
    let mut p = percept_session_default_params();
    p.struct_size = 0;
    assert_invalid(unsafe { percept_session_new(model, &p, &mut session) }, "percept_session_default_params()");
    assert!(session.is_null());
    p.struct_size = std::mem::size_of::<percept_session_params>() - 1;
    assert_invalid(unsafe { percept_session_new(model, &p, &mut session) }, "struct_size");

    // A caller built against a newer header (a larger struct) is read up to what we know.
    #[repr(C)]
    struct Newer {
        known: percept_session_params,
        added: u64,
    }
    let mut newer = Newer { known: percept_session_default_params(), added: 99 };
    newer.known.struct_size = std::mem::size_of::<Newer>();
    newer.known.device = PERCEPT_DEVICE_CPU;
    newer.known.cpu_threads = 1;
    let status = unsafe { percept_session_new(model, (&newer as *const Newer).cast(), &mut session) };
    assert_eq!(status, PERCEPT_OK, "{}", last_error());
    unsafe { percept_session_free(session) };

    // Unknown enum values and impossible numbers are refused by name.
    let mut p = percept_session_default_params();
    p.device = 9;
    assert_invalid(unsafe { percept_session_new(model, &p, &mut session) }, "params->device is 9");
    let mut p = percept_session_default_params();
    p.precision = -1;
    assert_invalid(unsafe { percept_session_new(model, &p, &mut session) }, "params->precision");
    let mut p = percept_session_default_params();
    p.device = PERCEPT_DEVICE_CPU;
    p.cpu_threads = -2;
    assert_invalid(unsafe { percept_session_new(model, &p, &mut session) }, "cpu_threads");
    assert_invalid(unsafe { percept_session_new(null(), null(), &mut session) }, "model is NULL");
    unsafe { percept_model_free(model) };
}

#[test]
fn bad_images_and_outputs_are_refused_before_running() {
    let model = demo_model();
    let session = cpu_session(model);
    let data = pattern(120);
    let good = rgb8(&data, 120);
    let p = params(STEPS);
    let mut out = vec![-7.0f32; 40 * 30];
    let untouched = |out: &[f32]| out.iter().all(|&v| v == -7.0);
    unsafe {
        assert_invalid(percept_depth(session, null(), &p, out.as_mut_ptr(), out.len(), null_mut(), 0), "image is NULL");
        assert_invalid(
            percept_depth(null_mut(), &good, &p, out.as_mut_ptr(), out.len(), null_mut(), 0),
            "session is NULL",
        );
        let mut bad = good;
        bad.format = 42;
        assert_invalid(depth(session, &bad, &p, &mut out), "image->format is 42");
        let mut bad = good;
        bad.data = null();
        assert_invalid(depth(session, &bad, &p, &mut out), "image->data is NULL");
        let mut bad = good;
        bad.width = 0;
        assert_invalid(depth(session, &bad, &p, &mut out), "0 x 30");
        let mut bad = good;
        bad.stride = 119;
        assert_invalid(depth(session, &bad, &p, &mut out), "image->stride is 119");
        assert_invalid(
            depth(session, &good, &p, &mut out[..40 * 30 - 1]),
            "depth_out holds 1199 floats; the output needs 1200",
        );
        assert_invalid(percept_depth(session, &good, &p, null_mut(), 0, null_mut(), 0), "depth_out is NULL");
        let mut uncertainty = vec![0.0f32; 40 * 30];
        let status =
            percept_depth(session, &good, &p, out.as_mut_ptr(), out.len(), uncertainty.as_mut_ptr(), uncertainty.len());
        assert_invalid(status, "ensemble_size is 1");
        let mut zero_steps = p;
        zero_steps.num_inference_steps = 0;
        assert_invalid(depth(session, &good, &zero_steps, &mut out), "num_inference_steps is 0");
        let mut uninitialised = p;
        uninitialised.struct_size = 0;
        assert_invalid(depth(session, &good, &uninitialised, &mut out), "percept_predict_default_params()");
        assert!(untouched(&out));

        let other = pattern(30 * 3);
        let mut small = rgb8(&other, 0);
        small.width = 30;
        let mut flow = vec![0.0f32; 40 * 30 * 2];
        let status = percept_flow(session, &good, &small, &p, flow.as_mut_ptr(), flow.len());
        assert_invalid(status, "frame1 is 40 x 30 pixels but frame2 is 30 x 30");
        let status = percept_amodal(session, &good, &good, &p, null_mut(), 0, null_mut(), 0);
        assert_invalid(status, "rgb_out and mask_out are both NULL");
        let mut mask = vec![0u8; 40 * 30 - 1];
        let status = percept_amodal(session, &good, &good, &p, null_mut(), 0, mask.as_mut_ptr(), mask.len());
        assert_invalid(status, "mask_out holds 1199 bytes");

        percept_session_free(session);
        percept_model_free(model);
    }
}

#[test]
fn depth_matches_the_rust_api_and_honours_the_stride() {
    let model = demo_model();
    let session = cpu_session(model);
    let packed = pattern(120);
    let padded = pattern(131);
    let mut p = params(STEPS);
    p.seed = 5;
    let (mut a, mut b) = (vec![0.0f32; 1200], vec![0.0f32; 1200]);
    unsafe {
        assert_eq!(depth(session, &rgb8(&packed, 0), &p, &mut a), PERCEPT_OK, "{}", last_error());
        assert_eq!(depth(session, &rgb8(&padded, 131), &p, &mut b), PERCEPT_OK, "{}", last_error());
    }
    assert_eq!(a, b, "a padded stride changed the result");
    assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));

    let rust_model = Model::demo().unwrap();
    let mut rust = Session::new(&rust_model, Device::Cpu { threads: Some(1) }).unwrap();
    let image = ImageView::rgb8(&packed, 40, 30).unwrap();
    let opts = DepthOptions { num_inference_steps: STEPS as usize, seed: 5, ..Default::default() };
    assert_eq!(rust.depth(&image, &opts).unwrap().depth, a);

    // At the model's resolution instead of the input's.
    let res = unsafe { percept_model_resolution(model) };
    assert_eq!(res, 128);
    p.match_input_resolution = false;
    let mut full = vec![0.0f32; res * res];
    unsafe {
        assert_invalid(depth(session, &rgb8(&packed, 0), &p, &mut a), "the output needs 16384");
        assert_eq!(depth(session, &rgb8(&packed, 0), &p, &mut full), PERCEPT_OK, "{}", last_error());
        percept_session_free(session);
        percept_model_free(model);
    }
}

/// A batch call: outputs concatenated in order (images of two sizes), each equal to the
/// image's own call with the same seed up to float rounding; the argument checks name the image at fault.
#[test]
fn depth_batch_concatenates_what_single_calls_give() {
    let model = demo_model();
    let session = cpu_session(model);
    let packed = pattern(120);
    let small: Vec<u8> = packed[..120 * 20].to_vec(); // the first 20 rows: 40 x 20
    let a = rgb8(&packed, 0);
    let b = percept_image { height: 20, ..rgb8(&small, 0) };
    let p = params(STEPS);
    let (mut one_a, mut one_b) = (vec![0.0f32; 1200], vec![0.0f32; 800]);
    let mut batch = vec![f32::NAN; 2000 + 1200];
    let images = [a, b, a];
    unsafe {
        assert_eq!(depth(session, &a, &p, &mut one_a), PERCEPT_OK, "{}", last_error());
        assert_eq!(depth(session, &b, &p, &mut one_b), PERCEPT_OK, "{}", last_error());
        let status =
            percept_depth_batch(session, images.as_ptr(), 3, &p, batch.as_mut_ptr(), batch.len(), null_mut(), 0);
        assert_eq!(status, PERCEPT_OK, "{}", last_error());
    }
    // Equal up to float rounding (a batch's products run at other shapes, summed in another order).
    let close = |x: &[f32], y: &[f32]| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| (p - q).abs() <= 1e-5);
    assert!(close(&batch[..1200], &one_a), "image 0 differs from its own call");
    assert!(close(&batch[1200..2000], &one_b), "image 1 differs from its own call");
    assert!(close(&batch[2000..], &one_a), "image 2 differs from its own call");
    let mut bad = images;
    bad[1].data = null();
    let mut short = vec![0.0f32; 3199];
    unsafe {
        let call = |imgs: *const percept_image, n: usize, out: &mut [f32]| {
            percept_depth_batch(session, imgs, n, &p, out.as_mut_ptr(), out.len(), null_mut(), 0)
        };
        assert_invalid(call(images.as_ptr(), 0, &mut batch), "count is 0");
        assert_invalid(call(null(), 3, &mut batch), "images is NULL");
        assert_invalid(call(bad.as_ptr(), 3, &mut batch), "images[1]->data is NULL");
        assert_invalid(call(images.as_ptr(), 3, &mut short), "the output needs 3200");
        percept_session_free(session);
        percept_model_free(model);
    }
}

#[test]
fn uncertainty_flow_and_amodal_fill_their_outputs() {
    let model = demo_model();
    let session = cpu_session(model);
    let data = pattern(120);
    let image = rgb8(&data, 0);
    let mut p = params(STEPS);
    unsafe {
        // Three members: the uncertainty is Marigold's median absolute deviation, which for two
        // members is 0 everywhere (torch's median of an even count is the lower middle value).
        p.ensemble_size = 3;
        let (mut d, mut u) = (vec![f32::NAN; 1200], vec![f32::NAN; 1200]);
        let status = percept_depth(session, &image, &p, d.as_mut_ptr(), d.len(), u.as_mut_ptr(), u.len());
        assert_eq!(status, PERCEPT_OK, "{}", last_error());
        assert!(d.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(u.iter().all(|v| v.is_finite() && *v >= 0.0) && u.iter().any(|&v| v > 0.0));
        let rust_model = Model::demo().unwrap();
        let mut rust = Session::new(&rust_model, Device::Cpu { threads: Some(1) }).unwrap();
        let view = ImageView::rgb8(&data, 40, 30).unwrap();
        let opts = DepthOptions {
            num_inference_steps: STEPS as usize,
            ensemble_size: 3,
            output_uncertainty: true,
            ..Default::default()
        };
        let expected = rust.depth(&view, &opts).unwrap();
        assert_eq!((expected.depth, expected.uncertainty), (d, Some(u)));
        p.ensemble_size = 1;

        let mut flow = vec![f32::NAN; 40 * 30 * 2];
        let status = percept_flow(session, &image, &image, &p, flow.as_mut_ptr(), flow.len());
        assert_eq!(status, PERCEPT_OK, "{}", last_error());
        assert!(flow.iter().all(|v| v.is_finite()));

        // A gray mask: the left half visible.
        let mask_pixels: Vec<u8> = (0..40 * 30).map(|i| if i % 40 < 20 { 255 } else { 0 }).collect();
        let mask = percept_image {
            data: mask_pixels.as_ptr().cast(),
            width: 40,
            height: 30,
            stride: 0,
            format: PERCEPT_PIXEL_GRAY8,
        };
        let (mut rgb, mut whole) = (vec![f32::NAN; 40 * 30 * 3], vec![7u8; 40 * 30]);
        let status =
            percept_amodal(session, &image, &mask, &p, rgb.as_mut_ptr(), rgb.len(), whole.as_mut_ptr(), whole.len());
        assert_eq!(status, PERCEPT_OK, "{}", last_error());
        assert!(rgb.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(whole.iter().all(|&v| v <= 1));
        // Only the mask, same seed: the same mask.
        let mut only = vec![7u8; 40 * 30];
        let status = percept_amodal(session, &image, &mask, &p, null_mut(), 0, only.as_mut_ptr(), only.len());
        assert_eq!(status, PERCEPT_OK, "{}", last_error());
        assert_eq!(only, whole);

        // Batches of two: each pair's output where it belongs, equal to its own call up to
        // float rounding; a pair of two sizes is refused, naming it.
        let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() <= 1e-5);
        let (firsts, seconds) = ([image, image], [image, image]);
        let mut flows = vec![f32::NAN; 2 * flow.len()];
        let status =
            percept_flow_batch(session, firsts.as_ptr(), seconds.as_ptr(), 2, &p, flows.as_mut_ptr(), flows.len());
        assert_eq!(status, PERCEPT_OK, "{}", last_error());
        assert!(close(&flows[..flow.len()], &flow) && close(&flows[flow.len()..], &flow), "flow batch");
        let masks = [mask, mask];
        let (mut rgbs, mut wholes) = (vec![f32::NAN; 2 * rgb.len()], vec![7u8; 2 * whole.len()]);
        let status = percept_amodal_batch(
            session,
            firsts.as_ptr(),
            masks.as_ptr(),
            2,
            &p,
            rgbs.as_mut_ptr(),
            rgbs.len(),
            wholes.as_mut_ptr(),
            wholes.len(),
        );
        assert_eq!(status, PERCEPT_OK, "{}", last_error());
        assert!(close(&rgbs[..rgb.len()], &rgb) && close(&rgbs[rgb.len()..], &rgb), "amodal batch rgb");
        let differing = wholes.iter().zip(whole.iter().chain(&whole)).filter(|(a, b)| a != b).count();
        assert!(differing <= 2, "amodal batch masks: {differing} pixels differ from the single calls'");
        let half = percept_image { height: 15, ..image };
        let mixed = [image, half];
        let status =
            percept_flow_batch(session, firsts.as_ptr(), mixed.as_ptr(), 2, &p, flows.as_mut_ptr(), flows.len());
        assert_invalid(status, "frames1[1] is 40 x 30 pixels but frames2[1] is 40 x 15");
        let status =
            percept_amodal_batch(session, firsts.as_ptr(), null(), 2, &p, rgbs.as_mut_ptr(), rgbs.len(), null_mut(), 0);
        assert_invalid(status, "masks is NULL");
        percept_session_free(session);
        percept_model_free(model);
    }
}

unsafe extern "C" fn count_steps(step: u32, steps: u32, user_data: *mut c_void) -> bool {
    let seen = &*(user_data as *const AtomicU32);
    // No assert here: a panic cannot leave an extern "C" function.
    seen.store(if step <= steps { step } else { 1000 }, Ordering::SeqCst);
    step < 3 // stop after the third step
}

#[test]
fn progress_cancel_and_handle_lifetimes() {
    let model = demo_model();
    let session = cpu_session(model);
    // The session keeps the model alive.
    unsafe { percept_model_free(model) };
    let data = pattern(120);
    let image = rgb8(&data, 0);
    let mut out = vec![0.0f32; 1200];
    let seen = AtomicU32::new(0);
    let mut p = params(10);
    p.progress = Some(count_steps);
    p.progress_user_data = (&seen as *const AtomicU32).cast_mut().cast();
    unsafe {
        let status = depth(session, &image, &p, &mut out);
        assert_eq!(status, PERCEPT_ERR_CANCELLED, "{}", last_error());
        assert_eq!(seen.load(Ordering::SeqCst), 3);

        // A cancel while no call runs stops the next call, and only that one.
        p.progress = None;
        assert_eq!(percept_session_cancel(session), PERCEPT_OK);
        assert_eq!(depth(session, &image, &p, &mut out), PERCEPT_ERR_CANCELLED);
        assert_eq!(depth(session, &image, &params(STEPS), &mut out), PERCEPT_OK, "{}", last_error());
        assert_invalid(percept_session_cancel(null()), "session is NULL");

        let name = CStr::from_ptr(percept_session_device_name(session)).to_str().unwrap();
        assert!(name.starts_with("cpu"), "{name}");
        assert_eq!(percept_session_warmup(session, 1, 1), PERCEPT_OK, "{}", last_error());
        assert_invalid(percept_session_warmup(session, 0, 1), "batch (0)");
        percept_session_free(session);
        // NULL is a no-op for every free.
        percept_session_free(null_mut());
        percept_model_free(null_mut());
        assert!(percept_model_description(null()).is_null());
        assert_eq!(percept_model_resolution(null()), 0);
    }
}

#[test]
fn model_getters() {
    let model = demo_model();
    unsafe {
        let description = CStr::from_ptr(percept_model_description(model)).to_str().unwrap();
        assert!(description.contains("demo_model"), "{description}");
        assert!(percept_model_parameter_count(model) > 1_000_000);

        // The same file from memory: the same model.
        let path = &description[..description.find(".safetensors").unwrap() + ".safetensors".len()];
        let bytes = std::fs::read(path).unwrap();
        let mut from_memory = null_mut();
        let status = percept_model_load_from_memory(bytes.as_ptr().cast(), bytes.len(), &mut from_memory);
        assert_eq!(status, PERCEPT_OK, "{}", last_error());
        drop(bytes);
        assert_eq!(percept_model_parameter_count(from_memory), percept_model_parameter_count(model));
        percept_model_free(from_memory);
        percept_model_free(model);
    }
}
