//! Depth, flow and amodal completion on caller-described images, into caller-allocated
//! outputs.

use std::ffi::c_void;
use std::sync::Arc;

use percept::{ImageView, Options, Progress, ProgressFn};

use crate::image::{image_view, percept_image};
use crate::params::{handle, read_params, Params};
use crate::session::percept_session;
use crate::status::{guard, percept_status, CResult, Failure};

/// Called after each denoising step with `step` of `steps` done and the params'
/// `progress_user_data`. Return true to go on, false to stop the call (it then returns
/// `PERCEPT_ERR_CANCELLED`). It runs while the calling thread waits inside the call, on that
/// thread or on one of the session's worker threads (CPU sessions run their steps on their own
/// thread pool): data it shares only with the caller needs no lock, but thread-locals differ.
/// It must not call percept on the same session (`percept_session_cancel()` excepted).
/// NULL: no callback.
pub type percept_progress_fn = Option<unsafe extern "C" fn(step: u32, steps: u32, user_data: *mut c_void) -> bool>;

/// How to run one prediction (depth, flow or amodal). Get one from
/// `percept_predict_default_params()`, then change fields.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct percept_predict_params {
    /// `sizeof(percept_predict_params)`, set by `percept_predict_default_params()`.
    pub struct_size: usize,
    /// DDIM denoising steps; default 50.
    pub num_inference_steps: u32,
    /// Predictions from independent noise, combined (depth: affine-aligned median; flow: mean;
    /// amodal: median); default 1.
    pub ensemble_size: u32,
    /// Seed of the initial noise: the same seed, input and device give the same output; default 0.
    pub seed: u64,
    /// true (the default): outputs at the input's size; false: at the model's resolution
    /// (`percept_model_resolution()` squared).
    pub match_input_resolution: bool,
    /// Called after each denoising step; NULL (the default): none.
    pub progress: percept_progress_fn,
    /// Passed to `progress` unchanged.
    pub progress_user_data: *mut c_void,
}

unsafe impl Params for percept_predict_params {
    const NAME: &'static str = "percept_predict_params";
    fn defaults() -> Self {
        let depth = Options::default();
        percept_predict_params {
            struct_size: std::mem::size_of::<Self>(),
            num_inference_steps: depth.num_inference_steps as u32,
            ensemble_size: depth.ensemble_size as u32,
            seed: depth.seed,
            match_input_resolution: depth.match_input_resolution,
            progress: None,
            progress_user_data: std::ptr::null_mut(),
        }
    }
}

/// The default predict params.
#[no_mangle]
pub extern "C" fn percept_predict_default_params() -> percept_predict_params {
    percept_predict_params::defaults()
}

/// The caller's callback and its pointer, callable from the pipeline.
struct CProgress {
    callback: unsafe extern "C" fn(u32, u32, *mut c_void) -> bool,
    user_data: *mut c_void,
}

// The pipeline calls the callback while the caller waits in the call, possibly on a worker
// thread of the session; the header says so, and the user data is the caller's to make safe
// for that.
unsafe impl Send for CProgress {}
unsafe impl Sync for CProgress {}

impl CProgress {
    fn call(&self, p: Progress) -> bool {
        unsafe { (self.callback)(p.step as u32, p.steps as u32, self.user_data) }
    }
}

/// The checked run settings shared by the three tasks.
struct Settings {
    steps: usize,
    ensemble: usize,
    seed: u64,
    match_input: bool,
    progress: Option<ProgressFn>,
}

impl Settings {
    unsafe fn read(params: *const percept_predict_params) -> CResult<Settings> {
        let p = read_params(params)?;
        if p.num_inference_steps == 0 {
            return Err(Failure::invalid("params->num_inference_steps is 0; it must be at least 1"));
        }
        if p.ensemble_size == 0 {
            return Err(Failure::invalid("params->ensemble_size is 0; it must be at least 1"));
        }
        let progress = p.progress.map(|callback| {
            let c = CProgress { callback, user_data: p.progress_user_data };
            Arc::new(move |progress: Progress| c.call(progress)) as ProgressFn
        });
        Ok(Settings {
            steps: p.num_inference_steps as usize,
            ensemble: p.ensemble_size as usize,
            seed: p.seed,
            match_input: p.match_input_resolution,
            progress,
        })
    }

    /// The outputs' size for an input of `width` x `height`.
    fn output_size(&self, width: usize, height: usize, resolution: usize) -> (usize, usize) {
        if self.match_input {
            (width, height)
        } else {
            (resolution, resolution)
        }
    }

    /// The call's options (the three tasks share one options struct).
    fn options(&self) -> Options {
        Options {
            num_inference_steps: self.steps,
            ensemble_size: self.ensemble,
            seed: self.seed,
            match_input_resolution: self.match_input,
            progress: self.progress.clone(),
            ..Default::default()
        }
    }
}

/// A caller's output buffer of `len` elements, checked to hold `needed` before the run starts.
struct Output<T> {
    ptr: *mut T,
    needed: usize,
}

impl<T: Copy> Output<T> {
    /// `ptr` NULL is an error unless `optional`; then it is `None`.
    fn check(ptr: *mut T, len: usize, needed: usize, what: &str, unit: &str, optional: bool) -> CResult<Option<Self>> {
        if ptr.is_null() {
            return if optional { Ok(None) } else { Err(Failure::invalid(format!("{what} is NULL"))) };
        }
        if len < needed {
            return Err(Failure::invalid(format!("{what} holds {len} {unit}; the output needs {needed}")));
        }
        Ok(Some(Output { ptr, needed }))
    }

    /// Copy a result in; its length was fixed by the same size the check used.
    unsafe fn fill(&self, values: &[T], what: &str) -> CResult<()> {
        if values.len() != self.needed {
            return Err(Failure {
                status: percept_status::PERCEPT_ERR_INTERNAL,
                message: format!(
                    "internal error: {what} came out with {} values, expected {}",
                    values.len(),
                    self.needed
                ),
            });
        }
        std::ptr::copy_nonoverlapping(values.as_ptr(), self.ptr, values.len());
        Ok(())
    }
}

fn pixels(w: usize, h: usize, per_pixel: usize) -> CResult<usize> {
    w.checked_mul(h)
        .and_then(|n| n.checked_mul(per_pixel))
        .ok_or_else(|| Failure::invalid(format!("an output of {w} x {h} pixels overflows the address space")))
}

/// Relative depth of `image`: `depth_out[y * W + x]`, affine-invariant depth in [0, 1], W x H the
/// input's size (or the model's resolution, see `match_input_resolution`).
/// `depth_len`: the floats `depth_out` holds, at least W * H. `uncertainty_out` (NULL: not
/// wanted) receives the ensemble's per-pixel spread, W * H floats (Marigold's median absolute
/// deviation, on the depth's scale; with the lower median, 0 everywhere for 2 members); it needs
/// `ensemble_size` > 1. `params` may be NULL (defaults). Outputs are written only on
/// `PERCEPT_OK`.
///
/// # Safety
/// `session` is a live session used by no other thread (but `percept_session_cancel()`);
/// `image` describes readable memory (see `percept_image`); the outputs hold their lengths.
#[no_mangle]
pub unsafe extern "C" fn percept_depth(
    session: *mut percept_session,
    image: *const percept_image,
    params: *const percept_predict_params,
    depth_out: *mut f32,
    depth_len: usize,
    uncertainty_out: *mut f32,
    uncertainty_len: usize,
) -> percept_status {
    guard(|| {
        let session = handle(session, "session")?;
        let image = image_view(image, "image")?;
        let settings = Settings::read(params)?;
        run_depth(session, &[image], &settings, (depth_out, depth_len), (uncertainty_out, uncertainty_len))
    })
}

/// Relative depth of `count` images in one call: they go through the model together (the
/// session's batch size at a time), which is what a throughput-bound caller wants. Outputs are
/// concatenated in order: image i's W_i x H_i floats (as `percept_depth()` writes them) start
/// where image i-1's end. `depth_len`: the floats `depth_out` holds, at least the sum;
/// `uncertainty_out` (NULL: not wanted) likewise, with `ensemble_size` > 1. Image i gets the
/// same noise as in a call of its own with the same seed, so a batch gives what `count` single
/// calls give, up to float rounding (its products run at other shapes). `params` may be NULL
/// (defaults). Outputs are written only on `PERCEPT_OK`.
///
/// # Safety
/// As `percept_depth()`; `images` points to `count` image descriptions.
#[no_mangle]
pub unsafe extern "C" fn percept_depth_batch(
    session: *mut percept_session,
    images: *const percept_image,
    count: usize,
    params: *const percept_predict_params,
    depth_out: *mut f32,
    depth_len: usize,
    uncertainty_out: *mut f32,
    uncertainty_len: usize,
) -> percept_status {
    guard(|| {
        let session = handle(session, "session")?;
        batch_args(count, &[(images.is_null(), "images")])?;
        let settings = Settings::read(params)?;
        let views: Vec<ImageView> =
            (0..count).map(|i| image_view(images.add(i), &format!("images[{i}]"))).collect::<CResult<_>>()?;
        run_depth(session, &views, &settings, (depth_out, depth_len), (uncertainty_out, uncertainty_len))
    })
}

/// The depth calls' common part: `views` through the session together, the outputs checked
/// first and written one after another.
unsafe fn run_depth(
    session: &percept_session,
    views: &[ImageView],
    settings: &Settings,
    (depth_out, depth_len): (*mut f32, usize),
    (uncertainty_out, uncertainty_len): (*mut f32, usize),
) -> CResult<()> {
    let total = batch_pixels(settings, views, session.resolution, 1)?;
    let depth_out = Output::check(depth_out, depth_len, total, "depth_out", "floats", false)?.unwrap();
    let uncertainty_out = Output::check(uncertainty_out, uncertainty_len, total, "uncertainty_out", "floats", true)?;
    let mut options = settings.options();
    if uncertainty_out.is_some() {
        if settings.ensemble < 2 {
            return Err(Failure::invalid(
                "uncertainty_out is set but params->ensemble_size is 1; the uncertainty needs an ensemble of 2 or more",
            ));
        }
        options.output_uncertainty = true;
    }
    let results = session.with(|s| Ok(s.depth_batch(views, &options)?))?;
    let depth: Vec<f32> = results.iter().flat_map(|r| r.depth.iter().copied()).collect();
    depth_out.fill(&depth, "depth")?;
    if let Some(out) = uncertainty_out {
        let values: Vec<f32> =
            results.iter().flat_map(|r| r.uncertainty.as_deref().unwrap_or_default().iter().copied()).collect();
        out.fill(&values, "uncertainty")?;
    }
    Ok(())
}

/// The flow calls' common part (see `run_depth`).
unsafe fn run_flow(
    session: &percept_session,
    pairs: &[(ImageView, ImageView)],
    settings: &Settings,
    flow_out: *mut f32,
    flow_len: usize,
) -> CResult<()> {
    let firsts: Vec<ImageView> = pairs.iter().map(|p| p.0).collect();
    let total = batch_pixels(settings, &firsts, session.resolution, 2)?;
    let flow_out = Output::check(flow_out, flow_len, total, "flow_out", "floats", false)?.unwrap();
    let options = settings.options();
    let results = session.with(|s| Ok(s.flow_batch(pairs, &options)?))?;
    let flow: Vec<f32> = results.iter().flat_map(|r| r.flow.iter().copied()).collect();
    flow_out.fill(&flow, "flow")
}

/// The amodal calls' common part (see `run_depth`).
unsafe fn run_amodal(
    session: &percept_session,
    pairs: &[(ImageView, ImageView)],
    settings: &Settings,
    (rgb_out, rgb_len): (*mut f32, usize),
    (mask_out, mask_len): (*mut u8, usize),
) -> CResult<()> {
    let firsts: Vec<ImageView> = pairs.iter().map(|p| p.0).collect();
    let total = batch_pixels(settings, &firsts, session.resolution, 1)?;
    let rgb_total =
        total.checked_mul(3).ok_or_else(|| Failure::invalid("the batch's outputs overflow the address space"))?;
    let rgb_out = Output::check(rgb_out, rgb_len, rgb_total, "rgb_out", "floats", true)?;
    let mask_out = Output::check(mask_out, mask_len, total, "mask_out", "bytes", true)?;
    if rgb_out.is_none() && mask_out.is_none() {
        return Err(Failure::invalid("rgb_out and mask_out are both NULL; ask for at least one"));
    }
    let options = settings.options();
    let results = session.with(|s| Ok(s.amodal_batch(pairs, &options)?))?;
    if let Some(out) = rgb_out {
        let rgb: Vec<f32> = results.iter().flat_map(|r| r.rgb.iter().copied()).collect();
        out.fill(&rgb, "amodal rgb")?;
    }
    if let Some(out) = mask_out {
        let mask: Vec<u8> = results.iter().flat_map(|r| r.mask.iter().copied()).collect();
        out.fill(&mask, "amodal mask")?;
    }
    Ok(())
}

/// A batch call's count and arrays: at least one input, no array NULL.
fn batch_args(count: usize, arrays: &[(bool, &str)]) -> CResult<()> {
    if count == 0 {
        return Err(Failure::invalid("count is 0; a batch needs at least one input"));
    }
    match arrays.iter().find(|(null, _)| *null) {
        Some((_, name)) => Err(Failure::invalid(format!("{name} is NULL"))),
        None => Ok(()),
    }
}

/// The values a batch's outputs take together, `per_pixel` a pixel, for inputs `views`.
fn batch_pixels(settings: &Settings, views: &[ImageView], resolution: usize, per_pixel: usize) -> CResult<usize> {
    views.iter().try_fold(0usize, |total, v| {
        let (w, h) = settings.output_size(v.width(), v.height(), resolution);
        total
            .checked_add(pixels(w, h, per_pixel)?)
            .ok_or_else(|| Failure::invalid("the batch's outputs overflow the address space"))
    })
}

/// Pairs `a[i]`, `b[i]` of a batch, each pair of one size (`what`: how the pair is named).
unsafe fn batch_pairs<'a>(
    a: *const percept_image,
    b: *const percept_image,
    count: usize,
    names: (&str, &str),
) -> CResult<Vec<(ImageView<'a>, ImageView<'a>)>> {
    (0..count)
        .map(|i| {
            let (na, nb) = (format!("{}[{i}]", names.0), format!("{}[{i}]", names.1));
            let (x, y) = (image_view(a.add(i), &na)?, image_view(b.add(i), &nb)?);
            if (x.width(), x.height()) != (y.width(), y.height()) {
                return Err(Failure::invalid(format!(
                    "{na} is {} x {} pixels but {nb} is {} x {}; a pair must have one size",
                    x.width(),
                    x.height(),
                    y.width(),
                    y.height()
                )));
            }
            Ok((x, y))
        })
        .collect()
}

/// Optical flow of `count` frame pairs (`frames1[i]` to `frames2[i]`, each pair of one size)
/// in one call, through the model together; outputs concatenated in order, pair i's W_i x H_i x
/// 2 floats (as `percept_flow()` writes them) right after pair i-1's. `flow_len`: the floats
/// `flow_out` holds, at least the sum. Each pair's flow is its own call's up to float rounding.
/// `params` may be NULL (defaults). The output is written only on `PERCEPT_OK`.
///
/// # Safety
/// As `percept_depth()`; `frames1` and `frames2` point to `count` image descriptions each.
#[no_mangle]
pub unsafe extern "C" fn percept_flow_batch(
    session: *mut percept_session,
    frames1: *const percept_image,
    frames2: *const percept_image,
    count: usize,
    params: *const percept_predict_params,
    flow_out: *mut f32,
    flow_len: usize,
) -> percept_status {
    guard(|| {
        let session = handle(session, "session")?;
        batch_args(count, &[(frames1.is_null(), "frames1"), (frames2.is_null(), "frames2")])?;
        let settings = Settings::read(params)?;
        let pairs = batch_pairs(frames1, frames2, count, ("frames1", "frames2"))?;
        run_flow(session, &pairs, &settings, flow_out, flow_len)
    })
}

/// Amodal completion of `count` (image, mask) pairs in one call, through the model together;
/// outputs concatenated in order as `percept_amodal()` writes them (pair i's W_i x H_i x 3 rgb
/// floats right after pair i-1's; likewise the W_i x H_i mask bytes). Either output may be NULL,
/// not both; `rgb_len` and `mask_len` say what they hold, at least the sums. Each pair's result
/// is its own call's up to float rounding. `params` may be NULL (defaults). Outputs are written
/// only on `PERCEPT_OK`.
///
/// # Safety
/// As `percept_depth()`; `images` and `masks` point to `count` image descriptions each.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn percept_amodal_batch(
    session: *mut percept_session,
    images: *const percept_image,
    masks: *const percept_image,
    count: usize,
    params: *const percept_predict_params,
    rgb_out: *mut f32,
    rgb_len: usize,
    mask_out: *mut u8,
    mask_len: usize,
) -> percept_status {
    guard(|| {
        let session = handle(session, "session")?;
        batch_args(count, &[(images.is_null(), "images"), (masks.is_null(), "masks")])?;
        let settings = Settings::read(params)?;
        let pairs = batch_pairs(images, masks, count, ("images", "masks"))?;
        run_amodal(session, &pairs, &settings, (rgb_out, rgb_len), (mask_out, mask_len))
    })
}

/// Optical flow from `frame1` to `frame2` (same size, any formats): `flow_out[(y * W + x) * 2]`
/// is u (pixels to the right), `+ 1` is v (pixels down), W x H the frames' size (or the model's
/// resolution, see `match_input_resolution`, the vectors then in pixels at that size).
/// `flow_len`: the floats `flow_out` holds, at least W * H * 2. `params` may be NULL
/// (defaults). The output is written only on `PERCEPT_OK`.
///
/// # Safety
/// As `percept_depth()`.
#[no_mangle]
pub unsafe extern "C" fn percept_flow(
    session: *mut percept_session,
    frame1: *const percept_image,
    frame2: *const percept_image,
    params: *const percept_predict_params,
    flow_out: *mut f32,
    flow_len: usize,
) -> percept_status {
    guard(|| {
        let session = handle(session, "session")?;
        let frame1 = image_view(frame1, "frame1")?;
        let frame2 = image_view(frame2, "frame2")?;
        if (frame1.width(), frame1.height()) != (frame2.width(), frame2.height()) {
            return Err(Failure::invalid(format!(
                "frame1 is {} x {} pixels but frame2 is {} x {}; the frames of a pair must have one size",
                frame1.width(),
                frame1.height(),
                frame2.width(),
                frame2.height()
            )));
        }
        let settings = Settings::read(params)?;
        run_flow(session, &[(frame1, frame2)], &settings, flow_out, flow_len)
    })
}

/// Amodal completion of the object `mask` marks as visible in `image` (same size): the whole
/// object's appearance, `rgb_out[(y * W + x) * 3 + c]` in [0, 1], and its whole extent,
/// `mask_out[y * W + x]` 1 on the object and 0 elsewhere, W x H the input's size (or the
/// model's resolution, see `match_input_resolution`). Either output may be NULL (not wanted),
/// not both; `rgb_len` (floats, at least W * H * 3) and `mask_len` (bytes, at least W * H) say
/// what they hold. `params` may be NULL (defaults). Outputs are written only on `PERCEPT_OK`.
///
/// # Safety
/// As `percept_depth()`.
#[no_mangle]
pub unsafe extern "C" fn percept_amodal(
    session: *mut percept_session,
    image: *const percept_image,
    mask: *const percept_image,
    params: *const percept_predict_params,
    rgb_out: *mut f32,
    rgb_len: usize,
    mask_out: *mut u8,
    mask_len: usize,
) -> percept_status {
    guard(|| {
        let session = handle(session, "session")?;
        let image = image_view(image, "image")?;
        let mask = image_view(mask, "mask")?;
        if (image.width(), image.height()) != (mask.width(), mask.height()) {
            return Err(Failure::invalid(format!(
                "image is {} x {} pixels but mask is {} x {}; they must have one size",
                image.width(),
                image.height(),
                mask.width(),
                mask.height()
            )));
        }
        let settings = Settings::read(params)?;
        run_amodal(session, &[(image, mask)], &settings, (rgb_out, rgb_len), (mask_out, mask_len))
    })
}
