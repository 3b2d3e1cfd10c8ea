// Element access for kernels written once for f32 and bf16 storage: loads widen to f32, stores
// round to nearest even, so all arithmetic happens in f32 whatever the storage type.
#pragma once
#include "dialect.cuh"

static __device__ __forceinline__ float ld(const float* p, long long i) { return p[i]; }
static __device__ __forceinline__ float ld(const bf16* p, long long i) { return bf16_to_f32(p[i]); }
static __device__ __forceinline__ void st(float* p, long long i, float v) { p[i] = v; }
static __device__ __forceinline__ void st(bf16* p, long long i, float v) { p[i] = f32_to_bf16(v); }
