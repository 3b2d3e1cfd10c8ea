//! Procedural toy datasets with exact ground truth, in the three layouts the authors' code reads:
//!
//! ```text
//! OUT/Hypersim_small/{train,val}/ai_VVV_SSS/rgb_cam_00_frNNNN.png        8-bit RGB
//! OUT/Hypersim_small/{train,val}/ai_VVV_SSS/depth_plane_cam_00_frNNNN.png 16-bit grey, planar depth in mm
//! OUT/data_split/hysim_filename_list_{train,val}.txt   "RGB DEPTH" per line, relative to the split dir
//! OUT/FlyingChairs_small/FlyingChairs_train_val.txt    one line per sample: 1 train, 2 val
//! OUT/FlyingChairs_small/data/NNNNN_img1.ppm, NNNNN_img2.ppm, NNNNN_flow.flo
//! OUT/Pix2Gestalt_small/{train,val}/occlusion/ID_occlusion.png
//!                                  /visible_object_mask/ID_visible_mask.png   8-bit grey 0/255
//!                                  /whole/ID_whole.png                        object on white
//!                                  /whole_mask/ID_whole_mask.png              8-bit grey 0/255
//! ```
//!
//! Every sample comes from its own random stream (seed, dataset, index), so the output is the same
//! byte for byte whatever the thread count, and on any machine (see `rng`).

pub mod chairs;
pub mod gestalt;
pub mod hypersim;
pub mod render;
pub mod rng;

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};

use crate::error::{Error, Result};

/// What to generate. `size` is the side of the square images in pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct ToyDataOptions {
    pub seed: u64,
    pub size: usize,
    /// Hypersim-like RGB + depth pairs.
    pub n_depth: usize,
    /// FlyingChairs-like frame pairs with flow.
    pub n_flow: usize,
    /// Pix2Gestalt-like amodal samples.
    pub n_segment: usize,
    /// Share of each dataset held out for validation (at least one sample when it is positive).
    pub val_fraction: f32,
}

impl Default for ToyDataOptions {
    /// The shipped `toy_data/` set: about 4 MB at 128x128 (PPM frames and `.flo` files are
    /// uncompressed, so flow pairs are the expensive ones).
    fn default() -> Self {
        ToyDataOptions { seed: 0, size: 128, n_depth: 48, n_flow: 8, n_segment: 48, val_fraction: 0.25 }
    }
}

/// What `generate` wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub files: usize,
    pub bytes: u64,
    pub depth_samples: usize,
    pub flow_samples: usize,
    pub segment_samples: usize,
}

/// Write all three datasets under `out` (created if needed; existing files of the same names
/// are replaced, others are left alone).
pub fn generate(out: &Path, opts: &ToyDataOptions) -> Result<Summary> {
    validate(opts)?;
    let sink = Sink::default();
    // A dataset asked for with a count of 0 is not written at all (no empty lists or folders).
    if opts.n_depth > 0 {
        hypersim::write_dataset(out, opts, &sink)?;
    }
    if opts.n_flow > 0 {
        chairs::write_dataset(out, opts, &sink)?;
    }
    if opts.n_segment > 0 {
        gestalt::write_dataset(out, opts, &sink)?;
    }
    Ok(Summary {
        files: sink.files.load(Ordering::Relaxed),
        bytes: sink.bytes.load(Ordering::Relaxed),
        depth_samples: opts.n_depth,
        flow_samples: opts.n_flow,
        segment_samples: opts.n_segment,
    })
}

fn validate(opts: &ToyDataOptions) -> Result<()> {
    if !(8..=4096).contains(&opts.size) {
        return Err(Error::Input(format!("toy-data: size {} is out of range, expected 8 to 4096 pixels", opts.size)));
    }
    if !(0.0..1.0).contains(&opts.val_fraction) {
        return Err(Error::Input(format!(
            "toy-data: val_fraction {} is out of range, expected a share in [0, 1)",
            opts.val_fraction
        )));
    }
    if opts.n_flow > 99_999 {
        return Err(Error::Input(format!("toy-data: {} flow samples do not fit 5-digit names", opts.n_flow)));
    }
    Ok(())
}

/// How many of `n` samples go to validation: the last ones.
pub fn val_count(n: usize, val_fraction: f32) -> usize {
    if n < 2 || val_fraction <= 0.0 {
        return 0;
    }
    ((n as f32 * val_fraction).round() as usize).clamp(1, n - 1)
}

/// Counts what is written; shared by the parallel writers.
#[derive(Default)]
pub struct Sink {
    files: AtomicUsize,
    bytes: AtomicU64,
}

impl Sink {
    pub fn write(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        crate::io::atomic::write(path, bytes)?;
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    pub fn write_flo(&self, path: &Path, flow: &crate::io::flo::Flow) -> Result<()> {
        crate::io::flo::write_flo(path, flow)?;
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(12 + 8 * flow.u.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn encode_png(pixels: &[u8], size: usize, color: ExtendedColorType, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    PngEncoder::new_with_quality(&mut buf, CompressionType::Best, FilterType::Adaptive)
        .write_image(pixels, size as u32, size as u32, color)
        .map_err(|e| Error::Input(format!("toy-data: encoding {what} as PNG failed: {e}")))?;
    Ok(buf)
}

/// 8-bit RGB PNG of a `size` x `size` image.
pub fn png_rgb8(rgb: &[u8], size: usize) -> Result<Vec<u8>> {
    encode_png(rgb, size, ExtendedColorType::Rgb8, "an RGB image")
}

/// 8-bit greyscale PNG.
pub fn png_gray8(gray: &[u8], size: usize) -> Result<Vec<u8>> {
    encode_png(gray, size, ExtendedColorType::L8, "a mask")
}

/// 16-bit greyscale PNG (the encoder takes native-endian samples and stores big-endian).
pub fn png_gray16(gray: &[u16], size: usize) -> Result<Vec<u8>> {
    let bytes: Vec<u8> = gray.iter().flat_map(|v| v.to_ne_bytes()).collect();
    encode_png(&bytes, size, ExtendedColorType::L16, "a depth map")
}

/// Binary PPM (P6) with the one-line header FlyingChairs uses: `P6 W H 255\n`.
pub fn ppm_rgb8(rgb: &[u8], size: usize) -> Vec<u8> {
    let mut b = format!("P6 {size} {size} 255\n").into_bytes();
    b.extend_from_slice(rgb);
    b
}

/// Lines joined by `\n` with no newline after the last, as in the authors' list files.
pub fn join_lines(lines: &[String]) -> Vec<u8> {
    lines.join("\n").into_bytes()
}
