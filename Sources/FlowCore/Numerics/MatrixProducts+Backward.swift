extension MatrixProducts {
    /// Gradients of ``linear(_:ldx:rows:inFeatures:weight:bias:outFeatures:into:)``.
    ///
    /// Given `dy = ∂L/∂y` (`rows × out`, contiguous): adds `dyᵀ·x` to `weightGradient`
    /// (`[out, in]`) and the column sums of `dy` to `biasGradient`, and when `dx` is given writes
    /// `∂L/∂x = dy·W` into it (`rows × in`, contiguous, overwritten).
    @_specialize(where T == Float) @_specialize(where T == Double)
    static func linearBackward<T: FlowScalar>(
        _ x: UnsafePointer<T>, ldx: Int, rows: Int, inFeatures: Int,
        weight: UnsafePointer<T>, outFeatures: Int, outputGradient dy: UnsafePointer<T>,
        weightGradient: UnsafeMutablePointer<T>, biasGradient: UnsafeMutablePointer<T>?,
        inputGradient dx: UnsafeMutablePointer<T>?
    ) {
        guard rows > 0, outFeatures > 0 else {
            if let dx { dx.update(repeating: 0, count: rows * inFeatures) }
            return
        }
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
