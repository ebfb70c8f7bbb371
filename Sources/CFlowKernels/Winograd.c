/* Winograd F(2×2, 3×3) convolution (fk_winograd3x3_*; FlowKernels.h): the weight transform, and
 * per chunk of tiles the input transform, the sixteen per-frequency products and the output
 * transform. Portable and AVX2+FMA variants of the three stages, one driver.
 *
 * Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016), with
 *   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
 *   Aᵀ = [1 1 1 0; 0 1 −1 −1]:
 * a 2×2 output tile is Aᵀ [Σ_c (G g_{o,c} Gᵀ) ⊙ (Bᵀ d_c B)] A for the 4×4 input patch d_c of each
 * channel, so one tile costs 16·cin·out multiply-adds instead of 36·cin·out.
 *
 * Layouts (cin8 = cin rounded up to 8, op = out rounded up to 4):
 *   S[((n·hp + r)·wp + q)·cin8 + c] a group of samples staged with a zero border: pixel (r − 1, q − 1)
 *                                   of sample n, hp × wp = (2⌈h/2⌉ + 2) × (2⌈w/2⌉ + 2), so every
 *                                   tile's 4×4 patch is inside and the transform needs no bounds;
 *   V[ξ·WG_VSTRIDE + k·cin8 + c]   transformed input of tile k of a chunk, ξ = 4i + j the frequency;
 *   U[(ξ·cin + c)·op + o]          transformed weight (fk_winograd3x3_pack_f32);
 *   M[(ξ·WG_TILES + k)·op + o]     products, M_ξ = V_ξ · U_ξ.
 * Every stage does the same operations in the same order in both variants (the transforms are
 * additions only; each product element is one chain of fused multiply-adds over c from 0), so the
 * variants agree bitwise and a tile's result does not depend on its chunk or position. */
#include <math.h>
#include <string.h>

#include "FlowKernels.h"
#include "Internal.h"

/* Tiles per chunk: V (16·32·cin8 floats, 128 KiB at cin = 64), M and U stay in L2. */
#define WG_TILES 8
#define WG_PAD 16

static size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

/* Floats between frequencies in V: a chunk's tiles plus one cache line, so the input transform's
 * sixteen stores per tile do not land 4 KiB apart. */
#define WG_VSTRIDE(s) (WG_TILES * (s)->cin8 + WG_PAD)

size_t fk_winograd3x3_packed_count(size_t out, size_t cin) { return 16 * cin * round_up(out, 4); }

void fk_winograd3x3_pack_f32(const float *w, size_t out, size_t cin, float *u) {
    const size_t op = round_up(out, 4);
    memset(u, 0, 16 * cin * op * sizeof(float));
    for (size_t o = 0; o < out; o++)
        for (size_t c = 0; c < cin; c++) {
            const float *g = w + (o * cin + c) * 9;
            double t[4][3], m[4][4];
            for (int j = 0; j < 3; j++) { /* t = G g */
                const double g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
                t[0][j] = g0;
                t[1][j] = 0.5 * (g0 + g1 + g2);
                t[2][j] = 0.5 * (g0 - g1 + g2);
                t[3][j] = g2;
            }
            for (int i = 0; i < 4; i++) { /* m = t Gᵀ */
                m[i][0] = t[i][0];
                m[i][1] = 0.5 * (t[i][0] + t[i][1] + t[i][2]);
                m[i][2] = 0.5 * (t[i][0] - t[i][1] + t[i][2]);
                m[i][3] = t[i][2];
            }
            for (int xi = 0; xi < 16; xi++) u[((size_t)xi * cin + c) * op + o] = (float)m[xi / 4][xi % 4];
        }
}

/* The shape of a call: plane, tiles, staged plane (hp × wp with its zero border), samples per group. */
typedef struct {
    size_t h, w, hw, tilesW, tiles, hp, wp, cin, cin8, out, op, group;
} wg_shape;

static wg_shape wg_shape_of(size_t cin, size_t out, size_t h, size_t w) {
    wg_shape s;
    s.h = h;
    s.w = w;
    s.hw = h * w;
    s.tilesW = (w + 1) / 2;
    s.tiles = ((h + 1) / 2) * s.tilesW;
    s.hp = 2 * ((h + 1) / 2) + 2;
    s.wp = 2 * s.tilesW + 2;
    s.cin = cin;
    s.cin8 = round_up(cin, 8);
    s.out = out;
    s.op = round_up(out, 4);
    s.group = s.tiles >= WG_TILES ? 1 : WG_TILES / s.tiles;
    return s;
}

size_t fk_winograd3x3_scratch_count(size_t cin, size_t out, size_t h, size_t w) {
    const wg_shape s = wg_shape_of(cin, out, h, w);
    return s.group * s.hp * s.wp * s.cin8 + 16 * (WG_VSTRIDE(&s) + WG_TILES * s.op);
}

/* Output tile of a chunk: the sample's output (channel o at y + o·hw) and the tile's top-left pixel. */
typedef struct {
    float *y;
    size_t row, col;
} wg_out;

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

/* V of the tiles whose patches start at patch[k] (row stride wp·cin8, pixel stride cin8). */
static void wg_input_portable(const float *const *patch, size_t nt, const wg_shape *s, float *v) {
    const size_t step = WG_VSTRIDE(s), row = s->wp * s->cin8;
    for (size_t k = 0; k < nt; k++)
        for (size_t c = 0; c < s->cin; c++) {
            float d[4][4], t[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) d[i][j] = patch[k][(size_t)i * row + (size_t)j * s->cin8 + c];
            for (int j = 0; j < 4; j++) { /* t = Bᵀ d */
                t[0][j] = d[0][j] - d[2][j];
                t[1][j] = d[1][j] + d[2][j];
                t[2][j] = d[2][j] - d[1][j];
                t[3][j] = d[1][j] - d[3][j];
            }
            for (int i = 0; i < 4; i++) { /* Bᵀ d B */
                float *vi = v + 4 * (size_t)i * step + k * s->cin8 + c;
                vi[0] = t[i][0] - t[i][2];
                vi[step] = t[i][1] + t[i][2];
                vi[2 * step] = t[i][2] - t[i][1];
                vi[3 * step] = t[i][1] - t[i][3];
            }
        }
}

static void wg_product_portable(const float *v, const float *u, float *m, size_t nt, const wg_shape *s) {
    for (size_t xi = 0; xi < 16; xi++) {
        const float *vx = v + xi * WG_VSTRIDE(s), *ux = u + xi * s->cin * s->op;
        float *mx = m + xi * WG_TILES * s->op;
        for (size_t k = 0; k < nt; k++)
            for (size_t o = 0; o < s->out; o++) {
                float acc = 0.0f;
                for (size_t c = 0; c < s->cin; c++) acc = fmaf(vx[k * s->cin8 + c], ux[c * s->op + o], acc);
                mx[k * s->op + o] = acc;
            }
    }
}

/* Aᵀ a A + bias of channel o of tile k, the 2×2 result as r[i][j]. */
static inline void wg_output_tile(const float *m, size_t step, const float *bias, size_t o, float r[2][2]) {
    float a[4][4], t[2][4];
    for (int xi = 0; xi < 16; xi++) a[xi / 4][xi % 4] = m[xi * step];
    for (int j = 0; j < 4; j++) { /* t = Aᵀ a */
        t[0][j] = (a[0][j] + a[1][j]) + a[2][j];
        t[1][j] = (a[1][j] - a[2][j]) - a[3][j];
    }
    for (int i = 0; i < 2; i++) {
        r[i][0] = (t[i][0] + t[i][1]) + t[i][2];
        r[i][1] = (t[i][1] - t[i][2]) - t[i][3];
        if (bias) {
            r[i][0] += bias[o];
            r[i][1] += bias[o];
        }
    }
}

static void wg_output_portable(const float *m, const wg_out *dst, size_t nt, const float *bias, const wg_shape *s) {
    for (size_t k = 0; k < nt; k++)
        for (size_t o = 0; o < s->out; o++) {
            float r[2][2];
            wg_output_tile(m + k * s->op + o, WG_TILES * s->op, bias, o, r);
            float *plane = dst[k].y + o * s->hw;
            for (size_t i = 0; i < 2 && dst[k].row + i < s->h; i++)
                for (size_t j = 0; j < 2 && dst[k].col + j < s->w; j++)
                    plane[(dst[k].row + i) * s->w + dst[k].col + j] = r[i][j];
        }
}

/* ---- AVX2 + FMA -------------------------------------------------------------------------- */

#if FK_HAVE_X86
#include <immintrin.h>

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
                /* u[j] holds pixels p + j (low half) and p + j + 4 (high half) of the eight channels. */
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

/* Eight channels at a time. Rows 1 and 2 of Bᵀ share their inputs (d₁ + d₂, d₂ − d₁), so the
 * patch is read as rows (1, 2), then (0, 2) and (1, 3): at most 8 inputs and 8 sums live. */
FK_AVX2 static inline void wg_input_rows(const float *a, const float *b, size_t cs, int op, float *v0, float *v1,
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
    _mm256_storeu_ps(v0, _mm256_sub_ps(t0[0], t0[2]));
    _mm256_storeu_ps(v0 + step, _mm256_add_ps(t0[1], t0[2]));
    _mm256_storeu_ps(v0 + 2 * step, _mm256_sub_ps(t0[2], t0[1]));
    _mm256_storeu_ps(v0 + 3 * step, _mm256_sub_ps(t0[1], t0[3]));
    if (op == 0) {
        _mm256_storeu_ps(v1, _mm256_sub_ps(t1[0], t1[2]));
        _mm256_storeu_ps(v1 + step, _mm256_add_ps(t1[1], t1[2]));
        _mm256_storeu_ps(v1 + 2 * step, _mm256_sub_ps(t1[2], t1[1]));
        _mm256_storeu_ps(v1 + 3 * step, _mm256_sub_ps(t1[1], t1[3]));
    }
}

FK_AVX2 static void wg_input_avx2(const float *const *patch, size_t nt, const wg_shape *s, float *v) {
    const size_t step = WG_VSTRIDE(s), row = s->wp * s->cin8, cs = s->cin8;
    for (size_t k = 0; k < nt; k++)
        for (size_t c = 0; c < s->cin8; c += 8) {
            const float *d = patch[k] + c;
            float *vk = v + k * cs + c;
            wg_input_rows(d + row, d + 2 * row, cs, 0, vk + 4 * step, vk + 8 * step, step); /* rows 1, 2 of Bᵀ */
            wg_input_rows(d, d + 2 * row, cs, 1, vk, 0, step);                              /* row 0: d₀ − d₂ */
            wg_input_rows(d + row, d + 3 * row, cs, 1, vk + 12 * step, 0, step);            /* row 3: d₁ − d₃ */
        }
}

/* TN tiles × NY vectors of 8 output channels of one frequency: TN·NY accumulators (at most 12),
 * NY weight vectors and one broadcast of V per tile and channel. */
FK_AVX2 static inline __attribute__((always_inline)) void wg_micro8(const float *v, size_t cin8, const float *u,
                                                                     size_t op, size_t cin, float *m, const int NY,
                                                                     const int TN) {
    __m256 acc[6][3];
    for (int t = 0; t < TN; t++)
        for (int y = 0; y < NY; y++) acc[t][y] = _mm256_setzero_ps();
    for (size_t c = 0; c < cin; c++) {
        __m256 uy[3];
        for (int y = 0; y < NY; y++) uy[y] = _mm256_loadu_ps(u + c * op + 8 * y);
        for (int t = 0; t < TN; t++) {
            const __m256 b = _mm256_broadcast_ss(v + (size_t)t * cin8 + c);
            for (int y = 0; y < NY; y++) acc[t][y] = _mm256_fmadd_ps(b, uy[y], acc[t][y]);
        }
    }
    for (int t = 0; t < TN; t++)
        for (int y = 0; y < NY; y++) _mm256_storeu_ps(m + (size_t)t * op + 8 * y, acc[t][y]);
}

/* The same with NQ vectors of 4 channels (the last 4 of a block, and every block on processors
 * that split 8-lane operations, wg_split_simd). */
FK_AVX2 static inline __attribute__((always_inline)) void wg_micro4(const float *v, size_t cin8, const float *u,
                                                                     size_t op, size_t cin, float *m, const int NQ,
                                                                     const int TN) {
    __m128 acc[6][3];
    for (int t = 0; t < TN; t++)
        for (int q = 0; q < NQ; q++) acc[t][q] = _mm_setzero_ps();
    for (size_t c = 0; c < cin; c++) {
        __m128 uq[3];
        for (int q = 0; q < NQ; q++) uq[q] = _mm_loadu_ps(u + c * op + 4 * q);
        for (int t = 0; t < TN; t++) {
            const __m128 b = _mm_broadcast_ss(v + (size_t)t * cin8 + c);
            for (int q = 0; q < NQ; q++) acc[t][q] = _mm_fmadd_ps(b, uq[q], acc[t][q]);
        }
    }
    for (int t = 0; t < TN; t++)
        for (int q = 0; q < NQ; q++) _mm_storeu_ps(m + (size_t)t * op + 4 * q, acc[t][q]);
}

/* All nt tiles of one block of output channels: TN at a time, the rest one by one (each product
 * element is the same chain of FMAs whichever way its tile is grouped). At least ten independent
 * accumulators per channel step hide the FMA latency (Zen 1: 5 cycles, two 4-lane FMAs a cycle). */
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
 * blocks of 12 channels as three 4-lane vectors ran the two Glow conditioners' products 7–13 %
 * faster there than 8-lane blocks. */
static int wg_split_simd(void) {
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
    for (size_t xi = 0; xi < 16; xi++) {
        const float *vx = v + xi * WG_VSTRIDE(s), *ux = u + xi * s->cin * s->op;
        float *mx = m + xi * WG_TILES * s->op;
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

/* Four channels at a time (op is a multiple of 4): the tile's 2×2 results of the four channels
 * transposed so that each channel's pixels go out as two pairs; tiles cut by the plane's edge and
 * the channels past `out` one by one. */
FK_AVX2 static void wg_output_avx2(const float *m, const wg_out *dst, size_t nt, const float *bias,
                                   const wg_shape *s) {
    const size_t step = WG_TILES * s->op;
    for (size_t k = 0; k < nt; k++) {
        const int whole = dst[k].row + 2 <= s->h && dst[k].col + 2 <= s->w;
        for (size_t o = 0; o < s->out; o += 4) {
            const float *mk = m + k * s->op + o;
            __m128 a[4][4], t[2][4], r[2][2];
            for (int xi = 0; xi < 16; xi++) a[xi / 4][xi % 4] = _mm_loadu_ps(mk + xi * step);
            for (int j = 0; j < 4; j++) {
                t[0][j] = _mm_add_ps(_mm_add_ps(a[0][j], a[1][j]), a[2][j]);
                t[1][j] = _mm_sub_ps(_mm_sub_ps(a[1][j], a[2][j]), a[3][j]);
            }
            const size_t live = s->out - o < 4 ? s->out - o : 4;
            float b[4] = {0, 0, 0, 0};
            if (bias) memcpy(b, bias + o, live * sizeof(float));
            const __m128 bv = _mm_loadu_ps(b);
            for (int i = 0; i < 2; i++) {
                r[i][0] = _mm_add_ps(_mm_add_ps(t[i][0], t[i][1]), t[i][2]);
                r[i][1] = _mm_sub_ps(_mm_sub_ps(t[i][1], t[i][2]), t[i][3]);
                if (bias) {
                    r[i][0] = _mm_add_ps(r[i][0], bv);
                    r[i][1] = _mm_add_ps(r[i][1], bv);
                }
            }
            float *top = dst[k].y + o * s->hw + dst[k].row * s->w + dst[k].col;
            if (whole && live == 4) {
                __m128 p0 = r[0][0], p1 = r[0][1], p2 = r[1][0], p3 = r[1][1];
                _MM_TRANSPOSE4_PS(p0, p1, p2, p3); /* p_l = channel o + l: (r00, r01, r10, r11) */
                const __m128 ch[4] = {p0, p1, p2, p3};
                for (int l = 0; l < 4; l++) {
                    _mm_storel_pi((__m64 *)(top + (size_t)l * s->hw), ch[l]);
                    _mm_storeh_pi((__m64 *)(top + (size_t)l * s->hw + s->w), ch[l]);
                }
                continue;
            }
            float lanes[2][2][4];
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) _mm_storeu_ps(lanes[i][j], r[i][j]);
            for (size_t l = 0; l < live; l++)
                for (size_t i = 0; i < 2 && dst[k].row + i < s->h; i++)
                    for (size_t j = 0; j < 2 && dst[k].col + j < s->w; j++)
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
    float *staged = scratch, *v = scratch + s.group * sampleStride, *m = v + 16 * WG_VSTRIDE(&s);
    const float *patch[WG_TILES];
    wg_out dst[WG_TILES];
    for (size_t first = 0; first < samples; first += s.group) {
        const size_t count = samples - first < s.group ? samples - first : s.group;
        stage(x + first * lds, lds, ldp, ldc, count, &s, staged);
        const size_t tiles = count * s.tiles;
        for (size_t q0 = 0; q0 < tiles; q0 += WG_TILES) {
            const size_t nt = tiles - q0 < WG_TILES ? tiles - q0 : WG_TILES;
            for (size_t k = 0; k < nt; k++) {
                const size_t n = (q0 + k) / s.tiles, t = (q0 + k) % s.tiles;
                const size_t row = 2 * (t / s.tilesW), col = 2 * (t % s.tilesW);
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
