/* The Winograd convolution kernel (Sources/CFlowKernels/Winograd.c) compiled with AddressSanitizer
 * and UndefinedBehaviorSanitizer (`make check-sanitize`): every buffer is allocated at exactly the
 * size FlowKernels.h documents, so a read or write past one stops the run. Over planes 1×1 … 16×11
 * (both tile sizes, partial tiles), 1 … 64 input and 1 … 44 output channels, planar, block and
 * channel-contiguous inputs and every variant (AVX2 with 4-lane and 8-lane product blocks where
 * available, portable), each output is
 * checked against a double-precision direct convolution, the variants against each other (bitwise)
 * and the output rows' padding for writes.
 *
 * The Swift KernelTests cover the same contract in more detail; this program adds the sanitizers,
 * which cannot see inside the library built by SwiftPM. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "FlowKernels.h"

static int failures = 0;

/* `n` deterministic values in [−1, 1) in their own allocation of exactly n floats. */
static float *values(size_t n, unsigned seed) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    unsigned s = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)(s >> 8) / (float)(1u << 23) - 1.0f;
    }
    return p;
}

/* x(n, c, r, q) of the layout, 0 outside the plane. */
static double at(const float *x, size_t lds, size_t ldp, size_t ldc, size_t n, size_t c, long r, long q, size_t h,
                 size_t w) {
    if (r < 0 || q < 0 || r >= (long)h || q >= (long)w) return 0;
    return x[n * lds + ((size_t)r * w + (size_t)q) * ldp + c * ldc];
}

static void check(size_t h, size_t w, size_t cin, size_t out, int layout) {
    const size_t samples = 3, hw = h * w, ldy = out * hw + 2;
    size_t lds, ldp, ldc, count;
    if (layout == 0) { lds = cin * hw; ldp = 1; ldc = hw; count = samples * lds; }             /* NCHW */
    else if (layout == 1) { lds = hw; ldp = 1; ldc = samples * hw; count = cin * ldc; }       /* block */
    else { lds = hw * cin; ldp = cin; ldc = 1; count = samples * lds; }                       /* NHWC */
    float *x = values(count, (unsigned)(h * 131 + w * 7 + cin + layout));
    float *weight = values(out * cin * 9, (unsigned)(out + 3 * cin)), *bias = values(out, 5);
    float *u = values(fk_winograd3x3_packed_count(out, cin, h, w), 1);
    fk_winograd3x3_pack_f32(weight, out, cin, h, w, u);
    /* AVX2 with 4-lane and with 8-lane product blocks, then portable; or portable only. */
    float *y[3];
    const int variants = fk_simd_level() == 1 ? 3 : 1;
    for (int v = 0; v < variants; v++) {
        fk_force_portable(v == variants - 1);
        fk_winograd3x3_force_blocks(v == 0 ? 1 : v == 1 ? 0 : -1);
        float *scratch = values(fk_winograd3x3_scratch_count(cin, out, h, w), 2);
        y[v] = malloc(samples * ldy * sizeof(float));
        for (size_t i = 0; i < samples * ldy; i++) y[v][i] = -7.0f;
        fk_winograd3x3_f32(x, lds, ldp, ldc, samples, cin, h, w, u, bias, out, y[v], ldy, scratch);
        free(scratch);
    }
    fk_force_portable(0);
    fk_winograd3x3_force_blocks(-1);
    const int four = 36 * ((h + 3) / 4) * ((w + 3) / 4) < 16 * ((h + 1) / 2) * ((w + 1) / 2);
    double worst = 0;
    for (size_t n = 0; n < samples; n++) {
        for (size_t o = 0; o < out; o++)
            for (size_t i = 0; i < h; i++)
                for (size_t j = 0; j < w; j++) {
                    double ref = bias[o], size = fabs(ref) + 1;
                    for (size_t c = 0; c < cin; c++)
                        for (long p = 0; p < 3; p++)
                            for (long q = 0; q < 3; q++) {
                                const double term = weight[((o * cin + c) * 3 + (size_t)p) * 3 + (size_t)q] *
                                                    at(x, lds, ldp, ldc, n, c, (long)i + p - 1, (long)j + q - 1, h, w);
                                ref += term;
                                size += fabs(term);
                            }
                    const double e = fabs(y[0][n * ldy + o * hw + i * w + j] - ref) / size;
                    if (!(e <= worst)) worst = e;
                }
        for (size_t k = out * hw; k < ldy; k++)
            if (y[0][n * ldy + k] != -7.0f) {
                printf("FAIL %zux%zu cin %zu out %zu layout %d: wrote past sample %zu's output\n", h, w, cin, out,
                       layout, n);
                failures++;
            }
    }
    if (!(worst < (four ? 1e-5 : 5e-7))) {
        printf("FAIL %zux%zu cin %zu out %zu layout %d: error %.3g of the terms' size\n", h, w, cin, out, layout,
               worst);
        failures++;
    }
    for (int v = 1; v < variants; v++)
        if (memcmp(y[0], y[v], samples * ldy * sizeof(float)) != 0) {
            printf("FAIL %zux%zu cin %zu out %zu layout %d: variant %d differs\n", h, w, cin, out, layout, v);
            failures++;
        }
    for (int v = 0; v < variants; v++) free(y[v]);
    free(x);
    free(weight);
    free(bias);
    free(u);
}

int main(void) {
    const size_t hs[] = {1, 2, 3, 4, 5, 8, 9, 16}, ws[] = {1, 3, 4, 6, 8, 11};
    const size_t cins[] = {1, 6, 9, 64}, outs[] = {1, 4, 12, 13, 24, 44};
    size_t shapes = 0;
    for (size_t a = 0; a < sizeof hs / sizeof *hs; a++)
        for (size_t b = 0; b < sizeof ws / sizeof *ws; b++)
            for (size_t c = 0; c < sizeof cins / sizeof *cins; c++)
                for (size_t d = 0; d < sizeof outs / sizeof *outs; d++)
                    for (int layout = 0; layout < 3; layout++) {
                        if (cins[c] == 64 && hs[a] * ws[b] > 64 && outs[d] > 13) continue; /* keep it short */
                        check(hs[a], ws[b], cins[c], outs[d], layout);
                        shapes++;
                    }
    printf("winograd kernel under the sanitizers: %zu shapes × layouts, %d failed\n", shapes, failures);
    return failures ? 1 : 0;
}
