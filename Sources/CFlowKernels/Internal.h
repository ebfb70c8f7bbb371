/* Variants behind the dispatching entry points of FlowKernels.h. */
#ifndef SWIFTFLOWS_FLOW_KERNELS_INTERNAL_H
#define SWIFTFLOWS_FLOW_KERNELS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FK_HAVE_X86 1
#define FK_AVX2 __attribute__((target("avx2,fma")))
#else
#define FK_HAVE_X86 0
#endif

void fk_linear_f32_portable(const float *x, size_t ldx, size_t rows, size_t in, const float *wt, const float *bias,
                            size_t out, float *y, size_t ldy, const float *gate, int relu);
void fk_affine_rows_f32_portable(float *x, size_t ldx, const float *st, size_t ldst, size_t rows, size_t n,
                                 float clamp, int inverse, double *logdet);
void fk_linear_sparse_f32_portable(const float *x, size_t ldx, size_t rows, size_t in, const float *wt,
                                   const float *bias, size_t out, float *y, size_t ldy, const float *gate, int relu);
void fk_linear_accumulate_f32_portable(const float *x, size_t ldx, size_t rows, size_t in, const float *wt,
                                       size_t out, float *y, size_t ldy, int relu);
void fk_linear_narrow_f32_portable(const float *x, size_t ldx, size_t rows, size_t in, const float *w,
                                   const float *bias, size_t out, float *y, size_t ldy, int relu);
void fk_linear_wgrad_f32_portable(const float *dy, size_t lddy, size_t rows, size_t out, const float *x, size_t ldx,
                                  size_t in, float *dw, float *db);
double fk_affine_step_f32_portable(float *x, const float *shift, const float *raw, size_t n, float clamp, int inverse);
void fk_affine_rows_backward_f32_portable(const float *x, size_t ldx, float *st, size_t ldst, float *g, size_t ldg,
                                          size_t rows, size_t n, float clamp, const float *w, int inverse);
void fk_affine_step_backward_f32_portable(const float *x, const float *shift, const float *raw, float *g, float *dshift,
                                          float *draw, size_t n, float clamp, float w, int inverse);
void fk_relu_mask_f32_portable(float *g, const float *x, size_t n);
void fk_exp_f32_portable(float *v, size_t n);
void fk_philox_normal_f32_portable(uint64_t seed, uint64_t row, uint32_t stream, float *out, size_t count);
void fk_philox_normal_rows_f32_portable(uint64_t seed, uint64_t first_row, size_t rows, uint32_t stream, size_t count,
                                        float *out, size_t ldo);
void fk_tanh_f32_portable(float *v, size_t n);
void fk_conv_f32_portable(const float *x, size_t xstride, size_t cin, const ptrdiff_t *off, size_t ntaps,
                          const float *w, const float *bias, size_t out, float *y, size_t ystride, size_t t0,
                          size_t n, const float *gate, size_t gstride, int relu);
void fk_unfold_f32_portable(const float *x, size_t ldx, size_t samples, size_t channels, size_t h, size_t w,
                            size_t k, float *dst, size_t ld);
void fk_fold_f32_portable(const float *src, size_t ld, size_t samples, size_t channels, size_t h, size_t w,
                          size_t k, float *dst, size_t lddst);
void fk_conv_wgrad_f32_portable(const float *dy, size_t dystride, size_t out, const float *x, size_t xstride,
                                size_t cin, const ptrdiff_t *off, size_t ntaps, size_t t0, size_t n, float *dw);

/* Inputs per row up to which fk_linear_sparse_f32 lists nonzeros (beyond: the dense kernel). */
#define FK_SPARSE_MAX_IN 1024

#if FK_HAVE_X86
void fk_affine_rows_f32_avx2(float *x, size_t ldx, const float *st, size_t ldst, size_t rows, size_t n, float clamp,
                             int inverse, double *logdet);
void fk_linear_sparse_f32_avx2(const float *x, size_t ldx, size_t rows, size_t in, const float *wt,
                               const float *bias, size_t out, float *y, size_t ldy, const float *gate, int relu);
void fk_linear_f32_avx2(const float *x, size_t ldx, size_t rows, size_t in, const float *wt, const float *bias,
                        size_t out, float *y, size_t ldy, const float *gate, int relu);
void fk_linear_accumulate_f32_avx2(const float *x, size_t ldx, size_t rows, size_t in, const float *wt,
                                   size_t out, float *y, size_t ldy, int relu);
void fk_linear_narrow_f32_avx2(const float *x, size_t ldx, size_t rows, size_t in, const float *w,
                               const float *bias, size_t out, float *y, size_t ldy, int relu);
void fk_linear_wgrad_f32_avx2(const float *dy, size_t lddy, size_t rows, size_t out, const float *x, size_t ldx,
                              size_t in, float *dw, float *db);
double fk_affine_step_f32_avx2(float *x, const float *shift, const float *raw, size_t n, float clamp, int inverse);
void fk_affine_rows_backward_f32_avx2(const float *x, size_t ldx, float *st, size_t ldst, float *g, size_t ldg,
                                      size_t rows, size_t n, float clamp, const float *w, int inverse);
void fk_affine_step_backward_f32_avx2(const float *x, const float *shift, const float *raw, float *g, float *dshift,
                                      float *draw, size_t n, float clamp, float w, int inverse);
void fk_relu_mask_f32_avx2(float *g, const float *x, size_t n);
void fk_exp_f32_avx2(float *v, size_t n);
void fk_philox_normal_f32_avx2(uint64_t seed, uint64_t row, uint32_t stream, float *out, size_t count);
void fk_philox_normal_rows_f32_avx2(uint64_t seed, uint64_t first_row, size_t rows, uint32_t stream, size_t count,
                                    float *out, size_t ldo);
void fk_tanh_f32_avx2(float *v, size_t n);
void fk_conv_f32_avx2(const float *x, size_t xstride, size_t cin, const ptrdiff_t *off, size_t ntaps,
                      const float *w, const float *bias, size_t out, float *y, size_t ystride, size_t t0, size_t n,
                      const float *gate, size_t gstride, int relu);
/* Largest kernel side the AVX2 im2col / col2im handle (their per-tap windows live on the stack);
 * larger kernels run the portable variants. */
#define FK_IM2COL_MAX_KERNEL 15
void fk_unfold_f32_avx2(const float *x, size_t ldx, size_t samples, size_t channels, size_t h, size_t w, size_t k,
                        float *dst, size_t ld);
void fk_fold_f32_avx2(const float *src, size_t ld, size_t samples, size_t channels, size_t h, size_t w, size_t k,
                      float *dst, size_t lddst);
void fk_conv_wgrad_f32_avx2(const float *dy, size_t dystride, size_t out, const float *x, size_t xstride,
                            size_t cin, const ptrdiff_t *off, size_t ntaps, size_t t0, size_t n, float *dw,
                            float *scratch);
#endif

#endif
