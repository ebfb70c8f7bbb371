/* The C kernels (Sources/CFlowKernels) compiled with AddressSanitizer and UndefinedBehaviorSanitizer
 * (`make check-sanitize`): every buffer is allocated at exactly the size FlowKernels.h documents,
 * so a read or write past one stops the run.
 *
 * Winograd convolution: Over planes 1×1 … 16×11
 * (both tile sizes, partial tiles), 1 … 64 input and 1 … 44 output channels, planar, block and
 * channel-contiguous inputs and every variant (AVX2 with 4-lane and 8-lane product blocks where
 * available, portable), each output is
 * checked against a double-precision direct convolution, the variants against each other (bitwise)
 * and the output rows' padding for writes.
 *
 * Dense and sparse-input layers (row strides with and without padding, every column tail, bias,
 * ReLU, gate; inputs a third nonzero, in up to 300 so the sparse kernel's masks span several
 * words), the affine coupling step over rows (packed and two-pass paths, a row longer than one
 * pass), and the Philox normals (the two-group, one-group and partial paths), each against a
 * double-precision reference in every variant.
 *
 * The Swift KernelTests cover the same contracts in more detail; this program adds the
 * sanitizers, which cannot see inside the library built by SwiftPM. */
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

/* A row-major `rows × cols` matrix with row stride ld, allocated at exactly (rows − 1)·ld + cols
 * floats; a third of the entries nonzero when `sparse`. */
static float *matrix(size_t rows, size_t cols, size_t ld, unsigned seed, int sparse) {
    const size_t n = rows ? (rows - 1) * ld + cols : 0;
    float *p = values(n, seed);
    if (sparse)
        for (size_t i = 0; i < n; i++)
            if (i % 3 != 0) p[i] = i % 2 ? 0.0f : -0.0f;
    return p;
}

static void check_linear(size_t rows, size_t in, size_t out, size_t pad, int relu, int with_bias, int gated) {
    const size_t ldx = in + pad, ldy = out + pad;
    float *x = matrix(rows, in, ldx, (unsigned)(rows * 7 + in), 1), *wt = values(in * out, (unsigned)(in + out));
    float *bias = with_bias ? values(out, 3) : NULL, *gate = gated ? matrix(rows, out, ldy, 4, 0) : NULL;
    const size_t ny = rows ? (rows - 1) * ldy + out : 0;
    const int variants = fk_simd_level() == 1 ? 2 : 1;
    for (int v = 0; v < variants; v++) {
        fk_force_portable(v == variants - 1);
        float *dense = values(ny, 5), *sparse = values(ny, 5);
        fk_linear_f32(x, ldx, rows, in, wt, bias, out, dense, ldy, gate, relu);
        fk_linear_sparse_f32(x, ldx, rows, in, wt, bias, out, sparse, ldy, gate, relu);
        for (size_t r = 0; r < rows; r++)
            for (size_t j = 0; j < out; j++) {
                double ref = bias ? bias[j] : 0, size = fabs(ref) + 1;
                for (size_t k = 0; k < in; k++) {
                    ref += (double)x[r * ldx + k] * wt[k * out + j];
                    size += fabs((double)x[r * ldx + k] * wt[k * out + j]);
                }
                if (relu && ref < 0) ref = 0;
                if (gate && !(gate[r * ldy + j] > 0)) ref = 0;
                const float d = dense[r * ldy + j], s = sparse[r * ldy + j];
                if (!(fabs(d - ref) <= 1e-6 * size) || d != s) {
                    printf("FAIL linear rows %zu in %zu out %zu pad %zu relu %d bias %d gate %d variant %d [%zu, %zu]: "
                           "dense %.9g sparse %.9g reference %.9g\n", rows, in, out, pad, relu, with_bias, gated, v, r,
                           j, d, s, ref);
                    failures++;
                    r = rows;
                    break;
                }
            }
        free(dense);
        free(sparse);
    }
    fk_force_portable(0);
    free(x);
    free(wt);
    free(bias);
    free(gate);
}

static void check_affine(size_t rows, size_t n, float clamp, int inverse) {
    const size_t ldx = n + 1, ldst = 2 * n;
    float *x = matrix(rows, n, ldx, (unsigned)(rows + 11 * n), 0), *st = matrix(rows, 2 * n, ldst, 9, 0);
    const size_t nx = rows ? (rows - 1) * ldx + n : 0;
    const int variants = fk_simd_level() == 1 ? 2 : 1;
    for (int v = 0; v < variants; v++) {
        fk_force_portable(v == variants - 1);
        float *y = malloc((nx ? nx : 1) * sizeof(float));
        memcpy(y, x, nx * sizeof(float));
        double *logdet = calloc(rows ? rows : 1, sizeof(double));
        fk_affine_rows_f32(y, ldx, st, ldst, rows, n, clamp, inverse, logdet);
        for (size_t r = 0; r < rows; r++) {
            double sum = 0;
            int bad = 0;
            for (size_t j = 0; j < n; j++) {
                const double raw = st[r * ldst + n + j], t = st[r * ldst + j], xv = x[r * ldx + j];
                const double sj = clamp > 0 ? clamp * tanh(raw / clamp) : raw;
                const double ref = inverse ? (xv - t) * exp(-sj) : xv * exp(sj) + t;
                sum += sj;
                if (!(fabs(y[r * ldx + j] - ref) <= 2e-6 * (fabs(ref) + fabs(t) + 1))) bad = 1;
            }
            if (bad || !(fabs(logdet[r] - (inverse ? -sum : sum)) <= 1e-5 * ((double)n + 1))) {
                printf("FAIL affine rows %zu n %zu clamp %g inverse %d variant %d: row %zu\n", rows, n, clamp, inverse,
                       v, r);
                failures++;
                break;
            }
        }
        free(y);
        free(logdet);
    }
    fk_force_portable(0);
    free(x);
    free(st);
}

/* The AVX2 normals against the portable ones (the documented stream) on a buffer of exactly
 * `count` floats, one row at a time and rows × count at once. */
static void check_normals(size_t count, size_t rows) {
    float *fast = values(rows * count, 6), *reference = values(rows * count, 7);
    fk_force_portable(1);
    for (size_t r = 0; r < rows; r++) fk_philox_normal_f32(99, 1000 + r, 2, reference + r * count, count);
    fk_force_portable(0);
    fk_philox_normal_rows_f32(99, 1000, rows, 2, count, fast, count);
    for (size_t i = 0; i < rows * count; i++)
        if (!(fabs((double)fast[i] - reference[i]) <= 2e-6 * (1 + fabs((double)reference[i])))) {
            printf("FAIL normals count %zu rows %zu [%zu]: %.9g vs %.9g\n", count, rows, i, fast[i], reference[i]);
            failures++;
            break;
        }
    free(fast);
    free(reference);
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

    const size_t ins[] = {1, 8, 13, 64, 67, 128, 300}, louts[] = {1, 5, 8, 17, 32, 64, 71};
    size_t cases = 0;
    for (size_t rows = 1; rows <= 7; rows += 3)
        for (size_t a = 0; a < sizeof ins / sizeof *ins; a++)
            for (size_t b = 0; b < sizeof louts / sizeof *louts; b++)
                for (int flags = 0; flags < 8; flags++) {
                    check_linear(rows, ins[a], louts[b], (size_t)(flags & 1) * 3, (flags >> 1) & 1, 1, flags >> 2);
                    cases++;
                }
    const size_t ns[] = {1, 3, 7, 8, 13, 32, 67, 520};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t rows = 1; rows <= 70; rows += 23)
            for (int flags = 0; flags < 4; flags++) {
                check_affine(rows, ns[a], flags & 1 ? 5.0f : 0.0f, flags >> 1);
                cases++;
            }
    const size_t counts[] = {1, 7, 31, 32, 33, 64, 150};
    for (size_t a = 0; a < sizeof counts / sizeof *counts; a++)
        for (size_t rows = 1; rows <= 9; rows += 4) {
            check_normals(counts[a], rows);
            cases++;
        }
    printf("dense, sparse, affine and normal kernels under the sanitizers: %zu cases, %d failed in all\n", cases,
           failures);
    return failures ? 1 : 0;
}
