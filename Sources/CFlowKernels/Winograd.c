/* Winograd convolution F(m×m, 3×3), m = 2 or 4 (fk_winograd3x3_*; FlowKernels.h): the weight
 * transform, and per chunk of tiles the input transform, the per-frequency products and the
 * output transform. Portable and AVX2+FMA variants of each stage, one driver.
 *
 * Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016): an m×m output
 * tile is Aᵀ [Σ_c (G g_{o,c} Gᵀ) ⊙ (Bᵀ d_c B)] A for the a×a input patch d_c (a = m + 2) of each
 * channel, so a tile costs a²·cin·out multiply-adds instead of 9m²·cin·out: 16 for 4 outputs
 * (2.25× fewer) with m = 2, 36 for 16 (4× fewer) with m = 4. Matrices (interpolation points 0, ±1
 * and ∞; for m = 4 also ±2):
 *   m = 2: Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1], G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
 *          Aᵀ = [1 1 1 0; 0 1 −1 −1];
 *   m = 4: Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1],
 *          G = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙; 1⁄24 1⁄12 ⅙; 1⁄24 −1⁄12 ⅙; 0 0 1],
 *          Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1].
 * wg_tile_size picks the m with fewer multiply-adds for the plane (m = 4 from 4×4 planes on).
 *
 * Layouts (cin8 = cin rounded up to 8, op = out rounded up to 4):
 *   S[((n·hp + r)·wp + q)·cin8 + c]  a group of samples staged with a zero border: pixel (r − 1, q − 1)
 *                                    of sample n, hp × wp = (m⌈h/m⌉ + 2) × (m⌈w/m⌉ + 2), so every
 *                                    tile's a×a patch is inside and the transform needs no bounds;
 *   V[ξ·vstride + k·cin8 + c]        transformed input of tile k of a chunk, ξ = a·i + j the frequency;
 *   U[(ξ·cin + c)·op + o]            transformed weight (fk_winograd3x3_pack_f32);
 *   M[(ξ·chunk + k)·op + o]          products, M_ξ = V_ξ · U_ξ.
 * Every stage does the same operations in the same order in both variants (each product element
 * is one chain of fused multiply-adds over c from 0; the transforms' terms with a coefficient
 * other than ±1 are fused multiply-adds in both), so the variants agree bitwise and a tile's
 * result does not depend on its chunk or position. */
#include <math.h>
#include <string.h>

#include "FlowKernels.h"
#include "Internal.h"

static size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

/* The output tile size for an h × w plane: the m of fewer multiply-adds, a²·⌈h/m⌉·⌈w/m⌉. */
static size_t wg_tile_size(size_t h, size_t w) {
    const size_t two = 16 * ((h + 1) / 2) * ((w + 1) / 2), four = 36 * ((h + 3) / 4) * ((w + 3) / 4);
    return four < two ? 4 : 2;
}

size_t fk_winograd3x3_packed_count(size_t out, size_t cin, size_t h, size_t w) {
    const size_t a = wg_tile_size(h, w) + 2;
    return a * a * cin * round_up(out, 4);
}

/* G (a × 3) of the tile size, exact in double. */
static void wg_g(size_t m, double g[6][3]) {
    static const double g2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    static const double g4[6][3] = {{0.25, 0, 0},
                                    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                    {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                    {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                    {0, 0, 1}};
    for (size_t i = 0; i < m + 2; i++)
        for (size_t j = 0; j < 3; j++) g[i][j] = m == 2 ? g2[i][j] : g4[i][j];
}

void fk_winograd3x3_pack_f32(const float *weight, size_t out, size_t cin, size_t h, size_t w, float *u) {
    const size_t m = wg_tile_size(h, w), a = m + 2, op = round_up(out, 4);
    double g[6][3];
    wg_g(m, g);
    memset(u, 0, a * a * cin * op * sizeof(float));
    for (size_t o = 0; o < out; o++)
        for (size_t c = 0; c < cin; c++) {
            const float *k = weight + (o * cin + c) * 9;
            double t[6][3];
            for (size_t i = 0; i < a; i++) /* t = G k */
                for (size_t j = 0; j < 3; j++) t[i][j] = g[i][0] * k[j] + g[i][1] * k[3 + j] + g[i][2] * k[6 + j];
            for (size_t i = 0; i < a; i++) /* G k Gᵀ */
                for (size_t j = 0; j < a; j++)
                    u[((i * a + j) * cin + c) * op + o] = (float)(t[i][0] * g[j][0] + t[i][1] * g[j][1] + t[i][2] * g[j][2]);
        }
}

/* The shape of a call: plane, tile size m (a = m + 2, a² frequencies), tiles, staged plane
 * (hp × wp with its zero border), samples per group, tiles per chunk, strides of V and M. */
typedef struct {
    size_t h, w, hw, m, a, a2, tilesW, tiles, hp, wp, cin, cin8, out, op, group, chunk, vstride;
} wg_shape;

static wg_shape wg_shape_of(size_t cin, size_t out, size_t h, size_t w) {
    wg_shape s;
    s.h = h;
    s.w = w;
    s.hw = h * w;
    s.m = wg_tile_size(h, w);
    s.a = s.m + 2;
    s.a2 = s.a * s.a;
    s.tilesW = (w + s.m - 1) / s.m;
    s.tiles = ((h + s.m - 1) / s.m) * s.tilesW;
    s.hp = s.m * ((h + s.m - 1) / s.m) + 2;
    s.wp = s.m * s.tilesW + 2;
    s.cin = cin;
    s.cin8 = round_up(cin, 8);
    s.out = out;
    s.op = round_up(out, 4);
    /* A chunk's V (a²·chunk·cin8 floats, 32–36 KiB at cin = 64: about L1's size) is mostly still
     * in L1 when its products read it; one cache line between frequencies keeps the transform's
     * stores from landing 4 KiB apart. */
    s.chunk = s.m == 2 ? 8 : 4;
    s.vstride = s.chunk * s.cin8 + 16;
    s.group = s.tiles >= s.chunk ? 1 : s.chunk / s.tiles;
    return s;
}

size_t fk_winograd3x3_scratch_count(size_t cin, size_t out, size_t h, size_t w) {
    const wg_shape s = wg_shape_of(cin, out, h, w);
    return s.group * s.hp * s.wp * s.cin8 + s.a2 * (s.vstride + s.chunk * s.op);
}

/* The AVX2 products' register blocks: −1 by processor (wg_split_simd), 0 8-lane, 1 4-lane. */
static int forced_blocks = -1;

void fk_winograd3x3_force_blocks(int mode) {
    __atomic_store_n(&forced_blocks, mode < 0 ? -1 : mode ? 1 : 0, __ATOMIC_RELAXED);
}

/* Output tile of a chunk: the sample's output (channel o at y + o·hw) and the tile's top-left pixel. */
typedef struct {
    float *y;
    size_t row, col;
} wg_out;

/* The largest chunk (tiles) of any tile size. */
#define WG_MAX_CHUNK 8

/* ---- Transforms of one vector of values, generic over the lane type ---------------------
 * Written once as macros over add/sub/fma so that the portable variant (floats) and the AVX2
 * variant (vectors) run the same operations in the same order. FMA(a, b, c) = a·b + c rounded once. */

/* Bᵀ: x[0..a) → y[0..a). */
#define WG_B2(x, y, ADD, SUB, FMA, K)                                                                 \
    do {                                                                                              \
        y[0] = SUB(x[0], x[2]);                                                                       \
        y[1] = ADD(x[1], x[2]);                                                                       \
        y[2] = SUB(x[2], x[1]);                                                                       \
        y[3] = SUB(x[1], x[3]);                                                                       \
    } while (0)
#define WG_B4(x, y, ADD, SUB, FMA, K)                                                                 \
    do {                                                                                              \
        y[0] = FMA(K(4.0f), x[0], FMA(K(-5.0f), x[2], x[4]));                                         \
        y[1] = FMA(K(-4.0f), ADD(x[1], x[2]), ADD(x[3], x[4]));                                       \
        y[2] = FMA(K(4.0f), SUB(x[1], x[2]), SUB(x[4], x[3]));                                        \
        y[3] = FMA(K(2.0f), SUB(x[3], x[1]), SUB(x[4], x[2]));                                        \
        y[4] = FMA(K(-2.0f), SUB(x[3], x[1]), SUB(x[4], x[2]));                                       \
        y[5] = FMA(K(4.0f), x[1], FMA(K(-5.0f), x[3], x[5]));                                         \
    } while (0)
/* Aᵀ: x[0..a) → y[0..m). */
#define WG_A2(x, y, ADD, SUB, FMA, K)                                                                 \
    do {                                                                                              \
        y[0] = ADD(ADD(x[0], x[1]), x[2]);                                                            \
        y[1] = SUB(SUB(x[1], x[2]), x[3]);                                                            \
    } while (0)
#define WG_A4(x, y, ADD, SUB, FMA, K)                                                                 \
    do {                                                                                              \
        y[0] = ADD(ADD(x[0], ADD(x[1], x[2])), ADD(x[3], x[4]));                                      \
        y[1] = FMA(K(2.0f), SUB(x[3], x[4]), SUB(x[1], x[2]));                                        \
        y[2] = FMA(K(4.0f), ADD(x[3], x[4]), ADD(x[1], x[2]));                                        \
        y[3] = ADD(FMA(K(8.0f), SUB(x[3], x[4]), SUB(x[1], x[2])), x[5]);                             \
    } while (0)

#define S_ADD(a, b) ((a) + (b))
#define S_SUB(a, b) ((a) - (b))
#define S_FMA(a, b, c) fmaf((a), (b), (c))
#define S_K(v) (v)

/* ---- Portable ---------------------------------------------------------------------------- */

/* `count` samples of x (channel c, pixel p of sample n at x[n·lds + p·ldp + c·ldc]) into S, the
 * border and the channels from cin to cin8 zero. */
static void wg_stage_portable(const float *x, size_t lds, size_t ldp, size_t ldc, size_t count, const wg_shape *s,
                              float *staged) {
    memset(staged, 0, count * s->hp * s->wp * s->cin8 * sizeof(float));
    for (size_t n = 0; n < count; n++)
        for (size_t c = 0; c < s->cin; c++) {
            const float *plane = x + n * lds + c * ldc;
            float *d = staged + (n * s->hp * s->wp + s->wp + 1) * s->cin8 + c;
            for (size_t r = 0; r < s->h; r++)
                for (size_t q = 0; q < s->w; q++) d[(r * s->wp + q) * s->cin8] = plane[(r * s->w + q) * ldp];
        }
}

/* V of the tiles whose patches start at patch[k] (row stride wp·cin8, pixel stride cin8):
 * Bᵀ d B as columns first (t = Bᵀ d), then rows. */
static void wg_input_portable(const float *const *patch, size_t nt, const wg_shape *s, float *v) {
    const size_t a = s->a, row = s->wp * s->cin8;
    for (size_t k = 0; k < nt; k++)
        for (size_t c = 0; c < s->cin; c++) {
            float t[6][6];
            for (size_t j = 0; j < a; j++) {
                float x[6], y[6];
                for (size_t i = 0; i < a; i++) x[i] = patch[k][i * row + j * s->cin8 + c];
                if (s->m == 2) WG_B2(x, y, S_ADD, S_SUB, S_FMA, S_K);
                else WG_B4(x, y, S_ADD, S_SUB, S_FMA, S_K);
                for (size_t i = 0; i < a; i++) t[i][j] = y[i];
            }
            for (size_t i = 0; i < a; i++) {
                float y[6];
                if (s->m == 2) WG_B2(t[i], y, S_ADD, S_SUB, S_FMA, S_K);
                else WG_B4(t[i], y, S_ADD, S_SUB, S_FMA, S_K);
                for (size_t j = 0; j < a; j++) v[(i * a + j) * s->vstride + k * s->cin8 + c] = y[j];
            }
        }
}

static void wg_product_portable(const float *v, const float *u, float *m, size_t nt, const wg_shape *s) {
    for (size_t xi = 0; xi < s->a2; xi++) {
        const float *vx = v + xi * s->vstride, *ux = u + xi * s->cin * s->op;
        float *mx = m + xi * s->chunk * s->op;
        for (size_t k = 0; k < nt; k++)
            for (size_t o = 0; o < s->out; o++) {
                float acc = 0.0f;
                for (size_t c = 0; c < s->cin; c++) acc = fmaf(vx[k * s->cin8 + c], ux[c * s->op + o], acc);
                mx[k * s->op + o] = acc;
            }
    }
}

/* Aᵀ M A (+ bias) of channel o of one tile (M values at mk + ξ·step), columns first; r is m × m. */
static void wg_output_tile_portable(const float *mk, size_t step, const wg_shape *s, float bias, int biased,
                                    float r[4][4]) {
    const size_t a = s->a, m = s->m;
    float t[4][6];
    for (size_t j = 0; j < a; j++) {
        float x[6], y[4];
        for (size_t i = 0; i < a; i++) x[i] = mk[(i * a + j) * step];
        if (m == 2) WG_A2(x, y, S_ADD, S_SUB, S_FMA, S_K);
        else WG_A4(x, y, S_ADD, S_SUB, S_FMA, S_K);
        for (size_t i = 0; i < m; i++) t[i][j] = y[i];
    }
    for (size_t i = 0; i < m; i++) {
        float y[4];
        if (m == 2) WG_A2(t[i], y, S_ADD, S_SUB, S_FMA, S_K);
        else WG_A4(t[i], y, S_ADD, S_SUB, S_FMA, S_K);
        for (size_t j = 0; j < m; j++) r[i][j] = biased ? y[j] + bias : y[j];
    }
}

static void wg_output_portable(const float *m, const wg_out *dst, size_t nt, const float *bias, const wg_shape *s) {
    for (size_t k = 0; k < nt; k++)
        for (size_t o = 0; o < s->out; o++) {
            float r[4][4];
            wg_output_tile_portable(m + k * s->op + o, s->chunk * s->op, s, bias ? bias[o] : 0.0f, bias != 0, r);
            float *plane = dst[k].y + o * s->hw;
            for (size_t i = 0; i < s->m && dst[k].row + i < s->h; i++)
                for (size_t j = 0; j < s->m && dst[k].col + j < s->w; j++)
                    plane[(dst[k].row + i) * s->w + dst[k].col + j] = r[i][j];
        }
}

/* ---- AVX2 + FMA -------------------------------------------------------------------------- */

#if FK_HAVE_X86
#include <immintrin.h>

#define V_ADD(a, b) _mm256_add_ps((a), (b))
#define V_SUB(a, b) _mm256_sub_ps((a), (b))
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define V_K(v) _mm256_set1_ps(v)
#define Q_ADD(a, b) _mm_add_ps((a), (b))
#define Q_SUB(a, b) _mm_sub_ps((a), (b))
#define Q_FMA(a, b, c) _mm_fmadd_ps((a), (b), (c))
#define Q_K(v) _mm_set1_ps(v)

/* wg_stage_portable: the border by vector stores, planar samples (ldp = 1) by 8 × 8 transposes (eight
 * channels' vectors of eight pixels become eight pixels' vectors of eight channels, each stored at
 * its pixel's place), the remaining pixels and channels one by one. */
FK_AVX2 static void wg_stage_avx2(const float *x, size_t lds, size_t ldp, size_t ldc, size_t count, const wg_shape *s,
                                  float *staged) {
    if (ldp != 1) {
        wg_stage_portable(x, lds, ldp, ldc, count, s, staged);
        return;
    }
    const size_t cin8 = s->cin8, hw = s->hw, w = s->w, wp = s->wp;
    const __m256 zero = _mm256_setzero_ps();
    for (size_t n = 0; n < count; n++) {
        const float *xs = x + n * lds;
        float *d = staged + n * s->hp * wp * cin8;
        /* Border: row 0 and the rows from h + 1 whole, columns 0 and from w + 1 of the rows between. */
        for (size_t r = 0; r < s->hp; r++) {
            const int inner = r >= 1 && r <= s->h;
            for (size_t q = 0; q < wp; q = inner && q == 0 ? w + 1 : q + 1)
                for (size_t c = 0; c < cin8; c += 8) _mm256_storeu_ps(d + (r * wp + q) * cin8 + c, zero);
        }
        /* Pixel p = (r, q) goes to S pixel (r + 1, q + 1): offset (r·wp + q)·cin8 from `inner`. */
        float *inner = d + (wp + 1) * cin8;
        size_t c = 0;
        for (; c + 8 <= s->cin; c += 8) {
            size_t p = 0, r = 0, q = 0;
            for (; p + 8 <= hw; p += 8) {
                __m256 v[8], t[8], u[8];
                for (int i = 0; i < 8; i++) v[i] = _mm256_loadu_ps(xs + (c + (size_t)i) * ldc + p);
                for (int i = 0; i < 8; i += 2) {
                    t[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
                    t[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
                }
                for (int i = 0; i < 8; i += 4) {
                    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
                    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
                    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
                    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
                }
                /* u[j] holds channels 0–3 and u[j + 4] channels 4–7 of pixel p + j (low halves) and of
                 * pixel p + j + 4 (high halves). */
                size_t at[8];
                for (int j = 0; j < 8; j++) {
                    at[j] = (r * wp + q) * cin8 + c;
                    if (++q == w) {
                        q = 0;
                        r++;
                    }
                }
                for (int j = 0; j < 4; j++) {
                    _mm256_storeu_ps(inner + at[j], _mm256_permute2f128_ps(u[j], u[j + 4], 0x20));
                    _mm256_storeu_ps(inner + at[j + 4], _mm256_permute2f128_ps(u[j], u[j + 4], 0x31));
                }
            }
            for (; p < hw; p++) {
                for (size_t i = 0; i < 8; i++) inner[(r * wp + q) * cin8 + c + i] = xs[(c + i) * ldc + p];
                if (++q == w) {
                    q = 0;
                    r++;
                }
            }
        }
        if (c < cin8) /* the last, partial group: its channels, then zeros up to cin8 */
            for (size_t r = 0; r < s->h; r++)
                for (size_t q = 0; q < w; q++) {
                    float *at = inner + (r * wp + q) * cin8;
                    for (size_t k = c; k < cin8; k++) at[k] = k < s->cin ? xs[k * ldc + r * w + q] : 0.0f;
                }
    }
}

/* Eight channels at a time. m = 2: rows 1 and 2 of Bᵀ share their inputs (d₁ + d₂, d₂ − d₁), so the
 * patch is read as rows (1, 2), then (0, 2) and (1, 3): at most 8 inputs and 8 sums live. m = 4:
 * the column transform of the 6×6 patch goes through a stack buffer (L1), then each row's. */
FK_AVX2 static inline void wg_input_rows2(const float *a, const float *b, size_t cs, int op, float *v0, float *v1,
                                          size_t step) {
    __m256 t0[4], t1[4];
    for (int j = 0; j < 4; j++) {
        const __m256 x = _mm256_loadu_ps(a + (size_t)j * cs), y = _mm256_loadu_ps(b + (size_t)j * cs);
        if (op == 0) { /* t₁ = d₁ + d₂, t₂ = d₂ − d₁ */
            t0[j] = _mm256_add_ps(x, y);
            t1[j] = _mm256_sub_ps(y, x);
        } else { /* t = x − y */
            t0[j] = _mm256_sub_ps(x, y);
        }
    }
    __m256 y[4];
    WG_B2(t0, y, V_ADD, V_SUB, V_FMA, V_K);
    for (int j = 0; j < 4; j++) _mm256_storeu_ps(v0 + (size_t)j * step, y[j]);
    if (op == 0) {
        WG_B2(t1, y, V_ADD, V_SUB, V_FMA, V_K);
        for (int j = 0; j < 4; j++) _mm256_storeu_ps(v1 + (size_t)j * step, y[j]);
    }
}

FK_AVX2 static void wg_input_avx2(const float *const *patch, size_t nt, const wg_shape *s, float *v) {
    const size_t step = s->vstride, row = s->wp * s->cin8, cs = s->cin8;
    for (size_t k = 0; k < nt; k++)
        for (size_t c = 0; c < s->cin8; c += 8) {
            const float *d = patch[k] + c;
            float *vk = v + k * cs + c;
            if (s->m == 2) {
                wg_input_rows2(d + row, d + 2 * row, cs, 0, vk + 4 * step, vk + 8 * step, step); /* rows 1, 2 */
                wg_input_rows2(d, d + 2 * row, cs, 1, vk, 0, step);                              /* row 0 */
                wg_input_rows2(d + row, d + 3 * row, cs, 1, vk + 12 * step, 0, step);            /* row 3 */
                continue;
            }
            __m256 t[6][6];
            for (size_t j = 0; j < 6; j++) {
                __m256 x[6], y[6];
                for (size_t i = 0; i < 6; i++) x[i] = _mm256_loadu_ps(d + i * row + j * cs);
                WG_B4(x, y, V_ADD, V_SUB, V_FMA, V_K);
                for (size_t i = 0; i < 6; i++) t[i][j] = y[i];
            }
            for (size_t i = 0; i < 6; i++) {
                __m256 y[6];
                WG_B4(t[i], y, V_ADD, V_SUB, V_FMA, V_K);
                for (size_t j = 0; j < 6; j++) _mm256_storeu_ps(vk + (i * 6 + j) * step, y[j]);
            }
        }
}

/* TN tiles × N vectors of LANES output channels of one frequency: TN·N accumulators (at most
 * 12), N weight vectors and one broadcast of V per tile and channel. wg_micro8 runs 8-lane
 * vectors; wg_micro4 4-lane ones (the last 4 channels of a block, and every block on processors
 * that split 8-lane operations, wg_split_simd). */
#define WG_MICRO(NAME, VEC, LANES, ZERO, LOAD, BROADCAST, FMA, STORE)                                      \
    FK_AVX2 static inline __attribute__((always_inline)) void NAME(const float *v, size_t cin8, const float *u, \
                                                                   size_t op, size_t cin, float *m, const int N, \
                                                                   const int TN) {                          \
        VEC acc[6][3];                                                                                     \
        for (int t = 0; t < TN; t++)                                                                       \
            for (int y = 0; y < N; y++) acc[t][y] = ZERO();                                                \
        for (size_t c = 0; c < cin; c++) {                                                                 \
            VEC uc[3];                                                                                     \
            for (int y = 0; y < N; y++) uc[y] = LOAD(u + c * op + LANES * y);                              \
            for (int t = 0; t < TN; t++) {                                                                 \
                const VEC b = BROADCAST(v + (size_t)t * cin8 + c);                                         \
                for (int y = 0; y < N; y++) acc[t][y] = FMA(b, uc[y], acc[t][y]);                          \
            }                                                                                              \
        }                                                                                                  \
        for (int t = 0; t < TN; t++)                                                                       \
            for (int y = 0; y < N; y++) STORE(m + (size_t)t * op + LANES * y, acc[t][y]);                  \
    }

WG_MICRO(wg_micro8, __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_broadcast_ss, _mm256_fmadd_ps,
         _mm256_storeu_ps)
WG_MICRO(wg_micro4, __m128, 4, _mm_setzero_ps, _mm_loadu_ps, _mm_broadcast_ss, _mm_fmadd_ps, _mm_storeu_ps)

/* All nt tiles of one block of output channels: TN at a time, the rest one by one (each product
 * element is the same chain of FMAs whichever way its tile is grouped). At least ten independent
 * accumulators per channel step hide the FMA latency (Zen 1: 5 cycles, two 4-lane FMAs a cycle);
 * only the 4-channel remainder block, for outputs that are not a multiple of 8, has fewer. */
#define WG_BLOCK(NAME, MICRO, N, TN)                                                                      \
    FK_AVX2 static void NAME(const float *v, size_t cin8, const float *u, size_t op, size_t cin, float *m, \
                             size_t nt) {                                                                 \
        size_t k = 0;                                                                                     \
        for (; k + TN <= nt; k += TN) MICRO(v + k * cin8, cin8, u, op, cin, m + k * op, N, TN);           \
        for (; k < nt; k++) MICRO(v + k * cin8, cin8, u, op, cin, m + k * op, N, 1);                      \
    }

WG_BLOCK(wg_block24, wg_micro8, 3, 3)
WG_BLOCK(wg_block16, wg_micro8, 2, 4)
WG_BLOCK(wg_block8, wg_micro8, 1, 6)
WG_BLOCK(wg_block12q, wg_micro4, 3, 4)
WG_BLOCK(wg_block8q, wg_micro4, 2, 6)
WG_BLOCK(wg_block4q, wg_micro4, 1, 4)

/* Whether the processor executes 8-lane operations as two 4-lane halves (AMD Zen 1: family 17h,
 * models below 30h). There a 4-lane FMA costs half an 8-lane one, so 4-lane blocks lose nothing,
 * and their broadcast of V is a plain load, where the 8-lane broadcast costs an extra operation:
 * blocks of 12 channels as three 4-lane vectors ran the Glow conditioners' products faster there
 * than 8-lane blocks. fk_winograd3x3_force_blocks overrides the choice (tests run both). */
static int wg_split_simd(void) {
    const int forced = __atomic_load_n(&forced_blocks, __ATOMIC_RELAXED);
    if (forced >= 0) return forced;
    static int split = -1;
    int value = __atomic_load_n(&split, __ATOMIC_RELAXED);
    if (value < 0) {
        __builtin_cpu_init();
        value = __builtin_cpu_is("znver1") ? 1 : 0;
        __atomic_store_n(&split, value, __ATOMIC_RELAXED);
    }
    return value;
}

FK_AVX2 static void wg_product_avx2(const float *v, const float *u, float *m, size_t nt, const wg_shape *s) {
    const int split = wg_split_simd();
    for (size_t xi = 0; xi < s->a2; xi++) {
        const float *vx = v + xi * s->vstride, *ux = u + xi * s->cin * s->op;
        float *mx = m + xi * s->chunk * s->op;
        for (size_t o = 0; o < s->op;) {
            const size_t rem = s->op - o;
            size_t width;
            if (split) {
                width = rem >= 12 ? 12 : rem;
                if (width == 12) wg_block12q(vx, s->cin8, ux + o, s->op, s->cin, mx + o, nt);
                else if (width == 8) wg_block8q(vx, s->cin8, ux + o, s->op, s->cin, mx + o, nt);
                else wg_block4q(vx, s->cin8, ux + o, s->op, s->cin, mx + o, nt);
            } else {
                width = rem >= 24 ? 24 : rem >= 16 ? 16 : rem >= 8 ? 8 : 4;
                if (width == 24) wg_block24(vx, s->cin8, ux + o, s->op, s->cin, mx + o, nt);
                else if (width == 16) wg_block16(vx, s->cin8, ux + o, s->op, s->cin, mx + o, nt);
                else if (width == 8) wg_block8(vx, s->cin8, ux + o, s->op, s->cin, mx + o, nt);
                else wg_block4q(vx, s->cin8, ux + o, s->op, s->cin, mx + o, nt);
            }
            o += width;
        }
    }
}

/* Four channels at a time (op is a multiple of 4): the tile's m×m results of the four channels,
 * each row transposed so that every channel's row of m pixels goes out with one or two stores;
 * tiles cut by the plane's edge and the channels past `out` one by one. */
FK_AVX2 static void wg_output_avx2(const float *m, const wg_out *dst, size_t nt, const float *bias,
                                   const wg_shape *s) {
    const size_t step = s->chunk * s->op, a = s->a, mm = s->m;
    for (size_t k = 0; k < nt; k++) {
        const int whole = dst[k].row + mm <= s->h && dst[k].col + mm <= s->w;
        for (size_t o = 0; o < s->out; o += 4) {
            const float *mk = m + k * s->op + o;
            __m128 t[4][6], r[4][4];
            for (size_t j = 0; j < a; j++) {
                __m128 x[6], y[4];
                for (size_t i = 0; i < a; i++) x[i] = _mm_loadu_ps(mk + (i * a + j) * step);
                if (mm == 2) WG_A2(x, y, Q_ADD, Q_SUB, Q_FMA, Q_K);
                else WG_A4(x, y, Q_ADD, Q_SUB, Q_FMA, Q_K);
                for (size_t i = 0; i < mm; i++) t[i][j] = y[i];
            }
            const size_t live = s->out - o < 4 ? s->out - o : 4;
            float b[4] = {0, 0, 0, 0};
            if (bias) memcpy(b, bias + o, live * sizeof(float));
            const __m128 bv = _mm_loadu_ps(b);
            for (size_t i = 0; i < mm; i++) {
                if (mm == 2) WG_A2(t[i], r[i], Q_ADD, Q_SUB, Q_FMA, Q_K);
                else WG_A4(t[i], r[i], Q_ADD, Q_SUB, Q_FMA, Q_K);
                if (bias)
                    for (size_t j = 0; j < mm; j++) r[i][j] = _mm_add_ps(r[i][j], bv);
            }
            float *top = dst[k].y + o * s->hw + dst[k].row * s->w + dst[k].col;
            if (whole && live == 4) {
                if (mm == 2) { /* channel l: (r00, r01, r10, r11) as two pairs */
                    __m128 p0 = r[0][0], p1 = r[0][1], p2 = r[1][0], p3 = r[1][1];
                    _MM_TRANSPOSE4_PS(p0, p1, p2, p3);
                    const __m128 ch[4] = {p0, p1, p2, p3};
                    for (size_t l = 0; l < 4; l++) {
                        _mm_storel_pi((__m64 *)(top + l * s->hw), ch[l]);
                        _mm_storeh_pi((__m64 *)(top + l * s->hw + s->w), ch[l]);
                    }
                } else { /* row i: channel l's four pixels */
                    for (size_t i = 0; i < 4; i++) {
                        __m128 p0 = r[i][0], p1 = r[i][1], p2 = r[i][2], p3 = r[i][3];
                        _MM_TRANSPOSE4_PS(p0, p1, p2, p3);
                        _mm_storeu_ps(top + i * s->w, p0);
                        _mm_storeu_ps(top + s->hw + i * s->w, p1);
                        _mm_storeu_ps(top + 2 * s->hw + i * s->w, p2);
                        _mm_storeu_ps(top + 3 * s->hw + i * s->w, p3);
                    }
                }
                continue;
            }
            float lanes[4][4][4];
            for (size_t i = 0; i < mm; i++)
                for (size_t j = 0; j < mm; j++) _mm_storeu_ps(lanes[i][j], r[i][j]);
            for (size_t l = 0; l < live; l++)
                for (size_t i = 0; i < mm && dst[k].row + i < s->h; i++)
                    for (size_t j = 0; j < mm && dst[k].col + j < s->w; j++)
                        top[l * s->hw + i * s->w + j] = lanes[i][j][l];
        }
    }
}
#endif

/* ---- Driver ------------------------------------------------------------------------------- */

typedef void (*wg_stage_fn)(const float *, size_t, size_t, size_t, size_t, const wg_shape *, float *);
typedef void (*wg_input_fn)(const float *const *, size_t, const wg_shape *, float *);
typedef void (*wg_product_fn)(const float *, const float *, float *, size_t, const wg_shape *);
typedef void (*wg_output_fn)(const float *, const wg_out *, size_t, const float *, const wg_shape *);

void fk_winograd3x3_f32(const float *x, size_t lds, size_t ldp, size_t ldc, size_t samples, size_t cin, size_t h,
                        size_t w, const float *u, const float *bias, size_t out, float *y, size_t ldy,
                        float *scratch) {
    if (!samples || !cin || !out || !h || !w) return;
    const wg_shape s = wg_shape_of(cin, out, h, w);
    wg_stage_fn stage = wg_stage_portable;
    wg_input_fn input = wg_input_portable;
    wg_product_fn product = wg_product_portable;
    wg_output_fn output = wg_output_portable;
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        stage = wg_stage_avx2;
        input = wg_input_avx2;
        product = wg_product_avx2;
        output = wg_output_avx2;
    }
#endif
    const size_t sampleStride = s.hp * s.wp * s.cin8;
    float *staged = scratch, *v = scratch + s.group * sampleStride, *m = v + s.a2 * s.vstride;
    const float *patch[WG_MAX_CHUNK];
    wg_out dst[WG_MAX_CHUNK];
    for (size_t first = 0; first < samples; first += s.group) {
        const size_t count = samples - first < s.group ? samples - first : s.group;
        stage(x + first * lds, lds, ldp, ldc, count, &s, staged);
        const size_t tiles = count * s.tiles;
        for (size_t q0 = 0; q0 < tiles; q0 += s.chunk) {
            const size_t nt = tiles - q0 < s.chunk ? tiles - q0 : s.chunk;
            for (size_t k = 0; k < nt; k++) {
                const size_t n = (q0 + k) / s.tiles, t = (q0 + k) % s.tiles;
                const size_t row = s.m * (t / s.tilesW), col = s.m * (t % s.tilesW);
                patch[k] = staged + n * sampleStride + (row * s.wp + col) * s.cin8;
                dst[k].y = y + (first + n) * ldy;
                dst[k].row = row;
                dst[k].col = col;
            }
            input(patch, nt, &s, v);
            product(v, u, m, nt, &s);
            output(m, dst, nt, bias, &s);
        }
    }
}
