//! `percept._percept.Session`: the three tasks, with the GIL released while they compute.

use std::cell::Cell;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use numpy::{Element, PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use percept::{
    AmodalOptions, CancelToken, DepthOptions, Device, FlowOptions, Latent, Options, Precision, Progress, ProgressFn,
    Session, SessionOptions,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBool;

use crate::errors::to_py_err;
use crate::image::OwnedImage;
use crate::PyModel;

/// One engine session on one device. Calls from several Python threads on the same session run
/// one after the other (the engine's session is used by one thread at a time); use one session
/// per thread to run in parallel.
#[pyclass(frozen, module = "percept._percept", name = "Session")]
pub struct PySession {
    inner: Mutex<Session>,
    /// Held outside the mutex so another thread can cancel a running call.
    cancel: CancelToken,
    device_name: String,
}

/// The options every task shares, as the Python layer passes them.
struct Common {
    steps: usize,
    ensemble: usize,
    seed: u64,
    batch_size: Option<usize>,
    match_input_resolution: bool,
    latents: Option<Latent>,
    output_latent: bool,
}

impl Common {
    /// The engine's options (one struct for the three tasks).
    fn into_options(self, progress: Option<ProgressFn>) -> Options {
        let defaults = Options::default();
        Options {
            num_inference_steps: self.steps,
            ensemble_size: self.ensemble,
            seed: self.seed,
            batch_size: self.batch_size.unwrap_or(defaults.batch_size),
            match_input_resolution: self.match_input_resolution,
            latents: self.latents,
            output_latent: self.output_latent,
            progress,
            ..defaults
        }
    }
}

type Array = Py<PyAny>;
/// (depth, uncertainty, latent) of one image.
type DepthTuple = (Array, Option<Array>, Option<Array>);

#[pymethods]
impl PySession {
    /// `device`: "auto", "cpu", "cuda", "cuda:N" (or "cuda-emu", the CUDA kernels run on the CPU
    /// by the emulator, for testing). `threads`: CPU worker threads (CPU device only).
    /// `precision`: "f32" or "bf16" (None: the device's default, bf16 on a GPU, f32 on the CPU).
    #[new]
    #[pyo3(signature = (model, device="auto", threads=None, precision=None))]
    fn new(
        py: Python<'_>,
        model: &PyModel,
        device: &str,
        threads: Option<usize>,
        precision: Option<&str>,
    ) -> PyResult<Self> {
        let mut dev: Device = device.parse().map_err(|e| {
            PyValueError::new_err(format!(
                "device {device:?}: {e} (expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\")"
            ))
        })?;
        if let Some(n) = threads {
            if n == 0 {
                return Err(PyValueError::new_err("threads must be at least 1"));
            }
            match dev {
                Device::Cpu { .. } => dev = Device::Cpu { threads: Some(n) },
                _ => return Err(PyValueError::new_err(format!("threads is for device=\"cpu\", not {device:?}"))),
            }
        }
        let mut opts = SessionOptions::new(dev);
        match precision {
            None => {}
            Some("f32") => opts = opts.with_precision(Precision::F32),
            Some("bf16") => opts = opts.with_precision(Precision::Bf16),
            Some(other) => {
                return Err(PyValueError::new_err(format!("precision {other:?}: expected \"f32\" or \"bf16\"")))
            }
        }
        let model = model.inner.clone();
        let session = py.detach(|| Session::with_options(&model, opts)).map_err(to_py_err)?;
        let cancel = session.cancel_token();
        let device_name = session.device_name();
        Ok(PySession { inner: Mutex::new(session), cancel, device_name })
    }

    /// Where this session runs, e.g. "cpu (2 threads, AMX GEMM)".
    #[getter]
    fn device_name(&self) -> String {
        self.device_name.clone()
    }

    /// Stop the running call (from another thread) at its next denoising step; it raises
    /// CancelledError and the session stays usable.
    fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Run `steps` denoising steps on a batch of `batch` inputs once, so the first real call
    /// does not pay for kernel compilation and buffer allocation.
    fn warmup(&self, py: Python<'_>, batch: usize, steps: usize) -> PyResult<()> {
        py.detach(|| self.lock().warmup(batch, steps)).map_err(to_py_err)
    }

    /// Depth of each image: a list of (depth H x W, uncertainty or None, latent or None).
    #[pyo3(signature = (images, num_inference_steps, ensemble_size, seed, batch_size, match_input_resolution,
                        output_uncertainty, latents, output_latent, progress))]
    #[allow(clippy::too_many_arguments)]
    fn depth(
        &self,
        py: Python<'_>,
        images: Vec<Bound<'_, PyAny>>,
        num_inference_steps: usize,
        ensemble_size: usize,
        seed: u64,
        batch_size: Option<usize>,
        match_input_resolution: bool,
        output_uncertainty: bool,
        latents: Option<PyReadonlyArrayDyn<'_, f32>>,
        output_latent: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Vec<DepthTuple>> {
        let images = owned_images(&images, "image")?;
        let common = Common {
            steps: num_inference_steps,
            ensemble: ensemble_size,
            seed,
            batch_size,
            match_input_resolution,
            latents: latents.map(|a| to_latent(&a)),
            output_latent,
        };
        let results = self.run(py, progress, move |session, progress| {
            let mut opts: DepthOptions = common.into_options(progress);
            opts.output_uncertainty = output_uncertainty;
            let views = images.iter().map(OwnedImage::view).collect::<PyResult<Vec<_>>>()?;
            let out = match views.as_slice() {
                [one] => vec![session.depth(one, &opts).map_err(to_py_err)?],
                many => session.depth_batch(many, &opts).map_err(to_py_err)?,
            };
            Ok(out)
        })?;
        results
            .into_iter()
            .map(|r| {
                let (w, h) = (r.width, r.height);
                Ok((
                    array(py, r.depth, &[h, w])?,
                    r.uncertainty.map(|u| array(py, u, &[h, w])).transpose()?,
                    r.latent.map(|l| latent_array(py, l)).transpose()?,
                ))
            })
            .collect()
    }

    /// Optical flow of each frame pair: a list of (flow H x W x 2, latent or None).
    #[pyo3(signature = (frames1, frames2, num_inference_steps, ensemble_size, seed, batch_size,
                        match_input_resolution, latents, output_latent, progress))]
    #[allow(clippy::too_many_arguments)]
    fn flow(
        &self,
        py: Python<'_>,
        frames1: Vec<Bound<'_, PyAny>>,
        frames2: Vec<Bound<'_, PyAny>>,
        num_inference_steps: usize,
        ensemble_size: usize,
        seed: u64,
        batch_size: Option<usize>,
        match_input_resolution: bool,
        latents: Option<PyReadonlyArrayDyn<'_, f32>>,
        output_latent: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Vec<(Array, Option<Array>)>> {
        let firsts = owned_images(&frames1, "frame1")?;
        let seconds = owned_images(&frames2, "frame2")?;
        check_pairs(&firsts, &seconds, "frame1", "frame2")?;
        let common = Common {
            steps: num_inference_steps,
            ensemble: ensemble_size,
            seed,
            batch_size,
            match_input_resolution,
            latents: latents.map(|a| to_latent(&a)),
            output_latent,
        };
        let results = self.run(py, progress, move |session, progress| {
            let opts: FlowOptions = common.into_options(progress);
            let pairs = pair_views(&firsts, &seconds)?;
            let out = match pairs.as_slice() {
                [(a, b)] => vec![session.flow(a, b, &opts).map_err(to_py_err)?],
                many => session.flow_batch(many, &opts).map_err(to_py_err)?,
            };
            Ok(out)
        })?;
        results
            .into_iter()
            .map(|r| {
                let (w, h) = (r.width, r.height);
                Ok((array(py, r.flow, &[h, w, 2])?, r.latent.map(|l| latent_array(py, l)).transpose()?))
            })
            .collect()
    }

    /// Amodal completion of each (image, visible-object mask): a list of (RGB H x W x 3,
    /// mask H x W bool, latent or None).
    #[pyo3(signature = (images, masks, num_inference_steps, ensemble_size, seed, batch_size,
                        match_input_resolution, latents, output_latent, progress))]
    #[allow(clippy::too_many_arguments)]
    fn amodal(
        &self,
        py: Python<'_>,
        images: Vec<Bound<'_, PyAny>>,
        masks: Vec<Bound<'_, PyAny>>,
        num_inference_steps: usize,
        ensemble_size: usize,
        seed: u64,
        batch_size: Option<usize>,
        match_input_resolution: bool,
        latents: Option<PyReadonlyArrayDyn<'_, f32>>,
        output_latent: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Vec<(Array, Array, Option<Array>)>> {
        let images = owned_images(&images, "image")?;
        let masks = owned_images(&masks, "mask")?;
        check_pairs(&images, &masks, "image", "mask")?;
        let common = Common {
            steps: num_inference_steps,
            ensemble: ensemble_size,
            seed,
            batch_size,
            match_input_resolution,
            latents: latents.map(|a| to_latent(&a)),
            output_latent,
        };
        let results = self.run(py, progress, move |session, progress| {
            let opts: AmodalOptions = common.into_options(progress);
            let pairs = pair_views(&images, &masks)?;
            let out = match pairs.as_slice() {
                [(a, b)] => vec![session.amodal(a, b, &opts).map_err(to_py_err)?],
                many => session.amodal_batch(many, &opts).map_err(to_py_err)?,
            };
            Ok(out)
        })?;
        results
            .into_iter()
            .map(|r| {
                let (w, h) = (r.width, r.height);
                let mask: Vec<bool> = r.mask.iter().map(|&m| m != 0).collect();
                Ok((
                    array(py, r.rgb, &[h, w, 3])?,
                    array(py, mask, &[h, w])?,
                    r.latent.map(|l| latent_array(py, l)).transpose()?,
                ))
            })
            .collect()
    }
}

impl PySession {
    fn lock(&self) -> std::sync::MutexGuard<'_, Session> {
        // A panic inside the engine poisons the mutex; the session itself is still whole.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on the session with the GIL released, on a helper thread, while this (the
    /// caller's) thread waits and checks for signals every `SIGNAL_POLL`: the engine runs its
    /// steps on its own worker threads, where Python never delivers signals, so Ctrl-C can only
    /// be seen from here. A signal's exception (KeyboardInterrupt) cancels the run at its next
    /// step and is what this returns; so is an exception from the user's progress function.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        user_progress: Option<Py<PyAny>>,
        f: impl FnOnce(&mut Session, Option<ProgressFn>) -> PyResult<T> + Send,
    ) -> PyResult<T> {
        if IN_PROGRESS_CALLBACK.with(Cell::get) {
            // The running call holds its session until the callback returns: waiting for it
            // here would never end.
            return Err(PyRuntimeError::new_err("percept: a session cannot be called from inside a progress function"));
        }
        let raised: Arc<Mutex<Option<PyErr>>> = Arc::new(Mutex::new(None));
        let progress = progress_fn(user_progress, raised.clone());
        let (joined, interrupt) = py.detach(|| {
            std::thread::scope(|scope| {
                let (done_tx, done_rx) = mpsc::channel::<()>();
                let worker = scope.spawn(move || {
                    let result = f(&mut self.lock(), progress);
                    let _ = done_tx.send(());
                    result
                });
                let mut interrupt: Option<PyErr> = None;
                while let Err(RecvTimeoutError::Timeout) = done_rx.recv_timeout(SIGNAL_POLL) {
                    if interrupt.is_none() {
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            interrupt = Some(e);
                            self.cancel.cancel();
                        }
                    }
                }
                (worker.join(), interrupt)
            })
        });
        let result = match joined {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if let Some(e) = interrupt {
            // The run may have finished before it saw the cancel: do not let the flag stop the
            // next call.
            self.cancel.reset();
            return Err(e);
        }
        if let Some(e) = raised.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        result
    }
}

thread_local! {
    /// Set while this thread runs a user's progress function.
    static IN_PROGRESS_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// How often a waiting call looks for Ctrl-C (the run stops at its next denoising step).
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// The engine's per-step callback when the user gave a progress function: that function, called
/// with the GIL; an exception from it is kept in `raised` and stops the run (the engine then
/// returns Error::Cancelled). Only an explicit False also stops it; None (no return value) goes
/// on.
fn progress_fn(user: Option<Py<PyAny>>, raised: Arc<Mutex<Option<PyErr>>>) -> Option<ProgressFn> {
    let cb = user?;
    Some(Arc::new(move |p: Progress| {
        Python::attach(|py| {
            IN_PROGRESS_CALLBACK.with(|c| c.set(true));
            let outcome = cb.call1(py, (p.step, p.steps)).map(|r| {
                let r = r.bind(py);
                !r.is_instance_of::<PyBool>() || r.is_truthy().unwrap_or(true)
            });
            IN_PROGRESS_CALLBACK.with(|c| c.set(false));
            match outcome {
                Ok(go_on) => go_on,
                Err(e) => {
                    *raised.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    false
                }
            }
        })
    }))
}

fn owned_images(objs: &[Bound<'_, PyAny>], name: &str) -> PyResult<Vec<OwnedImage>> {
    if objs.is_empty() {
        return Err(PyValueError::new_err(format!("{name}: an empty batch")));
    }
    objs.iter()
        .enumerate()
        .map(|(i, o)| OwnedImage::from_py(o, &if objs.len() == 1 { name.to_string() } else { format!("{name}[{i}]") }))
        .collect()
}

/// Paired inputs must come in equal numbers and sizes.
fn check_pairs(a: &[OwnedImage], b: &[OwnedImage], name_a: &str, name_b: &str) -> PyResult<()> {
    if a.len() != b.len() {
        return Err(PyValueError::new_err(format!(
            "{} {name_a} but {} {name_b}: they are paired one to one",
            a.len(),
            b.len()
        )));
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if (x.width(), x.height()) != (y.width(), y.height()) {
            return Err(PyValueError::new_err(format!(
                "pair {i}: {name_a} is {}x{} (W x H) but {name_b} is {}x{}; they must have the same size",
                x.width(),
                x.height(),
                y.width(),
                y.height()
            )));
        }
    }
    Ok(())
}

fn pair_views<'a>(
    a: &'a [OwnedImage],
    b: &'a [OwnedImage],
) -> PyResult<Vec<(percept::ImageView<'a>, percept::ImageView<'a>)>> {
    a.iter().zip(b).map(|(x, y)| Ok((x.view()?, y.view()?))).collect()
}

fn to_latent(a: &PyReadonlyArrayDyn<'_, f32>) -> Latent {
    Latent { shape: a.shape().to_vec(), data: a.as_array().iter().copied().collect() }
}

/// A numpy array that owns `data` (no copy), in the given shape.
fn array<T: Element>(py: Python<'_>, data: Vec<T>, shape: &[usize]) -> PyResult<Array> {
    Ok(PyArray1::from_vec(py, data).reshape(shape.to_vec())?.into_any().unbind())
}

fn latent_array(py: Python<'_>, l: Latent) -> PyResult<Array> {
    array(py, l.data, &l.shape)
}
