// Softmax attention over packed qkv [B, L, 3, H, hd] (timm: q, k, v, each heads then head dims),
// out [B, L, H*hd], scores scaled by `scale` (1/sqrt(hd)). Storage f32 or bf16 (the template
// parameter T), all math and shared memory in f32.
#include "common/reduce.cuh"
#include "common/storage.cuh"
#include "common/mma.cuh"
#include "common/frag.cuh"

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
UNROLL
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
UNROLL
        for (int j = 0; j < FA_BK / FA_SUB; j++) s[j] = 0.0f;
        for (int d = 0; d < hd; d++) {
            float q = qs[row * lds + d];
UNROLL
            for (int j = 0; j < FA_BK / FA_SUB; j++) s[j] += q * ks[(sub + FA_SUB * j) * lds + d];
        }
        float tile_max = neg_inf();
UNROLL
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
UNROLL
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
UNROLL
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
UNROLL
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

// Fast variant, bf16 (not the default until it has passed on a GPU; PERCEPT_FAST_KERNELS=1):
// flash attention on tensor cores. One block per (64 query rows, head, batch), grid (ceil(L/64),
// H, B), 4 warps each owning 16 query rows. Keys and values stream through shared memory in tiles
// of 64 (16-byte cp.async); per warp, S = Q K^T is 8 n8 mma tiles, the online softmax runs on the
// accumulator fragments (each row's values live in the 4 lanes of a quad), and the probabilities,
// rounded to bf16, are reused in registers as the A operand of O += P V (V through ldmatrix.trans).
// hd: a multiple of 8, at most 128; the contraction over hd is padded to a multiple of 16 with zero
// columns of Q and K. Dynamic shared memory: (64 + 2 * 64) rows of hdp + 8 elements (rows 16-byte
// aligned, ldmatrix reads of a warp on distinct banks): 33 KiB at hd 72, 51 KiB at hd 128.
#define TA_BQ 64
#define TA_BK 64
#define TA_NT (FA_MAX_HD / 8)
extern "C" __global__ void __launch_bounds__(128)
    attention_tc_bf16(bf16* __restrict__ out, const bf16* __restrict__ qkv, int L, int H, int hd, float scale) {
    SHARED_DYNAMIC(u16, smem);
    int hdp = (hd + 15) & ~15, lds = hdp + 8, chunks = hd / 8, pad = hdp - hd;
    u16* qs = smem;
    u16* ks = qs + TA_BQ * lds;
    u16* vs = ks + TA_BK * lds;
    int q0 = blockIdx.x * TA_BQ, h = blockIdx.y, b = blockIdx.z;
    int D = H * hd;
    long long rs = 3LL * D;
    const bf16* base = qkv + (long long)b * L * rs + (long long)h * hd;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;

    for (int e = threadIdx.x; e < TA_BQ * chunks; e += blockDim.x) {
        int r = e / chunks, c = e % chunks;
        bool ok = q0 + r < L;
        cp_async16(&qs[r * lds + c * 8], ok ? base + (long long)(q0 + r) * rs + c * 8 : base, ok);
    }
    // The padding columns of Q and K: zero once; key tiles never write them.
    for (int e = threadIdx.x; e < (TA_BQ + TA_BK) * pad; e += blockDim.x) {
        int r = e / pad, c = hd + e % pad;
        if (r < TA_BQ)
            qs[r * lds + c] = 0;
        else
            ks[(r - TA_BQ) * lds + c] = 0;
    }
    cp_async_commit();

    float o[TA_NT][4];
    UNROLL
    for (int i = 0; i < TA_NT; i++)
        UNROLL
        for (int q = 0; q < 4; q++) o[i][q] = 0.0f;
    float m_run[2] = {neg_inf(), neg_inf()}, l_run[2] = {0.0f, 0.0f};
    int nt_out = hd / 8;

    for (int k0 = 0; k0 < L; k0 += TA_BK) {
        __syncthreads();  // the previous tile's K and V are consumed
        for (int e = threadIdx.x; e < TA_BK * chunks; e += blockDim.x) {
            int r = e / chunks, c = e % chunks;
            bool ok = k0 + r < L;
            const bf16* src = base + (long long)(k0 + r) * rs + c * 8;
            cp_async16(&ks[r * lds + c * 8], ok ? src + D : base, ok);
            cp_async16(&vs[r * lds + c * 8], ok ? src + 2 * D : base, ok);
        }
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();  // Q (first tile), K and V are in shared memory

        float s[8][4];
        UNROLL
        for (int j = 0; j < 8; j++)
            UNROLL
            for (int q = 0; q < 4; q++) s[j][q] = 0.0f;
        for (int kc = 0; kc < hdp; kc += 16) {
            u32 a[4];
            ldmatrix_x4(a, &qs[(warp * 16 + (lane & 15)) * lds + kc + (lane >> 4) * 8]);
            UNROLL
            for (int nj = 0; nj < 4; nj++) {
                u32 kb[4];
                ldmatrix_x4(kb, &ks[(nj * 16 + (lane & 7) + ((lane >> 4) << 3)) * lds + kc + ((lane >> 3) & 1) * 8]);
                mma_bf16_16816(s[2 * nj], a, kb, s[2 * nj]);
                mma_bf16_16816(s[2 * nj + 1], a, kb + 2, s[2 * nj + 1]);
            }
        }

        // Online softmax on the fragments: s[j][q] is row g (q < 2) or g + 8, key j*8 + 2t + (q&1).
        float tmax[2] = {neg_inf(), neg_inf()};
        UNROLL
        for (int j = 0; j < 8; j++)
            UNROLL
            for (int q = 0; q < 4; q++) {
                float v = k0 + j * 8 + 2 * t + (q & 1) < L ? s[j][q] * scale : neg_inf();
                s[j][q] = v;
                tmax[q >> 1] = fmaxf(tmax[q >> 1], v);
            }
        float corr[2], rsum[2] = {0.0f, 0.0f};
        UNROLL
        for (int r = 0; r < 2; r++) {
            tmax[r] = quad_max(tmax[r]);
            float m_new = fmaxf(m_run[r], tmax[r]);  // finite: every tile holds at least one key
            corr[r] = expf(m_run[r] - m_new);
            m_run[r] = m_new;
        }
        UNROLL
        for (int j = 0; j < 8; j++)
            UNROLL
            for (int q = 0; q < 4; q++) {
                // Rounded to bf16 here, as O += P V will use it, so the normaliser sums exactly
                // the weights applied.
                float p = bf16_to_f32(f32_to_bf16(expf(s[j][q] - m_run[q >> 1])));
                s[j][q] = p;
                rsum[q >> 1] += p;
            }
        UNROLL
        for (int r = 0; r < 2; r++) {
            l_run[r] = l_run[r] * corr[r] + quad_sum(rsum[r]);
        }
        frag_scale_rows(o, corr);

        // O += P V, 16 keys at a time: two S tiles form one A fragment.
        UNROLL
        for (int kc = 0; kc < 4; kc++) {
            u32 a[4];
            frag_pack_a(a, s[2 * kc], s[2 * kc + 1]);
            // Lane l addresses key kc*16 + ((l >> 3) & 1) * 8 + (l & 7), dims + (l >> 4) * 8.
            const u16* vrow = &vs[(kc * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * lds + (lane >> 4) * 8];
            UNROLL
            for (int nt = 0; nt < TA_NT; nt += 2) {
                if (nt >= nt_out) break;
                u32 vb[4];
                if (nt + 1 < nt_out) {
                    ldmatrix_x4_trans(vb, vrow + nt * 8);
                    mma_bf16_16816(o[nt], a, vb, o[nt]);
                    mma_bf16_16816(o[nt + 1], a, vb + 2, o[nt + 1]);
                } else {
                    ldmatrix_x2_trans(vb, vrow + nt * 8);
                    mma_bf16_16816(o[nt], a, vb, o[nt]);
                }
            }
        }
    }

    float inv[2] = {1.0f / l_run[0], 1.0f / l_run[1]};
    UNROLL
    for (int r = 0; r < 2; r++) {
        int q = q0 + warp * 16 + g + r * 8;
        if (q >= L) continue;
        bf16* orow = out + ((long long)b * L + q) * D + (long long)h * hd;
        UNROLL
        for (int nt = 0; nt < TA_NT; nt++) {
            if (nt >= nt_out) break;
            orow[nt * 8 + 2 * t] = f32_to_bf16(o[nt][2 * r] * inv[r]);
            orow[nt * 8 + 2 * t + 1] = f32_to_bf16(o[nt][2 * r + 1] * inv[r]);
        }
    }
}
PERCEPT_KERNEL(attention_tc_bf16)
