//! A packed f32 GEMM with an AVX-512 micro-kernel. The `gemm` crate only enables its AVX-512
//! kernels with a nightly compiler; on stable it runs 8-wide AVX2, half of what these cores do.
//!
//! Layout follows the usual blocked scheme with the vector dimension along the output columns:
//! a [KC x NB] block of B is packed once per task and stays in L2, a [MR x KC] sliver of A
//! stays in L1, and the micro-kernel keeps an MR x NR tile of C in 24 zmm registers.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::gemm::Mat;
use super::gemm_bf16::PackedBf16;

const MR: usize = 12;
const NR: usize = 32;
const KC: usize = 384;
/// Output columns per task (a multiple of NR).
const NB: usize = 512;
/// Rows of A packed at a time inside a task (a multiple of MR).
const RC: usize = MR * 20;

/// Whether this CPU runs the AVX-512 path (checked once).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| is_x86_feature_detected!("avx512f"))
}

/// The right-hand side of a product: a strided matrix, the column matrix of a convolution
/// read straight from the image (never materialised), or the transpose of a weight packed in
/// bf16 at load (a linear layer at `--precision bf16`: its values widen to f32 exactly).
#[derive(Clone, Copy)]
pub enum Rhs<'a> {
    Mat(Mat<'a>),
    Conv(ConvRhs<'a>),
    Bf16T(&'a PackedBf16),
}

/// Column matrix of a convolution over one image x [C, H, W]: element (p, j) with
/// p = (ci, ky, kx) and j = (oy, ox) is x[ci, oy*stride + ky - pad_top, ox*stride + kx - pad_left],
/// zero outside the image.
#[derive(Clone, Copy)]
pub struct ConvRhs<'a> {
    pub x: &'a [f32],
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    /// Output width.
    pub ow: usize,
}

/// How a product is cut into tasks for `threads` workers, for a kernel of `mr`-row slivers,
/// `nr`-column panels and column blocks of up to `nb` columns.
pub(super) struct Split {
    pub panels: usize,
    pub col_blocks: usize,
    pub row_splits: usize,
    pub rows_per: usize,
}

impl Split {
    pub fn new(m: usize, n: usize, threads: usize, mr: usize, nr: usize, nb: usize) -> Split {
        // Column blocks of whole panels, as many as a multiple of the thread count so every
        // worker gets the same amount of work (9 blocks on 2 workers would leave one idle a ninth
        // of the time). Narrower column blocks come first: each task packs its own block of B
        // (for a linear layer, the weight), so splitting rows instead would pack the same
        // weights once per row split.
        let panels = n.div_ceil(nr);
        let mut col_blocks = panels.div_ceil(nb / nr);
        if threads > 1 {
            col_blocks = col_blocks.max(2 * threads).div_ceil(threads) * threads;
        }
        let col_blocks = col_blocks.min(panels);
        let row_splits = if threads > 1 && col_blocks < 2 * threads {
            (4 * threads).div_ceil(col_blocks).min(m.div_ceil(mr))
        } else {
            1
        };
        let rows_per = m.div_ceil(row_splits).div_ceil(mr) * mr;
        let row_splits = m.div_ceil(rows_per);
        Split { panels, col_blocks, row_splits, rows_per }
    }

    /// Task t's rows [r0, r0 + rows) and columns [c0, c1) of an [m, n] output.
    pub fn task(&self, t: usize, m: usize, n: usize, nr: usize) -> (usize, usize, usize, usize) {
        let (rs, cb) = (t / self.col_blocks, t % self.col_blocks);
        let r0 = rs * self.rows_per;
        let c0 = cb * self.panels / self.col_blocks * nr;
        let c1 = ((cb + 1) * self.panels / self.col_blocks * nr).min(n);
        (r0, self.rows_per.min(m - r0), c0, c1)
    }

    pub fn tasks(&self) -> usize {
        self.row_splits * self.col_blocks
    }

    /// Runs `tile(bufs, r0, rows, c0, c1)` for every task of an [m, n] output, over `threads`
    /// workers (1: the calling thread), each with its own packing buffers.
    pub fn run<B: Default>(
        &self,
        m: usize,
        n: usize,
        nr: usize,
        threads: usize,
        tile: impl Fn(&mut B, usize, usize, usize, usize) + Sync,
    ) {
        let task = |bufs: &mut B, t: usize| {
            let (r0, rows, c0, c1) = self.task(t, m, n, nr);
            tile(bufs, r0, rows, c0, c1);
        };
        if threads > 1 && self.tasks() > 1 {
            (0..self.tasks()).into_par_iter().for_each_init(B::default, task);
        } else {
            let mut bufs = B::default();
            (0..self.tasks()).for_each(|t| task(&mut bufs, t));
        }
    }
}

/// Packed A operands above this many values are packed per task instead of once up front.
const PREPACK_MAX: usize = 1 << 23;

#[derive(Clone, Copy)]
pub(super) struct OutPtr(pub *mut f32);
// SAFETY: tasks write disjoint tiles of the output (distinct row or column ranges).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// `out[m, n] (+)= a · b` as in `gemm::matmul`; the caller has bounds-checked `a`, `b`, `out`,
/// and `k > 0`. `threads` is the number of workers to split over (1: the calling thread).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Rhs,
    out: &mut [f32],
    ldo: usize,
    accumulate: bool,
    threads: usize,
) {
    // The kernel's instructions fault on a CPU without AVX-512: refuse rather than run them.
    assert!(available(), "gemm: this CPU has no AVX-512");
    let split = Split::new(m, n, threads, MR, NR, NB);
    let col_blocks = split.col_blocks;
    let ptr = OutPtr(out.as_mut_ptr());
    // When several tasks share the same rows of A, pack A once for all of them.
    let m_pad = m.div_ceil(MR) * MR;
    let prepacked_buf = (col_blocks > 1 && m_pad * k <= PREPACK_MAX).then(|| {
        let mut buf = PREPACK_BUF.take();
        prepack_a_into(&a, m, k, threads, &mut buf);
        buf
    });
    let prepacked = prepacked_buf.as_deref();
    split.run(m, n, NR, threads, |bufs: &mut (Vec<f32>, Vec<f32>), r0, rows, c0, c1| {
        let job = Job { a, b, k, ldo, accumulate, out: ptr, prepacked, m_pad };
        // SAFETY: the tile [r0, r0+rows) x [c0, c1) belongs to this task only and lies inside
        // `out` (checked by the caller).
        unsafe { job.run(r0, rows, c0, c1 - c0, bufs) };
    });
    if let Some(buf) = prepacked_buf {
        PREPACK_BUF.set(buf);
    }
}

/// A left operand packed once for several products on the calling thread (attention packs
/// each head's keys and values once for all its query blocks).
pub struct PackedA {
    data: Vec<f32>,
    m: usize,
    k: usize,
}

impl PackedA {
    /// Packs `a` [m, k]; the caller has bounds-checked it and `k > 0`.
    pub fn new(a: &Mat, m: usize, k: usize) -> Self {
        assert!(available(), "gemm: this CPU has no AVX-512");
        PackedA { data: prepack_a(a, m, k, 1), m, k }
    }
}

/// `out[m, n] (+)= A · b` on the calling thread with A packed; the caller has bounds-checked
/// `b` [k, n] and `out`.
pub fn matmul_packed(pa: &PackedA, n: usize, b: Rhs, out: &mut [f32], ldo: usize, accumulate: bool) {
    let unused = Mat { data: &[], row_stride: 0, col_stride: 0 };
    let m_pad = pa.m.div_ceil(MR) * MR;
    let job =
        Job { a: unused, b, k: pa.k, ldo, accumulate, out: OutPtr(out.as_mut_ptr()), prepacked: Some(&pa.data), m_pad };
    let mut bufs = (Vec::new(), Vec::new());
    // SAFETY: the whole [m, n] output is this call's; bounds checked by the caller.
    unsafe { job.run(0, pa.m, 0, n, &mut bufs) };
}

struct Job<'a> {
    a: Mat<'a>,
    b: Rhs<'a>,
    /// All of A packed: depth block p0 starts at p0 * m_pad, sliver s of it at s * kc * MR.
    prepacked: Option<&'a [f32]>,
    m_pad: usize,
    k: usize,
    ldo: usize,
    accumulate: bool,
    out: OutPtr,
}

impl Job<'_> {
    unsafe fn run(&self, r0: usize, rows: usize, c0: usize, cols: usize, bufs: &mut (Vec<f32>, Vec<f32>)) {
        let (apack, bpack) = bufs;
        let npanels = cols.div_ceil(NR);
        let mut tile = [0f32; MR * NR];
        let mut p0 = 0;
        while p0 < self.k {
            let kc = KC.min(self.k - p0);
            let load = self.accumulate || p0 > 0;
            match &self.b {
                Rhs::Mat(b) => pack_b(b, p0, kc, c0, cols, bpack),
                Rhs::Conv(cv) => pack_b_conv(cv, p0, kc, c0, cols, bpack),
                Rhs::Bf16T(w) => pack_b_bf16t(w, p0, kc, c0, cols, bpack),
            }
            let mut rr = r0;
            while rr < r0 + rows {
                let rc = RC.min(r0 + rows - rr);
                let apanel = match self.prepacked {
                    Some(pa) => pa[p0 * self.m_pad + (rr / MR) * kc * MR..].as_ptr(),
                    None => {
                        apack.resize(rc.div_ceil(MR) * kc * MR, 0.0);
                        pack_a(&self.a, rr, rc, p0, kc, apack);
                        apack.as_ptr()
                    }
                };
                for ip in 0..rc.div_ceil(MR) {
                    let ap = apanel.add(ip * kc * MR);
                    let tr = MR.min(rc - ip * MR);
                    let row = rr + ip * MR;
                    for jp in 0..npanels {
                        let bp = bpack.as_ptr().add(jp * kc * NR);
                        let tc = NR.min(cols - jp * NR);
                        let c = self.out.0.add(row * self.ldo + c0 + jp * NR);
                        if tr == MR && tc == NR {
                            kernel(kc, ap, bp, c, self.ldo, load);
                        } else {
                            kernel(kc, ap, bp, tile.as_mut_ptr(), NR, false);
                            store_edge_tile(&tile, NR, c, self.ldo, tr, tc, load);
                        }
                    }
                }
                rr += rc;
            }
            p0 += kc;
        }
    }
}

/// The `rows` x `cols` corner of a micro-tile computed into `tile` (row stride `nr`), stored
/// to or (`load`) added into `c` (row stride `ldc`): the edges of an output that a full tile
/// would overrun.
///
/// # Safety
/// `c` must be valid for `rows` rows of `cols` values at row stride `ldc`.
pub(super) unsafe fn store_edge_tile(
    tile: &[f32],
    nr: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    load: bool,
) {
    for i in 0..rows {
        let dst = c.add(i * ldc);
        for (j, &v) in tile[i * nr..i * nr + cols].iter().enumerate() {
            *dst.add(j) = if load { *dst.add(j) + v } else { v };
        }
    }
}

/// All of A [m, k] packed block by block in depth (layout in `Job::prepacked`).
fn prepack_a(a: &Mat, m: usize, k: usize, threads: usize) -> Vec<f32> {
    let mut all = Vec::new();
    prepack_a_into(a, m, k, threads, &mut all);
    all
}

thread_local! {
    /// The last product's packed A, kept for the next one on this thread: clearing a fresh
    /// buffer for every product cost ~2 % of a DiT forward. Taken while in use, so a product
    /// started inside another on the same thread just allocates its own.
    static PREPACK_BUF: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `prepack_a` into `all`, resized to fit (every value is written, padding included).
fn prepack_a_into(a: &Mat, m: usize, k: usize, threads: usize, all: &mut Vec<f32>) {
    let m_pad = m.div_ceil(MR) * MR;
    all.resize(m_pad * k, 0.0);
    let blocks: Vec<(usize, &mut [f32])> = {
        let mut v = Vec::new();
        let mut rest = all.as_mut_slice();
        let mut p0 = 0;
        while p0 < k {
            let kc = KC.min(k - p0);
            let (blk, tail) = rest.split_at_mut(m_pad * kc);
            v.push((p0, blk));
            rest = tail;
            p0 += kc;
        }
        v
    };
    let pack = |(p0, blk): (usize, &mut [f32])| {
        let kc = KC.min(k - p0);
        pack_a(a, 0, m, p0, kc, blk);
    };
    if threads > 1 {
        blocks.into_par_iter().for_each(pack);
    } else {
        blocks.into_iter().for_each(pack);
    }
}

/// Rows [r0, r0+rows) x depth [p0, p0+kc) of A as MR-row slivers, depth-major, zero-padded.
fn pack_a(a: &Mat, r0: usize, rows: usize, p0: usize, kc: usize, dst: &mut [f32]) {
    let slivers = rows.div_ceil(MR);
    // Full slivers are written whole below; only a partial last one is cleared first.
    for s in 0..slivers {
        let d = &mut dst[s * kc * MR..(s + 1) * kc * MR];
        let full = rows - s * MR >= MR;
        if !full {
            d.fill(0.0);
        }
        if a.row_stride == 1 && full {
            // Transposed storage (an attention head's values): a sliver's MR values at one
            // depth are contiguous.
            let base = r0 + s * MR + p0 * a.col_stride;
            for (p, dp) in d.chunks_exact_mut(MR).enumerate() {
                let src: &[f32; MR] = a.data[base + p * a.col_stride..][..MR].try_into().expect("MR values");
                let dst: &mut [f32; MR] = dp.try_into().expect("MR values");
                *dst = *src;
            }
            continue;
        }
        for i in 0..MR.min(rows - s * MR) {
            let base = (r0 + s * MR + i) * a.row_stride + p0 * a.col_stride;
            if a.col_stride == 1 {
                for (p, &v) in a.data[base..base + kc].iter().enumerate() {
                    d[p * MR + i] = v;
                }
            } else {
                for p in 0..kc {
                    d[p * MR + i] = a.data[base + p * a.col_stride];
                }
            }
        }
    }
}

/// Depth [p0, p0+kc) x columns [c0, c0+cols) of B as NR-column panels, depth-major,
/// zero-padded.
pub(super) fn pack_b(b: &Mat, p0: usize, kc: usize, c0: usize, cols: usize, dst: &mut Vec<f32>) {
    let panels = cols.div_ceil(NR);
    // Every value is written below (padding columns included), so the buffer is not cleared.
    dst.resize(panels * kc * NR, 0.0);
    for s in 0..panels {
        let d = &mut dst[s * kc * NR..(s + 1) * kc * NR];
        let w = NR.min(cols - s * NR);
        let col = c0 + s * NR;
        if b.col_stride == 1 {
            for (p, dp) in d.chunks_exact_mut(NR).enumerate() {
                let base = (p0 + p) * b.row_stride + col;
                dp[..w].copy_from_slice(&b.data[base..base + w]);
                dp[w..].fill(0.0);
            }
        } else if b.row_stride == 1 {
            // Transposed storage (a linear layer's weight): each column is contiguous in depth.
            if w == NR {
                // SAFETY: the panel's columns col..col+NR at depths p0..p0+kc lie inside
                // b.data (checked by the caller).
                unsafe { pack_b_transposed_panel(b, p0, kc, col, d) };
                continue;
            }
            for dp in d.chunks_exact_mut(NR) {
                dp[w..].fill(0.0);
            }
            for j in 0..w {
                let base = (col + j) * b.col_stride + p0;
                for (p, &v) in b.data[base..base + kc].iter().enumerate() {
                    d[p * NR + j] = v;
                }
            }
        } else {
            for (p, dp) in d.chunks_exact_mut(NR).enumerate() {
                for (j, v) in dp.iter_mut().enumerate() {
                    *v = if j < w { b.data[(p0 + p) * b.row_stride + (col + j) * b.col_stride] } else { 0.0 };
                }
            }
        }
    }
}

/// One full panel of transposed B (column j of the panel is contiguous in depth): 16 columns
/// x 16 depths at a time are loaded as 16 vectors, transposed in registers and stored as 16
/// rows of the panel, instead of 256 scattered scalar stores.
#[target_feature(enable = "avx512f")]
unsafe fn pack_b_transposed_panel(b: &Mat, p0: usize, kc: usize, col: usize, d: &mut [f32]) {
    let src = b.data.as_ptr();
    let cs = b.col_stride;
    let dst = d.as_mut_ptr();
    let mut p = 0;
    while p + 16 <= kc {
        for half in 0..NR / 16 {
            let mut r = [_mm512_setzero_ps(); 16];
            for (j, v) in r.iter_mut().enumerate() {
                let at = (col + half * 16 + j) * cs + p0 + p;
                // The weight streams from memory, 16 rows at once: ask for each row's line
                // PREFETCH_LINES ahead (a prefetch never faults; wrapping_add keeps the
                // address arithmetic defined past the end).
                _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(at + 16 * PREFETCH_LINES) as *const i8);
                *v = _mm512_loadu_ps(src.add(at));
            }
            transpose16(&mut r);
            for (t, v) in r.iter().enumerate() {
                _mm512_storeu_ps(dst.add((p + t) * NR + half * 16), *v);
            }
        }
        p += 16;
    }
    for j in 0..NR {
        let base = (col + j) * cs + p0;
        for q in p..kc {
            *dst.add(q * NR + j) = *src.add(base + q);
        }
    }
}

/// `pack_b` for the transpose of a packed bf16 weight w [n, k]: B[p, j] = w[j, p], widened
/// to f32 (exact). The weight's panels of 16 columns hold depth pairs as one 32-bit word per
/// column (low half the even depth), so a pair of panel rows is two vector operations.
pub(super) fn pack_b_bf16t(w: &PackedBf16, p0: usize, kc: usize, c0: usize, cols: usize, dst: &mut Vec<f32>) {
    assert!(c0 % 16 == 0 && c0 + cols <= w.n && p0 % 2 == 0 && p0 + kc <= w.k, "gemm: bf16 rhs out of range");
    let panels = cols.div_ceil(NR);
    dst.resize(panels * kc * NR, 0.0);
    // SAFETY: AVX-512 is checked by every entry point; reads stay inside the weight's panels
    // (checked above: its panel count covers column c0 + cols - 1, its pairs depth p0 + kc - 1)
    // and writes inside `dst`.
    unsafe { pack_b_bf16t_avx512(w, p0, kc, c0, cols, dst) }
}

#[target_feature(enable = "avx512f")]
unsafe fn pack_b_bf16t_avx512(w: &PackedBf16, p0: usize, kc: usize, c0: usize, cols: usize, dst: &mut [f32]) {
    let high = _mm512_set1_epi32(0xffff_0000u32 as i32);
    let (data, panel_len) = (w.data(), w.panel_len());
    for s in 0..cols.div_ceil(NR) {
        let d = dst.as_mut_ptr().add(s * kc * NR);
        for half in 0..NR / 16 {
            let col = c0 + s * NR + half * 16;
            if col >= c0 + cols {
                for p in 0..kc {
                    _mm512_storeu_ps(d.add(p * NR + half * 16), _mm512_setzero_ps());
                }
                continue;
            }
            // Columns of this panel past `cols` are the weight's own zero padding or columns
            // of the next block, which the kernel computes and the edge store drops.
            let src = data.as_ptr().add((col / 16) * panel_len + p0 * 16);
            for q in 0..kc.div_ceil(2) {
                let pair = _mm512_loadu_si512(src.add(q * 32) as *const __m512i);
                let even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(pair));
                _mm512_storeu_ps(d.add(2 * q * NR + half * 16), even);
                if 2 * q + 1 < kc {
                    let odd = _mm512_castsi512_ps(_mm512_and_si512(pair, high));
                    _mm512_storeu_ps(d.add((2 * q + 1) * NR + half * 16), odd);
                }
            }
        }
    }
}

/// How far ahead `pack_b_transposed_panel` prefetches each weight row, in cache lines.
const PREFETCH_LINES: usize = 8;

/// In-register transpose of a 16 x 16 block: r[i] lane j becomes r[j] lane i.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn transpose16(r: &mut [__m512; 16]) {
    // Pairs of rows interleaved by 1, then by 2 (as doubles), then 128-bit lanes twice.
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for i in 0..4 {
        let (a0, a1, b0, b1) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a0), _mm512_castps_pd(b0)));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a0), _mm512_castps_pd(b0)));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a1), _mm512_castps_pd(b1)));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a1), _mm512_castps_pd(b1)));
    }
    for h in 0..2 {
        for i in 0..4 {
            let (a, b) = (r[8 * h + i], r[8 * h + 4 + i]);
            t[8 * h + i] = _mm512_shuffle_f32x4::<0x88>(a, b);
            t[8 * h + 4 + i] = _mm512_shuffle_f32x4::<0xdd>(a, b);
        }
    }
    for i in 0..8 {
        r[i] = _mm512_shuffle_f32x4::<0x88>(t[i], t[8 + i]);
        r[8 + i] = _mm512_shuffle_f32x4::<0xdd>(t[i], t[8 + i]);
    }
}

/// `pack_b` for the column matrix of a convolution, read from the image.
pub(super) fn pack_b_conv(cv: &ConvRhs, p0: usize, kc: usize, c0: usize, cols: usize, dst: &mut Vec<f32>) {
    let panels = cols.div_ceil(NR);
    dst.clear();
    dst.resize(panels * kc * NR, 0.0);
    let (h, w, ow) = (cv.h, cv.w, cv.ow);
    let taps = cv.kh * cv.kw;
    for s in 0..panels {
        let width = NR.min(cols - s * NR);
        let col = c0 + s * NR;
        let (oy, ox) = (col / ow, col % ow);
        if cv.stride == 1 && width == NR && ox + NR <= ow {
            pack_conv_panel_row(cv, p0, kc, oy, ox, &mut dst[s * kc * NR..(s + 1) * kc * NR]);
            continue;
        }
        for p in 0..kc {
            let (ci, tap) = ((p0 + p) / taps, (p0 + p) % taps);
            let (ky, kx) = (tap / cv.kw, tap % cv.kw);
            let plane = &cv.x[ci * h * w..(ci + 1) * h * w];
            let d = &mut dst[s * kc * NR + p * NR..][..width];
            // Runs of the panel that stay on one output row.
            let mut j = 0;
            while j < width {
                let (oy, ox) = ((col + j) / ow, (col + j) % ow);
                let seg = (ow - ox).min(width - j);
                let run = &mut d[j..j + seg];
                j += seg;
                let iy = (oy * cv.stride + ky) as isize - cv.pad_top as isize;
                if iy < 0 || iy >= h as isize {
                    continue; // zeros already
                }
                let row = &plane[iy as usize * w..(iy as usize + 1) * w];
                let x0 = (ox * cv.stride + kx) as isize - cv.pad_left as isize;
                if cv.stride == 1 {
                    // Input columns x0 + t for t in 0..seg, clipped to the row.
                    let t0 = ((-x0).max(0) as usize).min(seg);
                    let t1 = ((w as isize - x0).max(0) as usize).min(seg);
                    if t0 == 0 && t1 == NR {
                        // The common case, a whole panel inside the row: a fixed-size copy the
                        // compiler turns into two vector moves instead of a memmove call.
                        let src: &[f32; NR] = row[x0 as usize..x0 as usize + NR].try_into().expect("NR values");
                        let dst: &mut [f32; NR] = run.try_into().expect("NR values");
                        *dst = *src;
                    } else if t1 > t0 {
                        let s0 = (x0 + t0 as isize) as usize;
                        for (d, &v) in run[t0..t1].iter_mut().zip(&row[s0..s0 + (t1 - t0)]) {
                            *d = v;
                        }
                    }
                } else {
                    for (t, v) in run.iter_mut().enumerate() {
                        let ix = x0 + (t * cv.stride) as isize;
                        if ix >= 0 && ix < w as isize {
                            *v = row[ix as usize];
                        }
                    }
                }
            }
        }
    }
}

/// One full panel of a stride-1 convolution whose NR output pixels lie on one output row
/// (every panel when the output width is a multiple of NR): the depth index advances through
/// (channel, ky, kx) without divisions, and a panel row is one fixed-size copy unless it
/// touches the padding.
fn pack_conv_panel_row(cv: &ConvRhs, p0: usize, kc: usize, oy: usize, ox: usize, d: &mut [f32]) {
    let (h, w) = (cv.h, cv.w);
    let taps = cv.kh * cv.kw;
    let (mut ci, tap) = (p0 / taps, p0 % taps);
    let (mut ky, mut kx) = (tap / cv.kw, tap % cv.kw);
    for run in d[..kc * NR].chunks_exact_mut(NR) {
        let iy = (oy + ky) as isize - cv.pad_top as isize;
        if iy >= 0 && iy < h as isize {
            let row = &cv.x[ci * h * w + iy as usize * w..][..w];
            let x0 = (ox + kx) as isize - cv.pad_left as isize;
            if x0 >= 0 && x0 as usize + NR <= w {
                let src: &[f32; NR] = row[x0 as usize..x0 as usize + NR].try_into().expect("NR values");
                let dst: &mut [f32; NR] = run.try_into().expect("NR values");
                *dst = *src;
            } else {
                for (t, v) in run.iter_mut().enumerate() {
                    let ix = x0 + t as isize;
                    if ix >= 0 && ix < w as isize {
                        *v = row[ix as usize];
                    }
                }
            }
        }
        kx += 1;
        if kx == cv.kw {
            kx = 0;
            ky += 1;
            if ky == cv.kh {
                ky = 0;
                ci += 1;
            }
        }
    }
}

/// C[MR, NR] (+)= A-sliver · B-panel over depth `kc`; `c` has row stride `ldc`.
#[target_feature(enable = "avx512f")]
unsafe fn kernel(kc: usize, mut a: *const f32, mut b: *const f32, c: *mut f32, ldc: usize, load: bool) {
    let mut lo = [_mm512_setzero_ps(); MR];
    let mut hi = [_mm512_setzero_ps(); MR];
    for _ in 0..kc {
        let b0 = _mm512_loadu_ps(b);
        let b1 = _mm512_loadu_ps(b.add(16));
        for i in 0..MR {
            let ai = _mm512_set1_ps(*a.add(i));
            lo[i] = _mm512_fmadd_ps(ai, b0, lo[i]);
            hi[i] = _mm512_fmadd_ps(ai, b1, hi[i]);
        }
        a = a.add(MR);
        b = b.add(NR);
    }
    for i in 0..MR {
        let row = c.add(i * ldc);
        let (mut v0, mut v1) = (lo[i], hi[i]);
        if load {
            v0 = _mm512_add_ps(v0, _mm512_loadu_ps(row));
            v1 = _mm512_add_ps(v1, _mm512_loadu_ps(row.add(16)));
        }
        _mm512_storeu_ps(row, v0);
        _mm512_storeu_ps(row.add(16), v1);
    }
}
