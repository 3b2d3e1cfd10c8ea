// The kernel dialect: one source compiles under NVRTC (real built-ins) and under the host C++
// compiler with PERCEPT_EMU (our emulated built-ins). Kernels include only this and the other
// common/*.cuh headers; no toolkit or host headers.
#pragma once

#ifdef PERCEPT_EMU
#include "emu_runtime.h"
#else
// Exports an entry point to the emulator's launch table; NVRTC needs nothing.
#define PERCEPT_KERNEL(fn)
template <class T>
using percept_id_t = T;
// Shared memory: SHARED(float[32][17], tile); the emulator allocates, poisons and bounds-checks it.
#define SHARED(type, name) __shared__ percept_id_t<type> name
#define SHARED_ALIGNED(n, type, name) __shared__ __align__(n) percept_id_t<type> name
// The launch's dynamic shared memory (16-byte aligned) as a `type*`. Declared once per module: a
// declaration in each kernel conflicts when a module has several.
extern __shared__ __align__(16) unsigned char percept_dyn_smem_[];
#define SHARED_DYNAMIC(type, name) type* name = reinterpret_cast<type*>(percept_dyn_smem_)
#endif

// Full unrolling of a loop with a constant trip count, so that arrays indexed by its counter stay in
// registers. The emulator's host compiler does not know the pragma and needs none.
#ifdef PERCEPT_EMU
#define UNROLL
#else
#define UNROLL _Pragma("unroll")
#endif

typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define FULL_MASK 0xFFFFFFFFu

// bf16 and f16 as bit patterns with our own conversions, identical on the GPU and in the emulator
// (round to nearest even, NaN stays NaN).
struct bf16 {
    u16 bits;
};
struct f16 {
    u16 bits;
};

__device__ __forceinline__ float bf16_to_f32(bf16 h) { return __uint_as_float((u32)h.bits << 16); }

__device__ __forceinline__ bf16 f32_to_bf16(float f) {
    u32 u = __float_as_uint(f);
    bf16 r;
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
        r.bits = (u16)((u >> 16) | 0x40u);
        return r;
    }
    u += 0x7FFFu + ((u >> 16) & 1u);
    r.bits = (u16)(u >> 16);
    return r;
}

// The lower half of a packed pair holds the element with the smaller index, as in PTX fragments.
__device__ __forceinline__ u32 pack_bf16x2(float lo, float hi) {
    return (u32)f32_to_bf16(lo).bits | ((u32)f32_to_bf16(hi).bits << 16);
}

__device__ __forceinline__ float f16_to_f32(f16 h) {
    u32 sign = ((u32)h.bits & 0x8000u) << 16;
    u32 e = ((u32)h.bits >> 10) & 0x1Fu;
    u32 m = (u32)h.bits & 0x3FFu;
    if (e == 0x1Fu) return __uint_as_float(sign | 0x7F800000u | (m << 13));
    if (e == 0) {
        float v = (float)m * 5.9604644775390625e-8f;  // m * 2^-24, exact
        return sign ? -v : v;
    }
    return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
}

__device__ __forceinline__ f16 f32_to_f16(float f) {
    u32 x = __float_as_uint(f);
    u32 sign = (x >> 16) & 0x8000u;
    u32 ax = x & 0x7FFFFFFFu;
    f16 r;
    if (ax >= 0x7F800000u) {
        r.bits = (u16)(sign | (ax > 0x7F800000u ? 0x7E00u : 0x7C00u));
    } else if (ax >= 0x477FF000u) {  // rounds to beyond 65504
        r.bits = (u16)(sign | 0x7C00u);
    } else if (ax < 0x38800000u) {  // below 2^-14: subnormal in f16
        u32 e = ax >> 23;
        u32 shift = 126u - e;
        if (shift > 24u) {
            r.bits = (u16)sign;
        } else {
            u32 m = (ax & 0x7FFFFFu) | 0x800000u;
            u32 q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
            if (rem > half || (rem == half && (q & 1u))) q++;
            r.bits = (u16)(sign | q);
        }
    } else {
        u32 q = (ax - 0x38000000u) >> 13, rem = ax & 0x1FFFu;
        if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++;
        r.bits = (u16)(sign | q);
    }
    return r;
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

// GELU with the tanh approximation (PyTorch approximate="tanh").
__device__ __forceinline__ float gelu_tanh(float x) {
    const float k = 0.7978845608028654f;  // sqrt(2 / pi)
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}
