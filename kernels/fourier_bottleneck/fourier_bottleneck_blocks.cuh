/* Per-block bodies of the Fourier bottleneck kernels.
 *
 * Each body is a sequence of steps separated by block barriers. A step is a lambda run by every
 * thread of the block; `Exec` decides how: on the GPU each thread runs it once and then meets the
 * others at __syncthreads(); on the host (fourier_bottleneck_emulate) one thread runs it for every
 * thread id in turn. The CPU tests therefore execute this exact code, not a model of it.
 *
 * Fused path (power-of-two planes): the half spectrum lives in shared memory as H rows of
 * W/2+1 complex values. The row transform is a complex FFT of length M = W/2 over the packed
 * samples z[n] = x[2n] + i x[2n+1] (decimation in frequency, so its output is in bit-reversed
 * order) followed by the split into the W/2+1 real-FFT bins. Bins are left at bit-reversed column
 * positions (bin M in the extra column M), so no permutation pass is ever needed: the column FFT
 * is again decimation in frequency (rows end bit-reversed), the response is applied by looking up
 * each element's true frequency, and the inverse transforms are decimation in time, which take
 * bit-reversed input and give natural order.
 */
#ifndef RESTORE_FOURIER_BOTTLENECK_BLOCKS_CUH
#define RESTORE_FOURIER_BOTTLENECK_BLOCKS_CUH

#include <cuda_fp16.h>
#include <math.h>

#include "fourier_bottleneck.h"

#define FB_HD __host__ __device__ __forceinline__

/* ---- complex helpers (float2 = re, im) ---- */
FB_HD float2 cadd(float2 a, float2 b) { return make_float2(a.x + b.x, a.y + b.y); }
FB_HD float2 csub(float2 a, float2 b) { return make_float2(a.x - b.x, a.y - b.y); }
FB_HD float2 cmul(float2 a, float2 b) { return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }
FB_HD float2 cconj(float2 a) { return make_float2(a.x, -a.y); }
FB_HD float2 cscale(float2 a, float s) { return make_float2(a.x * s, a.y * s); }
FB_HD float2 times_i(float2 a) { return make_float2(-a.y, a.x); }

/* exp(i * pi * a), accurate for the rational arguments used here */
FB_HD float2 expi_pi(float a) {
    float s, c;
#ifdef __CUDA_ARCH__
    sincospif(a, &s, &c);
#else
    const double t = 3.14159265358979323846 * (double)a;
    s = (float)sin(t);
    c = (float)cos(t);
#endif
    return make_float2(c, s);
}

FB_HD unsigned bit_reverse(unsigned v, int bits) {
#ifdef __CUDA_ARCH__
    return __brev(v) >> (32 - bits);
#else
    unsigned r = 0;
    for (int i = 0; i < bits; ++i) r |= ((v >> i) & 1u) << (bits - 1 - i);
    return r;
#endif
}

/* ---- element access: fp32 arithmetic for fp16 and fp32 storage ---- */
FB_HD float2 load_pair(const float* p, size_t i) { return *reinterpret_cast<const float2*>(p + i); }
FB_HD float2 load_pair(const __half* p, size_t i) {
    return __half22float2(*reinterpret_cast<const __half2*>(p + i));
}
FB_HD void store_pair(float* p, size_t i, float2 v) { *reinterpret_cast<float2*>(p + i) = v; }
FB_HD void store_pair(__half* p, size_t i, float2 v) {
    *reinterpret_cast<__half2*>(p + i) = __floats2half2_rn(v.x, v.y);
}
FB_HD float load_one(const float* p, size_t i) { return p[i]; }
FB_HD float load_one(const __half* p, size_t i) { return __half2float(p[i]); }
FB_HD void store_one(float* p, size_t i, float v) { p[i] = v; }
FB_HD void store_one(__half* p, size_t i, float v) { p[i] = __float2half_rn(v); }

/* ---- the spectral response, sampled exactly as reference.sample_response ---- */

/* Linear-interpolation cell of one grid axis: coordinate in [0, 1] -> lower index and fraction. */
FB_HD void interp_cell(float coord, int k, int* lo, float* frac) {
    const float pos = coord * (float)(k - 1);
    int l = (int)floorf(pos);
    l = l < 0 ? 0 : (l > k - 2 ? k - 2 : l);
    *lo = l;
    *frac = pos - (float)l;
}

/* Response of channel c at row frequency index f (fft order) and column bin k (0..W/2). */
FB_HD float2 sample_response(const float* weight, const FbLaunchPlan& p, int c, int f, int k) {
    const int h = p.height;
    /* numpy.fft.fftfreq(h)[f] + 0.5 */
    const float fy = (f < (h + 1) / 2 ? (float)f : (float)(f - h)) / (float)h + 0.5f;
    const float fx = (float)k / (float)p.width * 2.0f;
    int ly, lx;
    float ty, tx;
    interp_cell(fy, p.grid_h, &ly, &ty);
    interp_cell(fx, p.grid_w, &lx, &tx);
    const float* w = weight + (size_t)c * p.grid_h * p.grid_w * 2;
    const float2 w00 = *reinterpret_cast<const float2*>(w + ((ly + 0) * p.grid_w + lx + 0) * 2);
    const float2 w01 = *reinterpret_cast<const float2*>(w + ((ly + 0) * p.grid_w + lx + 1) * 2);
    const float2 w10 = *reinterpret_cast<const float2*>(w + ((ly + 1) * p.grid_w + lx + 0) * 2);
    const float2 w11 = *reinterpret_cast<const float2*>(w + ((ly + 1) * p.grid_w + lx + 1) * 2);
    const float a00 = (1.f - ty) * (1.f - tx), a01 = (1.f - ty) * tx, a10 = ty * (1.f - tx), a11 = ty * tx;
    return make_float2(a00 * w00.x + a01 * w01.x + a10 * w10.x + a11 * w11.x,
                       a00 * w00.y + a01 * w01.y + a10 * w10.y + a11 * w11.y);
}

/* ---- shared-memory radix-2 FFT stages over many sequences at once ----
 * Sequence s, element e lives at base[s * seq_stride + e * elem_stride]. tw[j] = exp(-2 pi i j / lmax). */
struct FftBatch {
    float2* base;
    int count, seq_stride, elem_stride, log2_len;
};

/* One decimation-in-frequency stage (forward, natural in -> bit-reversed out after all stages). */
FB_HD void dif_stage(int tid, int nthreads, const FftBatch& b, int log2_span, const float2* tw, int log2_lmax) {
    const int half_len = 1 << (b.log2_len - 1), span = 1 << log2_span;
    const int tw_shift = log2_lmax - (log2_span + 1);
    for (int t = tid; t < b.count * half_len; t += nthreads) {
        /* consecutive threads take consecutive sequences: with a unit seq_stride (columns) they hit
         * consecutive banks */
        const int s = t % b.count, bf = t / b.count;
        const int j = bf & (span - 1), i0 = ((bf >> log2_span) << (log2_span + 1)) + j;
        float2* q = b.base + (size_t)s * b.seq_stride;
        const float2 a = q[i0 * b.elem_stride], c = q[(i0 + span) * b.elem_stride];
        q[i0 * b.elem_stride] = cadd(a, c);
        q[(i0 + span) * b.elem_stride] = cmul(csub(a, c), tw[j << tw_shift]);
    }
}

/* One decimation-in-time stage of the inverse (conjugate twiddles; bit-reversed in -> natural out). */
FB_HD void dit_inverse_stage(int tid, int nthreads, const FftBatch& b, int log2_span, const float2* tw, int log2_lmax) {
    const int half_len = 1 << (b.log2_len - 1), span = 1 << log2_span;
    const int tw_shift = log2_lmax - (log2_span + 1);
    for (int t = tid; t < b.count * half_len; t += nthreads) {
        const int s = t % b.count, bf = t / b.count;
        const int j = bf & (span - 1), i0 = ((bf >> log2_span) << (log2_span + 1)) + j;
        float2* q = b.base + (size_t)s * b.seq_stride;
        const float2 a = q[i0 * b.elem_stride];
        const float2 c = cmul(q[(i0 + span) * b.elem_stride], cconj(tw[j << tw_shift]));
        q[i0 * b.elem_stride] = cadd(a, c);
        q[(i0 + span) * b.elem_stride] = csub(a, c);
    }
}

/* ---- fused path: one block = one (batch, channel) plane ---- */
template <typename T, typename Exec>
FB_HD void fused_plane(const Exec& ex, const FbLaunchPlan& p, int plane, const T* x, const float* weight,
                       T* y, float2* smem) {
    const int h = p.height, w = p.width, m = w / 2, hw = p.half_width, lg_m = p.log2_half;
    const int lmax = 1 << p.log2_lmax, lg_w = lg_m + 1;
    float2* spec = smem;                  /* h rows x (m + 1) bins */
    float2* tw = smem + (size_t)h * hw;   /* lmax / 2 twiddles */
    const T* xp = x + (size_t)plane * h * w;
    T* yp = y + (size_t)plane * h * w;
    const int channel = plane % p.channels;

    ex.step([&](int tid, int nt) {
        for (int j = tid; j < lmax / 2; j += nt) tw[j] = expi_pi(-2.0f * (float)j / (float)lmax);
        for (int i = tid; i < h * m; i += nt) {
            const int r = i >> lg_m, n = i & (m - 1);
            spec[r * hw + n] = load_pair(xp, (size_t)r * w + 2 * n);
        }
    });

    const FftBatch rows = {spec, h, hw, 1, lg_m};
    for (int s = lg_m - 1; s >= 0; --s)
        ex.step([&](int tid, int nt) { dif_stage(tid, nt, rows, s, tw, p.log2_lmax); });

    /* split the packed length-M spectrum Z into the real-FFT bins X[0..M] (bin k at column
     * bit_reverse(k), bin M at column M): X[k] = E + w^k O, X[M-k] = conj(E - w^k O) with
     * E = (Z[k] + conj Z[M-k]) / 2, O = -i (Z[k] - conj Z[M-k]) / 2, w = exp(-2 pi i / W) */
    ex.step([&](int tid, int nt) {
        const int per_row = m / 2 + 1;
        for (int i = tid; i < h * per_row; i += nt) {
            const int r = i / per_row, k = i % per_row;
            float2* row = spec + r * hw;
            if (k == 0) {
                const float2 z = row[0];
                row[0] = make_float2(z.x + z.y, 0.f);
                row[m] = make_float2(z.x - z.y, 0.f);
                continue;
            }
            const int pk = bit_reverse(k, lg_m), pm = bit_reverse(m - k, lg_m);
            const float2 zk = row[pk], zm = row[pm];
            const float2 e = cscale(cadd(zk, cconj(zm)), 0.5f);
            const float2 d = csub(zk, cconj(zm));
            const float2 o = make_float2(0.5f * d.y, -0.5f * d.x);
            const float2 wo = cmul(tw[k << (p.log2_lmax - lg_w)], o);
            row[pk] = cadd(e, wo);
            row[pm] = cconj(csub(e, wo));
        }
    });

    const FftBatch cols = {spec, hw, 1, hw, p.log2_height};
    for (int s = p.log2_height - 1; s >= 0; --s)
        ex.step([&](int tid, int nt) { dif_stage(tid, nt, cols, s, tw, p.log2_lmax); });

    if (p.mode == FB_MODE_SPECTRAL) {
        ex.step([&](int tid, int nt) {
            for (int i = tid; i < h * hw; i += nt) {
                const int row_pos = i / hw, col = i % hw;
                const int f = bit_reverse(row_pos, p.log2_height);
                const int k = col == m ? m : (int)bit_reverse(col, lg_m);
                spec[i] = cmul(spec[i], sample_response(weight, p, channel, f, k));
            }
        });
    }

    for (int s = 0; s < p.log2_height; ++s)
        ex.step([&](int tid, int nt) { dit_inverse_stage(tid, nt, cols, s, tw, p.log2_lmax); });

    /* merge the half spectrum back into the packed form 2 Z[k] = A + i B, 2 Z[M-k] = conj A + i conj B
     * with A = X[k] + conj X[M-k], B = conj(w^k) (X[k] - conj X[M-k]). The imaginary parts of
     * bins 0 and M are dropped, as numpy's irfft does. */
    ex.step([&](int tid, int nt) {
        const int per_row = m / 2 + 1;
        for (int i = tid; i < h * per_row; i += nt) {
            const int r = i / per_row, k = i % per_row;
            float2* row = spec + r * hw;
            if (k == 0) {
                const float a = row[0].x, c = row[m].x;
                row[0] = make_float2(a + c, a - c);
                continue;
            }
            const int pk = bit_reverse(k, lg_m), pm = bit_reverse(m - k, lg_m);
            const float2 xk = row[pk], xm = row[pm];
            const float2 a = cadd(xk, cconj(xm));
            const float2 b = cmul(cconj(tw[k << (p.log2_lmax - lg_w)]), csub(xk, cconj(xm)));
            row[pk] = cadd(a, times_i(b));
            row[pm] = cadd(cconj(a), times_i(cconj(b)));
        }
    });

    for (int s = 0; s < lg_m; ++s)
        ex.step([&](int tid, int nt) { dit_inverse_stage(tid, nt, rows, s, tw, p.log2_lmax); });

    ex.step([&](int tid, int nt) {
        for (int i = tid; i < h * m; i += nt) {
            const int r = i >> lg_m, n = i & (m - 1);
            float2 v = cscale(spec[r * hw + n], p.scale);
            if (p.mode == FB_MODE_GIR) v = make_float2(fabsf(v.x), fabsf(v.y));
            store_pair(yp, (size_t)r * w + 2 * n, v);
        }
    });
}

/* ---- general path: direct DFTs, any size ----
 * Kernel 1, block (plane, bin k): column k of the row DFT, then the column DFT of it, times the
 * response, into workspace[plane][f][k]. Kernel 2, block (plane, row r): inverse column DFT of
 * row r, then the real inverse row DFT. Twiddle angles are reduced modulo the length first, so
 * they stay exact for any size. */
template <typename T, typename Exec>
FB_HD void general_forward_column(const Exec& ex, const FbLaunchPlan& p, int plane, int k, const T* x,
                                  const float* weight, float2* workspace, float2* smem) {
    const int h = p.height, w = p.width;
    const T* xp = x + (size_t)plane * h * w;
    ex.step([&](int tid, int nt) {
        for (int r = tid; r < h; r += nt) {
            float2 acc = make_float2(0.f, 0.f);
            for (int n = 0; n < w; ++n) {
                const float v = load_one(xp, (size_t)r * w + n);
                const float2 e = expi_pi(-2.0f * (float)((k * n) % w) / (float)w);
                acc = make_float2(acc.x + v * e.x, acc.y + v * e.y);
            }
            smem[r] = acc;
        }
    });
    ex.step([&](int tid, int nt) {
        for (int f = tid; f < h; f += nt) {
            float2 acc = make_float2(0.f, 0.f);
            for (int r = 0; r < h; ++r)
                acc = cadd(acc, cmul(smem[r], expi_pi(-2.0f * (float)((f * r) % h) / (float)h)));
            if (p.mode == FB_MODE_SPECTRAL) acc = cmul(acc, sample_response(weight, p, plane % p.channels, f, k));
            workspace[((size_t)plane * h + f) * p.half_width + k] = acc;
        }
    });
}

template <typename T, typename Exec>
FB_HD void general_inverse_row(const Exec& ex, const FbLaunchPlan& p, int plane, int r, const float2* workspace,
                               T* y, float2* smem) {
    const int h = p.height, w = p.width, hw = p.half_width;
    ex.step([&](int tid, int nt) {
        for (int k = tid; k < hw; k += nt) {
            float2 acc = make_float2(0.f, 0.f);
            for (int f = 0; f < h; ++f)
                acc = cadd(acc, cmul(workspace[((size_t)plane * h + f) * hw + k],
                                     expi_pi(2.0f * (float)((f * r) % h) / (float)h)));
            smem[k] = acc;
        }
    });
    ex.step([&](int tid, int nt) {
        const bool has_nyquist = (w % 2) == 0;
        for (int n = tid; n < w; n += nt) {
            /* the imaginary parts of bin 0 and of the Nyquist bin do not contribute (numpy's irfft) */
            float v = smem[0].x;
            for (int k = 1; k < hw; ++k) {
                if (has_nyquist && k == hw - 1) {
                    v += (n & 1) ? -smem[k].x : smem[k].x;
                } else {
                    const float2 e = expi_pi(2.0f * (float)((k * n) % w) / (float)w);
                    v += 2.0f * (smem[k].x * e.x - smem[k].y * e.y);
                }
            }
            v *= p.scale;
            if (p.mode == FB_MODE_GIR) v = fabsf(v);
            store_one(y + (size_t)plane * h * w, (size_t)r * w + n, v);
        }
    });
}

#endif
