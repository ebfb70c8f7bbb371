/* Direct convolutions on padded channel planes (fk_conv_f32, fk_conv_wgrad_f32 in FlowKernels.h):
 * portable and AVX2+FMA variants and their dispatch. */
#include <math.h>
#include <string.h>

#include "FlowKernels.h"
#include "Internal.h"

/* ---- Portable ---------------------------------------------------------------------------- */

void fk_conv_f32_portable(const float *x, size_t xstride, size_t cin, const ptrdiff_t *off, size_t ntaps,
                          const float *w, const float *bias, size_t out, float *y, size_t ystride, size_t t0,
                          size_t n, const float *gate, size_t gstride, int relu) {
    for (size_t o = 0; o < out; o++) {
        float *yo = y + o * ystride;
        const float b = bias ? bias[o] : 0.0f;
        for (size_t t = t0; t < t0 + n; t++) yo[t] = b;
        for (size_t c = 0; c < cin; c++) {
            const float *xc = x + c * xstride;
            for (size_t j = 0; j < ntaps; j++) {
                const float wv = w[(c * ntaps + j) * out + o];
                const float *p = xc + off[j];
                for (size_t t = t0; t < t0 + n; t++) yo[t] = fmaf(wv, p[t], yo[t]);
            }
        }
        const float *g = gate ? gate + o * gstride : 0;
        for (size_t t = t0; t < t0 + n; t++) {
            float v = yo[t];
            if (relu) v = v < 0.0f ? 0.0f : v; /* NaN passes, like max_ps(0, v) */
            if (g) v = g[t] > 0.0f ? v : 0.0f;
            yo[t] = v;
        }
    }
}

void fk_conv_wgrad_f32_portable(const float *dy, size_t dystride, size_t out, const float *x, size_t xstride,
                                size_t cin, const ptrdiff_t *off, size_t ntaps, size_t t0, size_t n, float *dw) {
    const size_t kin = cin * ntaps;
    for (size_t o = 0; o < out; o++) {
        const float *d = dy + o * dystride;
        for (size_t c = 0; c < cin; c++) {
            for (size_t j = 0; j < ntaps; j++) {
                const float *p = x + c * xstride + off[j];
                /* Eight interleaved partial sums (the AVX2 variant's lanes), then a fixed tree. */
                float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                for (size_t t = t0; t < t0 + n; t++) s[(t - t0) & 7] = fmaf(d[t], p[t], s[(t - t0) & 7]);
                dw[o * kin + c * ntaps + j] += ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
            }
        }
    }
}

/* ---- AVX2 + FMA -------------------------------------------------------------------------- */

#if FK_HAVE_X86
#include <immintrin.h>

/* OB output channels × NV vectors of 8 positions starting at t: OB·NV accumulators (4 × 2 = 8
 * plus 2 input vectors and a broadcast weight: 11 of the 16 registers; at 4 × 3 = 12 + 3 + 1
 * the compiler spilled and shuffled accumulators every iteration). */
FK_AVX2 static inline __attribute__((always_inline)) void conv_block(
    const float *x, size_t xstride, size_t cin, const ptrdiff_t *off, size_t ntaps, const float *w, size_t out,
    const float *bias, float *y, size_t ystride, size_t t, const float *gate, size_t gstride, int relu, const int OB,
    const int NV) {
    __m256 acc[4][2];
    for (int m = 0; m < OB; m++) {
        const __m256 b = bias ? _mm256_broadcast_ss(bias + m) : _mm256_setzero_ps();
        for (int v = 0; v < NV; v++) acc[m][v] = b;
    }
    for (size_t c = 0; c < cin; c++) {
        const float *xc = x + c * xstride + t;
        const float *wc = w + c * ntaps * out;
        for (size_t j = 0; j < ntaps; j++) {
            const float *p = xc + off[j];
            __m256 xv[2];
            for (int v = 0; v < NV; v++) xv[v] = _mm256_loadu_ps(p + 8 * v);
            const float *wj = wc + j * out;
            for (int m = 0; m < OB; m++) {
                const __m256 wb = _mm256_broadcast_ss(wj + m);
                for (int v = 0; v < NV; v++) acc[m][v] = _mm256_fmadd_ps(wb, xv[v], acc[m][v]);
            }
        }
    }
    const __m256 zero = _mm256_setzero_ps();
    for (int m = 0; m < OB; m++) {
        for (int v = 0; v < NV; v++) {
            __m256 r = acc[m][v];
            if (relu) r = _mm256_max_ps(zero, r); /* NaN in r passes through */
            if (gate) {
                const __m256 g = _mm256_loadu_ps(gate + m * gstride + t + 8 * v);
                r = _mm256_and_ps(r, _mm256_cmp_ps(g, zero, _CMP_GT_OQ));
            }
            _mm256_storeu_ps(y + m * ystride + t + 8 * v, r);
        }
    }
}

/* Output channels in blocks of 4, then 2, then 1, for one group of NV vectors at t. */
#define FK_CONV_COLUMN(NV)                                                                                     \
    FK_AVX2 static void conv_column##NV(const float *x, size_t xstride, size_t cin, const ptrdiff_t *off,      \
                                        size_t ntaps, const float *w, const float *bias, size_t out, float *y, \
                                        size_t ystride, size_t t, const float *gate, size_t gstride, int relu) { \
        size_t o = 0;                                                                                          \
        for (; o + 4 <= out; o += 4)                                                                           \
            conv_block(x, xstride, cin, off, ntaps, w + o, out, bias ? bias + o : 0, y + o * ystride, ystride, \
                       t, gate ? gate + o * gstride : 0, gstride, relu, 4, NV);                                \
        for (; o + 2 <= out; o += 2)                                                                           \
            conv_block(x, xstride, cin, off, ntaps, w + o, out, bias ? bias + o : 0, y + o * ystride, ystride, \
                       t, gate ? gate + o * gstride : 0, gstride, relu, 2, NV);                                \
        for (; o < out; o++)                                                                                   \
            conv_block(x, xstride, cin, off, ntaps, w + o, out, bias ? bias + o : 0, y + o * ystride, ystride, \
                       t, gate ? gate + o * gstride : 0, gstride, relu, 1, NV);                                \
    }

FK_CONV_COLUMN(2)
FK_CONV_COLUMN(1)

FK_AVX2 void fk_conv_f32_avx2(const float *x, size_t xstride, size_t cin, const ptrdiff_t *off, size_t ntaps,
                              const float *w, const float *bias, size_t out, float *y, size_t ystride, size_t t0,
                              size_t n, const float *gate, size_t gstride, int relu) {
    const size_t end = t0 + n;
    size_t t = t0;
    for (; t + 16 <= end; t += 16)
        conv_column2(x, xstride, cin, off, ntaps, w, bias, out, y, ystride, t, gate, gstride, relu);
    for (; t < end; t += 8)
        conv_column1(x, xstride, cin, off, ntaps, w, bias, out, y, ystride, t, gate, gstride, relu);
}

/* Σ of the 8 lanes in the portable variant's order: ((0+4) + (2+6)) + ((1+5) + (3+7)). */
FK_AVX2 static inline float hsum8(__m256 v) {
    const __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    const __m128 s = _mm_add_ps(lo, hi);                    /* 0+4, 1+5, 2+6, 3+7 */
    const __m128 p = _mm_add_ps(s, _mm_movehl_ps(s, s));     /* (0+4)+(2+6), (1+5)+(3+7) */
    const __m128 q = _mm_add_ss(p, _mm_shuffle_ps(p, p, 1)); /* … + … */
    return _mm_cvtss_f32(q);
}

/* OB output channels × KB (channel, tap) pairs over positions [t, t + len): partial lane sums
 * accumulate into part (OB × KB vectors, row stride kin vectors). */
FK_AVX2 static inline __attribute__((always_inline)) void wgrad_block(const float *dy, size_t dystride,
                                                                       const float *const *xk, size_t t, size_t len,
                                                                       float *part, size_t kin, const int OB,
                                                                       const int KB) {
    __m256 acc[4][2];
    for (int m = 0; m < OB; m++)
        for (int k = 0; k < KB; k++) acc[m][k] = _mm256_loadu_ps(part + (m * kin + k) * 8);
    for (size_t i = t; i < t + len; i += 8) {
        __m256 xv[2];
        for (int k = 0; k < KB; k++) xv[k] = _mm256_loadu_ps(xk[k] + i);
        for (int m = 0; m < OB; m++) {
            const __m256 d = _mm256_loadu_ps(dy + m * dystride + i);
            for (int k = 0; k < KB; k++) acc[m][k] = _mm256_fmadd_ps(d, xv[k], acc[m][k]);
        }
    }
    for (int m = 0; m < OB; m++)
        for (int k = 0; k < KB; k++) _mm256_storeu_ps(part + (m * kin + k) * 8, acc[m][k]);
}

#define FK_WGRAD_ROWS(OB)                                                                                       \
    FK_AVX2 static void wgrad_rows##OB(const float *dy, size_t dystride, const float *x, size_t xstride,         \
                                       const ptrdiff_t *off, size_t ntaps, size_t kin, size_t t, size_t len,     \
                                       float *part) {                                                           \
        size_t k = 0;                                                                                           \
        for (; k < kin; ) {                                                                                     \
            const float *xk[2];                                                                                 \
            const size_t kb = kin - k >= 2 ? 2 : 1;                                                             \
            for (size_t i = 0; i < kb; i++) xk[i] = x + ((k + i) / ntaps) * xstride + off[(k + i) % ntaps];     \
            if (kb == 2) wgrad_block(dy, dystride, xk, t, len, part + k * 8, kin, OB, 2);                        \
            else wgrad_block(dy, dystride, xk, t, len, part + k * 8, kin, OB, 1);                                \
            k += kb;                                                                                            \
        }                                                                                                       \
    }

FK_WGRAD_ROWS(4)
FK_WGRAD_ROWS(2)
FK_WGRAD_ROWS(1)

/* Positions per tile: a tile of 4 output-gradient planes (4 KiB) and its input rows stay in L1
 * while every (channel, tap) pair passes over it. */
#define FK_WGRAD_TILE 256

FK_AVX2 void fk_conv_wgrad_f32_avx2(const float *dy, size_t dystride, size_t out, const float *x, size_t xstride,
                                    size_t cin, const ptrdiff_t *off, size_t ntaps, size_t t0, size_t n, float *dw,
                                    float *scratch) {
    const size_t kin = cin * ntaps;
    memset(scratch, 0, out * kin * 8 * sizeof(float));
    for (size_t t = t0; t < t0 + n; t += FK_WGRAD_TILE) {
        const size_t len = t0 + n - t < FK_WGRAD_TILE ? t0 + n - t : FK_WGRAD_TILE;
        size_t o = 0;
        for (; o + 4 <= out; o += 4)
            wgrad_rows4(dy + o * dystride, dystride, x, xstride, off, ntaps, kin, t, len, scratch + o * kin * 8);
        for (; o + 2 <= out; o += 2)
            wgrad_rows2(dy + o * dystride, dystride, x, xstride, off, ntaps, kin, t, len, scratch + o * kin * 8);
        for (; o < out; o++)
            wgrad_rows1(dy + o * dystride, dystride, x, xstride, off, ntaps, kin, t, len, scratch + o * kin * 8);
    }
    for (size_t i = 0; i < out * kin; i++) dw[i] += hsum8(_mm256_loadu_ps(scratch + i * 8));
}
#endif

/* ---- Dispatch ---------------------------------------------------------------------------- */

void fk_conv_f32(const float *x, size_t xstride, size_t cin, const ptrdiff_t *off, size_t ntaps, const float *w,
                 const float *bias, size_t out, float *y, size_t ystride, size_t t0, size_t n, const float *gate,
                 size_t gstride, int relu) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_conv_f32_avx2(x, xstride, cin, off, ntaps, w, bias, out, y, ystride, t0, n, gate, gstride, relu);
        return;
    }
#endif
    fk_conv_f32_portable(x, xstride, cin, off, ntaps, w, bias, out, y, ystride, t0, n, gate, gstride, relu);
}

void fk_conv_wgrad_f32(const float *dy, size_t dystride, size_t out, const float *x, size_t xstride, size_t cin,
                       const ptrdiff_t *off, size_t ntaps, size_t t0, size_t n, float *dw, float *scratch) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_conv_wgrad_f32_avx2(dy, dystride, out, x, xstride, cin, off, ntaps, t0, n, dw, scratch);
        return;
    }
#endif
    (void)scratch;
    fk_conv_wgrad_f32_portable(dy, dystride, out, x, xstride, cin, off, ntaps, t0, n, dw);
}

/* ---- im2col and col2im (the BLAS convolution path) ----------------------------------------- */

/* The rows [i0, i1) of an axis of `length` whose source i + shift lies inside 0 ..< length. */
static inline void inside(ptrdiff_t shift, ptrdiff_t length, ptrdiff_t *i0, ptrdiff_t *i1) {
    const ptrdiff_t lower = shift < 0 ? -shift : 0, upper = shift > 0 ? length - shift : length;
    *i0 = lower < length ? lower : length;
    *i1 = upper > *i0 ? upper : *i0;
}

/* A shift by (di, dj) moves a row-major plane by di·w + dj elements, so each unfolded row is one
 * contiguous copy (entries t in [t0, t1) read t + offset), after which the |dj| columns per image
 * row that wrapped around from the neighbouring row are zeroed. */
void fk_unfold_f32(const float *x, size_t channels, size_t h, size_t w, size_t k, float *dst, size_t ld) {
    const size_t kk = k * k;
    const ptrdiff_t pad = (ptrdiff_t)(k / 2), H = (ptrdiff_t)h, W = (ptrdiff_t)w, hw = H * W;
    for (size_t c = 0; c < channels; c++) {
        const float *plane = x + (ptrdiff_t)c * hw;
        for (size_t p = 0; p < k; p++) {
            const ptrdiff_t di = (ptrdiff_t)p - pad;
            ptrdiff_t i0, i1;
            inside(di, H, &i0, &i1);
            for (size_t q = 0; q < k; q++) {
                const ptrdiff_t dj = (ptrdiff_t)q - pad, offset = di * W + dj;
                ptrdiff_t j0, j1;
                inside(dj, W, &j0, &j1);
                float *restrict row = dst + (c * kk + p * k + q) * ld;
                ptrdiff_t t0 = i0 * W > -offset ? i0 * W : -offset, t1 = i1 * W < hw - offset ? i1 * W : hw - offset;
                if (t0 > hw) t0 = hw;
                if (t1 < t0) t1 = t0;
                memset(row, 0, (size_t)t0 * sizeof(float));
                memcpy(row + t0, plane + t0 + offset, (size_t)(t1 - t0) * sizeof(float));
                memset(row + t1, 0, (size_t)(hw - t1) * sizeof(float));
                if (j0 > 0 || j1 < W)
                    for (ptrdiff_t i = i0; i < i1; i++) {
                        float *restrict d = row + i * W;
                        for (ptrdiff_t j = 0; j < j0; j++) d[j] = 0.0f;
                        for (ptrdiff_t j = j1; j < W; j++) d[j] = 0.0f;
                    }
            }
        }
    }
}

/* Each tap is one contiguous add of its row (entries whose target would wrap around to the
 * neighbouring image row zeroed first, which is why src is clobbered). */
void fk_fold_f32(float *src, size_t ld, size_t channels, size_t h, size_t w, size_t k, float *dst) {
    const size_t kk = k * k, centre = (k / 2) * k + k / 2;
    const ptrdiff_t pad = (ptrdiff_t)(k / 2), H = (ptrdiff_t)h, W = (ptrdiff_t)w, hw = H * W;
    for (size_t c = 0; c < channels; c++) {
        float *restrict plane = dst + (ptrdiff_t)c * hw;
        memcpy(plane, src + (c * kk + centre) * ld, (size_t)hw * sizeof(float));
        for (size_t p = 0; p < k; p++) {
            const ptrdiff_t di = (ptrdiff_t)p - pad;
            ptrdiff_t i0, i1;
            inside(di, H, &i0, &i1);
            for (size_t q = 0; q < k; q++) {
                if (p * k + q == centre) continue;
                const ptrdiff_t dj = (ptrdiff_t)q - pad, offset = di * W + dj;
                ptrdiff_t j0, j1;
                inside(dj, W, &j0, &j1);
                float *restrict row = src + (c * kk + p * k + q) * ld;
                if (j0 > 0 || j1 < W)
                    for (ptrdiff_t i = i0; i < i1; i++) {
                        float *restrict s = row + i * W;
                        for (ptrdiff_t j = 0; j < j0; j++) s[j] = 0.0f;
                        for (ptrdiff_t j = j1; j < W; j++) s[j] = 0.0f;
                    }
                const ptrdiff_t t0 = i0 * W > -offset ? i0 * W : -offset;
                const ptrdiff_t t1 = i1 * W < hw - offset ? i1 * W : hw - offset;
                for (ptrdiff_t t = t0; t < t1; t++) plane[t + offset] += row[t];
            }
        }
    }
}
