//! Matrix products for the CPU backend, carried by the `gemm` crate (chosen over
//! `matrixmultiply` by the benchmark in benches/: it has AVX-512 kernels and its own threading).

/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_MIN_FLOPS: usize = 1 << 21;

fn parallelism(m: usize, n: usize, k: usize, allow_threads: bool) -> gemm::Parallelism {
    if allow_threads && m * n * k >= PARALLEL_MIN_FLOPS && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// A row-major matrix view with explicit strides (in elements).
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A contiguous row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Mat { data, row_stride: cols, col_stride: 1 }
    }
    /// The transpose of a contiguous row-major [rows, cols] matrix with `cols` columns:
    /// element (i, j) is data[j * cols + i].
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Mat { data, row_stride: 1, col_stride: cols }
    }
}

/// `out[m, n] (+)= a[m, k] · b[k, n]`; `out` is contiguous row-major with row stride `ldo`.
/// Threads are used for large products unless `allow_threads` is false (callers that already
/// run in parallel).
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    out: &mut [f32],
    ldo: usize,
    accumulate: bool,
    allow_threads: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |mat: &Mat, r: usize, c: usize| (r - 1) * mat.row_stride + (c - 1) * mat.col_stride;
    if k > 0 {
        assert!(last(&a, m, k) < a.data.len(), "gemm: lhs too short");
        assert!(last(&b, k, n) < b.data.len(), "gemm: rhs too short");
    }
    assert!((m - 1) * ldo + n <= out.len(), "gemm: dst too short");
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                out[r * ldo..r * ldo + n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: every index the product touches was bounds-checked above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            ldo as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(m, n, k, allow_threads),
        );
    }
}

/// `out[m, n] = x[m, k] · w[n, k]^T` (a linear layer's product).
pub fn matmul_bt(m: usize, n: usize, k: usize, x: &[f32], w: &[f32], out: &mut [f32], allow_threads: bool) {
    matmul(m, n, k, Mat::rows(x, k), Mat::transposed(w, k), out, n, false, allow_threads);
}
