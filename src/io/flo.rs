//! Middlebury `.flo` optical-flow files: magic 202021.25, width, height (i32), then per pixel
//! (u, v) as little-endian f32, row-major.

use std::path::Path;

use crate::error::{Error, Result};

const MAGIC: f32 = 202021.25;

/// A flow field: `u` and `v` in pixels, each `height * width`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    pub width: usize,
    pub height: usize,
    pub u: Vec<f32>,
    pub v: Vec<f32>,
}

pub fn read_flo(path: &Path) -> Result<Flow> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_flo(&bytes).map_err(|m| Error::Input(format!("{}: {m}", path.display())))
}

/// Parse `.flo` bytes; the error says what is wrong with them.
pub fn parse_flo(b: &[u8]) -> std::result::Result<Flow, String> {
    if b.len() < 12 {
        return Err(format!("not a .flo file: only {} bytes", b.len()));
    }
    let magic = f32::from_le_bytes(b[0..4].try_into().unwrap());
    if magic != MAGIC {
        return Err(format!("not a .flo file: magic {magic}, expected {MAGIC}"));
    }
    let w = i32::from_le_bytes(b[4..8].try_into().unwrap());
    let h = i32::from_le_bytes(b[8..12].try_into().unwrap());
    if w <= 0 || h <= 0 || w > 1 << 16 || h > 1 << 16 {
        return Err(format!("invalid .flo size {w}x{h}"));
    }
    let (w, h) = (w as usize, h as usize);
    let need = 12 + w * h * 8;
    if b.len() < need {
        return Err(format!("truncated .flo: {w}x{h} needs {need} bytes, file has {}", b.len()));
    }
    let mut u = Vec::with_capacity(w * h);
    let mut v = Vec::with_capacity(w * h);
    for px in b[12..need].chunks_exact(8) {
        u.push(f32::from_le_bytes(px[0..4].try_into().unwrap()));
        v.push(f32::from_le_bytes(px[4..8].try_into().unwrap()));
    }
    Ok(Flow { width: w, height: h, u, v })
}

pub fn write_flo(path: &Path, flow: &Flow) -> Result<()> {
    let n = flow.width * flow.height;
    if flow.u.len() != n || flow.v.len() != n {
        return Err(Error::Shape(format!("flow {}x{} needs {n} values per component", flow.width, flow.height)));
    }
    let mut b = Vec::with_capacity(12 + n * 8);
    b.extend_from_slice(&MAGIC.to_le_bytes());
    b.extend_from_slice(&(flow.width as i32).to_le_bytes());
    b.extend_from_slice(&(flow.height as i32).to_le_bytes());
    for i in 0..n {
        b.extend_from_slice(&flow.u[i].to_le_bytes());
        b.extend_from_slice(&flow.v[i].to_le_bytes());
    }
    super::atomic::write(path, &b)
}
