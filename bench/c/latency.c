/*
 * latency — batch-1 latency and heap allocations of the SwiftFlows C API.
 *
 *     latency [--check] [--quick] [--dim D] [--threads N] [--calls N]
 *
 * For RealNVP models (8 affine couplings, conditioner MLP D/2 -> 64 -> 64 -> D, ReLU) at
 * D = 2, 8 and 64, and a conditional MAF at D = 8 (5 affine MADE layers 64-64, 2 context values),
 * built with sf_model_create from a JSON spec and perturbed away from the identity
 * initialisation by a short sf_train / sf_train_context run on random data, this program measures:
 *
 *   - the latency of sf_log_prob and sf_sample (sf_log_prob_context and sf_sample_context with
 *     one context row for the MAF) on one sample: every call timed on its own with
 *     clock_gettime(CLOCK_MONOTONIC), reported as median, 10th and 90th percentile in ns;
 *   - heap allocations per call: over 10,000 calls after warm-up, counted by the allocator
 *     functions this executable defines (below). The target is 0.
 *
 * Counting allocations: an executable's symbols come first in the dynamic linker's lookup
 * order, so the malloc, free, calloc, realloc, posix_memalign, aligned_alloc, memalign and
 * valloc defined here replace glibc's for every shared library of the process (libswiftflows.so
 * with its statically linked Swift runtime, OpenBLAS, libc itself). Each forwards to glibc's
 * allocator through its exported __libc_* entry points and bumps a counter. A self-test checks
 * that sf_model_create is seen allocating; if it is not, the counts cannot be trusted and
 * --check fails.
 *
 * Options:
 *   --check      exit with status 1 if any counted call allocated (the Makefile's test-alloc);
 *                without it the exit status is 0 whatever the counts (bench mode)
 *   --quick      fewer timed calls (2,000 instead of 20,000); the allocation count always
 *                covers 10,000 calls
 *   --dim D      only the model of dimension D (2, 8 or 64)
 *   --threads N  sf_set_num_threads(N) first (batch-1 calls use one thread anyway)
 *   --calls N    timed calls per function (default 20,000)
 *
 * Exit status: 0 on success (and, with --check, no allocation), 1 if --check found an
 * allocation or could not verify the counter, 2 on a usage error or a failed library call.
 *
 * Build (the Makefile's `make bench` / `make test-alloc` do this):
 *   cc -std=c99 -O2 -Wall -Wextra -Werror -Iinclude bench/c/latency.c -o build/bin/latency \
 *      -Lbuild/lib -lswiftflows -Wl,-rpath,'$ORIGIN/../lib'
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "swiftflows.h"

/* ---- Counting allocator ------------------------------------------------------------------- */

/* glibc's allocator entry points (exported by libc.so.6; not declared in any header). */
extern void *__libc_malloc(size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);

/* Allocations (every successful or attempted malloc/calloc/realloc/aligned variant) and frees of
 * non-NULL pointers since the start. Updated atomically: the library may allocate on its
 * worker threads. */
static unsigned long allocation_count;
static unsigned long free_count;

static void count_allocation(void) { __atomic_fetch_add(&allocation_count, 1UL, __ATOMIC_RELAXED); }

static unsigned long allocations(void) { return __atomic_load_n(&allocation_count, __ATOMIC_RELAXED); }
static unsigned long frees(void) { return __atomic_load_n(&free_count, __ATOMIC_RELAXED); }

void *malloc(size_t size) {
    count_allocation();
    return __libc_malloc(size);
}

void free(void *ptr) {
    if (ptr != NULL) __atomic_fetch_add(&free_count, 1UL, __ATOMIC_RELAXED);
    __libc_free(ptr);
}

void *calloc(size_t count, size_t size) {
    count_allocation();
    return __libc_calloc(count, size);
}

void *realloc(void *ptr, size_t size) {
    count_allocation();
    return __libc_realloc(ptr, size);
}

/* Declared here: <stdlib.h> declares them only for newer standards than C99. */
int posix_memalign(void **out, size_t alignment, size_t size);
void *aligned_alloc(size_t alignment, size_t size);
void *memalign(size_t alignment, size_t size);
void *valloc(size_t size);

int posix_memalign(void **out, size_t alignment, size_t size) {
    count_allocation();
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment % sizeof(void *) != 0) return EINVAL;
    void *p = __libc_memalign(alignment, size);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
    count_allocation();
    return __libc_memalign(alignment, size);
}

void *memalign(size_t alignment, size_t size) {
    count_allocation();
    return __libc_memalign(alignment, size);
}

void *valloc(size_t size) {
    count_allocation();
    return __libc_valloc(size);
}

/* ---- Options ------------------------------------------------------------------------------ */

#define ALLOCATION_CALLS 10000
#define WARMUP_CALLS 1000
#define DEFAULT_TIMED_CALLS 20000
#define QUICK_TIMED_CALLS 2000
#define MAX_TIMED_CALLS 10000000L

static const int DIMENSIONS[] = {2, 8, 64};
#define NUM_DIMENSIONS (sizeof DIMENSIONS / sizeof DIMENSIONS[0])

typedef struct options {
    int check;
    int quick;
    int dim;     /* 0: all */
    int threads; /* 0: the library's default */
    long calls;  /* timed calls per function */
} options;

static void usage(FILE *out) {
    fprintf(out,
            "usage: latency [--check] [--quick] [--dim D] [--threads N] [--calls N]\n"
            "Batch-1 sf_log_prob / sf_sample latency (median, p10, p90 ns per call) and heap allocations\n"
            "per call (over %d calls after warm-up) for RealNVP models at D = 2, 8, 64.\n"
            "  --check      exit 1 if any call allocated (default: exit 0 whatever the counts)\n"
            "  --quick      %d timed calls instead of %d\n"
            "  --dim D      only dimension D (2, 8 or 64)\n"
            "  --threads N  sf_set_num_threads(N) first\n"
            "  --calls N    timed calls per function\n",
            ALLOCATION_CALLS, QUICK_TIMED_CALLS, DEFAULT_TIMED_CALLS);
}

static int parse_long(const char *text, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static int parse_options(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->calls = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v = 0;
        if (strcmp(a, "--check") == 0) {
            o->check = 1;
        } else if (strcmp(a, "--quick") == 0) {
            o->quick = 1;
        } else if (strcmp(a, "--dim") == 0 && i + 1 < argc && parse_long(argv[i + 1], 1, 1 << 20, &v)) {
            int known = 0;
            for (size_t k = 0; k < NUM_DIMENSIONS; k++) known |= DIMENSIONS[k] == v;
            if (!known) {
                fprintf(stderr, "latency: --dim must be 2, 8 or 64, got %ld\n", v);
                return 0;
            }
            o->dim = (int)v;
            i++;
        } else if (strcmp(a, "--threads") == 0 && i + 1 < argc && parse_long(argv[i + 1], 1, 256, &v)) {
            o->threads = (int)v;
            i++;
        } else if (strcmp(a, "--calls") == 0 && i + 1 < argc && parse_long(argv[i + 1], 1, MAX_TIMED_CALLS, &v)) {
            o->calls = v;
            i++;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "latency: bad argument %s\n", a);
            usage(stderr);
            return 0;
        }
    }
    if (o->calls < 0) o->calls = o->quick ? QUICK_TIMED_CALLS : DEFAULT_TIMED_CALLS;
    return 1;
}

/* ---- Helpers ------------------------------------------------------------------------------ */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int compare_i64(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (0..1) of n sorted values, nearest rank. */
static int64_t quantile(const int64_t *sorted, long n, double q) {
    long k = (long)(q * (double)(n - 1) + 0.5);
    return sorted[k < 0 ? 0 : (k >= n ? n - 1 : k)];
}

/* xorshift64* and an Irwin–Hall normal (sum of 12 uniforms - 6): data for the perturbation run,
 * without libm. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static double uniform01(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
}

static double normal01(void) {
    double s = 0;
    for (int i = 0; i < 12; i++) s += uniform01();
    return s - 6;
}

/* Rows of a correlated Gaussian: feature j is mu_j + sigma_j * e_j + 0.5 * e_{j-1}. */
static void fill_data(float *x, size_t rows, int dim) {
    for (size_t r = 0; r < rows; r++) {
        double previous = 0;
        for (int j = 0; j < dim; j++) {
            double mu = -1.0 + 2.0 * (double)((j * 37) % 11) / 10.0;
            double sigma = 0.5 + (double)((j * 13) % 7) / 6.0;
            double e = normal01();
            x[r * (size_t)dim + (size_t)j] = (float)(mu + sigma * e + 0.5 * previous);
            previous = e;
        }
    }
}

static int failed(const char *what, sf_status status) {
    fprintf(stderr, "latency: %s: %s (%s)\n", what, sf_status_string(status), sf_last_error());
    return 0;
}

/* ---- The measurement ---------------------------------------------------------------------- */

enum function_kind { LOG_PROB, SAMPLE, LOG_PROB_CONTEXT, SAMPLE_CONTEXT };

static const char *const FUNCTION_NAMES[] = {"sf_log_prob", "sf_sample", "sf_log_prob_context", "sf_sample_context"};

/* The context row of the conditional model's calls. */
static float context_row[2] = {0.25f, -0.5f};

typedef struct result {
    int64_t median, p10, p90;
    unsigned long allocations; /* over ALLOCATION_CALLS calls */
    unsigned long frees;
} result;

static sf_status call(enum function_kind kind, const sf_model *m, const float *x, float *out, double *lp,
                      uint64_t i) {
    switch (kind) {
    case LOG_PROB: return sf_log_prob(m, x, 1, lp);
    case SAMPLE: return sf_sample(m, 1, i, out, NULL);
    case LOG_PROB_CONTEXT: return sf_log_prob_context(m, x, context_row, 1, lp);
    default: return sf_sample_context(m, 1, i, context_row, 1, out, NULL);
    }
}

/* Warm-up, `calls` individually timed calls, then ALLOCATION_CALLS counted calls. `times` has
 * room for `calls` values. Returns 0 on a library failure. */
static int measure(enum function_kind kind, const sf_model *m, const float *x, float *out, double *lp,
                   int64_t *times, long calls, result *r) {
    const char *name = FUNCTION_NAMES[kind];
    sf_status s = SF_OK;
    for (long i = 0; i < WARMUP_CALLS; i++) {
        if ((s = call(kind, m, x, out, lp, (uint64_t)i)) != SF_OK) return failed(name, s);
    }
    for (long i = 0; i < calls; i++) {
        int64_t t0 = now_ns();
        s = call(kind, m, x, out, lp, (uint64_t)i);
        int64_t t1 = now_ns();
        if (s != SF_OK) return failed(name, s);
        times[i] = t1 - t0;
    }
    /* The counted calls: nothing else runs between the two counter reads. */
    unsigned long a0 = allocations(), f0 = frees();
    for (long i = 0; i < ALLOCATION_CALLS && s == SF_OK; i++) s = call(kind, m, x, out, lp, (uint64_t)i);
    unsigned long a1 = allocations(), f1 = frees();
    if (s != SF_OK) return failed(name, s);
    qsort(times, (size_t)calls, sizeof *times, compare_i64);
    r->median = quantile(times, calls, 0.5);
    r->p10 = quantile(times, calls, 0.1);
    r->p90 = quantile(times, calls, 0.9);
    r->allocations = a1 - a0;
    r->frees = f1 - f0;
    return 1;
}

/* Builds the D-dimensional RealNVP and perturbs it: 2 epochs of Adam (learning rate 5e-3,
 * batch 256) on 2048 random rows. */
static sf_model *make_model(int dim, int conditional) {
    char spec[256];
    if (conditional) {
        snprintf(spec, sizeof spec,
                 "{\"preset\": \"maf\", \"dim\": %d, \"layers\": 5, \"hidden\": [64, 64], \"context\": 2}", dim);
    } else {
        snprintf(spec, sizeof spec,
                 "{\"preset\": \"realnvp\", \"dim\": %d, \"layers\": 8, \"hidden\": [64, 64], \"activation\": \"relu\"}",
                 dim);
    }
    sf_model *m = NULL;
    sf_status s = sf_model_create(spec, 1, &m);
    if (s != SF_OK) {
        failed("sf_model_create", s);
        return NULL;
    }
    const size_t rows = 2048;
    float *data = malloc(rows * (size_t)dim * sizeof *data);
    if (data == NULL) {
        fprintf(stderr, "latency: out of memory\n");
        sf_model_free(m);
        return NULL;
    }
    fill_data(data, rows, dim);
    sf_train_options o;
    sf_train_options_init(&o);
    o.epochs = 2;
    o.batch_size = 256;
    o.learning_rate = 5e-3;
    o.validation_fraction = 0;
    o.seed = 3;
    float *context = NULL;
    if (conditional) {
        context = malloc(rows * 2 * sizeof *context);
        if (context != NULL) fill_data(context, rows, 2);
    }
    s = conditional ? (context == NULL ? SF_ERR_INVALID_ARGUMENT
                                       : sf_train_context(m, data, context, rows, NULL, NULL, 0, &o, NULL, 0, NULL))
                    : sf_train(m, data, rows, NULL, 0, &o, NULL, 0, NULL);
    free(context);
    free(data);
    if (s != SF_OK) {
        failed("sf_train", s);
        sf_model_free(m);
        return NULL;
    }
    return m;
}

int main(int argc, char **argv) {
    options opt;
    if (!parse_options(argc, argv, &opt)) return 2;
    if (opt.threads > 0) {
        int s = sf_set_num_threads(opt.threads);
        if (s != SF_OK) {
            failed("sf_set_num_threads", (sf_status)s);
            return 2;
        }
    }
    int64_t *times = malloc((size_t)opt.calls * sizeof *times);
    if (times == NULL) {
        fprintf(stderr, "latency: out of memory\n");
        return 2;
    }

    printf("SwiftFlows C API, batch-1 latency (library %s, %d threads)\n", sf_version_string(), sf_get_num_threads());
    printf("Each call timed with clock_gettime(CLOCK_MONOTONIC) after %d warm-up calls: %ld timed calls per function;\n",
           WARMUP_CALLS, opt.calls);
    printf("heap allocations counted over %d further calls (malloc & co. interposed in this executable).\n\n",
           ALLOCATION_CALLS);
    printf("%-14s %-19s %10s %10s %10s %14s %12s\n", "model", "function", "median ns", "p10 ns", "p90 ns",
           "allocs/call", "frees/call");

    int verified = 0, any_allocation = 0, ok = 1;
    /* The RealNVP models at every D, then the conditional MAF (5 MADE layers 64-64, context 2) at D = 8. */
    for (size_t k = 0; k < NUM_DIMENSIONS + 1 && ok; k++) {
        const int conditional = k == NUM_DIMENSIONS;
        const int dim = conditional ? 8 : DIMENSIONS[k];
        if (opt.dim != 0 && opt.dim != dim) continue;
        unsigned long before = allocations();
        sf_model *m = make_model(dim, conditional);
        if (m == NULL) {
            ok = 0;
            break;
        }
        /* Self-test of the interposition: building a model allocates. */
        if (allocations() > before) verified = 1;
        float *x = malloc((size_t)dim * sizeof *x), *out = malloc((size_t)dim * sizeof *out);
        double lp = 0;
        if (x == NULL || out == NULL) {
            fprintf(stderr, "latency: out of memory\n");
            ok = 0;
        } else {
            fill_data(x, 1, dim);
            for (int f = 0; f < 2 && ok; f++) {
                enum function_kind kind = conditional ? (f == 0 ? LOG_PROB_CONTEXT : SAMPLE_CONTEXT)
                                                      : (f == 0 ? LOG_PROB : SAMPLE);
                result r;
                if (!measure(kind, m, x, out, &lp, times, opt.calls, &r)) {
                    ok = 0;
                    break;
                }
                char label[32];
                snprintf(label, sizeof label, conditional ? "MAF|c D=%d" : "RealNVP D=%d", dim);
                printf("%-14s %-19s %10lld %10lld %10lld %14.4f %12.4f\n", label, FUNCTION_NAMES[kind],
                       (long long)r.median, (long long)r.p10, (long long)r.p90,
                       (double)r.allocations / ALLOCATION_CALLS, (double)r.frees / ALLOCATION_CALLS);
                if (r.allocations > 0) {
                    any_allocation = 1;
                    printf("%-14s %-19s %lu allocations and %lu frees in %d calls\n", "", "", r.allocations, r.frees,
                           ALLOCATION_CALLS);
                }
            }
        }
        free(x);
        free(out);
        sf_model_free(m);
        fflush(stdout);
    }
    free(times);
    if (!ok) return 2;

    if (!verified) {
        printf("\nWARNING: no allocation was seen while building a model: the allocator interposition is not "
               "effective, so the counts above prove nothing.\n");
    } else {
        printf("\nAllocation target: 0 per call. %s\n",
               any_allocation ? "NOT MET: some calls allocate (see above)." : "Met: no call allocated.");
    }
    if (opt.check) return (!verified || any_allocation) ? 1 : 0;
    return 0;
}
