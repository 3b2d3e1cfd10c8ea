//! Run every fixture of a folder: the body of `percept verify`.

use std::path::Path;

use super::fixture::Fixture;
use super::Check;
use crate::backend::Backend;
use crate::error::{Error, Result};

/// What happened to one fixture.
pub enum Outcome {
    Checked(Vec<Check>),
    Skipped(String),
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct Options {
    pub precision: String,
    pub skip_slow: bool,
}

/// Fixture names in DIR (every `NAME.json` that has a `kind`), sorted.
pub fn list_fixtures(dir: &Path) -> Result<Vec<String>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut names = Vec::new();
    for entry in rd {
        let p = entry.map_err(|e| Error::io(dir, e))?.path();
        let Some(stem) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(&p) else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        if v.get("kind").and_then(|k| k.as_str()).is_some() {
            names.push(stem.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Verify one fixture on `backend`.
pub fn verify_one<B: Backend + Clone>(be: &B, dir: &Path, name: &str, opts: &Options) -> Outcome {
    let fx = match Fixture::load(dir, name) {
        Ok(f) => f,
        Err(e) => return Outcome::Failed(format!("{e}")),
    };
    if opts.skip_slow && fx.json["slow"].as_bool() == Some(true) {
        return Outcome::Skipped("slow (--skip-slow)".into());
    }
    let p = opts.precision.as_str();
    let result = match fx.kind() {
        "dit_forward" => super::models::verify_dit(be, &fx, p),
        "vae" => super::models::verify_vae(be, &fx, p),
        "pipeline" => super::pipeline::verify_pipeline(be, &fx, p),
        "ddim" => super::ddim::verify_ddim(&fx, p),
        "postprocess" => super::postprocess::verify_postprocess(&fx, p),
        other => return Outcome::Skipped(format!("unknown kind \"{other}\"")),
    };
    match result {
        Ok(checks) => Outcome::Checked(checks),
        Err(e) => Outcome::Failed(format!("{e}")),
    }
}
