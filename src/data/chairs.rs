//! FlyingChairs optical flow: `data/NNNNN_img1.ppm`, `NNNNN_img2.ppm`, `NNNNN_flow.flo` and the
//! split file `FlyingChairs_train_val.txt`, one value per line (1 train, 2 validation) for sample
//! 1, 2, ... in order. A split file with fewer lines than the highest sample number present (a
//! subset such as the authors' toy data) lists the samples present in `data/`, in sorted order.

use std::path::{Path, PathBuf};

use super::{entries, file_stem};
use crate::error::{Error, Result};
use crate::io::flo::{read_flo, Flow};
use crate::io::image::{load_rgb, Image};

pub const SPLIT_FILE: &str = "FlyingChairs_train_val.txt";
pub const TRAINING: u32 = 1;
pub const VALIDATION: u32 = 2;

#[derive(Clone, Debug, PartialEq)]
pub struct ChairsSample {
    /// The sample number as in the file names (`00006`).
    pub name: String,
    pub img1: PathBuf,
    pub img2: PathBuf,
    pub flow: PathBuf,
}

/// The samples of `split` (`VALIDATION` for eval) whose three files are present, and how many
/// samples of the split were skipped because a file is absent.
pub fn list(dir: &Path, split: u32) -> Result<(Vec<ChairsSample>, usize)> {
    let data = dir.join("data");
    if !data.is_dir() {
        return Err(Error::Input(format!(
            "{}: no data/ folder; expected FlyingChairs with {SPLIT_FILE} and data/",
            dir.display()
        )));
    }
    let split_path = dir.join(SPLIT_FILE);
    let values = read_split(&split_path)?;
    let present = present_numbers(&data)?;
    let highest = present.last().copied().unwrap_or(0);
    let numbered: Vec<(u64, u32)> = if (values.len() as u64) < highest {
        if values.len() != present.len() {
            return Err(Error::Input(format!(
                "{}: {} lines, fewer than the highest sample number {highest}, so they should list the \
                 samples present in data/, but {} are present",
                split_path.display(),
                values.len(),
                present.len()
            )));
        }
        present.iter().copied().zip(values).collect()
    } else {
        (1..).zip(values).collect()
    };
    let mut samples = Vec::new();
    let mut skipped = 0;
    for (n, _) in numbered.into_iter().filter(|&(_, v)| v == split) {
        let name = format!("{n:05}");
        let s = ChairsSample {
            img1: data.join(format!("{name}_img1.ppm")),
            img2: data.join(format!("{name}_img2.ppm")),
            flow: data.join(format!("{name}_flow.flo")),
            name,
        };
        if s.img1.is_file() && s.img2.is_file() && s.flow.is_file() {
            samples.push(s);
        } else {
            log::debug!("flyingchairs: skipping sample {}: file absent", s.name);
            skipped += 1;
        }
    }
    Ok((samples, skipped))
}

fn read_split(path: &Path) -> Result<Vec<u32>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            l.parse::<u32>()
                .map_err(|_| Error::Input(format!("{}:{}: expected 1 or 2, found {l:?}", path.display(), i + 1)))
        })
        .collect()
}

/// Sample numbers with an `NNNNN_img1.ppm` in `data`, ascending.
fn present_numbers(data: &Path) -> Result<Vec<u64>> {
    let mut nums: Vec<u64> = entries(data)?
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ppm")))
        .filter_map(|p| file_stem(p).strip_suffix("_img1")?.parse().ok())
        .collect();
    nums.sort_unstable();
    nums.dedup();
    Ok(nums)
}

/// Load a sample: both frames (3 channels in [0, 1]) and the ground-truth flow in pixels,
/// checked to be the same size.
pub fn load(sample: &ChairsSample) -> Result<(Image, Image, Flow)> {
    let img1 = load_rgb(&sample.img1)?;
    let img2 = load_rgb(&sample.img2)?;
    let flow = read_flo(&sample.flow)?;
    let size = (img1.width, img1.height);
    if (img2.width, img2.height) != size || (flow.width, flow.height) != size {
        return Err(Error::Input(format!(
            "flyingchairs sample {}: sizes differ: img1 {}x{}, img2 {}x{}, flow {}x{}",
            sample.name, img1.width, img1.height, img2.width, img2.height, flow.width, flow.height
        )));
    }
    Ok((img1, img2, flow))
}
