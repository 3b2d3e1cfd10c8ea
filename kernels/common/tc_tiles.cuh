// Tile shapes and the 16-byte slice loader of the tensor-core variants (tc_gemm.cuh, the
// tensor-core convolution).
#pragma once
#include "mma.cuh"

#define TC_M 128
#define TC_N 128
#define TC_K 32
#define TC_STRIDE 40

// One K slice of rows r0.. (below r_end) of x [*, K] from column k0 into shared `s`; chunks
// outside the matrix are zero-filled without being read.
static __device__ __forceinline__ void tc_load_slice(u16* s, const bf16* __restrict__ x, int rows, int r0,
                                                     int r_end, int K, int k0) {
    for (int e = threadIdx.x; e < rows * (TC_K / 8); e += blockDim.x) {
        int r = e >> 2, k = k0 + (e & 3) * 8;
        bool ok = r0 + r < r_end && k < K;
        const bf16* src = ok ? x + (long long)(r0 + r) * K + k : x;
        cp_async16(&s[r * TC_STRIDE + (e & 3) * 8], src, ok);
    }
}
