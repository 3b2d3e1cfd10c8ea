//! Dataset readers for `percept eval`: each lists the samples of a dataset folder (skipping and
//! counting samples whose files are absent) and loads one sample's inputs and ground truth as f32
//! planes. A sample whose files are present but unreadable is the caller's to report as failed.
//!
//! - `hypersim`: depth (scene folders `ai_*/rgb_*.png` + `depth_plane_*.png`, or a file list).
//! - `chairs`: FlyingChairs optical flow (`FlyingChairs_train_val.txt` + `data/`).
//! - `gestalt`: Pix2Gestalt amodal segmentation (`occlusion/`, `visible_object_mask/`, `whole/`,
//!   `whole_mask/`).
pub mod chairs;
pub mod gestalt;
pub mod hypersim;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Entries of `dir` in natural order (files and folders), hidden ones left out.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(Error::Input(format!("{}: not a directory", dir.display())));
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        if !e.file_name().to_string_lossy().starts_with('.') {
            out.push(e.path());
        }
    }
    crate::io::inputs::sort_natural(&mut out);
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap_or_default().to_string_lossy().into_owned()
}

fn file_stem(p: &Path) -> String {
    p.file_stem().unwrap_or_default().to_string_lossy().into_owned()
}
