//! Hypersim depth (the Marigold evaluation layout): scene folders `ai_*` holding
//! `rgb_<view>.png` (8-bit RGB) and `depth_plane_<view>.png` (16-bit millimetres). Depth is valid
//! strictly between 1e-5 m and 65 m (0 marks missing depth, 65535 mm saturation).

use std::path::{Path, PathBuf};

use super::{entries, file_name, file_stem};
use crate::error::{Error, Result};
use crate::io::image::{load_gray16, load_rgb, Image};

pub const MIN_DEPTH_M: f32 = 1e-5;
pub const MAX_DEPTH_M: f32 = 65.0;

#[derive(Clone, Debug, PartialEq)]
pub struct HypersimSample {
    /// The RGB path relative to the data folder, without `rgb_` and extension, `/` as `_`
    /// (`ai_015_004/rgb_cam_00_fr0002.png` -> `ai_015_004_cam_00_fr0002`).
    pub name: String,
    pub rgb: PathBuf,
    pub depth: PathBuf,
}

/// Ground-truth depth in metres, row-major, with its validity mask.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthGt {
    pub width: usize,
    pub height: usize,
    pub depth: Vec<f32>,
    pub valid: Vec<bool>,
}

fn is_scene(p: &Path) -> bool {
    p.is_dir() && file_name(p).starts_with("ai_")
}

fn has_scenes(dir: &Path) -> bool {
    entries(dir).map(|e| e.iter().any(|p| is_scene(p))).unwrap_or(false)
}

/// The folder the scene folders are in: `dir`, or `dir/val` when only that holds them (the
/// authors' `Hypersim_small/val/ai_*` layout).
pub fn scene_root(dir: &Path) -> PathBuf {
    let val = dir.join("val");
    if !has_scenes(dir) && has_scenes(&val) {
        val
    } else {
        dir.to_path_buf()
    }
}

fn sample_name(rel_rgb: &str) -> String {
    let no_ext = match rel_rgb.rsplit_once('.') {
        Some((s, ext)) if !ext.contains('/') => s,
        _ => rel_rgb,
    };
    let (dir, file) = no_ext.rsplit_once('/').unwrap_or(("", no_ext));
    let file = file.strip_prefix("rgb_").unwrap_or(file);
    if dir.is_empty() {
        file.to_string()
    } else {
        format!("{}_{file}", dir.replace('/', "_"))
    }
}

/// List samples: the pairs of `list` (lines `RGB DEPTH`, paths relative to the data folder), or
/// every `rgb_*.png` under the scene folders with its `depth_plane_*.png`. Returns the samples
/// whose files are both present and how many were skipped for absent files.
pub fn list(dir: &Path, list: Option<&Path>) -> Result<(Vec<HypersimSample>, usize)> {
    if !dir.is_dir() {
        return Err(Error::Input(format!("{}: Hypersim data folder not found", dir.display())));
    }
    let pairs = match list {
        Some(l) => read_list(l)?,
        None => scan(&scene_root(dir))?,
    };
    let root = match list {
        // Listed paths are relative to the data folder, or to its `val/` as the authors' lists are.
        Some(_) => [dir.to_path_buf(), dir.join("val")]
            .into_iter()
            .find(|r| pairs.iter().any(|(rgb, _)| r.join(rgb).is_file()))
            .unwrap_or_else(|| dir.to_path_buf()),
        None => scene_root(dir),
    };
    let mut samples = Vec::new();
    let mut skipped = 0;
    for (rgb, depth) in pairs {
        let (rgb_path, depth_path) = (root.join(&rgb), root.join(&depth));
        if rgb_path.is_file() && depth_path.is_file() {
            samples.push(HypersimSample { name: sample_name(&rgb), rgb: rgb_path, depth: depth_path });
        } else {
            log::debug!("hypersim: skipping {rgb} {depth}: file absent");
            skipped += 1;
        }
    }
    Ok((samples, skipped))
}

fn read_list(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 2 {
            return Err(Error::Input(format!(
                "{}:{}: expected two paths `RGB DEPTH`, found {} field(s): {line:?}",
                path.display(),
                i + 1,
                fields.len()
            )));
        }
        pairs.push((fields[0].to_string(), fields[1].to_string()));
    }
    Ok(pairs)
}

/// Every `ai_*/rgb_*.png` under `root`, paired with its depth path (relative, as a list has them).
fn scan(root: &Path) -> Result<Vec<(String, String)>> {
    let scenes: Vec<PathBuf> = entries(root)?.into_iter().filter(|p| is_scene(p)).collect();
    if scenes.is_empty() {
        return Err(Error::Input(format!(
            "{}: no Hypersim scene folders (ai_*) here or in val/; pass the folder that holds them",
            root.display()
        )));
    }
    let mut pairs = Vec::new();
    for scene in scenes {
        let scene_name = file_name(&scene);
        for f in entries(&scene)? {
            let name = file_name(&f);
            let is_png = f.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
            if let (Some(view), true) = (name.strip_prefix("rgb_"), is_png) {
                pairs.push((format!("{scene_name}/{name}"), format!("{scene_name}/depth_plane_{view}")));
            }
        }
    }
    Ok(pairs)
}

/// Read a depth PNG (16-bit millimetres) as metres with the valid mask.
pub fn load_depth(path: &Path) -> Result<DepthGt> {
    let (width, height, mm) = load_gray16(path)?;
    let depth: Vec<f32> = mm.iter().map(|&v| v as f32 / 1000.0).collect();
    let valid = depth.iter().map(|&d| d > MIN_DEPTH_M && d < MAX_DEPTH_M).collect();
    Ok(DepthGt { width, height, depth, valid })
}

/// Load a sample: the RGB image (3 channels in [0, 1]) and its depth, checked to be the same size.
pub fn load(sample: &HypersimSample) -> Result<(Image, DepthGt)> {
    let rgb = load_rgb(&sample.rgb)?;
    let depth = load_depth(&sample.depth)?;
    if (rgb.width, rgb.height) != (depth.width, depth.height) {
        return Err(Error::Input(format!(
            "hypersim sample {}: rgb is {}x{} but depth {} is {}x{}",
            sample.name,
            rgb.width,
            rgb.height,
            file_stem(&sample.depth),
            depth.width,
            depth.height
        )));
    }
    Ok((rgb, depth))
}
