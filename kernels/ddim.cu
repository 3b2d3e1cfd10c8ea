// The DDIM update (eta = 0) for one step, elementwise, always in f32.
#include "common/dialect.cuh"

// From the model output and the current sample, the predicted clean sample x0 and noise eps:
//   pred_type 0 (epsilon):      eps = out, x0 = (sample - sqrt(1 - a_t) * eps) / sqrt(a_t)
//   pred_type 1 (v_prediction): x0 = sqrt(a_t) * sample - sqrt(1 - a_t) * out,
//                               eps = sqrt(a_t) * out + sqrt(1 - a_t) * sample
//   pred_type 2 (sample):       x0 = out, eps = (sample - sqrt(a_t) * x0) / sqrt(1 - a_t)
// then (x0 clamped when clip > 0) prev = c_x0 * x0 + c_eps * eps with c_x0 = sqrt(a_prev),
// c_eps = sqrt(1 - a_prev).
static __device__ __forceinline__ float ddim_update(float out, float s, int pred_type, float sqrt_alpha,
                                                    float sqrt_one_minus_alpha, float c_x0, float c_eps, float clip,
                                                    float* x0_out) {
    float x0, eps;
    if (pred_type == 0) {
        eps = out;
        x0 = (s - sqrt_one_minus_alpha * eps) / sqrt_alpha;
    } else if (pred_type == 1) {
        x0 = sqrt_alpha * s - sqrt_one_minus_alpha * out;
        eps = sqrt_alpha * out + sqrt_one_minus_alpha * s;
    } else {
        x0 = out;
        eps = (s - sqrt_alpha * x0) / sqrt_one_minus_alpha;
    }
    // Comparisons, not fminf/fmaxf: a NaN stays NaN, as in the CPU backend's clamp.
    if (clip > 0.0f) x0 = x0 < -clip ? -clip : (x0 > clip ? clip : x0);
    *x0_out = x0;
    return c_x0 * x0 + c_eps * eps;
}

// One step of n elements, its coefficients read from device memory (so that one captured graph
// serves every step: the host writes each step's values there before replaying it):
//   coef = {sqrt_alpha, sqrt_one_minus_alpha, c_x0, c_eps, clip}
// clip > 0 clamps x0 to [-clip, clip] before the update (diffusers' clip_sample: eps stays the
// one derived from the unclamped x0); 0 leaves it. `prev` may be `sample` (the step in place:
// each element is read before it is written, by the same thread); `pred_x0` may be null.
extern "C" __global__ void ddim_step_f32(float* prev, float* pred_x0, const float* model_output, const float* sample,
                                         long long n, int pred_type, const float* __restrict__ coef) {
    float sa = coef[0], soma = coef[1], cx0 = coef[2], ceps = coef[3], clip = coef[4];
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float x0;
        prev[i] = ddim_update(model_output[i], sample[i], pred_type, sa, soma, cx0, ceps, clip, &x0);
        if (pred_x0) pred_x0[i] = x0;
    }
}
PERCEPT_KERNEL(ddim_step_f32)
