//! 2-D convolution (direct or, fast, on tensor-core tiles), with the nearest 2x upsampling
//! fused into its loads or on its own.

use crate::backend::cuda::backend::{Cuda, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launch::{dim, LaunchConfig};
use crate::backend::cuda::launchers as k;
use crate::backend::Conv2d;
use crate::error::Result;
use crate::shape_err;
use crate::tensor::numel;

impl<D: Device> Cuda<D> {
    /// conv2d of `x`, or (`up` = 1) of `x` upsampled 2x (nearest) with the upsampling done by the
    /// conv's own loads: the upsampled tensor never exists.
    fn conv2d_up(
        &self,
        x: &GpuTensor<D>,
        w: &GpuTensor<D>,
        b: Option<&GpuTensor<D>>,
        p: Conv2d,
        up: usize,
    ) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let (&[n, c, h, wd], &[o, wc, kh, kw]) = (x.shape.as_slice(), w.shape.as_slice()) else {
            return Err(shape_err!("conv2d: input {:?} and weight {:?} must be 4-D", x.shape, w.shape));
        };
        let (h, wd) = (h << up, wd << up);
        if let Some(b) = b.filter(|b| numel(&b.shape) != o) {
            return Err(shape_err!("conv2d: bias {:?} does not fit weight {:?}", b.shape, w.shape));
        }
        if wc != c {
            return Err(shape_err!("conv2d: input has {c} channels, weight {:?} expects {wc}", w.shape));
        }
        let (oh, ow) = crate::backend::cpu::conv::out_size(h, wd, kh, kw, p)
            .ok_or_else(|| shape_err!("conv2d: input {:?} is smaller than the kernel {:?}", x.shape, w.shape))?;
        let y = self.empty(&[n, o, oh, ow])?;
        let op = if up == 1 { "conv2d_up2" } else { "conv2d" };
        let tc = self.tc128(c * kh * kw);
        let tile = if tc { 128 } else { 32 };
        let cfg = LaunchConfig {
            grid: [dim(op, (oh * ow).div_ceil(tile))?, dim(op, o.div_ceil(tile))?, dim(op, n)?],
            block: [256, 1, 1],
            shared_bytes: 0,
        };
        let (dev, act, yp, xp, wp, bp) =
            (&self.dev, self.act, self.ptr(&y), self.ptr(x), self.ptr(w), self.ptr_or_null(b));
        let (stride, pt, pl) = (p.stride, p.pad[0], p.pad[1]);
        match (tc, up == 1) {
            (true, true) => {
                k::conv2d_up2_tc_bf16(dev, &cfg, yp, xp, wp, bp, c, h, wd, o, kh, kw, stride, pt, pl, oh, ow)
            }
            (true, false) => k::conv2d_tc_bf16(dev, &cfg, yp, xp, wp, bp, c, h, wd, o, kh, kw, stride, pt, pl, oh, ow),
            (false, true) => k::conv2d_up2(dev, act, &cfg, yp, xp, wp, bp, c, h, wd, o, kh, kw, stride, pt, pl, oh, ow),
            (false, false) => k::conv2d(dev, act, &cfg, yp, xp, wp, bp, c, h, wd, o, kh, kw, stride, pt, pl, oh, ow),
        }?;
        Ok(y)
    }

    pub(in crate::backend::cuda) fn conv2d(
        &self,
        x: &GpuTensor<D>,
        w: &GpuTensor<D>,
        b: Option<&GpuTensor<D>>,
        p: Conv2d,
    ) -> Result<GpuTensor<D>> {
        self.conv2d_up(x, w, b, p, 0)
    }

    pub(in crate::backend::cuda) fn upsample_conv2d(
        &self,
        x: &GpuTensor<D>,
        w: &GpuTensor<D>,
        b: Option<&GpuTensor<D>>,
        p: Conv2d,
    ) -> Result<GpuTensor<D>> {
        self.conv2d_up(x, w, b, p, 1)
    }

    pub(in crate::backend::cuda) fn upsample_nearest2x(&self, x: &GpuTensor<D>) -> Result<GpuTensor<D>> {
        let x = &self.act_of(x)?;
        let &[n, c, h, w] = x.shape.as_slice() else {
            return Err(shape_err!("upsample: input {:?} must be NCHW", x.shape));
        };
        let y = self.empty(&[n, c, 2 * h, 2 * w])?;
        let cfg = self.stride(4 * n * c * h * w);
        k::upsample_nearest2x(&self.dev, self.act, &cfg, self.ptr(&y), self.ptr(x), n * c, h, w)?;
        Ok(y)
    }
}
