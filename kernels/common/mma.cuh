// Tensor-core and asynchronous-copy primitives: inline PTX on the GPU, an emulation following the
// PTX ISA's fragment layouts in the emulator (src/emu/runtime.cpp). Destination first.
//
// mma m16n8k16 fragments, with g = lane / 4 and t = lane % 4 (each u32 packs two 16-bit elements,
// the smaller index in the low half):
//   A (16x16, row major): a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..], a[2] = A[g][2t+8..], a[3] = A[g+8][2t+8..]
//   B (16x8, k by n):     b[0] = B[2t..2t+1][g],  b[1] = B[2t+8..2t+9][g]
//   C, D (16x8, f32):     c[0] = C[g][2t], c[1] = C[g][2t+1], c[2] = C[g+8][2t], c[3] = C[g+8][2t+1]
// ldmatrix .x1/.x2/.x4: lanes 8j..8j+7 give the row addresses of matrix j (16-byte aligned shared
// memory); r[j] = M_j[g][2t..2t+1], or with .trans M_j[2t][g] and M_j[2t+1][g].
#pragma once
#include "dialect.cuh"

#ifdef PERCEPT_EMU
namespace percept_emu {
void mma_16816(float* d, const u32* a, const u32* b, const float* c, bool bf16_inputs);
void ldmatrix(u32* r, const void* row_addr, int count, bool trans);
}  // namespace percept_emu

__device__ __forceinline__ void mma_bf16_16816(float d[4], const u32 a[4], const u32 b[2], const float c[4]) {
    percept_emu::mma_16816(d, a, b, c, true);
}
__device__ __forceinline__ void mma_f16_16816(float d[4], const u32 a[4], const u32 b[2], const float c[4]) {
    percept_emu::mma_16816(d, a, b, c, false);
}
__device__ __forceinline__ void ldmatrix_x1(u32 r[1], const void* smem) { percept_emu::ldmatrix(r, smem, 1, false); }
__device__ __forceinline__ void ldmatrix_x2(u32 r[2], const void* smem) { percept_emu::ldmatrix(r, smem, 2, false); }
__device__ __forceinline__ void ldmatrix_x4(u32 r[4], const void* smem) { percept_emu::ldmatrix(r, smem, 4, false); }
__device__ __forceinline__ void ldmatrix_x1_trans(u32 r[1], const void* smem) { percept_emu::ldmatrix(r, smem, 1, true); }
__device__ __forceinline__ void ldmatrix_x2_trans(u32 r[2], const void* smem) { percept_emu::ldmatrix(r, smem, 2, true); }
__device__ __forceinline__ void ldmatrix_x4_trans(u32 r[4], const void* smem) { percept_emu::ldmatrix(r, smem, 4, true); }

// When `valid` is false the destination is zero-filled and `src` is not read (PTX src-size 0).
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem, bool valid) {
    percept_emu::cp_async(smem, gmem, 4, valid ? 4 : 0);
}
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
    percept_emu::cp_async(smem, gmem, 16, valid ? 16 : 0);
}
__device__ __forceinline__ void cp_async_commit() { percept_emu::cp_async_commit(); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    percept_emu::cp_async_wait(N);
}

#else

__device__ __forceinline__ u32 smem_u32(const void* p) {
    u32 r;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
    return r;
}

__device__ __forceinline__ void mma_bf16_16816(float d[4], const u32 a[4], const u32 b[2], const float c[4]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
}
__device__ __forceinline__ void mma_f16_16816(float d[4], const u32 a[4], const u32 b[2], const float c[4]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
}
__device__ __forceinline__ void ldmatrix_x1(u32 r[1], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];" : "=r"(r[0]) : "r"(smem_u32(smem)));
}
__device__ __forceinline__ void ldmatrix_x2(u32 r[2], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(smem_u32(smem)));
}
__device__ __forceinline__ void ldmatrix_x4(u32 r[4], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(smem)));
}
__device__ __forceinline__ void ldmatrix_x1_trans(u32 r[1], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];" : "=r"(r[0]) : "r"(smem_u32(smem)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(u32 r[2], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(smem_u32(smem)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(u32 r[4], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(smem)));
}
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(smem_u32(smem)), "l"(gmem),
                 "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_u32(smem)), "l"(gmem),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

#endif
