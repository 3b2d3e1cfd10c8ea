//! Model handles: loaded once, shared by any number of sessions on any threads.

use std::ffi::{c_char, c_void, CString};

use percept::Model;

use crate::params::{clear_out, handle, path_arg, read_params, Params};
use crate::status::{guard, guard_value, percept_status, CResult, Failure};

/// A loaded model (weights and config). Thread-safe: any number of threads may create
/// sessions from one model at the same time. Sessions keep what they need of it alive, so the
/// model may be freed before them.
pub struct percept_model {
    pub(crate) model: Model,
    description: CString,
}

/// How to load a model. Get one from `percept_model_default_params()`, then change fields.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct percept_model_params {
    /// `sizeof(percept_model_params)`, set by `percept_model_default_params()`.
    pub struct_size: usize,
    /// A diffusers Stable-Diffusion-2 folder to take the VAE from, for checkpoints that do not
    /// carry one (the authors' `.pt`); NULL (the default): the VAE comes from the model file.
    pub sd2_dir: *const c_char,
}

unsafe impl Params for percept_model_params {
    const NAME: &'static str = "percept_model_params";
    fn defaults() -> Self {
        percept_model_params { struct_size: std::mem::size_of::<Self>(), sd2_dir: std::ptr::null() }
    }
}

/// The default model params.
#[no_mangle]
pub extern "C" fn percept_model_default_params() -> percept_model_params {
    percept_model_params::defaults()
}

impl percept_model {
    fn boxed(model: Model) -> CResult<*mut percept_model> {
        let description = CString::new(model.description().replace('\0', " "))
            .map_err(|_| Failure::invalid("model description holds a NUL"))?;
        Ok(Box::into_raw(Box::new(percept_model { model, description })))
    }
}

/// Load a model from a `.safetensors` (percept's own, or converted) or the authors' `.pt`
/// checkpoint (with `config.json` beside it). `path` NULL loads the demo model,
/// `demo_model.safetensors`, found beside the executable (or in its `toy_data/`) or in the
/// `toy_data/` of the percept checkout the library was built from. `params` may be NULL
/// (defaults).
/// On success `*out` is a new model to free with `percept_model_free()`; on failure it is NULL.
///
/// # Safety
/// `path` and `params->sd2_dir` are NULL or NUL-terminated; `params` is NULL or initialised by
/// `percept_model_default_params()`; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn percept_model_load(
    path: *const c_char,
    params: *const percept_model_params,
    out: *mut *mut percept_model,
) -> percept_status {
    guard(|| {
        clear_out(out, "out")?;
        let params = read_params(params)?;
        let path = path_arg(path, "path")?;
        let sd2 = path_arg(params.sd2_dir, "params->sd2_dir")?;
        let model = match (path, sd2) {
            (None, None) => Model::demo()?,
            (None, Some(_)) => {
                return Err(Failure::invalid("params->sd2_dir is set but path is NULL (the demo model)"))
            }
            (Some(path), None) => Model::load(path)?,
            (Some(path), Some(sd2)) => Model::load_with_sd2(path, sd2)?,
        };
        *out = percept_model::boxed(model)?;
        Ok(())
    })
}

/// Load a model from a percept `.safetensors` file's bytes in memory (the bytes are copied;
/// the caller keeps ownership of `data`). On success `*out` is a new model to free with
/// `percept_model_free()`; on failure it is NULL.
///
/// # Safety
/// `data` points to `len` readable bytes; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn percept_model_load_from_memory(
    data: *const c_void,
    len: usize,
    out: *mut *mut percept_model,
) -> percept_status {
    guard(|| {
        clear_out(out, "out")?;
        if data.is_null() {
            return Err(Failure::invalid("data is NULL"));
        }
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len).to_vec();
        *out = percept_model::boxed(Model::from_bytes(bytes)?)?;
        Ok(())
    })
}

/// Free a model. NULL is a no-op. Sessions created from it stay usable.
///
/// # Safety
/// `model` is NULL or a model from `percept_model_load*()` not yet freed, used by no other
/// thread during this call.
#[no_mangle]
pub unsafe extern "C" fn percept_model_free(model: *mut percept_model) {
    guard_value((), || {
        if !model.is_null() {
            drop(Box::from_raw(model));
        }
    })
}

/// The model's input resolution in pixels (square; 128 for the demo model, 512 for the
/// published one): the size of outputs when `match_input_resolution` is false. 0 if `model`
/// is NULL.
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn percept_model_resolution(model: *const percept_model) -> usize {
    guard_value(0, || model.as_ref().map_or(0, |m| m.model.resolution()))
}

/// The model's parameter count (0 if `model` is NULL).
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn percept_model_parameter_count(model: *const percept_model) -> u64 {
    guard_value(0, || model.as_ref().map_or(0, |m| m.model.parameter_count() as u64))
}

/// A one-line description of the model (file, architecture), owned by the model: valid until
/// `percept_model_free()`. NULL if `model` is NULL.
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn percept_model_description(model: *const percept_model) -> *const c_char {
    guard_value(std::ptr::null(), || match handle(model, "model") {
        Ok(m) => m.description.as_ptr(),
        Err(_) => std::ptr::null(),
    })
}
