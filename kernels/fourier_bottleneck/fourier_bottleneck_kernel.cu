/* Fused Fourier bottleneck kernels, their launch plan and launchers (see README.md).
 *
 *   spectral: y = irfft2(G_c * rfft2(x)),  gir: y = |ifft2(fft2(x))|,  per (batch, channel) plane
 */
#include <cuda_runtime.h>

#include <stdint.h>

#include <vector>

#include "fourier_bottleneck.h"
#include "fourier_bottleneck_blocks.cuh"

namespace {

/* GPU execution of a block step: every thread runs it once, then the block meets at a barrier. */
struct DeviceExec {
    template <typename F>
    FB_HD void step(F f) const {
#ifdef __CUDA_ARCH__
        f((int)threadIdx.x, (int)blockDim.x);
        __syncthreads();
#endif
    }
};

/* Host execution of a block step: one thread id after another (optionally in reverse order). */
struct HostExec {
    int threads;
    bool reverse;
    template <typename F>
    FB_HD void step(F f) const {
        for (int i = 0; i < threads; ++i) f(reverse ? threads - 1 - i : i, threads);
    }
};

/* at most 512 threads (the plan's cap); two such blocks per SM bounds registers at 64 a thread, so
 * four 256-thread blocks of 64x64 planes stay resident */
template <typename T>
__global__ void __launch_bounds__(512, 2) fused_kernel(FbLaunchPlan p, const T* __restrict__ x, const float* __restrict__ weight,
                             T* __restrict__ y) {
    extern __shared__ float2 smem[];
    fused_plane<T>(DeviceExec{}, p, (int)blockIdx.x, x, weight, y, smem);
}

template <typename T>
__global__ void general_forward_kernel(FbLaunchPlan p, const T* __restrict__ x, const float* __restrict__ weight,
                                       float2* __restrict__ workspace) {
    extern __shared__ float2 smem[];
    general_forward_column<T>(DeviceExec{}, p, (int)blockIdx.x, (int)blockIdx.y, x, weight, workspace, smem);
}

template <typename T>
__global__ void general_inverse_kernel(FbLaunchPlan p, const float2* __restrict__ workspace, T* __restrict__ y) {
    extern __shared__ float2 smem[];
    general_inverse_row<T>(DeviceExec{}, p, (int)blockIdx.x, (int)blockIdx.y, workspace, y, smem);
}

int log2_exact(int v) {
    if (v <= 0 || (v & (v - 1)) != 0) return -1;
    int l = 0;
    while ((1 << l) < v) ++l;
    return l;
}

unsigned round_up_pow2(unsigned v) {
    unsigned r = 1;
    while (r < v) r <<= 1;
    return r;
}

/* Shared memory above the 48 KiB default must be opted into per kernel. */
template <typename K>
cudaError_t allow_smem(K kernel, unsigned bytes) {
    if (bytes <= 48u * 1024u) return cudaSuccess;
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
}

template <typename T>
int launch_typed(const FbLaunchPlan& p, const T* x, const float* weight, T* y, void* workspace, cudaStream_t stream) {
    const FbKernelLaunch* k = p.kernels;
    cudaError_t err;
    if (p.path == FB_PATH_FUSED) {
        if ((err = allow_smem(fused_kernel<T>, k[0].smem_bytes)) != cudaSuccess) return (int)err;
        fused_kernel<T><<<dim3(k[0].grid_x, k[0].grid_y), k[0].block, k[0].smem_bytes, stream>>>(p, x, weight, y);
    } else {
        float2* ws = static_cast<float2*>(workspace);
        if ((err = allow_smem(general_forward_kernel<T>, k[0].smem_bytes)) != cudaSuccess) return (int)err;
        if ((err = allow_smem(general_inverse_kernel<T>, k[1].smem_bytes)) != cudaSuccess) return (int)err;
        general_forward_kernel<T><<<dim3(k[0].grid_x, k[0].grid_y), k[0].block, k[0].smem_bytes, stream>>>(
            p, x, weight, ws);
        general_inverse_kernel<T><<<dim3(k[1].grid_x, k[1].grid_y), k[1].block, k[1].smem_bytes, stream>>>(
            p, ws, y);
    }
    return (int)cudaGetLastError();
}

template <typename T>
int emulate_typed(const FbLaunchPlan& p, const T* x, const float* weight, T* y, void* workspace, bool reverse) {
    for (int ki = 0; ki < p.num_kernels; ++ki) {
        const FbKernelLaunch& k = p.kernels[ki];
        std::vector<float2> smem(k.smem_bytes / sizeof(float2) + 1);
        const HostExec ex = {(int)k.block, reverse};
        for (unsigned by = 0; by < k.grid_y; ++by) {
            for (unsigned bx = 0; bx < k.grid_x; ++bx) {
                if (p.path == FB_PATH_FUSED)
                    fused_plane<T>(ex, p, (int)bx, x, weight, y, smem.data());
                else if (ki == 0)
                    general_forward_column<T>(ex, p, (int)bx, (int)by, x, weight, static_cast<float2*>(workspace),
                                              smem.data());
                else
                    general_inverse_row<T>(ex, p, (int)bx, (int)by, static_cast<const float2*>(workspace), y,
                                           smem.data());
            }
        }
    }
    return FB_OK;
}

int check_pointers(const FbLaunchPlan* p, const void* x, const float* weight, const void* y, const void* workspace) {
    if (!p || p->num_kernels < 0 || p->num_kernels > FB_MAX_KERNELS) return FB_ERR_INVALID_ARGUMENT;
    if (p->num_kernels == 0) return FB_OK;
    if (!x || !y || (p->mode == FB_MODE_SPECTRAL && !weight) || (p->workspace_bytes > 0 && !workspace))
        return FB_ERR_MISSING_POINTER;
    if (p->path == FB_PATH_FUSED && ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(y)) & 15u))
        return FB_ERR_MISALIGNED;
    return FB_OK;
}

}  // namespace

extern "C" int fourier_bottleneck_plan(int n, int c, int h, int w, int grid_h, int grid_w, int mode, int dtype,
                                       FbLaunchPlan* plan) {
    if (!plan) return FB_ERR_INVALID_ARGUMENT;
    *plan = FbLaunchPlan{};
    plan->path = -1;
    if (n < 0 || c < 0 || h < 1 || w < 1) return FB_ERR_INVALID_ARGUMENT;
    if (mode != FB_MODE_SPECTRAL && mode != FB_MODE_GIR) return FB_ERR_INVALID_ARGUMENT;
    if (dtype != FB_DTYPE_FLOAT32 && dtype != FB_DTYPE_FLOAT16) return FB_ERR_INVALID_ARGUMENT;
    if (mode == FB_MODE_SPECTRAL && (grid_h < 2 || grid_w < 2)) return FB_ERR_INVALID_ARGUMENT;
    const long long planes = (long long)n * c;
    if (planes > 0x7fffffffLL || (long long)h * w > (1LL << 26)) return FB_ERR_INVALID_ARGUMENT;

    plan->planes = (int)planes;
    plan->channels = c;
    plan->height = h;
    plan->width = w;
    plan->grid_h = grid_h;
    plan->grid_w = grid_w;
    plan->half_width = w / 2 + 1;
    plan->mode = mode;
    plan->dtype = dtype;
    plan->scale = 1.0f / ((float)h * (float)w);

    const int lh = log2_exact(h), lw = log2_exact(w);
    const bool fused = lh >= 0 && lw >= 0 && h >= FB_FUSED_MIN_SIDE && w >= FB_FUSED_MIN_SIDE &&
                       h <= FB_FUSED_MAX_SIDE && w <= FB_FUSED_MAX_SIDE;
    if (fused) {
        plan->path = FB_PATH_FUSED;
        plan->log2_height = lh;
        plan->log2_half = lw - 1;
        plan->log2_lmax = lh > lw ? lh : lw;
        /* a radix-8 pass has h*w/16 items: one per thread, up to 512 threads (128x128 planes, of
         * which only 3 fit an SM's shared memory at once) */
        unsigned threads = round_up_pow2((unsigned)(h * w / 16));
        threads = threads < 32 ? 32 : (threads > 512 ? 512 : threads);
        const size_t smem = ((size_t)h * plan->half_width + (size_t)(1 << plan->log2_lmax) / 2) * sizeof(float2);
        plan->kernels[0] = FbKernelLaunch{(unsigned)planes, 1, threads, (unsigned)smem};
        plan->num_kernels = planes > 0 ? 1 : 0;
        plan->workspace_bytes = 0;
    } else {
        if (plan->half_width > 65535 || h > 65535) return FB_ERR_INVALID_ARGUMENT;
        plan->path = FB_PATH_GENERAL;
        plan->kernels[0] = FbKernelLaunch{(unsigned)planes, (unsigned)plan->half_width, 128,
                                          (unsigned)(h * sizeof(float2))};
        plan->kernels[1] = FbKernelLaunch{(unsigned)planes, (unsigned)h, 128,
                                          (unsigned)(plan->half_width * sizeof(float2))};
        plan->num_kernels = planes > 0 ? 2 : 0;
        plan->workspace_bytes = (size_t)planes * h * plan->half_width * sizeof(float2);
    }
    return FB_OK;
}

extern "C" int fourier_bottleneck_launch(const FbLaunchPlan* plan, const void* x, const float* weight, void* y,
                                         void* workspace, cudaStream_t stream) {
    const int bad = check_pointers(plan, x, weight, y, workspace);
    if (bad != FB_OK || plan->num_kernels == 0) return bad;
    if (plan->dtype == FB_DTYPE_FLOAT16)
        return launch_typed(*plan, static_cast<const __half*>(x), weight, static_cast<__half*>(y), workspace, stream);
    return launch_typed(*plan, static_cast<const float*>(x), weight, static_cast<float*>(y), workspace, stream);
}

extern "C" int fourier_bottleneck_emulate(const FbLaunchPlan* plan, const void* x, const float* weight, void* y,
                                          void* workspace, int reverse_threads) {
    const int bad = check_pointers(plan, x, weight, y, workspace);
    if (bad != FB_OK || plan->num_kernels == 0) return bad;
    if (plan->dtype == FB_DTYPE_FLOAT16)
        return emulate_typed(*plan, static_cast<const __half*>(x), weight, static_cast<__half*>(y), workspace,
                             reverse_threads != 0);
    return emulate_typed(*plan, static_cast<const float*>(x), weight, static_cast<float*>(y), workspace,
                         reverse_threads != 0);
}

extern "C" const char* fourier_bottleneck_error_string(int code) {
    switch (code) {
        case FB_OK: return "ok";
        case FB_ERR_INVALID_ARGUMENT: return "invalid shape, mode, dtype or plan";
        case FB_ERR_MISSING_POINTER: return "a required pointer (x, y, weight or workspace) is NULL";
        case FB_ERR_MISALIGNED: return "x and y must be 16-byte aligned";
        default: return code > 0 ? cudaGetErrorString((cudaError_t)code) : "unknown error";
    }
}
