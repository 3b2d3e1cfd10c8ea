//! One table of op cases, in the manner of ggml's test-backend-ops: each case is an op, its shapes,
//! a storage type and a tolerance with the reason for it, run on a device against the CPU backend
//! (itself checked against plain loops in `cpu_ops`). A case goes either through the CUDA backend
//! (`Via::Backend`: the launches and kernel choice the model uses, `backend.rs`) or straight to one
//! entry point through its generated launcher (`Via::Kernel`: launch shapes the backend does not
//! use, such as fewer blocks than elements so grid-stride loops wrap, `kernel.rs`).
//!
//! Every case gets fresh random inputs (bf16-representable, so the CPU and the device see the same
//! values at either precision and the MoE routes alike), every output starts as NaN (an element a
//! kernel never writes fails), and results are compared by relative L2 error. A mismatch or an
//! error is recorded with its op, case, shapes, storage type and error, and the run goes on: the
//! test fails once at the end listing every one.
//!
//! One `#[test]` per op (`cargo test --release --test main -- ops::group_norm`) runs the op's cases
//! on the emulator under two thread schedules (see `check_ops`); `gpu::ops_match_cpu` runs the same table on a GPU,
//! chosen by `PERCEPT_GPU_VARIANTS` (f32, bf16, bf16-fast) and `PERCEPT_GPU_OPS` (op names). After a
//! device fault that poisons the CUDA context, the ops not yet checked are listed
//! (`gpu-ops: not checked after a device fault: VARIANT OPS`) so scripts/gpu-check reruns them in a
//! fresh process.

mod backend;
mod kernel;

use std::cell::RefCell;

use crate::support::Rng;
use percept::backend::cuda::device::Device;
use percept::emu::{Arch, EmuDevice};
use percept::tensor::rel_l2;
use percept::{DType, Result};

/// A storage type and kernel choice the cases run at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dt {
    F32,
    Bf16,
    /// bf16 with the fast kernel variants (`PERCEPT_FAST_KERNELS`).
    Bf16Fast,
}

/// Every variant, in the order they run.
pub const VARIANTS: [Dt; 3] = [Dt::F32, Dt::Bf16, Dt::Bf16Fast];
/// The simple kernels at both storage types.
const SIMPLE: &[Dt] = &[Dt::F32, Dt::Bf16];

impl Dt {
    pub fn name(self) -> &'static str {
        match self {
            Dt::F32 => "f32",
            Dt::Bf16 => "bf16",
            Dt::Bf16Fast => "bf16-fast",
        }
    }
    pub fn storage(self) -> DType {
        match self {
            Dt::F32 => DType::F32,
            Dt::Bf16 | Dt::Bf16Fast => DType::BF16,
        }
    }
    fn tolerance(self) -> (f64, &'static str) {
        match self {
            Dt::F32 => (1e-5, "f32 storage and arithmetic: only the order of summation differs from the CPU"),
            Dt::Bf16 | Dt::Bf16Fast => {
                (1e-2, "bf16 storage: every op boundary rounds to 8 mantissa bits (2^-9 relative), f32 math")
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Backend,
    Kernel,
}

/// One case of the table.
#[derive(Debug)]
pub struct Case {
    /// The op: the name of its `#[test]` (`ops::<op>`) and of `PERCEPT_GPU_OPS`.
    pub op: &'static str,
    pub via: Via,
    /// The op's sizes, read by its runner (each runner documents its order).
    pub shapes: Vec<Vec<usize>>,
    pub dtype: Dt,
    /// Largest relative L2 error accepted (0: exact).
    pub tol: f64,
    /// Why that tolerance.
    pub why: &'static str,
}

#[derive(Default)]
struct Table(Vec<Case>);

impl Table {
    fn add(&mut self, op: &'static str, via: Via, shapes: &[&[usize]], dts: &[Dt]) {
        for &dtype in dts {
            let (tol, why) = dtype.tolerance();
            let shapes = shapes.iter().map(|s| s.to_vec()).collect();
            self.0.push(Case { op, via, shapes, dtype, tol, why });
        }
    }
    fn backend(&mut self, op: &'static str, shapes: &[&[usize]], dts: &[Dt]) {
        self.add(op, Via::Backend, shapes, dts);
    }
    fn kernel(&mut self, op: &'static str, shapes: &[&[usize]], dts: &[Dt]) {
        self.add(op, Via::Kernel, shapes, dts);
    }
    /// Integer outputs (ids, offsets, positions), compared exactly.
    fn kernel_exact(&mut self, op: &'static str, shapes: &[&[usize]], dts: &[Dt]) {
        for &dtype in dts {
            let shapes = shapes.iter().map(|s| s.to_vec()).collect();
            self.0.push(Case { op, via: Via::Kernel, shapes, dtype, tol: 0.0, why: "integer outputs: exact" });
        }
    }
}

/// The table. Shapes are the odd sizes that catch edge handling: ragged tiles, sizes that are not
/// multiples of a warp, several tiles along every axis.
pub fn cases() -> Vec<Case> {
    use Dt::*;
    let all: &[Dt] = &VARIANTS;
    let mut t = Table::default();
    // [x shape], [N out]: every activation, with and without bias.
    t.backend("linear", &[&[2, 37, 45], &[53]], all);
    // K a multiple of 8 (the fast tiles' condition) but not of their 32-deep slices; M and N
    // across several 128-wide tiles with ragged edges.
    t.backend("linear", &[&[2, 150, 72], &[136]], all);
    t.backend("act", &[&[2, 37, 45]], all);
    t.backend("add", &[&[2, 37, 45]], all);
    t.kernel("add", &[&[1, 3, 5]], SIMPLE);
    t.kernel("add", &[&[3, 17, 24]], SIMPLE);
    t.backend("scale", &[&[2, 37, 45]], all);
    t.kernel("scale", &[&[1, 3, 5]], SIMPLE);
    t.kernel("scale", &[&[3, 17, 24]], SIMPLE);
    // [N, C, H, W], [O, k], [stride, pad top, bottom, left, right], [bias 0/1]
    t.backend("conv2d", &[&[2, 5, 9, 11], &[7, 3], &[1, 1, 1, 1, 1], &[1]], all);
    t.backend("conv2d", &[&[2, 5, 9, 11], &[7, 3], &[2, 0, 1, 0, 1], &[1]], all);
    t.backend("conv2d", &[&[2, 5, 9, 11], &[7, 1], &[1, 0, 0, 0, 0], &[1]], all);
    // K = C*9 a multiple of 8 (the tensor-core conv's condition), ragged 128-tiles: 136 output
    // channels, 13x11 = 143 output pixels.
    t.backend("conv2d", &[&[2, 8, 13, 11], &[136, 3], &[1, 1, 1, 1, 1], &[1]], all);
    t.backend("conv2d", &[&[2, 8, 13, 11], &[136, 3], &[2, 0, 1, 0, 1], &[1]], all);
    t.backend("conv2d", &[&[1, 3, 9, 7], &[5, 3], &[1, 1, 1, 1, 1], &[1]], SIMPLE);
    t.backend("conv2d", &[&[3, 37, 10, 13], &[33, 3], &[2, 0, 1, 0, 1], &[1]], SIMPLE);
    t.backend("conv2d", &[&[2, 20, 6, 5], &[40, 1], &[1, 0, 0, 0, 0], &[0]], SIMPLE);
    t.backend("conv2d", &[&[1, 4, 8, 12], &[36, 2], &[2, 0, 0, 0, 0], &[1]], SIMPLE);
    t.backend("conv2d", &[&[1, 6, 7, 5], &[3, 3], &[2, 0, 1, 0, 1], &[0]], SIMPLE);
    // Four different pads: top and left must not be mixed up.
    t.backend("conv2d", &[&[2, 5, 6, 9], &[7, 3], &[2, 2, 0, 1, 3], &[1]], SIMPLE);
    // Several channel tiles and a long K (70 * 9 = 630, not a multiple of 16).
    t.backend("conv2d", &[&[1, 70, 5, 4], &[65, 3], &[1, 1, 1, 1, 1], &[1]], SIMPLE);
    // The decoder's upsampler, 2x nearest then 3x3, fused on the device: [N, C, H, W], [O].
    t.backend("upsample_conv2d", &[&[2, 5, 9, 11], &[136]], all);
    t.backend("upsample_conv2d", &[&[2, 8, 13, 11], &[136]], all);
    t.backend("upsample_nearest2x", &[&[2, 5, 9, 11]], all);
    t.kernel("upsample_nearest2x", &[&[1, 3, 5, 7]], SIMPLE);
    t.kernel("upsample_nearest2x", &[&[3, 2, 4, 1]], SIMPLE);
    // [N, C, H, W], [groups]
    t.backend("group_norm", &[&[2, 12, 5, 7], &[4]], all);
    t.backend("group_norm", &[&[1, 32, 3, 3], &[32]], SIMPLE);
    // [N, C, H, W]
    for s in [[2, 12, 5, 7], [1, 5, 3, 7], [3, 37, 6, 11], [2, 64, 8, 4]] {
        t.backend("nchw_to_tokens", &[&s], all);
        t.backend("tokens_to_nchw", &[&s], all);
    }
    // [N, H, W], [channels of each part]
    t.backend("cat_channels", &[&[2, 5, 7], &[3, 1, 12, 3]], all);
    t.kernel("cat_channels", &[&[1, 4, 7], &[3, 5]], SIMPLE);
    t.kernel("cat_channels", &[&[3, 5, 3], &[4, 1, 6]], SIMPLE);
    t.kernel("cat_channels", &[&[2, 2, 9], &[8, 8, 4]], SIMPLE);
    // [N, C, H, W], [start, len]
    t.backend("slice_channels", &[&[2, 12, 5, 7], &[3, 5]], all);
    t.kernel("slice_channels", &[&[1, 8, 4, 7], &[0, 1]], SIMPLE);
    t.kernel("slice_channels", &[&[3, 11, 5, 3], &[1, 9]], SIMPLE);
    t.kernel("slice_channels", &[&[2, 20, 2, 9], &[17, 3]], SIMPLE);
    // [B, T, D], [shift chunk, scale chunk] of 6 chunks
    t.backend("modulated_layer_norm", &[&[2, 19, 40], &[3, 4]], all);
    // [B, T, D], [gate chunk] of 6 chunks
    t.backend("gated_add", &[&[2, 19, 40], &[2]], all);
    t.kernel("gated_add", &[&[1, 3, 5], &[4]], SIMPLE);
    t.kernel("gated_add", &[&[3, 17, 24], &[4]], SIMPLE);
    // [rows, N]: bias + activation in place, every activation, with and without bias.
    // [B, L, heads, head dim]: hd 24, 72 (the DiT's, padded to 80 for the tensor cores), 128 take
    // the flash kernels; hd 12 (not a multiple of 8) the wide one. Ragged last tiles; 150 and 70
    // tokens take the online softmax across key tiles.
    for s in [[2, 33, 2, 24], [2, 33, 3, 12], [2, 150, 2, 72], [2, 70, 1, 128]] {
        t.backend("attention", &[&s], all);
    }
    for s in [[1, 37, 2, 72], [3, 16, 1, 8], [1, 45, 2, 128], [2, 5, 3, 24], [1, 150, 1, 16], [1, 21, 1, 512]] {
        t.backend("attention", &[&s], SIMPLE);
    }
    // The wide kernel at a head dim the backend gives the flash kernel.
    t.kernel("attention", &[&[3, 9, 2, 72]], SIMPLE);
    // [rows, D], [ids]
    t.backend("embedding", &[&[10, 16], &[3, 0, 9, 3]], all);
    t.backend("embedding", &[&[11, 37], &[3, 0, 10, 3, 7]], SIMPLE);
    // [B] (timesteps chosen by the runner)
    t.backend("timestep_features", &[&[4]], all);
    t.kernel("timestep_features", &[&[5]], SIMPLE);
    // [B, C, H, W], [patch, D], [labels]: labels 999 and 1003 fall outside the two convs (zeros + pos).
    t.backend("patch_embed", &[&[2, 6, 8, 8], &[2, 16], &[1001, 1000]], all);
    t.backend("patch_embed", &[&[3, 4, 8, 6], &[2, 40], &[1001, 999, 1000]], SIMPLE);
    t.backend("patch_embed", &[&[1, 3, 6, 9], &[3, 7], &[1000]], SIMPLE);
    t.backend("patch_embed", &[&[2, 2, 4, 4], &[2, 33], &[1003, 1001]], SIMPLE);
    // [B, C, patch, gh, gw]
    t.backend("unpatchify", &[&[2, 3, 2, 4, 4]], all);
    t.kernel("unpatchify", &[&[3, 4, 2, 4, 3]], SIMPLE);
    t.kernel("unpatchify", &[&[1, 3, 3, 2, 3]], SIMPLE);
    // [tokens, D, F, experts, top k], [expert left empty, if any]: 150 tokens so an expert's rows
    // can span two 128-row tiles; routing compared exactly.
    t.backend("moe", &[&[150, 24, 40, 4, 2], &[]], all);
    t.backend("moe", &[&[37, 24, 40, 8, 2], &[5]], SIMPLE);
    t.backend("moe", &[&[5, 16, 8, 4, 1], &[]], SIMPLE);
    t.backend("moe", &[&[70, 40, 33, 6, 3], &[0]], SIMPLE);
    // [B, T, D, F, experts, top k], [gate chunk]: the MoE into the gated residual add.
    t.backend("moe_gated_add", &[&[2, 75, 24, 40, 4, 2], &[5]], all);
    // [entries, experts]: one block of 96 threads (fewer warps than experts); experts 1 and E-1
    // never appear.
    for s in [[1, 3], [97, 9], [2050, 16]] {
        t.kernel_exact("moe_count_sort", &[&s], &[F32]);
    }
    // [N, C, H, W]: every prediction type.
    t.backend("ddim_step", &[&[2, 4, 5, 5]], all);
    t.0
}

/// The ops of the table, in order.
pub fn ops() -> Vec<&'static str> {
    let mut ops: Vec<&'static str> = Vec::new();
    for c in cases() {
        if !ops.contains(&c.op) {
            ops.push(c.op);
        }
    }
    ops
}

/// What a run of the table found.
#[derive(Default)]
pub struct Outcome {
    /// One line per mismatch or error: device, variant, op, case, shapes, error.
    pub mismatches: Vec<String>,
    /// Ops left unchecked after a device fault, per variant.
    pub not_checked: Vec<(String, Vec<String>)>,
    /// Cases run to the end without an error.
    pub cases_run: usize,
}

impl Outcome {
    /// Prints the rerun line for each variant with ops left, then fails listing everything (or
    /// returns when all passed).
    pub fn assert_all_pass(&self) {
        for (variant, ops) in &self.not_checked {
            println!("gpu-ops: not checked after a device fault: {variant} {}", ops.join(","));
        }
        let mut problems = self.mismatches.clone();
        for (variant, ops) in &self.not_checked {
            problems.push(format!("{variant}: not checked after a device fault: {}", ops.join(", ")));
        }
        assert!(
            problems.is_empty(),
            "{} problem(s) in {} case run(s):\n{}",
            problems.len(),
            self.cases_run,
            problems.join("\n")
        );
        assert!(self.cases_run > 0, "no case was run");
    }
}

/// Variants and ops chosen by `PERCEPT_GPU_VARIANTS` and `PERCEPT_GPU_OPS` (comma lists; default
/// all): how scripts/gpu-check runs each variant in its own process and reruns what a device fault
/// left unchecked.
pub fn selection_from_env() -> (Vec<Dt>, Vec<&'static str>) {
    let list = |var: &str| -> Option<Vec<String>> {
        let v = std::env::var(var).ok().filter(|v| !v.trim().is_empty())?;
        Some(v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
    };
    let variants = match list("PERCEPT_GPU_VARIANTS") {
        None => VARIANTS.to_vec(),
        Some(names) => names
            .iter()
            .map(|n| {
                *VARIANTS
                    .iter()
                    .find(|v| v.name() == n)
                    .unwrap_or_else(|| panic!("PERCEPT_GPU_VARIANTS: unknown variant {n:?} (f32, bf16, bf16-fast)"))
            })
            .collect(),
    };
    let all = ops();
    let ops = match list("PERCEPT_GPU_OPS") {
        None => all,
        Some(names) => names
            .iter()
            .map(|n| {
                *all.iter()
                    .find(|o| *o == n)
                    .unwrap_or_else(|| panic!("PERCEPT_GPU_OPS: unknown op {n:?}; ops: {all:?}"))
            })
            .collect(),
    };
    (variants, ops)
}

/// What a case's runner works with.
pub struct Ctx<'a, D: Device> {
    pub dev: &'a D,
    pub case: &'a Case,
    rng: Rng,
    label: String,
    mismatches: &'a RefCell<Vec<String>>,
}

impl<D: Device> Ctx<'_, D> {
    /// Fresh random values, bf16-representable.
    pub fn data(&mut self, n: usize) -> Vec<f32> {
        self.rng.vec(n).into_iter().map(|x| half::bf16::from_f32(x).to_f32()).collect()
    }
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }
    pub fn mismatch(&self, what: &str, error: String) {
        self.mismatches.borrow_mut().push(format!("{} {what} {:?}: {error}", self.label, self.case.shapes));
    }
    /// Compares device values with the CPU's: every mismatch is recorded, none raised.
    pub fn check(&self, what: &str, want: &[f32], got: &[f32]) {
        if got.len() != want.len() {
            return self.mismatch(what, format!("{} values, expected {}", got.len(), want.len()));
        }
        let bad = got.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return self.mismatch(what, format!("{bad} non-finite output(s) (unwritten elements?)"));
        }
        let err = rel_l2(got, want);
        if err.is_nan() || err > self.case.tol {
            self.mismatch(what, format!("relative L2 error {err:e} > {:e} ({})", self.case.tol, self.case.why));
        }
    }
    pub fn check_eq<T: PartialEq + std::fmt::Debug>(&self, what: &str, want: &T, got: &T) {
        if want != got {
            self.mismatch(what, format!("{got:?} != {want:?}"));
        }
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// Runs the cases of the chosen ops at each chosen variant on `dev`, named `name` in the report:
/// kernel cases once per schedule seed, backend cases under one seed each, in turn (`reseed` sets
/// it; a GPU has one schedule).
pub fn check_ops<D: Device>(
    dev: &D,
    name: &str,
    variants: &[Dt],
    ops: &[&str],
    seeds: &[u64],
    reseed: &dyn Fn(u64),
    table: &[Case],
) -> Outcome {
    let mut outcome = Outcome::default();
    let mismatches = RefCell::new(Vec::new());
    let mut fault = false;
    for &v in variants {
        if fault {
            outcome.not_checked.push((v.name().to_string(), ops.iter().map(|s| s.to_string()).collect()));
            continue;
        }
        for (oi, &op) in ops.iter().enumerate() {
            let before = mismatches.borrow().len();
            let of_op = table.iter().enumerate().filter(|(_, c)| c.op == op && c.dtype == v);
            for (nth, (ci, case)) in of_op.enumerate() {
                // A kernel case runs under every schedule; a backend case (several launches, the
                // slow part of the table) under one, taken in turn, so each op still meets both.
                let case_seeds = match case.via {
                    Via::Kernel => seeds.to_vec(),
                    Via::Backend => seeds.get(nth % seeds.len().max(1)).into_iter().copied().collect(),
                };
                for &seed in &case_seeds {
                    reseed(seed);
                    let via = if case.via == Via::Kernel { " kernel" } else { "" };
                    let sched = if seeds.len() > 1 { format!(" seed {seed:#x}") } else { String::new() };
                    let mut ctx = Ctx {
                        dev,
                        case,
                        rng: Rng(fnv1a(op) ^ ci as u64),
                        label: format!("{name}{sched} {}: {op}{via}", v.name()),
                        mismatches: &mismatches,
                    };
                    let ran: Result<()> = match case.via {
                        Via::Backend => backend::run(&mut ctx),
                        Via::Kernel => kernel::run(&mut ctx),
                    };
                    match ran {
                        Ok(()) => outcome.cases_run += 1,
                        Err(e) => {
                            ctx.mismatch("", format!("error: {e}"));
                            fault |= percept::backend::cuda::gpu::is_sticky_fault(&e);
                        }
                    }
                    if fault {
                        break;
                    }
                }
                if fault {
                    break;
                }
            }
            let failed = mismatches.borrow().len() - before;
            println!(
                "gpu-ops: {} {op}: {}",
                v.name(),
                if failed == 0 { "ok".to_string() } else { format!("{failed} FAILED") }
            );
            if fault {
                let rest: Vec<String> = ops[oi + 1..].iter().map(|s| s.to_string()).collect();
                if !rest.is_empty() {
                    outcome.not_checked.push((v.name().to_string(), rest));
                }
                break;
            }
        }
    }
    outcome.mismatches = mismatches.into_inner();
    outcome
}

/// Two thread schedules of the emulator: a missing barrier shows under one order or the other.
const SEEDS: [u64; 2] = [7, 0xc0ffee];

/// The op's cases at every variant on the emulator.
fn emulate(op: &str) {
    let dev = EmuDevice::new(Arch::Sm80);
    let reseed = |s| dev.set_schedule_seed(s);
    check_ops(&dev, "cuda-emu", &VARIANTS, &[op], &SEEDS, &reseed, &cases()).assert_all_pass();
}

macro_rules! op_tests {
    ($($op:ident),* $(,)?) => {
        $(#[test] fn $op() { emulate(stringify!($op)); })*
        /// The ops with a test of their own.
        const TESTED: &[&str] = &[$(stringify!($op)),*];
    };
}

op_tests!(
    linear,
    act,
    add,
    scale,
    conv2d,
    upsample_conv2d,
    upsample_nearest2x,
    group_norm,
    nchw_to_tokens,
    tokens_to_nchw,
    cat_channels,
    slice_channels,
    modulated_layer_norm,
    gated_add,
    attention,
    embedding,
    timestep_features,
    patch_embed,
    unpatchify,
    moe,
    moe_gated_add,
    moe_count_sort,
    ddim_step,
);

/// Every op of the table has its `#[test]`, and every such test has cases.
#[test]
fn every_op_has_a_test() {
    assert_eq!(ops(), TESTED, "the table's ops and the op_tests! list differ");
}

/// One failing check hides nothing: with a tolerance nothing meets, every check of every case of
/// the chosen ops is reported (op, case, shapes, variant, error), not just the first.
#[test]
fn every_mismatch_is_reported_not_the_first() {
    let dev = EmuDevice::new(Arch::Sm80);
    let mut table = cases();
    for c in &mut table {
        c.tol = -1.0;
        c.why = "nothing passes";
    }
    let ops = ["add", "slice_channels", "embedding"];
    let outcome = check_ops(&dev, "cuda-emu", &[Dt::F32], &ops, &[1], &|_| {}, &table);
    let expected: Vec<&Case> = table.iter().filter(|c| ops.contains(&c.op) && c.dtype == Dt::F32).collect();
    assert_eq!(outcome.cases_run, expected.len());
    assert!(outcome.not_checked.is_empty());
    assert_eq!(outcome.mismatches.len(), expected.len(), "{:#?}", outcome.mismatches);
    for (line, case) in outcome.mismatches.iter().zip(&expected) {
        let via = if case.via == Via::Kernel { " kernel" } else { "" };
        assert!(line.starts_with(&format!("cuda-emu f32: {}{via} ", case.op)), "{line}");
        assert!(line.contains(&format!("{:?}", case.shapes)) && line.contains("> -1e0 (nothing passes)"), "{line}");
    }
    let panic = std::panic::catch_unwind(|| outcome.assert_all_pass()).unwrap_err();
    let msg = panic.downcast_ref::<String>().unwrap();
    assert!(msg.starts_with(&format!("{0} problem(s) in {0} case run(s)", expected.len())), "{msg}");
}
