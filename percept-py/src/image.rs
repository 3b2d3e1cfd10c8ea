//! numpy arrays in: an owned copy of each input image, taken while the GIL is held, so the
//! compute that follows (GIL released) never reads memory Python code could be changing.

use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use percept::{ImageView, PixelFormat};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::to_py_err;

enum Pixels {
    U8(Vec<u8>),
    // Kept as f32 (not bytes) so the buffer is aligned for the engine's f32 reads.
    F32(Vec<f32>),
}

/// One image: H x W (gray), H x W x 1, H x W x 3 (RGB) or H x W x 4 (RGBA); uint8 or float32 in
/// [0, 1]. The Python layer converts PIL images and other dtypes before they get here.
pub struct OwnedImage {
    pixels: Pixels,
    width: usize,
    height: usize,
    channels: usize,
}

impl OwnedImage {
    pub fn from_py(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Self> {
        if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, u8>>() {
            let (height, width, channels) = image_shape(a.shape(), name)?;
            let pixels = Pixels::U8(a.as_array().iter().copied().collect());
            return Ok(OwnedImage { pixels, width, height, channels });
        }
        if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, f32>>() {
            let (height, width, channels) = image_shape(a.shape(), name)?;
            let pixels = Pixels::F32(a.as_array().iter().copied().collect());
            return Ok(OwnedImage { pixels, width, height, channels });
        }
        Err(PyValueError::new_err(format!(
            "{name}: expected a numpy array of dtype uint8 or float32, got {}",
            obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "an unknown type".into())
        )))
    }

    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }

    /// The engine's borrowed view of this image.
    pub fn view(&self) -> PyResult<ImageView<'_>> {
        let (bytes, format): (&[u8], PixelFormat) = match (&self.pixels, self.channels) {
            (Pixels::U8(v), 1) => (v, PixelFormat::Gray8),
            (Pixels::U8(v), 3) => (v, PixelFormat::Rgb8),
            (Pixels::U8(v), _) => (v, PixelFormat::Rgba8),
            (Pixels::F32(v), 1) => (bytemuck::cast_slice(v), PixelFormat::GrayF32),
            (Pixels::F32(v), 3) => (bytemuck::cast_slice(v), PixelFormat::RgbF32),
            (Pixels::F32(v), _) => (bytemuck::cast_slice(v), PixelFormat::RgbaF32),
        };
        let stride = bytes.len() / self.height.max(1);
        ImageView::new(bytes, self.width, self.height, stride, format).map_err(to_py_err)
    }
}

/// (height, width, channels) of an image array, or a ValueError naming the argument.
fn image_shape(shape: &[usize], name: &str) -> PyResult<(usize, usize, usize)> {
    let (h, w, c) = match *shape {
        [h, w] => (h, w, 1),
        [h, w, c] if c == 1 || c == 3 || c == 4 => (h, w, c),
        _ => {
            return Err(PyValueError::new_err(format!(
                "{name}: expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {shape:?}"
            )))
        }
    };
    if h == 0 || w == 0 {
        return Err(PyValueError::new_err(format!("{name}: empty image (shape {shape:?})")));
    }
    Ok((h, w, c))
}
