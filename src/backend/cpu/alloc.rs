//! The CPU backend allocates a fresh buffer for every op's output (134 MB for one 128-channel
//! activation of the VAE at 512x512). glibc's malloc hands buffers that large out as fresh
//! mappings and unmaps them on free, so every op pays page faults and the kernel's zeroing of
//! each page: 7 % of a VAE decode. `reuse_freed_memory` makes malloc serve them from its heap
//! and keep freed memory for the next one instead.

/// Tunes the process's allocator (glibc only; elsewhere nothing happens) so that large freed
/// buffers are reused rather than returned to the system. Freed memory then stays with the
/// process until it exits, which suits a run that allocates the same shapes over and over. The
/// `percept` binary calls this at start; a program embedding the library may call it too.
/// Returns whether the allocator accepted the settings.
pub fn reuse_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // From glibc's malloc.h.
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only sets allocator parameters; both values are in range.
        unsafe { mallopt(M_MMAP_THRESHOLD, i32::MAX) == 1 && mallopt(M_TRIM_THRESHOLD, i32::MAX) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}
