// C[M, N] = A[M, K] . W[N, K]^T + bias[N], optionally followed by GELU (tanh): the layout of a
// PyTorch Linear. `bias` may be null. Row-major, any M, N, K.
#include "common/mma.cuh"
#include "common/tc_gemm.cuh"

// True f32 (no tensor cores, so no TF32 rounding): 32x32 output tiles, 16-deep K slices staged in
// shared memory with 4-byte cp.async (zero-filled outside the matrices), 256 threads, each thread
// owning a 2x2 set of outputs strided by 16.
#define GF_TILE 32
#define GF_K 16
extern "C" __global__ void __launch_bounds__(256) gemm_f32(float* __restrict__ c, const float* __restrict__ a,
                                                           const float* __restrict__ w,
                                                           const float* __restrict__ bias, int M, int N, int K,
                                                           int fuse_gelu) {
    SHARED(float[GF_TILE][GF_K + 1], as);
    SHARED(float[GF_TILE][GF_K + 1], ws);
    int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    int m0 = blockIdx.y * GF_TILE, n0 = blockIdx.x * GF_TILE;
    float acc[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};

    for (int k0 = 0; k0 < K; k0 += GF_K) {
        for (int e = threadIdx.x; e < GF_TILE * GF_K; e += blockDim.x) {
            int r = e / GF_K, k = e % GF_K;
            bool ka = k0 + k < K;
            cp_async4(&as[r][k], a + (long long)(m0 + r) * K + k0 + k, ka && m0 + r < M);
            cp_async4(&ws[r][k], w + (long long)(n0 + r) * K + k0 + k, ka && n0 + r < N);
        }
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();  // tile loaded
        for (int k = 0; k < GF_K; k++)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) acc[i][j] += as[ty + 16 * i][k] * ws[tx + 16 * j][k];
        __syncthreads();  // tile consumed
    }

    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            int m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
            if (m >= M || n >= N) continue;
            float v = acc[i][j] + (bias ? bias[n] : 0.0f);
            c[(long long)m * N + n] = fuse_gelu ? gelu_tanh(v) : v;
        }
}
PERCEPT_KERNEL(gemm_f32)

// bf16 inputs on tensor cores (mma.sync m16n8k16, f32 accumulate); output f32 or bf16 (`out_bf16`).
// 32x32 output tiles, 32-deep K slices, 4 warps in a 2x2 grid each owning 16x16 (two n8 mma tiles).
// Shared rows are padded to 40 elements (80 bytes): 16-byte aligned for ldmatrix.
#define GB_TILE 32
#define GB_K 32
#define GB_STRIDE 40
extern "C" __global__ void __launch_bounds__(128) gemm_mma_bf16(void* __restrict__ c, const bf16* __restrict__ a,
                                                                const bf16* __restrict__ w,
                                                                const float* __restrict__ bias, int M, int N,
                                                                int K, int fuse_gelu, int out_bf16) {
    SHARED_ALIGNED(16, u16[GB_TILE * GB_STRIDE], as);
    SHARED_ALIGNED(16, u16[GB_TILE * GB_STRIDE], ws);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int wm = (warp & 1) * 16, wn = (warp >> 1) * 16;
    int m0 = blockIdx.y * GB_TILE, n0 = blockIdx.x * GB_TILE;
    float acc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};

    for (int k0 = 0; k0 < K; k0 += GB_K) {
        for (int e = threadIdx.x; e < GB_TILE * GB_K; e += blockDim.x) {
            int r = e / GB_K, k = e % GB_K;
            bool ka = k0 + k < K;
            as[r * GB_STRIDE + k] = ka && m0 + r < M ? a[(long long)(m0 + r) * K + k0 + k].bits : 0;
            ws[r * GB_STRIDE + k] = ka && n0 + r < N ? w[(long long)(n0 + r) * K + k0 + k].bits : 0;
        }
        __syncthreads();  // tile loaded
        for (int kk = 0; kk < GB_K; kk += 16) {
            u32 af[4], bf[4];
            // Lanes 0-15 give rows 0-15 at column kk, lanes 16-31 the same rows at kk + 8: a[0..3].
            ldmatrix_x4(af, &as[(wm + (lane & 15)) * GB_STRIDE + kk + (lane >> 4) * 8]);
            // Matrices: (n 0-7, k kk), (n 0-7, k kk+8), (n 8-15, k kk), (n 8-15, k kk+8): b for two n8 tiles.
            ldmatrix_x4(bf, &ws[(wn + (lane & 7) + ((lane >> 4) << 3)) * GB_STRIDE + kk + ((lane >> 3) & 1) * 8]);
            mma_bf16_16816(acc[0], af, bf, acc[0]);
            mma_bf16_16816(acc[1], af, bf + 2, acc[1]);
        }
        __syncthreads();  // tile consumed
    }

    int g = lane >> 2, t = lane & 3;
    for (int j = 0; j < 2; j++)
        for (int q = 0; q < 4; q++) {
            int m = m0 + wm + g + (q >> 1) * 8, n = n0 + wn + j * 8 + 2 * t + (q & 1);
            if (m >= M || n >= N) continue;
            float v = acc[j][q] + (bias ? bias[n] : 0.0f);
            if (fuse_gelu) v = gelu_tanh(v);
            if (out_bf16)
                static_cast<bf16*>(c)[(long long)m * N + n] = f32_to_bf16(v);
            else
                static_cast<float*>(c)[(long long)m * N + n] = v;
        }
}
PERCEPT_KERNEL(gemm_mma_bf16)

// Fast variant (not the default until it has passed on a GPU; PERCEPT_FAST_KERNELS=1 selects it):
// 128x128 tiles on tensor cores with a double-buffered cp.async pipeline (common/tc_gemm.cuh).
// Same arguments and results as gemm_mma_bf16; needs K % 8 == 0.
extern "C" __global__ void __launch_bounds__(256) gemm_tc128_bf16(void* __restrict__ c, const bf16* __restrict__ a,
                                                                  const bf16* __restrict__ w,
                                                                  const float* __restrict__ bias, int M, int N,
                                                                  int K, int fuse_gelu, int out_bf16) {
    tc_gemm_tile(c, a, w, bias, blockIdx.y * TC_M, M, blockIdx.x * TC_N, N, K, fuse_gelu, out_bf16);
}
PERCEPT_KERNEL(gemm_tc128_bf16)

// Fast variant with the gated residual add as its epilogue (the attention projection of a DiT
// block): x [M, N] f32 += gate[(m / tokens) * gate_stride + n] * (A . W^T + bias), where gate
// points at the block's gate chunk of the modulation rows (f32). Needs K % 8 == 0.
extern "C" __global__ void __launch_bounds__(256)
    gemm_gated_add_tc128_bf16(float* __restrict__ x, const bf16* __restrict__ a, const bf16* __restrict__ w,
                              const float* __restrict__ bias, int M, int N, int K, const float* __restrict__ gate,
                              int tokens, int gate_stride) {
    tc_gemm_tile(x, a, w, bias, blockIdx.y * TC_M, M, blockIdx.x * TC_N, N, K, 0, 0, gate, tokens, gate_stride);
}
PERCEPT_KERNEL(gemm_gated_add_tc128_bf16)
