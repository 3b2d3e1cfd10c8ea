// The tensor-core GEMM tile shared by the fast variants (gemm_tc128_bf16, moe_expert_fc_tc128_bf16):
// one 128x128 tile of C[m, n] = A[m, :] . W[n, :] + bias[n] (optional GELU) for rows m in
// [m0, m_end) and columns n0.., A [*, K] and W [N, K] bf16, f32 accumulation, C f32 or bf16.
//
// 32-deep K slices double-buffered in shared memory with 16-byte cp.async (the next slice loads
// while this one is multiplied); 8 warps in a 2x4 grid each own 64x32 outputs (4 m16 x 4 n8 mma
// tiles: 16 mma.sync per 16-deep step from 4 + 2 ldmatrix.x4). Shared rows of 40 elements (80
// bytes) keep the 8 row reads of each ldmatrix on distinct banks. Needs K % 8 == 0 (whole 16-byte
// chunks): the host keeps the simple kernels for other K. 256 threads, 40 KiB static shared.
#pragma once

#include "tc_tiles.cuh"

// With `gate` non-null the epilogue is the DiT block's gated residual add instead: c is the f32
// residual stream and c[m, n] += gate[(m / tokens) * gate_stride + n] * bf16(acc + bias[n]).
static __device__ __forceinline__ void tc_gemm_tile(void* __restrict__ c, const bf16* __restrict__ a,
                                                    const bf16* __restrict__ w, const float* __restrict__ bias,
                                                    int m0, int m_end, int n0, int N, int K, int fuse_gelu,
                                                    int out_bf16, const float* __restrict__ gate = 0,
                                                    int tokens = 1, int gate_stride = 0) {
    SHARED_ALIGNED(16, u16[2 * TC_M * TC_STRIDE], as);
    SHARED_ALIGNED(16, u16[2 * TC_N * TC_STRIDE], ws);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int wm = (warp & 1) * 64, wn = (warp >> 1) * 32;
    float acc[4][4][4];
    tc_zero(acc);
    int slices = (K + TC_K - 1) / TC_K;

    tc_load_slice(as, a, TC_M, m0, m_end, K, 0);
    tc_load_slice(ws, w, TC_N, n0, N, K, 0);
    cp_async_commit();
    for (int s = 0; s < slices; s++) {
        if (s + 1 < slices) {
            int next = (s + 1) & 1;
            tc_load_slice(as + next * TC_M * TC_STRIDE, a, TC_M, m0, m_end, K, (s + 1) * TC_K);
            tc_load_slice(ws + next * TC_N * TC_STRIDE, w, TC_N, n0, N, K, (s + 1) * TC_K);
        }
        cp_async_commit();  // possibly empty, so the wait below always leaves just the newest group
        cp_async_wait<1>();
        __syncthreads();  // slice s is in shared memory for every thread
        const u16* sa = as + (s & 1) * TC_M * TC_STRIDE;
        const u16* sw = ws + (s & 1) * TC_N * TC_STRIDE;
        UNROLL
        for (int kk = 0; kk < TC_K; kk += 16) {
            u32 bfr[2][4];
            // W: matrices (n 0-7, kk), (n 0-7, kk+8), (n 8-15, kk), (n 8-15, kk+8): two n8 tiles.
            UNROLL
            for (int nj = 0; nj < 2; nj++)
                ldmatrix_x4(bfr[nj], &sw[(wn + nj * 16 + (lane & 7) + ((lane >> 4) << 3)) * TC_STRIDE + kk +
                                         ((lane >> 3) & 1) * 8]);
            tc_warp_mma(acc, sa, wm, kk, lane, bfr);
        }
        __syncthreads();  // slice s consumed before the next iteration loads slice s + 2 over it
    }

    int g = lane >> 2, t = lane & 3;
    UNROLL
    for (int mi = 0; mi < 4; mi++)
        UNROLL
        for (int ni = 0; ni < 4; ni++)
            UNROLL
            for (int q = 0; q < 4; q++) {
                int m = m0 + wm + mi * 16 + g + (q >> 1) * 8, n = n0 + wn + ni * 8 + 2 * t + (q & 1);
                if (m >= m_end || n >= N) continue;
                float v = acc[mi][ni][q] + (bias ? bias[n] : 0.0f);
                if (fuse_gelu) v = gelu_tanh(v);
                if (gate)  // v rounded as the unfused bf16 linear stores it (autocast's numerics)
                    static_cast<float*>(c)[(long long)m * N + n] +=
                        gate[(long long)(m / tokens) * gate_stride + n] * bf16_to_f32(f32_to_bf16(v));
                else if (out_bf16)
                    static_cast<bf16*>(c)[(long long)m * N + n] = f32_to_bf16(v);
                else
                    static_cast<float*>(c)[(long long)m * N + n] = v;
            }
}
