//! `percept._percept`: the compiled half of the Python package. A thin layer over the crate's
//! public API (`percept::Model`, `percept::Session`); argument checking with friendly messages,
//! PIL images, result classes and the exception family live in the Python half
//! (percept-py/python/percept/).
//!
//! Every call that computes releases the GIL and runs on a helper thread, while the calling
//! thread waits and checks for signals (so Ctrl-C stops the call at its next denoising step
//! with KeyboardInterrupt and leaves the session usable). The user's progress function is
//! called with the GIL after each step.

mod errors;
mod image;
mod session;

use std::path::PathBuf;

use percept::Model;
use pyo3::prelude::*;

use crate::errors::to_py_err;

/// The demo model shipped inside the extension, so `Model.load(None)` works from any wheel.
static DEMO_MODEL: &[u8] = include_bytes!("../../toy_data/demo_model.safetensors");

/// A loaded model: weights and configs, shared (cheaply) by every session made from it.
#[pyclass(frozen, module = "percept._percept", name = "Model")]
pub struct PyModel {
    pub(crate) inner: Model,
}

#[pymethods]
impl PyModel {
    /// A `.safetensors` or `.pt` file (with `config.json` beside it when the file does not
    /// carry its config), and optionally the Stable-Diffusion-2 folder for the VAE.
    #[staticmethod]
    #[pyo3(signature = (path, sd2=None))]
    fn load(py: Python<'_>, path: PathBuf, sd2: Option<PathBuf>) -> PyResult<Self> {
        let inner = py
            .detach(|| match &sd2 {
                Some(dir) => Model::load_with_sd2(&path, dir),
                None => Model::load(&path),
            })
            .map_err(to_py_err)?;
        Ok(PyModel { inner })
    }

    /// The demo model (128 px, 3 M parameters) embedded in this module.
    #[staticmethod]
    fn demo(py: Python<'_>) -> PyResult<Self> {
        let inner = py.detach(|| Model::from_bytes(DEMO_MODEL.to_vec())).map_err(to_py_err)?;
        Ok(PyModel { inner })
    }

    /// A percept `.safetensors` file's bytes.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: Vec<u8>) -> PyResult<Self> {
        let inner = py.detach(|| Model::from_bytes(data)).map_err(to_py_err)?;
        Ok(PyModel { inner })
    }

    /// The published model's shapes with synthetic weights (for timing and tests).
    #[staticmethod]
    fn synthetic_generalist(py: Python<'_>) -> PyResult<Self> {
        let inner = py.detach(Model::synthetic_generalist).map_err(to_py_err)?;
        Ok(PyModel { inner })
    }

    #[getter]
    fn resolution(&self) -> usize {
        self.inner.resolution()
    }
    #[getter]
    fn description(&self) -> String {
        self.inner.description().to_string()
    }
    #[getter]
    fn parameter_count(&self) -> usize {
        self.inner.parameter_count()
    }
}

#[pymodule]
fn _percept(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("Error", m.py().get_type::<errors::Error>())?;
    m.add_class::<PyModel>()?;
    m.add_class::<session::PySession>()?;
    Ok(())
}
