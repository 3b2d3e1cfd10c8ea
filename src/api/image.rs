//! Borrowed images: the caller's pixels, read in place (no copy until they are resized to the
//! model's resolution).

use crate::error::{Error, Result};
use crate::io::image::Image;

/// How the bytes of an [`ImageView`] encode a pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// 3 bytes per pixel, R G B, 0..=255.
    Rgb8,
    /// 4 bytes per pixel; the alpha channel is composited over white (over black for masks).
    Rgba8,
    /// 1 byte per pixel (replicated to R = G = B).
    Gray8,
    /// 3 native-endian `f32` per pixel in [0, 1] (values outside are clamped, NaN reads as 0).
    RgbF32,
    /// 4 native-endian `f32` per pixel in [0, 1], alpha as for `Rgba8`.
    RgbaF32,
    /// 1 native-endian `f32` per pixel in [0, 1].
    GrayF32,
}

impl PixelFormat {
    /// Channels per pixel.
    pub fn channels(self) -> usize {
        match self {
            PixelFormat::Rgb8 | PixelFormat::RgbF32 => 3,
            PixelFormat::Rgba8 | PixelFormat::RgbaF32 => 4,
            PixelFormat::Gray8 | PixelFormat::GrayF32 => 1,
        }
    }
    /// Bytes per channel value (1 or 4).
    pub fn bytes_per_channel(self) -> usize {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Rgba8 | PixelFormat::Gray8 => 1,
            _ => 4,
        }
    }
    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        self.channels() * self.bytes_per_channel()
    }
}

/// A borrowed image: `height` rows of `width` pixels, rows `stride` bytes apart.
///
/// As an amodal *mask*, any format works: a pixel is "visible object" where its luma
/// (Rec. 601, as PIL's `L`; alpha composited over black) is above 0.5, which is what
/// `percept segment` does with a mask file. (A refinement of the agreed "mean value > 0.5":
/// the same for gray and black-and-white masks.)
///
/// ```
/// let pixels = vec![0u8; 4 * 3 * 2]; // 4 x 2, RGB8
/// let img = percept::ImageView::rgb8(&pixels, 4, 2)?;
/// assert_eq!((img.width(), img.height()), (4, 2));
/// // Too few bytes for the size is an error, not a panic.
/// assert!(percept::ImageView::rgb8(&pixels, 5, 2).is_err());
/// # Ok::<(), percept::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ImageView<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
    stride: usize,
    format: PixelFormat,
}

impl<'a> ImageView<'a> {
    /// A view of `data`; `stride`: bytes from one row to the next (>= `width` times the bytes
    /// per pixel). Checks that the size is non-zero and that `data` holds every row.
    pub fn new(data: &'a [u8], width: usize, height: usize, stride: usize, format: PixelFormat) -> Result<Self> {
        let row = width
            .checked_mul(format.bytes_per_pixel())
            .ok_or_else(|| Error::Input(format!("image: width {width} is too large")))?;
        if width == 0 || height == 0 {
            return Err(Error::Input(format!("image: size {width}x{height} is empty")));
        }
        if stride < row {
            return Err(Error::Input(format!(
                "image: stride {stride} bytes is less than a row of {width} {format:?} pixels ({row} bytes)"
            )));
        }
        let need = stride
            .checked_mul(height - 1)
            .and_then(|b| b.checked_add(row))
            .ok_or_else(|| Error::Input(format!("image: {width}x{height} with stride {stride} is too large")))?;
        if data.len() < need {
            return Err(Error::Input(format!(
                "image: {width}x{height} {format:?} with stride {stride} needs {need} bytes, got {}",
                data.len()
            )));
        }
        Ok(ImageView { data, width, height, stride, format })
    }

    /// Tightly packed RGB8 pixels.
    pub fn rgb8(data: &'a [u8], width: usize, height: usize) -> Result<Self> {
        Self::new(data, width, height, width.saturating_mul(3), PixelFormat::Rgb8)
    }

    /// Tightly packed RGBA8 pixels.
    pub fn rgba8(data: &'a [u8], width: usize, height: usize) -> Result<Self> {
        Self::new(data, width, height, width.saturating_mul(4), PixelFormat::Rgba8)
    }

    /// Tightly packed 8-bit gray pixels (also a mask: 255 = object).
    pub fn gray8(data: &'a [u8], width: usize, height: usize) -> Result<Self> {
        Self::new(data, width, height, width, PixelFormat::Gray8)
    }

    /// Tightly packed RGB f32 pixels in [0, 1].
    pub fn rgb_f32(data: &'a [f32], width: usize, height: usize) -> Result<Self> {
        Self::new(bytemuck::cast_slice(data), width, height, width.saturating_mul(12), PixelFormat::RgbF32)
    }

    /// Tightly packed gray f32 pixels in [0, 1].
    pub fn gray_f32(data: &'a [f32], width: usize, height: usize) -> Result<Self> {
        Self::new(bytemuck::cast_slice(data), width, height, width.saturating_mul(4), PixelFormat::GrayF32)
    }

    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }
    pub fn stride(&self) -> usize {
        self.stride
    }
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// Channel `c` of pixel `x` of row `y`, in [0, 1].
    fn value(&self, x: usize, y: usize, c: usize) -> f32 {
        let bpc = self.format.bytes_per_channel();
        let at = y * self.stride + (x * self.format.channels() + c) * bpc;
        if bpc == 1 {
            self.data[at] as f32 / 255.0
        } else {
            let b = &self.data[at..at + 4];
            let v = f32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            if v.is_nan() {
                0.0
            } else {
                v.clamp(0.0, 1.0)
            }
        }
    }

    /// Fold a pixel to RGB with alpha over `background`, as `io::image` does for files.
    fn pixel(&self, x: usize, y: usize, background: f32) -> [f32; 3] {
        let (rgb, alpha) = match self.format.channels() {
            1 => {
                let g = self.value(x, y, 0);
                ([g, g, g], 1.0)
            }
            3 => ([self.value(x, y, 0), self.value(x, y, 1), self.value(x, y, 2)], 1.0),
            _ => ([self.value(x, y, 0), self.value(x, y, 1), self.value(x, y, 2)], self.value(x, y, 3)),
        };
        rgb.map(|v| v * alpha + background * (1.0 - alpha))
    }

    /// The image as 3 planes in [0, 1] (alpha over white): what `load_rgb` gives for a file.
    pub(crate) fn to_rgb_planes(self) -> Image {
        let n = self.width * self.height;
        let mut data = vec![0.0f32; 3 * n];
        for y in 0..self.height {
            for x in 0..self.width {
                let p = y * self.width + x;
                let rgb = self.pixel(x, y, 1.0);
                for c in 0..3 {
                    data[c * n + p] = rgb[c];
                }
            }
        }
        Image { width: self.width, height: self.height, channels: 3, data }
    }

    /// The image as one mask plane in [0, 1] (luma, alpha over black): what `load_mask` gives.
    pub(crate) fn to_mask_plane(self) -> Image {
        let mut data = Vec::with_capacity(self.width * self.height);
        for y in 0..self.height {
            for x in 0..self.width {
                let v = if self.format.channels() == 1 {
                    self.value(x, y, 0)
                } else {
                    let alpha = if self.format.channels() == 4 { self.value(x, y, 3) } else { 1.0 };
                    let [r, g, b] = [self.value(x, y, 0), self.value(x, y, 1), self.value(x, y, 2)];
                    (0.299 * r + 0.587 * g + 0.114 * b) * alpha
                };
                data.push(v);
            }
        }
        Image { width: self.width, height: self.height, channels: 1, data }
    }
}
