// Storage conversions between f32 and bf16 (round to nearest even), for the bf16 path's edges:
// inputs arrive in f32, the scheduler state stays f32, outputs leave in f32.
#include "common/dialect.cuh"

extern "C" __global__ void convert_f32_to_bf16(bf16* __restrict__ y, const float* __restrict__ x, long long n) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = f32_to_bf16(x[i]);
}
PERCEPT_KERNEL(convert_f32_to_bf16)

extern "C" __global__ void convert_bf16_to_f32(float* __restrict__ y, const bf16* __restrict__ x, long long n) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = bf16_to_f32(x[i]);
}
PERCEPT_KERNEL(convert_bf16_to_f32)
