//! Golden fixtures (`NAME.json` + `NAME.io.safetensors`): the authors' outputs we must reproduce.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::weights::safetensors::SafetensorsFile;

pub struct Fixture {
    pub name: String,
    pub dir: PathBuf,
    pub json: serde_json::Value,
    pub io: SafetensorsFile,
}

impl Fixture {
    /// Load `DIR/NAME.json` and the io file it names (default `NAME.io.safetensors`).
    pub fn load(dir: &Path, name: &str) -> Result<Fixture> {
        let jpath = dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&jpath).map_err(|e| Error::io(&jpath, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Fixture(format!("{}: not valid JSON ({e})", jpath.display())))?;
        let io_name = json["files"]["io"].as_str().map(str::to_string).unwrap_or(format!("{name}.io.safetensors"));
        let io = SafetensorsFile::open(&dir.join(io_name))?;
        Ok(Fixture { name: name.to_string(), dir: dir.to_path_buf(), json, io })
    }

    pub fn kind(&self) -> &str {
        self.json["kind"].as_str().unwrap_or("")
    }

    pub fn config(&self) -> &serde_json::Value {
        &self.json["config"]
    }

    /// A stored tensor as f32 (integers converted).
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let raw = self.io.get(name).ok_or_else(|| {
            Error::Fixture(format!("{}: no tensor \"{name}\" in {}", self.name, self.io.path.display()))
        })?;
        Tensor::new(raw.shape.clone(), raw.to_f32_vec()?)
    }

    /// A stored integer tensor.
    pub fn ints(&self, name: &str) -> Result<Vec<i64>> {
        let raw = self.io.get(name).ok_or_else(|| {
            Error::Fixture(format!("{}: no tensor \"{name}\" in {}", self.name, self.io.path.display()))
        })?;
        raw.to_i64_vec()
    }

    /// The f32 tolerance of an output: `Some(tol)`, or `None` for `exact` / `informative`.
    pub fn tolerance(&self, output: &str, precision: &str) -> Tolerance {
        match &self.json["outputs"][output]["tolerance"] {
            serde_json::Value::String(s) if s == "exact" => Tolerance::Exact,
            serde_json::Value::String(_) => Tolerance::Informative,
            v => match v[precision].as_f64() {
                Some(t) => Tolerance::Rel(t),
                None => Tolerance::Informative,
            },
        }
    }

    /// Names of the outputs listed in the JSON, in JSON order.
    pub fn outputs(&self) -> Vec<String> {
        self.json["outputs"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tolerance {
    Rel(f64),
    Exact,
    Informative,
}
