//! Caller-described images: a pointer, a size, a row stride and a pixel format.

use std::ffi::c_void;

use percept::{ImageView, PixelFormat};

use crate::status::{CResult, Failure};

/// `percept_image.format`: 8-bit R, G, B per pixel (0 = black, 255 = full).
pub const PERCEPT_PIXEL_RGB8: i32 = 0;
/// `percept_image.format`: 8-bit R, G, B, A per pixel; alpha is composited over white (over
/// black in a mask).
pub const PERCEPT_PIXEL_RGBA8: i32 = 1;
/// `percept_image.format`: one 8-bit grey value per pixel.
pub const PERCEPT_PIXEL_GRAY8: i32 = 2;
/// `percept_image.format`: float R, G, B in [0, 1] per pixel, native byte order (values
/// outside are clamped, NaN reads as 0).
pub const PERCEPT_PIXEL_RGB_F32: i32 = 3;
/// `percept_image.format`: float R, G, B, A in [0, 1] per pixel; alpha as with
/// `PERCEPT_PIXEL_RGBA8`.
pub const PERCEPT_PIXEL_RGBA_F32: i32 = 4;
/// `percept_image.format`: one float grey value in [0, 1] per pixel.
pub const PERCEPT_PIXEL_GRAY_F32: i32 = 5;

/// An image the caller owns, read during the call only. Row `y` starts at
/// `(const uint8_t *)data + y * stride`; pixels are packed within a row. An amodal mask may
/// have any format: a pixel belongs to the visible object where its luma (Rec. 601, alpha
/// composited over black) is above half the range, as `percept segment` reads a mask file.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct percept_image {
    /// The first pixel of the top row.
    pub data: *const c_void,
    /// Pixels per row; at least 1.
    pub width: u32,
    /// Rows; at least 1.
    pub height: u32,
    /// Bytes from the start of one row to the next; 0 means packed rows (width times the
    /// pixel's size).
    pub stride: usize,
    /// One of `PERCEPT_PIXEL_*`.
    pub format: i32,
}

fn pixel_format(code: i32, what: &str) -> CResult<(PixelFormat, usize)> {
    Ok(match code {
        PERCEPT_PIXEL_RGB8 => (PixelFormat::Rgb8, 3),
        PERCEPT_PIXEL_RGBA8 => (PixelFormat::Rgba8, 4),
        PERCEPT_PIXEL_GRAY8 => (PixelFormat::Gray8, 1),
        PERCEPT_PIXEL_RGB_F32 => (PixelFormat::RgbF32, 12),
        PERCEPT_PIXEL_RGBA_F32 => (PixelFormat::RgbaF32, 16),
        PERCEPT_PIXEL_GRAY_F32 => (PixelFormat::GrayF32, 4),
        other => {
            return Err(Failure::invalid(format!(
                "{what}->format is {other}; expected one of PERCEPT_PIXEL_RGB8 (0), _RGBA8 (1), _GRAY8 (2), \
                 _RGB_F32 (3), _RGBA_F32 (4), _GRAY_F32 (5)"
            )))
        }
    })
}

/// The image `p` describes, checked: non-NULL, a known format, a non-empty size, a stride that
/// holds a row. `what` names the argument in messages ("image", "frame2", "mask").
///
/// # Safety
/// `p` is NULL or points to a `percept_image` whose `data` holds `stride * (height - 1) +
/// width * pixel size` readable bytes that stay unchanged for `'a`.
pub(crate) unsafe fn image_view<'a>(p: *const percept_image, what: &str) -> CResult<ImageView<'a>> {
    let image = p.as_ref().ok_or_else(|| Failure::invalid(format!("{what} is NULL")))?;
    let (format, pixel_bytes) = pixel_format(image.format, what)?;
    if image.data.is_null() {
        return Err(Failure::invalid(format!("{what}->data is NULL")));
    }
    let (width, height) = (image.width as usize, image.height as usize);
    if width == 0 || height == 0 {
        return Err(Failure::invalid(format!("{what} is {width} x {height} pixels; both must be at least 1")));
    }
    let too_large = || Failure::invalid(format!("{what}: {width} x {height} pixels overflow the address space"));
    let row_bytes = width.checked_mul(pixel_bytes).ok_or_else(too_large)?;
    let stride = if image.stride == 0 { row_bytes } else { image.stride };
    if stride < row_bytes {
        return Err(Failure::invalid(format!(
            "{what}->stride is {stride} bytes, less than a row of {width} pixels ({row_bytes} bytes)"
        )));
    }
    let len = stride.checked_mul(height - 1).and_then(|b| b.checked_add(row_bytes)).ok_or_else(too_large)?;
    let bytes = std::slice::from_raw_parts(image.data.cast::<u8>(), len);
    // The library checks the same again (and the float formats' alignment) with its own words.
    ImageView::new(bytes, width, height, stride, format).map_err(|e| {
        let mut failure = Failure::from(e);
        failure.message = format!("{what}: {}", failure.message);
        failure
    })
}
