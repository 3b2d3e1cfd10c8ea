//! Pix2Gestalt amodal segmentation: `occlusion/ID_occlusion.png` (the occluded picture),
//! `visible_object_mask/ID_visible_mask.png` (the prompt), `whole/ID_whole.png` (the whole object
//! on white) and `whole_mask/ID_whole_mask.png`. Files are matched by `ID`, the number before
//! the first `_`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::entries;
use crate::error::{Error, Result};
use crate::io::image::{load_mask, load_rgb, Image};
use crate::io::inputs::{has_image_extension, segment_key};

pub const OCCLUSION: &str = "occlusion";
pub const VISIBLE_MASK: &str = "visible_object_mask";
pub const WHOLE: &str = "whole";
pub const WHOLE_MASK: &str = "whole_mask";

#[derive(Clone, Debug, PartialEq)]
pub struct GestaltSample {
    /// The instance number (`10000015`).
    pub name: String,
    pub occlusion: PathBuf,
    pub visible_mask: PathBuf,
    pub whole: PathBuf,
    pub whole_mask: PathBuf,
}

/// A loaded sample: pictures with 3 channels, masks with 1, all in [0, 1] and the same size.
#[derive(Clone, Debug, PartialEq)]
pub struct GestaltData {
    pub occlusion: Image,
    pub visible_mask: Image,
    pub whole: Image,
    pub whole_mask: Image,
}

/// Image files of `dir/sub` by ID; an ID given by two files maps to neither.
fn by_id(dir: &Path, sub: &str) -> Result<HashMap<String, Option<PathBuf>>> {
    let folder = dir.join(sub);
    if !folder.is_dir() {
        return Err(Error::Input(format!(
            "{}: no {sub}/ folder; expected Pix2Gestalt with {OCCLUSION}/, {VISIBLE_MASK}/, {WHOLE}/, {WHOLE_MASK}/",
            dir.display()
        )));
    }
    let mut map: HashMap<String, Option<PathBuf>> = HashMap::new();
    for p in entries(&folder)?.into_iter().filter(|p| p.is_file() && has_image_extension(p)) {
        map.entry(segment_key(&p)).and_modify(|e| *e = None).or_insert(Some(p));
    }
    Ok(map)
}

/// Samples (one per occlusion image, in natural order of ID) whose four files are present, and
/// how many occlusion images were skipped for a missing (or ambiguous) partner.
pub fn list(dir: &Path) -> Result<(Vec<GestaltSample>, usize)> {
    let occ = dir.join(OCCLUSION);
    let visible = by_id(dir, VISIBLE_MASK)?;
    let whole = by_id(dir, WHOLE)?;
    let whole_mask = by_id(dir, WHOLE_MASK)?;
    let occ_ids = by_id(dir, OCCLUSION)?;
    let mut samples = Vec::new();
    let mut skipped = 0;
    for p in entries(&occ)?.into_iter().filter(|p| p.is_file() && has_image_extension(p)) {
        let id = segment_key(&p);
        let get = |m: &HashMap<String, Option<PathBuf>>| m.get(&id).cloned().flatten();
        match (get(&occ_ids), get(&visible), get(&whole), get(&whole_mask)) {
            (Some(occlusion), Some(visible_mask), Some(whole), Some(whole_mask)) => {
                samples.push(GestaltSample { name: id, occlusion, visible_mask, whole, whole_mask })
            }
            _ => {
                log::debug!("pix2gestalt: skipping {}: a partner file is absent or ambiguous", p.display());
                skipped += 1;
            }
        }
    }
    Ok((samples, skipped))
}

/// Load a sample, checking that all four images are the same size.
pub fn load(sample: &GestaltSample) -> Result<GestaltData> {
    let d = GestaltData {
        occlusion: load_rgb(&sample.occlusion)?,
        visible_mask: load_mask(&sample.visible_mask)?,
        whole: load_rgb(&sample.whole)?,
        whole_mask: load_mask(&sample.whole_mask)?,
    };
    let size = |i: &Image| (i.width, i.height);
    let s = size(&d.occlusion);
    if [&d.visible_mask, &d.whole, &d.whole_mask].iter().any(|i| size(i) != s) {
        return Err(Error::Input(format!(
            "pix2gestalt sample {}: sizes differ: occlusion {:?}, visible mask {:?}, whole {:?}, whole mask {:?}",
            sample.name,
            s,
            size(&d.visible_mask),
            size(&d.whole),
            size(&d.whole_mask)
        )));
    }
    Ok(d)
}
