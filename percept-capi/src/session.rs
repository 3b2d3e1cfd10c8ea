//! Session handles: a model on a device with its scratch memory, used by one thread at a time,
//! cancellable from any thread.

use std::ffi::{c_char, CString};
use std::sync::{Mutex, TryLockError};

use percept::{CancelToken, Device, Precision, Session, SessionOptions};

use crate::model::percept_model;
use crate::params::{clear_out, handle, read_params, Params};
use crate::status::{guard, guard_value, percept_status, CResult, Failure};

/// `percept_session_params.device`: the GPU when one is usable, else the CPU.
pub const PERCEPT_DEVICE_AUTO: i32 = 0;
/// `percept_session_params.device`: the CPU backend (plain Rust, multithreaded).
pub const PERCEPT_DEVICE_CPU: i32 = 1;
/// `percept_session_params.device`: the CUDA GPU `cuda_ordinal`.
pub const PERCEPT_DEVICE_CUDA: i32 = 2;
/// `percept_session_params.device`: the CUDA kernels run on the CPU by percept's emulator
/// (slow; for checking).
pub const PERCEPT_DEVICE_CUDA_EMU: i32 = 3;

/// `percept_session_params.precision`: the device's default (f32 on the CPU and emulator, bf16
/// weights with f32 accumulation on a GPU).
pub const PERCEPT_PRECISION_DEFAULT: i32 = 0;
/// `percept_session_params.precision`: f32 weights and activations.
pub const PERCEPT_PRECISION_F32: i32 = 1;
/// `percept_session_params.precision`: bf16 weights, f32 accumulation.
pub const PERCEPT_PRECISION_BF16: i32 = 2;

/// Where and how a session runs. Get one from `percept_session_default_params()`, then change
/// fields.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct percept_session_params {
    /// `sizeof(percept_session_params)`, set by `percept_session_default_params()`.
    pub struct_size: usize,
    /// One of `PERCEPT_DEVICE_*`; default `PERCEPT_DEVICE_AUTO`.
    pub device: i32,
    /// The GPU's index with `PERCEPT_DEVICE_CUDA`; default 0.
    pub cuda_ordinal: i32,
    /// Worker threads with `PERCEPT_DEVICE_CPU`; 0 (the default): one per core.
    pub cpu_threads: i32,
    /// One of `PERCEPT_PRECISION_*`; default `PERCEPT_PRECISION_DEFAULT`.
    pub precision: i32,
}

unsafe impl Params for percept_session_params {
    const NAME: &'static str = "percept_session_params";
    fn defaults() -> Self {
        percept_session_params {
            struct_size: std::mem::size_of::<Self>(),
            device: PERCEPT_DEVICE_AUTO,
            cuda_ordinal: 0,
            cpu_threads: 0,
            precision: PERCEPT_PRECISION_DEFAULT,
        }
    }
}

/// The default session params.
#[no_mangle]
pub extern "C" fn percept_session_default_params() -> percept_session_params {
    percept_session_params::defaults()
}

impl percept_session_params {
    fn options(&self) -> CResult<SessionOptions> {
        let non_negative = |v: i32, what: &str| {
            usize::try_from(v).map_err(|_| Failure::invalid(format!("params->{what} is {v}; it must be >= 0")))
        };
        let device = match self.device {
            PERCEPT_DEVICE_AUTO => Device::Auto,
            PERCEPT_DEVICE_CPU => {
                let threads = non_negative(self.cpu_threads, "cpu_threads")?;
                Device::Cpu { threads: (threads > 0).then_some(threads) }
            }
            PERCEPT_DEVICE_CUDA => Device::Cuda { ordinal: non_negative(self.cuda_ordinal, "cuda_ordinal")? },
            PERCEPT_DEVICE_CUDA_EMU => Device::CudaEmu,
            other => {
                return Err(Failure::invalid(format!(
                    "params->device is {other}; expected one of PERCEPT_DEVICE_AUTO (0), _CPU (1), _CUDA (2), _CUDA_EMU (3)"
                )))
            }
        };
        let precision = match self.precision {
            PERCEPT_PRECISION_DEFAULT => None,
            PERCEPT_PRECISION_F32 => Some(Precision::F32),
            PERCEPT_PRECISION_BF16 => Some(Precision::Bf16),
            other => {
                return Err(Failure::invalid(format!(
                    "params->precision is {other}; expected one of PERCEPT_PRECISION_DEFAULT (0), _F32 (1), _BF16 (2)"
                )))
            }
        };
        let mut options = SessionOptions::default();
        options.device = device;
        options.precision = precision;
        Ok(options)
    }
}

/// A model on a device with its working memory. One thread at a time may call functions on a
/// session (a second concurrent call fails with `PERCEPT_ERR_INVALID_ARGUMENT`), except
/// `percept_session_cancel()`, which any thread may call at any time.
pub struct percept_session {
    session: Mutex<Session>,
    /// Shares its flag with the session's; kept outside the lock so that cancelling never waits.
    cancel: CancelToken,
    device_name: CString,
    pub(crate) resolution: usize,
}

impl percept_session {
    /// Run `f` on the session: refused if another call holds it.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Session) -> CResult<T>) -> CResult<T> {
        match self.session.try_lock() {
            Ok(mut session) => f(&mut session),
            Err(TryLockError::WouldBlock) => Err(Failure::invalid(
                "session is busy with a call on another thread (a session runs one call at a time; \
                 use one session per thread)",
            )),
            Err(TryLockError::Poisoned(_)) => Err(Failure {
                status: crate::status::percept_status::PERCEPT_ERR_INTERNAL,
                message: "session is unusable after an internal error in an earlier call; free it".into(),
            }),
        }
    }
}

/// Create a session: `model` on the device `params` names (NULL: defaults). On success `*out`
/// is a new session to free with `percept_session_free()`; on failure it is NULL. Fails with
/// `PERCEPT_ERR_NO_DEVICE` when a GPU is asked for and none is usable.
///
/// # Safety
/// `model` is a live model; `params` is NULL or initialised by
/// `percept_session_default_params()`; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn percept_session_new(
    model: *const percept_model,
    params: *const percept_session_params,
    out: *mut *mut percept_session,
) -> percept_status {
    guard(|| {
        clear_out(out, "out")?;
        let model = handle(model, "model")?;
        let options = read_params(params)?.options()?;
        let session = Session::with_options(&model.model, options)?;
        let device_name = CString::new(session.device_name().replace('\0', " "))
            .map_err(|_| Failure::invalid("device name holds a NUL"))?;
        let handle = percept_session {
            cancel: session.cancel_token(),
            resolution: model.model.resolution(),
            session: Mutex::new(session),
            device_name,
        };
        *out = Box::into_raw(Box::new(handle));
        Ok(())
    })
}

/// Free a session. NULL is a no-op.
///
/// # Safety
/// `session` is NULL or a live session on which no call (`percept_session_cancel()` included)
/// runs or will run.
#[no_mangle]
pub unsafe extern "C" fn percept_session_free(session: *mut percept_session) {
    guard_value((), || {
        if !session.is_null() {
            drop(Box::from_raw(session));
        }
    })
}

/// What the session runs on, e.g. "cpu (2 threads, AMX GEMM)"; owned by the session, valid
/// until `percept_session_free()`. NULL if `session` is NULL.
///
/// # Safety
/// `session` is NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn percept_session_device_name(session: *const percept_session) -> *const c_char {
    guard_value(std::ptr::null(), || session.as_ref().map_or(std::ptr::null(), |s| s.device_name.as_ptr()))
}

/// Ask the call running on `session` (on another thread) to stop: it returns
/// `PERCEPT_ERR_CANCELLED` at its next denoising-step boundary, and the session stays usable
/// (the request is cleared when that call returns). A cancel made while no call runs stops
/// the next call before its first step. The one function that may be called while another
/// thread uses the session.
///
/// # Safety
/// `session` is NULL or a live session (not being freed).
#[no_mangle]
pub unsafe extern "C" fn percept_session_cancel(session: *const percept_session) -> percept_status {
    guard(|| {
        handle(session, "session")?.cancel.cancel();
        Ok(())
    })
}

/// Run `steps` denoising steps on a batch of `batch` inputs once, so that the first real call
/// does not pay for kernel compiles and memory pools. Optional.
///
/// # Safety
/// `session` is a live session used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn percept_session_warmup(
    session: *mut percept_session,
    batch: u32,
    steps: u32,
) -> percept_status {
    guard(|| {
        let session = handle(session, "session")?;
        if batch == 0 || steps == 0 {
            return Err(Failure::invalid(format!("batch ({batch}) and steps ({steps}) must be at least 1")));
        }
        session.with(|s| Ok(s.warmup(batch as usize, steps as usize)?))
    })
}
