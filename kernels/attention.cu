// Softmax attention over packed qkv [B, L, 3, H, hd] (timm: q, k, v, each heads then head dims),
// out [B, L, H*hd], scores scaled by `scale` (1/sqrt(hd)). Storage f32 or bf16 (the template
// parameter T), all math and shared memory in f32.
#include "common/reduce.cuh"
#include "storage.cuh"

// The host compiler of the emulator does not know the pragma; its loops need no unrolling.
#ifdef PERCEPT_EMU
#define FA_UNROLL
#else
#define FA_UNROLL _Pragma("unroll")
#endif

static __device__ __forceinline__ float neg_inf() { return __uint_as_float(0xFF800000u); }

// Flash-style: one block per (query tile, head, batch), grid (ceil(L/16), H, B), 128 threads. The
// block keeps 16 query rows in shared memory and streams keys and values in tiles of 32 with an
// online softmax (running max and sum per row), so no L x L matrix exists anywhere. Eight threads
// share a query row: each scores 4 of the tile's keys and owns head dims d = sub + 8*i of the
// output. hd: a multiple of 8, at most 128. Q and K rows are padded by one float so the threads of a
// warp, reading the same dim of different rows, hit different banks.
#define FA_BQ 16
#define FA_BK 32
#define FA_MAX_HD 128
#define FA_THREADS 128
#define FA_SUB 8
template <class T>
static __device__ __forceinline__ void attention_flash(T* __restrict__ out, const T* __restrict__ qkv, int L, int H,
                                                       int hd, float scale) {
    SHARED(float[FA_BQ * (FA_MAX_HD + 1)], qs);
    SHARED(float[FA_BK * (FA_MAX_HD + 1)], ks);
    SHARED(float[FA_BK * FA_MAX_HD], vs);
    SHARED(float[FA_BQ][FA_BK + 1], ps);
    int q0 = blockIdx.x * FA_BQ, h = blockIdx.y, b = blockIdx.z;
    int lds = hd + 1, D = H * hd;
    long long row_stride = 3LL * D;
    const T* base = qkv + (long long)b * L * row_stride + (long long)h * hd;
    int row = threadIdx.x / FA_SUB, sub = threadIdx.x % FA_SUB;

    for (int e = threadIdx.x; e < FA_BQ * hd; e += blockDim.x) {
        int r = e / hd, d = e % hd;
        qs[r * lds + d] = q0 + r < L ? ld(base, (long long)(q0 + r) * row_stride + d) * scale : 0.0f;
    }
    float m = neg_inf(), l = 0.0f;
    float acc[FA_MAX_HD / FA_SUB];
FA_UNROLL
    for (int i = 0; i < FA_MAX_HD / FA_SUB; i++) acc[i] = 0.0f;

    for (int k0 = 0; k0 < L; k0 += FA_BK) {
        __syncthreads();  // the previous tile's K, V and P are consumed (and Q is loaded)
        for (int e = threadIdx.x; e < FA_BK * hd; e += blockDim.x) {
            int r = e / hd, d = e % hd;
            bool in = k0 + r < L;
            long long src = (long long)(k0 + r) * row_stride + d;
            ks[r * lds + d] = in ? ld(base, src + D) : 0.0f;
            vs[r * hd + d] = in ? ld(base, src + 2 * D) : 0.0f;
        }
        __syncthreads();  // K, V loaded

        float s[FA_BK / FA_SUB];
FA_UNROLL
        for (int j = 0; j < FA_BK / FA_SUB; j++) s[j] = 0.0f;
        for (int d = 0; d < hd; d++) {
            float q = qs[row * lds + d];
FA_UNROLL
            for (int j = 0; j < FA_BK / FA_SUB; j++) s[j] += q * ks[(sub + FA_SUB * j) * lds + d];
        }
        float tile_max = neg_inf();
FA_UNROLL
        for (int j = 0; j < FA_BK / FA_SUB; j++) {
            if (k0 + sub + FA_SUB * j >= L) s[j] = neg_inf();
            tile_max = fmaxf(tile_max, s[j]);
        }
        // The eight threads of a row are consecutive lanes of one warp.
        for (int off = FA_SUB / 2; off > 0; off >>= 1)
            tile_max = fmaxf(tile_max, __shfl_xor_sync(FULL_MASK, tile_max, off));
        float m_new = fmaxf(m, tile_max);  // finite: every tile holds at least one key
        float corr = expf(m - m_new);
        float psum = 0.0f;
FA_UNROLL
        for (int j = 0; j < FA_BK / FA_SUB; j++) {
            float pj = expf(s[j] - m_new);
            ps[row][sub + FA_SUB * j] = pj;
            psum += pj;
        }
        for (int off = FA_SUB / 2; off > 0; off >>= 1) psum += __shfl_xor_sync(FULL_MASK, psum, off);
        l = l * corr + psum;
        m = m_new;
        __syncwarp();  // the row's probabilities are written (its threads share a warp)

        int nd = hd / FA_SUB;
FA_UNROLL
        for (int i = 0; i < FA_MAX_HD / FA_SUB; i++) {
            if (i >= nd) break;
            int d = sub + FA_SUB * i;
            float a = acc[i] * corr;
            for (int j = 0; j < FA_BK; j++) a += ps[row][j] * vs[j * hd + d];
            acc[i] = a;
        }
    }

    int q = q0 + row;
    if (q >= L) return;
    float inv = 1.0f / l;
    T* o = out + ((long long)b * L + q) * D + (long long)h * hd;
FA_UNROLL
    for (int i = 0; i < FA_MAX_HD / FA_SUB; i++) {
        if (i >= hd / FA_SUB) break;
        st(o, sub + FA_SUB * i, acc[i] * inv);
    }
}
extern "C" __global__ void __launch_bounds__(FA_THREADS)
    attention_f32(float* __restrict__ out, const float* __restrict__ qkv, int L, int H, int hd, float scale) {
    attention_flash(out, qkv, L, H, hd, scale);
}
PERCEPT_KERNEL(attention_f32)
extern "C" __global__ void __launch_bounds__(FA_THREADS)
    attention_bf16(bf16* __restrict__ out, const bf16* __restrict__ qkv, int L, int H, int hd, float scale) {
    attention_flash(out, qkv, L, H, hd, scale);
}
PERCEPT_KERNEL(attention_bf16)

// For head dims beyond 128 (the VAE's single head over 512 channels): one block per (query row,
// head, batch), grid (L, H, B), 256 threads. The row's L scores live in dynamic shared memory
// (L floats, opt in above 48 KiB) next to the query (hd floats): shared bytes = 4 * (L + hd).
// Plain softmax (max, exp, sum), then each thread sums probabilities times values for its dims.
template <class T>
static __device__ __forceinline__ void attention_wide(T* __restrict__ out, const T* __restrict__ qkv, int L, int H,
                                                      int hd, float scale) {
    SHARED_DYNAMIC(float, smem);
    SHARED(float[32], scratch);
    float* scores = smem;
    float* qrow = smem + L;
    int qi = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    int D = H * hd;
    long long row_stride = 3LL * D;
    const T* base = qkv + (long long)b * L * row_stride + (long long)h * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) qrow[d] = ld(base, (long long)qi * row_stride + d);
    __syncthreads();  // query loaded

    float mx = neg_inf();
    for (int j = threadIdx.x; j < L; j += blockDim.x) {
        const T* kr = base + (long long)j * row_stride + D;
        float s = 0.0f;
        for (int d = 0; d < hd; d++) s += qrow[d] * ld(kr, d);
        s *= scale;
        scores[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = warp_max(mx);
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = mx;
    __syncthreads();  // per-warp maxima written
    mx = neg_inf();
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) mx = fmaxf(mx, scratch[w]);
    __syncthreads();  // scratch free for block_sum

    float sum = 0.0f;
    for (int j = threadIdx.x; j < L; j += blockDim.x) {
        float pj = expf(scores[j] - mx);
        scores[j] = pj;
        sum += pj;
    }
    float inv = 1.0f / block_sum(sum, scratch);  // its barriers also publish the probabilities

    T* o = out + ((long long)b * L + qi) * D + (long long)h * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        const T* vc = base + 2 * D + d;
        float a = 0.0f;
        for (int j = 0; j < L; j++) a += scores[j] * ld(vc, (long long)j * row_stride);
        st(o, d, a * inv);
    }
}
extern "C" __global__ void __launch_bounds__(256)
    attention_wide_f32(float* __restrict__ out, const float* __restrict__ qkv, int L, int H, int hd, float scale) {
    attention_wide(out, qkv, L, H, hd, scale);
}
PERCEPT_KERNEL(attention_wide_f32)
extern "C" __global__ void __launch_bounds__(256)
    attention_wide_bf16(bf16* __restrict__ out, const bf16* __restrict__ qkv, int L, int H, int hd, float scale) {
    attention_wide(out, qkv, L, H, hd, scale);
}
PERCEPT_KERNEL(attention_wide_bf16)
