//! Host tensors: a shape and contiguous row-major f32 data. Every backend converts to and
//! from this type at its edges (inputs, outputs, fixtures); weights have their own views
//! (`weights::WeightTensor`) so that memory-mapped files are not copied.

use crate::error::{Error, Result};

/// Element type of a stored tensor (weights files, checkpoints).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::F64 | DType::I64 => 8,
            DType::U8 | DType::I8 | DType::Bool => 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F64 => "f64",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::I16 => "i16",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::Bool => "bool",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// A contiguous row-major f32 tensor in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        if numel(&shape) != data.len() {
            return Err(Error::Shape(format!(
                "tensor of shape {shape:?} needs {} values, got {}",
                numel(&shape),
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor { shape: shape.to_vec(), data: vec![0.0; numel(shape)] }
    }
    pub fn full(shape: &[usize], v: f32) -> Self {
        Tensor { shape: shape.to_vec(), data: vec![v; numel(shape)] }
    }
    pub fn numel(&self) -> usize {
        self.data.len()
    }
    pub fn dims(&self) -> usize {
        self.shape.len()
    }
    /// Same data, new shape with the same element count.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        if numel(shape) != self.data.len() {
            return Err(Error::Shape(format!("cannot reshape {:?} to {shape:?}", self.shape)));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }
    /// The `i`-th slice along the first axis, as a new tensor.
    pub fn index0(&self, i: usize) -> Tensor {
        let inner = numel(&self.shape[1..]);
        Tensor { shape: self.shape[1..].to_vec(), data: self.data[i * inner..(i + 1) * inner].to_vec() }
    }
    /// Stack equally shaped tensors along a new first axis.
    pub fn stack(parts: &[Tensor]) -> Result<Tensor> {
        let first = parts.first().ok_or_else(|| Error::Shape("stack of no tensors".into()))?;
        let mut data = Vec::with_capacity(first.numel() * parts.len());
        for p in parts {
            if p.shape != first.shape {
                return Err(Error::Shape(format!("stack: shapes {:?} and {:?} differ", first.shape, p.shape)));
            }
            data.extend_from_slice(&p.data);
        }
        let mut shape = vec![parts.len()];
        shape.extend_from_slice(&first.shape);
        Ok(Tensor { shape, data })
    }
    /// Concatenate along the first axis.
    pub fn cat0(parts: &[Tensor]) -> Result<Tensor> {
        let first = parts.first().ok_or_else(|| Error::Shape("cat of no tensors".into()))?;
        let mut data = Vec::new();
        let mut n0 = 0;
        for p in parts {
            if p.shape[1..] != first.shape[1..] {
                return Err(Error::Shape(format!("cat: shapes {:?} and {:?} differ", first.shape, p.shape)));
            }
            n0 += p.shape[0];
            data.extend_from_slice(&p.data);
        }
        let mut shape = first.shape.clone();
        shape[0] = n0;
        Ok(Tensor { shape, data })
    }
}

/// `||a - b||_2 / ||b||_2`, accumulated in f64 (the fixtures' metric). 0 when both are zero.
pub fn rel_l2(a: &[f32], reference: &[f32]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().zip(reference) {
        let d = *x as f64 - *y as f64;
        num += d * d;
        den += (*y as f64) * (*y as f64);
    }
    if den == 0.0 {
        if num == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (num / den).sqrt()
    }
}
