//! Finding and opening a model: a file or `synthetic:generalist`, an SD-2 folder, or the
//! embedded demo model (CONVENTIONS.md "Models"). No environment reads here: the CLI maps
//! `PERCEPT_MODEL`/`PERCEPT_SD2` to arguments (`cli::model_spec`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::config::{DitConfig, ModelConfig, VaeConfig};
use super::safetensors::SafetensorsFile;
use super::{synthetic, Weights};
use crate::error::{Error, Result};

/// Name of the synthetic published-shape model.
pub const SYNTHETIC_GENERALIST: &str = "synthetic:generalist";
/// File name of the embedded demo model inside `toy_data/`.
pub const DEMO_MODEL_FILE: &str = "demo_model.safetensors";

/// A model's weights and configs, not yet on any backend.
pub struct ModelSource {
    pub config: ModelConfig,
    pub dit: Weights,
    pub vae: Weights,
    /// diffusers scheduler config (JSON), if the model or `--sd2` gave one.
    pub scheduler: Option<Value>,
    /// Where it came from, for messages.
    pub description: String,
}

/// Where the embedded demo model is looked for: beside the executable, then the crate's own
/// `toy_data/` (fixed at build time).
pub fn demo_model_candidates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            v.push(dir.join(DEMO_MODEL_FILE));
            v.push(dir.join("toy_data").join(DEMO_MODEL_FILE));
        }
    }
    v.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("toy_data").join(DEMO_MODEL_FILE));
    v
}

/// Open `model` (a file or `synthetic:generalist`; `None`: the embedded demo model) with an
/// optional SD-2 folder. Reads no environment variables: the CLI maps `PERCEPT_MODEL` and
/// `PERCEPT_SD2` to these arguments.
pub fn resolve(model: Option<&str>, sd2: Option<&Path>) -> Result<ModelSource> {
    let spec = match model {
        Some(s) => s.to_string(),
        None => demo_model_path()?.display().to_string(),
    };
    open(&spec, sd2)
}

/// The embedded demo model's file (see `demo_model_candidates`).
pub fn demo_model_path() -> Result<PathBuf> {
    demo_model_candidates().into_iter().find(|p| p.exists()).ok_or_else(|| {
        Error::Weights(format!(
            "no model given and the embedded demo model was not found (looked at {}); pass a model file",
            demo_model_candidates().iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Open a model spec (a file or `synthetic:generalist`), with an optional SD-2 folder.
pub fn open(spec: &str, sd2: Option<&Path>) -> Result<ModelSource> {
    let src = if spec == SYNTHETIC_GENERALIST {
        synthetic_generalist()?
    } else if let Some(rest) = spec.strip_prefix("synthetic:") {
        return Err(Error::Weights(format!(
            "unknown synthetic model \"{rest}\"; the one built in is {SYNTHETIC_GENERALIST}"
        )));
    } else {
        open_file(Path::new(spec))?
    };
    complete(src, sd2)
}

/// Take the VAE and scheduler from an SD-2 folder when one is given, then check that the model
/// has a VAE.
pub fn complete(mut src: ModelSource, sd2: Option<&Path>) -> Result<ModelSource> {
    if let Some(dir) = sd2 {
        let (vae_cfg, vae, sched) = open_sd2(dir)?;
        src.config.vae = Some(vae_cfg);
        src.vae = vae;
        if sched.is_some() {
            src.scheduler = sched;
        }
        src.description.push_str(&format!(" + VAE/scheduler from {}", dir.display()));
    }
    if src.vae.is_empty() || src.config.vae.is_none() {
        return Err(Error::Weights(format!(
            "{}: the model file holds no VAE; pass --sd2 DIR (a Stable-Diffusion-2 folder with vae/) or set PERCEPT_SD2",
            src.description
        )));
    }
    Ok(src)
}

/// A percept `.safetensors` model held in memory (`name` is used in messages). Its config
/// comes from the `percept.config` metadata, else from the DiT's tensor shapes.
pub fn open_bytes(name: &str, bytes: &[u8]) -> Result<ModelSource> {
    let st = SafetensorsFile::from_bytes(name, bytes)?;
    let meta = st.metadata.get("percept.config").cloned();
    let mut dit = Weights::new(name, st.tensors);
    let vae = dit.take_prefix("vae.");
    let config = file_config(Path::new(name), meta.as_deref(), &dit, !vae.is_empty(), false)?;
    complete(ModelSource { scheduler: config.scheduler.clone(), config, dit, vae, description: name.to_string() }, None)
}

/// The SD-2 VAE's shape with synthetic weights.
pub fn synthetic_sd2_vae() -> Result<(VaeConfig, Weights)> {
    let vae_table: Value = serde_json::from_str(synthetic::SD2_VAE_TABLE).expect("embedded table is JSON");
    let vae = Weights::new(SYNTHETIC_GENERALIST, synthetic::build_from_table(&vae_table)?);
    Ok((VaeConfig::from_json(&vae_table["config"])?, vae))
}

/// The published DiT's shape with synthetic weights (2.76 billion values, 11 GB).
pub fn synthetic_generalist_dit() -> Result<(DitConfig, Weights)> {
    let dit_table: Value = serde_json::from_str(synthetic::GENERALIST_DIT_TABLE).expect("embedded table is JSON");
    let dit = Weights::new(SYNTHETIC_GENERALIST, synthetic::build_from_table(&dit_table)?);
    Ok((DitConfig::from_json(&dit_table["config"])?, dit))
}

/// The published model's shape (DiT and SD-2 VAE) with synthetic weights.
pub fn synthetic_generalist() -> Result<ModelSource> {
    let (dit_cfg, dit) = synthetic_generalist_dit()?;
    let (vae_cfg, vae) = synthetic_sd2_vae()?;
    Ok(ModelSource {
        config: ModelConfig { dit: dit_cfg, vae: Some(vae_cfg), scheduler: None, resolution: 512, flow_scale: 75.0 },
        dit,
        vae,
        scheduler: None,
        description: SYNTHETIC_GENERALIST.into(),
    })
}

/// The config of a weights file: its `percept.config` metadata, else a `config.json` beside it,
/// else inferred from the DiT's tensor shapes.
fn file_config(
    path: &Path,
    metadata: Option<&str>,
    dit: &Weights,
    has_vae: bool,
    look_beside: bool,
) -> Result<ModelConfig> {
    if let Some(m) = metadata {
        let v: Value = serde_json::from_str(m)
            .map_err(|e| Error::Config(format!("{}: metadata percept.config is not JSON ({e})", path.display())))?;
        return ModelConfig::from_json(&v);
    }
    let beside = path.with_file_name("config.json");
    if look_beside && beside.exists() {
        let text = std::fs::read_to_string(&beside).map_err(|e| Error::io(&beside, e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: not valid JSON ({e})", beside.display())))?;
        if v.get("dit").is_some() {
            return ModelConfig::from_json(&v);
        }
    }
    let dit_cfg = DitConfig::infer(&dit.as_btree())?;
    let vae = if has_vae { Some(VaeConfig::sd2()) } else { None };
    let down = 8;
    Ok(ModelConfig { resolution: dit_cfg.input_size * down, dit: dit_cfg, vae, scheduler: None, flow_scale: 75.0 })
}

/// Open a `.safetensors` or PyTorch `.pt` model file.
pub fn open_file(path: &Path) -> Result<ModelSource> {
    if !path.exists() {
        // An I/O error (ErrorKind::Io, the C ABI's PERCEPT_ERR_IO): nothing was read to judge.
        let err = std::io::Error::new(std::io::ErrorKind::NotFound, "no such model file");
        return Err(Error::Io { path: path.to_path_buf(), err });
    }
    let (tensors, metadata) = load_tensors(path)?;
    let mut dit = Weights::new(path.display().to_string(), tensors);
    let vae = dit.take_prefix("vae.");
    let config = file_config(path, metadata.as_deref(), &dit, !vae.is_empty(), true)?;
    Ok(ModelSource { scheduler: config.scheduler.clone(), config, dit, vae, description: path.display().to_string() })
}

/// Tensors and `percept.config` metadata of a weights file, by content (safetensors or a
/// PyTorch zip checkpoint).
pub fn load_tensors(path: &Path) -> Result<(Vec<(String, super::RawTensor)>, Option<String>)> {
    let mut head = [0u8; 4];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let _ = f.read(&mut head).map_err(|e| Error::io(path, e))?;
    }
    let is_safetensors = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if !is_safetensors
        && (&head == b"PK\x03\x04" || path.extension().is_some_and(|e| e == "pt" || e == "pth" || e == "ckpt"))
    {
        let ck = super::pt::read_pt(path)?;
        return Ok((ck.tensors, None));
    }
    let st = SafetensorsFile::open(path)?;
    let meta = st.metadata.get("percept.config").cloned();
    Ok((st.tensors, meta))
}

/// A diffusers Stable-Diffusion-2 folder: `vae/config.json`, `vae/diffusion_pytorch_model.safetensors`
/// and optionally `scheduler/scheduler_config.json`.
pub fn open_sd2(dir: &Path) -> Result<(VaeConfig, Weights, Option<Value>)> {
    let vae_dir = dir.join("vae");
    let cfg_path = vae_dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| {
        Error::Weights(format!(
            "{}: cannot read the VAE config ({e}); --sd2 expects a diffusers folder with vae/",
            cfg_path.display()
        ))
    })?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("{}: not valid JSON ({e})", cfg_path.display())))?;
    let vae_cfg = VaeConfig::from_json(&v)?;
    let candidates = ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"];
    let wpath = candidates.iter().map(|c| vae_dir.join(c)).find(|p| p.exists()).ok_or_else(|| {
        Error::Weights(format!("{}: no diffusion_pytorch_model.safetensors in the VAE folder", vae_dir.display()))
    })?;
    let st = SafetensorsFile::open(&wpath)?;
    let weights = Weights::new(wpath.display().to_string(), st.tensors);
    let sched_path = dir.join("scheduler").join("scheduler_config.json");
    let sched = if sched_path.exists() {
        let text = std::fs::read_to_string(&sched_path).map_err(|e| Error::io(&sched_path, e))?;
        Some(
            serde_json::from_str(&text)
                .map_err(|e| Error::Config(format!("{}: not valid JSON ({e})", sched_path.display())))?,
        )
    } else {
        None
    };
    Ok((vae_cfg, weights, sched))
}
