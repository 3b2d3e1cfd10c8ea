//! Giving back the pages of a memory-mapped weight once the bf16 backend has its own packed
//! copy: without this, the f32 values it read from the file stay resident beside the bf16 copy
//! until the model is dropped, and the bf16 path would hold more memory than the f32 one.

use crate::weights::{Bytes, RawTensor};

/// Asks the kernel to reclaim the resident pages lying wholly inside `raw`'s bytes when they
/// are a range of a memory map (`MADV_PAGEOUT`, Linux 5.4+: the contents stay valid, a later
/// read faults them back in from the file; anonymous maps keep their data). Best effort: a
/// kernel without it changes nothing.
pub fn release_mapped(raw: &RawTensor) {
    #[cfg(target_os = "linux")]
    if let Bytes::Mapped { map, offset, len } = &raw.bytes {
        // SAFETY: sysconf only reads a system value.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let start = (map.as_ptr() as usize + offset).next_multiple_of(page);
        let end = (map.as_ptr() as usize + offset + len) / page * page;
        if end > start {
            // SAFETY: [start, end) lies inside the live map; PAGEOUT does not change its contents.
            unsafe { libc::madvise(start as *mut _, end - start, libc::MADV_PAGEOUT) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = raw;
}
