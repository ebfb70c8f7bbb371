import CFlowKernels

/// The fused kernels of the inference hot path. `Float` runs the C kernels of `CFlowKernels`
/// (AVX2+FMA when the processor has it, chosen at run time); `Double` (reference evaluation in
/// tests) runs the same arithmetic in Swift.
extension FlowScalar {
    /// `y[r, j] = gate(act(bias[j] + Σ_k x[r, k] · wt[k, j]))` with `wt` the transposed weight
    /// (`inFeatures × outFeatures`, row-major), `act` ReLU or the identity, and `gate` (when
    /// given, at the same offsets as `y`) zeroing the values where `gate > 0` does not hold.
    /// `sparseInput` (Float) runs `fk_linear_sparse_f32`, which skips each row's zero inputs: for
    /// inputs from a ReLU (or a gradient gated by one); the same values up to the sign of zeros.
    /// `weight`, the untransposed weight (`outFeatures × inFeatures`), lets a Float layer without
    /// gate on a narrow output (``usesNarrowKernel(inFeatures:outFeatures:)``) run
    /// `fk_linear_narrow_f32`: dot products in eight lanes, summed pairwise (a different
    /// rounding from the sequential sum, the same for every row count).
    /// - Complexity: 2·rows·in·out flops (sparse: 2·rows·nonzeros·out), no allocation.
    /// `y[r, j] += Σ_k act(x[r, k]) · wt[k, j]` with `wt` transposed (`inFeatures × outFeatures`,
    /// row-major) and `act` ReLU (NaN passes) or the identity: each value gets its terms in
    /// increasing `k`, one fused multiply-add each
    /// (`fk_linear_accumulate_f32` for Float, the same arithmetic in Swift for Double), so a row's
    /// result does not depend on the other rows. The push step of a MADE's sequential pass.
    /// - Complexity: 2·rows·in·out flops, no allocation.
    @inline(__always)
    static func accumulateLayer(_ x: UnsafePointer<Self>, ldx: Int, rows: Int, inFeatures: Int,
                                packedWeight wt: UnsafePointer<Self>, outFeatures: Int,
                                into y: UnsafeMutablePointer<Self>, ldy: Int, relu: Bool = false) {
        guard rows > 0, inFeatures > 0, outFeatures > 0 else { return }
        if Self.self == Float.self {
            fk_linear_accumulate_f32(UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), ldx, rows, inFeatures,
                                     UnsafeRawPointer(wt).assumingMemoryBound(to: Float.self), outFeatures,
                                     UnsafeMutableRawPointer(y).assumingMemoryBound(to: Float.self), ldy, relu ? 1 : 0)
            return
        }
        for r in 0..<rows {
            let xr = x + r * ldx, yr = y + r * ldy
            for k in 0..<inFeatures {
                let xk = relu && xr[k] < 0 ? 0 : xr[k], w = wt + k * outFeatures
                for j in 0..<outFeatures { yr[j] = yr[j].addingProduct(xk, w[j]) }
            }
        }
    }

    @inline(__always)
    static func denseLayer(_ x: UnsafePointer<Self>, ldx: Int, rows: Int, inFeatures: Int,
                           packedWeight wt: UnsafePointer<Self>, bias: UnsafePointer<Self>?, outFeatures: Int,
                           into y: UnsafeMutablePointer<Self>, ldy: Int, relu: Bool,
                           gate: UnsafePointer<Self>? = nil, sparseInput: Bool = false,
                           weight: UnsafePointer<Self>? = nil) {
        guard rows > 0, outFeatures > 0 else { return }
        if Self.self == Float.self, let weight, gate == nil,
           usesNarrowKernel(inFeatures: inFeatures, outFeatures: outFeatures) {
            fk_linear_narrow_f32(UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), ldx, rows, inFeatures,
                                 UnsafeRawPointer(weight).assumingMemoryBound(to: Float.self),
                                 bias.map { UnsafeRawPointer($0).assumingMemoryBound(to: Float.self) }, outFeatures,
                                 UnsafeMutableRawPointer(y).assumingMemoryBound(to: Float.self), ldy, relu ? 1 : 0)
            return
        }
        if Self.self == Float.self, sparseInput {
            fk_linear_sparse_f32(UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), ldx, rows, inFeatures,
                                 UnsafeRawPointer(wt).assumingMemoryBound(to: Float.self),
                                 bias.map { UnsafeRawPointer($0).assumingMemoryBound(to: Float.self) }, outFeatures,
                                 UnsafeMutableRawPointer(y).assumingMemoryBound(to: Float.self), ldy,
                                 gate.map { UnsafeRawPointer($0).assumingMemoryBound(to: Float.self) }, relu ? 1 : 0)
            return
        }
        if Self.self == Float.self {
            fk_linear_f32(UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), ldx, rows, inFeatures,
                          UnsafeRawPointer(wt).assumingMemoryBound(to: Float.self),
                          bias.map { UnsafeRawPointer($0).assumingMemoryBound(to: Float.self) }, outFeatures,
                          UnsafeMutableRawPointer(y).assumingMemoryBound(to: Float.self), ldy,
                          gate.map { UnsafeRawPointer($0).assumingMemoryBound(to: Float.self) }, relu ? 1 : 0)
            return
        }
        for r in 0..<rows {
            let xr = x + r * ldx, yr = y + r * ldy
            for j in 0..<outFeatures { yr[j] = bias?[j] ?? 0 }
            for k in 0..<inFeatures {
                let xk = xr[k], w = wt + k * outFeatures
                for j in 0..<outFeatures { yr[j] = yr[j].addingProduct(xk, w[j]) }
            }
            if relu { for j in 0..<outFeatures { yr[j] = Swift.max(yr[j], 0) } }
            if let g = gate.map({ $0 + r * ldy }) { for j in 0..<outFeatures where !(g[j] > 0) { yr[j] = 0 } }
        }
    }

    /// Whether a Float dense layer given its untransposed weight runs the narrow-output kernel:
    /// at most 4 outputs from at least 8 inputs, where the dense kernel's tiles would use one
    /// or two of eight lanes per multiply-add (a 2-D flow's conditioner output, 64 → 2: about 4×
    /// fewer instructions). The choice depends on the shape only, never on the row count.
    @inline(__always)
    static func usesNarrowKernel(inFeatures: Int, outFeatures: Int) -> Bool {
        outFeatures <= 4 && inFeatures >= 8
    }

    /// Accumulates a dense layer's parameter gradients: `dw[j, k] += Σ_r dy[r, j] · x[r, k]`
    /// (`dw` in PyTorch's `[out, in]` layout) and, when given, `db[j] += Σ_r dy[r, j]`.
    /// Each sum runs over the rows in increasing order from zero, then is added.
    /// - Complexity: 2·rows·in·out flops, no allocation.
    @inline(__always)
    static func denseWeightGradient(_ dy: UnsafePointer<Self>, lddy: Int, rows: Int, outFeatures: Int,
                                    input x: UnsafePointer<Self>, ldx: Int, inFeatures: Int,
                                    weightGradient dw: UnsafeMutablePointer<Self>,
                                    biasGradient db: UnsafeMutablePointer<Self>?) {
        guard rows > 0, outFeatures > 0 else { return }
        if Self.self == Float.self {
            fk_linear_wgrad_f32(UnsafeRawPointer(dy).assumingMemoryBound(to: Float.self), lddy, rows, outFeatures,
                                UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), ldx, inFeatures,
                                UnsafeMutableRawPointer(dw).assumingMemoryBound(to: Float.self),
                                db.map { UnsafeMutableRawPointer($0).assumingMemoryBound(to: Float.self) })
            return
        }
        for j in 0..<outFeatures {
            if let db {
                var acc: Self = 0
                for r in 0..<rows { acc += dy[r * lddy + j] }
                db[j] += acc
            }
            for k in 0..<inFeatures {
                var acc: Self = 0
                for r in 0..<rows { acc = acc.addingProduct(dy[r * lddy + j], x[r * ldx + k]) }
                dw[j * inFeatures + k] += acc
            }
        }
    }

    /// The affine coupling step on `count` contiguous features of one row, in place:
    /// `s = c·tanh(raw/c)` (`c = clamp`, none if 0), forward `x·eˢ + shift`, inverse
    /// `(x − shift)·e⁻ˢ`. Returns `Σ s`.
    @inline(__always)
    static func affineStep(_ x: UnsafeMutablePointer<Self>, shift: UnsafePointer<Self>, raw: UnsafePointer<Self>,
                           count: Int, clamp: Self, inverse: Bool) -> Double {
        if Self.self == Float.self {
            return fk_affine_step_f32(UnsafeMutableRawPointer(x).assumingMemoryBound(to: Float.self),
                                      UnsafeRawPointer(shift).assumingMemoryBound(to: Float.self),
                                      UnsafeRawPointer(raw).assumingMemoryBound(to: Float.self), count,
                                      Float(clamp), inverse ? 1 : 0)
        }
        var sum: Self = 0
        for j in 0..<count {
            let s = clamp > 0 ? clamp * Self.tanh(raw[j] / clamp) : raw[j]
            sum += s
            x[j] = inverse ? (x[j] - shift[j]) * Self.exp(-s) : x[j] * Self.exp(s) + shift[j]
        }
        return Double(sum)
    }

    /// ``affineStep(_:shift:raw:count:clamp:inverse:)`` on `rows` rows (`x + r·ldx`, shift
    /// `st + r·ldst`, raw log-scale `st + r·ldst + count`), adding each row's `±Σ s` to
    /// `logDet[r]`. Float packs the features of several rows into each vector when `count` < 8
    /// (`fk_affine_rows_f32`); the results are the row-by-row ones.
    @inline(__always)
    static func affineRows(_ x: UnsafeMutablePointer<Self>, ldx: Int, st: UnsafePointer<Self>, ldst: Int, rows: Int,
                           count: Int, clamp: Self, inverse: Bool, logDet: UnsafeMutablePointer<Double>) {
        if Self.self == Float.self {
            fk_affine_rows_f32(UnsafeMutableRawPointer(x).assumingMemoryBound(to: Float.self), ldx,
                               UnsafeRawPointer(st).assumingMemoryBound(to: Float.self), ldst, rows, count, Float(clamp),
                               inverse ? 1 : 0, logDet)
            return
        }
        for r in 0..<rows {
            let sum = affineStep(x + r * ldx, shift: st + r * ldst, raw: st + r * ldst + count, count: count, clamp: clamp,
                                 inverse: inverse)
            logDet[r] += inverse ? -sum : sum
        }
    }

    /// ``affineStepBackward(_:shift:raw:gradient:shiftGradient:rawGradient:count:clamp:logDetGradient:inverse:)``
    /// on `rows` rows of a coupling's conditioner output, in place: row `r` has `x + r·ldx`,
    /// gradient `g + r·ldg` and `st + r·ldst = [shift, raw]` (`count` each), which become
    /// `[∂L/∂shift, ∂L/∂raw]`; `w[r]` is the row's ∂L/∂log-det. Float packs several rows into each
    /// vector when `count` < 8 (`fk_affine_rows_backward_f32`); the results are the row-by-row ones.
    @inline(__always)
    static func affineRowsBackward(_ x: UnsafePointer<Self>, ldx: Int, st: UnsafeMutablePointer<Self>, ldst: Int,
                                   gradient g: UnsafeMutablePointer<Self>, ldg: Int, rows: Int, count: Int, clamp: Self,
                                   logDetGradient w: UnsafePointer<Self>, inverse: Bool) {
        if Self.self == Float.self {
            fk_affine_rows_backward_f32(UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), ldx,
                                        UnsafeMutableRawPointer(st).assumingMemoryBound(to: Float.self), ldst,
                                        UnsafeMutableRawPointer(g).assumingMemoryBound(to: Float.self), ldg, rows, count,
                                        Float(clamp), UnsafeRawPointer(w).assumingMemoryBound(to: Float.self),
                                        inverse ? 1 : 0)
            return
        }
        for r in 0..<rows {
            let sr = st + r * ldst
            affineStepBackward(x + r * ldx, shift: sr, raw: sr + count, gradient: g + r * ldg, shiftGradient: sr,
                               rawGradient: sr + count, count: count, clamp: clamp, logDetGradient: w[r], inverse: inverse)
        }
    }

    /// Backward pass of ``affineStep(_:shift:raw:count:clamp:inverse:)`` on one row (see
    /// `fk_affine_step_backward_f32`): from `g` (∂L/∂output, replaced by ∂L/∂x) and `w`
    /// (∂L/∂log-det) writes ∂L/∂shift and ∂L/∂raw. `x` and `shift` are the forward inputs;
    /// `dShift` may alias `shift` and `dRaw` may alias `raw` (each value is read first).
    @inline(__always)
    static func affineStepBackward(_ x: UnsafePointer<Self>, shift: UnsafePointer<Self>?, raw: UnsafePointer<Self>,
                                   gradient g: UnsafeMutablePointer<Self>, shiftGradient dShift: UnsafeMutablePointer<Self>,
                                   rawGradient dRaw: UnsafeMutablePointer<Self>, count: Int, clamp: Self,
                                   logDetGradient w: Self, inverse: Bool) {
        if Self.self == Float.self {
            fk_affine_step_backward_f32(UnsafeRawPointer(x).assumingMemoryBound(to: Float.self),
                                        shift.map { UnsafeRawPointer($0).assumingMemoryBound(to: Float.self) },
                                        UnsafeRawPointer(raw).assumingMemoryBound(to: Float.self),
                                        UnsafeMutableRawPointer(g).assumingMemoryBound(to: Float.self),
                                        UnsafeMutableRawPointer(dShift).assumingMemoryBound(to: Float.self),
                                        UnsafeMutableRawPointer(dRaw).assumingMemoryBound(to: Float.self),
                                        count, Float(clamp), Float(w), inverse ? 1 : 0)
            return
        }
        for j in 0..<count {
            let th: Self = clamp > 0 ? Self.tanh(raw[j] / clamp) : 0
            let s = clamp > 0 ? clamp * th : raw[j]
            let slope: Self = clamp > 0 ? 1 - th * th : 1
            let gj = g[j]
            if inverse {
                let e = Self.exp(-s), centred = x[j] - shift![j]  // read before dShift (may alias shift)
                dShift[j] = -gj * e
                dRaw[j] = -(gj * centred * e + w) * slope
                g[j] = gj * e
            } else {
                let e = Self.exp(s)
                dShift[j] = gj
                dRaw[j] = (gj * x[j] * e + w) * slope
                g[j] = gj * e
            }
        }
    }
}
