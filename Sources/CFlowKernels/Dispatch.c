#include "FlowKernels.h"
#include "Internal.h"

static int detected = -1;
static int forced_portable = 0;

static int detect(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
#else
    return 0;
#endif
}

int fk_simd_level(void) {
    int level = __atomic_load_n(&detected, __ATOMIC_RELAXED);
    if (level < 0) {
        level = detect();
        __atomic_store_n(&detected, level, __ATOMIC_RELAXED);
    }
    return __atomic_load_n(&forced_portable, __ATOMIC_RELAXED) ? 0 : level;
}

void fk_force_portable(int portable) { __atomic_store_n(&forced_portable, portable ? 1 : 0, __ATOMIC_RELAXED); }

void fk_linear_f32(const float *x, size_t ldx, size_t rows, size_t in, const float *wt, const float *bias,
                   size_t out, float *y, size_t ldy, const float *gate, int relu) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_linear_f32_avx2(x, ldx, rows, in, wt, bias, out, y, ldy, gate, relu);
        return;
    }
#endif
    fk_linear_f32_portable(x, ldx, rows, in, wt, bias, out, y, ldy, gate, relu);
}

void fk_linear_sparse_f32(const float *x, size_t ldx, size_t rows, size_t in, const float *wt, const float *bias,
                          size_t out, float *y, size_t ldy, const float *gate, int relu) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_linear_sparse_f32_avx2(x, ldx, rows, in, wt, bias, out, y, ldy, gate, relu);
        return;
    }
#endif
    fk_linear_sparse_f32_portable(x, ldx, rows, in, wt, bias, out, y, ldy, gate, relu);
}

void fk_linear_narrow_f32(const float *x, size_t ldx, size_t rows, size_t in, const float *w, const float *bias,
                          size_t out, float *y, size_t ldy, int relu) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_linear_narrow_f32_avx2(x, ldx, rows, in, w, bias, out, y, ldy, relu);
        return;
    }
#endif
    fk_linear_narrow_f32_portable(x, ldx, rows, in, w, bias, out, y, ldy, relu);
}

void fk_linear_accumulate_f32(const float *x, size_t ldx, size_t rows, size_t in, const float *wt, size_t out,
                              float *y, size_t ldy, int relu) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_linear_accumulate_f32_avx2(x, ldx, rows, in, wt, out, y, ldy, relu);
        return;
    }
#endif
    fk_linear_accumulate_f32_portable(x, ldx, rows, in, wt, out, y, ldy, relu);
}

void fk_linear_wgrad_f32(const float *dy, size_t lddy, size_t rows, size_t out, const float *x, size_t ldx, size_t in,
                         float *dw, float *db) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_linear_wgrad_f32_avx2(dy, lddy, rows, out, x, ldx, in, dw, db);
        return;
    }
#endif
    fk_linear_wgrad_f32_portable(dy, lddy, rows, out, x, ldx, in, dw, db);
}

double fk_affine_step_f32(float *x, const float *shift, const float *raw, size_t n, float clamp, int inverse) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) return fk_affine_step_f32_avx2(x, shift, raw, n, clamp, inverse);
#endif
    return fk_affine_step_f32_portable(x, shift, raw, n, clamp, inverse);
}

void fk_affine_rows_f32(float *x, size_t ldx, const float *st, size_t ldst, size_t rows, size_t n, float clamp,
                        int inverse, double *logdet) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_affine_rows_f32_avx2(x, ldx, st, ldst, rows, n, clamp, inverse, logdet);
        return;
    }
#endif
    fk_affine_rows_f32_portable(x, ldx, st, ldst, rows, n, clamp, inverse, logdet);
}

void fk_affine_step_backward_f32(const float *x, const float *shift, const float *raw, float *g, float *dshift,
                                 float *draw, size_t n, float clamp, float w, int inverse) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_affine_step_backward_f32_avx2(x, shift, raw, g, dshift, draw, n, clamp, w, inverse);
        return;
    }
#endif
    fk_affine_step_backward_f32_portable(x, shift, raw, g, dshift, draw, n, clamp, w, inverse);
}

void fk_affine_rows_backward_f32(const float *x, size_t ldx, float *st, size_t ldst, float *g, size_t ldg, size_t rows,
                                 size_t n, float clamp, const float *w, int inverse) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_affine_rows_backward_f32_avx2(x, ldx, st, ldst, g, ldg, rows, n, clamp, w, inverse);
        return;
    }
#endif
    fk_affine_rows_backward_f32_portable(x, ldx, st, ldst, g, ldg, rows, n, clamp, w, inverse);
}

void fk_relu_mask_f32(float *g, const float *x, size_t n) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_relu_mask_f32_avx2(g, x, n);
        return;
    }
#endif
    fk_relu_mask_f32_portable(g, x, n);
}

void fk_exp_f32(float *v, size_t n) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_exp_f32_avx2(v, n);
        return;
    }
#endif
    fk_exp_f32_portable(v, n);
}

void fk_tanh_f32(float *v, size_t n) {
#if FK_HAVE_X86
    if (fk_simd_level() == 1) {
        fk_tanh_f32_avx2(v, n);
        return;
    }
#endif
    fk_tanh_f32_portable(v, n);
}
