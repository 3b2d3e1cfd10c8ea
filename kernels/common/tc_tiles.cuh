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

// A warp's 64x32 f32 accumulator tile: 4 m16 x 4 n8 mma tiles.
static __device__ __forceinline__ void tc_zero(float acc[4][4][4]) {
    UNROLL
    for (int i = 0; i < 4; i++)
        UNROLL
        for (int j = 0; j < 4; j++)
            UNROLL
            for (int q = 0; q < 4; q++) acc[i][j][q] = 0.0f;
}

// One 16-deep step of a warp's tile: acc += A . B with A the 64 rows wm.. of `sa` (rows of
// TC_STRIDE elements, columns kk..kk+15) and B the four n8 tiles in `bfr` (two ldmatrix.x4 loads,
// each holding two tiles: b[0..1] and b[2..3]).
static __device__ __forceinline__ void tc_warp_mma(float acc[4][4][4], const u16* sa, int wm, int kk, int lane,
                                                   const u32 bfr[2][4]) {
    u32 af[4][4];
    // Lanes 0-15 address rows 0-15 at column kk, lanes 16-31 the same rows at kk + 8.
    UNROLL
    for (int mi = 0; mi < 4; mi++)
        ldmatrix_x4(af[mi], &sa[(wm + mi * 16 + (lane & 15)) * TC_STRIDE + kk + (lane >> 4) * 8]);
    UNROLL
    for (int mi = 0; mi < 4; mi++)
        UNROLL
        for (int ni = 0; ni < 4; ni++)
            mma_bf16_16816(acc[mi][ni], af[mi], &bfr[ni >> 1][(ni & 1) * 2], acc[mi][ni]);
}
