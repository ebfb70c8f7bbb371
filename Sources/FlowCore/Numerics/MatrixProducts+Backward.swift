extension MatrixProducts {
    /// Gradients of ``linear(_:ldx:rows:inFeatures:weight:bias:outFeatures:into:)``.
    ///
    /// Given `dy = ∂L/∂y` (`rows × out`, contiguous): adds `dyᵀ·x` to `weightGradient`
    /// (`[out, in]`) and the column sums of `dy` to `biasGradient`, and when `dx` is given writes
    /// `∂L/∂x = dy·W` into it (`rows × in`, contiguous, overwritten). `gate` (`rows × in`,
    /// contiguous; needs `dx`) zeroes `∂L/∂x` where `gate > 0` does not hold: a ReLU's
    /// derivative read off its activation, fused into the product. `sparseOutputGradient` says
    /// `dy` is mostly exact zeros (the gradient of a ReLU layer's pre-activation, gated), so the
    /// `dx` product skips them (Float: `fk_linear_sparse_f32`; the same values up to the sign of
    /// zeros).
    ///
    /// Both products run the dense kernels
    /// (``FlowScalar/denseWeightGradient(_:lddy:rows:outFeatures:input:ldx:inFeatures:weightGradient:biasGradient:)``,
    /// and ``FlowScalar/denseLayer(_:ldx:rows:inFeatures:packedWeight:bias:outFeatures:into:ldy:relu:gate:)``
    /// with the untransposed weight as its packed one): in Float the AVX2 kernels of
    /// `CFlowKernels`, which need no packing on conditioner shapes (tens of features, a chunk of
    /// rows) and fuse ReLU′. Double (reference evaluation) runs the same sums in Swift loops.
    @_specialize(where T == Float) @_specialize(where T == Double)
    static func linearBackward<T: FlowScalar>(
        _ x: UnsafePointer<T>, ldx: Int, rows: Int, inFeatures: Int,
        weight: UnsafePointer<T>, outFeatures: Int, outputGradient dy: UnsafePointer<T>,
        weightGradient: UnsafeMutablePointer<T>?, biasGradient: UnsafeMutablePointer<T>?,
        inputGradient dx: UnsafeMutablePointer<T>?, gate: UnsafePointer<T>? = nil, sparseOutputGradient: Bool = false
    ) {
        guard rows > 0, outFeatures > 0 else {
            if let dx { dx.update(repeating: 0, count: rows * inFeatures) }
            return
        }
        if let weightGradient {
            T.denseWeightGradient(dy, lddy: outFeatures, rows: rows, outFeatures: outFeatures, input: x, ldx: ldx,
                                  inFeatures: inFeatures, weightGradient: weightGradient, biasGradient: biasGradient)
        }
        if let dx, inFeatures > 0 {
            T.denseLayer(dy, ldx: outFeatures, rows: rows, inFeatures: outFeatures, packedWeight: weight, bias: nil,
                         outFeatures: inFeatures, into: dx, ldy: inFeatures, relu: false, gate: gate,
                         sparseInput: sparseOutputGradient)
        }
    }
}
