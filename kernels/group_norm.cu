// GroupNorm over x [N, C, HW] with G groups and affine gamma/beta [C], optionally followed by SiLU
// (the VAE's norm + nonlinearity pair). One block per (group, n); statistics in f32, two passes
// (mean, then the mean of squared deviations) as PyTorch does. The launcher guarantees C % G == 0,
// grid (G, N), a block of a multiple of 32 threads.
#include "common/reduce.cuh"
#include "common/storage.cuh"

// gamma and beta stay f32 whatever the storage type of x and y.
template <class T>
static __device__ __forceinline__ void group_norm(T* __restrict__ y, const T* __restrict__ x,
                                                  const float* __restrict__ gamma, const float* __restrict__ beta,
                                                  int C, int HW, int G, float eps, int fuse_silu, float* scratch) {
    int g = blockIdx.x, n = blockIdx.y, cpg = C / G;
    long long base = ((long long)n * C + (long long)g * cpg) * HW;
    int count = cpg * HW;
    const T* xg = x + base;
    T* yg = y + base;

    float s = 0.0f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) s += ld(xg, i);
    float mean = block_sum(s, scratch) / (float)count;

    float q = 0.0f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        float d = ld(xg, i) - mean;
        q += d * d;
    }
    float rstd = rsqrtf(block_sum(q, scratch) / (float)count + eps);

    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        int c = g * cpg + i / HW;
        float v = (ld(xg, i) - mean) * rstd * gamma[c] + beta[c];
        st(yg, i, fuse_silu ? silu(v) : v);
    }
}

extern "C" __global__ void group_norm_f32(float* __restrict__ y, const float* __restrict__ x,
                                          const float* __restrict__ gamma, const float* __restrict__ beta, int C,
                                          int HW, int G, float eps, int fuse_silu) {
    SHARED(float[32], scratch);
    group_norm(y, x, gamma, beta, C, HW, G, eps, fuse_silu, scratch);
}
PERCEPT_KERNEL(group_norm_f32)

extern "C" __global__ void group_norm_bf16(bf16* __restrict__ y, const bf16* __restrict__ x,
                                           const float* __restrict__ gamma, const float* __restrict__ beta, int C,
                                           int HW, int G, float eps, int fuse_silu) {
    SHARED(float[32], partial);
    group_norm(y, x, gamma, beta, C, HW, G, eps, fuse_silu, partial);
}
PERCEPT_KERNEL(group_norm_bf16)
