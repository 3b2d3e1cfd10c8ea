//! Pulls named parameters out of a `Weights` set onto a backend, checking each shape, and
//! reports every missing, mis-shaped or unexpected tensor at once when the model is complete.

use std::collections::HashSet;
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tensor::DType;
use crate::weights::{Bytes, RawTensor, Weights};

pub struct Loader<'a, B: Backend> {
    backend: &'a B,
    weights: &'a Weights,
    what: &'a str,
    used: HashSet<String>,
    problems: Vec<String>,
}

impl<'a, B: Backend> Loader<'a, B> {
    pub fn new(backend: &'a B, weights: &'a Weights, what: &'a str) -> Self {
        Loader { backend, weights, what, used: HashSet::new(), problems: Vec::new() }
    }

    fn placeholder() -> RawTensor {
        RawTensor { dtype: DType::F32, shape: vec![0], bytes: Bytes::F32(Arc::new(Vec::new())) }
    }

    /// The stored tensor `name`, which must have `shape`.
    pub fn raw(&mut self, name: &str, shape: &[usize]) -> RawTensor {
        self.used.insert(name.to_string());
        match self.weights.get(name) {
            Ok(t) if t.shape == shape => t.clone(),
            Ok(t) => {
                self.problems.push(format!("tensor \"{name}\" has shape {:?}, expected {shape:?}", t.shape));
                Self::placeholder()
            }
            Err(_) => {
                self.problems.push(format!("missing tensor \"{name}\" {shape:?}"));
                Self::placeholder()
            }
        }
    }

    /// Parameter `name` of `shape`, on the backend.
    pub fn w(&mut self, name: &str, shape: &[usize]) -> Result<B::W> {
        let raw = self.raw(name, shape);
        self.backend.weight(name, &raw)
    }

    /// Several parameters concatenated along their first axis (e.g. q, k, v into one qkv).
    pub fn cat(&mut self, names: &[String], shape: &[usize]) -> Result<B::W> {
        let raws: Vec<RawTensor> = names.iter().map(|n| self.raw(n, shape)).collect();
        if self.problems.is_empty() {
            self.backend.weight_cat(&names.join("+"), &raws.iter().collect::<Vec<_>>())
        } else {
            self.backend.weight("placeholder", &Self::placeholder())
        }
    }

    /// `w`, kept in f32 at every precision (`Backend::weight_f32`).
    pub fn w_f32(&mut self, name: &str, shape: &[usize]) -> Result<B::W> {
        let raw = self.raw(name, shape);
        self.backend.weight_f32(name, &[&raw])
    }

    /// `cat`, kept in f32 at every precision.
    pub fn cat_f32(&mut self, names: &[String], shape: &[usize]) -> Result<B::W> {
        let raws: Vec<RawTensor> = names.iter().map(|n| self.raw(n, shape)).collect();
        if self.problems.is_empty() {
            self.backend.weight_f32(&names.join("+"), &raws.iter().collect::<Vec<_>>())
        } else {
            self.backend.weight_f32("placeholder", &[&Self::placeholder()])
        }
    }

    /// Finish: one error listing every problem, including tensors the model does not use.
    pub fn finish(mut self) -> Result<()> {
        for name in self.weights.names() {
            if !self.used.contains(name) {
                let shape = &self.weights.get(name)?.shape;
                self.problems.push(format!("unexpected tensor \"{name}\" {shape:?}"));
            }
        }
        if self.problems.is_empty() {
            return Ok(());
        }
        let n = self.problems.len();
        let shown = n.min(40);
        let more = if n > shown { format!("\n  ... and {} more", n - shown) } else { String::new() };
        Err(Error::Weights(format!(
            "{}: the {} does not match its config ({n} problem{}):\n  {}{more}",
            self.weights.source,
            self.what,
            if n == 1 { "" } else { "s" },
            self.problems[..shown].join("\n  ")
        )))
    }
}
