//! Layout changes: NCHW <-> tokens, unpatchify, channel concatenation and slicing.

use crate::backend::at_least;
use crate::backend::cuda::backend::{Cuda, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launch::{dim, LaunchConfig};
use crate::backend::cuda::launchers as k;
use crate::error::Result;
use crate::shape_err;
use crate::tensor::numel;

impl<D: Device> Cuda<D> {
    pub(in crate::backend::cuda) fn nchw_to_tokens(&self, x: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let &[n, c, h, w] = x.shape.as_slice() else {
            return Err(shape_err!("nchw_to_tokens: input {:?} must be NCHW", x.shape));
        };
        let hw = h * w;
        let y = self.empty(&[n, hw, c])?;
        let cfg = LaunchConfig {
            grid: [
                dim("nchw_to_tokens", hw.div_ceil(32))?,
                dim("nchw_to_tokens", c.div_ceil(32))?,
                dim("nchw_to_tokens", n)?,
            ],
            block: [32, 8, 1],
            shared_bytes: 0,
        };
        k::nchw_to_tokens(&self.dev, self.act, &cfg, self.ptr(&y), self.ptr(x), c, hw)?;
        Ok(y)
    }

    pub(in crate::backend::cuda) fn tokens_to_nchw(
        &self,
        x: &GpuTensor<D>,
        h: usize,
        w: usize,
    ) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let &[n, l, c] = x.shape.as_slice() else {
            return Err(shape_err!("tokens_to_nchw: input {:?} must be [N, L, C]", x.shape));
        };
        if l != h * w {
            return Err(shape_err!("tokens_to_nchw: {l} tokens is not {h}x{w}"));
        }
        let y = self.empty(&[n, c, h, w])?;
        let cfg = LaunchConfig {
            grid: [
                dim("tokens_to_nchw", c.div_ceil(32))?,
                dim("tokens_to_nchw", l.div_ceil(32))?,
                dim("tokens_to_nchw", n)?,
            ],
            block: [32, 8, 1],
            shared_bytes: 0,
        };
        k::tokens_to_nchw(&self.dev, self.act, &cfg, self.ptr(&y), self.ptr(x), l, c)?;
        Ok(y)
    }

    pub(in crate::backend::cuda) fn unpatchify(
        &self,
        x: &GpuTensor<D>,
        patch: usize,
        channels: usize,
        gh: usize,
        gw: usize,
    ) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let &[b, t, f] = x.shape.as_slice() else {
            return Err(shape_err!("unpatchify: input {:?} must be [B, T, F]", x.shape));
        };
        if t != gh * gw || f != patch * patch * channels {
            return Err(shape_err!("unpatchify: {:?} is not {gh}x{gw} tokens of {patch}x{patch}x{channels}", x.shape));
        }
        let y = self.empty(&[b, channels, gh * patch, gw * patch])?;
        let cfg = self.stride(b * t * f);
        k::unpatchify(&self.dev, self.act, &cfg, self.ptr(&y), self.ptr(x), b, channels, patch, gh, gw)?;
        Ok(y)
    }

    pub(in crate::backend::cuda) fn cat_channels(&self, parts: &[&GpuTensor<D>]) -> Result<GpuTensor<D>> {
        let owned = parts.iter().map(|p| self.act_of(p)).collect::<Result<Vec<_>>>()?;
        let parts: Vec<&GpuTensor<D>> = owned.iter().collect();
        let parts = parts.as_slice();
        let first = parts.first().ok_or_else(|| shape_err!("cat_channels: no inputs"))?;
        for p in parts {
            at_least("cat_channels", "input", &p.shape, 2)?;
        }
        let (n, hw) = (first.shape[0], numel(&first.shape[2..]));
        for p in parts {
            if p.shape[0] != n || numel(&p.shape[2..]) != hw {
                return Err(shape_err!("cat_channels: {:?} does not fit {:?}", p.shape, first.shape));
            }
        }
        // The kernel joins up to three inputs; longer lists fold left.
        let mut acc = (*first).clone();
        let mut rest = &parts[1..];
        while !rest.is_empty() {
            let take = rest.len().min(2);
            let (b, c) = (rest[0], if take == 2 { Some(rest[1]) } else { None });
            let (ca, cb, cc) = (acc.shape[1], b.shape[1], c.map_or(0, |c| c.shape[1]));
            let mut shape = first.shape.clone();
            shape[1] = ca + cb + cc;
            let y = self.empty(&shape)?;
            let cfg = self.stride(n * (ca + cb + cc) * hw);
            let (yp, ap, bp, cp) = (self.ptr(&y), self.ptr(&acc), self.ptr(b), self.ptr_or_null(c));
            k::cat_channels(&self.dev, self.act, &cfg, yp, ap, bp, cp, n, ca, cb, cc, hw)?;
            acc = y;
            rest = &rest[take..];
        }
        Ok(acc)
    }

    pub(in crate::backend::cuda) fn slice_channels(
        &self,
        x: &GpuTensor<D>,
        start: usize,
        len: usize,
    ) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let s = at_least("slice_channels", "input", &x.shape, 2)?;
        let (n, c) = (s[0], s[1]);
        if start + len > c {
            return Err(shape_err!("slice_channels: {start}..{} of {c} channels", start + len));
        }
        let hw = numel(&x.shape[2..]);
        let mut shape = x.shape.clone();
        shape[1] = len;
        let y = self.empty(&shape)?;
        let cfg = self.stride(n * len * hw);
        k::slice_channels(&self.dev, self.act, &cfg, self.ptr(&y), self.ptr(x), n, c, start, len, hw)?;
        Ok(y)
    }
}
