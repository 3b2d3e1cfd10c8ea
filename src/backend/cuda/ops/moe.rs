//! Mixture of experts: routing, counting sort by expert, gather, both grouped expert layers
//! (simple or, fast, tensor-core tiles), and the weighted combine (or its fused residual add).

use crate::backend::cuda::backend::{Cuda, GpuMoe, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launch::{dim, LaunchConfig};
use crate::backend::cuda::launchers as kl;
use crate::backend::cuda::pool::Block;
use crate::backend::{axes, moe_dims, moe_input, MoeWeights, Routing};
use crate::error::Result;
use crate::shape_err;
use crate::tensor::{numel, DType};

/// An MoE layer's expert outputs before the combine (see `Cuda::moe_experts`).
struct MoeRun<D: Device> {
    /// [tokens * k, D], expert-sorted rows.
    y: GpuTensor<D>,
    ids: Block<D>,
    wts: Block<D>,
    /// Row of y for each (token, slot) entry.
    pos: Block<D>,
    tokens: usize,
    d: usize,
}

impl<D: Device> Cuda<D> {
    pub(in crate::backend::cuda) fn prepare_moe(&self, name: &str, w: MoeWeights<GpuTensor<D>>) -> Result<GpuMoe<D>> {
        let (experts, _, hidden) = moe_dims(&format!("prepare_moe ({name})"), &w, |w| &w.shape)?;
        Ok(GpuMoe {
            experts,
            hidden,
            fc1_w: self.stack(&w.fc1_w.iter().collect::<Vec<_>>())?,
            fc1_b: self.stack(&w.fc1_b.iter().collect::<Vec<_>>())?,
            fc2_w: self.stack(&w.fc2_w.iter().collect::<Vec<_>>())?,
            fc2_b: self.stack(&w.fc2_b.iter().collect::<Vec<_>>())?,
            gate: w.gate,
        })
    }

    /// Routing, sorting, gathering and both expert layers of an MoE layer over the token rows of
    /// `x` (already in the activation type): the expert outputs in expert-sorted order and what
    /// the combine needs to bring them back.
    fn moe_experts(&self, x: &GpuTensor<D>, w: &GpuMoe<D>, top_k: usize) -> Result<MoeRun<D>> {
        moe_input("moe", &x.shape, &w.gate.shape, top_k)?;
        let d = *x.shape.last().unwrap_or(&0);
        let n_tok = numel(&x.shape) / d.max(1);
        let (e, f, k) = (w.experts, w.hidden, top_k);
        let rows = n_tok * k;
        let ids = self.pool.take(rows * 4)?;
        let wts = self.pool.take(rows * 4)?;
        let a = |b: &Block<D>| self.addr(b);
        let cfg = LaunchConfig { grid: [dim("moe", n_tok)?, 1, 1], block: [128, 1, 1], shared_bytes: 0 };
        kl::moe_route(&self.dev, self.act, &cfg, a(&ids), a(&wts), self.ptr(x), self.ptr(&w.gate), d, e, k)?;
        let offsets = self.pool.take((e + 1) * 4)?;
        let sorted = self.pool.take(rows * 4)?;
        let pos = self.pool.take(rows * 4)?;
        let cfg = LaunchConfig { grid: [1, 1, 1], block: [1024, 1, 1], shared_bytes: 0 };
        kl::moe_count_sort_i32(&self.dev, &cfg, a(&offsets), a(&sorted), a(&pos), a(&ids), rows, e)?;
        let xs = self.empty(&[rows, d])?;
        let cfg = LaunchConfig { grid: [dim("moe", rows)?, 1, 1], block: [128, 1, 1], shared_bytes: 0 };
        kl::moe_gather(&self.dev, self.act, &cfg, self.ptr(&xs), self.ptr(x), a(&sorted), k, d)?;
        let fc = |y: &GpuTensor<D>,
                  xin: &GpuTensor<D>,
                  wt: &GpuTensor<D>,
                  bias: &GpuTensor<D>,
                  nout: usize,
                  kin: usize,
                  gelu: bool| {
            let tc = self.tc128(kin);
            let tile = if tc { 128 } else { 32 };
            let cfg = LaunchConfig {
                grid: [dim("moe", nout.div_ceil(tile))?, dim("moe", rows.div_ceil(tile) + e)?, 1],
                block: [256, 1, 1],
                shared_bytes: 0,
            };
            let (yp, xp, wp, bp, op) = (self.ptr(y), self.ptr(xin), self.ptr(wt), self.ptr(bias), a(&offsets));
            if tc {
                kl::moe_expert_fc_tc128_bf16(&self.dev, &cfg, yp, xp, wp, bp, op, e, nout, kin, gelu as usize)
            } else {
                kl::moe_expert_fc(&self.dev, self.act, &cfg, yp, xp, wp, bp, op, e, nout, kin, gelu as usize)
            }
        };
        let h = self.empty(&[rows, f])?;
        fc(&h, &xs, &w.fc1_w, &w.fc1_b, f, d, true)?;
        let y = self.empty(&[rows, d])?;
        fc(&y, &h, &w.fc2_w, &w.fc2_b, d, f, false)?;
        Ok(MoeRun { y, ids, wts, pos, tokens: n_tok, d })
    }

    fn routing_of(&self, run: &MoeRun<D>, top_k: usize, record: bool) -> Result<Option<Routing>> {
        if !record {
            return Ok(None);
        }
        let rows = run.tokens * top_k;
        let ids: Vec<i32> = bytemuck::pod_collect_to_vec(&self.dev.download(run.ids.buffer())?[..rows * 4]);
        let weights: Vec<f32> = bytemuck::pod_collect_to_vec(&self.dev.download(run.wts.buffer())?[..rows * 4]);
        Ok(Some(Routing { top_k, experts: ids.into_iter().map(|v| v as i64).collect(), weights }))
    }

    pub(in crate::backend::cuda) fn moe(
        &self,
        x: &GpuTensor<D>,
        w: &GpuMoe<D>,
        top_k: usize,
        record: bool,
    ) -> Result<(GpuTensor<D>, Option<Routing>)> {
        let x = &self.act_of(x)?;
        let run = self.moe_experts(x, w, top_k)?;
        let out = self.empty(&x.shape)?;
        let a = |b: &Block<D>| self.addr(b);
        let cfg = LaunchConfig { grid: [dim("moe", run.tokens)?, 1, 1], block: [128, 1, 1], shared_bytes: 0 };
        let (op, yp) = (self.ptr(&out), self.ptr(&run.y));
        kl::moe_combine(&self.dev, self.act, &cfg, op, yp, a(&run.wts), a(&run.ids), a(&run.pos), top_k, run.d)?;
        Ok((out, self.routing_of(&run, top_k, record)?))
    }

    pub(in crate::backend::cuda) fn moe_gated_add(
        &self,
        x: &mut GpuTensor<D>,
        m_in: &GpuTensor<D>,
        w: &GpuMoe<D>,
        top_k: usize,
        mods: &GpuTensor<D>,
        gate: usize,
        record: bool,
    ) -> Result<Option<Routing>> {
        // The residual stream is f32 at either precision (see gated_add); the combined expert
        // rows go straight into it, never stored.
        let mods = &self.convert(mods, DType::F32)?;
        let &[b, t, d] = x.shape.as_slice() else {
            return Err(shape_err!("moe_gated_add: x {:?} must be [B, T, D]", x.shape));
        };
        let [mb, m] = axes("moe_gated_add", "modulation", &mods.shape)?;
        if x.dtype != DType::F32 || numel(&m_in.shape) != b * t * d || mb != b || (gate + 1) * d > m {
            return Err(shape_err!(
                "moe_gated_add: x {:?} {:?}, input {:?}, modulation {:?} (chunk {gate}) do not fit",
                x.dtype,
                x.shape,
                m_in.shape,
                mods.shape
            ));
        }
        let m_in = &self.act_of(m_in)?;
        let run = self.moe_experts(m_in, w, top_k)?;
        let a = |b: &Block<D>| self.addr(b);
        let cfg = LaunchConfig { grid: [dim("moe_gated_add", run.tokens)?, 1, 1], block: [128, 1, 1], shared_bytes: 0 };
        let (xp, yp, mp) = (self.ptr(x), self.ptr(&run.y), self.ptr(mods));
        let (wts, ids, pos) = (a(&run.wts), a(&run.ids), a(&run.pos));
        kl::moe_combine_gated_add(&self.dev, self.act, &cfg, xp, yp, wts, ids, pos, top_k, d, mp, t, m, gate * d)?;
        self.routing_of(&run, top_k, record)
    }
}
