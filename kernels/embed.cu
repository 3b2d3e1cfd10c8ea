// Embeddings of the DiT: label/patch embedding in, unpatchify out, table lookups and the sinusoidal
// timestep features. Each written once over the storage type T (f32 or bf16, math in f32); the
// patch convs' biases stay f32.
#include "common/storage.cuh"

// Per-sample patch embedding: y [B, T, D], token t = (th, tw) row-major over the (H/p, W/p) grid.
// Sample b uses conv sel = labels[b] - first_label out of n_convs stacked convs, weights
// w [n_convs, D, C, p, p] and biases [n_convs, D]; a label outside the table contributes zeros (the
// authors' behaviour); then + pos [T, D]. One block per (token, sample): grid (T, B), any block
// size; dynamic shared memory C*p*p floats holds the patch.
template <class T>
static __device__ __forceinline__ void patch_embed(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ w,
                                                   const float* __restrict__ bias,
                                                   const long long* __restrict__ labels, long long first_label,
                                                   int n_convs, const T* __restrict__ pos, int C, int H, int W, int D,
                                                   int p) {
    SHARED_DYNAMIC(float, patch);
    int t = blockIdx.x, b = blockIdx.y;
    int gw = W / p, n_tok = (H / p) * gw;
    int th = t / gw, tw = t % gw;
    int K = C * p * p;
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        int c = k / (p * p), i = (k / p) % p, j = k % p;
        patch[k] = ld(x, (((long long)b * C + c) * H + th * p + i) * W + tw * p + j);
    }
    __syncthreads();  // patch loaded
    long long sel = labels[b] - first_label;
    bool valid = sel >= 0 && sel < n_convs;
    T* yr = y + ((long long)b * n_tok + t) * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float v = 0.0f;
        if (valid) {
            const T* wr = w + (sel * D + d) * K;
            float s = 0.0f;
            for (int k = 0; k < K; k++) s += ld(wr, k) * patch[k];
            v = s + bias[sel * D + d];
        }
        st(yr, d, v + ld(pos, (long long)t * D + d));
    }
}
extern "C" __global__ void patch_embed_f32(float* __restrict__ y, const float* __restrict__ x,
                                           const float* __restrict__ w, const float* __restrict__ bias,
                                           const long long* __restrict__ labels, long long first_label,
                                           int n_convs, const float* __restrict__ pos, int C, int H, int W, int D,
                                           int p) {
    patch_embed(y, x, w, bias, labels, first_label, n_convs, pos, C, H, W, D, p);
}
PERCEPT_KERNEL(patch_embed_f32)
extern "C" __global__ void patch_embed_bf16(bf16* __restrict__ y, const bf16* __restrict__ x,
                                            const bf16* __restrict__ w, const float* __restrict__ bias,
                                            const long long* __restrict__ labels, long long first_label,
                                            int n_convs, const bf16* __restrict__ pos, int C, int H, int W, int D,
                                            int p) {
    patch_embed(y, x, w, bias, labels, first_label, n_convs, pos, C, H, W, D, p);
}
PERCEPT_KERNEL(patch_embed_bf16)

// x [B, gh*gw, p*p*C] -> y [B, C, gh*p, gw*p]: token (th, tw) feature (i, j, c) lands at
// y[c][th*p + i][tw*p + j]. Grid-stride over the output.
template <class T>
static __device__ __forceinline__ void unpatchify(T* __restrict__ y, const T* __restrict__ x, int B, int C, int p,
                                                  int gh, int gw) {
    int H = gh * p, W = gw * p;
    long long total = (long long)B * C * H * W;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        int xx = (int)(e % W), yy = (int)((e / W) % H), c = (int)((e / ((long long)W * H)) % C);
        long long b = e / ((long long)W * H * C);
        int tok = (yy / p) * gw + xx / p;
        y[e] = x[(b * gh * gw + tok) * ((long long)p * p * C) + ((yy % p) * p + xx % p) * C + c];
    }
}
extern "C" __global__ void unpatchify_f32(float* __restrict__ y, const float* __restrict__ x, int B, int C, int p,
                                          int gh, int gw) {
    unpatchify(y, x, B, C, p, gh, gw);
}
PERCEPT_KERNEL(unpatchify_f32)
extern "C" __global__ void unpatchify_bf16(bf16* __restrict__ y, const bf16* __restrict__ x, int B, int C, int p,
                                           int gh, int gw) {
    unpatchify(y, x, B, C, p, gh, gw);
}
PERCEPT_KERNEL(unpatchify_bf16)

// y [n_ids, D] = rows ids[i] of table [rows, D]; an id outside the table gives a zero row (the host
// rejects such ids before launching; zeros keep a stray one from reading out of bounds).
// Grid (n_ids), any block size.
template <class T>
static __device__ __forceinline__ void embedding(T* __restrict__ y, const T* __restrict__ table,
                                                 const long long* __restrict__ ids, int rows, int D) {
    long long id = ids[blockIdx.x];
    bool valid = id >= 0 && id < rows;
    for (int d = threadIdx.x; d < D; d += blockDim.x)
        st(y, (long long)blockIdx.x * D + d, valid ? ld(table, id * D + d) : 0.0f);
}
extern "C" __global__ void embedding_f32(float* __restrict__ y, const float* __restrict__ table,
                                         const long long* __restrict__ ids, int rows, int D) {
    embedding(y, table, ids, rows, D);
}
PERCEPT_KERNEL(embedding_f32)
extern "C" __global__ void embedding_bf16(bf16* __restrict__ y, const bf16* __restrict__ table,
                                          const long long* __restrict__ ids, int rows, int D) {
    embedding(y, table, ids, rows, D);
}
PERCEPT_KERNEL(embedding_bf16)

// y [B, 2*half] = [cos(t f), sin(t f)] with f_i = exp(-ln(10000) i / half) in f32, cos and sin of
// the f32 argument evaluated in f64 as the CPU path does. Grid-stride over B*half.
// f_i's exponential is taken in f64 and rounded to f32: a GPU's expf may be 2 ulp off, and at
// t = 999 one ulp of f moves the cosine's argument by ~1e-4; the CPU's expf is correctly rounded
// for these arguments (tests/kernels.rs checks both), so the frequencies agree bit for bit.
template <class T>
static __device__ __forceinline__ void timestep_features(T* __restrict__ y, const float* __restrict__ t, int B,
                                                         int half) {
    long long total = (long long)B * half;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        int i = (int)(e % half);
        long long b = e / half;
        float f = (float)exp((double)(-9.21034037f * (float)i / (float)half));
        float a = t[b] * f;
        st(y, b * 2 * half + i, (float)cos((double)a));
        st(y, b * 2 * half + half + i, (float)sin((double)a));
    }
}
extern "C" __global__ void timestep_features_f32(float* __restrict__ y, const float* __restrict__ t, int B,
                                                 int half) {
    timestep_features(y, t, B, half);
}
PERCEPT_KERNEL(timestep_features_f32)
// t stays f32 (timesteps up to 999 are not exact in bf16); only the features are stored as bf16.
extern "C" __global__ void timestep_features_bf16(bf16* __restrict__ y, const float* __restrict__ t, int B,
                                                  int half) {
    timestep_features(y, t, B, half);
}
PERCEPT_KERNEL(timestep_features_bf16)
