//! A named set of tensors with the checks every model load needs.

use std::collections::{BTreeMap, HashMap};

use super::RawTensor;
use crate::error::{Error, Result};

#[derive(Clone, Default)]
pub struct Weights {
    /// Where the tensors came from (file name or `synthetic:...`), for messages.
    pub source: String,
    map: HashMap<String, RawTensor>,
    order: Vec<String>,
}

impl Weights {
    pub fn new(source: impl Into<String>, tensors: Vec<(String, RawTensor)>) -> Self {
        let mut w = Weights { source: source.into(), ..Default::default() };
        for (n, t) in tensors {
            w.insert(n, t);
        }
        w
    }
    pub fn insert(&mut self, name: String, t: RawTensor) {
        if self.map.insert(name.clone(), t).is_none() {
            self.order.push(name);
        }
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn names(&self) -> &[String] {
        &self.order
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &RawTensor)> {
        self.order.iter().map(move |n| (n, &self.map[n]))
    }
    pub fn get(&self, name: &str) -> Result<&RawTensor> {
        self.map.get(name).ok_or_else(|| Error::Weights(format!("{}: tensor \"{name}\" is missing", self.source)))
    }
    pub fn as_btree(&self) -> BTreeMap<String, &RawTensor> {
        self.map.iter().map(|(k, v)| (k.clone(), v)).collect()
    }
    /// Split off the tensors whose names start with `prefix` (prefix removed).
    pub fn take_prefix(&mut self, prefix: &str) -> Weights {
        let names: Vec<String> = self.order.iter().filter(|n| n.starts_with(prefix)).cloned().collect();
        let mut out = Weights { source: self.source.clone(), ..Default::default() };
        for n in names {
            let t = self.map.remove(&n).unwrap();
            out.insert(n[prefix.len()..].to_string(), t);
        }
        self.order.retain(|n| self.map.contains_key(n));
        out
    }
    /// Check names and shapes against what a model expects; one error lists every problem.
    pub fn validate(&self, what: &str, expected: &[(String, Vec<usize>)]) -> Result<()> {
        let mut problems = Vec::new();
        let mut known = std::collections::HashSet::new();
        for (name, shape) in expected {
            known.insert(name.as_str());
            match self.map.get(name) {
                None => problems.push(format!("missing tensor \"{name}\" {shape:?}")),
                Some(t) if &t.shape != shape => {
                    problems.push(format!("tensor \"{name}\" has shape {:?}, expected {shape:?}", t.shape))
                }
                Some(_) => {}
            }
        }
        for name in &self.order {
            if !known.contains(name.as_str()) {
                problems.push(format!("unexpected tensor \"{name}\" {:?}", self.map[name].shape));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let shown = problems.len().min(40);
        let more =
            if problems.len() > shown { format!("\n  ... and {} more", problems.len() - shown) } else { String::new() };
        Err(Error::Weights(format!(
            "{}: {} does not match its config ({} problems):\n  {}{more}",
            self.source,
            what,
            problems.len(),
            problems[..shown].join("\n  ")
        )))
    }
}
