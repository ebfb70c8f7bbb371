extension MatrixProducts {
    /// Gradients of ``linear(_:ldx:rows:inFeatures:weight:bias:outFeatures:into:)``.
    ///
    /// Given `dy = ∂L/∂y` (`rows × out`, contiguous): adds `dyᵀ·x` to `weightGradient`
    /// (`[out, in]`) and the column sums of `dy` to `biasGradient`, and when `dx` is given writes
    /// `∂L/∂x = dy·W` into it (`rows × in`, contiguous, overwritten). `gate` (`rows × in`,
    /// contiguous; needs `dx`) zeroes `∂L/∂x` where `gate > 0` does not hold: a ReLU's
    /// derivative read off its activation, fused into the product.
    ///
    /// Float runs the dense kernels of `CFlowKernels` (``FlowScalar/denseWeightGradient(_:lddy:rows:outFeatures:input:ldx:inFeatures:weightGradient:biasGradient:)``
    /// and ``FlowScalar/denseLayer(_:ldx:rows:inFeatures:packedWeight:bias:outFeatures:into:ldy:relu:gate:)``
    /// with the untransposed weight), which need no packing on conditioner shapes (tens of
    /// features, a chunk of rows) and fuse ReLU′; with them and the coupling tapes the RealNVP
    /// D = 64 training step went from 37–40k to 44–47k rows/s on one thread (bench/README.md).
    /// Double (reference evaluation) uses direct loops or BLAS.
    @_specialize(where T == Float) @_specialize(where T == Double)
    static func linearBackward<T: FlowScalar>(
        _ x: UnsafePointer<T>, ldx: Int, rows: Int, inFeatures: Int,
        weight: UnsafePointer<T>, outFeatures: Int, outputGradient dy: UnsafePointer<T>,
        weightGradient: UnsafeMutablePointer<T>, biasGradient: UnsafeMutablePointer<T>?,
        inputGradient dx: UnsafeMutablePointer<T>?, gate: UnsafePointer<T>? = nil
    ) {
        guard rows > 0, outFeatures > 0 else {
            if let dx { dx.update(repeating: 0, count: rows * inFeatures) }
            return
        }
        if T.self == Float.self {
            T.denseWeightGradient(dy, lddy: outFeatures, rows: rows, outFeatures: outFeatures, input: x, ldx: ldx,
                                  inFeatures: inFeatures, weightGradient: weightGradient, biasGradient: biasGradient)
            if let dx, inFeatures > 0 {
                T.denseLayer(dy, ldx: outFeatures, rows: rows, inFeatures: outFeatures, packedWeight: weight, bias: nil,
                             outFeatures: inFeatures, into: dx, ldy: inFeatures, relu: false, gate: gate)
            }
            return
        }
        defer { if let gate, let dx { for i in 0..<(rows * inFeatures) where !(gate[i] > 0) { dx[i] = 0 } } }
        if let biasGradient {
            for i in 0..<rows {
                let r = dy + i * outFeatures
                for j in 0..<outFeatures { biasGradient[j] += r[j] }
            }
        }
        guard inFeatures > 0 else { return }
        if rows * inFeatures * outFeatures <= directThreshold {
            for i in 0..<rows {
                let xr = x + i * ldx, g = dy + i * outFeatures
                for j in 0..<outFeatures {
                    let wg = weightGradient + j * inFeatures, gj = g[j]
                    for k in 0..<inFeatures { wg[k] += gj * xr[k] }
                }
            }
            if let dx {
                for i in 0..<rows {
                    let g = dy + i * outFeatures, d = dx + i * inFeatures
                    for k in 0..<inFeatures { d[k] = 0 }
                    for j in 0..<outFeatures {
                        let w = weight + j * inFeatures, gj = g[j]
                        for k in 0..<inFeatures { d[k] += gj * w[k] }
                    }
                }
            }
            return
        }
        FlowRuntime.configureBLAS()
        T.blasGemm(transA: true, transB: false, m: outFeatures, n: inFeatures, k: rows,
                   alpha: 1, a: dy, lda: outFeatures, b: x, ldb: ldx,
                   beta: 1, c: weightGradient, ldc: inFeatures)
        if let dx {
            T.blasGemm(transA: false, transB: false, m: rows, n: inFeatures, k: outFeatures,
                       alpha: 1, a: dy, lda: outFeatures, b: weight, ldb: inFeatures,
                       beta: 0, c: dx, ldc: inFeatures)
        }
    }
}
