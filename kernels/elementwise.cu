// Pointwise activations, grid-stride loops; bf16 variants compute in f32.
#include "common/dialect.cuh"

extern "C" __global__ void silu_f32(float* __restrict__ y, const float* __restrict__ x, long long n) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = silu(x[i]);
}
PERCEPT_KERNEL(silu_f32)

extern "C" __global__ void silu_bf16(bf16* __restrict__ y, const bf16* __restrict__ x, long long n) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = f32_to_bf16(silu(bf16_to_f32(x[i])));
}
PERCEPT_KERNEL(silu_bf16)

extern "C" __global__ void gelu_tanh_f32(float* __restrict__ y, const float* __restrict__ x, long long n) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = gelu_tanh(x[i]);
}
PERCEPT_KERNEL(gelu_tanh_f32)

extern "C" __global__ void gelu_tanh_bf16(bf16* __restrict__ y, const bf16* __restrict__ x, long long n) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = f32_to_bf16(gelu_tanh(bf16_to_f32(x[i])));
}
PERCEPT_KERNEL(gelu_tanh_bf16)
