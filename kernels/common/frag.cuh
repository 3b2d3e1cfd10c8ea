// Row-wise work on mma m16n8 accumulator fragments, as flash attention's online softmax needs it.
// In a C fragment c[4] (mma.cuh), c[0..1] belong to row g and c[2..3] to row g + 8 (g = lane / 4),
// and each row's 8 columns are spread over the 4 lanes of a quad (t = lane % 4), two per lane.
#pragma once
#include "mma.cuh"

// The max of `v` over the 4 lanes of this lane's quad (every lane of the quad gets it): one row's
// max once each lane holds the max of its own columns.
static __device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, 1));
    return fmaxf(v, __shfl_xor_sync(FULL_MASK, v, 2));
}

// The sum of `v` over the 4 lanes of this lane's quad (every lane of the quad gets it).
static __device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(FULL_MASK, v, 1);
    return v + __shfl_xor_sync(FULL_MASK, v, 2);
}

// Rows g and g + 8 of N accumulator tiles multiplied by s[0] and s[1].
template <int N>
static __device__ __forceinline__ void frag_scale_rows(float (&c)[N][4], const float s[2]) {
    UNROLL
    for (int i = 0; i < N; i++) {
        c[i][0] *= s[0];
        c[i][1] *= s[0];
        c[i][2] *= s[1];
        c[i][3] *= s[1];
    }
}

// Two 16x8 accumulator tiles side by side (columns 0-7 in `lo`, 8-15 in `hi`) as the bf16 A
// operand of a 16x16 mma: the result of one product feeds the next without leaving registers.
static __device__ __forceinline__ void frag_pack_a(u32 a[4], const float lo[4], const float hi[4]) {
    a[0] = pack_bf16x2(lo[0], lo[1]);
    a[1] = pack_bf16x2(lo[2], lo[3]);
    a[2] = pack_bf16x2(hi[0], hi[1]);
    a[3] = pack_bf16x2(hi[2], hi[3]);
}
