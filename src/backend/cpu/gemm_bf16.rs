//! bf16 matrix products with f32 accumulation for the CPU backend at `--precision bf16`: one
//! bf16 x bf16 product per multiply-add (exact in f32), summed in f32, the numerics of the CUDA
//! path's bf16 GEMMs. Weights are rounded to bf16 and packed once, at load ([`PackedBf16`]);
//! activations are rounded to bf16 rows per product ([`Bf16Rows`]).
//!
//! Engines (every one sums exact bf16 x bf16 products in f32; they differ only in the order of
//! the sums), chosen once per process by [`Bf16Engine::best`]:
//! - AMX tiles (`tdpbf16ps`, gemm_amx.rs with one part): 16 x 16 x 32 multiply-adds per
//!   instruction, where the CPU and OS offer AMX and a self-check against the portable engine
//!   passes on first use.
//! - An AVX512-BF16 micro-kernel (`vdpbf16ps`, 32 multiply-adds per instruction), reading the
//!   packed weight in place, where it outpaces f32 FMAs (timed once; on some CPUs it issues
//!   at half an instruction per cycle, below the FMA kernel's rate); always for products of a
//!   few rows, which are bound by the weight stream rather than by arithmetic.
//! - The f32 AVX-512 FMA kernel (gemm_avx512.rs) on bf16 values: the weight widened to f32
//!   while its block is packed (exact), the left operand rounded to bf16 first; a product of
//!   two bf16 values is exact in f32, so this is the same arithmetic as the bf16 instructions.
//! - A portable loop that adds the same products in the same order as `vdpbf16ps` (for every
//!   pair of k, the odd product then the even one), so both give the same bits for normal
//!   numbers (`vdpbf16ps` treats subnormal inputs and outputs as zero).

use rayon::prelude::*;

/// Columns of a packed panel (one 512-bit vector of f32 results).
const PANEL: usize = 16;
/// Rows of the micro-kernel's tile.
const MR: usize = 8;
/// k pairs per cache block: a block of two panels (16 KiB) stays in L1 while every row tile of
/// the left operand passes over it.
const KC_PAIRS: usize = 128;
/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_MIN_FLOPS: usize = 1 << 21;

/// Rounds to the nearest bf16, ties to even (as the CUDA path's `f32_to_bf16`); NaN stays NaN.
#[inline]
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `x` rounded to the nearest bf16 value, kept as f32.
#[inline]
pub fn round_bf16(x: f32) -> f32 {
    bf16_to_f32(bf16_bits(x))
}

/// Rounds every value to bf16 in place (parallel over large slices).
pub fn round_slice(v: &mut [f32]) {
    v.par_chunks_mut(1 << 14).for_each(|c| c.iter_mut().for_each(|x| *x = round_bf16(*x)));
}

/// Whether every value is already a bf16 value (so rounding would change nothing).
pub fn is_bf16(v: &[f32]) -> bool {
    v.par_chunks(1 << 14).all(|c| c.iter().fold(0u32, |acc, x| acc | (x.to_bits() & 0xFFFF)) == 0)
}

/// A weight [n, k] in bf16, packed for the micro-kernel: panels of 16 rows (output columns),
/// each panel k-pair-major, `[panel][k / 2][16][2]`; k padded to even and n to whole panels
/// with zeros.
pub struct PackedBf16 {
    pub n: usize,
    pub k: usize,
    data: Vec<u16>,
}

impl PackedBf16 {
    fn kp(k: usize) -> usize {
        k.next_multiple_of(2)
    }

    /// Packs `w` [n, k] (row-major), each value rounded to bf16.
    pub fn from_f32(w: &[f32], n: usize, k: usize) -> Self {
        Self::from_fn(n, k, |r| {
            let row = &w[r * k..(r + 1) * k];
            move |c| bf16_bits(row[c])
        })
    }

    /// Packs `w` [n, k] given as bf16 bits (row-major), e.g. a bf16 tensor of a file.
    pub fn from_bits(w: &[u16], n: usize, k: usize) -> Self {
        Self::from_fn(n, k, |r| {
            let row = &w[r * k..(r + 1) * k];
            move |c| row[c]
        })
    }

    fn from_fn<F: Fn(usize) -> u16>(n: usize, k: usize, row: impl Fn(usize) -> F + Sync) -> Self {
        Self::from_panels(n, k, |p, dst| {
            for j in 0..PANEL.min(n - p * PANEL) {
                let get = row(p * PANEL + j);
                for c in 0..k {
                    dst[(c / 2) * 2 * PANEL + 2 * j + (c & 1)] = get(c);
                }
            }
        })
    }

    /// Packs by panels: `fill(p, dst)` writes panel p (rows 16p..16p+16, zero-initialised).
    fn from_panels(n: usize, k: usize, fill: impl Fn(usize, &mut [u16]) + Sync) -> Self {
        assert!(n > 0 && k > 0, "gemm_bf16: empty operand [{n}, {k}]");
        let panel_len = Self::kp(k) * PANEL;
        let mut data = vec![0u16; n.div_ceil(PANEL) * panel_len];
        data.par_chunks_mut(panel_len).enumerate().for_each(|(p, dst)| fill(p, dst));
        PackedBf16 { n, k, data }
    }

    /// The packed values (layout in the type's notes).
    pub(super) fn data(&self) -> &[u16] {
        &self.data
    }

    /// Values per panel of 16 rows: `k` rounded up to even, times 16.
    pub(super) fn panel_len(&self) -> usize {
        Self::kp(self.k) * PANEL
    }

    /// Bytes the packed values take.
    pub fn bytes(&self) -> usize {
        self.data.len() * 2
    }

    /// Row `r` (an output column's weights) as f32 values.
    pub fn row_f32(&self, r: usize) -> Vec<f32> {
        let base = (r / PANEL) * Self::kp(self.k) * PANEL;
        let j = r % PANEL;
        (0..self.k).map(|c| bf16_to_f32(self.data[base + (c / 2) * 2 * PANEL + 2 * j + (c & 1)])).collect()
    }

    /// The whole weight [n, k] as f32 values (for the few ops that want them row-major).
    pub fn to_f32(&self) -> Vec<f32> {
        (0..self.n).flat_map(|r| self.row_f32(r)).collect()
    }
}

/// Left operand rows [m, k] in bf16, k padded to even with a zero.
pub struct Bf16Rows {
    pub m: usize,
    pub k: usize,
    data: Vec<u16>,
}

impl Bf16Rows {
    /// `x` [m, k] rounded to bf16.
    pub fn from_f32(x: &[f32], m: usize, k: usize) -> Self {
        let kp = PackedBf16::kp(k);
        let mut data = vec![0u16; m * kp];
        data.par_chunks_mut(kp).zip(x.par_chunks(k)).for_each(|(d, s)| {
            for (d, &v) in d.iter_mut().zip(s) {
                *d = bf16_bits(v);
            }
        });
        Bf16Rows { m, k, data }
    }
}

/// Which implementation carries a bf16 product (see the module notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Engine {
    /// `tdpbf16ps` on AMX tiles (Sapphire Rapids and later, on Linux).
    Amx,
    /// `vdpbf16ps` (x86-64 CPUs with AVX512-BF16: Cooper Lake, Sapphire Rapids, Zen 4 and later).
    Avx512Bf16,
    /// The f32 AVX-512 FMA kernel on bf16 values (x86-64 CPUs with AVX-512F).
    Avx512Fma,
    /// The same sums in plain Rust (any CPU).
    Portable,
}

/// Products with fewer rows than this read the weight in place (`vdpbf16ps` where the CPU
/// has it): packing the weight for so few rows costs more than the slower instruction.
/// Measured (2-core Xeon VM, `cargo bench -- gemm_bf16`, 4608 x 1152 weight): 8 rows 141
/// against 60 GFLOP/s, 32 rows 115 against 100, 128 rows 128 against 167 (in place first).
const FEW_ROWS: usize = 64;

impl Bf16Engine {
    /// The engine for products of many rows on this thread (AMX only where the thread allows
    /// it, as for f32 products: `PERCEPT_CPU_AMX=0`).
    pub fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use super::gemm::Engine;
            if Engine::best() == Engine::Amx && amx_passes_self_check() {
                return Bf16Engine::Amx;
            }
            if has_avx512_bf16() && vdpbf16ps_outpaces_fma() {
                return Bf16Engine::Avx512Bf16;
            }
            if super::gemm_avx512::available() {
                return Bf16Engine::Avx512Fma;
            }
        }
        Bf16Engine::Portable
    }

    /// The engine for a product of `m` rows.
    pub fn for_rows(m: usize) -> Self {
        if m < FEW_ROWS && has_avx512_bf16() {
            return Bf16Engine::Avx512Bf16;
        }
        Self::best()
    }

    pub fn label(self) -> &'static str {
        match self {
            Bf16Engine::Amx => "AMX bf16",
            Bf16Engine::Avx512Bf16 => "AVX512-BF16",
            Bf16Engine::Avx512Fma => "AVX-512 FMA on bf16 values",
            Bf16Engine::Portable => "portable bf16",
        }
    }

    /// Every engine this CPU runs (AMX whether or not its self-check passed: the tests and
    /// benchmarks want to see it fail).
    pub fn available() -> Vec<Self> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if super::gemm_amx::available() {
                v.push(Bf16Engine::Amx);
            }
            if has_avx512_bf16() {
                v.push(Bf16Engine::Avx512Bf16);
            }
            if super::gemm_avx512::available() {
                v.push(Bf16Engine::Avx512Fma);
            }
        }
        v.push(Bf16Engine::Portable);
        v
    }
}

fn has_avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx512bf16") && is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether `vdpbf16ps` does more multiply-adds a second than f32 FMAs on this CPU: timed once
/// (about a millisecond), each loop keeping 16 independent sums in flight, best of three
/// alternating rounds. It must win by a clear margin (1.25x), so a CPU near the line makes
/// the same choice every run. Measured: 0.45x on a 2-core Xeon VM with AVX512-BF16 (PERF.md).
#[cfg(target_arch = "x86_64")]
fn vdpbf16ps_outpaces_fma() -> bool {
    use std::sync::OnceLock;
    static FASTER: OnceLock<bool> = OnceLock::new();
    *FASTER.get_or_init(|| {
        let (mut dp, mut fma) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..3 {
            // SAFETY: callers checked AVX512-BF16 (which implies AVX-512F here).
            let t = std::time::Instant::now();
            std::hint::black_box(unsafe { avx512::dp_loop(20_000) });
            dp = dp.min(t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            std::hint::black_box(unsafe { avx512::fma_loop(20_000) });
            fma = fma.min(t.elapsed().as_secs_f64());
        }
        // Same instruction count; a vdpbf16ps does twice an FMA's multiply-adds.
        let ratio = 2.0 * fma / dp;
        log::debug!("gemm_bf16: vdpbf16ps does {ratio:.2}x the multiply-adds a second of f32 FMAs");
        ratio >= 1.25
    })
}

/// Whether the AMX bf16 product agrees with the portable engine on a small product with
/// partial tiles and several depth steps (checked once, on first use, where AMX runs). The
/// AMX kernel is written to the same layout as the f32 AMX kernel, which ran on AMX hardware,
/// but a wrong answer there must not reach users: on a mismatch the next engine is used.
#[cfg(target_arch = "x86_64")]
pub(super) fn amx_passes_self_check() -> bool {
    use std::sync::OnceLock;
    static PASSES: OnceLock<bool> = OnceLock::new();
    *PASSES.get_or_init(|| {
        let (m, n, k) = (45, 70, 611);
        let x = test_values(11, m * k);
        let w = PackedBf16::from_f32(&test_values(12, n * k), n, k);
        let mut want = vec![0f32; m * n];
        matmul_bt_with(Bf16Engine::Portable, &Bf16Rows::from_f32(&x, m, k), &w, &mut want, n, false);
        let mut got = vec![f32::NAN; m * n];
        matmul_bt_f32_with(Bf16Engine::Amx, &x, m, k, &w, &mut got, false);
        let ok = want.iter().zip(&got).all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + a.abs()));
        if !ok {
            log::warn!("gemm_bf16: the AMX bf16 product failed its self-check; using the next engine");
        }
        ok
    })
}

/// Deterministic values in [-1, 1) for self-checks and tests.
pub(crate) fn test_values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `out[m, n] = round_bf16(x)[m, k] · w[n, k]^T`, f32 results, on the engine for `m` rows.
/// Threads for large products unless `allow_threads` is false.
pub fn matmul_bt_f32(x: &[f32], m: usize, k: usize, w: &PackedBf16, out: &mut [f32], allow_threads: bool) {
    matmul_bt_f32_with(Bf16Engine::for_rows(m), x, m, k, w, out, allow_threads)
}

/// `matmul_bt_f32` on a chosen engine. Panics if the engine is not available.
pub fn matmul_bt_f32_with(
    engine: Bf16Engine,
    x: &[f32],
    m: usize,
    k: usize,
    w: &PackedBf16,
    out: &mut [f32],
    allow_threads: bool,
) {
    let n = w.n;
    assert!(k == w.k && x.len() >= m * k && out.len() >= m * n, "gemm_bf16: {m}x{k} by [{n}, {}]", w.k);
    if m == 0 {
        return;
    }
    match engine {
        #[cfg(target_arch = "x86_64")]
        Bf16Engine::Amx | Bf16Engine::Avx512Fma => {
            use super::gemm::{threads, Mat};
            use super::gemm_avx512::Rhs;
            let threads = threads(m, n, k, allow_threads);
            if engine == Bf16Engine::Amx {
                // The AMX packing rounds A to bf16 itself.
                let a = Mat::rows(&x[..m * k], k);
                super::gemm_amx::matmul(m, n, k, a, Rhs::Bf16T(w), out, n, false, threads);
            } else {
                let rounded;
                let x = if is_bf16(&x[..m * k]) {
                    &x[..m * k]
                } else {
                    rounded = x[..m * k].iter().map(|&v| round_bf16(v)).collect::<Vec<f32>>();
                    &rounded
                };
                super::gemm_avx512::matmul(m, n, k, Mat::rows(x, k), Rhs::Bf16T(w), out, n, false, threads);
            }
        }
        _ => matmul_bt_with(engine, &Bf16Rows::from_f32(&x[..m * k], m, k), w, out, n, allow_threads),
    }
}

/// `out[i * ldo + j] = (a · w^T)[i, j]`: `matmul_bt` into rows `ldo` apart (a band of a
/// convolution's output planes), on a chosen engine. Panics if the engine is not available.
pub fn matmul_bt_with(
    engine: Bf16Engine,
    a: &Bf16Rows,
    w: &PackedBf16,
    out: &mut [f32],
    ldo: usize,
    allow_threads: bool,
) {
    let (m, n, k) = (a.m, w.n, w.k);
    assert_eq!(a.k, k, "gemm_bf16: a has {} columns, w {}", a.k, k);
    assert!(ldo >= n && (m == 0 || out.len() >= (m - 1) * ldo + n), "gemm_bf16: dst too short");
    if m == 0 {
        return;
    }
    assert!(
        engine == Bf16Engine::Portable || (engine == Bf16Engine::Avx512Bf16 && has_avx512_bf16()),
        "gemm_bf16: {engine:?} does not take bf16 rows on this CPU"
    );
    let pairs = n.div_ceil(PANEL).div_ceil(2);
    let threads = if allow_threads && m * n * k >= PARALLEL_MIN_FLOPS { rayon::current_num_threads() } else { 1 };
    let dst = SendPtr(out.as_mut_ptr());
    let run = |range: std::ops::Range<usize>| {
        let dst = &dst;
        for pp in range {
            // SAFETY: each panel pair writes only its own 32 columns of `out` (bounds checked
            // above); ranges of pairs are disjoint between threads.
            unsafe { panel_pair(engine, a, w, pp, dst.0, ldo) };
        }
    };
    if threads <= 1 || pairs == 1 {
        run(0..pairs);
    } else {
        // More chunks than threads: a neighbour's build on a shared machine then slows one
        // thread without idling the other.
        let chunks = (threads * 4).min(pairs);
        (0..chunks).into_par_iter().for_each(|c| run(c * pairs / chunks..(c + 1) * pairs / chunks));
    }
}

struct SendPtr(*mut f32);
// SAFETY: threads write disjoint columns through it (see `matmul_bt_with`).
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// Columns 32*pp .. 32*pp+32 of the product, all rows, in k blocks.
unsafe fn panel_pair(engine: Bf16Engine, a: &Bf16Rows, w: &PackedBf16, pp: usize, out: *mut f32, ldo: usize) {
    let kp = PackedBf16::kp(w.k);
    let kpairs = kp / 2;
    let panels = w.n.div_ceil(PANEL);
    let np = if 2 * pp + 1 < panels { 2 } else { 1 };
    let col0 = pp * 2 * PANEL;
    let ncols = (w.n - col0).min(np * PANEL);
    let panel_len = kp * PANEL;
    let b_base = w.data.as_ptr().add(2 * pp * panel_len);
    let mut kb = 0;
    while kb < kpairs {
        let kn = KC_PAIRS.min(kpairs - kb);
        let mut i0 = 0;
        while i0 < a.m {
            let rows = MR.min(a.m - i0);
            let tile = Tile {
                a: a.data.as_ptr().add(i0 * kp + 2 * kb),
                lda: kp,
                b: b_base.add(kb * 2 * PANEL),
                panel_len,
                kpairs: kn,
                c: out.add(i0 * ldo + col0),
                ldc: ldo,
                ncols,
                accumulate: kb > 0,
            };
            match engine {
                #[cfg(target_arch = "x86_64")]
                Bf16Engine::Avx512Bf16 => avx512::tile(&tile, rows, np),
                _ => portable_tile(&tile, rows, np),
            }
            i0 += MR;
        }
        kb += kn;
    }
}

/// One micro-tile: `rows` x `ncols` outputs over `kpairs` pairs of k.
struct Tile {
    a: *const u16,
    lda: usize,
    b: *const u16,
    panel_len: usize,
    kpairs: usize,
    c: *mut f32,
    ldc: usize,
    ncols: usize,
    accumulate: bool,
}

unsafe fn portable_tile(t: &Tile, rows: usize, np: usize) {
    let mut acc = [[0f32; 2 * PANEL]; MR];
    for (r, acc_r) in acc.iter_mut().enumerate().take(rows) {
        for (j, v) in acc_r.iter_mut().enumerate().take(t.ncols) {
            *v = if t.accumulate { *t.c.add(r * t.ldc + j) } else { 0.0 };
        }
    }
    for kk in 0..t.kpairs {
        for (r, acc_r) in acc.iter_mut().enumerate().take(rows) {
            let a0 = bf16_to_f32(*t.a.add(r * t.lda + 2 * kk));
            let a1 = bf16_to_f32(*t.a.add(r * t.lda + 2 * kk + 1));
            for p in 0..np {
                let b = t.b.add(p * t.panel_len + kk * 2 * PANEL);
                for j in 0..PANEL {
                    let v = &mut acc_r[p * PANEL + j];
                    // vdpbf16ps's order: the odd element's product first.
                    *v += a1 * bf16_to_f32(*b.add(2 * j + 1));
                    *v += a0 * bf16_to_f32(*b.add(2 * j));
                }
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate().take(rows) {
        for (j, v) in acc_r.iter().enumerate().take(t.ncols) {
            *t.c.add(r * t.ldc + j) = *v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Tile, PANEL};
    use std::arch::x86_64::*;

    /// `iters` x 16 independent `vdpbf16ps` (the calibration in `vdpbf16ps_outpaces_fma`).
    #[target_feature(enable = "avx512bf16,avx512f")]
    pub(super) unsafe fn dp_loop(iters: usize) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 16];
        let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(std::hint::black_box(0x3f80_3f80)));
        let b: __m512bh = std::mem::transmute(_mm512_set1_epi32(std::hint::black_box(0x3f00_3f00)));
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_dpbf16_ps(*v, a, b);
            }
        }
        acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
    }

    /// `iters` x 16 independent f32 FMAs.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma_loop(iters: usize) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 16];
        let a = _mm512_set1_ps(std::hint::black_box(1.0));
        let b = _mm512_set1_ps(std::hint::black_box(0.5));
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(a, b, *v);
            }
        }
        acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
    }

    pub(super) unsafe fn tile(t: &Tile, rows: usize, np: usize) {
        macro_rules! go {
            ($($r:literal),*) => {
                match (rows, np) {
                    $(($r, 2) => kernel::<$r, 2>(t), ($r, _) => kernel::<$r, 1>(t),)*
                    _ => unreachable!("gemm_bf16: {rows} rows"),
                }
            };
        }
        go!(1, 2, 3, 4, 5, 6, 7, 8)
    }

    #[target_feature(enable = "avx512bf16,avx512f,avx512bw")]
    unsafe fn kernel<const R: usize, const NP: usize>(t: &Tile) {
        let mut acc = [[_mm512_setzero_ps(); NP]; R];
        // Output columns of each panel that exist (the last panel may be partial).
        let mask = |p: usize| -> __mmask16 {
            let valid = t.ncols.saturating_sub(p * PANEL).min(PANEL);
            ((1u32 << valid) - 1) as __mmask16
        };
        if t.accumulate {
            for (r, acc_r) in acc.iter_mut().enumerate() {
                for (p, v) in acc_r.iter_mut().enumerate() {
                    *v = _mm512_maskz_loadu_ps(mask(p), t.c.add(r * t.ldc + p * PANEL));
                }
            }
        }
        for kk in 0..t.kpairs {
            let mut b = [_mm512_setzero_si512(); NP];
            for (p, v) in b.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(t.b.add(p * t.panel_len + kk * 2 * PANEL) as *const _);
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let pair = (t.a.add(r * t.lda + 2 * kk) as *const u32).read_unaligned();
                let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair as i32));
                for (p, v) in acc_r.iter_mut().enumerate() {
                    *v = _mm512_dpbf16_ps(*v, a, std::mem::transmute::<__m512i, __m512bh>(b[p]));
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (p, v) in acc_r.iter().enumerate() {
                _mm512_mask_storeu_ps(t.c.add(r * t.ldc + p * PANEL), mask(p), *v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3F80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even (1.0).
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert!(round_bf16(f32::NAN).is_nan());
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
        assert_eq!(round_bf16(-2.5), -2.5);
    }

    #[test]
    fn packed_rows_read_back() {
        let (n, k) = (19, 7);
        let w: Vec<f32> = test_values(3, n * k).into_iter().map(round_bf16).collect();
        let p = PackedBf16::from_f32(&w, n, k);
        assert_eq!(p.to_f32(), w);
    }

    /// Odd shapes (partial panels, partial row tiles, odd k, several k blocks, column tasks)
    /// against an f64 reference of the same bf16 inputs, on every engine this CPU has, from
    /// f32 inputs as the backend calls them; the portable and AVX512-BF16 engines agree bit
    /// for bit.
    #[test]
    fn products_match_f64_reference_on_odd_shapes() {
        let engines = Bf16Engine::available();
        if !engines.contains(&Bf16Engine::Amx) {
            eprintln!("note: no AMX here: the AMX bf16 engine is tested through its tile model only");
        }
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 17, 5),
            (9, 33, 257),
            (8, 48, 300),
            (13, 50, 131),
            (2, 200, 1001),
            (40, 700, 640),
            (70, 45, 33),
        ] {
            let x = test_values(m as u64 * 31 + k as u64, m * k);
            let w = test_values(n as u64 * 7 + 1, n * k);
            let p = PackedBf16::from_f32(&w, n, k);
            let mut first: Option<Vec<f32>> = None;
            for &e in &engines {
                let mut out = vec![f32::NAN; m * n];
                matmul_bt_f32_with(e, &x, m, k, &p, &mut out, true);
                for i in 0..m {
                    for j in 0..n {
                        let terms = (0..k).map(|c| round_bf16(x[i * k + c]) as f64 * round_bf16(w[j * k + c]) as f64);
                        let (want, abs) = terms.fold((0.0, 0.0), |(s, a), t| (s + t, a + t.abs()));
                        let got = out[i * n + j] as f64;
                        // f32 summation's worst case: k additions, each off by half an ulp of
                        // a partial sum no larger than the sum of magnitudes.
                        let bound = f32::EPSILON as f64 * k as f64 * abs + 1e-30;
                        assert!((got - want).abs() <= bound, "{e:?} {m}x{n}x{k} ({i},{j}): {got} vs {want}");
                    }
                }
                if matches!(e, Bf16Engine::Portable | Bf16Engine::Avx512Bf16) {
                    match &first {
                        None => first = Some(out),
                        Some(f) => assert!(
                            f.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{e:?} differs from the portable engine on {m}x{n}x{k}"
                        ),
                    }
                }
            }
        }
    }

    /// Where AMX runs, its bf16 product passes the self-check that lets it carry products.
    #[test]
    fn amx_engine_passes_its_self_check_where_amx_runs() {
        #[cfg(target_arch = "x86_64")]
        if super::super::gemm_amx::available() {
            assert!(amx_passes_self_check(), "the AMX bf16 product disagrees with the portable engine");
            return;
        }
        eprintln!("note: no AMX here; the AMX bf16 self-check runs where AMX does");
    }

    /// The engine for many rows is one this CPU has, and few rows read the weight in place
    /// where AVX512-BF16 exists.
    #[test]
    fn engine_choice_is_available_here() {
        let best = Bf16Engine::best();
        assert!(Bf16Engine::available().contains(&best), "{best:?}");
        if has_avx512_bf16() {
            assert_eq!(Bf16Engine::for_rows(1), Bf16Engine::Avx512Bf16);
        }
        assert_eq!(Bf16Engine::for_rows(FEW_ROWS), best);
    }
}
