//! Strided views of a storage: validating `(offset, size, stride)` against the storage and
//! turning the view into contiguous row-major bytes.
//!
//! Every product and sum is checked, so a size, stride or offset from a damaged or hostile file
//! is reported instead of wrapping around and reading the wrong bytes.

use super::pickle::TensorRef;

/// A view whose every element lies inside its storage (in elements, not bytes).
#[derive(Debug)]
pub struct Layout {
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
    pub offset: usize,
    pub numel: usize,
    pub contiguous: bool,
}

pub enum LayoutError {
    /// The numbers contradict each other or the storage: a damaged or forged file.
    Inconsistent(String),
    /// Valid in torch but not accepted here (the message says what to do).
    Unsupported(String),
}

/// Tensors beyond this many dimensions are not from a real model.
const MAX_DIMS: usize = 64;

pub fn layout(t: &TensorRef) -> Result<Layout, LayoutError> {
    use LayoutError::{Inconsistent, Unsupported};
    let storage_numel = usize::try_from(t.storage.numel)
        .map_err(|_| Inconsistent(format!("its storage declares {} elements", t.storage.numel)))?;
    if t.size.len() > MAX_DIMS {
        return Err(Unsupported(format!("it has {} dimensions (at most {MAX_DIMS} are accepted)", t.size.len())));
    }
    let dims = |v: &[i64], what: &str| -> Result<Vec<usize>, LayoutError> {
        let negative = || Inconsistent(format!("its {what} {v:?} has a negative entry"));
        v.iter().map(|&x| usize::try_from(x).map_err(|_| negative())).collect()
    };
    let shape = dims(&t.size, "size")?;
    let stride = dims(&t.stride, "stride")?;
    let offset =
        usize::try_from(t.offset).map_err(|_| Inconsistent(format!("its storage offset {} is negative", t.offset)))?;

    let numel = shape
        .iter()
        .try_fold(1usize, |n, &s| n.checked_mul(s))
        .ok_or_else(|| Inconsistent(format!("its size {shape:?} overflows the element count")))?;
    let overflow = || Inconsistent(format!("its size {shape:?}, stride {stride:?} and offset {offset} overflow"));
    if numel == 0 {
        if offset > storage_numel {
            return Err(Inconsistent(format!(
                "its storage offset {offset} lies past the storage's {storage_numel} elements"
            )));
        }
    } else {
        // The last element the view touches, which must lie inside the storage.
        let mut last = offset;
        for (&s, &st) in shape.iter().zip(&stride) {
            last = (s - 1).checked_mul(st).and_then(|d| last.checked_add(d)).ok_or_else(overflow)?;
        }
        if last >= storage_numel {
            return Err(Inconsistent(format!(
                "its size {shape:?}, stride {stride:?} and offset {offset} reach element {last} of a storage of {storage_numel} elements"
            )));
        }
        // An expanded view (stride 0, as `expand` makes) has more elements than its storage; it
        // is materialised like any other strided view, its copies bounded by the reader's budget.
    }

    let mut expected = 1usize;
    let mut contiguous = true;
    for (&s, &st) in shape.iter().zip(&stride).rev() {
        if s != 1 && st != expected {
            contiguous = false;
        }
        expected = expected.saturating_mul(s);
    }
    Ok(Layout { shape, stride, offset, numel, contiguous })
}

/// Copies a (validated, non-contiguous) view out of `storage` bytes into row-major order.
pub fn materialise(l: &Layout, storage: &[u8], item: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(l.numel * item);
    if l.numel == 0 {
        return out;
    }
    let nd = l.shape.len();
    let mut idx = vec![0usize; nd];
    let mut pos = l.offset;
    loop {
        let b = pos * item;
        out.extend_from_slice(&storage[b..b + item]);
        // Odometer over the multi-index; `pos` follows it by adding and removing strides (wrapping:
        // a size-1 dimension's stride is unchecked, and the sum is right again once it is removed).
        let mut d = nd;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            pos = pos.wrapping_add(l.stride[d]);
            if idx[d] < l.shape[d] {
                break;
            }
            pos = pos.wrapping_sub(l.stride[d].wrapping_mul(l.shape[d]));
            idx[d] = 0;
        }
    }
}
