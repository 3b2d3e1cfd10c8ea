//! The CUDA backend's device tensors: pool and weight allocation, host transfers, the id cache,
//! and the launch helpers every op family uses.

use std::sync::Arc;

use crate::backend::cuda::backend::{Cuda, GpuTensor};
use crate::backend::cuda::device::Device;
use crate::backend::cuda::launch::{blocks_for, LaunchConfig, THREADS};
use crate::backend::cuda::launchers::{self as k, DevPtr};
use crate::backend::cuda::pool::Block;
use crate::backend::Backend as _;
use crate::error::{Error, Result};
use crate::shape_err;
use crate::tensor::{numel, DType, Tensor};
use crate::weights::RawTensor;

impl<D: Device> Cuda<D> {
    /// An id array on the device, uploaded once per distinct content.
    pub(in crate::backend::cuda) fn ids_on_device(&self, ids: &[i64]) -> Result<Arc<Block<D>>> {
        let mut cache = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = cache.get(ids) {
            return Ok(b.clone());
        }
        // Only ever a handful of label sets; bound it anyway, generously: a captured step kept
        // by a session (api::Session keeps at most four) reads its label block by address.
        if cache.len() >= 1024 {
            cache.clear();
        }
        let b = Arc::new(Block::owned(self.dev.upload(bytemuck::cast_slice(ids))?));
        cache.insert(ids.to_vec(), b.clone());
        Ok(b)
    }

    /// A block's device address, as a kernel parameter.
    pub(in crate::backend::cuda) fn addr(&self, b: &Block<D>) -> DevPtr {
        DevPtr::of(&self.dev, b.buffer())
    }

    /// Entry point `<op>_<dtype>` for `dtype`: what per-kernel settings (the shared-memory
    /// opt-in) name; launches go through the typed launchers.
    pub(in crate::backend::cuda) fn entry(op: &str, dtype: DType) -> String {
        format!("{op}_{}", dtype.name())
    }

    /// A tensor's device address, as a kernel parameter.
    pub(in crate::backend::cuda) fn ptr(&self, t: &GpuTensor<D>) -> DevPtr {
        self.addr(&t.buf)
    }

    /// An optional tensor's device address, null without one.
    pub(in crate::backend::cuda) fn ptr_or_null(&self, t: Option<&GpuTensor<D>>) -> DevPtr {
        t.map_or(DevPtr::NULL, |t| self.ptr(t))
    }

    pub(in crate::backend::cuda) fn empty(&self, shape: &[usize]) -> Result<GpuTensor<D>> {
        self.empty_as(shape, self.act)
    }

    pub(in crate::backend::cuda) fn empty_as(&self, shape: &[usize], dtype: DType) -> Result<GpuTensor<D>> {
        let buf = self.pool.take(numel(shape) * dtype.size())?;
        Ok(GpuTensor { buf: Arc::new(buf), shape: shape.to_vec(), dtype })
    }

    /// A weight's memory: exactly its size, outside the pool.
    pub(in crate::backend::cuda) fn owned_as(&self, shape: &[usize], dtype: DType) -> Result<GpuTensor<D>> {
        let buf = self.dev.alloc(numel(shape) * dtype.size())?;
        Ok(GpuTensor { buf: Arc::new(Block::owned(buf)), shape: shape.to_vec(), dtype })
    }

    pub(in crate::backend::cuda) fn to_host(&self, t: &GpuTensor<D>) -> Result<Tensor> {
        let bytes = self.dev.download(t.buf.buffer())?;
        let n = numel(&t.shape);
        let data = match t.dtype {
            DType::BF16 => {
                bytes[..n * 2].chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            _ => bytemuck::pod_collect_to_vec::<u8, f32>(&bytes[..n * 4]),
        };
        Tensor::new(t.shape.clone(), data)
    }

    /// An f32 activation from host values, in a pool buffer.
    pub(in crate::backend::cuda) fn from_host(&self, t: &Tensor) -> Result<GpuTensor<D>> {
        let y = self.empty_as(&t.shape, DType::F32)?;
        self.dev.write(y.buf.buffer(), 0, bytemuck::cast_slice(&t.data))?;
        Ok(y)
    }

    /// A parameter on the device, in its own exact allocation: biases and norm parameters (one
    /// axis) in f32, the rest in the activation type, converted once here.
    pub(in crate::backend::cuda) fn weight_from(&self, t: Tensor) -> Result<GpuTensor<D>> {
        let f32 = self.upload_f32_weight(&t)?;
        if t.shape.len() < 2 || self.act == DType::F32 {
            return Ok(f32);
        }
        let n = numel(&t.shape);
        let w = self.owned_as(&t.shape, self.act)?;
        k::convert_f32_to_bf16(&self.dev, &self.stride(n), self.ptr(&w), self.ptr(&f32), n)?;
        Ok(w)
    }

    fn upload_f32_weight(&self, t: &Tensor) -> Result<GpuTensor<D>> {
        Ok(GpuTensor {
            buf: Arc::new(Block::owned(self.dev.upload(bytemuck::cast_slice(&t.data))?)),
            shape: t.shape.clone(),
            dtype: DType::F32,
        })
    }

    pub(in crate::backend::cuda) fn weight_f32(&self, name: &str, raws: &[&RawTensor]) -> Result<GpuTensor<D>> {
        let w = match raws {
            [one] => self.cpu.weight(name, one)?,
            _ => self.cpu.weight_cat(name, raws)?,
        };
        self.upload_f32_weight(&Tensor::new(w.shape.clone(), w.data().to_vec())?)
    }

    pub(in crate::backend::cuda) fn weight(&self, name: &str, raw: &RawTensor) -> Result<GpuTensor<D>> {
        let data = raw.to_f32_vec().map_err(|e| Error::Weights(format!("tensor \"{name}\": {e}")))?;
        self.weight_from(Tensor::new(raw.shape.clone(), data)?)
    }

    pub(in crate::backend::cuda) fn weight_cat(&self, name: &str, raws: &[&RawTensor]) -> Result<GpuTensor<D>> {
        let w = self.cpu.weight_cat(name, raws)?;
        self.weight_from(Tensor::new(w.shape.clone(), w.data().to_vec())?)
    }

    /// The launch shape of a 1-D grid-stride kernel over `n` elements.
    pub(in crate::backend::cuda) fn stride(&self, n: usize) -> LaunchConfig {
        LaunchConfig::linear(blocks_for(n), THREADS)
    }

    /// Same-shaped parameters stacked along a new first axis, copied on the device.
    pub(in crate::backend::cuda) fn stack(&self, parts: &[&GpuTensor<D>]) -> Result<GpuTensor<D>> {
        let each = numel(&parts[0].shape);
        let mut shape = vec![parts.len()];
        shape.extend_from_slice(&parts[0].shape);
        let dtype = parts[0].dtype;
        let y = self.owned_as(&shape, dtype)?;
        let base = self.ptr(&y);
        for (j, p) in parts.iter().enumerate() {
            if numel(&p.shape) != each {
                return Err(shape_err!("stack: {:?} and {:?} differ", parts[0].shape, p.shape));
            }
            let dst = base.offset(j * each * dtype.size());
            k::scale(&self.dev, dtype, &self.stride(each), dst, self.ptr(p), 1.0, each)?;
        }
        Ok(y)
    }

    pub(in crate::backend::cuda) fn reshape(&self, x: GpuTensor<D>, shape: &[usize]) -> Result<GpuTensor<D>> {
        if numel(shape) != numel(&x.shape) {
            return Err(shape_err!("cannot reshape {:?} to {shape:?}", x.shape));
        }
        Ok(GpuTensor { buf: x.buf, shape: shape.to_vec(), dtype: x.dtype })
    }

    pub(in crate::backend::cuda) fn write(&self, dst: &mut GpuTensor<D>, src: &Tensor) -> Result<()> {
        if dst.dtype != DType::F32 || numel(&dst.shape) != src.data.len() {
            return Err(shape_err!("write: {:?} f32 values into a {:?} {:?} tensor", src.shape, dst.dtype, dst.shape));
        }
        self.dev.write(dst.buf.buffer(), 0, bytemuck::cast_slice(&src.data))
    }
}
