//! Matrix products for the CPU backend: our AVX-512 kernel (gemm_avx512.rs) where the CPU has
//! it, the `gemm` crate otherwise (on stable Rust the crate runs 8-wide AVX2 kernels only; the
//! side-by-side numbers are in docs/perf-cpu.md and `cargo bench -- gemm`).

/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_MIN_FLOPS: usize = 1 << 21;

pub(super) fn threads(m: usize, n: usize, k: usize, allow_threads: bool) -> usize {
    if allow_threads && m * n * k >= PARALLEL_MIN_FLOPS {
        rayon::current_num_threads()
    } else {
        1
    }
}

thread_local! {
    /// This thread's AMX choice (`None`: the environment's, see `backend::switches`). A CPU
    /// session's thread pool sets it on each of its threads, so sessions can differ.
    static AMX_CHOICE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Let (or stop) products on the calling thread use the AMX kernel.
pub fn set_thread_amx(on: bool) {
    AMX_CHOICE.with(|c| c.set(Some(on)));
}

/// Whether products on this thread may use the AMX kernel (where the CPU has it).
fn amx_allowed() -> bool {
    static FROM_ENV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    AMX_CHOICE
        .with(|c| c.get())
        .unwrap_or_else(|| *FROM_ENV.get_or_init(|| crate::backend::switches::DevSwitches::from_env().cpu_amx))
}

/// Which implementation carries a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Our packed AVX-512 kernel (x86-64 CPUs with AVX-512F only).
    Avx512,
    /// Our AMX kernel at f32 accuracy (gemm_amx.rs; Sapphire Rapids and later, on Linux).
    Amx,
    /// The AMX kernel with one bf16 part per operand: for operands that hold bf16 values (the
    /// products at `--precision bf16`), where it gives the f32 kernel's result six times
    /// faster. Never `best()`: the caller knows its operands (`Engine::for_bf16_values`).
    AmxBf16Values,
    /// The `gemm` crate.
    GemmCrate,
}

impl Engine {
    /// The fastest engine this CPU runs (AMX only where this thread allows it).
    pub fn best() -> Engine {
        #[cfg(target_arch = "x86_64")]
        {
            if amx_allowed() && super::gemm_amx::available() {
                return Engine::Amx;
            }
            if super::gemm_avx512::available() {
                return Engine::Avx512;
            }
        }
        Engine::GemmCrate
    }

    /// The engine for operands that hold bf16 values (at `--precision bf16`): one-part AMX
    /// where `best()` is AMX and the one-part kernel passed its self-check (else the f32 AMX
    /// kernel, whose result on bf16 values is the same).
    pub fn for_bf16_values() -> Engine {
        match Engine::best() {
            #[cfg(target_arch = "x86_64")]
            Engine::Amx if super::gemm_bf16::amx_passes_self_check() => Engine::AmxBf16Values,
            e => e,
        }
    }

    /// How reports name the engine.
    pub fn label(self) -> &'static str {
        match self {
            Engine::Amx => "AMX",
            Engine::AmxBf16Values => "AMX bf16",
            Engine::Avx512 => "AVX-512",
            Engine::GemmCrate => "gemm crate",
        }
    }

    /// Every engine this CPU runs, the fastest first.
    pub fn available() -> Vec<Engine> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if super::gemm_amx::available() {
                v.push(Engine::Amx);
            }
            if super::gemm_avx512::available() {
                v.push(Engine::Avx512);
            }
        }
        v.push(Engine::GemmCrate);
        v
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
#[allow(clippy::too_many_arguments)]
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
    // A few rows (a conditioning vector) are bandwidth-bound: packing the weight would only
    // add traffic, and the crate handles that case directly.
    let engine = if m < 4 { Engine::GemmCrate } else { Engine::best() };
    matmul_with(engine, m, n, k, a, b, out, ldo, accumulate, allow_threads);
}

/// `matmul` on a chosen engine (for the comparison benchmarks). Panics if `engine` is not
/// available on this CPU.
#[allow(clippy::too_many_arguments)]
pub fn matmul_with(
    engine: Engine,
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
    let threads = threads(m, n, k, allow_threads);
    if engine != Engine::GemmCrate {
        #[cfg(target_arch = "x86_64")]
        {
            let rhs = super::gemm_avx512::Rhs::Mat(b);
            if engine == Engine::Amx {
                super::gemm_amx::matmul(m, n, k, a, rhs, out, ldo, accumulate, threads);
            } else if engine == Engine::AmxBf16Values {
                super::gemm_amx::matmul_bf16_values(m, n, k, a, rhs, out, ldo, accumulate, threads);
            } else {
                super::gemm_avx512::matmul(m, n, k, a, rhs, out, ldo, accumulate, threads);
            }
            return;
        }
        #[cfg(not(target_arch = "x86_64"))]
        panic!("gemm: {engine:?} engine on a non-x86 CPU");
    }
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
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
            parallelism,
        );
    }
}

/// A left operand for several products on the calling thread: packed once where the engine
/// packs (AVX-512), read in place otherwise.
pub struct Lhs<'a> {
    mat: Mat<'a>,
    m: usize,
    k: usize,
    #[cfg(target_arch = "x86_64")]
    packed: Option<super::gemm_avx512::PackedA>,
}

impl<'a> Lhs<'a> {
    pub fn new(mat: Mat<'a>, m: usize, k: usize) -> Self {
        if m > 0 && k > 0 {
            assert!((m - 1) * mat.row_stride + (k - 1) * mat.col_stride < mat.data.len(), "gemm: lhs too short");
        }
        #[cfg(target_arch = "x86_64")]
        let packed = (m >= 4 && k > 0 && Engine::best() != Engine::GemmCrate)
            .then(|| super::gemm_avx512::PackedA::new(&mat, m, k));
        Lhs {
            mat,
            m,
            k,
            #[cfg(target_arch = "x86_64")]
            packed,
        }
    }

    /// `out[m, n] (+)= self · b[k, n]` on the calling thread.
    pub fn matmul(&self, n: usize, b: Mat, out: &mut [f32], ldo: usize, accumulate: bool) {
        #[cfg(target_arch = "x86_64")]
        if let Some(pa) = &self.packed {
            if n == 0 {
                return;
            }
            assert!((self.k - 1) * b.row_stride + (n - 1) * b.col_stride < b.data.len(), "gemm: rhs too short");
            assert!((self.m - 1) * ldo + n <= out.len(), "gemm: dst too short");
            super::gemm_avx512::matmul_packed(pa, n, super::gemm_avx512::Rhs::Mat(b), out, ldo, accumulate);
            return;
        }
        matmul(self.m, n, self.k, self.mat, b, out, ldo, accumulate, false);
    }
}

/// `out[m, n] = x[m, k] · w[n, k]^T` (a linear layer's product).
pub fn matmul_bt(m: usize, n: usize, k: usize, x: &[f32], w: &[f32], out: &mut [f32], allow_threads: bool) {
    matmul(m, n, k, Mat::rows(x, k), Mat::transposed(w, k), out, n, false, allow_threads);
}
