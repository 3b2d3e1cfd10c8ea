//! Images in and out as f32 planes.
//!
//! Loading sniffs the format from the bytes (PNG, JPEG, PPM/PGM; the extension is never trusted),
//! applies the EXIF orientation so what the model sees is what a viewer shows, and returns CHW
//! planes in [0, 1] whatever the bit depth (8 or 16 bit, palette expanded). Transparency is
//! composited over white for pictures (transparent areas then read as the background the amodal
//! task uses) and over black for masks (a transparent pixel is not part of the object).
//!
//! Writers encode in memory and go through `crate::io::atomic`, so an output is either complete or
//! absent.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use crate::error::{Error, Result};

pub use super::resize::{resize_area, resize_bilinear, resize_nearest};

/// Decoding may allocate at most this much for the pixels; larger claims are refused before any
/// allocation (a corrupt header must not take the machine down).
const MAX_DECODE_BYTES: u64 = 2 << 30;

/// A decoded image: `channels` planes of `height * width` values in [0, 1], CHW order.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    /// 1 (gray or mask) or 3 (RGB).
    pub channels: usize,
    pub data: Vec<f32>,
}

impl Image {
    /// The plane of channel `c`.
    pub fn plane(&self, c: usize) -> &[f32] {
        let n = self.width * self.height;
        &self.data[c * n..(c + 1) * n]
    }

    /// The same image with 3 channels (gray repeated); RGB is returned unchanged.
    pub fn into_rgb(self) -> Image {
        if self.channels == 3 {
            return self;
        }
        let mut data = Vec::with_capacity(self.data.len() * 3);
        for _ in 0..3 {
            data.extend_from_slice(&self.data);
        }
        Image { channels: 3, data, ..self }
    }

    /// Antialiased resize to `width` x `height` (area filter down, bilinear up): pictures.
    pub fn resized_area(&self, width: usize, height: usize) -> Result<Image> {
        let data = resize_area(&self.data, self.width, self.height, width, height)?;
        Ok(Image { width, height, channels: self.channels, data })
    }

    /// Nearest-neighbour resize to `width` x `height`: masks keep their values.
    pub fn resized_nearest(&self, width: usize, height: usize) -> Result<Image> {
        let data = resize_nearest(&self.data, self.width, self.height, width, height)?;
        Ok(Image { width, height, channels: self.channels, data })
    }

    /// The planes as a `[channels, height, width]` tensor.
    pub fn to_tensor(&self) -> Result<crate::tensor::Tensor> {
        crate::tensor::Tensor::new(vec![self.channels, self.height, self.width], self.data.clone())
    }
}

/// How transparency and colour are folded into the planes.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    /// Native channel count (1 for gray, 3 for colour), alpha over white.
    Native,
    /// Always 3 channels, alpha over white.
    Rgb,
    /// Always 1 channel (Rec. 601 luma of colour, as PIL's "L"), alpha over black.
    Mask,
}

/// Load an image with its own channel count: 1 for grayscale files, 3 for colour.
pub fn load_image(path: &Path) -> Result<Image> {
    load(path, Target::Native)
}

/// Load an image as 3 channels (grayscale repeated).
pub fn load_rgb(path: &Path) -> Result<Image> {
    load(path, Target::Rgb)
}

/// Load a mask as 1 channel (colour files by luma, transparency as background).
pub fn load_mask(path: &Path) -> Result<Image> {
    load(path, Target::Mask)
}

fn load(path: &Path, target: Target) -> Result<Image> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let name = path.display().to_string();
    let img = decode_dynamic(&name, &bytes)?;
    Ok(to_planes(&img, target))
}

/// Decode image bytes (any supported format, EXIF orientation applied) to native channels.
/// `name` is used in error messages. Never panics on malformed bytes.
pub fn decode_image_bytes(name: &str, bytes: &[u8]) -> Result<Image> {
    let img = decode_dynamic(name, bytes)?;
    Ok(to_planes(&img, Target::Native))
}

/// Decode a single-channel 16-bit PNG (Hypersim depth, our own `depth16` outputs) to raw values.
pub fn load_gray16(path: &Path) -> Result<(usize, usize, Vec<u16>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let name = path.display().to_string();
    match decode_dynamic(&name, &bytes)? {
        DynamicImage::ImageLuma16(buf) => {
            let (w, h) = (buf.width() as usize, buf.height() as usize);
            Ok((w, h, buf.into_raw()))
        }
        other => Err(Error::Input(format!("{name}: expected a 16-bit grayscale PNG, found {:?}", other.color()))),
    }
}

fn decode_dynamic(name: &str, bytes: &[u8]) -> Result<DynamicImage> {
    if bytes.is_empty() {
        return Err(Error::Input(format!("{name}: empty file, not an image")));
    }
    let input = |msg: String| Error::Input(format!("{name}: {msg}"));
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| input(format!("cannot read: {e}")))?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Pnm)) => f,
        Some(f) => return Err(input(format!("unsupported image format {f:?}; expected PNG, JPEG or PPM/PGM"))),
        None => return Err(input("not a recognised image (expected PNG, JPEG or PPM/PGM content)".into())),
    };
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let fmt = format!("{format:?}").to_uppercase();
    let mut decoder = reader.into_decoder().map_err(|e| input(format!("corrupt or unsupported {fmt}: {e}")))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(input(format!("image has zero size ({w}x{h})")));
    }
    // `from_decoder` allocates the whole claimed size up front, whatever the limits say.
    let need = decoder.total_bytes();
    if need > MAX_DECODE_BYTES {
        return Err(input(format!(
            "{w}x{h} {fmt} would need {need} bytes to decode, more than the {MAX_DECODE_BYTES} allowed"
        )));
    }
    // A damaged EXIF block is not worth refusing a readable picture for.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| input(format!("corrupt or truncated {fmt}: {e}")))?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Read sample `i` of the decoded buffer as a value in [0, 1], whatever its storage type.
fn sampler(img: &DynamicImage) -> impl Fn(usize) -> f32 + '_ {
    let bytes = img.as_bytes();
    let color = img.color();
    let width = color.bytes_per_pixel() as usize / color.channel_count() as usize;
    move |i| match width {
        1 => bytes[i] as f32 / 255.0,
        2 => u16::from_ne_bytes([bytes[2 * i], bytes[2 * i + 1]]) as f32 / 65535.0,
        _ => {
            let b = &bytes[4 * i..4 * i + 4];
            let v = f32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            if v.is_nan() {
                0.0
            } else {
                v.clamp(0.0, 1.0)
            }
        }
    }
}

fn to_planes(img: &DynamicImage, target: Target) -> Image {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let n = w * h;
    let color = img.color();
    let nc = color.channel_count() as usize;
    let has_color = color.has_color();
    let has_alpha = color.has_alpha();
    let get = sampler(img);
    let out_c = match target {
        Target::Native if has_color => 3,
        Target::Native | Target::Mask => 1,
        Target::Rgb => 3,
    };
    let background = if target == Target::Mask { 0.0 } else { 1.0 };
    let mut data = vec![0.0f32; out_c * n];
    for p in 0..n {
        let base = p * nc;
        let alpha = if has_alpha { get(base + nc - 1) } else { 1.0 };
        let over = |v: f32| v * alpha + background * (1.0 - alpha);
        let rgb = if has_color {
            [get(base), get(base + 1), get(base + 2)]
        } else {
            let g = get(base);
            [g, g, g]
        };
        if out_c == 3 {
            for c in 0..3 {
                data[c * n + p] = over(rgb[c]);
            }
        } else {
            let l = if has_color { 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] } else { rgb[0] };
            data[p] = over(l);
        }
    }
    Image { width: w, height: h, channels: out_c, data }
}

fn check_len(path: &Path, what: &str, len: usize, width: usize, height: usize, channels: usize) -> Result<()> {
    if width == 0 || height == 0 || len != channels * width * height {
        return Err(Error::Shape(format!(
            "{}: {what} {width}x{height} with {channels} channel(s) needs {} values, got {len}",
            path.display(),
            channels * width * height
        )));
    }
    if width > u32::MAX as usize || height > u32::MAX as usize {
        return Err(Error::Shape(format!("{}: {width}x{height} is too large for PNG", path.display())));
    }
    Ok(())
}

fn to_u8(v: f32) -> u8 {
    // NaN maps to 0 through the saturating cast.
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

fn to_u16(v: f32) -> u16 {
    (v.clamp(0.0, 1.0) * 65535.0).round() as u16
}

fn write_png(path: &Path, width: usize, height: usize, color: image::ExtendedColorType, buf: &[u8]) -> Result<()> {
    use image::ImageEncoder;
    let mut encoded = Vec::new();
    image::codecs::png::PngEncoder::new(&mut encoded)
        .write_image(buf, width as u32, height as u32, color)
        .map_err(|e| Error::Input(format!("{}: PNG encoding failed: {e}", path.display())))?;
    super::atomic::write(path, &encoded)
}

/// Write `[3, H, W]` planes in [0, 1] as an 8-bit RGB PNG (values clamped and rounded).
pub fn save_png_rgb8(path: &Path, width: usize, height: usize, chw: &[f32]) -> Result<()> {
    check_len(path, "RGB image", chw.len(), width, height, 3)?;
    let n = width * height;
    let mut buf = Vec::with_capacity(3 * n);
    for p in 0..n {
        for c in 0..3 {
            buf.push(to_u8(chw[c * n + p]));
        }
    }
    write_png(path, width, height, image::ExtendedColorType::Rgb8, &buf)
}

/// Write an `[H, W]` plane in [0, 1] as an 8-bit grayscale PNG.
pub fn save_png_gray8(path: &Path, width: usize, height: usize, plane: &[f32]) -> Result<()> {
    check_len(path, "gray image", plane.len(), width, height, 1)?;
    let buf: Vec<u8> = plane.iter().map(|&v| to_u8(v)).collect();
    write_png(path, width, height, image::ExtendedColorType::L8, &buf)
}

/// Write an `[H, W]` plane in [0, 1] as a 16-bit grayscale PNG: `round(clamp(v) * 65535)`.
pub fn save_png_gray16(path: &Path, width: usize, height: usize, plane: &[f32]) -> Result<()> {
    check_len(path, "16-bit image", plane.len(), width, height, 1)?;
    // The encoder takes native-endian samples and writes PNG's big-endian.
    let buf: Vec<u8> = plane.iter().flat_map(|&v| to_u16(v).to_ne_bytes()).collect();
    write_png(path, width, height, image::ExtendedColorType::L16, &buf)
}
