//! Per-pixel reductions over ensemble members, and a float32 sum that follows PyTorch's CPU
//! summation order (what Marigold's alignment cost is computed with).

/// torch's median of a list: for an even count the lower of the two middle values (not their
/// mean). `values` is reordered.
pub fn median_lower(values: &mut [f32]) -> f32 {
    assert!(!values.is_empty(), "median of an empty list");
    let mid = (values.len() - 1) / 2;
    *values.select_nth_unstable_by(mid, |a, b| a.total_cmp(b)).1
}

/// f64 twin of [`median_lower`].
pub fn median_lower_f64(values: &mut [f64]) -> f64 {
    assert!(!values.is_empty(), "median of an empty list");
    let mid = (values.len() - 1) / 2;
    *values.select_nth_unstable_by(mid, |a, b| a.total_cmp(b)).1
}

/// Per-pixel median of `k` stacked members (`members` is [k, n]); lower middle for even k.
pub fn median_over_members(members: &[f32], k: usize) -> Vec<f32> {
    let n = members.len() / k.max(1);
    let mut col = vec![0.0f32; k];
    (0..n)
        .map(|p| {
            for (m, c) in col.iter_mut().enumerate() {
                *c = members[m * n + p];
            }
            median_lower(&mut col)
        })
        .collect()
}

/// Amodal segmentation ensemble: members clamped to [-1, 1], then the per-pixel median
/// (clamping commutes with the median, so this is also the median, clamped).
pub fn amodal_median(members: &[f32], k: usize) -> Vec<f32> {
    median_over_members(members, k).into_iter().map(|v| v.clamp(-1.0, 1.0)).collect()
}

/// Per-pixel mean of `k` stacked members (flow ensembles), accumulated in f64.
pub fn mean_over_members(members: &[f32], k: usize) -> Vec<f32> {
    let n = members.len() / k.max(1);
    (0..n).map(|p| ((0..k).map(|m| members[m * n + p] as f64).sum::<f64>() / k as f64) as f32).collect()
}

/// Lanes of torch's `Vectorized<float>` in its CPU sum kernel (the AVX2 build).
const SUM_LANES: usize = 8;
/// Vectors summed side by side (`ilp_factor` of torch's `row_sum`).
const SUM_ILP: usize = 4;

/// `torch.sum` of a contiguous float32 tensor on the CPU, in the same order of additions:
/// vectors of 8 lanes, 4 vectors side by side, partial sums carried up a 4-level cascade of
/// chunks (torch's `multi_row_sum`), then the tail elements, then the lanes one by one. Matches
/// torch 2.15 on x86-64 bit for bit on the `postprocess` fixture's alignment sums.
pub fn torch_sum_f32(x: &[f32]) -> f32 {
    let n = x.len();
    if n < SUM_LANES {
        // torch's scalar path: the same cascade over single elements
        return scalar_cascade(x);
    }
    let vec_count = n / SUM_LANES;
    let rows = vec_count / SUM_ILP;
    let mut partial = multi_row_sum(x, rows);
    for v in rows * SUM_ILP..vec_count {
        add_lanes(&mut partial[0], &x[v * SUM_LANES..(v + 1) * SUM_LANES]);
    }
    for k in 1..SUM_ILP {
        let p = partial[k];
        add_lanes(&mut partial[0], &p);
    }
    let mut total = 0.0f32;
    for &v in &x[vec_count * SUM_LANES..] {
        total += v;
    }
    for lane in partial[0] {
        total += lane;
    }
    total
}

type Lanes = [f32; SUM_LANES];

fn add_lanes(acc: &mut Lanes, v: &[f32]) {
    for (a, b) in acc.iter_mut().zip(v) {
        *a += *b;
    }
}

fn ceil_log2(x: usize) -> usize {
    if x <= 2 {
        1
    } else {
        (usize::BITS - (x - 1).leading_zeros()) as usize
    }
}

/// Sum `rows` rows of SUM_ILP vectors each, keeping SUM_ILP separate vector accumulators,
/// with chunks of 2^level_power rows folded into the next of 4 levels.
// index loops kept to mirror torch's loop nest, whose order is the point here
#[allow(clippy::needless_range_loop)]
fn multi_row_sum(x: &[f32], rows: usize) -> [Lanes; SUM_ILP] {
    const LEVELS: usize = 4;
    let level_power = (ceil_log2(rows) / LEVELS).max(4);
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    let mut acc = [[[0.0f32; SUM_LANES]; SUM_ILP]; LEVELS];
    let row = |i: usize, k: usize| {
        let start = (i * SUM_ILP + k) * SUM_LANES;
        &x[start..start + SUM_LANES]
    };
    let mut i = 0;
    while i + level_step <= rows {
        for _ in 0..level_step {
            for k in 0..SUM_ILP {
                add_lanes(&mut acc[0][k], row(i, k));
            }
            i += 1;
        }
        for j in 1..LEVELS {
            for k in 0..SUM_ILP {
                let lower = acc[j - 1][k];
                add_lanes(&mut acc[j][k], &lower);
                acc[j - 1][k] = [0.0; SUM_LANES];
            }
            if i & (level_mask << (j * level_power)) != 0 {
                break;
            }
        }
    }
    while i < rows {
        for k in 0..SUM_ILP {
            add_lanes(&mut acc[0][k], row(i, k));
        }
        i += 1;
    }
    for j in 1..LEVELS {
        for k in 0..SUM_ILP {
            let upper = acc[j][k];
            add_lanes(&mut acc[0][k], &upper);
        }
    }
    acc[0]
}

/// torch's `row_sum` over single floats (inputs too short for a vector).
fn scalar_cascade(x: &[f32]) -> f32 {
    let mut partial = [0.0f32; SUM_ILP];
    let rows = x.len() / SUM_ILP;
    for i in 0..rows {
        for k in 0..SUM_ILP {
            partial[k] += x[i * SUM_ILP + k];
        }
    }
    for &v in &x[rows * SUM_ILP..] {
        partial[0] += v;
    }
    let mut total = partial[0];
    for p in &partial[1..] {
        total += p;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_even_count_is_lower_middle() {
        assert_eq!(median_lower(&mut [4.0, 1.0, 3.0, 2.0]), 2.0);
        assert_eq!(median_lower(&mut [5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median_lower(&mut [7.0]), 7.0);
        assert_eq!(median_over_members(&[1.0, 10.0, 4.0, 20.0, 2.0, 30.0, 3.0, 40.0], 4), vec![2.0, 20.0]);
    }

    #[test]
    fn torch_sum_is_close_to_exact_sum() {
        for n in [1usize, 5, 8, 31, 32, 33, 100, 2500, 70000] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 997.0).collect();
            let exact: f64 = x.iter().map(|&v| v as f64).sum();
            let got = torch_sum_f32(&x) as f64;
            assert!((got - exact).abs() <= 1e-6 * exact.abs().max(1.0), "n={n}: {got} vs {exact}");
        }
    }
}
