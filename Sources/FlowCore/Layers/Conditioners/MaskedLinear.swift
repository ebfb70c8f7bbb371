/// One dense layer `y = x·(W ⊙ M)ᵀ + b` (PyTorch's `Linear`, `W` of shape `[out, in]`) with an
/// optional 0/1 mask `M`: a building block of ``ResidualMADE``.
///
/// Masked weights are held at exactly zero (at initialisation, after every parameter change in
/// ``repack()``, and their gradients are zeroed in ``backward(_:ldx:rows:outputGradient:inputGradient:gate:parameterGradients:)``),
/// so the products run the dense kernels unchanged, as in ``MLP``.
final class MaskedLinear<T: FlowScalar> {
    let inFeatures: Int
    let outFeatures: Int
    let weight: Parameter<T>
    let bias: Parameter<T>
    /// 0/1 per weight entry (`[out, in]` row-major), or nil for a dense layer.
    let mask: [T]?
    /// The weight transposed (`in × out`), the layout the dense kernel streams; refreshed by
    /// ``repack()``.
    private let packed: UnsafeMutablePointer<T>

    /// A layer whose datasets are `weightName` and `biasName`. With `random`, weights and biases
    /// start from PyTorch's default `U(−1/√in, 1/√in)`, drawn from `rng` (weights first, in
    /// storage order, then biases); otherwise at zero, drawing nothing.
    init(in inFeatures: Int, out outFeatures: Int, weightName: String, biasName: String, mask: [T]?,
         random: Bool, rng: inout PhiloxStream) throws {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.mask = mask
        weight = try Parameter<T>(name: weightName, shape: [outFeatures, inFeatures])
        bias = try Parameter<T>(name: biasName, shape: [outFeatures])
        if random, inFeatures > 0 {
            let bound = 1 / Double(inFeatures).squareRoot()
            for i in 0..<weight.count { weight.values[i] = T(rng.nextUniform(in: -bound, bound)) }
            for i in 0..<bias.count { bias.values[i] = T(rng.nextUniform(in: -bound, bound)) }
        }
        let capacity = Swift.max(weight.count, 1)
        packed = try MemoryBudget.allocate(T.self, count: capacity, "the packed copy of \(weightName)")
        repack()
    }

    deinit { MemoryBudget.free(packed) }

    var parameters: [Parameter<T>] { [weight, bias] }

    /// Zeroes the masked weights and refreshes the transposed copy. O(in·out).
    func repack() {
        if let mask {
            for i in 0..<weight.count { weight.values[i] *= mask[i] }
        }
        MatrixProducts.transpose(weight.pointer, rows: outFeatures, columns: inFeatures, into: packed)
    }

    /// `y = x·(W ⊙ M)ᵀ + b` over `rows` rows (strides `ldx`, `ldy`), with ReLU fused when `relu`;
    /// `sparseInput` when `x` comes from a ReLU (``FlowScalar/denseLayer(_:ldx:rows:inFeatures:packedWeight:bias:outFeatures:into:ldy:relu:gate:sparseInput:weight:)``:
    /// the same values up to the sign of zeros).
    /// - Complexity: 2·rows·in·out flops.
    @inline(__always)
    func callAsFunction(_ x: UnsafePointer<T>, ldx: Int, rows: Int, into y: UnsafeMutablePointer<T>, ldy: Int,
                        relu: Bool = false, sparseInput: Bool = false) {
        T.denseLayer(x, ldx: ldx, rows: rows, inFeatures: inFeatures, packedWeight: UnsafePointer(packed),
                     bias: bias.pointer, outFeatures: outFeatures, into: y, ldy: ldy, relu: relu,
                     sparseInput: sparseInput, weight: weight.pointer)
    }

    /// Back-propagates `dy = ∂L/∂y` (`rows × out`, contiguous) through the layer at input `x`:
    /// adds `dyᵀ·x` and the column sums of `dy` to the weight and bias gradients (masked entries
    /// kept at zero) unless `parameterGradients` is false, and writes `∂L/∂x = dy·(W ⊙ M)`
    /// (`rows × in`, contiguous) into `inputGradient` when given, zeroed where `gate > 0` does
    /// not hold (a ReLU's derivative read off its output, fused).
    /// - Complexity: 4·rows·in·out flops.
    @inline(__always)
    func backward(_ x: UnsafePointer<T>, ldx: Int, rows: Int, outputGradient dy: UnsafePointer<T>,
                  inputGradient dx: UnsafeMutablePointer<T>?, gate: UnsafePointer<T>? = nil,
                  parameterGradients: Bool) {
        MatrixProducts.linearBackward(x, ldx: ldx, rows: rows, inFeatures: inFeatures, weight: weight.pointer,
                                      outFeatures: outFeatures, outputGradient: dy,
                                      weightGradient: parameterGradients ? weight.gradient.baseAddress! : nil,
                                      biasGradient: parameterGradients ? bias.gradient.baseAddress! : nil,
                                      inputGradient: dx, gate: gate)
        if parameterGradients, let mask {
            let g = weight.gradient
            for i in 0..<g.count { g[i] *= mask[i] }
        }
    }
}
