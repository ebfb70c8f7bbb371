/*
 * FlowKernels: the few float32 kernels of SwiftFlows' hot paths, in C so they can carry an
 * AVX2+FMA variant chosen at run time (Swift cannot compile one function for two instruction
 * sets). Every kernel has a portable variant with the same contract; the AVX2 variant is used
 * when the processor supports AVX2 and FMA (fk_simd_level() says which).
 *
 * Results are deterministic for given inputs on a given machine; they do not depend on how a
 * batch is split across threads (kernels are applied per row block with a fixed order of
 * operations inside each output element).
 */
#ifndef SWIFTFLOWS_FLOW_KERNELS_H
#define SWIFTFLOWS_FLOW_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 0: portable C; 1: AVX2 + FMA. */
int fk_simd_level(void);

/* Forces the portable variants (1) or the best available (0); for tests and benchmarks. */
void fk_force_portable(int portable);

/* Dense layer with fused bias and optional ReLU, the conditioner networks' building block:
 *   y[r*ldy + j] = gate(act(bias[j] + Σ_k x[r*ldx + k] · wt[k*out + j]))   for r < rows, j < out
 * `wt` is the weight transposed, `in × out` row-major (PyTorch's `[out, in]` weight, packed
 * once per parameter change). bias may be NULL (zero). relu != 0 applies max(0, ·), NaN passing
 * through (as torch.relu and Swift.max do, so a NaN weight shows in the output). gate, when
 * not NULL, is read at the same offsets as y (row stride ldy): values where gate > 0 does not
 * hold become 0 (ReLU's derivative read off an activation, in backward passes).
 * The same kernel computes a dense layer's input gradient dx = dy·W: pass dy as x (ldx = out),
 * the untransposed weight W (`[out, in]`) as wt, and swap in and out.
 * The sum over k runs in increasing k, one fused multiply-add per term (AVX2 variant).
 * Complexity: 2·rows·in·out flops; no allocation. */
void fk_linear_f32(const float *x, size_t ldx, size_t rows, size_t in, const float *wt, const float *bias,
                   size_t out, float *y, size_t ldy, const float *gate, int relu);

/* fk_linear_f32 for inputs that are mostly zeros, such as a ReLU layer's output or the gradient
 * of a ReLU layer's pre-activation (zero wherever the unit was off):
 * each row accumulates only the weight rows of its nonzero inputs, in increasing k (a row's
 * nonzeros form a bitmask, a compare and a movemask per eight inputs, walked by count-trailing-
 * zeros; each is one broadcast and ⌈out/8⌉ fused multiply-adds of a contiguous weight row). The
 * skipped terms are x·w with x = ±0, so results equal fk_linear_f32's except for the sign of a
 * zero and where a skipped weight is ±∞ or NaN. gate as in fk_linear_f32 (a backward pass's
 * ReLU′ of the layer below). Faster than fk_linear_f32 when about a third or more of the inputs
 * are zero and out ≥ 32; row r + 1's mask is built before row r's products. `in` above 1024
 * falls back to the dense kernel.
 * Complexity: 2·rows·nnz·out flops; no allocation. */
void fk_linear_sparse_f32(const float *x, size_t ldx, size_t rows, size_t in, const float *wt, const float *bias,
                          size_t out, float *y, size_t ldy, const float *gate, int relu);

/* Dense layer with few outputs (a 2-D flow's conditioner output: 64 → 2), as dot products:
 *   y[r*ldy + j] = act(bias[j] + Σ_k x[r*ldx + k] · w[j*in + k])   for r < rows, j < out
 * with `w` in PyTorch's `[out, in]` layout (untransposed). Each sum runs in eight partial sums
 * (input k goes to lane k mod 8, in increasing k, fused multiply-adds), added as
 * ((0+4) + (2+6)) + ((1+5) + (3+7)), then added to the bias; both variants agree bitwise, and a
 * row's result does not depend on the other rows. Where fk_linear_f32 uses one or two of eight
 * lanes per multiply-add on such layers, this uses all eight. Any out works; meant for out ≤ 4
 * (outputs go four at a time). relu as in fk_linear_f32. Complexity: 2·rows·in·out flops; no
 * allocation. */
void fk_linear_narrow_f32(const float *x, size_t ldx, size_t rows, size_t in, const float *w, const float *bias,
                          size_t out, float *y, size_t ldy, int relu);

/* Accumulating dense product (the push step of a MADE's sequential pass):
 *   y[r*ldy + j] += Σ_k act(x[r*ldx + k]) · wt[k*out + j]        for r < rows, j < out
 * with `wt` transposed (`in × out`, row-major) and act max(0, ·) when relu (NaN passes) or the
 * identity; x is only read. Each y value gets its terms in increasing k, one
 * fused multiply-add each, straight into the running value: both variants agree bitwise, and a
 * row's result does not depend on the other rows. The dependency chains are `in` long and `out`
 * wide, so few inputs over many outputs (the shape of a push) run near peak.
 * Complexity: 2·rows·in·out flops; no allocation. */
void fk_linear_accumulate_f32(const float *x, size_t ldx, size_t rows, size_t in, const float *wt, size_t out,
                              float *y, size_t ldy, int relu);

/* Weight and bias gradients of a dense layer y = x·Wᵀ + b, accumulated:
 *   dw[j*in + k] += Σ_r dy[r*lddy + j] · x[r*ldx + k]        for j < out, k < in
 *   db[j]        += Σ_r dy[r*lddy + j]                       (when db is not NULL)
 * dw is PyTorch's `[out, in]` layout. Each sum starts from zero and runs over r in increasing
 * order (one fused multiply-add per term), then is added to dw / db: both variants agree
 * bitwise. Complexity: 2·rows·in·out flops; no allocation. */
void fk_linear_wgrad_f32(const float *dy, size_t lddy, size_t rows, size_t out, const float *x, size_t ldx, size_t in,
                         float *dw, float *db);

/* The affine coupling step on n transformed features of one row, in place:
 *   s_j = clamp > 0 ? clamp·tanh(raw_j / clamp) : raw_j
 *   forward: x_j ← x_j·exp(s_j) + shift_j        inverse: x_j ← (x_j − shift_j)·exp(−s_j)
 * Returns Σ_j s_j (the row's log|det| for the forward direction), summed in float (per lane,
 * then across the lanes in order). exp/tanh: Cephes-style polynomials, within 2 ulp of the
 * correctly rounded result over the clamped range (|s| ≤ 88); the AVX2 variant divides by clamp
 * as a product with the rounded reciprocal. */
double fk_affine_step_f32(float *x, const float *shift, const float *raw, size_t n, float clamp, int inverse);

/* fk_affine_step_f32 on `rows` rows: row r transforms x + r·ldx with shift st + r·ldst and raw
 * log-scale st + r·ldst + n, and adds its Σ s (negated when inverse) to logdet[r]. Same results
 * as the row-by-row calls; with n < 8 the AVX2 variant packs several rows' features into each
 * vector (a coupling on two features uses all eight lanes instead of one). No allocation. */
void fk_affine_rows_f32(float *x, size_t ldx, const float *st, size_t ldst, size_t rows, size_t n, float clamp,
                        int inverse, double *logdet);

/* Backward pass of fk_affine_step_f32 for one row, given the loss gradient g_j of its output and
 * w = ∂L/∂(log-det contribution). With s_j, e_j as in the forward step:
 *   forward form (inverse = 0; output x·eˢ + shift, log-det +Σs):
 *     dshift_j = g_j,  draw_j = (g_j·x_j·e^{s_j} + w)·s'(raw_j),  g_j ← g_j·e^{s_j}
 *   inverse form (inverse = 1; output (x − shift)·e^{−s}, log-det −Σs):
 *     dshift_j = −g_j·e^{−s_j},  draw_j = −(g_j·(x_j − shift_j)·e^{−s_j} + w)·s'(raw_j),  g_j ← g_j·e^{−s_j}
 * with s'(raw) = 1 − tanh²(raw/clamp) (1 without a clamp). x and shift are the forward inputs;
 * shift is read only in the inverse form (may be NULL otherwise). dshift may alias shift and draw
 * may alias raw: each value is read before its gradient is written. */
void fk_affine_step_backward_f32(const float *x, const float *shift, const float *raw, float *g, float *dshift,
                                 float *draw, size_t n, float clamp, float w, int inverse);

/* fk_affine_step_backward_f32 on `rows` rows of a coupling's conditioner output, in place: row r
 * has x + r·ldx, gradient g + r·ldg and st + r·ldst = [shift (n), raw (n)], which become
 * [∂L/∂shift, ∂L/∂raw] (each value read before it is written); w[r] is the row's ∂L/∂log-det.
 * Same results as the row-by-row calls; with n < 8 the AVX2 variant packs several rows into each
 * vector (as fk_affine_rows_f32 does). No allocation. */
void fk_affine_rows_backward_f32(const float *x, size_t ldx, float *st, size_t ldst, float *g, size_t ldg, size_t rows,
                                 size_t n, float clamp, const float *w, int inverse);

/* ReLU's backward mask: g_j = x_j > 0 ? g_j : 0 (x: pre- or post-activation values). */
void fk_relu_mask_f32(float *g, const float *x, size_t n);

/* Direct convolution over channel planes; the invertible 1×1 convolution mixes fewer than 32
 * channels with it (one tap at offset 0). Channel c of x is the plane x + c·xstride; tap j reads
 * it shifted by off[j] elements (a k×k kernel on planes with zero padding between rows and
 * images becomes k² constant offsets of one linear sweep):
 *   v = bias[o] + Σ_{c < cin} Σ_{j < ntaps} w[(c·ntaps + j)·out + o] · x[c·xstride + t + off[j]]
 *   y[o·ystride + t] = gate(relu(v))       for o < out, t0 ≤ t < t0 + n
 * relu != 0 applies max(0, ·) (NaN passes through); with gate non-NULL, values where gate[o·gstride + t] > 0 does not
 * hold become 0 (gstride 0: one mask shared by every channel, e.g. 1 inside the images and 0 on
 * the padding; gstride = ystride: ReLU's derivative read off an activation). bias may be NULL.
 * The sum runs over c, then j, in increasing order from the bias, one fused multiply-add per
 * term, in both variants (so they agree bitwise). n must be a multiple of 8; every position
 * read, t0 + off[j] … t0 + n − 1 + off[j] of each channel, must be readable (and finite).
 * Complexity: 2·out·cin·ntaps·n flops; no allocation. */
void fk_conv_f32(const float *x, size_t xstride, size_t cin, const ptrdiff_t *off, size_t ntaps, const float *w,
                 const float *bias, size_t out, float *y, size_t ystride, size_t t0, size_t n, const float *gate,
                 size_t gstride, int relu);

/* Weight gradient of fk_conv_f32 (layout [out][cin][ntaps], i.e. PyTorch's OIHW; the invertible
 * 1×1 convolution's weight gradient with one tap):
 *   dw[(o·cin + c)·ntaps + j] += Σ_{t0 ≤ t < t0 + n} dy[o·dystride + t] · x[c·xstride + t + off[j]]
 * Each sum runs in eight interleaved partial sums (position t goes to lane (t − t0) mod 8, in
 * increasing t, fused multiply-adds), added as ((0+4) + (2+6)) + ((1+5) + (3+7)) and then to dw;
 * both variants agree bitwise. n must be a multiple of 8. scratch: out·cin·ntaps·8 floats (used
 * by the AVX2 variant). Complexity: 2·out·cin·ntaps·n flops; no allocation. */
void fk_conv_wgrad_f32(const float *dy, size_t dystride, size_t out, const float *x, size_t xstride, size_t cin,
                       const ptrdiff_t *off, size_t ntaps, size_t t0, size_t n, float *dw, float *scratch);

/* im2col of `samples` samples for a k×k convolution with zero padding k/2 (k odd) on channels
 * planes of h×w (sample n's plane c at x + n·ldx + c·h·w): row c·k² + p·k + q of dst (row stride
 * ld ≥ samples·h·w) holds, in its columns n·h·w ..< (n + 1)·h·w, sample n's plane c shifted by
 * (p − k/2, q − k/2), zero where that leaves the plane:
 *   dst[(c·k² + p·k + q)·ld + n·h·w + i·w + j] = x[n·ldx + c·h·w + (i + p − k/2)·w + j + q − k/2]  or 0.
 * Copies only, so both variants give the same bits: the portable one copies each row as one
 * shifted run and zeroes the wrapped columns; the AVX2 one (k ≤ 15, h·w ≥ 8) writes eight
 * positions per load and store, the load clamped into the plane and its lanes masked. Nothing
 * outside the planes is read, nothing past a row's samples·h·w columns written.
 * Complexity: O(samples·channels·k²·h·w); no allocation. */
void fk_unfold_f32(const float *x, size_t ldx, size_t samples, size_t channels, size_t h, size_t w, size_t k,
                   float *dst, size_t ld);

/* col2im, the adjoint of fk_unfold_f32: sample n's plane c of dst (at dst + n·lddst + c·h·w,
 * overwritten) becomes the sum over taps p·k + q of row c·k² + p·k + q of src (row stride ld;
 * sample n in columns n·h·w ..< (n + 1)·h·w) shifted by (p − k/2, q − k/2), over the positions
 * whose source and target both lie inside the plane: every output position starts from the
 * centre tap and adds the other taps in increasing p·k + q, a tap whose source leaves the plane
 * adding +0 (so the variants agree bitwise). The AVX2 variant (k ≤ 15, h·w ≥ 8) sums eight
 * positions of four channels at a time in registers and stores each once; src is not modified.
 * Complexity: O(samples·channels·k²·h·w); no allocation. */
void fk_fold_f32(const float *src, size_t ld, size_t samples, size_t channels, size_t h, size_t w, size_t k,
                 float *dst, size_t lddst);

/* 3×3 "same" convolution (stride 1, zero padding 1) by Winograd F(m×m, 3×3) (Lavin & Gray 2016),
 * m = 2 or 4, whichever needs fewer multiply-adds for the h × w plane (4 from 4×4 planes on): an
 * m×m output tile costs (m + 2)²·cin·out multiply-adds instead of 9m²·cin·out (2.25× fewer with
 * m = 2, 4× with m = 4). The result equals the direct convolution's up to rounding: the
 * transforms add, subtract and scale by small integers (m = 4: up to 8), so the error grows
 * with m; it stays within a few 1e-6 of Σ|w·x| (KernelTests.testWinogradMatchesTheDirectConvolution).
 *
 * fk_winograd3x3_pack_f32 transforms a weight [out][cin][3][3] (PyTorch's OIHW) for planes of
 * h × w into u (fk_winograd3x3_packed_count(out, cin, h, w) floats; computed in double, rounded
 * once; call again after every weight change).
 *
 * fk_winograd3x3_f32 writes `samples` outputs: sample n's channel o, pixel (i, j) at
 *   y[n·ldy + o·h·w + i·w + j] = bias[o] + Σ_c Σ_{p,q < 3} weight[o][c][p][q] · x(n, c, i + p − 1, j + q − 1)
 * with x(n, c, r, s) = x[n·lds + (r·w + s)·ldp + c·ldc] inside the plane, 0 outside: any layout
 * (NCHW: ldp = 1, ldc = h·w; samples side by side in each channel's row: lds = h·w, ldp = 1;
 * NHWC: ldc = 1). A few samples at a time are copied into scratch with channels contiguous and a
 * zero border (planar inputs by 8 × 8 transposes), then transformed in chunks of 4 or 8 tiles
 * (their transformed input about L1's size). u must have been packed for the same h, w. bias may
 * be NULL (zero).
 * scratch: fk_winograd3x3_scratch_count(cin, out, h, w) floats. Both variants do the same
 * operations in the same order (each product one chain of fused multiply-adds over c), so they
 * agree bitwise, and a sample's output does not depend on the other samples of the call.
 * Complexity: per sample ⌈h/m⌉·⌈w/m⌉ tiles of 2(m + 2)²·cin·out flops plus O((cin + out)·h·w)
 * for the transforms; no allocation. */
size_t fk_winograd3x3_packed_count(size_t out, size_t cin, size_t h, size_t w);
size_t fk_winograd3x3_scratch_count(size_t cin, size_t out, size_t h, size_t w);
void fk_winograd3x3_pack_f32(const float *weight, size_t out, size_t cin, size_t h, size_t w, float *u);
void fk_winograd3x3_f32(const float *x, size_t lds, size_t ldp, size_t ldc, size_t samples, size_t cin, size_t h,
                        size_t w, const float *u, const float *bias, size_t out, float *y, size_t ldy,
                        float *scratch);

/* The AVX2 variant's register blocks for the products: 8-lane (0), 4-lane (1; the default on AMD
 * Zen 1, which splits 8-lane operations) or by processor (−1, the default). Same bits either way;
 * for tests and benchmarks. */
void fk_winograd3x3_force_blocks(int mode);

/* `count` standard normal values of sample row `row`: Philox4x32-10 with key = seed (low, high
 * 32 bits) and counter (block, row low, row high, stream); block b gives values 4b … 4b+3 by
 * Box–Muller on word pairs (w0, w1) and (w2, w3): u = (⌊w_r/2⁸⌋ + ½)/2²⁴, radius √(−2 ln u),
 * angle 2π(⌊w_a/2⁸⌋ + ½)/2²⁴ (quadrant from the top two bits, reduced exactly), values
 * (r·cos θ, r·sin θ). Computed in float32; the AVX2 variant runs eight blocks at a time with the
 * same integer words (float results may differ from the portable variant by an ulp). */
void fk_philox_normal_f32(uint64_t seed, uint64_t row, uint32_t stream, float *out, size_t count);

/* fk_philox_normal_f32 for `rows` consecutive rows: row first_row + r's `count` values go to
 * out + r·ldo (ldo ≥ count; nothing between rows is written). The same bits as one call per
 * row in the same variant; the AVX2 variant packs several rows' blocks into each vector when rows
 * have fewer than 29 values (eight blocks), so short rows leave no lanes idle. */
void fk_philox_normal_rows_f32(uint64_t seed, uint64_t first_row, size_t rows, uint32_t stream, size_t count,
                               float *out, size_t ldo);

/* out_j = exp(v_j) in place, same accuracy as above (inputs clamped to [−87.3, 88.7]). */
void fk_exp_f32(float *v, size_t n);

/* out_j = tanh(v_j) in place, within 2 ulp. */
void fk_tanh_f32(float *v, size_t n);

#ifdef __cplusplus
}
#endif

#endif
