//! Embeddings: label table rows, the per-label patch embedding, and the timestep features.

use crate::backend::axes;
use crate::backend::cuda::backend::{Cuda, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launch::{checked, dim, LaunchConfig};
use crate::backend::cuda::launchers as k;
use crate::error::{Error, Result};
use crate::shape_err;
use crate::tensor::{numel, DType};

impl<D: Device> Cuda<D> {
    pub(in crate::backend::cuda) fn embedding(&self, table: &GpuTensor<D>, ids: &[i64]) -> Result<GpuTensor<D>> {
        let [rows, d] = axes("embedding", "table", &table.shape)?;
        if let Some(bad) = ids.iter().find(|&&id| id < 0 || id as usize >= rows) {
            return Err(Error::Input(format!("label {bad} is outside the embedding table's {rows} rows")));
        }
        // Sizes checked before anything is uploaded or allocated.
        checked::<i32>("embedding", "size", rows)?;
        checked::<i32>("embedding", "size", d)?;
        let cfg =
            LaunchConfig { grid: [dim("embedding", ids.len().max(1))?, 1, 1], block: [128, 1, 1], shared_bytes: 0 };
        let idb = self.ids_on_device(ids)?;
        let y = self.empty(&[ids.len(), d])?;
        k::embedding(&self.dev, self.act, &cfg, self.ptr(&y), self.ptr(table), self.addr(&idb), rows, d)?;
        Ok(y)
    }

    pub(in crate::backend::cuda) fn patch_embed(
        &self,
        x: &GpuTensor<D>,
        conv_w: &GpuTensor<D>,
        conv_b: &GpuTensor<D>,
        n_convs: usize,
        labels: &[i64],
        first_label: i64,
        pos: &GpuTensor<D>,
        patch: usize,
    ) -> Result<GpuTensor<D>> {
        // In f32 at every precision (see the Backend trait); weights not from `weight_f32`
        // are widened here.
        let x = &self.convert(x, DType::F32)?;
        let (conv_w, pos) = (&self.convert(conv_w, DType::F32)?, &self.convert(pos, DType::F32)?);
        let &[b, c, h, w] = x.shape.as_slice() else {
            return Err(shape_err!("patch_embed: input {:?} must be NCHW", x.shape));
        };
        if labels.len() != b {
            return Err(shape_err!("patch_embed: {} labels for a batch of {b}", labels.len()));
        }
        let [nd, ..] = axes::<4>("patch_embed", "conv weight", &conv_w.shape)?;
        if n_convs == 0
            || patch == 0
            || nd % n_convs != 0
            || conv_w.shape[1..] != [c, patch, patch]
            || numel(&conv_b.shape) != nd
        {
            return Err(shape_err!(
                "patch_embed: {n_convs} convs of patch {patch} over {c} channels do not fit weight {:?}, bias {:?}",
                conv_w.shape,
                conv_b.shape
            ));
        }
        let d = nd / n_convs;
        let t = (h / patch) * (w / patch);
        if numel(&pos.shape) != t * d {
            return Err(shape_err!("patch_embed: pos_embed {:?} does not fit {t} tokens of {d}", pos.shape));
        }
        let first_label = usize::try_from(first_label)
            .map_err(|_| Error::Input(format!("patch_embed: the first task label {first_label} is negative")))?;
        let lb = self.ids_on_device(labels)?;
        let y = self.empty_as(&[b, t, d], DType::F32)?;
        let cfg = LaunchConfig {
            grid: [dim("patch_embed", t)?, dim("patch_embed", b)?, 1],
            block: [128, 1, 1],
            shared_bytes: dim("patch_embed", 4 * c * patch * patch)?,
        };
        let (yp, xp, wp, bp, lp) = (self.ptr(&y), self.ptr(x), self.ptr(conv_w), self.ptr(conv_b), self.addr(&lb));
        let pp = self.ptr(pos);
        k::patch_embed(&self.dev, DType::F32, &cfg, yp, xp, wp, bp, lp, first_label, n_convs, pp, c, h, w, d, patch)?;
        Ok(y)
    }

    pub(in crate::backend::cuda) fn timestep_features(&self, t: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        use crate::backend::cpu::timestep::FREQ_DIM;
        if t.dtype != DType::F32 || t.shape.len() != 1 {
            return Err(shape_err!("timestep_features: t must be f32 [B], not {:?} {:?}", t.dtype, t.shape));
        }
        let (b, half) = (t.shape[0], FREQ_DIM / 2);
        let y = self.empty(&[b, FREQ_DIM])?;
        let cfg = self.stride(b * half);
        k::timestep_features(&self.dev, self.act, &cfg, self.ptr(&y), self.ptr(t), b, half)?;
        Ok(y)
    }
}
