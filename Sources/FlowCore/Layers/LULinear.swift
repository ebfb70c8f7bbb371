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
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("permutation", .intArray, "P[i, permutation[i]] = 1 (default: from the random orthogonal init)"),
            HyperParameter("sign", .intArray, "±1 signs of the diagonal of U (default: from the init)"),
        ]
    }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    let dimension: Int
    let permutation: [Int]
    let sign: [Int]
    public let lower: Parameter<Scalar>
    public let upper: Parameter<Scalar>
    public let logScale: Parameter<Scalar>
    /// `W` and `W⁻¹`, `[D, D]` row-major, rebuilt by ``parametersDidChange()``.
    private var weight: [Scalar] = []
    private var inverseWeight: [Scalar] = []

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        let d = eventShape.reduce(1, *)
        guard d <= 4096 else { throw FlowError.limitExceeded("lu_linear: \(d) features; the limit is 4096") }
        dimension = d
        inputShape = eventShape
        lower = Parameter(name: "lower", shape: [d, d])
        upper = Parameter(name: "upper", shape: [d, d])
        logScale = Parameter(name: "log_scale", shape: [d])

        var rng = PhiloxStream(seed: seed, row: 0, stream: RandomStream.initialization)
        let q = DenseLinearAlgebra.randomOrthogonal(d, rng: &rng)
        guard let (lu, order) = DenseLinearAlgebra.luDecompose(q, d) else {
            throw FlowError.numerical("lu_linear: singular initial matrix")
        }
        // q[order[i], :] = (L U)[i, :]  ⇒  q = P (L U) with P[order[i], i] = 1, i.e. P[j, inv[j]] = 1.
        var inv = [Int](repeating: 0, count: d)
        for (i, o) in order.enumerated() { inv[o] = i }
        var initialSign = [Int](repeating: 1, count: d)
        for i in 0..<d {
            for j in 0..<d {
                if j < i { lower.values[i * d + j] = Scalar(lu[i * d + j]) }
                if j > i { upper.values[i * d + j] = Scalar(lu[i * d + j]) }
            }
            let diag = lu[i * d + i]
            initialSign[i] = diag < 0 ? -1 : 1
            logScale.values[i] = Scalar(Double.log(abs(diag)))
        }

        if let p = config["permutation"]?.intArrayValue {
            guard p.count == d, Set(p) == Set(0..<d) else {
                throw FlowError.invalidSpec("lu_linear: permutation is not a permutation of 0..<\(d)")
            }
            permutation = p
        } else {
            permutation = inv
        }
        if let s = config["sign"]?.intArrayValue {
            guard s.count == d, s.allSatisfy({ $0 == 1 || $0 == -1 }) else {
                throw FlowError.invalidSpec("lu_linear: sign must hold \(d) entries of ±1")
            }
            sign = s
        } else {
            sign = initialSign
        }
        parametersDidChange()
    }

    public var config: [String: JSONValue] {
        ["type": .string(Self.typeName), "permutation": JSONValue(permutation), "sign": JSONValue(sign)]
    }

    public var parameters: [Parameter<Scalar>] { [lower, upper, logScale] }

    /// `W` assembled in Double from the current parameters.
    func assembledWeight() -> [Double] {
        let d = dimension
        // M = L (U + diag s), then W[i, :] = M[permutation[i], :].
        var m = [Double](repeating: 0, count: d * d)
        for i in 0..<d {
            for j in 0..<d {
                var acc = 0.0
                for k in 0...min(i, j) {
                    let l = k == i ? 1.0 : Double(lower.values[i * d + k])
                    let u = k == j ? Double(sign[j]) * Double.exp(Double(logScale.values[j])) : Double(upper.values[k * d + j])
                    acc += l * u
                }
                m[i * d + j] = acc
            }
        }
        var w = [Double](repeating: 0, count: d * d)
        for i in 0..<d { for j in 0..<d { w[i * d + j] = m[permutation[i] * d + j] } }
        return w
    }

    public func parametersDidChange() {
        let w = assembledWeight()
        weight = w.map { Scalar($0) }
        let inv = DenseLinearAlgebra.inverse(w, dimension) ?? [Double](repeating: .nan, count: w.count)
        inverseWeight = inv.map { Scalar($0) }
    }

    public func workspaceBytes(count: Int) -> Int { Arena.bytes(Scalar.self, count * dimension) }

    var logDetPerSample: Double { logScale.values.reduce(0.0) { $0 + Double($1) } }

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
        // ∂L/∂M[permutation[i], :] = ∂L/∂W[i, :]
        var dM = [Double](repeating: 0, count: d * d)
        for i in 0..<d { for j in 0..<d { dM[permutation[i] * d + j] = Double(dW[i * d + j]) } }
        let lo = lower.values, up = upper.values, ls = logScale.values
        @inline(__always) func lEntry(_ i: Int, _ k: Int) -> Double { k == i ? 1 : (k < i ? Double(lo[i * d + k]) : 0) }
        @inline(__always) func uEntry(_ k: Int, _ j: Int) -> Double {
            k == j ? Double(sign[j]) * Double.exp(Double(ls[j])) : (k < j ? Double(up[k * d + j]) : 0)
        }
        let gLower = lower.gradient, gUpper = upper.gradient, gLogScale = logScale.gradient
        for i in 0..<d {
            for k in 0..<i {
                // ∂L/∂L[i,k] = Σ_j dM[i,j] U'[k,j], U'[k,j] = 0 for j < k.
                var acc = 0.0
                for j in k..<d { acc += dM[i * d + j] * uEntry(k, j) }
                gLower[i * d + k] += Scalar(acc)
            }
        }
        for k in 0..<d {
            for j in k..<d {
                // ∂L/∂U'[k,j] = Σ_i L[i,k] dM[i,j], L[i,k] = 0 for i < k.
                var acc = 0.0
                for i in k..<d { acc += lEntry(i, k) * dM[i * d + j] }
                if j > k { gUpper[k * d + j] += Scalar(acc) } else { gLogScale[j] += Scalar(acc * uEntry(j, j) + wSum) }
            }
        }
    }
}
