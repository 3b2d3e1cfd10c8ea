// Probes of the warp-level primitives, one warp each: the emulator's tests check them against the
// PTX ISA layouts, and on a GPU the same kernels compare the emulation with the hardware.
#include "common/mma.cuh"

// d[lane][0..4] = mma.m16n8k16 of the fragments a[lane][0..4], b[lane][0..2], c[lane][0..4].
extern "C" __global__ void probe_mma_bf16(float* d, const u32* a, const u32* b, const float* c) {
    int l = threadIdx.x;
    u32 af[4] = {a[4 * l], a[4 * l + 1], a[4 * l + 2], a[4 * l + 3]};
    u32 bf[2] = {b[2 * l], b[2 * l + 1]};
    float cf[4] = {c[4 * l], c[4 * l + 1], c[4 * l + 2], c[4 * l + 3]}, df[4];
    mma_bf16_16816(df, af, bf, cf);
    for (int i = 0; i < 4; i++) d[4 * l + i] = df[i];
}
PERCEPT_KERNEL(probe_mma_bf16)

extern "C" __global__ void probe_mma_f16(float* d, const u32* a, const u32* b, const float* c) {
    int l = threadIdx.x;
    u32 af[4] = {a[4 * l], a[4 * l + 1], a[4 * l + 2], a[4 * l + 3]};
    u32 bf[2] = {b[2 * l], b[2 * l + 1]};
    float cf[4] = {c[4 * l], c[4 * l + 1], c[4 * l + 2], c[4 * l + 3]}, df[4];
    mma_f16_16816(df, af, bf, cf);
    for (int i = 0; i < 4; i++) d[4 * l + i] = df[i];
}
PERCEPT_KERNEL(probe_mma_f16)

// src holds four 8x8 matrices of 16-bit values, row-major, one after the other (256 values).
// out[lane][0..4] = ldmatrix.x4, out[lane][4..8] = ldmatrix.x4.trans, out[lane][8..10] = .x2,
// out[lane][10] = .x1, where lane L gives the address of row L % 8 of matrix L / 8.
extern "C" __global__ void probe_ldmatrix_b16(u32* out, const u16* src) {
    SHARED_ALIGNED(16, u16[256], tile);
    int l = threadIdx.x;
    for (int i = l; i < 256; i += 32) tile[i] = src[i];
    __syncwarp();
    u32 r[4];
    ldmatrix_x4(r, &tile[l * 8]);
    for (int i = 0; i < 4; i++) out[11 * l + i] = r[i];
    ldmatrix_x4_trans(r, &tile[l * 8]);
    for (int i = 0; i < 4; i++) out[11 * l + 4 + i] = r[i];
    ldmatrix_x2(r, &tile[(l & 15) * 8]);
    out[11 * l + 8] = r[0];
    out[11 * l + 9] = r[1];
    ldmatrix_x1(r, &tile[(l & 7) * 8]);
    out[11 * l + 10] = r[0];
}
PERCEPT_KERNEL(probe_ldmatrix_b16)

// One warp per block; out[lane][0..8] = shfl idx (width 32 and 8), xor, down, up (width 16), ballot,
// and a shuffle among the odd lanes only (even lanes write their own value).
extern "C" __global__ void probe_warp_u32(u32* out, const u32* in) {
    int l = threadIdx.x;
    u32 v = in[l];
    u32* o = out + 8 * l;
    o[0] = __shfl_sync(FULL_MASK, v, (l * 7 + 3) & 31);
    o[1] = __shfl_sync(FULL_MASK, v, l + 5, 8);
    o[2] = __shfl_xor_sync(FULL_MASK, v, 6);
    o[3] = __shfl_down_sync(FULL_MASK, v, 3, 16);
    o[4] = __shfl_up_sync(FULL_MASK, v, 5, 16);
    o[5] = __ballot_sync(FULL_MASK, v & 1);
    o[6] = __ballot_sync(FULL_MASK, l % 3 == 0);
    if (l & 1)
        o[7] = __shfl_xor_sync(0xAAAAAAAAu, v, 2);
    else
        o[7] = v;
}
PERCEPT_KERNEL(probe_warp_u32)

// Atomics on global and shared memory: counts[0] += 1 per thread, counts[1] = max of the global
// thread ids, counts[2] += the per-block sums gathered in shared memory, sum[0] += x per thread.
extern "C" __global__ void probe_atomic_i32(int* counts, float* sum, const float* x) {
    SHARED(int[1], block_total);
    if (threadIdx.x == 0) block_total[0] = 0;
    __syncthreads();
    int id = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(&counts[0], 1);
    atomicMax(&counts[1], id);
    atomicAdd(&block_total[0], (int)threadIdx.x);
    atomicAdd(&sum[0], x[id]);
    __syncthreads();
    if (threadIdx.x == 0) atomicAdd(&counts[2], block_total[0]);
}
PERCEPT_KERNEL(probe_atomic_i32)

// The dialect's conversions, elementwise: bf[i], hf[i] = x[i] as bf16 / f16 bits, and back.
extern "C" __global__ void probe_convert_f32(u16* bf, u16* hf, float* bf_back, float* hf_back, const float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    bf16 b = f32_to_bf16(x[i]);
    f16 h = f32_to_f16(x[i]);
    bf[i] = b.bits;
    hf[i] = h.bits;
    bf_back[i] = bf16_to_f32(b);
    hf_back[i] = f16_to_f32(h);
}
PERCEPT_KERNEL(probe_convert_f32)
