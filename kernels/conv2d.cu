// 2-D convolution, NCHW, as an implicit GEMM: out[n][o][pixel] = bias[o] + sum over k = (c, ky, kx) of
// w[o][k] * x[n][c][oy*stride + ky - pad_t][ox*stride + kx - pad_l] (zero outside the image). No
// column matrix is materialised; each K slice of the gathered input is staged in shared memory.
// Bottom/right padding only shows in OH/OW, which the caller computes (PyTorch's formula).
// Written once over the storage type T of x, w and y (f32 or bf16, math in f32); bias is f32.
#include "common/storage.cuh"
#include "common/tc_tiles.cuh"

// 32 output channels x 32 output pixels per block, 16-deep K slices, 256 threads each owning a 2x2
// set of outputs strided by 16 (the scheme of gemm_f32). Grid (ceil(OH*OW/32), ceil(O/32), N).
#define CV_TILE 32
#define CV_K 16
// UP = 1: the input is upsampled 2x (nearest) on the fly: H and W are the upsampled sizes, x holds
// [C, H/2, W/2] (the VAE decoder's upsample fused into the following conv's loads).
template <int UP, class T>
static __device__ __forceinline__ void conv2d(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ w,
                                              const float* __restrict__ bias, int C, int H, int W, int O, int kh,
                                              int kw, int stride, int pad_t, int pad_l, int OH, int OW) {
    SHARED(float[CV_TILE][CV_K + 1], ws);
    SHARED(float[CV_TILE][CV_K + 1], xs);
    int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    int o0 = blockIdx.y * CV_TILE, p0 = blockIdx.x * CV_TILE;
    int K = C * kh * kw, P = OH * OW, khw = kh * kw;
    int xh = H >> UP, xw = W >> UP;
    const T* xn = x + (long long)blockIdx.z * C * xh * xw;
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
                if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = ld(xn, ((long long)c * xh + (iy >> UP)) * xw + (ix >> UP));
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
    conv2d<0>(y, x, w, bias, C, H, W, O, kh, kw, stride, pad_t, pad_l, OH, OW);
}
PERCEPT_KERNEL(conv2d_f32)
extern "C" __global__ void __launch_bounds__(256)
    conv2d_bf16(bf16* __restrict__ y, const bf16* __restrict__ x, const bf16* __restrict__ w,
                const float* __restrict__ bias, int C, int H, int W, int O, int kh, int kw, int stride, int pad_t,
                int pad_l, int OH, int OW) {
    conv2d<0>(y, x, w, bias, C, H, W, O, kh, kw, stride, pad_t, pad_l, OH, OW);
}
PERCEPT_KERNEL(conv2d_bf16)
extern "C" __global__ void __launch_bounds__(256)
    conv2d_up2_f32(float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ w,
                   const float* __restrict__ bias, int C, int H, int W, int O, int kh, int kw, int stride, int pad_t,
                   int pad_l, int OH, int OW) {
    conv2d<1>(y, x, w, bias, C, H, W, O, kh, kw, stride, pad_t, pad_l, OH, OW);
}
PERCEPT_KERNEL(conv2d_up2_f32)
extern "C" __global__ void __launch_bounds__(256)
    conv2d_up2_bf16(bf16* __restrict__ y, const bf16* __restrict__ x, const bf16* __restrict__ w,
                    const float* __restrict__ bias, int C, int H, int W, int O, int kh, int kw, int stride,
                    int pad_t, int pad_l, int OH, int OW) {
    conv2d<1>(y, x, w, bias, C, H, W, O, kh, kw, stride, pad_t, pad_l, OH, OW);
}
PERCEPT_KERNEL(conv2d_up2_bf16)

// Fast variant, bf16 (not the default until it has passed on a GPU; PERCEPT_FAST_KERNELS=1): the
// same implicit GEMM on tensor cores, weights [O, K] as the A operand and the gathered input as B.
// 128 output channels x 128 output pixels a block, 8 warps of 64 x 32 (as in tc_gemm.cuh),
// 32-deep K slices double-buffered: the weights by 16-byte cp.async, the input gathered into
// registers one slice ahead (consecutive threads read consecutive pixels) and stored as [k][pixel]
// rows of 136 elements, read as B fragments through ldmatrix.trans. Needs K % 8 == 0.
// Grid (ceil(OH*OW/128), ceil(O/128), N), 256 threads, 37 KiB static shared.
#define CT_PSTRIDE (TC_N + 8)
#define CT_PER_THREAD (TC_K * TC_N / 256)
template <int UP>
static __device__ __forceinline__ void conv2d_tc(bf16* __restrict__ y, const bf16* __restrict__ x,
                                                 const bf16* __restrict__ w, const float* __restrict__ bias, int C,
                                                 int H, int W, int O, int kh, int kw, int stride, int pad_t,
                                                 int pad_l, int OH, int OW) {
    SHARED_ALIGNED(16, u16[2 * TC_M * TC_STRIDE], ws);
    SHARED_ALIGNED(16, u16[2 * TC_K * CT_PSTRIDE], xs);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int wm = (warp & 1) * 64, wn = (warp >> 1) * 32;
    int o0 = blockIdx.y * TC_M, p0 = blockIdx.x * TC_N;
    int K = C * kh * kw, P = OH * OW, khw = kh * kw;
    int xh = H >> UP, xw = W >> UP;
    const bf16* xn = x + (long long)blockIdx.z * C * xh * xw;
    // This thread gathers pixel p0 + pcol for slice rows krow0 + 2i.
    int pcol = threadIdx.x % TC_N, krow0 = threadIdx.x / TC_N;
    int p = p0 + pcol;
    int oy = p < P ? p / OW : 0, ox = p < P ? p % OW : 0;
    u16 xr[CT_PER_THREAD];
    float acc[4][4][4];
    tc_zero(acc);
    int slices = (K + TC_K - 1) / TC_K;

    auto gather = [&](int k0) {
        UNROLL
        for (int i = 0; i < CT_PER_THREAD; i++) {
            int k = k0 + krow0 + 2 * i;
            u16 v = 0;
            if (k < K && p < P) {
                int c = k / khw, ky = (k / kw) % kh, kx = k % kw;
                int iy = oy * stride + ky - pad_t, ix = ox * stride + kx - pad_l;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = xn[((long long)c * xh + (iy >> UP)) * xw + (ix >> UP)].bits;
            }
            xr[i] = v;
        }
    };
    auto stash = [&](int stage) {
        u16* sx = xs + stage * TC_K * CT_PSTRIDE;
        UNROLL
        for (int i = 0; i < CT_PER_THREAD; i++) sx[(krow0 + 2 * i) * CT_PSTRIDE + pcol] = xr[i];
    };

    tc_load_slice(ws, w, TC_M, o0, O, K, 0);
    cp_async_commit();
    gather(0);
    stash(0);
    for (int s = 0; s < slices; s++) {
        bool more = s + 1 < slices;
        if (more) {
            tc_load_slice(ws + ((s + 1) & 1) * TC_M * TC_STRIDE, w, TC_M, o0, O, K, (s + 1) * TC_K);
            gather((s + 1) * TC_K);  // in flight while this slice is multiplied
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();  // slice s (weights and input) is in shared memory for every thread
        const u16* sw = ws + (s & 1) * TC_M * TC_STRIDE;
        const u16* sx = xs + (s & 1) * TC_K * CT_PSTRIDE;
        UNROLL
        for (int kk = 0; kk < TC_K; kk += 16) {
            u32 bfr[2][4];
            // Matrices (k 0-7, pixels +0), (k 8-15, +0), (k 0-7, +8), (k 8-15, +8), transposed.
            UNROLL
            for (int nj = 0; nj < 2; nj++)
                ldmatrix_x4_trans(bfr[nj], &sx[(kk + ((lane >> 3) & 1) * 8 + (lane & 7)) * CT_PSTRIDE + wn + nj * 16 +
                                               (lane >> 4) * 8]);
            tc_warp_mma(acc, sw, wm, kk, lane, bfr);
        }
        if (more) stash((s + 1) & 1);  // the other stage: consumed before the barrier above
        __syncthreads();  // slice s consumed before the next iteration overwrites its stage
    }

    bf16* yn = y + (long long)blockIdx.z * O * P;
    int g = lane >> 2, t = lane & 3;
    UNROLL
    for (int mi = 0; mi < 4; mi++)
        UNROLL
        for (int ni = 0; ni < 4; ni++)
            UNROLL
            for (int q = 0; q < 4; q++) {
                int o = o0 + wm + mi * 16 + g + (q >> 1) * 8, pp = p0 + wn + ni * 8 + 2 * t + (q & 1);
                if (o >= O || pp >= P) continue;
                yn[(long long)o * P + pp] = f32_to_bf16(acc[mi][ni][q] + (bias ? bias[o] : 0.0f));
            }
}
extern "C" __global__ void __launch_bounds__(256)
    conv2d_tc_bf16(bf16* __restrict__ y, const bf16* __restrict__ x, const bf16* __restrict__ w,
                   const float* __restrict__ bias, int C, int H, int W, int O, int kh, int kw, int stride,
                   int pad_t, int pad_l, int OH, int OW) {
    conv2d_tc<0>(y, x, w, bias, C, H, W, O, kh, kw, stride, pad_t, pad_l, OH, OW);
}
PERCEPT_KERNEL(conv2d_tc_bf16)
extern "C" __global__ void __launch_bounds__(256)
    conv2d_up2_tc_bf16(bf16* __restrict__ y, const bf16* __restrict__ x, const bf16* __restrict__ w,
                       const float* __restrict__ bias, int C, int H, int W, int O, int kh, int kw, int stride,
                       int pad_t, int pad_l, int OH, int OW) {
    conv2d_tc<1>(y, x, w, bias, C, H, W, O, kh, kw, stride, pad_t, pad_l, OH, OW);
}
PERCEPT_KERNEL(conv2d_up2_tc_bf16)

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
