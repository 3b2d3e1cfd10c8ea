//! `percept inspect` and `percept convert`: look into checkpoints, and turn the authors' `.pt`
//! into a self-describing safetensors file that later loads zero-copy.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::tensor::DType;
use crate::weights::config::{DitConfig, ModelConfig};
use crate::weights::model_file::load_tensors;
use crate::weights::{safetensors, Bytes, RawTensor, Weights};

/// The model config a set of tensors describes: the file's own, else inferred.
fn infer_config(path: &Path, meta: Option<&str>, weights: &Weights) -> Result<ModelConfig> {
    if let Some(m) = meta {
        return Ok(ModelConfig::from_json(&serde_json::from_str(m)?)?);
    }
    let mut dit = weights.clone();
    let vae = dit.take_prefix("vae.");
    let cfg =
        DitConfig::infer(&dit.as_btree()).with_context(|| format!("{}: cannot infer a DiT config", path.display()))?;
    Ok(ModelConfig {
        resolution: cfg.input_size * 8,
        vae: if vae.is_empty() { None } else { Some(crate::weights::config::VaeConfig::sd2()) },
        dit: cfg,
        scheduler: None,
        flow_scale: 75.0,
    })
}

pub fn inspect(path: &Path) -> Result<bool> {
    let (tensors, meta) = load_tensors(path)?;
    let mut params = 0usize;
    let mut by_dtype: BTreeMap<String, usize> = BTreeMap::new();
    println!("{:<60} {:<5} shape", "tensor", "dtype");
    for (name, t) in &tensors {
        println!("{:<60} {:<5} {:?}", name, t.dtype.name(), t.shape);
        params += t.numel();
        *by_dtype.entry(t.dtype.name().into()).or_default() += t.numel();
    }
    println!("{} tensors, {} parameters ({:.3} B)", tensors.len(), params, params as f64 / 1e9);
    for (d, n) in by_dtype {
        println!("  {d}: {n}");
    }
    let weights = Weights::new(path.display().to_string(), tensors);
    match infer_config(path, meta.as_deref(), &weights) {
        Ok(cfg) => {
            let src = if meta.is_some() { "from the file's percept.config" } else { "inferred from tensor shapes" };
            println!("config ({src}):\n{}", serde_json::to_string_pretty(&cfg.to_json())?);
        }
        Err(e) => println!("config: not a DiT-MoE checkpoint ({e:#})"),
    }
    Ok(true)
}

fn convert_tensor(t: &RawTensor, to: Option<DType>) -> Result<RawTensor> {
    let Some(to) = to else { return Ok(t.clone()) };
    if t.dtype == to || !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
        return Ok(t.clone());
    }
    let vals = t.to_f32_vec()?;
    let bytes: Vec<u8> = match to {
        DType::F32 => bytemuck::cast_slice(&vals).to_vec(),
        DType::BF16 => vals.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
        _ => bail!("unsupported target dtype {to}"),
    };
    Ok(RawTensor { dtype: to, shape: t.shape.clone(), bytes: Bytes::Owned(Arc::new(bytes)) })
}

pub fn convert(input: &Path, output: &Path, dtype: Option<&str>) -> Result<bool> {
    let to = match dtype {
        None => None,
        Some("f32") => Some(DType::F32),
        Some("bf16") => Some(DType::BF16),
        Some(other) => bail!("--dtype {other}: expected bf16 or f32"),
    };
    if output.extension().is_none_or(|e| e != "safetensors") {
        bail!("{}: the output must be a .safetensors file", output.display());
    }
    let (tensors, meta) = load_tensors(input)?;
    let weights = Weights::new(input.display().to_string(), tensors);
    let cfg = infer_config(input, meta.as_deref(), &weights)?;
    // Check the inferred config against the tensors now, not at first use.
    let mut dit = weights.clone();
    let _vae = dit.take_prefix("vae.");
    dit.validate("DiT", &cfg.dit.expected_tensors())?;
    let converted: Vec<(String, RawTensor)> =
        weights.iter().map(|(n, t)| Ok((n.clone(), convert_tensor(t, to)?))).collect::<Result<_>>()?;
    let cfg_json = serde_json::to_string(&cfg.to_json())?;
    let mut metadata = BTreeMap::new();
    metadata.insert("percept.config".to_string(), cfg_json.clone());
    metadata.insert("format".to_string(), "pt".to_string());
    safetensors::write(output, &converted, &metadata)?;
    println!("wrote {} ({} tensors)", output.display(), converted.len());
    let beside = output.with_file_name("config.json");
    let pretty = serde_json::to_string_pretty(&cfg.to_json())? + "\n";
    match std::fs::read_to_string(&beside) {
        Ok(existing) if existing.trim() != pretty.trim() => {
            println!(
                "left {} as it is: it holds another config (the new one is in the file's metadata)",
                beside.display()
            )
        }
        Ok(_) => {}
        Err(_) => {
            crate::io::atomic::write(&beside, pretty.as_bytes())?;
            println!("wrote {}", beside.display());
        }
    }
    Ok(true)
}
