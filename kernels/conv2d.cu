// 2-D convolution, NCHW, as an implicit GEMM: out[n][o][pixel] = bias[o] + sum over k = (c, ky, kx) of
// w[o][k] * x[n][c][oy*stride + ky - pad_t][ox*stride + kx - pad_l] (zero outside the image). No
// column matrix is materialised; each K slice of the gathered input is staged in shared memory.
// Bottom/right padding only shows in OH/OW, which the caller computes (PyTorch's formula).
// Written once over the storage type T of x, w and y (f32 or bf16, math in f32); bias is f32.
#include "storage.cuh"

// 32 output channels x 32 output pixels per block, 16-deep K slices, 256 threads each owning a 2x2
// set of outputs strided by 16 (the scheme of gemm_f32). Grid (ceil(OH*OW/32), ceil(O/32), N).
#define CV_TILE 32
#define CV_K 16
template <class T>
static __device__ __forceinline__ void conv2d(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ w,
                                              const float* __restrict__ bias, int C, int H, int W, int O, int kh,
                                              int kw, int stride, int pad_t, int pad_l, int OH, int OW) {
    SHARED(float[CV_TILE][CV_K + 1], ws);
    SHARED(float[CV_TILE][CV_K + 1], xs);
    int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    int o0 = blockIdx.y * CV_TILE, p0 = blockIdx.x * CV_TILE;
    int K = C * kh * kw, P = OH * OW, khw = kh * kw;
    const T* xn = x + (long long)blockIdx.z * C * H * W;
    float acc[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};

    for (int k0 = 0; k0 < K; k0 += CV_K) {
        for (int e = threadIdx.x; e < CV_TILE * CV_K; e += blockDim.x) {
            int r = e / CV_K, kk = e % CV_K, k = k0 + kk;
            int o = o0 + r, p = p0 + r;
            ws[r][kk] = (k < K && o < O) ? ld(w, (long long)o * K + k) : 0.0f;
            float v = 0.0f;
            if (k < K && p < P) {
                int c = k / khw, ky = (k / kw) % kh, kx = k % kw;
                int iy = (p / OW) * stride + ky - pad_t, ix = (p % OW) * stride + kx - pad_l;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = ld(xn, ((long long)c * H + iy) * W + ix);
            }
            xs[r][kk] = v;
        }
        __syncthreads();  // slice loaded
        for (int kk = 0; kk < CV_K; kk++)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) acc[i][j] += ws[ty + 16 * i][kk] * xs[tx + 16 * j][kk];
        __syncthreads();  // slice consumed
    }

    T* yn = y + (long long)blockIdx.z * O * P;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            int o = o0 + ty + 16 * i, p = p0 + tx + 16 * j;
            if (o >= O || p >= P) continue;
            st(yn, (long long)o * P + p, acc[i][j] + (bias ? bias[o] : 0.0f));
        }
}
extern "C" __global__ void __launch_bounds__(256)
    conv2d_f32(float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ w,
               const float* __restrict__ bias, int C, int H, int W, int O, int kh, int kw, int stride, int pad_t,
               int pad_l, int OH, int OW) {
    conv2d(y, x, w, bias, C, H, W, O, kh, kw, stride, pad_t, pad_l, OH, OW);
}
PERCEPT_KERNEL(conv2d_f32)
extern "C" __global__ void __launch_bounds__(256)
    conv2d_bf16(bf16* __restrict__ y, const bf16* __restrict__ x, const bf16* __restrict__ w,
                const float* __restrict__ bias, int C, int H, int W, int O, int kh, int kw, int stride, int pad_t,
                int pad_l, int OH, int OW) {
    conv2d(y, x, w, bias, C, H, W, O, kh, kw, stride, pad_t, pad_l, OH, OW);
}
PERCEPT_KERNEL(conv2d_bf16)

// Nearest-neighbour 2x upsampling: x [NC, H, W] -> y [NC, 2H, 2W].
template <class T>
static __device__ __forceinline__ void upsample_nearest2x(T* __restrict__ y, const T* __restrict__ x, int NC, int H,
                                                          int W) {
    long long total = (long long)NC * 4 * H * W;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        long long ox = i % (2 * W), oy = (i / (2 * W)) % (2 * H), nc = i / (4LL * H * W);
        y[i] = x[(nc * H + oy / 2) * W + ox / 2];
    }
}
extern "C" __global__ void upsample_nearest2x_f32(float* __restrict__ y, const float* __restrict__ x, int NC, int H,
                                                  int W) {
    upsample_nearest2x(y, x, NC, H, W);
}
PERCEPT_KERNEL(upsample_nearest2x_f32)
extern "C" __global__ void upsample_nearest2x_bf16(bf16* __restrict__ y, const bf16* __restrict__ x, int NC, int H,
                                                   int W) {
    upsample_nearest2x(y, x, NC, H, W);
}
PERCEPT_KERNEL(upsample_nearest2x_bf16)
