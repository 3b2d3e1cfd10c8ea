// No `//!` header: build.rs `include!`s this file (it cannot use the crate it builds), so the
// kernel sources' hashes it writes are computed by this very function.

/// FNV-1a, 64-bit: the synthetic-weight rule's name hash (`fnv1a64-splitmix64-v1`), the kernel
/// compile cache's keys, the toy data's stream names and the emulator's per-kernel seeds. Part of
/// outputs that are checked bit for bit: never change it.
pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h = (h ^ bytes[i] as u64).wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}
