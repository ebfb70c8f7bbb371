/* Standard normal draws for the sampling contract (docs/model-format.md, "Sampling contract"):
 * Philox4x32-10 blocks, Box–Muller in float32 with the angle split into exact quadrants. */
#include <math.h>
#include <stdint.h>

#include "FlowKernels.h"
#include "Internal.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void philox_block(uint32_t k0, uint32_t k1, uint32_t c[4]) {
    uint32_t x0 = c[0], x1 = c[1], x2 = c[2], x3 = c[3];
    for (int round = 0; round < 10; round++) {
        const uint64_t p0 = (uint64_t)PHILOX_M0 * x0, p1 = (uint64_t)PHILOX_M1 * x2;
        const uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        const uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        x0 = hi1 ^ x1 ^ k0;
        x1 = lo1;
        x2 = hi0 ^ x3 ^ k1;
        x3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    c[0] = x0; c[1] = x1; c[2] = x2; c[3] = x3;
}

/* sin and cos on [0, π/4] (Cephes sinf/cosf polynomials, |error| ≤ 1 ulp there). */
static inline float sin_small(float x) {
    const float z = x * x;
    return ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * x + x;
}
static inline float cos_small(float x) {
    const float z = x * x;
    return ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z - 0.5f * z + 1.0f;
}

/* One Box–Muller pair from two 32-bit words: radius from w_r, angle from w_a. */
static inline void box_muller(uint32_t w_r, uint32_t w_a, float *n0, float *n1) {
    const float u = ((float)(w_r >> 8) + 0.5f) * 0x1p-24f;
    const float r = sqrtf(-2.0f * logf(u));
    const uint32_t k = w_a >> 8, q = k >> 22, m = k & 0x3FFFFFu;
    float s, c;
    if (m < 0x200000u) {
        const float phi = 1.5707963267948966f * (((float)m + 0.5f) * 0x1p-22f);
        s = sin_small(phi);
        c = cos_small(phi);
    } else {
        const float psi = 1.5707963267948966f * (((float)(0x400000u - m) - 0.5f) * 0x1p-22f);
        s = cos_small(psi);
        c = sin_small(psi);
    }
    float sn, cs;
    switch (q) {
    case 0: cs = c; sn = s; break;
    case 1: cs = -s; sn = c; break;
    case 2: cs = -c; sn = -s; break;
    default: cs = s; sn = -c; break;
    }
    *n0 = r * cs;
    *n1 = r * sn;
}

void fk_philox_normal_f32_portable(uint64_t seed, uint64_t row, uint32_t stream, float *out, size_t count) {
    const uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    float v[4];
    for (size_t i = 0, block = 0; i < count; i += 4, block++) {
        uint32_t c[4] = {(uint32_t)block, (uint32_t)row, (uint32_t)(row >> 32), stream};
        philox_block(k0, k1, c);
        box_muller(c[0], c[1], &v[0], &v[1]);
        box_muller(c[2], c[3], &v[2], &v[3]);
        for (size_t j = 0; j < 4 && i + j < count; j++) out[i + j] = v[j];
    }
}

void fk_philox_normal_f32(uint64_t seed, uint64_t row, uint32_t stream, float *out, size_t count) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_philox_normal_f32_avx2(seed, row, stream, out, count);
        return;
    }
#endif
    fk_philox_normal_f32_portable(seed, row, stream, out, count);
}

void fk_philox_normal_rows_f32_portable(uint64_t seed, uint64_t first_row, size_t rows, uint32_t stream, size_t count,
                                        float *out, size_t ldo) {
    for (size_t r = 0; r < rows; r++) fk_philox_normal_f32_portable(seed, first_row + r, stream, out + r * ldo, count);
}

void fk_philox_normal_rows_f32(uint64_t seed, uint64_t first_row, size_t rows, uint32_t stream, size_t count,
                               float *out, size_t ldo) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_philox_normal_rows_f32_avx2(seed, first_row, rows, stream, count, out, ldo);
        return;
    }
#endif
    fk_philox_normal_rows_f32_portable(seed, first_row, rows, stream, count, out, ldo);
}
