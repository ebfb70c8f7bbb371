/* Direct convolutions on channel planes (fk_conv_f32, fk_conv_wgrad_f32) and the im2col / col2im
 * of the BLAS convolution path (fk_unfold_f32, fk_fold_f32; FlowKernels.h): portable and AVX2+FMA
 * variants and their dispatch. */
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
void fk_unfold_f32_portable(const float *x, size_t ldx, size_t samples, size_t channels, size_t h, size_t w,
                            size_t k, float *dst, size_t ld) {
    const size_t kk = k * k;
    const ptrdiff_t pad = (ptrdiff_t)(k / 2), H = (ptrdiff_t)h, W = (ptrdiff_t)w, hw = H * W;
    for (size_t sc = 0; sc < samples * channels; sc++) {
        const size_t sample = sc / channels, c = sc % channels;
        const float *plane = x + sample * ldx + (ptrdiff_t)c * hw;
        for (size_t p = 0; p < k; p++) {
            const ptrdiff_t di = (ptrdiff_t)p - pad;
            ptrdiff_t i0, i1;
            inside(di, H, &i0, &i1);
            for (size_t q = 0; q < k; q++) {
                const ptrdiff_t dj = (ptrdiff_t)q - pad, offset = di * W + dj;
                ptrdiff_t j0, j1;
                inside(dj, W, &j0, &j1);
                float *restrict row = dst + (c * kk + p * k + q) * ld + sample * (size_t)hw;
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

/* Gather form: every output position sums its taps in the documented order, a tap whose source
 * leaves the plane adding +0 (exactly what the AVX2 variant's masked-off lanes add). */
void fk_fold_f32_portable(const float *src, size_t ld, size_t samples, size_t channels, size_t h, size_t w,
                          size_t k, float *dst, size_t lddst) {
    const size_t kk = k * k, centre = (k / 2) * k + k / 2;
    const ptrdiff_t pad = (ptrdiff_t)(k / 2), H = (ptrdiff_t)h, W = (ptrdiff_t)w;
    for (size_t sc = 0; sc < samples * channels; sc++) {
        const size_t sample = sc / channels, c = sc % channels;
        const float *rows = src + c * kk * ld + sample * (size_t)(H * W);
        float *plane = dst + sample * lddst + (ptrdiff_t)c * H * W;
        for (ptrdiff_t i = 0; i < H; i++)
            for (ptrdiff_t j = 0; j < W; j++) {
                float acc = rows[centre * ld + (size_t)(i * W + j)];
                for (size_t tap = 0; tap < kk; tap++) {
                    if (tap == centre) continue;
                    /* Tap (p, q) moves source (i − di, j − dj) onto (i, j). */
                    const ptrdiff_t si = i - ((ptrdiff_t)(tap / k) - pad), sj = j - ((ptrdiff_t)(tap % k) - pad);
                    const int valid = si >= 0 && si < H && sj >= 0 && sj < W;
                    acc += valid ? rows[tap * ld + (size_t)(si * W + sj)] : 0.0f;
                }
                plane[i * W + j] = acc;
            }
    }
}

#if FK_HAVE_X86
/* Where each tap's vector comes from, for the eight positions t … t + 7 of an h×w plane (h·w ≥ 8).
 * Position t + l reads entry t + l + shift of its source row, shift = sign·((p − k/2)·w + q − k/2)
 * for tap p·k + q. The vector is one plain load of the row at start[j] (the window clamped into
 * 0 ..< h·w, so it never reads outside the row), lanes moved by index[j] when the window had to
 * be clamped (permute[j]), then ANDed with mask[j]: the lanes whose source (t + l moved by
 * sign·(p − k/2, q − k/2) in row and column) lies inside the plane. VMASKMOVPS would do the
 * same in one instruction but issues several times slower than a plain load on Zen 1, and these
 * loops are load-bound. live: the lanes below h·w. */
typedef struct {
    __m256i mask[FK_IM2COL_MAX_KERNEL * FK_IM2COL_MAX_KERNEL], index[FK_IM2COL_MAX_KERNEL * FK_IM2COL_MAX_KERNEL];
    ptrdiff_t start[FK_IM2COL_MAX_KERNEL * FK_IM2COL_MAX_KERNEL];
    int permute[FK_IM2COL_MAX_KERNEL * FK_IM2COL_MAX_KERNEL];
    __m256i live;
} tap_windows;

FK_AVX2 static void tap_windows_at(size_t t, ptrdiff_t h, ptrdiff_t w, size_t k, ptrdiff_t sign, tap_windows *tw) {
    const ptrdiff_t hw = h * w, pad = (ptrdiff_t)(k / 2);
    int32_t row[8], col[8];
    ptrdiff_t r = (ptrdiff_t)t / w, c = (ptrdiff_t)t % w;
    for (int l = 0; l < 8; l++) {
        const int past = (ptrdiff_t)t + l >= hw;
        row[l] = past ? INT32_MIN / 2 : (int32_t)r; /* past the plane: never inside */
        col[l] = (int32_t)c;
        if (++c == w) c = 0, r++;
    }
    const __m256i rv = _mm256_loadu_si256((const __m256i *)row), cv = _mm256_loadu_si256((const __m256i *)col);
    const __m256i minus1 = _mm256_set1_epi32(-1), hv = _mm256_set1_epi32((int32_t)h), wv = _mm256_set1_epi32((int32_t)w);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), seven = _mm256_set1_epi32(7);
    __m256i rm[FK_IM2COL_MAX_KERNEL], cm[FK_IM2COL_MAX_KERNEL];
    for (size_t p = 0; p < k; p++) {
        const __m256i d = _mm256_set1_epi32((int32_t)(sign * ((ptrdiff_t)p - pad)));
        const __m256i rs = _mm256_add_epi32(rv, d), cs = _mm256_add_epi32(cv, d);
        rm[p] = _mm256_and_si256(_mm256_cmpgt_epi32(rs, minus1), _mm256_cmpgt_epi32(hv, rs));
        cm[p] = _mm256_and_si256(_mm256_cmpgt_epi32(cs, minus1), _mm256_cmpgt_epi32(wv, cs));
    }
    for (size_t j = 0; j < k * k; j++) {
        const ptrdiff_t p = (ptrdiff_t)(j / k), q = (ptrdiff_t)(j % k);
        const ptrdiff_t s = (ptrdiff_t)t + sign * ((p - pad) * w + q - pad);
        const ptrdiff_t clamped = s < 0 ? 0 : s > hw - 8 ? hw - 8 : s;
        tw->mask[j] = _mm256_and_si256(rm[p], cm[q]);
        tw->start[j] = clamped;
        tw->permute[j] = s != clamped;
        tw->index[j] = _mm256_and_si256(_mm256_add_epi32(lanes, _mm256_set1_epi32((int32_t)(s - clamped))), seven);
    }
    tw->live = _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)(hw - (ptrdiff_t)t)), lanes);
}

/* Tap j's vector of the row at `row` (see tap_windows). */
FK_AVX2 static inline __m256 tap_vector(const float *row, const tap_windows *tw, size_t j) {
    __m256 v = _mm256_loadu_ps(row + tw->start[j]);
    if (tw->permute[j]) v = _mm256_permutevar8x32_ps(v, tw->index[j]);
    return _mm256_and_ps(v, _mm256_castsi256_ps(tw->mask[j]));
}

/* Stores v at d: all eight lanes, or the live ones of the plane's last, partial vector. */
FK_AVX2 static inline void store_live(float *d, __m256 v, int full, __m256i live) {
    if (full) _mm256_storeu_ps(d, v);
    else _mm256_maskstore_ps(d, live, v);
}

/* Eight positions at a time: each unfolded row's vector is one tap_vector of its channel's plane
 * and one store. Planes under eight positions run the portable variant. */
FK_AVX2 void fk_unfold_f32_avx2(const float *x, size_t ldx, size_t samples, size_t channels, size_t h, size_t w,
                                size_t k, float *dst, size_t ld) {
    const size_t kk = k * k, hw = h * w;
    if (k > FK_IM2COL_MAX_KERNEL || hw < 8) {
        fk_unfold_f32_portable(x, ldx, samples, channels, h, w, k, dst, ld);
        return;
    }
    tap_windows tw;
    for (size_t t = 0; t < hw; t += 8) {
        tap_windows_at(t, (ptrdiff_t)h, (ptrdiff_t)w, k, 1, &tw);
        const int full = t + 8 <= hw;
        for (size_t sample = 0; sample < samples; sample++)
            for (size_t c = 0; c < channels; c++) {
                const float *plane = x + sample * ldx + c * hw;
                float *d = dst + c * kk * ld + sample * hw + t;
                for (size_t j = 0; j < kk; j++) store_live(d + j * ld, tap_vector(plane, &tw, j), full, tw.live);
            }
    }
}

/* CB channels' vectors of eight output positions, each summed in a register in the documented
 * order: the centre row's vector, then each other tap's row shifted back (lanes whose source
 * leaves the plane add +0). The CB sums are independent chains, so the adds' latency overlaps. */
FK_AVX2 static inline __attribute__((always_inline)) void fold_channels(const float *rows, size_t rowStride,
                                                                         const tap_windows *tw, size_t kk,
                                                                         size_t centre, size_t ld, float *d,
                                                                         size_t dStride, int full, const int CB) {
    __m256 acc[4];
    for (int b = 0; b < CB; b++) acc[b] = tap_vector(rows + b * rowStride + centre * ld, tw, centre);
    for (size_t j = 0; j < kk; j++) {
        if (j == centre) continue;
        for (int b = 0; b < CB; b++) acc[b] = _mm256_add_ps(acc[b], tap_vector(rows + b * rowStride + j * ld, tw, j));
    }
    for (int b = 0; b < CB; b++) store_live(d + b * dStride, acc[b], full, tw->live);
}

/* Eight output positions at a time, four channels at a time, one store per vector. Planes under
 * eight positions run the portable variant. */
FK_AVX2 void fk_fold_f32_avx2(const float *src, size_t ld, size_t samples, size_t channels, size_t h, size_t w,
                              size_t k, float *dst, size_t lddst) {
    const size_t kk = k * k, hw = h * w, centre = (k / 2) * k + k / 2, rowStride = kk * ld;
    if (k > FK_IM2COL_MAX_KERNEL || hw < 8) {
        fk_fold_f32_portable(src, ld, samples, channels, h, w, k, dst, lddst);
        return;
    }
    tap_windows tw;
    for (size_t t = 0; t < hw; t += 8) {
        tap_windows_at(t, (ptrdiff_t)h, (ptrdiff_t)w, k, -1, &tw);
        const int full = t + 8 <= hw;
        for (size_t sample = 0; sample < samples; sample++) {
            const float *rows = src + sample * hw;
            float *d = dst + sample * lddst + t;
            size_t c = 0;
            for (; c + 4 <= channels; c += 4)
                fold_channels(rows + c * rowStride, rowStride, &tw, kk, centre, ld, d + c * hw, hw, full, 4);
            for (; c < channels; c++)
                fold_channels(rows + c * rowStride, rowStride, &tw, kk, centre, ld, d + c * hw, hw, full, 1);
        }
    }
}
#endif

void fk_unfold_f32(const float *x, size_t ldx, size_t samples, size_t channels, size_t h, size_t w, size_t k,
                   float *dst, size_t ld) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_unfold_f32_avx2(x, ldx, samples, channels, h, w, k, dst, ld);
        return;
    }
#endif
    fk_unfold_f32_portable(x, ldx, samples, channels, h, w, k, dst, ld);
}

void fk_fold_f32(const float *src, size_t ld, size_t samples, size_t channels, size_t h, size_t w, size_t k,
                 float *dst, size_t lddst) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_fold_f32_avx2(src, ld, samples, channels, h, w, k, dst, lddst);
        return;
    }
#endif
    fk_fold_f32_portable(src, ld, samples, channels, h, w, k, dst, lddst);
}
