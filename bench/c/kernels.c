/*
 * kernels — the float32 kernels of one affine coupling, timed on their own.
 *
 *     kernels [--dim D] [--rows R] [--repeats N]
 *
 * Compiled straight from Sources/CFlowKernels (`make bench-kernels`, same compiler and flags as
 * the library), so the kernels can be timed and compared without the flow around them. One
 * chunk of R rows (default 256, the library's chunk for D = 64) goes through what a RealNVP
 * coupling with conditioner D/2 → 64 → 64 → D runs per chunk:
 *
 *   dense      fk_linear_f32 D/2 → 64 with ReLU (the data half: no zeros)
 *   sparse     fk_linear_sparse_f32 64 → 64 with ReLU (its input is a ReLU output)
 *   dense 64   fk_linear_f32 on the same 64 → 64 product (what the sparse kernel replaces)
 *   out        the conditioner's output layer 64 → D, by the kernel the library picks for it
 *              (MLP.sparseInput, FlowScalar.usesNarrowKernel): fk_linear_narrow_f32 for D ≤ 4,
 *              fk_linear_f32 below 32 outputs, fk_linear_sparse_f32 from 32
 *   affine     fk_affine_rows_f32 on D/2 features, clamp 5, forward and inverse alternating
 *   normals    fk_philox_normal_rows_f32, D values per row (the base of `sample`)
 *
 * Weights are Gaussian with standard deviation 1/√in (the output layer's 20× smaller, as after
 * a short training from the zero-initialised layer), inputs standard normal, so half of the
 * hidden units are zero, as in the benchmark harness's perturbed models; the table prints the
 * measured share. Each kernel is timed with clock_gettime over its own call (median and minimum
 * of N repeats after warm-up), in the AVX2 variant and in the portable one in the same run
 * (the AVX2 column is empty on processors without AVX2 + FMA). The portable variant's
 * multiply-adds are fmaf calls (the same fused results everywhere), a library call unless the
 * compiler targets FMA: it is the fallback, not a tuned baseline. Nothing here is a test: it
 * only prints.
 */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "FlowKernels.h"

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* Standard normal values from a xorshift generator and Box–Muller (deterministic). */
static uint64_t state = 88172645463325252ull;
static double uniform(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return ((double)(state >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static float gaussian(void) { return (float)(sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform())); }

static float *buffer(size_t n, float scale) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "kernels: out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++) p[i] = scale * gaussian();
    return p;
}

static int compare_doubles(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { KERNELS = 6 };
static const char *const names[KERNELS] = {"dense", "sparse", "dense 64", "out", "affine", "normals"};

typedef struct {
    size_t rows, dim, half, hidden;
    float *x, *h1, *h2, *st, *w0, *w1, *w2, *w2t, *b0, *b1, *b2, *normals; /* w2t: w2 as [out][in] */
    double *logdet;
} Chunk;

static void run(Chunk *c, int kernel, int pass) {
    const size_t r = c->rows, d = c->dim, half = c->half, h = c->hidden;
    switch (kernel) {
    case 0: fk_linear_f32(c->x, d, r, half, c->w0, c->b0, h, c->h1, h, NULL, 1); break;
    case 1: fk_linear_sparse_f32(c->h1, h, r, h, c->w1, c->b1, h, c->h2, h, NULL, 1); break;
    case 2: fk_linear_f32(c->h1, h, r, h, c->w1, c->b1, h, c->h2, h, NULL, 1); break;
    case 3:
        if (d <= 4) fk_linear_narrow_f32(c->h2, h, r, h, c->w2t, c->b2, d, c->st, d, 0);
        else if (d < 32) fk_linear_f32(c->h2, h, r, h, c->w2, c->b2, d, c->st, d, NULL, 0);
        else fk_linear_sparse_f32(c->h2, h, r, h, c->w2, c->b2, d, c->st, d, NULL, 0);
        break;
    case 4: fk_affine_rows_f32(c->x + half, d, c->st, d, r, d - half, 5.0f, pass & 1, c->logdet); break;
    default: fk_philox_normal_rows_f32(7, (uint64_t)pass * r, r, 0, d, c->normals, d); break;
    }
}

int main(int argc, char **argv) {
    size_t dim = 64, rows = 256, repeats = 400;
    for (int i = 1; i < argc; i++) {
        const int more = i + 1 < argc;
        if (!strcmp(argv[i], "--dim") && more) dim = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rows") && more) rows = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--repeats") && more) repeats = strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: kernels [--dim D] [--rows R] [--repeats N]\n");
            return 2;
        }
    }
    if (dim < 2 || dim > 4096 || rows < 1 || rows > 65536 || repeats < 5 || repeats > 1000000) {
        fprintf(stderr, "kernels: need 2 ≤ D ≤ 4096, 1 ≤ R ≤ 65536, 5 ≤ N ≤ 1000000\n");
        return 2;
    }
    Chunk c = {.rows = rows, .dim = dim, .half = dim / 2, .hidden = 64};
    const size_t h = c.hidden;
    c.x = buffer(rows * dim, 1.0f);
    c.h1 = buffer(rows * h, 0.0f);
    c.h2 = buffer(rows * h, 0.0f);
    c.st = buffer(rows * dim, 0.0f);
    c.normals = buffer(rows * dim, 0.0f);
    c.w0 = buffer(c.half * h, 1.0f / sqrtf((float)c.half));
    c.w1 = buffer(h * h, 1.0f / sqrtf((float)h));
    c.w2 = buffer(h * dim, 0.05f / sqrtf((float)h));
    c.w2t = buffer(h * dim, 0.0f);
    for (size_t k = 0; k < h; k++)
        for (size_t j = 0; j < dim; j++) c.w2t[j * h + k] = c.w2[k * dim + j];
    c.b0 = buffer(h, 0.01f);
    c.b1 = buffer(h, 0.01f);
    c.b2 = buffer(dim, 0.01f);
    c.logdet = calloc(rows, sizeof(double));
    double *times = malloc(repeats * sizeof(double));
    if (!c.logdet || !times) return 2;

    const int avx2 = fk_simd_level() == 1;
    double median[2][KERNELS] = {{0}}, best[2][KERNELS] = {{0}};
    for (int variant = avx2 ? 0 : 1; variant < 2; variant++) {
        fk_force_portable(variant);
        for (int k = 0; k < KERNELS; k++) {
            for (size_t i = 0; i < repeats / 10 + 2; i++) run(&c, k, (int)i); /* warm-up, and h1/h2 filled */
            for (size_t i = 0; i < repeats; i++) {
                const double t0 = now_ns();
                run(&c, k, (int)i);
                times[i] = (now_ns() - t0) / (double)rows;
            }
            qsort(times, repeats, sizeof(double), compare_doubles);
            median[variant][k] = times[repeats / 2];
            best[variant][k] = times[0];
        }
    }
    fk_force_portable(0);
    size_t nonzero1 = 0, nonzero2 = 0;
    for (size_t i = 0; i < rows * h; i++) {
        nonzero1 += c.h1[i] != 0.0f;
        nonzero2 += c.h2[i] != 0.0f;
    }

    printf("One coupling's kernels, D = %zu, conditioner %zu -> %zu -> %zu -> %zu, chunk of %zu rows; ns per row,\n"
           "median (min) of %zu calls; hidden units nonzero: %.0f %% after the first layer, %.0f %% after the second.\n\n",
           dim, c.half, h, h, dim, rows, repeats, 100.0 * (double)nonzero1 / (double)(rows * h),
           100.0 * (double)nonzero2 / (double)(rows * h));
    printf("%-9s %-16s %20s %20s %8s\n", "kernel", "shape", "AVX2+FMA ns/row", "portable ns/row", "ratio");
    for (int k = 0; k < KERNELS; k++) {
        char shape[32], fast[32] = "-", ratio[16] = "-";
        switch (k) {
        case 0: snprintf(shape, sizeof shape, "%zu -> %zu", c.half, h); break;
        case 1: case 2: snprintf(shape, sizeof shape, "%zu -> %zu", h, h); break;
        case 3: snprintf(shape, sizeof shape, "%zu -> %zu%s", h, dim, dim <= 4 ? " narrow" : dim < 32 ? " dense" : ""); break;
        case 4: snprintf(shape, sizeof shape, "%zu features", dim - c.half); break;
        default: snprintf(shape, sizeof shape, "%zu values", dim); break;
        }
        if (avx2) {
            snprintf(fast, sizeof fast, "%.1f (%.1f)", median[0][k], best[0][k]);
            snprintf(ratio, sizeof ratio, "%.2fx", median[1][k] / median[0][k]);
        }
        char slow[32];
        snprintf(slow, sizeof slow, "%.1f (%.1f)", median[1][k], best[1][k]);
        printf("%-9s %-16s %20s %20s %8s\n", names[k], shape, fast, slow, ratio);
    }
    if (avx2) {
        const double coupling = median[0][0] + median[0][1] + median[0][3] + median[0][4];
        printf("\nOne coupling (dense + sparse + out + affine), AVX2+FMA: %.1f ns per row; the sparse 64 -> 64 layer\n"
               "takes %.2f of the dense kernel's time on the same product.\n",
               coupling, median[0][1] / median[0][2]);
    }
    free(times);
    free(c.x), free(c.h1), free(c.h2), free(c.st), free(c.normals);
    free(c.w0), free(c.w1), free(c.w2), free(c.w2t), free(c.b0), free(c.b1), free(c.b2), free(c.logdet);
    return 0;
}
