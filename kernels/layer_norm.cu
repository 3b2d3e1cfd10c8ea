// LayerNorm without affine followed by adaLN modulation: x [B, T, D], shift/scale rows of
// `mod_stride` floats per sample (chunks of the adaLN output [B, n*D]),
// y = LN(x) * (1 + scale[b]) + shift[b]. One block per row; the row is cached in dynamic shared
// memory (D floats, set by the launcher) so x is read from global memory once.
#include "common/reduce.cuh"
#include "common/storage.cuh"

template <class T>
static __device__ __forceinline__ void layer_norm_modulate(T* __restrict__ y, const T* __restrict__ x,
                                                           const T* __restrict__ shift, const T* __restrict__ scale,
                                                           int T_, int D, int mod_stride, float eps, float* row,
                                                           float* scratch) {
    long long r = blockIdx.x;
    int b = (int)(r / T_);
    const T* xr = x + r * D;

    float s = 0.0f;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        row[i] = ld(xr, i);
        s += row[i];
    }
    float mean = block_sum(s, scratch) / (float)D;

    float q = 0.0f;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float d = row[i] - mean;
        q += d * d;
    }
    float rstd = rsqrtf(block_sum(q, scratch) / (float)D + eps);

    const T* sh = shift + (long long)b * mod_stride;
    const T* sc = scale + (long long)b * mod_stride;
    for (int i = threadIdx.x; i < D; i += blockDim.x)
        st(y, r * D + i, (row[i] - mean) * rstd * (1.0f + ld(sc, i)) + ld(sh, i));
}

extern "C" __global__ void layer_norm_modulate_f32(float* __restrict__ y, const float* __restrict__ x,
                                                   const float* __restrict__ shift,
                                                   const float* __restrict__ scale, int T, int D, int mod_stride,
                                                   float eps) {
    SHARED_DYNAMIC(float, row);
    SHARED(float[32], scratch);
    layer_norm_modulate(y, x, shift, scale, T, D, mod_stride, eps, row, scratch);
}
PERCEPT_KERNEL(layer_norm_modulate_f32)

extern "C" __global__ void layer_norm_modulate_bf16(bf16* __restrict__ y, const bf16* __restrict__ x,
                                                    const bf16* __restrict__ shift,
                                                    const bf16* __restrict__ scale, int T, int D, int mod_stride,
                                                    float eps) {
    SHARED_DYNAMIC(float, row);
    SHARED(float[32], scratch);
    layer_norm_modulate(y, x, shift, scale, T, D, mod_stride, eps, row, scratch);
}
PERCEPT_KERNEL(layer_norm_modulate_bf16)
