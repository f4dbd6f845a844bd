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
#include <string.h>

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

/* Interpolation cell of column bin k (0..W/2): fx = k / W * 2. */
struct ColumnCell {
    int lx;
    float tx;
};

FB_HD ColumnCell column_cell(const FbLaunchPlan& p, int k) {
    ColumnCell cell;
    interp_cell((float)k / (float)p.width * 2.0f, p.grid_w, &cell.lx, &cell.tx);
    return cell;
}

/* Response of channel c at row frequency index f (fft order) in the column of `cell`. */
FB_HD float2 sample_response(const float* weight, const FbLaunchPlan& p, int c, int f, ColumnCell cell) {
    const int h = p.height;
    /* numpy.fft.fftfreq(h)[f] + 0.5 */
    const float fy = (f < (h + 1) / 2 ? (float)f : (float)(f - h)) / (float)h + 0.5f;
    int ly;
    float ty;
    interp_cell(fy, p.grid_h, &ly, &ty);
    const float2* row0 = reinterpret_cast<const float2*>(weight + (((size_t)c * p.grid_h + ly) * p.grid_w + cell.lx) * 2);
    const float2* row1 = row0 + p.grid_w;
    const float2 a = row0[0], b = row0[1], c0 = row1[0], d = row1[1];
    const float tx = cell.tx;
    const float2 top = make_float2(a.x + tx * (b.x - a.x), a.y + tx * (b.y - a.y));
    const float2 bottom = make_float2(c0.x + tx * (d.x - c0.x), c0.y + tx * (d.y - c0.y));
    return make_float2(top.x + ty * (bottom.x - top.x), top.y + ty * (bottom.y - top.y));
}

/* ---- shared-memory FFT passes over many sequences at once ----
 * Sequence s, element e lives at base[s * seq_stride + e * elem_stride]. tw[j] = exp(-2 pi i j / lmax).
 *
 * A pass does K consecutive radix-2 stages in registers: the stages with spans 2^lo .. 2^(lo+K-1)
 * only exchange elements within the sets {block + j + m * 2^lo, m < 2^K} (block a multiple of
 * 2^(lo+K), j < 2^lo), so one thread loads such a set, runs the K stages on it and stores it back.
 * The arithmetic is exactly that of K separate radix-2 stages (same twiddles, same order), with
 * one shared-memory round trip and one barrier instead of K. */
struct FftBatch {
    float2* base;
    int count, seq_stride, elem_stride, log2_len;
};

struct PassElements {
    float2* seq;  /* the sequence */
    int first, step, j;  /* element m of the set is first + m * step; j = first mod step */
};

template <int K>
FB_HD PassElements pass_elements(const FftBatch& b, int t, int log2_lo) {
    /* consecutive threads take consecutive sequences: with a unit seq_stride (columns) they hit
     * consecutive banks, with an odd one (rows of m + 1 bins) distinct banks */
    const int s = t % b.count, item = t / b.count;
    const int j = item & ((1 << log2_lo) - 1), block = item >> log2_lo;
    return PassElements{b.base + (size_t)s * b.seq_stride, (block << (log2_lo + K)) + j, 1 << log2_lo, j};
}

/* stages with spans 2^(lo+K-1) down to 2^lo of the forward decimation-in-frequency FFT */
template <int K>
FB_HD void dif_stages(float2 (&v)[1 << K], int j, int log2_lo, const float2* tw, int log2_lmax) {
#pragma unroll
    for (int q = K - 1; q >= 0; --q) {
        const int tw_shift = log2_lmax - (log2_lo + q + 1);
#pragma unroll
        for (int m = 0; m < (1 << K); ++m) {
            if (m & (1 << q)) continue;
            const int jj = j + ((m & ((1 << q) - 1)) << log2_lo); /* butterfly index within its span */
            const float2 a = v[m], c = v[m + (1 << q)];
            v[m] = cadd(a, c);
            v[m + (1 << q)] = cmul(csub(a, c), tw[jj << tw_shift]);
        }
    }
}

/* stages with spans 2^lo up to 2^(lo+K-1) of the inverse decimation-in-time FFT (conjugate twiddles) */
template <int K>
FB_HD void dit_inverse_stages(float2 (&v)[1 << K], int j, int log2_lo, const float2* tw, int log2_lmax) {
#pragma unroll
    for (int q = 0; q < K; ++q) {
        const int tw_shift = log2_lmax - (log2_lo + q + 1);
#pragma unroll
        for (int m = 0; m < (1 << K); ++m) {
            if (m & (1 << q)) continue;
            const int jj = j + ((m & ((1 << q) - 1)) << log2_lo);
            const float2 a = v[m], c = cmul(v[m + (1 << q)], cconj(tw[jj << tw_shift]));
            v[m] = cadd(a, c);
            v[m + (1 << q)] = csub(a, c);
        }
    }
}

template <int K>
FB_HD void load_set(float2 (&v)[1 << K], const PassElements& e, int elem_stride) {
#pragma unroll
    for (int m = 0; m < (1 << K); ++m) v[m] = e.seq[(e.first + m * e.step) * elem_stride];
}

template <int K>
FB_HD void store_set(const float2 (&v)[1 << K], const PassElements& e, int elem_stride) {
#pragma unroll
    for (int m = 0; m < (1 << K); ++m) e.seq[(e.first + m * e.step) * elem_stride] = v[m];
}

template <int K>
FB_HD void dif_pass(int tid, int nthreads, const FftBatch& b, int log2_lo, const float2* tw, int log2_lmax) {
    for (int t = tid; t < b.count << (b.log2_len - K); t += nthreads) {
        const PassElements e = pass_elements<K>(b, t, log2_lo);
        float2 v[1 << K];
        load_set<K>(v, e, b.elem_stride);
        dif_stages<K>(v, e.j, log2_lo, tw, log2_lmax);
        store_set<K>(v, e, b.elem_stride);
    }
}

template <int K>
FB_HD void dit_inverse_pass(int tid, int nthreads, const FftBatch& b, int log2_lo, const float2* tw, int log2_lmax) {
    for (int t = tid; t < b.count << (b.log2_len - K); t += nthreads) {
        const PassElements e = pass_elements<K>(b, t, log2_lo);
        float2 v[1 << K];
        load_set<K>(v, e, b.elem_stride);
        dit_inverse_stages<K>(v, e.j, log2_lo, tw, log2_lmax);
        store_set<K>(v, e, b.elem_stride);
    }
}

/* Passes of at most 3 stages (radix 8): the lowest pass takes stages 0 .. bottom-1, the others 3
 * each upwards. */
FB_HD int bottom_pass_stages(int log2_len) { return log2_len < 3 ? log2_len : 3; }

template <typename Exec>
FB_HD void forward_fft(const Exec& ex, const FftBatch& b, const float2* tw, int log2_lmax, bool skip_bottom) {
    const int bottom = bottom_pass_stages(b.log2_len);
    for (int top = b.log2_len; top > bottom; top -= 3) {
        const int k = top - bottom >= 3 ? 3 : top - bottom, lo = top - k;
        ex.step([&](int tid, int nt) {
            if (k == 3) dif_pass<3>(tid, nt, b, lo, tw, log2_lmax);
            else if (k == 2) dif_pass<2>(tid, nt, b, lo, tw, log2_lmax);
            else dif_pass<1>(tid, nt, b, lo, tw, log2_lmax);
        });
    }
    if (skip_bottom) return;
    ex.step([&](int tid, int nt) {
        if (bottom == 3) dif_pass<3>(tid, nt, b, 0, tw, log2_lmax);
        else if (bottom == 2) dif_pass<2>(tid, nt, b, 0, tw, log2_lmax);
        else dif_pass<1>(tid, nt, b, 0, tw, log2_lmax);
    });
}

template <typename Exec>
FB_HD void inverse_fft(const Exec& ex, const FftBatch& b, const float2* tw, int log2_lmax, bool skip_bottom) {
    const int bottom = bottom_pass_stages(b.log2_len);
    if (!skip_bottom) {
        ex.step([&](int tid, int nt) {
            if (bottom == 3) dit_inverse_pass<3>(tid, nt, b, 0, tw, log2_lmax);
            else if (bottom == 2) dit_inverse_pass<2>(tid, nt, b, 0, tw, log2_lmax);
            else dit_inverse_pass<1>(tid, nt, b, 0, tw, log2_lmax);
        });
    }
    for (int lo = bottom; lo < b.log2_len; lo += 3) {
        const int k = b.log2_len - lo >= 3 ? 3 : b.log2_len - lo;
        ex.step([&](int tid, int nt) {
            if (k == 3) dit_inverse_pass<3>(tid, nt, b, lo, tw, log2_lmax);
            else if (k == 2) dit_inverse_pass<2>(tid, nt, b, lo, tw, log2_lmax);
            else dit_inverse_pass<1>(tid, nt, b, lo, tw, log2_lmax);
        });
    }
}

/* The bottom column pass of the forward FFT, the response, and the bottom pass of the inverse,
 * on the same register set: they touch the same elements (rows block*2^K .. block*2^K+2^K-1 of a
 * column), so the spectrum is multiplied while it sits in registers. Row position p holds
 * frequency bit_reverse(p); column position c holds bin bit_reverse(c) (bin m at column m). */
template <int K>
FB_HD void column_filter_pass(int tid, int nthreads, const FftBatch& cols, const FbLaunchPlan& p, int channel,
                              const float* weight, const float2* tw) {
    const int m = p.width / 2;
    for (int t = tid; t < cols.count << (cols.log2_len - K); t += nthreads) {
        const PassElements e = pass_elements<K>(cols, t, 0);
        float2 v[1 << K];
        load_set<K>(v, e, cols.elem_stride);
        dif_stages<K>(v, 0, 0, tw, p.log2_lmax);
        if (p.mode == FB_MODE_SPECTRAL) {
            const int col = t % cols.count;
            const ColumnCell cell = column_cell(p, col == m ? m : (int)bit_reverse(col, p.log2_half));
#pragma unroll
            for (int i = 0; i < (1 << K); ++i) {
                const int f = bit_reverse(e.first + i, p.log2_height);
                v[i] = cmul(v[i], sample_response(weight, p, channel, f, cell));
            }
        }
        dit_inverse_stages<K>(v, 0, 0, tw, p.log2_lmax);
        store_set<K>(v, e, cols.elem_stride);
    }
}

/* ---- global memory: 16-byte accesses of 2 (fp32) or 4 (fp16) packed complex pairs ---- */
template <typename T>
struct Vec16 {
    static constexpr int pairs = 16 / (2 * (int)sizeof(T));
};

FB_HD void load_pairs16(const float* p, float2 (&out)[2]) {
    const float4 raw = *reinterpret_cast<const float4*>(p);
    out[0] = make_float2(raw.x, raw.y);
    out[1] = make_float2(raw.z, raw.w);
}
FB_HD void load_pairs16(const __half* p, float2 (&out)[4]) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    __half2 h[4];
    memcpy(h, &raw, sizeof(raw));
    for (int i = 0; i < 4; ++i) out[i] = __half22float2(h[i]);
}
FB_HD void store_pairs16(float* p, const float2 (&v)[2]) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0].x, v[0].y, v[1].x, v[1].y);
}
FB_HD void store_pairs16(__half* p, const float2 (&v)[4]) {
    __half2 h[4];
    for (int i = 0; i < 4; ++i) h[i] = __floats2half2_rn(v[i].x, v[i].y);
    uint4 raw;
    memcpy(&raw, h, sizeof(raw));
    *reinterpret_cast<uint4*>(p) = raw;
}

/* ---- fused path: one block = one (batch, channel) plane ---- */
template <typename T, typename Exec>
FB_HD void fused_plane(const Exec& ex, const FbLaunchPlan& p, int plane, const T* x, const float* weight,
                       T* y, float2* smem) {
    const int h = p.height, w = p.width, m = w / 2, hw = p.half_width, lg_m = p.log2_half;
    const int lmax = 1 << p.log2_lmax, lg_w = lg_m + 1;
    constexpr int P = Vec16<T>::pairs;
    float2* spec = smem;                  /* h rows x (m + 1) bins */
    float2* tw = smem + (size_t)h * hw;   /* lmax / 2 twiddles */
    const T* xp = x + (size_t)plane * h * w;
    T* yp = y + (size_t)plane * h * w;
    const int channel = plane % p.channels;

    /* packed rows: z[n] = x[2n] + i x[2n+1] */
    ex.step([&](int tid, int nt) {
        for (int j = tid; j < lmax / 2; j += nt) tw[j] = expi_pi(-2.0f * (float)j / (float)lmax);
        for (int i = tid; i < h * m / P; i += nt) {
            const int r = (i * P) >> lg_m, n = (i * P) & (m - 1);
            float2 v[P];
            load_pairs16(xp + (size_t)r * w + 2 * n, v);
            for (int q = 0; q < P; ++q) spec[r * hw + n + q] = v[q];
        }
    });

    const FftBatch rows = {spec, h, hw, 1, lg_m};
    forward_fft(ex, rows, tw, p.log2_lmax, false);

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

    /* columns: forward FFT, response and inverse FFT, the bottom passes fused in registers */
    const FftBatch cols = {spec, hw, 1, hw, p.log2_height};
    forward_fft(ex, cols, tw, p.log2_lmax, true);
    ex.step([&](int tid, int nt) {
        const int bottom = bottom_pass_stages(p.log2_height);
        if (bottom == 3) column_filter_pass<3>(tid, nt, cols, p, channel, weight, tw);
        else if (bottom == 2) column_filter_pass<2>(tid, nt, cols, p, channel, weight, tw);
        else column_filter_pass<1>(tid, nt, cols, p, channel, weight, tw);
    });
    inverse_fft(ex, cols, tw, p.log2_lmax, true);

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

    inverse_fft(ex, rows, tw, p.log2_lmax, false);

    ex.step([&](int tid, int nt) {
        for (int i = tid; i < h * m / P; i += nt) {
            const int r = (i * P) >> lg_m, n = (i * P) & (m - 1);
            float2 v[P];
            for (int q = 0; q < P; ++q) {
                v[q] = cscale(spec[r * hw + n + q], p.scale);
                if (p.mode == FB_MODE_GIR) v[q] = make_float2(fabsf(v[q].x), fabsf(v[q].y));
            }
            store_pairs16(yp + (size_t)r * w + 2 * n, v);
        }
    });
}

/* ---- general path: direct DFTs, any size ----
 * Kernel 1, block (plane, bin k): column k of the row DFT, then the column DFT of it, times the
 * response, into workspace[plane][f][k]. Kernel 2, block (plane, row r): inverse column DFT of
 * row r, then the real inverse row DFT. Twiddle angles are reduced modulo the length first, so
 * they stay exact for any size; the reduced index k n mod w is stepped along the loop
 * (``step_mod``), since the product k n overflows int once a side passes 46,340 (the plan allows
 * 65,535). */
FB_HD int step_mod(int phase, int step, int n) {
    /* (phase + step) mod n for 0 <= phase, step < n: no product, no division, no overflow */
    phase += step;
    return phase >= n ? phase - n : phase;
}

template <typename T, typename Exec>
FB_HD void general_forward_column(const Exec& ex, const FbLaunchPlan& p, int plane, int k, const T* x,
                                  const float* weight, float2* workspace, float2* smem) {
    const int h = p.height, w = p.width;
    const T* xp = x + (size_t)plane * h * w;
    ex.step([&](int tid, int nt) {
        for (int r = tid; r < h; r += nt) {
            float2 acc = make_float2(0.f, 0.f);
            for (int n = 0, phase = 0; n < w; ++n, phase = step_mod(phase, k, w)) {  /* phase = k n mod w */
                const float v = load_one(xp, (size_t)r * w + n);
                const float2 e = expi_pi(-2.0f * (float)phase / (float)w);
                acc = make_float2(acc.x + v * e.x, acc.y + v * e.y);
            }
            smem[r] = acc;
        }
    });
    ex.step([&](int tid, int nt) {
        for (int f = tid; f < h; f += nt) {
            float2 acc = make_float2(0.f, 0.f);
            for (int r = 0, phase = 0; r < h; ++r, phase = step_mod(phase, f, h))  /* phase = f r mod h */
                acc = cadd(acc, cmul(smem[r], expi_pi(-2.0f * (float)phase / (float)h)));
            if (p.mode == FB_MODE_SPECTRAL)
                acc = cmul(acc, sample_response(weight, p, plane % p.channels, f, column_cell(p, k)));
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
            for (int f = 0, phase = 0; f < h; ++f, phase = step_mod(phase, r, h))  /* phase = f r mod h */
                acc = cadd(acc, cmul(workspace[((size_t)plane * h + f) * hw + k],
                                     expi_pi(2.0f * (float)phase / (float)h)));
            smem[k] = acc;
        }
    });
    ex.step([&](int tid, int nt) {
        const bool has_nyquist = (w % 2) == 0;
        for (int n = tid; n < w; n += nt) {
            /* the imaginary parts of bin 0 and of the Nyquist bin do not contribute (numpy's irfft) */
            float v = smem[0].x;
            for (int k = 1, phase = n; k < hw; ++k, phase = step_mod(phase, n, w)) {  /* phase = k n mod w */
                if (has_nyquist && k == hw - 1) {
                    v += (n & 1) ? -smem[k].x : smem[k].x;
                } else {
                    const float2 e = expi_pi(2.0f * (float)phase / (float)w);
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
