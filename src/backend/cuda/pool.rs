//! The memory plan of the CUDA backend: a caching pool of device buffers.
//!
//! Every activation comes from the pool and goes back to it when its last handle drops, so the
//! device allocates only while a new batch shape warms the pool up; from the second denoising step
//! on, a step allocates and frees nothing (freeing would also synchronise a real GPU). The op
//! sequence of a step is fixed, so the pool ends up holding, per size class, the step's peak number
//! of live buffers of that class: the workspace of that batch shape, found by running it once
//! rather than by a separate liveness analysis that would have to mirror every op.
//!
//! Graph capture: while a stream captures, buffers freed go to a private list that the graph then
//! owns, so a replay's scratch memory is never handed to anyone else between replays; buffers
//! are drawn from the private list first, then from the warm pool, and a capture that needs a new
//! allocation fails (the emulator and the GPU's thread-local capture mode both refuse it).
//!
//! Sizes round up to quarter powers of two (at most 25% slack) so neighbouring shapes share
//! buffers. Weights do not come from here: they are allocated once, exactly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::device::Device;
use crate::error::Result;

/// What the pool holds and has handed out, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Device memory the pool owns (in use or cached).
    pub reserved: usize,
    pub peak_reserved: usize,
    /// Handed out and not yet returned.
    pub in_use: usize,
    pub peak_in_use: usize,
    /// Device allocations the pool has made.
    pub allocations: u64,
}

struct State<B> {
    free: BTreeMap<usize, Vec<B>>,
    /// `Some` while a graph is being captured: what the captured work has freed.
    private: Option<BTreeMap<usize, Vec<B>>>,
    stats: PoolStats,
}

struct Shared<D: Device> {
    dev: D,
    state: Mutex<State<D::Buffer>>,
    /// Fill every buffer handed out with 0xFF bytes (NaN in f32 and bf16), so a kernel that
    /// leaves an output element unwritten shows it, on the GPU as on the emulator (tests).
    poison: std::sync::atomic::AtomicBool,
}

impl<D: Device> Shared<D> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<D::Buffer>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A buffer of device memory: from the pool (returned to it when dropped) or owned (freed).
pub struct Block<D: Device> {
    buf: Option<D::Buffer>,
    class: usize,
    pool: Option<Arc<Shared<D>>>,
}

impl<D: Device> Block<D> {
    /// A buffer outside the pool (weights), freed when dropped.
    pub fn owned(buf: D::Buffer) -> Self {
        Block { buf: Some(buf), class: 0, pool: None }
    }

    pub fn buffer(&self) -> &D::Buffer {
        self.buf.as_ref().expect("a block holds its buffer until dropped")
    }
}

impl<D: Device> Drop for Block<D> {
    fn drop(&mut self) {
        let (Some(pool), Some(buf)) = (self.pool.take(), self.buf.take()) else { return };
        let mut st = pool.lock();
        st.stats.in_use -= self.class;
        match st.private.as_mut() {
            Some(private) => private.entry(self.class).or_default().push(buf),
            None => st.free.entry(self.class).or_default().push(buf),
        }
    }
}

/// Size class of a request: rounded up to a quarter power of two, at least 512 bytes.
pub fn size_class(bytes: usize) -> usize {
    let b = bytes.max(512);
    let log2 = usize::BITS - 1 - b.leading_zeros();
    let step = 1usize << (log2 - 2);
    b.div_ceil(step) * step
}

pub struct Pool<D: Device> {
    shared: Arc<Shared<D>>,
}

impl<D: Device> Clone for Pool<D> {
    fn clone(&self) -> Self {
        Pool { shared: self.shared.clone() }
    }
}

impl<D: Device> Pool<D> {
    pub fn new(dev: D) -> Self {
        let state = State { free: BTreeMap::new(), private: None, stats: PoolStats::default() };
        Pool { shared: Arc::new(Shared { dev, state: Mutex::new(state), poison: Default::default() }) }
    }

    /// See `Shared::poison`.
    pub fn set_poison(&self, on: bool) {
        self.shared.poison.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// A buffer of at least `bytes` bytes; its contents are whatever was there.
    pub fn take(&self, bytes: usize) -> Result<Block<D>> {
        let class = size_class(bytes);
        let reuse = {
            let mut st = self.shared.lock();
            let from_private = st.private.as_mut().and_then(|p| p.get_mut(&class)).and_then(Vec::pop);
            let found = from_private.or_else(|| st.free.get_mut(&class).and_then(Vec::pop));
            if found.is_some() {
                st.stats.in_use += class;
                st.stats.peak_in_use = st.stats.peak_in_use.max(st.stats.in_use);
            }
            found
        };
        let buf = match reuse {
            Some(b) => b,
            None => self.allocate(class)?,
        };
        let block = Block { buf: Some(buf), class, pool: Some(self.shared.clone()) };
        if self.shared.poison.load(std::sync::atomic::Ordering::Relaxed) {
            self.shared.dev.memset(self.shared.dev.address(block.buffer()), class, 0xFF)?;
        }
        Ok(block)
    }

    fn allocate(&self, class: usize) -> Result<D::Buffer> {
        let buf = match self.shared.dev.alloc(class) {
            Ok(b) => b,
            Err(first) => {
                // Out of memory, perhaps only because of what the pool caches: give that back once
                // and retry (outside a capture; during one the retry fails the same way).
                if self.shared.lock().private.is_some() || self.release_cached() == 0 {
                    return Err(first);
                }
                self.shared.dev.alloc(class)?
            }
        };
        let mut st = self.shared.lock();
        let s = &mut st.stats;
        s.allocations += 1;
        s.reserved += class;
        s.peak_reserved = s.peak_reserved.max(s.reserved);
        s.in_use += class;
        s.peak_in_use = s.peak_in_use.max(s.in_use);
        Ok(buf)
    }

    /// Frees every cached buffer not in use; returns the bytes given back.
    pub fn release_cached(&self) -> usize {
        let freed: Vec<(usize, Vec<D::Buffer>)> = {
            let mut st = self.shared.lock();
            let all = std::mem::take(&mut st.free);
            let bytes: usize = all.iter().map(|(c, v)| c * v.len()).sum();
            st.stats.reserved -= bytes;
            all.into_iter().collect()
        };
        // Dropped outside the lock: freeing may wait for the device.
        freed.iter().map(|(c, v)| c * v.len()).sum()
    }

    pub fn stats(&self) -> PoolStats {
        self.shared.lock().stats
    }

    /// Buffers freed from now on are kept for the graph being captured.
    pub fn begin_capture(&self) {
        self.shared.lock().private = Some(BTreeMap::new());
    }

    /// Ends a capture: the buffers the captured work freed, which its graph must keep.
    pub fn end_capture(&self) -> Vec<Block<D>> {
        let private = self.shared.lock().private.take().unwrap_or_default();
        let mut kept = Vec::new();
        for (class, bufs) in private {
            for buf in bufs {
                // Counted as in use again: the graph holds them until it is dropped.
                self.shared.lock().stats.in_use += class;
                kept.push(Block { buf: Some(buf), class, pool: Some(self.shared.clone()) });
            }
        }
        kept
    }
}
