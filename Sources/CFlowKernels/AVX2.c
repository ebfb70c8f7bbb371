/* AVX2 + FMA variants, compiled for that instruction set only (target attribute) and called only
 * after fk_simd_level() confirmed the processor has it. */
#include "Internal.h"

#if FK_HAVE_X86
#include <immintrin.h>
#include <stdint.h>

/* Lane masks: mask_table + 8 - t enables the first t lanes (0 ≤ t ≤ 8). */
static const int32_t mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

FK_AVX2 static inline __m256i lane_mask(size_t t) {
    return _mm256_loadu_si256((const __m256i *)(mask_table + 8 - t));
}

/* Of `rows` rows `stride` floats apart, whose buffer may end right after the last row's used
 * columns: the leading rows in which a load reaching `over` floats past the used columns stays
 * inside the buffer (all but the last ⌈over / stride⌉). The kernels load those rows plainly and
 * mask the extra lanes' results; VMASKMOVPS, which issues several times slower than a plain load
 * on Zen 1, only in the rows after. */
static inline size_t plain_rows(size_t rows, size_t stride, size_t over) {
    const size_t tail = (over + stride - 1) / stride;
    return rows > tail ? rows - tail : 0;
}

/* ---- Dense layer ------------------------------------------------------------------------- */

/* One tile: MR rows × (8 or 16) output columns. `two` selects 16 columns; `masked` loads and
 * stores through m0/m1. Always inlined with constant MR/two/masked so accumulators live in
 * registers (MR = 6, two = 1: 12 accumulators + 2 weight vectors + 1 broadcast). */
#define FK_TILE_BODY(MR)                                                                               \
    __m256 acc0[MR], acc1[MR];                                                                         \
    const __m256 zero = _mm256_setzero_ps();                                                           \
    __m256 b0 = zero, b1 = zero;                                                                       \
    if (bias) {                                                                                        \
        b0 = masked ? _mm256_maskload_ps(bias, m0) : _mm256_loadu_ps(bias);                            \
        if (two) b1 = masked ? _mm256_maskload_ps(bias + 8, m1) : _mm256_loadu_ps(bias + 8);            \
    }                                                                                                  \
    for (int m = 0; m < MR; m++) {                                                                     \
        acc0[m] = b0;                                                                                  \
        acc1[m] = b1;                                                                                  \
    }                                                                                                  \
    for (size_t k = 0; k < in; k++) {                                                                  \
        const float *wk = w + k * out;                                                                 \
        /* Masked columns: a plain load reads past `out` into the next weight rows (lanes never     \
         * stored); rows from `plain` on, whose load would leave wt, take VMASKMOVPS, which issues \
         * several times slower. */                                                                 \
        const int edge = masked && k >= plain;                                                         \
        const __m256 w0 = edge ? _mm256_maskload_ps(wk, m0) : _mm256_loadu_ps(wk);                     \
        __m256 w1 = zero;                                                                              \
        if (two) w1 = edge ? _mm256_maskload_ps(wk + 8, m1) : _mm256_loadu_ps(wk + 8);                 \
        for (int m = 0; m < MR; m++) {                                                                 \
            const __m256 xb = _mm256_broadcast_ss(x + (size_t)m * ldx + k);                            \
            acc0[m] = _mm256_fmadd_ps(xb, w0, acc0[m]);                                                \
            if (two) acc1[m] = _mm256_fmadd_ps(xb, w1, acc1[m]);                                       \
        }                                                                                              \
    }                                                                                                  \
    for (int m = 0; m < MR; m++) {                                                                     \
        __m256 v0 = acc0[m], v1 = acc1[m];                                                             \
        if (relu) {                                                                                    \
            v0 = _mm256_max_ps(zero, v0); /* the second operand wins on NaN: NaN passes */            \
            v1 = _mm256_max_ps(zero, v1);                                                              \
        }                                                                                              \
        if (gate) {                                                                                    \
            const float *gm = gate + (size_t)m * ldy;                                                  \
            const __m256 g0 = masked ? _mm256_maskload_ps(gm, m0) : _mm256_loadu_ps(gm);               \
            v0 = _mm256_and_ps(v0, _mm256_cmp_ps(g0, zero, _CMP_GT_OQ));                               \
            if (two) {                                                                                 \
                const __m256 g1 = masked ? _mm256_maskload_ps(gm + 8, m1) : _mm256_loadu_ps(gm + 8);   \
                v1 = _mm256_and_ps(v1, _mm256_cmp_ps(g1, zero, _CMP_GT_OQ));                           \
            }                                                                                          \
        }                                                                                              \
        float *ym = y + (size_t)m * ldy;                                                               \
        if (masked) {                                                                                  \
            _mm256_maskstore_ps(ym, m0, v0);                                                           \
            if (two) _mm256_maskstore_ps(ym + 8, m1, v1);                                              \
        } else {                                                                                       \
            _mm256_storeu_ps(ym, v0);                                                                  \
            if (two) _mm256_storeu_ps(ym + 8, v1);                                                     \
        }                                                                                              \
    }

#define FK_TILE(MR)                                                                                    \
    FK_AVX2 static inline __attribute__((always_inline)) void tile##MR(                                \
        const float *x, size_t ldx, size_t in, const float *w, size_t out, const float *bias, float *y, \
        size_t ldy, const float *gate, int relu, const int two, const int masked, __m256i m0,           \
        __m256i m1, size_t plain) {                                                                    \
        FK_TILE_BODY(MR)                                                                               \
    }

FK_TILE(6)
FK_TILE(4)
FK_TILE(2)
FK_TILE(1)

/* All column blocks of MR rows starting at x/y (gate, when given, at the same offsets as y). */
#define FK_ROWS(MR)                                                                                    \
    FK_AVX2 static void rows##MR(const float *x, size_t ldx, size_t in, const float *wt, const float *bias, \
                                 size_t out, float *y, size_t ldy, const float *gate, int relu) {       \
        const __m256i all = lane_mask(8);                                                              \
        size_t j = 0;                                                                                  \
        for (; j + 16 <= out; j += 16)                                                                 \
            tile##MR(x, ldx, in, wt + j, out, bias ? bias + j : 0, y + j, ldy, gate ? gate + j : 0,     \
                     relu, 1, 0, all, all, in);                                                        \
        const size_t rest = out - j;                                                                   \
        const float *bj = bias ? bias + j : 0, *gj = gate ? gate + j : 0;                              \
        const size_t plain = plain_rows(in, out, (rest > 8 ? 16 : 8) - rest);                          \
        if (rest > 8)                                                                                  \
            tile##MR(x, ldx, in, wt + j, out, bj, y + j, ldy, gj, relu, 1, 1, all, lane_mask(rest - 8), \
                     plain);                                                                           \
        else if (rest == 8)                                                                            \
            tile##MR(x, ldx, in, wt + j, out, bj, y + j, ldy, gj, relu, 0, 0, all, all, in);            \
        else if (rest > 0)                                                                             \
            tile##MR(x, ldx, in, wt + j, out, bj, y + j, ldy, gj, relu, 0, 1, lane_mask(rest), all,     \
                     plain);                                                                           \
    }

FK_ROWS(6)
FK_ROWS(4)
FK_ROWS(2)
FK_ROWS(1)

FK_AVX2 static void linear_row_wide(const float *xr, size_t in, const float *wt, const float *bias, size_t out,
                                    float *yr, int relu);

FK_AVX2 void fk_linear_f32_avx2(const float *x, size_t ldx, size_t rows, size_t in, const float *wt,
                                const float *bias, size_t out, float *y, size_t ldy, const float *gate, int relu) {
    if (rows == 1 && !gate && in <= FK_SPARSE_MAX_IN) {
        linear_row_wide(x, in, wt, bias, out, y, relu);
        return;
    }
#define FK_AT(r) x + (r) * ldx, ldx, in, wt, bias, out, y + (r) * ldy, ldy, gate ? gate + (r) * ldy : 0, relu
    size_t r = 0;
    for (; r + 6 <= rows; r += 6) rows6(FK_AT(r));
    if (rows - r >= 4) {
        rows4(FK_AT(r));
        r += 4;
    }
    if (rows - r >= 2) {
        rows2(FK_AT(r));
        r += 2;
    }
    if (rows - r == 1) rows1(FK_AT(r));
#undef FK_AT
}

/* ---- Dense layer with few outputs ------------------------------------------------------- */

/* ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)) of v's lanes. */
FK_AVX2 static inline float sum_lanes(__m256 v) {
    const __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* l_i + l_{i+4} */
    const __m128 b = _mm_add_ps(a, _mm_movehl_ps(a, a));                                /* a0 + a2, a1 + a3 */
    return _mm_cvtss_f32(_mm_add_ss(b, _mm_movehdup_ps(b)));
}

/* MR rows × NO outputs: each dot product in eight lanes (input k in lane k mod 8), the weight
 * rows loaded once per eight inputs for all MR rows. */
#define FK_NARROW_TILE(MR, NO)                                                                         \
    FK_AVX2 static inline __attribute__((always_inline)) void ntile##MR##x##NO(                        \
        const float *x, size_t ldx, size_t in, const float *w, const float *bias, float *y, size_t ldy, \
        int relu) {                                                                                    \
        __m256 acc[MR][NO];                                                                            \
        for (int m = 0; m < MR; m++)                                                                   \
            for (int j = 0; j < NO; j++) acc[m][j] = _mm256_setzero_ps();                              \
        size_t k = 0;                                                                                  \
        for (; k + 8 <= in; k += 8) {                                                                  \
            __m256 wv[NO];                                                                             \
            for (int j = 0; j < NO; j++) wv[j] = _mm256_loadu_ps(w + (size_t)j * in + k);              \
            for (int m = 0; m < MR; m++) {                                                             \
                const __m256 xv = _mm256_loadu_ps(x + (size_t)m * ldx + k);                            \
                for (int j = 0; j < NO; j++) acc[m][j] = _mm256_fmadd_ps(xv, wv[j], acc[m][j]);        \
            }                                                                                          \
        }                                                                                              \
        if (k < in) { /* masked lanes add 0·0 to a sum that started at +0: no change */               \
            const __m256i tail = lane_mask(in - k);                                                    \
            __m256 wv[NO];                                                                             \
            for (int j = 0; j < NO; j++) wv[j] = _mm256_maskload_ps(w + (size_t)j * in + k, tail);     \
            for (int m = 0; m < MR; m++) {                                                             \
                const __m256 xv = _mm256_maskload_ps(x + (size_t)m * ldx + k, tail);                   \
                for (int j = 0; j < NO; j++) acc[m][j] = _mm256_fmadd_ps(xv, wv[j], acc[m][j]);        \
            }                                                                                          \
        }                                                                                              \
        for (int m = 0; m < MR; m++)                                                                   \
            for (int j = 0; j < NO; j++) {                                                             \
                const float v = (bias ? bias[j] : 0.0f) + sum_lanes(acc[m][j]);                        \
                y[(size_t)m * ldy + j] = relu && v < 0.0f ? 0.0f : v; /* NaN passes */                 \
            }                                                                                          \
    }

/* All rows for NO outputs: tiles of MR rows, then single rows. */
#define FK_NARROW(NO, MR)                                                                              \
    FK_NARROW_TILE(MR, NO)                                                                             \
    FK_NARROW_TILE(1, NO)                                                                              \
    FK_AVX2 static void narrow##NO(const float *x, size_t ldx, size_t rows, size_t in, const float *w,  \
                                   const float *bias, float *y, size_t ldy, int relu) {                \
        size_t r = 0;                                                                                  \
        for (; r + MR <= rows; r += MR) ntile##MR##x##NO(x + r * ldx, ldx, in, w, bias, y + r * ldy, ldy, relu); \
        for (; r < rows; r++) ntile1x##NO(x + r * ldx, ldx, in, w, bias, y + r * ldy, ldy, relu);       \
    }

FK_NARROW(1, 4)
FK_NARROW(2, 4)
FK_NARROW(3, 2)
FK_NARROW(4, 2)

FK_AVX2 void fk_linear_narrow_f32_avx2(const float *x, size_t ldx, size_t rows, size_t in, const float *w,
                                       const float *bias, size_t out, float *y, size_t ldy, int relu) {
    for (size_t j = 0; j < out; j += 4) {
        const float *wj = w + j * in, *bj = bias ? bias + j : 0;
        switch (out - j < 4 ? out - j : 4) {
        case 1: narrow1(x, ldx, rows, in, wj, bj, y + j, ldy, relu); break;
        case 2: narrow2(x, ldx, rows, in, wj, bj, y + j, ldy, relu); break;
        case 3: narrow3(x, ldx, rows, in, wj, bj, y + j, ldy, relu); break;
        default: narrow4(x, ldx, rows, in, wj, bj, y + j, ldy, relu); break;
        }
    }
}

/* ---- Accumulating dense product ---------------------------------------------------------- */

/* One row, NV vectors of outputs (the last masked by ml when `masked`): y += Σ_k x[k]·wt[k·out + ·]
 * in increasing k, the running values held in registers. */
#define FK_ACCUMULATE_BLOCK(NV)                                                                        \
    FK_AVX2 static inline __attribute__((always_inline)) void ablock##NV(                              \
        const float *xr, size_t in, const float *wt, size_t out, float *yr, int relu, const int masked, __m256i ml) { \
        __m256 acc[NV];                                                                                \
        for (int v = 0; v < NV; v++)                                                                   \
            acc[v] = masked && v == NV - 1 ? _mm256_maskload_ps(yr + 8 * v, ml) : _mm256_loadu_ps(yr + 8 * v); \
        for (size_t k = 0; k < in; k++) {                                                              \
            const __m256 xv = _mm256_broadcast_ss(xr + k);                                             \
            const __m256 xb = relu ? _mm256_max_ps(_mm256_setzero_ps(), xv) : xv; /* NaN passes */     \
            const float *wk = wt + k * out;                                                            \
            for (int v = 0; v < NV; v++) {                                                             \
                const __m256 w = masked && v == NV - 1 ? _mm256_maskload_ps(wk + 8 * v, ml) : _mm256_loadu_ps(wk + 8 * v); \
                acc[v] = _mm256_fmadd_ps(xb, w, acc[v]);                                               \
            }                                                                                          \
        }                                                                                              \
        for (int v = 0; v < NV; v++) {                                                                 \
            if (masked && v == NV - 1)                                                                 \
                _mm256_maskstore_ps(yr + 8 * v, ml, acc[v]);                                           \
            else                                                                                       \
                _mm256_storeu_ps(yr + 8 * v, acc[v]);                                                  \
        }                                                                                              \
    }

FK_ACCUMULATE_BLOCK(1)
FK_ACCUMULATE_BLOCK(2)
FK_ACCUMULATE_BLOCK(3)
FK_ACCUMULATE_BLOCK(4)
FK_ACCUMULATE_BLOCK(5)
FK_ACCUMULATE_BLOCK(6)
FK_ACCUMULATE_BLOCK(7)
FK_ACCUMULATE_BLOCK(8)

FK_AVX2 static void accumulate_block(size_t nv, const float *xr, size_t in, const float *wt, size_t out, float *yr,
                                     int relu, int masked, __m256i ml) {
    switch (nv) {
    case 1: ablock1(xr, in, wt, out, yr, relu, masked, ml); break;
    case 2: ablock2(xr, in, wt, out, yr, relu, masked, ml); break;
    case 3: ablock3(xr, in, wt, out, yr, relu, masked, ml); break;
    case 4: ablock4(xr, in, wt, out, yr, relu, masked, ml); break;
    case 5: ablock5(xr, in, wt, out, yr, relu, masked, ml); break;
    case 6: ablock6(xr, in, wt, out, yr, relu, masked, ml); break;
    case 7: ablock7(xr, in, wt, out, yr, relu, masked, ml); break;
    default: ablock8(xr, in, wt, out, yr, relu, masked, ml); break;
    }
}

/* Four rows × NV vectors of outputs (the last masked by ml when `masked`): the same terms in the
 * same order per value as ablock, so the same bits, with each weight vector loaded once for the
 * four rows. */
#define FK_ACCUMULATE_TILE(NV)                                                                         \
    FK_AVX2 static inline __attribute__((always_inline)) void atile4x##NV(                             \
        const float *x, size_t ldx, size_t in, const float *wt, size_t out, float *y, size_t ldy, int relu, \
        const int masked, __m256i ml) {                                                                \
        __m256 acc[4][NV];                                                                             \
        for (int m = 0; m < 4; m++)                                                                    \
            for (int v = 0; v < NV; v++)                                                               \
                acc[m][v] = masked && v == NV - 1 ? _mm256_maskload_ps(y + m * ldy + 8 * v, ml)        \
                                                  : _mm256_loadu_ps(y + m * ldy + 8 * v);              \
        for (size_t k = 0; k < in; k++) {                                                              \
            const float *wk = wt + k * out;                                                            \
            __m256 w[NV];                                                                              \
            for (int v = 0; v < NV; v++)                                                               \
                w[v] = masked && v == NV - 1 ? _mm256_maskload_ps(wk + 8 * v, ml) : _mm256_loadu_ps(wk + 8 * v); \
            for (int m = 0; m < 4; m++) {                                                              \
                const __m256 xv = _mm256_broadcast_ss(x + m * ldx + k);                                \
                const __m256 xb = relu ? _mm256_max_ps(_mm256_setzero_ps(), xv) : xv;                  \
                for (int v = 0; v < NV; v++) acc[m][v] = _mm256_fmadd_ps(xb, w[v], acc[m][v]);         \
            }                                                                                          \
        }                                                                                              \
        for (int m = 0; m < 4; m++)                                                                    \
            for (int v = 0; v < NV; v++) {                                                             \
                if (masked && v == NV - 1)                                                             \
                    _mm256_maskstore_ps(y + m * ldy + 8 * v, ml, acc[m][v]);                           \
                else                                                                                   \
                    _mm256_storeu_ps(y + m * ldy + 8 * v, acc[m][v]);                                  \
            }                                                                                          \
    }

FK_ACCUMULATE_TILE(1)
FK_ACCUMULATE_TILE(2)
FK_ACCUMULATE_TILE(3)

FK_AVX2 void fk_linear_accumulate_f32_avx2(const float *x, size_t ldx, size_t rows, size_t in, const float *wt,
                                           size_t out, float *y, size_t ldy, int relu) {
    if (rows == 0 || in == 0 || out == 0) return;
    /* Tiles of four rows, 24 outputs at a time (12 accumulators), then single rows. */
    size_t r0 = 0;
    for (; r0 + 4 <= rows; r0 += 4) {
        const float *xr = x + r0 * ldx;
        float *yr = y + r0 * ldy;
        size_t j = 0;
        for (; j + 24 <= out; j += 24) atile4x3(xr, ldx, in, wt + j, out, yr + j, ldy, relu, 0, lane_mask(8));
        const size_t rest = out - j;
        if (rest > 0) {
            const size_t nv = (rest + 7) / 8, tail = rest - 8 * (nv - 1);
            const __m256i ml = lane_mask(tail);
            switch (nv) {
            case 1: atile4x1(xr, ldx, in, wt + j, out, yr + j, ldy, relu, tail < 8, ml); break;
            case 2: atile4x2(xr, ldx, in, wt + j, out, yr + j, ldy, relu, tail < 8, ml); break;
            default: atile4x3(xr, ldx, in, wt + j, out, yr + j, ldy, relu, tail < 8, ml); break;
            }
        }
    }
    for (size_t r = r0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        size_t j = 0;
        for (; j + 64 <= out; j += 64) accumulate_block(8, xr, in, wt + j, out, yr + j, relu, 0, lane_mask(8));
        const size_t rest = out - j;
        if (rest > 0) {
            const size_t nv = (rest + 7) / 8, tail = rest - 8 * (nv - 1);
            accumulate_block(nv, xr, in, wt + j, out, yr + j, relu, tail < 8, lane_mask(tail));
        }
    }
}

/* ---- Dense layer over sparse (ReLU) inputs ---------------------------------------------- */

/* Rows' nonzero inputs as bitmasks: bit k % 64 of word k / 64 is set where input k is not ±0
 * (NaN included). The products walk the set bits (count trailing zeros, clear the lowest), so
 * the weight rows' addresses come from registers: Zen 1 dispatches a nonzero input's eight
 * weight loads at once instead of waiting for an index loaded from memory (about 9 cycles per
 * nonzero against 11.5 with an index list), and building the masks takes a compare and a
 * movemask per eight inputs. */
#define FK_SPARSE_WORDS ((FK_SPARSE_MAX_IN + 63) / 64)

/* NV accumulators (8·NV output columns from wt + j), the last one masked by ml when `masked`:
 * y = act(bias + Σ_k x[k] · wt[k·out + ·]) over the inputs k set in mask, increasing k. */
#define FK_SPARSE_BLOCK(NV)                                                                            \
    FK_AVX2 static inline __attribute__((always_inline)) void sblock##NV(                              \
        const float *xr, const uint64_t *mask, size_t words, size_t plain, const float *wt, size_t out, \
        const float *bias, float *yr, const float *gr, int relu, const int masked, __m256i ml) {        \
        const __m256 zero = _mm256_setzero_ps();                                                       \
        __m256 acc[NV];                                                                                \
        for (int v = 0; v < NV; v++) {                                                                 \
            const int part = masked && v == NV - 1;                                                    \
            acc[v] = !bias ? zero : part ? _mm256_maskload_ps(bias + 8 * v, ml) : _mm256_loadu_ps(bias + 8 * v); \
        }                                                                                              \
        for (size_t wd = 0; wd < words; wd++) {                                                        \
            for (uint64_t m = mask[wd]; m != 0; m &= m - 1) {                                          \
                const size_t k = 64 * wd + (size_t)__builtin_ctzll(m);                                 \
                const __m256 xb = _mm256_broadcast_ss(xr + k);                                         \
                const float *wk = wt + k * out;                                                        \
                /* As in the dense tiles: plain loads except in the rows from `plain` on. */         \
                const int edge = masked && k >= plain;                                                 \
                for (int v = 0; v < NV; v++) {                                                         \
                    const __m256 w = edge && v == NV - 1 ? _mm256_maskload_ps(wk + 8 * v, ml)          \
                                                         : _mm256_loadu_ps(wk + 8 * v);                \
                    acc[v] = _mm256_fmadd_ps(xb, w, acc[v]);                                           \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
        for (int v = 0; v < NV; v++) {                                                                 \
            __m256 r = relu ? _mm256_max_ps(zero, acc[v]) : acc[v];                                    \
            const int part = masked && v == NV - 1;                                                    \
            if (gr) {                                                                                  \
                const __m256 g = part ? _mm256_maskload_ps(gr + 8 * v, ml) : _mm256_loadu_ps(gr + 8 * v); \
                r = _mm256_and_ps(r, _mm256_cmp_ps(g, zero, _CMP_GT_OQ));                              \
            }                                                                                          \
            if (part)                                                                                  \
                _mm256_maskstore_ps(yr + 8 * v, ml, r);                                                \
            else                                                                                       \
                _mm256_storeu_ps(yr + 8 * v, r);                                                       \
        }                                                                                              \
    }

FK_SPARSE_BLOCK(1)
FK_SPARSE_BLOCK(2)
FK_SPARSE_BLOCK(3)
FK_SPARSE_BLOCK(4)
FK_SPARSE_BLOCK(5)
FK_SPARSE_BLOCK(6)
FK_SPARSE_BLOCK(7)
FK_SPARSE_BLOCK(8)

FK_AVX2 static void sparse_block(size_t nv, const float *xr, const uint64_t *mask, size_t words, size_t plain,
                                 const float *wt, size_t out, const float *bias, float *yr, const float *gr, int relu,
                                 int masked, __m256i ml) {
    switch (nv) {
    case 1: sblock1(xr, mask, words, plain, wt, out, bias, yr, gr, relu, masked, ml); break;
    case 2: sblock2(xr, mask, words, plain, wt, out, bias, yr, gr, relu, masked, ml); break;
    case 3: sblock3(xr, mask, words, plain, wt, out, bias, yr, gr, relu, masked, ml); break;
    case 4: sblock4(xr, mask, words, plain, wt, out, bias, yr, gr, relu, masked, ml); break;
    case 5: sblock5(xr, mask, words, plain, wt, out, bias, yr, gr, relu, masked, ml); break;
    case 6: sblock6(xr, mask, words, plain, wt, out, bias, yr, gr, relu, masked, ml); break;
    case 7: sblock7(xr, mask, words, plain, wt, out, bias, yr, gr, relu, masked, ml); break;
    default: sblock8(xr, mask, words, plain, wt, out, bias, yr, gr, relu, masked, ml); break;
    }
}

/* y = gate(act(bias + Σ_k x[k] · wt[k·out + ·])) over the inputs set in mask (`in` inputs,
 * ⌈in / 64⌉ words) for one row, all `out` columns, 64 at a time (eight independent accumulator
 * chains; the last block masked); gr: the row's gate or NULL. */
FK_AVX2 static inline __attribute__((always_inline)) void masked_row(const float *xr, const uint64_t *mask, size_t in,
                                                                    const float *wt, const float *bias, size_t out,
                                                                    float *yr, const float *gr, int relu) {
    const size_t words = (in + 63) / 64;
    size_t j = 0;
    for (; j + 64 <= out; j += 64)
        sparse_block(8, xr, mask, words, in, wt + j, out, bias ? bias + j : 0, yr + j, gr ? gr + j : 0, relu, 0,
                     lane_mask(8));
    const size_t rest = out - j;
    if (rest > 0) {
        const size_t nv = (rest + 7) / 8, tail = rest - 8 * (nv - 1);
        sparse_block(nv, xr, mask, words, plain_rows(in, out, 8 - tail), wt + j, out, bias ? bias + j : 0, yr + j,
                     gr ? gr + j : 0, relu, tail < 8, lane_mask(tail));
    }
}

/* One dense row with every input set: eight accumulator chains where the 1-row tile has two,
 * the same terms in the same order as the tiles, so the same bits. */
FK_AVX2 static void linear_row_wide(const float *xr, size_t in, const float *wt, const float *bias, size_t out,
                                    float *yr, int relu) {
    uint64_t mask[FK_SPARSE_WORDS];
    for (size_t wd = 0; wd < (in + 63) / 64; wd++)
        mask[wd] = in - 64 * wd >= 64 ? ~0ull : (1ull << (in - 64 * wd)) - 1;
    masked_row(xr, mask, in, wt, bias, out, yr, 0, relu);
}

/* The nonzero mask of row xr's `in` inputs (⌈in / 64⌉ words). */
FK_AVX2 static inline void nonzero_mask(const float *xr, size_t in, uint64_t *mask) {
    const __m256 zero = _mm256_setzero_ps();
    for (size_t k0 = 0; k0 < in; k0 += 64) {
        const size_t end = in - k0 < 64 ? in : k0 + 64;
        uint64_t word = 0;
        size_t k = k0;
        for (; k + 8 <= end; k += 8) {
            const unsigned m = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(xr + k), zero, _CMP_NEQ_UQ));
            word |= (uint64_t)m << (k - k0);
        }
        for (; k < end; k++) word |= (uint64_t)(xr[k] != 0.0f) << (k - k0); /* true for NaN */
        mask[k0 / 64] = word;
    }
}

FK_AVX2 void fk_linear_sparse_f32_avx2(const float *x, size_t ldx, size_t rows, size_t in, const float *wt,
                                       const float *bias, size_t out, float *y, size_t ldy, const float *gate,
                                       int relu) {
    if (in > FK_SPARSE_MAX_IN) {
        fk_linear_f32_avx2(x, ldx, rows, in, wt, bias, out, y, ldy, gate, relu);
        return;
    }
    if (rows == 0) return;
    /* Row r + 1's mask is built before row r's products run: its loads overlap the products. */
    uint64_t mask[2][FK_SPARSE_WORDS];
    nonzero_mask(x, in, mask[0]);
    for (size_t r = 0; r < rows; r++) {
        if (r + 1 < rows) nonzero_mask(x + (r + 1) * ldx, in, mask[(r + 1) & 1]);
        masked_row(x + r * ldx, mask[r & 1], in, wt, bias, out, y + r * ldy, gate ? gate + r * ldy : 0, relu);
    }
}

/* ---- Dense layer: weight gradient -------------------------------------------------------- */

/* One tile of the weight gradient: MJ output features (rows of dw) × (8 or 16) input features,
 * summed over every data row r in increasing order from zero, then added to dw. Per r: the x
 * row's slice is loaded once and each dy value broadcast (MJ = 6, two = 1: 12 accumulators). */
#define FK_WGRAD_TILE(MJ)                                                                              \
    FK_AVX2 static inline __attribute__((always_inline)) void wtile##MJ(                               \
        const float *dy, size_t lddy, size_t rows, const float *x, size_t ldx, float *dw, size_t ldw,   \
        const int two, const int masked, __m256i m0, __m256i m1, size_t plain) {                       \
        __m256 acc0[MJ], acc1[MJ];                                                                     \
        const __m256 zero = _mm256_setzero_ps();                                                       \
        for (int m = 0; m < MJ; m++) {                                                                 \
            acc0[m] = zero;                                                                            \
            acc1[m] = zero;                                                                            \
        }                                                                                              \
        for (size_t r = 0; r < rows; r++) {                                                            \
            const float *xr = x + r * ldx, *gr = dy + r * lddy;                                        \
            /* Masked features load plainly past `in` (lanes never stored) except in the rows from \
             * `plain` on, whose load would leave x (as in the dense tiles). */                     \
            const int edge = masked && r >= plain;                                                     \
            const __m256 x0 = edge ? _mm256_maskload_ps(xr, m0) : _mm256_loadu_ps(xr);                 \
            __m256 x1 = zero;                                                                          \
            if (two) x1 = edge ? _mm256_maskload_ps(xr + 8, m1) : _mm256_loadu_ps(xr + 8);             \
            for (int m = 0; m < MJ; m++) {                                                             \
                const __m256 gb = _mm256_broadcast_ss(gr + m);                                         \
                acc0[m] = _mm256_fmadd_ps(gb, x0, acc0[m]);                                            \
                if (two) acc1[m] = _mm256_fmadd_ps(gb, x1, acc1[m]);                                   \
            }                                                                                          \
        }                                                                                              \
        for (int m = 0; m < MJ; m++) {                                                                 \
            float *wm = dw + (size_t)m * ldw;                                                          \
            if (masked) {                                                                              \
                _mm256_maskstore_ps(wm, m0, _mm256_add_ps(_mm256_maskload_ps(wm, m0), acc0[m]));       \
                if (two)                                                                               \
                    _mm256_maskstore_ps(wm + 8, m1, _mm256_add_ps(_mm256_maskload_ps(wm + 8, m1), acc1[m])); \
            } else {                                                                                   \
                _mm256_storeu_ps(wm, _mm256_add_ps(_mm256_loadu_ps(wm), acc0[m]));                     \
                if (two) _mm256_storeu_ps(wm + 8, _mm256_add_ps(_mm256_loadu_ps(wm + 8), acc1[m]));    \
            }                                                                                          \
        }                                                                                              \
    }

FK_WGRAD_TILE(6)
FK_WGRAD_TILE(4)
FK_WGRAD_TILE(2)
FK_WGRAD_TILE(1)

/* All input-feature blocks of MJ output features starting at dy column j0 / dw row j0. */
#define FK_WGRAD_ROWS(MJ)                                                                              \
    FK_AVX2 static void wrows##MJ(const float *dy, size_t lddy, size_t rows, const float *x, size_t ldx, \
                                  size_t in, float *dw) {                                              \
        const __m256i all = lane_mask(8);                                                              \
        size_t k = 0;                                                                                  \
        for (; k + 16 <= in; k += 16)                                                                  \
            wtile##MJ(dy, lddy, rows, x + k, ldx, dw + k, in, 1, 0, all, all, rows);                   \
        const size_t rest = in - k, plain = plain_rows(rows, ldx, (rest > 8 ? 16 : 8) - rest);         \
        if (rest > 8)                                                                                  \
            wtile##MJ(dy, lddy, rows, x + k, ldx, dw + k, in, 1, 1, all, lane_mask(rest - 8), plain);   \
        else if (rest == 8)                                                                            \
            wtile##MJ(dy, lddy, rows, x + k, ldx, dw + k, in, 0, 0, all, all, rows);                    \
        else if (rest > 0)                                                                             \
            wtile##MJ(dy, lddy, rows, x + k, ldx, dw + k, in, 0, 1, lane_mask(rest), all, plain);       \
    }

FK_WGRAD_ROWS(6)
FK_WGRAD_ROWS(4)
FK_WGRAD_ROWS(2)
FK_WGRAD_ROWS(1)

FK_AVX2 void fk_linear_wgrad_f32_avx2(const float *dy, size_t lddy, size_t rows, size_t out, const float *x,
                                      size_t ldx, size_t in, float *dw, float *db) {
    if (db) {
        /* Column sums of dy, eight columns at a time, rows in increasing order from zero. Plain
         * loads (a partial last block reads past `out`, lanes never stored) except in the rows
         * where that would leave dy. */
        size_t j = 0;
        for (; j < out; j += 8) {
            const size_t w = out - j < 8 ? out - j : 8, plain = w == 8 ? rows : plain_rows(rows, lddy, 8 - w);
            const __m256i m = lane_mask(w);
            __m256 acc = _mm256_setzero_ps();
            size_t r = 0;
            for (; r < plain; r++) acc = _mm256_add_ps(acc, _mm256_loadu_ps(dy + r * lddy + j));
            for (; r < rows; r++) acc = _mm256_add_ps(acc, _mm256_maskload_ps(dy + r * lddy + j, m));
            _mm256_maskstore_ps(db + j, m, _mm256_add_ps(_mm256_maskload_ps(db + j, m), acc));
        }
    }
    if (in == 0) return;
    size_t j = 0;
    for (; j + 6 <= out; j += 6) wrows6(dy + j, lddy, rows, x, ldx, in, dw + j * in);
    if (out - j >= 4) {
        wrows4(dy + j, lddy, rows, x, ldx, in, dw + j * in);
        j += 4;
    }
    if (out - j >= 2) {
        wrows2(dy + j, lddy, rows, x, ldx, in, dw + j * in);
        j += 2;
    }
    if (out - j == 1) wrows1(dy + j, lddy, rows, x, ldx, in, dw + j * in);
}

/* ---- exp and tanh ------------------------------------------------------------------------ */

/* exp(x) for x clamped to [−87.3365, 88]: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two
 * parts; n = x·log₂e rounded to nearest by adding 1.5·2²³, whose low mantissa bits are then n),
 * exp(r) = 1 + r + r²·P(r) with Cephes' degree-5 P evaluated by Estrin's scheme (three
 * independent pairs: a shorter dependency chain than Horner's, as many operations), 2ⁿ through
 * the exponent bits. Within 2 ulp of exp (KernelTests). NaN stays NaN (min/max return their
 * second operand when either is NaN). */
FK_AVX2 static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);
    x = _mm256_max_ps(_mm256_set1_ps(-87.3365447504019f), x);
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
    const __m256 fx = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    const __m256 r2 = _mm256_mul_ps(r, r);
    const __m256 p01 = _mm256_fmadd_ps(_mm256_set1_ps(1.6666665459e-1f), r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 p23 = _mm256_fmadd_ps(_mm256_set1_ps(8.3334519073e-3f), r, _mm256_set1_ps(4.1665795894e-2f));
    const __m256 p45 = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500e-4f), r, _mm256_set1_ps(1.3981999507e-3f));
    const __m256 p = _mm256_fmadd_ps(_mm256_fmadd_ps(p45, r2, p23), r2, p01);
    const __m256 e = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* t's bits are 0x4B400000 + n: shifted left by 23, n lands in the exponent field. */
    const __m256i n = _mm256_add_epi32(_mm256_slli_epi32(_mm256_castps_si256(t), 23), _mm256_set1_epi32(127 << 23));
    return _mm256_mul_ps(e, _mm256_castsi256_ps(n));
}

/* tanh(x): Cephes' odd polynomial for |x| < 0.625, else sign(x)·(1 − 2/(exp(2|x|) + 1)). Each
 * branch is computed only when some lane needs it (the conditioners' log-scales mostly lie in the
 * polynomial's range, where the exp and the division are skipped); lanes get the same bits either
 * way. */
FK_AVX2 static inline __m256 tanh256(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 ax = _mm256_andnot_ps(sign, x);
    const __m256 below = _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ); /* false for NaN */
    const int lanes = _mm256_movemask_ps(below);
    __m256 small = x;
    if (lanes != 0) {
        const __m256 z = _mm256_mul_ps(x, x);
        __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
        small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
        if (lanes == 0xFF) return small;
    }
    const __m256 e = exp256(_mm256_add_ps(ax, ax));
    __m256 large = _mm256_sub_ps(_mm256_set1_ps(1.0f),
                                 _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
    large = _mm256_or_ps(large, _mm256_and_ps(sign, x));
    return lanes == 0 ? large : _mm256_blendv_ps(large, small, below);
}

FK_AVX2 void fk_relu_mask_f32_avx2(float *g, const float *x, size_t n) {
    const __m256 zero = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 keep = _mm256_cmp_ps(_mm256_loadu_ps(x + j), zero, _CMP_GT_OQ);
        _mm256_storeu_ps(g + j, _mm256_and_ps(_mm256_loadu_ps(g + j), keep));
    }
    for (; j < n; j++) g[j] = x[j] > 0.0f ? g[j] : 0.0f;
}

FK_AVX2 void fk_exp_f32_avx2(float *v, size_t n) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(v + j, exp256(_mm256_loadu_ps(v + j)));
    if (j < n) {
        const __m256i m = lane_mask(n - j);
        _mm256_maskstore_ps(v + j, m, exp256(_mm256_maskload_ps(v + j, m)));
    }
}

FK_AVX2 void fk_tanh_f32_avx2(float *v, size_t n) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(v + j, tanh256(_mm256_loadu_ps(v + j)));
    if (j < n) {
        const __m256i m = lane_mask(n - j);
        _mm256_maskstore_ps(v + j, m, tanh256(_mm256_maskload_ps(v + j, m)));
    }
}

/* ---- Affine coupling step ---------------------------------------------------------------- */

/* s = clamp·tanh(raw / clamp) (the division as a product with the rounded reciprocal: a
 * division issues every few cycles at best on Zen 1), or raw without a clamp. */
FK_AVX2 static inline __m256 soft_clamp8(__m256 raw, float clamp) {
    if (clamp <= 0.0f) return raw;
    return _mm256_mul_ps(_mm256_set1_ps(clamp), tanh256(_mm256_mul_ps(raw, _mm256_set1_ps(1.0f / clamp))));
}

/* forward: x·exp(s) + t; inverse: (x − t)·exp(−s). */
FK_AVX2 static inline __m256 scale_shift8(__m256 xv, __m256 t, __m256 s, int inverse) {
    if (inverse) return _mm256_mul_ps(_mm256_sub_ps(xv, t), exp256(_mm256_sub_ps(_mm256_setzero_ps(), s)));
    return _mm256_fmadd_ps(xv, exp256(s), t);
}

FK_AVX2 static inline __m256 affine8(__m256 xv, __m256 t, __m256 raw, float clamp, int inverse, __m256 *s_out) {
    const __m256 s = soft_clamp8(raw, clamp);
    *s_out = s;
    return scale_shift8(xv, t, s, inverse);
}

/* The affine step in two passes over at most FK_AFFINE_VECTORS vectors (`rows` rows of n
 * features, ldx floats apart in x and ldst in shift and raw): every soft clamp first (into sb),
 * then every scale and shift. Each vector's dependency chain is long (about twenty operations
 * for tanh, as many for exp) and Zen 1's reorder window holds only a few of them; in two flat
 * loops of independent vectors the window overlaps consecutive vectors instead of waiting at
 * each row's end. sums[r] (carried in) gets Σ s of row r in increasing j, the tail vector's
 * unused lanes masked: the same sum order as a row-by-row loop. */
#define FK_AFFINE_VECTORS 64

FK_AVX2 static void affine_pass(float *x, size_t ldx, const float *shift, const float *raw, size_t ldst, size_t rows,
                                size_t n, float clamp, int inverse, __m256 *sums) {
    __m256 sb[FK_AFFINE_VECTORS];
    const size_t full = n / 8, tail = n % 8, nv = full + (tail != 0);
    const __m256i m = lane_mask(tail);
    for (size_t r = 0; r < rows; r++) {
        const float *rr = raw + r * ldst;
        __m256 *sr = sb + r * nv;
        for (size_t v = 0; v < full; v++) sr[v] = soft_clamp8(_mm256_loadu_ps(rr + 8 * v), clamp);
        if (tail)
            sr[full] = _mm256_and_ps(soft_clamp8(_mm256_maskload_ps(rr + 8 * full, m), clamp), _mm256_castsi256_ps(m));
    }
    for (size_t r = 0; r < rows; r++) {
        float *xr = x + r * ldx;
        const float *tr = shift + r * ldst;
        const __m256 *sr = sb + r * nv;
        __m256 acc = sums[r];
        for (size_t v = 0; v < full; v++) {
            _mm256_storeu_ps(xr + 8 * v,
                             scale_shift8(_mm256_loadu_ps(xr + 8 * v), _mm256_loadu_ps(tr + 8 * v), sr[v], inverse));
            acc = _mm256_add_ps(acc, sr[v]);
        }
        if (tail) {
            const __m256 out = scale_shift8(_mm256_maskload_ps(xr + 8 * full, m), _mm256_maskload_ps(tr + 8 * full, m),
                                            sr[full], inverse);
            _mm256_maskstore_ps(xr + 8 * full, m, out);
            acc = _mm256_add_ps(acc, sr[full]);
        }
        sums[r] = acc;
    }
}

/* lane 0 + lane 1 + … + lane 7, in that order (from +0): the affine step's Σ s. */
FK_AVX2 static inline float sum_lanes_in_order(__m256 v) {
    float lanes[8];
    _mm256_storeu_ps(lanes, v);
    float total = 0.0f;
    for (int i = 0; i < 8; i++) total += lanes[i];
    return total;
}

/* The affine step on `rows` rows (x + r·ldx; shift and raw log-scale + r·ldst); sums[r] = Σ s of
 * row r. Rows of up to FK_AFFINE_VECTORS vectors go several per pass, longer ones in segments. */
FK_AVX2 static void affine_rows_wide(float *x, size_t ldx, const float *shift, const float *raw, size_t ldst,
                                     size_t rows, size_t n, float clamp, int inverse, float *sums) {
    const size_t nv = (n + 7) / 8;
    __m256 acc[FK_AFFINE_VECTORS];
    if (nv <= FK_AFFINE_VECTORS) {
        const size_t per = FK_AFFINE_VECTORS / nv;
        for (size_t r0 = 0; r0 < rows; r0 += per) {
            const size_t nr = rows - r0 < per ? rows - r0 : per;
            for (size_t r = 0; r < nr; r++) acc[r] = _mm256_setzero_ps();
            affine_pass(x + r0 * ldx, ldx, shift + r0 * ldst, raw + r0 * ldst, ldst, nr, n, clamp, inverse, acc);
            for (size_t r = 0; r < nr; r++) sums[r0 + r] = sum_lanes_in_order(acc[r]);
        }
        return;
    }
    const size_t segment = 8 * FK_AFFINE_VECTORS;
    for (size_t r = 0; r < rows; r++) {
        acc[0] = _mm256_setzero_ps();
        for (size_t j = 0; j < n; j += segment)
            affine_pass(x + r * ldx + j, 0, shift + r * ldst + j, raw + r * ldst + j, 0, 1,
                        n - j < segment ? n - j : segment, clamp, inverse, acc);
        sums[r] = sum_lanes_in_order(acc[0]);
    }
}

FK_AVX2 double fk_affine_step_f32_avx2(float *x, const float *shift, const float *raw, size_t n, float clamp,
                                       int inverse) {
    float sum = 0.0f;
    if (n > 0) affine_rows_wide(x, 0, shift, raw, 0, 1, n, clamp, inverse, &sum);
    return (double)sum;
}

/* Rows with fewer than eight transformed features: the features of several rows are packed into
 * full vectors (a block of up to 64 values), so each exp/tanh lane does useful work. Per value
 * the arithmetic is affine8's, and each row's Σ s runs over j in increasing order in float, so
 * results equal fk_affine_step_f32 row by row. Always inlined with a constant n (1 … 7), so the
 * packing loops become a few moves per row. */
FK_AVX2 static inline __attribute__((always_inline)) void affine_rows_packed(
    float *x, size_t ldx, const float *st, size_t ldst, size_t rows, const size_t n, float clamp, int inverse,
    double *logdet) {
    const size_t per = 64 / n; /* rows per block */
    float xs[64], ts[64], rs[64], ss[64];
    for (size_t r0 = 0; r0 < rows; r0 += per) {
        const size_t nr = rows - r0 < per ? rows - r0 : per, count = nr * n;
        for (size_t r = 0; r < nr; r++) {
            const float *xr = x + (r0 + r) * ldx, *sr = st + (r0 + r) * ldst;
            for (size_t j = 0; j < n; j++) {
                xs[r * n + j] = xr[j];
                ts[r * n + j] = sr[j];
                rs[r * n + j] = sr[n + j];
            }
        }
        for (size_t i = count; i < (count + 7) / 8 * 8; i++) xs[i] = ts[i] = rs[i] = 0.0f;
        for (size_t i = 0; i < count; i += 8) {
            __m256 sv;
            const __m256 out = affine8(_mm256_loadu_ps(xs + i), _mm256_loadu_ps(ts + i), _mm256_loadu_ps(rs + i), clamp,
                                       inverse, &sv);
            _mm256_storeu_ps(xs + i, out);
            _mm256_storeu_ps(ss + i, sv);
        }
        for (size_t r = 0; r < nr; r++) {
            float *xr = x + (r0 + r) * ldx;
            float total = 0.0f;
            for (size_t j = 0; j < n; j++) {
                xr[j] = xs[r * n + j];
                total += ss[r * n + j];
            }
            logdet[r0 + r] += inverse ? -(double)total : (double)total;
        }
    }
}

FK_AVX2 void fk_affine_rows_f32_avx2(float *x, size_t ldx, const float *st, size_t ldst, size_t rows, size_t n,
                                     float clamp, int inverse, double *logdet) {
    if (n == 0) return;
    if (n >= 8 || rows == 1) {
        float sums[FK_AFFINE_VECTORS];
        for (size_t r0 = 0; r0 < rows; r0 += FK_AFFINE_VECTORS) {
            const size_t nr = rows - r0 < FK_AFFINE_VECTORS ? rows - r0 : FK_AFFINE_VECTORS;
            affine_rows_wide(x + r0 * ldx, ldx, st + r0 * ldst, st + r0 * ldst + n, ldst, nr, n, clamp, inverse, sums);
            for (size_t r = 0; r < nr; r++) logdet[r0 + r] += inverse ? -(double)sums[r] : (double)sums[r];
        }
        return;
    }
    switch (n) {
#define FK_PACKED(N) case N: affine_rows_packed(x, ldx, st, ldst, rows, N, clamp, inverse, logdet); break;
    FK_PACKED(1) FK_PACKED(2) FK_PACKED(3) FK_PACKED(4) FK_PACKED(5) FK_PACKED(6) FK_PACKED(7)
#undef FK_PACKED
    }
}

FK_AVX2 static inline void affine_backward8(__m256 xv, __m256 sh, __m256 raw, __m256 *g, __m256 *dshift, __m256 *draw,
                                             float clamp, __m256 w, int inverse) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 s = raw, slope = one;
    if (clamp > 0.0f) {
        const __m256 c = _mm256_set1_ps(clamp);
        const __m256 th = tanh256(_mm256_mul_ps(raw, _mm256_set1_ps(1.0f / clamp))); /* as soft_clamp8 */
        s = _mm256_mul_ps(c, th);
        slope = _mm256_fnmadd_ps(th, th, one);
    }
    const __m256 gj = *g;
    if (inverse) {
        const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), s));
        const __m256 ge = _mm256_mul_ps(gj, e);
        *dshift = _mm256_sub_ps(_mm256_setzero_ps(), ge);
        *draw = _mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(_mm256_fmadd_ps(ge, _mm256_sub_ps(xv, sh), w), slope));
        *g = ge;
    } else {
        const __m256 e = exp256(s);
        const __m256 ge = _mm256_mul_ps(gj, e);
        *dshift = gj;
        *draw = _mm256_mul_ps(_mm256_fmadd_ps(ge, xv, w), slope);
        *g = ge;
    }
}

FK_AVX2 void fk_affine_step_backward_f32_avx2(const float *x, const float *shift, const float *raw, float *g,
                                              float *dshift, float *draw, size_t n, float clamp, float w, int inverse) {
    const __m256 wv = _mm256_set1_ps(w);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 gv = _mm256_loadu_ps(g + j), ds, dr;
        const __m256 sh = inverse ? _mm256_loadu_ps(shift + j) : _mm256_setzero_ps();
        affine_backward8(_mm256_loadu_ps(x + j), sh, _mm256_loadu_ps(raw + j), &gv, &ds, &dr, clamp, wv, inverse);
        _mm256_storeu_ps(g + j, gv);
        _mm256_storeu_ps(dshift + j, ds);
        _mm256_storeu_ps(draw + j, dr);
    }
    if (j < n) {
        const __m256i m = lane_mask(n - j);
        __m256 gv = _mm256_maskload_ps(g + j, m), ds, dr;
        const __m256 sh = inverse ? _mm256_maskload_ps(shift + j, m) : _mm256_setzero_ps();
        affine_backward8(_mm256_maskload_ps(x + j, m), sh, _mm256_maskload_ps(raw + j, m), &gv, &ds, &dr, clamp, wv,
                         inverse);
        _mm256_maskstore_ps(g + j, m, gv);
        _mm256_maskstore_ps(dshift + j, m, ds);
        _mm256_maskstore_ps(draw + j, m, dr);
    }
}

/* fk_affine_step_backward_f32_avx2 on rows with fewer than eight features, several rows packed
 * into each vector as in affine_rows_packed (each lane's w is its row's): the same arithmetic per
 * value, so the same bits as the row-by-row calls. Always inlined with a constant n (1 … 7). */
FK_AVX2 static inline __attribute__((always_inline)) void affine_rows_backward_packed(
    const float *x, size_t ldx, float *st, size_t ldst, float *g, size_t ldg, size_t rows, const size_t n, float clamp,
    const float *w, int inverse) {
    const size_t per = 64 / n;
    float xs[64], hs[64], rs[64], gs[64], ws[64], ds[64];
    for (size_t r0 = 0; r0 < rows; r0 += per) {
        const size_t nr = rows - r0 < per ? rows - r0 : per, count = nr * n;
        for (size_t r = 0; r < nr; r++) {
            const float *xr = x + (r0 + r) * ldx, *sr = st + (r0 + r) * ldst, *gr = g + (r0 + r) * ldg;
            for (size_t j = 0; j < n; j++) {
                xs[r * n + j] = xr[j];
                hs[r * n + j] = sr[j];
                rs[r * n + j] = sr[n + j];
                gs[r * n + j] = gr[j];
                ws[r * n + j] = w[r0 + r];
            }
        }
        for (size_t i = count; i < (count + 7) / 8 * 8; i++) xs[i] = hs[i] = rs[i] = gs[i] = ws[i] = 0.0f;
        for (size_t i = 0; i < count; i += 8) {
            __m256 gv = _mm256_loadu_ps(gs + i), dsv, drv;
            const __m256 sh = inverse ? _mm256_loadu_ps(hs + i) : _mm256_setzero_ps();
            affine_backward8(_mm256_loadu_ps(xs + i), sh, _mm256_loadu_ps(rs + i), &gv, &dsv, &drv, clamp,
                             _mm256_loadu_ps(ws + i), inverse);
            _mm256_storeu_ps(gs + i, gv);
            _mm256_storeu_ps(ds + i, dsv);
            _mm256_storeu_ps(rs + i, drv);
        }
        for (size_t r = 0; r < nr; r++) {
            float *sr = st + (r0 + r) * ldst, *gr = g + (r0 + r) * ldg;
            for (size_t j = 0; j < n; j++) {
                gr[j] = gs[r * n + j];
                sr[j] = ds[r * n + j];
                sr[n + j] = rs[r * n + j];
            }
        }
    }
}

FK_AVX2 void fk_affine_rows_backward_f32_avx2(const float *x, size_t ldx, float *st, size_t ldst, float *g,
                                              size_t ldg, size_t rows, size_t n, float clamp, const float *w,
                                              int inverse) {
    if (n == 0) return;
    if (n >= 8 || rows == 1) {
        for (size_t r = 0; r < rows; r++) {
            float *sr = st + r * ldst;
            fk_affine_step_backward_f32_avx2(x + r * ldx, sr, sr + n, g + r * ldg, sr, sr + n, n, clamp, w[r], inverse);
        }
        return;
    }
    switch (n) {
#define FK_PACKED(N) case N: affine_rows_backward_packed(x, ldx, st, ldst, g, ldg, rows, N, clamp, w, inverse); break;
    FK_PACKED(1) FK_PACKED(2) FK_PACKED(3) FK_PACKED(4) FK_PACKED(5) FK_PACKED(6) FK_PACKED(7)
#undef FK_PACKED
    }
}

/* ---- Standard normals (see Normal.c and fk_philox_normal_f32) ---------------------------- */

/* The high and low 32 bits of a·b per lane (b: the same value in every lane), from two 32 × 32
 * → 64-bit products (even and odd lanes); VPMULLD would cost Zen 1's one vector multiplier
 * twice as much as a VPMULUDQ. */
FK_AVX2 static inline void mul_u32(__m256i a, __m256i b, __m256i *hi, __m256i *lo) {
    const __m256i even = _mm256_mul_epu32(a, b);
    const __m256i odd = _mm256_mul_epu32(_mm256_shuffle_epi32(a, 0xF5), b);
    *hi = _mm256_blend_epi32(_mm256_shuffle_epi32(even, 0xF5), odd, 0xAA);
    *lo = _mm256_blend_epi32(even, _mm256_shuffle_epi32(odd, 0xA0), 0xAA);
}

/* ln(x) for positive normal x: Cephes logf (mantissa in [√½, √2), degree-8 polynomial). */
FK_AVX2 static inline __m256 log256(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256i bits = _mm256_castps_si256(x);
    __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(126)));
    x = _mm256_or_ps(_mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x807FFFFF))), _mm256_set1_ps(0.5f));
    const __m256 small = _mm256_cmp_ps(x, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
    const __m256 tmp = _mm256_and_ps(x, small);
    x = _mm256_sub_ps(x, one);
    e = _mm256_sub_ps(e, _mm256_and_ps(one, small));
    x = _mm256_add_ps(x, tmp);
    const __m256 z = _mm256_mul_ps(x, x);
    __m256 y = _mm256_set1_ps(7.0376836292e-2f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(-1.1514610310e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.1676998740e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(-1.2420140846e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.4249322787e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(-1.6668057665e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(2.0000714765e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(-2.4999993993e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(3.3333331174e-1f));
    y = _mm256_mul_ps(_mm256_mul_ps(y, x), z);
    y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
    y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
    x = _mm256_add_ps(x, y);
    return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), x);
}

FK_AVX2 static inline __m256 sin_small256(__m256 x) {
    const __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(-1.9515295891e-4f), z, _mm256_set1_ps(8.3321608736e-3f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-1.6666654611e-1f));
    return _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
}

FK_AVX2 static inline __m256 cos_small256(__m256 x) {
    const __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(2.443315711809948e-5f), z, _mm256_set1_ps(-1.388731625493765e-3f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(4.166664568298827e-2f));
    return _mm256_add_ps(_mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), _mm256_mul_ps(_mm256_mul_ps(p, z), z)),
                         _mm256_set1_ps(1.0f));
}

/* Box–Muller on eight word pairs. */
FK_AVX2 static inline void box_muller256(__m256i wr, __m256i wa, __m256 *n0, __m256 *n1) {
    const __m256 u = _mm256_mul_ps(_mm256_add_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(wr, 8)), _mm256_set1_ps(0.5f)),
                                   _mm256_set1_ps(0x1p-24f));
    const __m256 r = _mm256_sqrt_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), log256(u)));
    const __m256i k = _mm256_srli_epi32(wa, 8);
    const __m256i q = _mm256_srli_epi32(k, 22);
    const __m256i m = _mm256_and_si256(k, _mm256_set1_epi32(0x3FFFFF));
    const __m256 low = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(0x200000), m));
    const __m256 mf = _mm256_cvtepi32_ps(m);
    const __m256 a = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(4194304.0f - 0.5f), mf),
                                      _mm256_add_ps(mf, _mm256_set1_ps(0.5f)), low);
    const __m256 arg = _mm256_mul_ps(a, _mm256_set1_ps(1.5707963267948966f * 0x1p-22f));
    const __m256 ss = sin_small256(arg), cc = cos_small256(arg);
    const __m256 s = _mm256_blendv_ps(cc, ss, low), c = _mm256_blendv_ps(ss, cc, low);
    const __m256 swap = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(q, _mm256_set1_epi32(1)),
                                                                 _mm256_set1_epi32(1)));
    __m256 cs = _mm256_blendv_ps(c, s, swap), sn = _mm256_blendv_ps(s, c, swap);
    const __m256i negcs = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(_mm256_add_epi32(q, _mm256_set1_epi32(1)), 1),
                                                             _mm256_set1_epi32(1)), 31);
    const __m256i negsn = _mm256_slli_epi32(_mm256_srli_epi32(q, 1), 31);
    cs = _mm256_xor_ps(cs, _mm256_castsi256_ps(negcs));
    sn = _mm256_xor_ps(sn, _mm256_castsi256_ps(negsn));
    *n0 = _mm256_mul_ps(r, cs);
    *n1 = _mm256_mul_ps(r, sn);
}

/* Ten Philox4x32 rounds on G groups of eight counters (x[4g + i]: word i of group g, one lane
 * per block) under key (k0, k1), then Box–Muller: the four normals of each lane's block in
 * n[4g + 0..3]. The groups' rounds interleave: each round is a chain of multiply, shuffle and
 * xor, and two independent chains keep Zen 1's units busy where one waits on latency. */
FK_AVX2 static inline __attribute__((always_inline)) void philox_normals256(__m256i *x, const int G, uint64_t seed,
                                                                           __m256 *n) {
    const __m256i m0 = _mm256_set1_epi32((int)0xD2511F53u), m1 = _mm256_set1_epi32((int)0xCD9E8D57u);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        const __m256i key0 = _mm256_set1_epi32((int)k0), key1 = _mm256_set1_epi32((int)k1);
        for (int g = 0; g < G; g++) {
            __m256i *w = x + 4 * g;
            __m256i hi0, lo0, hi1, lo1;
            mul_u32(w[0], m0, &hi0, &lo0);
            mul_u32(w[2], m1, &hi1, &lo1);
            w[0] = _mm256_xor_si256(_mm256_xor_si256(hi1, w[1]), key0);
            w[1] = lo1;
            w[2] = _mm256_xor_si256(_mm256_xor_si256(hi0, w[3]), key1);
            w[3] = lo0;
        }
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    for (int g = 0; g < G; g++) {
        box_muller256(x[4 * g], x[4 * g + 1], &n[4 * g], &n[4 * g + 1]);
        box_muller256(x[4 * g + 2], x[4 * g + 3], &n[4 * g + 2], &n[4 * g + 3]);
    }
}

/* out[4·l + j] = lane l of n[j] (l < 8, j < 4): a 4 × 8 transpose, four full stores. */
FK_AVX2 static inline void store_blocks256(const __m256 *n, float *out) {
    const __m256 t0 = _mm256_unpacklo_ps(n[0], n[1]), t1 = _mm256_unpackhi_ps(n[0], n[1]);
    const __m256 t2 = _mm256_unpacklo_ps(n[2], n[3]), t3 = _mm256_unpackhi_ps(n[2], n[3]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    _mm256_storeu_ps(out, _mm256_permute2f128_ps(u0, u1, 0x20));
    _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(u2, u3, 0x20));
    _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(u0, u1, 0x31));
    _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(u2, u3, 0x31));
}

FK_AVX2 void fk_philox_normal_f32_avx2(uint64_t seed, uint64_t row, uint32_t stream, float *out, size_t count) {
    const size_t blocks = (count + 3) / 4;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i c1 = _mm256_set1_epi32((int)(uint32_t)row), c2 = _mm256_set1_epi32((int)(uint32_t)(row >> 32));
    const __m256i c3 = _mm256_set1_epi32((int)stream);
    size_t b0 = 0;
    for (; 4 * b0 + 64 <= count; b0 += 16) { /* two full groups of eight blocks */
        __m256i x[8] = {_mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)b0), lanes), c1, c2, c3,
                        _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)(b0 + 8)), lanes), c1, c2, c3};
        __m256 n[8];
        philox_normals256(x, 2, seed, n);
        store_blocks256(n, out + 4 * b0);
        store_blocks256(n + 4, out + 4 * b0 + 32);
    }
    for (; b0 < blocks; b0 += 8) {
        __m256i x[4] = {_mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)b0), lanes), c1, c2, c3};
        __m256 n[4];
        philox_normals256(x, 1, seed, n);
        if (4 * b0 + 32 <= count) {
            store_blocks256(n, out + 4 * b0);
            continue;
        }
        float v[4][8];
        for (int j = 0; j < 4; j++) _mm256_storeu_ps(v[j], n[j]);
        for (size_t l = 0; l < 8 && b0 + l < blocks; l++) {
            const size_t base = 4 * (b0 + l);
            for (size_t j = 0; j < 4 && base + j < count; j++) out[base + j] = v[j][l];
        }
    }
}

/* Eight (row, block) counters per vector, taken in row-major order over rows × ⌈count/4⌉
 * blocks: rows of few blocks fill the lanes that the one-row kernel leaves idle (rows of eight
 * blocks or more run one row at a time, their vectors being full already). Each lane
 * computes what fk_philox_normal_f32_avx2 computes for its row and block, so the same bits. */
FK_AVX2 void fk_philox_normal_rows_f32_avx2(uint64_t seed, uint64_t first_row, size_t rows, uint32_t stream,
                                            size_t count, float *out, size_t ldo) {
    const size_t blocks = (count + 3) / 4, total = rows * blocks;
    if (total == 0) return;
    if (blocks >= 8) { /* full vectors within each row already: no packing overhead */
        for (size_t r = 0; r < rows; r++) fk_philox_normal_f32_avx2(seed, first_row + r, stream, out + r * ldo, count);
        return;
    }
    uint32_t c0[8], c1[8], c2[8];
    size_t lane_row[8], lane_block[8];
    float v[4][8];
    size_t r = 0, b = 0;
    for (size_t done = 0; done < total; done += 8) {
        const size_t lanes = total - done < 8 ? total - done : 8;
        for (size_t l = 0; l < 8; l++) {
            const uint64_t row = first_row + r;
            c0[l] = (uint32_t)b;
            c1[l] = (uint32_t)row;
            c2[l] = (uint32_t)(row >> 32);
            lane_row[l] = r;
            lane_block[l] = b;
            if (l < lanes && ++b == blocks) { b = 0; r++; }
        }
        __m256 n[4];
        __m256i x[4] = {_mm256_loadu_si256((const __m256i *)c0), _mm256_loadu_si256((const __m256i *)c1),
                        _mm256_loadu_si256((const __m256i *)c2), _mm256_set1_epi32((int)stream)};
        philox_normals256(x, 1, seed, n);
        for (int j = 0; j < 4; j++) _mm256_storeu_ps(v[j], n[j]);
        for (size_t l = 0; l < lanes; l++) {
            float *dst = out + lane_row[l] * ldo;
            const size_t base = 4 * lane_block[l];
            for (size_t j = 0; j < 4 && base + j < count; j++) dst[base + j] = v[j][l];
        }
    }
}

#endif
