//! One denoising step captured as a device graph and replayed.

use crate::backend::cuda::backend::Cuda;
use crate::backend::cuda::device::Device;
use crate::backend::cuda::pool::Block;
use crate::error::Result;

/// One denoising step captured on the device, with the scratch buffers its replays use.
pub struct CudaGraph<D: Device> {
    graph: D::Graph,
    _scratch: Vec<Block<D>>,
}

impl<D: Device> CudaGraph<D> {
    pub fn graph(&self) -> &D::Graph {
        &self.graph
    }
}

impl<D: Device> Cuda<D> {
    pub(in crate::backend::cuda) fn capture(
        &self,
        step: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Option<CudaGraph<D>>> {
        self.pool.begin_capture();
        if let Err(e) = self.dev.begin_capture() {
            drop(self.pool.end_capture());
            return Err(e);
        }
        let ran = step();
        // The capture always ends, so the stream is usable again whatever happened.
        let graph = self.dev.end_capture();
        let scratch = self.pool.end_capture();
        ran?;
        Ok(Some(CudaGraph { graph: graph?, _scratch: scratch }))
    }

    pub(in crate::backend::cuda) fn replay(&self, graph: &CudaGraph<D>) -> Result<()> {
        self.dev.replay(&graph.graph)
    }
}
