/// An invertible linear map in LU parameterisation (Glow's LU-decomposed 1×1 convolution,
/// applied to feature vectors):
///
///     z = W x,   W = P · L · (U + diag(sign ⊙ exp(log_scale))),   log|det J| = Σ log_scale
///
/// `P` is a fixed permutation (`P[i, permutation[i]] = 1`), `L` unit lower triangular (the
/// strictly lower part of `lower`), `U` strictly upper triangular (the strictly upper part of
/// `upper`), `sign` fixed ±1. Initialised from a random orthogonal matrix (log|det| = 0).
///
/// `W` and `W⁻¹` are assembled in Double whenever parameters change, so both directions are one
/// matrix product per batch. - Complexity: O(N·D²) per call, O(D³) per parameter change.
public final class LULinear<Scalar: FlowScalar>: FlowLayer {
    public static var typeName: String { "lu_linear" }
    public static var hyperParameters: [HyperParameter] { LUWeight<Scalar>.hyperParameters }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    let dimension: Int
    let lu: LUWeight<Scalar>
    public var lower: Parameter<Scalar> { lu.lower }
    public var upper: Parameter<Scalar> { lu.upper }
    public var logScale: Parameter<Scalar> { lu.logScale }
    /// The fixed permutation and signs (see ``LUWeight``).
    var permutation: [Int] { lu.permutation }
    var sign: [Int] { lu.sign }
    /// `W` and `W⁻¹`, `[D, D]` row-major, rebuilt by ``parametersDidChange()``.
    private var weight: [Scalar] = []
    private var inverseWeight: [Scalar] = []
    /// ‖W‖₁·‖W⁻¹‖₁, rebuilt with them.
    private var conditionNumber = 1.0

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        let d = eventShape.reduce(1, *)
        guard d <= 4096 else { throw FlowError.limitExceeded("lu_linear: \(d) features; the limit is 4096") }
        dimension = d
        inputShape = eventShape
        lu = try LUWeight(dimension: d, config: config, seed: seed, context: "lu_linear")
        parametersDidChange()
    }

    public var config: [String: JSONValue] { lu.config.merging(["type": .string(Self.typeName)]) { $1 } }

    public var parameters: [Parameter<Scalar>] { lu.parameters }

    /// `W` assembled in Double from the current parameters.
    func assembledWeight() -> [Double] { lu.assembled() }

    public func parametersDidChange() {
        let w = assembledWeight()
        weight = w.map { Scalar($0) }
        let inv = DenseLinearAlgebra.inverse(w, dimension) ?? [Double](repeating: .nan, count: w.count)
        inverseWeight = inv.map { Scalar($0) }
        conditionNumber = DenseLinearAlgebra.conditionNumber(w, inverse: inv, dimension)
    }

    public func workspaceBytes(count: Int) -> Int { Arena.bytes(Scalar.self, count * dimension) }

    var logDetPerSample: Double { lu.logAbsDeterminant }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        multiply(x, count: count, by: weight, arena: &arena)
        let ld = logDetPerSample
        for r in 0..<count { logDet[r] += ld }
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        multiply(z, count: count, by: inverseWeight, arena: &arena)
        let ld = logDetPerSample
        for r in 0..<count { logDet[r] -= ld }
    }

    @inline(__always)
    private func multiply(_ x: UnsafeMutablePointer<Scalar>, count: Int, by m: [Scalar], arena: inout Arena) {
        let d = dimension
        let out = arena.take(Scalar.self, count * d)
        m.withUnsafeBufferPointer { w in
            MatrixProducts.linear(x, ldx: d, rows: count, inFeatures: d, weight: w.baseAddress!,
                                  bias: nil, outFeatures: d, into: out)
        }
        x.update(from: out, count: count * d)
    }
}

extension LULinear {
    public func backwardWorkspaceBytes(count: Int) -> Int {
        Arena.bytes(Scalar.self, count * dimension) + Arena.bytes(Scalar.self, dimension * dimension)
    }

    /// `z = W x`: `∂L/∂x = Wᵀ g` and `∂L/∂W = Σ_rows g xᵀ`, then through
    /// `W = P·L·U'` (`U' = U + diag(sign·e^ls)`): `∂L/∂M = Pᵀ ∂L/∂W`, `∂L/∂L = ∂L/∂M·U'ᵀ`
    /// (strictly lower part), `∂L/∂U' = Lᵀ·∂L/∂M` (strictly upper part to `upper`, the diagonal
    /// times `sign·e^ls` to `log_scale`), plus `Σᵢ wᵢ` to every `log_scale` from the log-det.
    /// The D×D chain runs in Double.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                         logDetGradient w: UnsafePointer<Scalar>, arena: inout Arena) {
        let d = dimension
        let dW = arena.take(Scalar.self, d * d)
        dW.update(repeating: 0, count: d * d)
        let dx = arena.take(Scalar.self, count * d)
        weight.withUnsafeBufferPointer { wp in
            // Z = X Wᵀ is linear(x; weight = W): reuse the dense backward.
            MatrixProducts.linearBackward(x, ldx: d, rows: count, inFeatures: d, weight: wp.baseAddress!,
                                          outFeatures: d, outputGradient: g, weightGradient: dW,
                                          biasGradient: nil, inputGradient: dx)
        }
        g.update(from: dx, count: count * d)

        var wSum = 0.0
        for r in 0..<count { wSum += Double(w[r]) }
        lu.accumulateGradient(weightGradient: dW, logDetWeight: wSum)
    }
}

extension LULinear: InvertibilityConstrained {
    /// `W` is invertible for every finite parameter value, but its inverse is only usable in the
    /// scalar type up to a condition number of ``Limits/maxConditionNumber`` (log-scales of ±30
    /// alone could reach e⁶⁰).
    public var invertibilityProblem: String? {
        guard inverseWeight.allSatisfy({ $0.isFinite }) else { return "the weight's inverse is not finite" }
        guard conditionNumber <= Limits.maxConditionNumber else {
            return "the weight's condition number \(conditionNumber) exceeds \(Limits.maxConditionNumber): its inverse is not usable in float32"
        }
        return nil
    }
}
