//! Weights: files in (safetensors, PyTorch checkpoints, the synthetic rule), named tensors out.
//!
//! Every source produces [`RawTensor`]s: a dtype, a shape and the bytes, which stay inside the
//! memory-mapped file when the layout allows (contiguous, aligned) and are owned otherwise.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::tensor::DType;

/// Bytes of one tensor: a range of a shared memory map, or an owned buffer.
#[derive(Clone)]
pub enum Bytes {
    Mapped {
        map: Arc<memmap2::Mmap>,
        offset: usize,
        len: usize,
    },
    Owned(Arc<Vec<u8>>),
    /// Values already decoded to f32 (synthetic weights, converted tensors).
    F32(Arc<Vec<f32>>),
}

impl Bytes {
    /// Raw little-endian bytes (for `F32`, the f32 values' bytes).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Bytes::Mapped { map, offset, len } => &map[*offset..*offset + *len],
            Bytes::Owned(v) => v.as_slice(),
            Bytes::F32(v) => bytemuck::cast_slice(v.as_slice()),
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bytes::Mapped { offset, len, .. } => write!(f, "Mapped({offset}..+{len})"),
            Bytes::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
            Bytes::F32(v) => write!(f, "F32({} values)", v.len()),
        }
    }
}

/// One named tensor as stored: dtype, shape, contiguous row-major bytes.
#[derive(Clone, Debug)]
pub struct RawTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub bytes: Bytes,
}

impl RawTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Borrow as f32 without copying when the stored dtype is f32 and the bytes are aligned.
    pub fn as_f32_slice(&self) -> Option<&[f32]> {
        match &self.bytes {
            Bytes::F32(v) => Some(v.as_slice()),
            _ if self.dtype == DType::F32 => bytemuck::try_cast_slice(self.bytes.as_bytes()).ok(),
            _ => None,
        }
    }

    /// The values as f32 (a copy; converts f16/bf16/f64/integers).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        if let Some(s) = self.as_f32_slice() {
            return Ok(s.to_vec());
        }
        let b = self.bytes.as_bytes();
        let n = self.numel();
        if b.len() != n * self.dtype.size() {
            return Err(Error::Weights(format!(
                "tensor of shape {:?} and dtype {} needs {} bytes, has {}",
                self.shape,
                self.dtype,
                n * self.dtype.size(),
                b.len()
            )));
        }
        let chunks = |w: usize| b.chunks_exact(w);
        Ok(match self.dtype {
            DType::F32 => chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            DType::F16 => chunks(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::BF16 => chunks(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::F64 => chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            DType::I64 => chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            DType::I32 => chunks(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            DType::I16 => chunks(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f32).collect(),
            DType::I8 => b.iter().map(|&x| x as i8 as f32).collect(),
            DType::U8 | DType::Bool => b.iter().map(|&x| x as f32).collect(),
        })
    }

    /// The values as i64 (integer dtypes only).
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        let b = self.bytes.as_bytes();
        match self.dtype {
            DType::I64 => Ok(b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()),
            DType::I32 => Ok(b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect()),
            DType::I16 => Ok(b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect()),
            DType::I8 => Ok(b.iter().map(|&x| x as i8 as i64).collect()),
            d => Err(Error::Weights(format!("expected an integer tensor, found {d}"))),
        }
    }
}
pub mod config;
pub mod pt;
pub mod safetensors;
pub mod store;
pub mod synthetic;
pub use store::Weights;
pub mod model_file;
