/* The synthetic compute of benchmarks/gpu_pipeline.py: a set number of dependent FMAs per
 * element, so the compute/copy ratio of a pipeline run is known.
 * PTX: nvcc -ptx -arch=compute_80 pipeline_busy_kernel.cu -o pipeline_busy_kernel.ptx */
extern "C" __global__ void busy(const float *x, float *y, unsigned int n, unsigned int iterations)
{
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    for (unsigned int k = 0; k < iterations; ++k)   // dependent FMAs: time grows with iterations
        v = v * 0.999f + 0.001f;
    y[i] = v;
}
