// Top-k mixture of experts on the device, in five deterministic steps (no float atomics):
//   moe_route_f32          gate logits, softmax, top-k per token          -> ids, wts [N, k]
//   moe_count_sort_i32     token copies grouped by expert (stable)        -> offsets [E+1], sorted_entry, entry_pos
//   moe_gather_f32         rows of x into expert-grouped order            -> xs [N*k, D]
//   moe_expert_fc_f32      grouped GEMM, each expert on its own rows      -> fc1 (+GELU), then fc2
//   moe_combine_f32        per token, its k outputs summed in expert order -> out [N, D]
//                          (or moe_combine_gated_add_f32: straight into the gated residual add)
// An "entry" is token * k + slot, the index into ids/wts. The _bf16 entries store activations and
// weight matrices as bf16 (math in f32); ids, routing weights, offsets and biases stay int/f32.
#include "common/reduce.cuh"
#include "common/storage.cuh"
#include "common/tc_gemm.cuh"

#define MOE_MAX_E 256
#define MOE_MAX_K 8

// One block per token, grid (N), block a multiple of 32 (128 suggested). Each warp computes the logits
// of experts warp, warp + warps, ...; one thread then does the softmax and the top-k selection (E is
// small), sorted by probability descending with ties to the lower expert index. Weights are the
// softmax probabilities, not renormalised. E <= 256, k <= E.
template <class T>
static __device__ __forceinline__ void moe_route(int* __restrict__ ids, float* __restrict__ wts,
                                                 const T* __restrict__ x, const T* __restrict__ gate, int D, int E,
                                                 int k) {
    SHARED(float[MOE_MAX_E], prob);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const T* xr = x + (long long)blockIdx.x * D;
    for (int e = warp; e < E; e += warps) {
        const T* g = gate + (long long)e * D;
        float s = 0.0f;
        for (int d = lane; d < D; d += 32) s += ld(xr, d) * ld(g, d);
        s = warp_sum(s);
        if (lane == 0) prob[e] = s;
    }
    __syncthreads();  // logits written
    if (threadIdx.x != 0) return;
    float mx = prob[0];
    for (int e = 1; e < E; e++) mx = fmaxf(mx, prob[e]);
    float sum = 0.0f;
    for (int e = 0; e < E; e++) {
        prob[e] = expf(prob[e] - mx);
        sum += prob[e];
    }
    for (int e = 0; e < E; e++) prob[e] /= sum;
    int picked[MOE_MAX_K];
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            bool taken = false;
            for (int i = 0; i < j && i < MOE_MAX_K; i++) taken |= picked[i] == e;
            if (!taken && (best < 0 || prob[e] > prob[best])) best = e;
        }
        if (j < MOE_MAX_K) picked[j] = best;
        ids[(long long)blockIdx.x * k + j] = best;
        wts[(long long)blockIdx.x * k + j] = prob[best];
    }
}
extern "C" __global__ void moe_route_f32(int* __restrict__ ids, float* __restrict__ wts, const float* __restrict__ x,
                                         const float* __restrict__ gate, int D, int E, int k) {
    moe_route(ids, wts, x, gate, D, E, k);
}
PERCEPT_KERNEL(moe_route_f32)
extern "C" __global__ void moe_route_bf16(int* __restrict__ ids, float* __restrict__ wts, const bf16* __restrict__ x,
                                          const bf16* __restrict__ gate, int D, int E, int k) {
    moe_route(ids, wts, x, gate, D, E, k);
}
PERCEPT_KERNEL(moe_route_bf16)

static __device__ __forceinline__ int popc32(u32 v) {
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0F0F0F0Fu;
    return (int)((v * 0x01010101u) >> 24);
}

// Counting sort of the n entries (token copies) by expert id, in ONE block (a multiple of 32
// threads, 1024 suggested): counts with shared-memory atomics, an exclusive scan into
// offsets [E + 1], then one warp per expert walks all entries in index order and places its own with
// a ballot, so within an expert the entries stay in (token, slot) order whatever the thread timing.
// Writes sorted_entry [n] (the entry at each sorted position) and entry_pos [n] (its inverse).
// Ids outside 0..E are skipped. E <= 256.
extern "C" __global__ void moe_count_sort_i32(int* __restrict__ offsets, int* __restrict__ sorted_entry,
                                          int* __restrict__ entry_pos, const int* __restrict__ ids, int n, int E) {
    SHARED(int[MOE_MAX_E], counts);
    SHARED(int[MOE_MAX_E + 1], starts);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int e = threadIdx.x; e < E; e += blockDim.x) counts[e] = 0;
    __syncthreads();  // counts zeroed
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        int e = ids[i];
        if (e >= 0 && e < E) atomicAdd(&counts[e], 1);
    }
    __syncthreads();  // counts complete
    if (threadIdx.x == 0) {
        int run = 0;
        for (int e = 0; e < E; e++) {
            starts[e] = run;
            offsets[e] = run;
            run += counts[e];
        }
        starts[E] = run;
        offsets[E] = run;
    }
    __syncthreads();  // starts published
    u32 below = (1u << lane) - 1u;
    for (int e = warp; e < E; e += warps) {
        int run = starts[e];
        for (int base = 0; base < n; base += 32) {
            int i = base + lane;
            bool mine = i < n && ids[i] == e;
            u32 ballot = __ballot_sync(FULL_MASK, mine);
            if (mine) {
                int pos = run + popc32(ballot & below);
                sorted_entry[pos] = i;
                entry_pos[i] = pos;
            }
            run += popc32(ballot);
        }
    }
}
PERCEPT_KERNEL(moe_count_sort_i32)

// xs [n, D]: row r is x row sorted_entry[r] / k. Grid (n), any block size.
template <class T>
static __device__ __forceinline__ void moe_gather(T* __restrict__ xs, const T* __restrict__ x,
                                                  const int* __restrict__ sorted_entry, int k, int D) {
    long long token = sorted_entry[blockIdx.x] / k;
    for (int d = threadIdx.x; d < D; d += blockDim.x) xs[(long long)blockIdx.x * D + d] = x[token * D + d];
}
extern "C" __global__ void moe_gather_f32(float* __restrict__ xs, const float* __restrict__ x,
                                          const int* __restrict__ sorted_entry, int k, int D) {
    moe_gather(xs, x, sorted_entry, k, D);
}
PERCEPT_KERNEL(moe_gather_f32)
extern "C" __global__ void moe_gather_bf16(bf16* __restrict__ xs, const bf16* __restrict__ x,
                                           const int* __restrict__ sorted_entry, int k, int D) {
    moe_gather(xs, x, sorted_entry, k, D);
}
PERCEPT_KERNEL(moe_gather_bf16)

// Grouped GEMM: for each expert e, rows offsets[e]..offsets[e+1] of xs [rows, K] times
// w[e]^T (w stacked [E, N, K]) + bias[e] (bias [E, N], may be null), optional GELU (tanh), into the
// same rows of y [rows, N]. 32x32 tiles never straddle two experts: block y walks the experts'
// tile counts to find its (expert, tile); the grid is (ceil(N/32), ceil(rows/32) + E), an upper
// bound on the tiles, and surplus blocks exit at once. 256 threads, each a 2x2 set of outputs.
#define MF_TILE 32
#define MF_K 16
template <class T>
static __device__ __forceinline__ void moe_expert_fc(T* __restrict__ y, const T* __restrict__ xs,
                                                     const T* __restrict__ w, const float* __restrict__ bias,
                                                     const int* __restrict__ offsets, int E, int N, int K,
                                                     int fuse_gelu) {
    SHARED(float[MF_TILE][MF_K + 1], as);
    SHARED(float[MF_TILE][MF_K + 1], ws);
    int t = blockIdx.y, e = 0;
    for (; e < E; e++) {
        int tiles = (offsets[e + 1] - offsets[e] + MF_TILE - 1) / MF_TILE;
        if (t < tiles) break;
        t -= tiles;
    }
    if (e == E) return;  // the whole block: no barrier is skipped by only some threads
    int m0 = offsets[e] + t * MF_TILE, m_end = offsets[e + 1];
    const T* we = w + (long long)e * N * K;
    const float* be = bias ? bias + (long long)e * N : 0;
    int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    int n0 = blockIdx.x * MF_TILE;
    float acc[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};

    for (int k0 = 0; k0 < K; k0 += MF_K) {
        for (int i = threadIdx.x; i < MF_TILE * MF_K; i += blockDim.x) {
            int r = i / MF_K, kk = i % MF_K;
            bool ka = k0 + kk < K;
            as[r][kk] = ka && m0 + r < m_end ? ld(xs, (long long)(m0 + r) * K + k0 + kk) : 0.0f;
            ws[r][kk] = ka && n0 + r < N ? ld(we, (long long)(n0 + r) * K + k0 + kk) : 0.0f;
        }
        __syncthreads();  // slice loaded
        for (int kk = 0; kk < MF_K; kk++)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) acc[i][j] += as[ty + 16 * i][kk] * ws[tx + 16 * j][kk];
        __syncthreads();  // slice consumed
    }

    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            int m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
            if (m >= m_end || n >= N) continue;
            float v = acc[i][j] + (be ? be[n] : 0.0f);
            st(y, (long long)m * N + n, fuse_gelu ? gelu_tanh(v) : v);
        }
}
extern "C" __global__ void __launch_bounds__(256)
    moe_expert_fc_f32(float* __restrict__ y, const float* __restrict__ xs, const float* __restrict__ w,
                      const float* __restrict__ bias, const int* __restrict__ offsets, int E, int N, int K,
                      int fuse_gelu) {
    moe_expert_fc(y, xs, w, bias, offsets, E, N, K, fuse_gelu);
}
PERCEPT_KERNEL(moe_expert_fc_f32)
extern "C" __global__ void __launch_bounds__(256)
    moe_expert_fc_bf16(bf16* __restrict__ y, const bf16* __restrict__ xs, const bf16* __restrict__ w,
                       const float* __restrict__ bias, const int* __restrict__ offsets, int E, int N, int K,
                       int fuse_gelu) {
    moe_expert_fc(y, xs, w, bias, offsets, E, N, K, fuse_gelu);
}
PERCEPT_KERNEL(moe_expert_fc_bf16)

// Fast variant of moe_expert_fc_bf16 (not the default until it has passed on a GPU): each block
// one 128x128 tile of one expert's rows on tensor cores (common/tc_gemm.cuh); grid
// (ceil(N/128), ceil(rows/128) + E), surplus blocks exit. Needs K % 8 == 0.
extern "C" __global__ void __launch_bounds__(256)
    moe_expert_fc_tc128_bf16(bf16* __restrict__ y, const bf16* __restrict__ xs, const bf16* __restrict__ w,
                        const float* __restrict__ bias, const int* __restrict__ offsets, int E, int N, int K,
                        int fuse_gelu) {
    int t = blockIdx.y, e = 0;
    for (; e < E; e++) {
        int tiles = (offsets[e + 1] - offsets[e] + TC_M - 1) / TC_M;
        if (t < tiles) break;
        t -= tiles;
    }
    if (e == E) return;  // the whole block: no barrier is skipped by only some threads
    tc_gemm_tile(y, xs, w + (long long)e * N * K, bias ? bias + (long long)e * N : 0, offsets[e] + t * TC_M,
                 offsets[e + 1], blockIdx.x * TC_N, N, K, fuse_gelu, 1);
}
PERCEPT_KERNEL(moe_expert_fc_tc128_bf16)

// Token blockIdx.x's k entries in ascending expert order, the order of the authors' scatter_reduce
// (ids of one token are distinct); returns how many (k <= 8).
static __device__ __forceinline__ int moe_combine_order(int* order, const int* __restrict__ ids, long long first,
                                                        int k) {
    int kk = k < MOE_MAX_K ? k : MOE_MAX_K;
    for (int j = 0; j < kk; j++) order[j] = j;
    for (int j = 1; j < kk; j++)  // insertion sort by expert id
        for (int i = j; i > 0 && ids[first + order[i - 1]] > ids[first + order[i]]; i--) {
            int tmp = order[i];
            order[i] = order[i - 1];
            order[i - 1] = tmp;
        }
    return kk;
}

// out [N, D]: token t's rows of y (sorted order, found through entry_pos) weighted by wts and summed
// in ascending expert order. Grid (N), any block size; k <= 8.
template <class T>
static __device__ __forceinline__ void moe_combine(T* __restrict__ out, const T* __restrict__ y,
                                                   const float* __restrict__ wts, const int* __restrict__ ids,
                                                   const int* __restrict__ entry_pos, int k, int D) {
    long long first = (long long)blockIdx.x * k;
    int order[MOE_MAX_K];
    int kk = moe_combine_order(order, ids, first, k);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float s = 0.0f;
        for (int j = 0; j < kk; j++) {
            long long en = first + order[j];
            s += wts[en] * ld(y, (long long)entry_pos[en] * D + d);
        }
        st(out, (long long)blockIdx.x * D + d, s);
    }
}

// The combine fused into the DiT block's gated residual add: x [N, D] (the f32 residual stream,
// N = B * tokens) += gate * (the sum of moe_combine), gate = mods[n / tokens][gate_off + d] (mods
// f32, rows of M): the combined rows are never stored. Grid (N), any block size; k <= 8.
template <class T>
static __device__ __forceinline__ void moe_combine_gated_add(float* __restrict__ x, const T* __restrict__ y,
                                                             const float* __restrict__ wts,
                                                             const int* __restrict__ ids,
                                                             const int* __restrict__ entry_pos, int k, int D,
                                                             const float* __restrict__ mods, int tokens, int M,
                                                             int gate_off) {
    long long first = (long long)blockIdx.x * k;
    int order[MOE_MAX_K];
    int kk = moe_combine_order(order, ids, first, k);
    const float* gate = mods + (long long)(blockIdx.x / tokens) * M + gate_off;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float s = 0.0f;
        for (int j = 0; j < kk; j++) {
            long long en = first + order[j];
            s += wts[en] * ld(y, (long long)entry_pos[en] * D + d);
        }
        x[(long long)blockIdx.x * D + d] += gate[d] * s;
    }
}
extern "C" __global__ void moe_combine_gated_add_f32(float* __restrict__ x, const float* __restrict__ y,
                                                     const float* __restrict__ wts, const int* __restrict__ ids,
                                                     const int* __restrict__ entry_pos, int k, int D,
                                                     const float* __restrict__ mods, int tokens, int M,
                                                     int gate_off) {
    moe_combine_gated_add(x, y, wts, ids, entry_pos, k, D, mods, tokens, M, gate_off);
}
PERCEPT_KERNEL(moe_combine_gated_add_f32)
extern "C" __global__ void moe_combine_gated_add_bf16(float* __restrict__ x, const bf16* __restrict__ y,
                                                      const float* __restrict__ wts, const int* __restrict__ ids,
                                                      const int* __restrict__ entry_pos, int k, int D,
                                                      const float* __restrict__ mods, int tokens, int M,
                                                      int gate_off) {
    moe_combine_gated_add(x, y, wts, ids, entry_pos, k, D, mods, tokens, M, gate_off);
}
PERCEPT_KERNEL(moe_combine_gated_add_bf16)
extern "C" __global__ void moe_combine_f32(float* __restrict__ out, const float* __restrict__ y,
                                           const float* __restrict__ wts, const int* __restrict__ ids,
                                           const int* __restrict__ entry_pos, int k, int D) {
    moe_combine(out, y, wts, ids, entry_pos, k, D);
}
PERCEPT_KERNEL(moe_combine_f32)
extern "C" __global__ void moe_combine_bf16(bf16* __restrict__ out, const bf16* __restrict__ y,
                                            const float* __restrict__ wts, const int* __restrict__ ids,
                                            const int* __restrict__ entry_pos, int k, int D) {
    moe_combine(out, y, wts, ids, entry_pos, k, D);
}
PERCEPT_KERNEL(moe_combine_bf16)
