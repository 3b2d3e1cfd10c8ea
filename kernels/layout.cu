// Data movement and small pointwise ops: NCHW <-> tokens transposes, channel concatenation and
// slicing, add, scale, the adaLN gated residual, and a row bias + activation epilogue. Grid-stride
// loops (any grid size covers any n) except the transposes, which stage 32x32 tiles in shared memory
// so both the read and the write are coalesced. Each op is written once over the storage type T
// (f32 or bf16, math in f32); biases stay f32, as in gemm_mma_bf16.
#include "common/storage.cuh"

#define TR_TILE 32

// y[b] = x[b]^T for x [batch, rows, cols]. Grid (ceil(cols/32), ceil(rows/32), batch), block (32, 8).
template <class T>
static __device__ __forceinline__ void transpose_tiles(T* __restrict__ y, const T* __restrict__ x, int rows,
                                                       int cols) {
    SHARED(T[TR_TILE][TR_TILE + 1], tile);
    long long plane = (long long)rows * cols;
    const T* xb = x + blockIdx.z * plane;
    T* yb = y + blockIdx.z * plane;
    int r0 = blockIdx.y * TR_TILE, c0 = blockIdx.x * TR_TILE;
    for (int i = threadIdx.y; i < TR_TILE; i += blockDim.y) {
        int r = r0 + i, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[i][threadIdx.x] = xb[(long long)r * cols + c];
    }
    __syncthreads();  // tile loaded
    for (int i = threadIdx.y; i < TR_TILE; i += blockDim.y) {
        int c = c0 + i, r = r0 + threadIdx.x;
        if (r < rows && c < cols) yb[(long long)c * rows + r] = tile[threadIdx.x][i];
    }
}

// x [N, C, HW] -> y [N, HW, C].
extern "C" __global__ void nchw_to_tokens_f32(float* __restrict__ y, const float* __restrict__ x, int C, int HW) {
    transpose_tiles(y, x, C, HW);
}
PERCEPT_KERNEL(nchw_to_tokens_f32)
extern "C" __global__ void nchw_to_tokens_bf16(bf16* __restrict__ y, const bf16* __restrict__ x, int C, int HW) {
    transpose_tiles(y, x, C, HW);
}
PERCEPT_KERNEL(nchw_to_tokens_bf16)

// x [N, HW, C] -> y [N, C, HW].
extern "C" __global__ void tokens_to_nchw_f32(float* __restrict__ y, const float* __restrict__ x, int HW, int C) {
    transpose_tiles(y, x, HW, C);
}
PERCEPT_KERNEL(tokens_to_nchw_f32)
extern "C" __global__ void tokens_to_nchw_bf16(bf16* __restrict__ y, const bf16* __restrict__ x, int HW, int C) {
    transpose_tiles(y, x, HW, C);
}
PERCEPT_KERNEL(tokens_to_nchw_bf16)

// y [N, Ca + Cb + Cc, HW] from a [N, Ca, HW], b [N, Cb, HW] and c [N, Cc, HW] (c null when Cc = 0).
template <class T>
static __device__ __forceinline__ void cat_channels(T* __restrict__ y, const T* __restrict__ a,
                                                    const T* __restrict__ b, const T* __restrict__ c, int N, int Ca,
                                                    int Cb, int Cc, int HW) {
    long long Ct = (long long)Ca + Cb + Cc;
    long long total = N * Ct * HW;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        long long p = i % HW, ch = (i / HW) % Ct, n = i / (HW * Ct);
        if (ch < Ca)
            y[i] = a[(n * Ca + ch) * HW + p];
        else if (ch < Ca + Cb)
            y[i] = b[(n * Cb + ch - Ca) * HW + p];
        else
            y[i] = c[(n * Cc + ch - Ca - Cb) * HW + p];
    }
}
extern "C" __global__ void cat_channels_f32(float* __restrict__ y, const float* __restrict__ a,
                                            const float* __restrict__ b, const float* __restrict__ c, int N, int Ca,
                                            int Cb, int Cc, int HW) {
    cat_channels(y, a, b, c, N, Ca, Cb, Cc, HW);
}
PERCEPT_KERNEL(cat_channels_f32)
extern "C" __global__ void cat_channels_bf16(bf16* __restrict__ y, const bf16* __restrict__ a,
                                             const bf16* __restrict__ b, const bf16* __restrict__ c, int N, int Ca,
                                             int Cb, int Cc, int HW) {
    cat_channels(y, a, b, c, N, Ca, Cb, Cc, HW);
}
PERCEPT_KERNEL(cat_channels_bf16)

// y [N, len, HW] = channels start..start+len of x [N, C, HW].
template <class T>
static __device__ __forceinline__ void slice_channels(T* __restrict__ y, const T* __restrict__ x, int N, int C,
                                                      int start, int len, int HW) {
    long long total = (long long)N * len * HW;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        long long p = i % HW, ch = (i / HW) % len, n = i / ((long long)HW * len);
        y[i] = x[(n * C + start + ch) * HW + p];
    }
}
extern "C" __global__ void slice_channels_f32(float* __restrict__ y, const float* __restrict__ x, int N, int C,
                                              int start, int len, int HW) {
    slice_channels(y, x, N, C, start, len, HW);
}
PERCEPT_KERNEL(slice_channels_f32)
extern "C" __global__ void slice_channels_bf16(bf16* __restrict__ y, const bf16* __restrict__ x, int N, int C,
                                               int start, int len, int HW) {
    slice_channels(y, x, N, C, start, len, HW);
}
PERCEPT_KERNEL(slice_channels_bf16)

template <class T>
static __device__ __forceinline__ void add(T* y, const T* a, const T* b, long long n) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        st(y, i, ld(a, i) + ld(b, i));
}
extern "C" __global__ void add_f32(float* y, const float* a, const float* b, long long n) { add(y, a, b, n); }
PERCEPT_KERNEL(add_f32)
extern "C" __global__ void add_bf16(bf16* y, const bf16* a, const bf16* b, long long n) { add(y, a, b, n); }
PERCEPT_KERNEL(add_bf16)

template <class T>
static __device__ __forceinline__ void scale(T* y, const T* x, float s, long long n) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) st(y, i, ld(x, i) * s);
}
extern "C" __global__ void scale_f32(float* y, const float* x, float s, long long n) { scale(y, x, s, n); }
PERCEPT_KERNEL(scale_f32)
extern "C" __global__ void scale_bf16(bf16* y, const bf16* x, float s, long long n) { scale(y, x, s, n); }
PERCEPT_KERNEL(scale_bf16)

// x [B, T, D] += gate[b] * y [B, T, D], in place; gate[b] = mods[b * M + gate_off .. + D].
template <class T>
static __device__ __forceinline__ void gated_add(T* __restrict__ x, const T* __restrict__ y,
                                                 const T* __restrict__ mods, int B, int Tn, int D, int M,
                                                 int gate_off) {
    long long total = (long long)B * Tn * D;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        long long b = i / ((long long)Tn * D);
        int d = (int)(i % D);
        st(x, i, ld(x, i) + ld(mods, b * M + gate_off + d) * ld(y, i));
    }
}
extern "C" __global__ void gated_add_f32(float* __restrict__ x, const float* __restrict__ y,
                                         const float* __restrict__ mods, int B, int T, int D, int M, int gate_off) {
    gated_add(x, y, mods, B, T, D, M, gate_off);
}
PERCEPT_KERNEL(gated_add_f32)
extern "C" __global__ void gated_add_bf16(bf16* __restrict__ x, const bf16* __restrict__ y,
                                          const bf16* __restrict__ mods, int B, int T, int D, int M, int gate_off) {
    gated_add(x, y, mods, B, T, D, M, gate_off);
}
PERCEPT_KERNEL(gated_add_bf16)

// y [rows, N] in place: y = act(y + bias[col]); bias (f32) may be null; act 0 none, 1 GELU (tanh),
// 2 SiLU (the order of backend::Act).
template <class T>
static __device__ __forceinline__ void bias_act(T* __restrict__ y, const float* __restrict__ bias, int rows, int N,
                                                int act) {
    long long total = (long long)rows * N;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        float v = ld(y, i) + (bias ? bias[i % N] : 0.0f);
        if (act == 1)
            v = gelu_tanh(v);
        else if (act == 2)
            v = silu(v);
        st(y, i, v);
    }
}
extern "C" __global__ void bias_act_f32(float* __restrict__ y, const float* __restrict__ bias, int rows, int N,
                                        int act) {
    bias_act(y, bias, rows, N, act);
}
PERCEPT_KERNEL(bias_act_f32)
extern "C" __global__ void bias_act_bf16(bf16* __restrict__ y, const float* __restrict__ bias, int rows, int N,
                                         int act) {
    bias_act(y, bias, rows, N, act);
}
PERCEPT_KERNEL(bias_act_bf16)
