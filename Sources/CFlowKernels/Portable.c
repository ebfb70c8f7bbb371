/* Portable variants: plain C, vectorised by the compiler where it can. */
#include <math.h>

#include "Internal.h"

/* The dense layer of both entry points; skip_zeros leaves out the terms whose input is ±0. */
static void linear_rows(const float *x, size_t ldx, size_t rows, size_t in, const float *wt, const float *bias,
                        size_t out, float *y, size_t ldy, const float *gate, int relu, int skip_zeros) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        for (size_t j = 0; j < out; j++) yr[j] = bias ? bias[j] : 0.0f;
        for (size_t k = 0; k < in; k++) {
            const float xk = xr[k];
            if (skip_zeros && xk == 0.0f) continue; /* +0 and −0 contribute nothing; NaN does */
            const float *w = wt + k * out;
            for (size_t j = 0; j < out; j++) yr[j] = fmaf(xk, w[j], yr[j]);
        }
        if (relu)
            for (size_t j = 0; j < out; j++) yr[j] = yr[j] < 0.0f ? 0.0f : yr[j]; /* NaN passes */
        if (gate) {
            const float *gr = gate + r * ldy;
            for (size_t j = 0; j < out; j++) yr[j] = gr[j] > 0.0f ? yr[j] : 0.0f;
        }
    }
}

void fk_linear_f32_portable(const float *x, size_t ldx, size_t rows, size_t in, const float *wt, const float *bias,
                            size_t out, float *y, size_t ldy, const float *gate, int relu) {
    linear_rows(x, ldx, rows, in, wt, bias, out, y, ldy, gate, relu, 0);
}

void fk_linear_sparse_f32_portable(const float *x, size_t ldx, size_t rows, size_t in, const float *wt,
                                   const float *bias, size_t out, float *y, size_t ldy, const float *gate, int relu) {
    linear_rows(x, ldx, rows, in, wt, bias, out, y, ldy, gate, relu, 1);
}

void fk_linear_narrow_f32_portable(const float *x, size_t ldx, size_t rows, size_t in, const float *w,
                                   const float *bias, size_t out, float *y, size_t ldy, int relu) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        for (size_t j = 0; j < out; j++) {
            const float *wj = w + j * in;
            float l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (size_t k = 0; k < in; k++) l[k % 8] = fmaf(xr[k], wj[k], l[k % 8]);
            const float v = (bias ? bias[j] : 0.0f) + (((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])));
            y[r * ldy + j] = relu && v < 0.0f ? 0.0f : v; /* NaN passes */
        }
    }
}

void fk_linear_accumulate_f32_portable(const float *x, size_t ldx, size_t rows, size_t in, const float *wt,
                                       size_t out, float *y, size_t ldy, int relu) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        for (size_t k = 0; k < in; k++) {
            const float xk = relu && xr[k] < 0.0f ? 0.0f : xr[k], *wk = wt + k * out; /* NaN passes */
            for (size_t j = 0; j < out; j++) yr[j] = fmaf(xk, wk[j], yr[j]);
        }
    }
}

void fk_linear_wgrad_f32_portable(const float *dy, size_t lddy, size_t rows, size_t out, const float *x, size_t ldx,
                                  size_t in, float *dw, float *db) {
    for (size_t j = 0; j < out; j++) {
        if (db) {
            float acc = 0.0f;
            for (size_t r = 0; r < rows; r++) acc += dy[r * lddy + j];
            db[j] += acc;
        }
        for (size_t k = 0; k < in; k++) {
            float acc = 0.0f;
            for (size_t r = 0; r < rows; r++) acc = fmaf(dy[r * lddy + j], x[r * ldx + k], acc);
            dw[j * in + k] += acc;
        }
    }
}

double fk_affine_step_f32_portable(float *x, const float *shift, const float *raw, size_t n, float clamp, int inverse) {
    float sum = 0.0f;
    for (size_t j = 0; j < n; j++) {
        const float s = clamp > 0.0f ? clamp * tanhf(raw[j] / clamp) : raw[j];
        sum += s;
        x[j] = inverse ? (x[j] - shift[j]) * expf(-s) : x[j] * expf(s) + shift[j];
    }
    return (double)sum;
}

void fk_affine_rows_f32_portable(float *x, size_t ldx, const float *st, size_t ldst, size_t rows, size_t n,
                                 float clamp, int inverse, double *logdet) {
    for (size_t r = 0; r < rows; r++) {
        const double sum = fk_affine_step_f32_portable(x + r * ldx, st + r * ldst, st + r * ldst + n, n, clamp, inverse);
        logdet[r] += inverse ? -sum : sum;
    }
}

void fk_affine_rows_backward_f32_portable(const float *x, size_t ldx, float *st, size_t ldst, float *g, size_t ldg,
                                          size_t rows, size_t n, float clamp, const float *w, int inverse) {
    for (size_t r = 0; r < rows; r++) {
        float *sr = st + r * ldst;
        fk_affine_step_backward_f32_portable(x + r * ldx, sr, sr + n, g + r * ldg, sr, sr + n, n, clamp, w[r], inverse);
    }
}

void fk_affine_step_backward_f32_portable(const float *x, const float *shift, const float *raw, float *g, float *dshift,
                                          float *draw, size_t n, float clamp, float w, int inverse) {
    for (size_t j = 0; j < n; j++) {
        const float th = clamp > 0.0f ? tanhf(raw[j] / clamp) : 0.0f;
        const float s = clamp > 0.0f ? clamp * th : raw[j];
        const float slope = clamp > 0.0f ? 1.0f - th * th : 1.0f;
        const float gj = g[j];
        if (inverse) {
            const float e = expf(-s), centred = x[j] - shift[j]; /* read before dshift (may alias shift) */
            dshift[j] = -gj * e;
            draw[j] = -(gj * centred * e + w) * slope;
            g[j] = gj * e;
        } else {
            const float e = expf(s);
            dshift[j] = gj;
            draw[j] = (gj * x[j] * e + w) * slope;
            g[j] = gj * e;
        }
    }
}

void fk_relu_mask_f32_portable(float *g, const float *x, size_t n) {
    for (size_t j = 0; j < n; j++) g[j] = x[j] > 0.0f ? g[j] : 0.0f;
}

void fk_exp_f32_portable(float *v, size_t n) {
    for (size_t j = 0; j < n; j++) v[j] = expf(v[j]);
}

void fk_tanh_f32_portable(float *v, size_t n) {
    for (size_t j = 0; j < n; j++) v[j] = tanhf(v[j]);
}
