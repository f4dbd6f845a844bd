/* Fused Fourier bottleneck: public C API (see README.md for the I/O contract).
 *
 * Every caller -- the torch op (ctypes), the TensorRT plugin (ctypes), the C runtime -- first asks
 * fourier_bottleneck_plan() for the launch plan of a shape and then hands that plan to
 * fourier_bottleneck_launch(). The plan is the only place where grid, block, shared memory,
 * workspace and the scalar kernel arguments are derived from the shapes.
 */
#ifndef RESTORE_FOURIER_BOTTLENECK_H
#define RESTORE_FOURIER_BOTTLENECK_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st* cudaStream_t;

enum { FB_MODE_SPECTRAL = 0, FB_MODE_GIR = 1 };
enum { FB_DTYPE_FLOAT32 = 0, FB_DTYPE_FLOAT16 = 1 };
/* FUSED: one block per plane, whole half-spectrum in shared memory (power-of-two 8..128 sides).
 * GENERAL: any size, two direct-DFT kernels with a global-memory workspace. */
enum { FB_PATH_FUSED = 0, FB_PATH_GENERAL = 1 };
/* Negative codes are ours; positive ones are cudaError_t values. */
enum { FB_OK = 0, FB_ERR_INVALID_ARGUMENT = -1, FB_ERR_MISSING_POINTER = -2, FB_ERR_MISALIGNED = -3 };

#define FB_MAX_KERNELS 2
#define FB_FUSED_MIN_SIDE 8
#define FB_FUSED_MAX_SIDE 128

typedef struct {
    unsigned grid_x, grid_y, block, smem_bytes;
} FbKernelLaunch;

typedef struct {
    int path, num_kernels;
    FbKernelLaunch kernels[FB_MAX_KERNELS];
    size_t workspace_bytes;
    /* scalar arguments, derived from the shapes */
    int planes, channels, height, width;
    int grid_h, grid_w;    /* control-grid size of the spectral response (weight is C x grid_h x grid_w x 2) */
    int half_width;        /* width / 2 + 1 rfft bins */
    int log2_height, log2_half, log2_lmax; /* fused path: log2 of height, width/2, max(height, width) */
    int mode, dtype;
    float scale;           /* 1 / (height * width) */
} FbLaunchPlan;

/* Fills *plan for x of shape (n, c, h, w); returns FB_OK or FB_ERR_INVALID_ARGUMENT. */
int fourier_bottleneck_plan(int n, int c, int h, int w, int grid_h, int grid_w, int mode, int dtype,
                            FbLaunchPlan* plan);

/* Enqueues the plan's kernels on stream. x, y: device (n, c, h, w) of the plan's dtype; weight:
 * device float32 (c, grid_h, grid_w, 2), may be NULL in GIR mode; workspace: device memory of
 * plan->workspace_bytes (NULL when 0). The fused path moves 16 bytes at a time: x and y must be
 * 16-byte aligned (cudaMalloc'd buffers are). Returns FB_OK, a negative FB_ERR_* or a cudaError_t. */
int fourier_bottleneck_launch(const FbLaunchPlan* plan, const void* x, const float* weight, void* y,
                              void* workspace, cudaStream_t stream);

/* Runs the very same per-block phase code on the host, thread by thread (threads in reverse order
 * when reverse_threads != 0, which exposes races inside a phase). Host pointers. For tests. */
int fourier_bottleneck_emulate(const FbLaunchPlan* plan, const void* x, const float* weight, void* y,
                               void* workspace, int reverse_threads);

const char* fourier_bottleneck_error_string(int code);

#ifdef __cplusplus
}
#endif

#endif
