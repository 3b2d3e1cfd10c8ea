// Host-side definitions of CUDA's built-ins for the CPU emulator (only included when PERCEPT_EMU is
// defined; NVRTC never sees this file). A block's threads are fibers on one OS thread, switched only at
// barriers and warp collectives, in a seeded random order; see src/emu/runtime.cpp.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <math.h>
#include <utility>

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};
typedef dim3 uint3;

struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) uint2 { unsigned int x, y; };
struct alignas(16) uint4 { unsigned int x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

namespace percept_emu {

struct ThreadState {
    dim3 tid;
    unsigned int linear;  // x + y*Dx + z*Dx*Dy
};

struct BlockState {
    dim3 block_idx, block_dim, grid_dim;
    unsigned char* dynamic_shared;
};

extern thread_local ThreadState* tls_thread;
extern thread_local BlockState* tls_block;

// Every warp collective is one call: each participating lane deposits `in` (up to kWords 32-bit words),
// the last lane to arrive runs `complete` over all lanes, then every lane reads its own `out`.
constexpr int kWords = 16;
struct WarpIo {
    uint32_t in[32][kWords];
    uint32_t out[32][kWords];
};
typedef void (*CollectiveFn)(WarpIo* io, uint32_t mask);
void warp_collective(const char* what, uint32_t mask, CollectiveFn complete, const uint32_t* in, int in_words,
                     uint32_t* out, int out_words);

void syncthreads();
template <class T>
using id_t = T;
// The block's instance of the shared variable declared at `key` (allocated by its first user).
void* shared_static(const void* key, size_t bytes, const char* name);
[[noreturn]] void fail(const char* fmt, ...);

// cp.async: queued per thread, performed at wait time (the latest moment the hardware could), so a
// read of the destination before the wait sees stale data, as it may on a GPU.
void cp_async(void* dst, const void* src, int bytes, int src_bytes);
void cp_async_commit();
void cp_async_wait(int pending_groups);

template <typename T>
struct ArgCode;
template <typename T>
struct ArgCode<T*> { static constexpr char c = 'p'; };
template <>
struct ArgCode<int> { static constexpr char c = 'i'; };
template <>
struct ArgCode<unsigned int> { static constexpr char c = 'u'; };
template <>
struct ArgCode<float> { static constexpr char c = 'f'; };
template <>
struct ArgCode<long long> { static constexpr char c = 'l'; };
template <>
struct ArgCode<unsigned long long> { static constexpr char c = 'L'; };

// What a kernel file exports per entry point: the name, the argument signature (one ArgCode char per
// parameter, checked by the Rust side before a launch) and a trampoline that unpacks cuLaunchKernel-style
// `void** args`.
struct KernelEntry {
    const char* name;
    const char* signature;
    void (*invoke)(void** args);
};

template <auto F>
struct Entry;
template <typename... A, void (*F)(A...)>
struct Entry<F> {
    static constexpr char sig[sizeof...(A) + 1] = {ArgCode<A>::c..., '\0'};
    template <size_t... I>
    static void call(void** args, std::index_sequence<I...>) {
        F(*static_cast<A*>(args[I])...);
    }
    static void invoke(void** args) { call(args, std::index_sequence_for<A...>{}); }
};

}  // namespace percept_emu

#define threadIdx (percept_emu::tls_thread->tid)
#define blockIdx (percept_emu::tls_block->block_idx)
#define blockDim (percept_emu::tls_block->block_dim)
#define gridDim (percept_emu::tls_block->grid_dim)
#define warpSize 32

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Shared memory is allocated per block, poisoned (0xFF bytes: NaN) and bounds-checked (a canary, or
// AddressSanitizer's redzones), so kernels declare it with SHARED (dialect.cuh), never __shared__.
#define __shared__ use_SHARED_from_dialect_cuh_instead_of___shared__
#define SHARED(type, name)                                                                          \
    static const char name##_percept_key = 0;                                                       \
    auto& name = *static_cast<percept_emu::id_t<type>*>(                                            \
        percept_emu::shared_static(&name##_percept_key, sizeof(percept_emu::id_t<type>), #name))
#define SHARED_ALIGNED(n, type, name)                             \
    static_assert((n) <= 16, "shared allocations are 16-aligned"); \
    SHARED(type, name)
#define SHARED_DYNAMIC(type, name) type* name = reinterpret_cast<type*>(percept_emu::tls_block->dynamic_shared)

#define PERCEPT_KERNEL(fn)                                                                        \
    extern "C" const percept_emu::KernelEntry* percept_emu_entry_##fn() {                        \
        static const percept_emu::KernelEntry e = {#fn, percept_emu::Entry<&fn>::sig,             \
                                                   &percept_emu::Entry<&fn>::invoke};             \
        return &e;                                                                                \
    }

inline void __syncthreads() { percept_emu::syncthreads(); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

namespace percept_emu {
inline void shfl_complete(WarpIo* io, uint32_t mask) {
    for (int l = 0; l < 32; l++) {
        if (!(mask >> l & 1)) continue;
        uint32_t src = io->in[l][1];
        // Reading a lane outside the mask is undefined on the GPU: hand back a NaN pattern.
        io->out[l][0] = (mask >> src & 1) ? io->in[src][0] : 0xFFFFFFFFu;
    }
}
inline uint32_t shfl_raw(uint32_t mask, uint32_t v, uint32_t src) {
    uint32_t in[2] = {v, src}, out;
    warp_collective("__shfl_sync", mask, shfl_complete, in, 2, &out, 1);
    return out;
}
inline unsigned lane_id() { return tls_thread->linear & 31u; }
template <typename T>
inline T shfl_typed(uint32_t mask, T v, uint32_t src) {
    static_assert(sizeof(T) == 4, "the emulator shuffles 32-bit values");
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    bits = shfl_raw(mask, bits, src);
    T r;
    std::memcpy(&r, &bits, 4);
    return r;
}
inline void ballot_complete(WarpIo* io, uint32_t mask) {
    uint32_t b = 0;
    for (int l = 0; l < 32; l++)
        if ((mask >> l & 1) && io->in[l][0]) b |= 1u << l;
    for (int l = 0; l < 32; l++)
        if (mask >> l & 1) io->out[l][0] = b;
}
inline void nop_complete(WarpIo*, uint32_t) {}
}  // namespace percept_emu

// Source lane rules of PTX shfl.sync with c = width: lanes stay inside their width-sized segment.
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    unsigned lane = percept_emu::lane_id(), base = lane & ~(unsigned)(width - 1);
    return percept_emu::shfl_typed(mask, v, base + ((unsigned)src & (unsigned)(width - 1)));
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    unsigned lane = percept_emu::lane_id(), base = lane & ~(unsigned)(width - 1);
    unsigned src = lane ^ (unsigned)lane_mask;
    if (src >= base + (unsigned)width) src = lane;
    return percept_emu::shfl_typed(mask, v, src);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    unsigned lane = percept_emu::lane_id(), base = lane & ~(unsigned)(width - 1);
    unsigned src = lane + delta;
    if (src >= base + (unsigned)width) src = lane;
    return percept_emu::shfl_typed(mask, v, src);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    unsigned lane = percept_emu::lane_id(), base = lane & ~(unsigned)(width - 1);
    unsigned src = lane - delta;
    if ((int)(lane - base) - (int)delta < 0) src = lane;
    return percept_emu::shfl_typed(mask, v, src);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
    uint32_t in = pred != 0, out;
    percept_emu::warp_collective("__ballot_sync", mask, percept_emu::ballot_complete, &in, 1, &out, 1);
    return out;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }
inline void __syncwarp(unsigned mask = 0xFFFFFFFFu) {
    percept_emu::warp_collective("__syncwarp", mask, percept_emu::nop_complete, nullptr, 0, nullptr, 0);
}

// Blocks run in parallel on OS threads, so atomics are real host atomics.
inline float atomicAdd(float* p, float v) {
    float old, sum;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    do {
        sum = old + v;
    } while (!__atomic_compare_exchange(p, &old, &sum, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
}
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
inline int atomicMax(int* p, int v) {
    int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
inline int atomicMin(int* p, int v) {
    int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old > v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
inline unsigned atomicMax(unsigned* p, unsigned v) {
    unsigned old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
inline int atomicCAS(int* p, int cmp, int v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp;
}
inline unsigned atomicCAS(unsigned* p, unsigned cmp, unsigned v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp;
}
inline int atomicExch(int* p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
inline float atomicExch(float* p, float v) {
    float r;
    __atomic_exchange(p, &v, &r, __ATOMIC_RELAXED);
    return r;
}

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
inline int __float_as_int(float f) {
    int i;
    std::memcpy(&i, &f, 4);
    return i;
}
inline unsigned __float_as_uint(float f) {
    unsigned i;
    std::memcpy(&i, &f, 4);
    return i;
}
inline float __uint_as_float(unsigned i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
