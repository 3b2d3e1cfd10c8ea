//! f32 matrix products on Intel AMX, at f32 accuracy.
//!
//! AMX multiplies bf16 tiles into f32 accumulators: one core does 3.8 TFLOP/s there against
//! 219 GFLOP/s with AVX-512 f32 FMAs (measured on the Sapphire Rapids dev machine). bf16 alone
//! would lose f32's precision, so each operand is split into three bf16 parts,
//! x = x0 + x1 + x2 (8 significant bits each: exact for every normal f32), and a product sums
//! the six cross terms xi·yj with i + j <= 2. The three dropped terms are below 2^-24 of the
//! product, f32's own rounding, and every sum accumulates in f32 as in the AVX-512 kernel; the
//! tests hold both engines to the same error bound against an f64 reference. Six bf16 products
//! per f32 product still leave AMX ahead of the FMA kernel: 1.5x in the micro-kernel, 1.1-1.35x
//! on the model's products (PERF.md).
//!
//! Layout: the blocked scheme of gemm_avx512.rs with 32 x 32 micro-tiles: four f32 tiles of
//! C (tmm0-3), two A tiles of 16 rows x 32 depths (tmm4-5) and two B tiles of 16 depth pairs
//! x 16 columns (tmm6-7, pairs interleaved as the instruction wants). A depth step of 32 has
//! six A tiles ([part][row half]) and six B tiles ([part][column half]), 1 KB each.
//!
//! At `--precision bf16` (the right operand a weight packed in bf16, `Rhs::Bf16T`) the same
//! driver runs one part: A rounded to bf16 while it is packed, B copied from the weight's
//! panels (already in the tile layout), one product per step, four tile products per 32 x 32
//! x 32 step instead of 24.
//!
//! Non-finite inputs give NaN here (a part of infinity is infinity minus itself): the model
//! has failed by then anyway, and NaN still propagates.

use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::gemm::Mat;
use super::gemm_avx512::{pack_b, pack_b_conv, store_edge_tile, transpose16, OutPtr, Rhs, Split};
use super::gemm_bf16::PackedBf16;

/// Rows of a micro-tile (two tiles of 16).
const MR: usize = 32;
/// Columns of a micro-tile (two tiles of 16); also the width of gemm_avx512's f32 panels.
const NR: usize = 32;
/// Depth of one tile step.
const STEP: usize = 32;
/// Depth per block (a multiple of STEP). Deeper than gemm_avx512's 384: these products run
/// faster, so re-reading C once per block costs more; 576 measured best of 128-1152 (PERF.md).
const KC: usize = 576;
/// Output columns per task (a multiple of NR).
const NB: usize = 512;
/// Rows of A packed at a time inside a task when A is not packed up front (a multiple of MR).
const RC: usize = MR * 8;
/// bf16 values in one tile (16 rows x 64 bytes).
const TILE: usize = 512;
/// bf16 parts an f32 operand is split into (an f32 product); a bf16 product has one.
const F32_PARTS: usize = 3;
/// Packed A operands above this many values are packed per task instead of once up front.
const PREPACK_MAX: usize = 1 << 23;

/// Whether this CPU and OS run the AMX path: AMX-TILE and AMX-BF16, AVX-512 (the packing
/// uses it), and Linux's permission to use the tile state (requested once for the process).
/// Whether it is used is decided per thread (`gemm::set_thread_amx`, `PERCEPT_CPU_AMX=0`).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if !super::gemm_avx512::available() {
            return false;
        }
        // cpuid leaf 7 exists on every x86-64 CPU with AVX-512.
        let leaf7 = __cpuid_count(7, 0);
        let amx_bf16 = leaf7.edx & (1 << 22) != 0;
        let amx_tile = leaf7.edx & (1 << 24) != 0;
        amx_bf16 && amx_tile && request_tile_permission()
    })
}

/// Linux hands out the 8 KB tile state only on request (arch_prctl ARCH_REQ_XCOMP_PERM for
/// XFEATURE_XTILEDATA); the request fails on kernels or CPUs without it.
#[cfg(target_os = "linux")]
fn request_tile_permission() -> bool {
    use std::ffi::c_long;
    extern "C" {
        fn syscall(num: c_long, ...) -> c_long;
    }
    const SYS_ARCH_PRCTL: c_long = 158;
    const ARCH_REQ_XCOMP_PERM: c_long = 0x1023;
    const XFEATURE_XTILEDATA: c_long = 18;
    // SAFETY: a plain system call with integer arguments.
    unsafe { syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn request_tile_permission() -> bool {
    false
}

/// The tile configuration: palette 1, all eight tiles 16 rows x 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

/// Tile state is per thread: configured at the start of every task, released at its end so
/// the thread does not carry 8 KB of live tile state (and its power license) in between.
struct ConfiguredTiles;

impl ConfiguredTiles {
    fn load() -> ConfiguredTiles {
        let mut cfg = TileConfig { palette: 1, start_row: 0, reserved: [0; 14], bytes_per_row: [0; 16], rows: [0; 16] };
        for t in 0..8 {
            cfg.bytes_per_row[t] = 64;
            cfg.rows[t] = 16;
        }
        // SAFETY: `available()` checked the CPU and obtained the OS permission; the config
        // is a valid palette-1 layout.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &cfg as *const TileConfig, options(nostack, readonly)) };
        ConfiguredTiles
    }
}

impl Drop for ConfiguredTiles {
    fn drop(&mut self) {
        // SAFETY: tiles were configured by `configure`.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// Tiles per operand per depth step: `parts` x two halves.
fn step_tiles(parts: usize) -> usize {
    2 * parts
}

/// bf16 values of one packed A sliver (MR rows) or B panel (NR columns) over depth `kc`.
fn packed_len(kc: usize, parts: usize) -> usize {
    kc.div_ceil(STEP) * step_tiles(parts) * TILE
}

/// What runs the tile instructions: the CPU, or (tests on machines without AMX) a plain-Rust
/// model of them that reads the same packed layout.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tiles {
    Hardware,
    #[cfg(test)]
    Emulated,
}

/// `out[m, n] (+)= a · b` as in `gemm_avx512::matmul` (same contract).
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
    // The tile instructions fault without AMX and the OS permission: refuse rather than run them.
    assert!(available(), "gemm: AMX is not available");
    let parts = if matches!(b, Rhs::Bf16T(_)) { 1 } else { F32_PARTS };
    matmul_on(Tiles::Hardware, parts, m, n, k, a, b, out, ldo, accumulate, threads)
}

/// `matmul` of operands that hold bf16 values (A is rounded to bf16 where it does not; B must):
/// one tile product per step instead of six, with the same result, since the dropped parts
/// of a bf16 value are zero. For products at `--precision bf16`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_bf16_values(
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
    assert!(available(), "gemm: AMX is not available");
    matmul_on(Tiles::Hardware, 1, m, n, k, a, b, out, ldo, accumulate, threads)
}

#[allow(clippy::too_many_arguments)]
fn matmul_on(
    tiles: Tiles,
    parts: usize,
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
    // The packing runs on AVX-512 whatever runs the tiles.
    assert!(super::gemm_avx512::available(), "gemm: this CPU has no AVX-512");
    assert!(parts == 1 || (parts == F32_PARTS && !matches!(b, Rhs::Bf16T(_))), "gemm: {parts} parts");
    let split = Split::new(m, n, threads, MR, NR, NB);
    let m_pad = m.div_ceil(MR) * MR;
    let prepacked_buf = (split.col_blocks > 1 && m_pad * k <= PREPACK_MAX).then(|| {
        let mut buf = PREPACK_BUF.take();
        prepack_a_into(&a, m, k, parts, threads, &mut buf);
        buf
    });
    let prepacked = prepacked_buf.as_deref();
    let ptr = OutPtr(out.as_mut_ptr());
    split.run(m, n, NR, threads, |bufs: &mut Buffers, r0, rows, c0, c1| {
        let job = Job { a, b, k, ldo, accumulate, out: ptr, prepacked, m_pad, parts, tiles };
        // SAFETY: the tile [r0, r0+rows) x [c0, c1) belongs to this task only and lies inside
        // `out` (checked by the caller).
        unsafe { job.run(r0, rows, c0, c1 - c0, bufs) };
    });
    if let Some(buf) = prepacked_buf {
        PREPACK_BUF.set(buf);
    }
}

thread_local! {
    /// The last product's packed A, kept for the next one on this thread (as in gemm_avx512).
    static PREPACK_BUF: std::cell::Cell<Vec<u16>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A task's packing buffers: A rows, one f32 panel of B, and the task's bf16 block of B.
#[derive(Default)]
struct Buffers {
    a: Vec<u16>,
    panel: Vec<f32>,
    b: Vec<u16>,
}

struct Job<'a> {
    a: Mat<'a>,
    b: Rhs<'a>,
    /// All of A packed: depth block p0 (a multiple of KC) starts at (p0 / KC) * slivers *
    /// packed_len(KC), sliver s of it at s * packed_len(kc).
    prepacked: Option<&'a [u16]>,
    m_pad: usize,
    /// bf16 parts per operand: F32_PARTS, or 1 for a bf16 product.
    parts: usize,
    tiles: Tiles,
    k: usize,
    ldo: usize,
    accumulate: bool,
    out: OutPtr,
}

impl Job<'_> {
    unsafe fn run(&self, r0: usize, rows: usize, c0: usize, cols: usize, bufs: &mut Buffers) {
        let _config = (self.tiles == Tiles::Hardware).then(ConfiguredTiles::load);
        let parts = self.parts;
        let npanels = cols.div_ceil(NR);
        let mut tile = [0f32; MR * NR];
        let mut p0 = 0;
        while p0 < self.k {
            let kc = KC.min(self.k - p0);
            let plen = packed_len(kc, parts);
            let load = self.accumulate || p0 > 0;
            bufs.b.resize(npanels * plen, 0);
            for jp in 0..npanels {
                let c = c0 + jp * NR;
                let w = NR.min(cols - jp * NR);
                let dst = &mut bufs.b[jp * plen..(jp + 1) * plen];
                match &self.b {
                    Rhs::Bf16T(wt) => copy_b_bf16t_panel(wt, p0, kc, c, w, dst),
                    Rhs::Mat(b) if b.row_stride == 1 && w == NR => split_b_transposed_panel(b, p0, kc, c, parts, dst),
                    Rhs::Mat(b) => {
                        pack_b(b, p0, kc, c, w, &mut bufs.panel);
                        split_b_panel(&bufs.panel, kc, parts, dst);
                    }
                    Rhs::Conv(cv) => {
                        pack_b_conv(cv, p0, kc, c, w, &mut bufs.panel);
                        split_b_panel(&bufs.panel, kc, parts, dst);
                    }
                }
            }
            let mut rr = r0;
            while rr < r0 + rows {
                let rc = RC.min(r0 + rows - rr);
                let apanel = match self.prepacked {
                    Some(pa) => pa[(p0 / KC) * (self.m_pad / MR) * packed_len(KC, parts) + (rr / MR) * plen..].as_ptr(),
                    None => {
                        bufs.a.resize(rc.div_ceil(MR) * plen, 0);
                        pack_a(&self.a, rr, rc, p0, kc, parts, &mut bufs.a);
                        bufs.a.as_ptr()
                    }
                };
                for ip in 0..rc.div_ceil(MR) {
                    let ap = apanel.add(ip * plen);
                    let tr = MR.min(rc - ip * MR);
                    let row = rr + ip * MR;
                    for jp in 0..npanels {
                        let bp = bufs.b.as_ptr().add(jp * plen);
                        let tc = NR.min(cols - jp * NR);
                        let c = self.out.0.add(row * self.ldo + c0 + jp * NR);
                        if tr == MR && tc == NR {
                            self.product(kc.div_ceil(STEP), ap, bp, c, self.ldo, load);
                        } else {
                            self.product(kc.div_ceil(STEP), ap, bp, tile.as_mut_ptr(), NR, false);
                            store_edge_tile(&tile, NR, c, self.ldo, tr, tc, load);
                        }
                    }
                }
                rr += rc;
            }
            p0 += kc;
        }
    }

    /// One micro-tile's product on this job's tiles and part count.
    unsafe fn product(&self, steps: usize, a: *const u16, b: *const u16, c: *mut f32, ldc: usize, load: bool) {
        match self.tiles {
            Tiles::Hardware if self.parts == F32_PARTS => kernel(steps, a, b, c, ldc, load),
            Tiles::Hardware => kernel_bf16(steps, a, b, c, ldc, load),
            #[cfg(test)]
            Tiles::Emulated => emulated::kernel(self.parts, steps, a, b, c, ldc, load),
        }
    }
}

/// All of A [m, k] packed, depth block by depth block (layout in `Job::prepacked`).
fn prepack_a_into(a: &Mat, m: usize, k: usize, parts: usize, threads: usize, all: &mut Vec<u16>) {
    let slivers = m.div_ceil(MR);
    let mut blocks = Vec::new();
    let mut p0 = 0;
    while p0 < k {
        blocks.push((p0, KC.min(k - p0)));
        p0 += KC;
    }
    let total: usize = blocks.iter().map(|&(_, kc)| slivers * packed_len(kc, parts)).sum();
    all.resize(total, 0);
    let mut pieces = Vec::with_capacity(blocks.len());
    let mut rest = all.as_mut_slice();
    for &(p0, kc) in &blocks {
        let (blk, tail) = rest.split_at_mut(slivers * packed_len(kc, parts));
        pieces.push((p0, kc, blk));
        rest = tail;
    }
    let pack = |(p0, kc, blk): (usize, usize, &mut [u16])| pack_a(a, 0, m, p0, kc, parts, blk);
    if threads > 1 {
        pieces.into_par_iter().for_each(pack);
    } else {
        pieces.into_iter().for_each(pack);
    }
}

/// Rows [r0, r0+rows) x depth [p0, p0+kc) of A as MR-row slivers of split tiles (layout in the
/// module comment; the first `parts` parts, so one part is A rounded to bf16), zero-padded in
/// rows and depth. Every value of the slivers is written.
fn pack_a(a: &Mat, r0: usize, rows: usize, p0: usize, kc: usize, parts: usize, dst: &mut [u16]) {
    let plen = packed_len(kc, parts);
    let stride = step_tiles(parts) * TILE;
    let mut vals = [0f32; STEP];
    for s in 0..rows.div_ceil(MR) {
        let sliver = &mut dst[s * plen..(s + 1) * plen];
        for i in 0..MR {
            let r = s * MR + i;
            for step in 0..kc.div_ceil(STEP) {
                let d0 = step * STEP;
                let depth = STEP.min(kc - d0);
                if r < rows {
                    let base = (r0 + r) * a.row_stride + (p0 + d0) * a.col_stride;
                    if a.col_stride == 1 {
                        vals[..depth].copy_from_slice(&a.data[base..base + depth]);
                    } else {
                        for (q, v) in vals[..depth].iter_mut().enumerate() {
                            *v = a.data[base + q * a.col_stride];
                        }
                    }
                    vals[depth..].fill(0.0);
                } else {
                    vals.fill(0.0);
                }
                let tiles = &mut sliver[step * stride..(step + 1) * stride];
                // SAFETY: AVX-512 is checked by every entry point.
                let split = unsafe { split_row(&vals) };
                for (part, row) in split.iter().enumerate().take(parts) {
                    let at = (part * 2 + i / 16) * TILE + (i % 16) * STEP;
                    tiles[at..at + STEP].copy_from_slice(row);
                }
            }
        }
    }
}

/// The three bf16 parts of 16 values, each as f32 bits with the low half zero: rounded to
/// nearest even, the remainder (exact in f32) split again.
#[target_feature(enable = "avx512f")]
unsafe fn split16(x: __m512) -> [__m512i; 3] {
    let low_bit = _mm512_set1_epi32(1);
    let half = _mm512_set1_epi32(0x7fff);
    let high = _mm512_set1_epi32(0xffff_0000u32 as i32);
    let mut rest = x;
    let mut parts = [_mm512_setzero_si512(); 3];
    for p in parts.iter_mut() {
        let bits = _mm512_castps_si512(rest);
        let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), low_bit);
        let rounded = _mm512_and_si512(_mm512_add_epi32(bits, _mm512_add_epi32(half, odd)), high);
        *p = rounded;
        rest = _mm512_sub_ps(rest, _mm512_castsi512_ps(rounded));
    }
    parts
}

/// `split16` of 32 values, each part packed to 32 bf16.
#[target_feature(enable = "avx512f")]
unsafe fn split_row(vals: &[f32; STEP]) -> [[u16; STEP]; 3] {
    let lo = split16(_mm512_loadu_ps(vals.as_ptr()));
    let hi = split16(_mm512_loadu_ps(vals.as_ptr().add(16)));
    let mut out = [[0u16; STEP]; 3];
    for p in 0..3 {
        let a = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(lo[p]));
        let b = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(hi[p]));
        _mm256_storeu_si256(out[p].as_mut_ptr() as *mut __m256i, a);
        _mm256_storeu_si256(out[p].as_mut_ptr().add(16) as *mut __m256i, b);
    }
    out
}

/// Columns [col, col + w) (w <= NR) of the transpose of a packed bf16 weight as one-part
/// tiles: the weight's panels of 16 columns already hold 16 depth pairs x 16 columns as one
/// 1 KB tile, so each tile is a copy; depths past kc and columns past w are zero.
fn copy_b_bf16t_panel(wt: &PackedBf16, p0: usize, kc: usize, col: usize, w: usize, dst: &mut [u16]) {
    assert!(col % 16 == 0 && col + w <= wt.n && p0 % 2 == 0 && p0 + kc <= wt.k, "gemm: bf16 rhs out of range");
    let (data, panel_len) = (wt.data(), wt.panel_len());
    let pairs = kc.div_ceil(2);
    for step in 0..kc.div_ceil(STEP) {
        for half in 0..2 {
            let tile = &mut dst[(step * 2 + half) * TILE..(step * 2 + half + 1) * TILE];
            let q0 = step * STEP / 2;
            let rows = (STEP / 2).min(pairs - q0);
            if half * 16 >= w {
                tile.fill(0);
                continue;
            }
            // Pairs p0/2 + q0 .. + rows of panel col/16 + half: 32 values (16 columns x 2) each.
            let src = (col / 16 + half) * panel_len + (p0 / 2 + q0) * 32;
            tile[..rows * 32].copy_from_slice(&data[src..src + rows * 32]);
            tile[rows * 32..].fill(0);
            if kc % 2 == 1 && q0 + rows == pairs {
                // Depth p0 + kc is the next block's (or the weight's zero padding): drop it.
                for j in 0..16 {
                    tile[(rows - 1) * 32 + 2 * j + 1] = 0;
                }
            }
        }
    }
}

/// One f32 panel of B ([kc][NR], as gemm_avx512 packs it) as split tiles (the first `parts`
/// parts): tile row q of a step holds depths 2q and 2q+1 of its 16 columns interleaved.
/// Depths past kc are zero.
fn split_b_panel(panel: &[f32], kc: usize, parts: usize, dst: &mut [u16]) {
    assert!(panel.len() >= kc * NR && dst.len() >= packed_len(kc, parts) && parts <= F32_PARTS);
    // SAFETY: `available()` implies AVX-512; indices stay inside the checked lengths.
    unsafe { split_b_panel_avx512(panel, kc, parts, dst) }
}

#[target_feature(enable = "avx512f")]
unsafe fn split_b_panel_avx512(panel: &[f32], kc: usize, parts: usize, dst: &mut [u16]) {
    let high = _mm512_set1_epi32(0xffff_0000u32 as i32);
    let row = |d: usize, half: usize| {
        if d < kc {
            _mm512_loadu_ps(panel.as_ptr().add(d * NR + half * 16))
        } else {
            _mm512_setzero_ps()
        }
    };
    for step in 0..kc.div_ceil(STEP) {
        let tiles = dst.as_mut_ptr().add(step * step_tiles(parts) * TILE);
        for q in 0..STEP / 2 {
            let d = step * STEP + 2 * q;
            for half in 0..2 {
                let even = split16(row(d, half));
                let odd = split16(row(d + 1, half));
                for p in 0..parts {
                    let pair = _mm512_or_si512(_mm512_srli_epi32::<16>(even[p]), _mm512_and_si512(odd[p], high));
                    let at = (p * 2 + half) * TILE + q * STEP;
                    _mm512_storeu_si512(tiles.add(at) as *mut __m512i, pair);
                }
            }
        }
    }
}

/// One full panel (NR columns) of a transposed B (column j contiguous in depth: a linear
/// layer's weight) straight into split tiles, one pass: 16 columns x 32 depths are loaded,
/// split, packed to bf16 pairs (one vector per column) and transposed in registers, so each
/// vector becomes a tile row. Half the work of packing to f32 first and splitting after, and
/// the weight is read once.
fn split_b_transposed_panel(b: &Mat, p0: usize, kc: usize, col: usize, parts: usize, dst: &mut [u16]) {
    let last = (col + NR - 1) * b.col_stride + p0 + kc - 1;
    assert!(b.row_stride == 1 && last < b.data.len() && dst.len() >= packed_len(kc, parts) && parts <= F32_PARTS);
    // SAFETY: `available()` implies AVX-512; every load is inside `b.data` (checked above,
    // masked past kc) and every store inside `dst`.
    unsafe { split_b_transposed_panel_avx512(b, p0, kc, col, parts, dst) }
}

#[target_feature(enable = "avx512f")]
unsafe fn split_b_transposed_panel_avx512(b: &Mat, p0: usize, kc: usize, col: usize, parts: usize, dst: &mut [u16]) {
    let src = b.data.as_ptr();
    let cs = b.col_stride;
    for step in 0..kc.div_ceil(STEP) {
        let d0 = step * STEP;
        let depth = STEP.min(kc - d0);
        let (mask_lo, mask_hi) =
            (((1u32 << depth.min(16)) - 1) as u16, ((1u64 << depth.saturating_sub(16)) - 1) as u16);
        let tiles = dst.as_mut_ptr().add(step * step_tiles(parts) * TILE);
        for half in 0..2 {
            let mut split = [[_mm512_setzero_ps(); 16]; 3];
            for j in 0..16 {
                let at = src.add((col + half * 16 + j) * cs + p0 + d0);
                // Ask for this column's line 4 steps ahead (a prefetch never faults).
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(4 * STEP) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(4 * STEP + 16) as *const i8);
                let lo = split16(_mm512_maskz_loadu_ps(mask_lo, at));
                let hi = split16(_mm512_maskz_loadu_ps(mask_hi, at.add(16)));
                for p in 0..parts {
                    // Depths 0-15 then 16-31 as bf16: u32 lane q holds depths 2q and 2q+1.
                    let a = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(lo[p]));
                    let c = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(hi[p]));
                    split[p][j] = _mm512_castsi512_ps(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), c));
                }
            }
            for (p, rows) in split.iter_mut().enumerate().take(parts) {
                transpose16(rows);
                let tile = tiles.add((p * 2 + half) * TILE);
                for (q, r) in rows.iter().enumerate() {
                    _mm512_storeu_ps(tile.add(q * STEP) as *mut f32, *r);
                }
            }
        }
    }
}

/// C's four 16 x 16 f32 tiles (rows 0-15 / 16-31 x columns 0-15 / 16-31, row stride `ldc`)
/// into tmm0-3, or zeros. The tile registers live across `asm!` blocks: the compiler neither
/// uses nor saves them.
#[inline(always)]
unsafe fn load_c_tiles(c: *mut f32, ldc: usize, load: bool) {
    let ldc_bytes = ldc * 4;
    let (c01, c10, c11) = (c.add(16), c.add(16 * ldc), c.add(16 * ldc + 16));
    if load {
        asm!(
            "tileloadd tmm0, [{c00} + {s}*1]",
            "tileloadd tmm1, [{c01} + {s}*1]",
            "tileloadd tmm2, [{c10} + {s}*1]",
            "tileloadd tmm3, [{c11} + {s}*1]",
            c00 = in(reg) c, c01 = in(reg) c01, c10 = in(reg) c10, c11 = in(reg) c11, s = in(reg) ldc_bytes,
            options(nostack, readonly),
        );
    } else {
        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
    }
}

/// tmm0-3 back to C (the layout of `load_c_tiles`).
#[inline(always)]
unsafe fn store_c_tiles(c: *mut f32, ldc: usize) {
    let ldc_bytes = ldc * 4;
    let (c01, c10, c11) = (c.add(16), c.add(16 * ldc), c.add(16 * ldc + 16));
    asm!(
        "tilestored [{c00} + {s}*1], tmm0",
        "tilestored [{c01} + {s}*1], tmm1",
        "tilestored [{c10} + {s}*1], tmm2",
        "tilestored [{c11} + {s}*1], tmm3",
        c00 = in(reg) c, c01 = in(reg) c01, c10 = in(reg) c10, c11 = in(reg) c11, s = in(reg) ldc_bytes,
        options(nostack),
    );
}

/// C[MR, NR] (+)= A-sliver · B-panel over `steps` depth steps; `c` has row stride `ldc`.
/// The six products of a step run in the order (0,2) (0,1) (1,1) (1,0) (0,0) (2,0) (parts of
/// A, B), so that each changes only A's or only B's tiles (14 tile loads instead of 24), and
/// each reload sits right after the last two products that read the old tile.
#[inline(never)]
unsafe fn kernel(steps: usize, a: *const u16, b: *const u16, c: *mut f32, ldc: usize, load: bool) {
    load_c_tiles(c, ldc, load);
    let (mut a, mut b) = (a, b);
    for _ in 0..steps {
        // tmm4/tmm5: A rows 0-15/16-31; tmm6/tmm7: B columns 0-15/16-31. Tile t of a step is
        // at byte offset 1024 t: part p, half h at t = 2p + h.
        asm!(
            "tileloadd tmm4, [{a} + {s}*1 + 0]",
            "tileloadd tmm6, [{b} + {s}*1 + 4096]",
            "tileloadd tmm5, [{a} + {s}*1 + 1024]",
            "tileloadd tmm7, [{b} + {s}*1 + 5120]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tileloadd tmm6, [{b} + {s}*1 + 2048]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm7, [{b} + {s}*1 + 3072]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm4, [{a} + {s}*1 + 2048]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm5, [{a} + {s}*1 + 3072]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tileloadd tmm6, [{b} + {s}*1 + 0]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm7, [{b} + {s}*1 + 1024]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm4, [{a} + {s}*1 + 0]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm5, [{a} + {s}*1 + 1024]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm4, [{a} + {s}*1 + 4096]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "tileloadd tmm5, [{a} + {s}*1 + 5120]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a = in(reg) a, b = in(reg) b, s = in(reg) 64usize,
            options(nostack, readonly),
        );
        a = a.add(step_tiles(F32_PARTS) * TILE);
        b = b.add(step_tiles(F32_PARTS) * TILE);
    }
    store_c_tiles(c, ldc);
}

/// C[MR, NR] (+)= A-sliver · B-panel over `steps` depth steps of one-part (bf16) tiles: per
/// step A's two row halves (bytes 0 and 1024 of the step) times B's two column halves.
#[inline(never)]
unsafe fn kernel_bf16(steps: usize, a: *const u16, b: *const u16, c: *mut f32, ldc: usize, load: bool) {
    load_c_tiles(c, ldc, load);
    let (mut a, mut b) = (a, b);
    for _ in 0..steps {
        asm!(
            "tileloadd tmm4, [{a} + {s}*1 + 0]",
            "tileloadd tmm6, [{b} + {s}*1 + 0]",
            "tileloadd tmm7, [{b} + {s}*1 + 1024]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm5, [{a} + {s}*1 + 1024]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a = in(reg) a, b = in(reg) b, s = in(reg) 64usize,
            options(nostack, readonly),
        );
        a = a.add(step_tiles(1) * TILE);
        b = b.add(step_tiles(1) * TILE);
    }
    store_c_tiles(c, ldc);
}

/// A plain-Rust model of the micro-kernels' tile instructions on the packed layout, so the
/// packing and the driver are tested on machines without AMX (the instructions themselves
/// are checked where AMX runs: `self_check` and the tests below).
#[cfg(test)]
mod emulated {
    use super::{step_tiles, F32_PARTS, MR, NR, TILE};

    /// tdpbf16ps on one 16 x 16 C tile: C[i][j] += sum over pairs q of the odd and even
    /// products (f32 products of bf16 values are exact; the sum order is the model's).
    unsafe fn tdpbf16ps(c: &mut [[f32; 16]; 16], a: *const u16, b: *const u16) {
        let v = |p: *const u16, i: usize| f32::from_bits((*p.add(i) as u32) << 16);
        for (i, row) in c.iter_mut().enumerate() {
            for (j, acc) in row.iter_mut().enumerate() {
                for q in 0..16 {
                    *acc += v(a, i * 32 + 2 * q) * v(b, q * 32 + 2 * j);
                    *acc += v(a, i * 32 + 2 * q + 1) * v(b, q * 32 + 2 * j + 1);
                }
            }
        }
    }

    /// `kernel` (parts == F32_PARTS: the six products i + j <= 2) or `kernel_bf16` (one).
    pub(super) unsafe fn kernel(
        parts: usize,
        steps: usize,
        a: *const u16,
        b: *const u16,
        c: *mut f32,
        ldc: usize,
        load: bool,
    ) {
        let mut acc = [[[0f32; 16]; 16]; 4];
        if load {
            for (t, tile) in acc.iter_mut().enumerate() {
                for (i, row) in tile.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = *c.add(((t / 2) * 16 + i) * ldc + (t % 2) * 16 + j);
                    }
                }
            }
        }
        let products: &[(usize, usize)] =
            if parts == F32_PARTS { &[(0, 2), (0, 1), (1, 1), (1, 0), (0, 0), (2, 0)] } else { &[(0, 0)] };
        for s in 0..steps {
            let (sa, sb) = (a.add(s * step_tiles(parts) * TILE), b.add(s * step_tiles(parts) * TILE));
            for &(pa, pb) in products {
                for (t, tile) in acc.iter_mut().enumerate() {
                    let (ha, hb) = (t / 2, t % 2);
                    tdpbf16ps(tile, sa.add((2 * pa + ha) * TILE), sb.add((2 * pb + hb) * TILE));
                }
            }
        }
        for (t, tile) in acc.iter().enumerate() {
            for (i, row) in tile.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    *c.add(((t / 2) * 16 + i) * ldc + (t % 2) * 16 + j) = *v;
                }
            }
        }
        debug_assert!(MR == 32 && NR == 32);
    }
}

#[cfg(test)]
mod tests {
    use super::super::gemm_avx512::ConvRhs;
    use super::super::gemm_bf16::{round_bf16, test_values};
    use super::*;

    /// Each right-hand side kind as `matmul_on` takes it, with B[p, j] for the reference.
    enum Case {
        Rows(Vec<f32>),
        Transposed(Vec<f32>),
        Bf16T(PackedBf16, Vec<f32>),
        /// A 3x3 convolution over one [c, h, w] image (k = 9c, n = h * w).
        Conv {
            x: Vec<f32>,
            h: usize,
            w: usize,
        },
    }

    impl Case {
        fn rhs(&self, k: usize, n: usize) -> Rhs<'_> {
            match self {
                Case::Rows(b) => Rhs::Mat(Mat::rows(b, n)),
                Case::Transposed(b) => Rhs::Mat(Mat::transposed(b, k)),
                Case::Bf16T(w, _) => Rhs::Bf16T(w),
                Case::Conv { x, h, w } => {
                    Rhs::Conv(ConvRhs { x, h: *h, w: *w, kh: 3, kw: 3, stride: 1, pad_top: 1, pad_left: 1, ow: *w })
                }
            }
        }
        fn at(&self, k: usize, n: usize, p: usize, j: usize) -> f32 {
            match self {
                Case::Rows(b) => b[p * n + j],
                Case::Transposed(b) | Case::Bf16T(_, b) => b[j * k + p],
                Case::Conv { x, h, w } => {
                    let (ci, ky, kx) = (p / 9, p % 9 / 3, p % 3);
                    let (y, xx) = ((j / w + ky) as isize - 1, (j % w + kx) as isize - 1);
                    if y < 0 || xx < 0 || y >= *h as isize || xx >= *w as isize {
                        0.0
                    } else {
                        x[ci * h * w + y as usize * w + xx as usize]
                    }
                }
            }
        }
    }

    /// The driver, packing and tile layout through the plain-Rust tile model, on every kind of
    /// right-hand side, with one part (bf16 products: both operands rounded) and three (f32
    /// accuracy), tails in every dimension, two depth blocks, A packed up front (two threads)
    /// and per task (one), with and without accumulation. Runs on any CPU with AVX-512.
    #[test]
    fn emulated_tiles_match_f64_reference_on_every_layout() {
        if !super::super::gemm_avx512::available() {
            eprintln!("note: no AVX-512 here; the AMX packing needs it");
            return;
        }
        let conv = |c: usize, h: usize, w: usize, seed: u64| {
            (9 * c, h * w, Case::Conv { x: test_values(seed, c * h * w), h, w })
        };
        let mut cases: Vec<(usize, usize, usize, Case)> = Vec::new();
        for &(m, n, k) in &[(1, 1, 1), (33, 47, 70), (40, 64, 600), (17, 530, 33)] {
            let b = test_values((n * 7 + k) as u64, n * k);
            cases.push((m, n, k, Case::Rows(b.clone())));
            cases.push((m, n, k, Case::Transposed(b.clone())));
            let rounded: Vec<f32> = b.iter().map(|&v| round_bf16(v)).collect();
            cases.push((m, n, k, Case::Bf16T(PackedBf16::from_f32(&b, n, k), rounded)));
        }
        // k = 1151 is odd: the last depth pair of a bf16 weight is half padding.
        let b = test_values(5, 40 * 1151);
        let rounded: Vec<f32> = b.iter().map(|&v| round_bf16(v)).collect();
        cases.push((35, 40, 1151, Case::Bf16T(PackedBf16::from_f32(&b, 40, 1151), rounded)));
        for &(c, h, w, m) in &[(3, 5, 7, 9), (8, 4, 40, 33)] {
            let (k, n, case) = conv(c, h, w, (c * h) as u64);
            cases.push((m, n, k, case));
        }
        for (m, n, k, case) in &cases {
            let (m, n, k) = (*m, *n, *k);
            let a = test_values((m * 3 + k) as u64, m * k);
            let c0 = test_values(99, m * n);
            let parts_list: &[usize] = if matches!(case, Case::Bf16T(..)) { &[1] } else { &[1, F32_PARTS] };
            for &parts in parts_list {
                let round = |v: f32| if parts == 1 { round_bf16(v) } else { v };
                for (threads, accumulate) in [(1, false), (2, true)] {
                    let mut out = c0.clone();
                    matmul_on(
                        Tiles::Emulated,
                        parts,
                        m,
                        n,
                        k,
                        Mat::rows(&a, k),
                        case.rhs(k, n),
                        &mut out,
                        n,
                        accumulate,
                        threads,
                    );
                    for i in 0..m {
                        for j in 0..n {
                            let terms = (0..k).map(|p| round(a[i * k + p]) as f64 * round(case.at(k, n, p, j)) as f64);
                            let (mut want, abs) = terms.fold((0.0, 0.0), |(s, t), v| (s + v, t + v.abs()));
                            if accumulate {
                                want += c0[i * n + j] as f64;
                            }
                            let bound = 2.0 * f32::EPSILON as f64 * (k as f64 + 2.0) * (abs + 1.0);
                            let got = out[i * n + j] as f64;
                            assert!(
                                (got - want).abs() <= bound,
                                "{m}x{n}x{k} parts {parts} threads {threads} ({i},{j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The three parts of a normal f32 add back to it exactly, and each is a bf16 value.
    #[test]
    fn parts_add_back_exactly() {
        if !available() {
            eprintln!("note: no AMX here; the split is tested where AMX runs");
            return;
        }
        let mut s = 0x1234_5678u32;
        let mut vals = [0f32; STEP];
        for round in 0..2000 {
            for v in vals.iter_mut() {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                // Random sign and mantissa, exponents across 2^-60..2^60.
                let exp = 67 + (s >> 8) % 120;
                *v = f32::from_bits((s & 0x8000_0000) | (exp << 23) | (s.rotate_left(7) & 0x7f_ffff));
            }
            if round == 0 {
                vals[0] = 0.0;
                vals[1] = 1.0;
                vals[2] = -f32::MIN_POSITIVE * 4096.0;
            }
            // SAFETY: `available()` implies AVX-512.
            let parts = unsafe { split_row(&vals) };
            for (i, &v) in vals.iter().enumerate() {
                let p: Vec<f32> = (0..3).map(|q| f32::from_bits((parts[q][i] as u32) << 16)).collect();
                assert_eq!((p[0] as f64) + (p[1] as f64) + (p[2] as f64), v as f64, "{v:e} split as {p:?}");
                assert!(p[1].abs() <= p[0].abs() * 2f32.powi(-8) && p[2].abs() <= p[1].abs() * 2f32.powi(-8));
            }
        }
    }
}
