/// The LU parameterisation of an invertible `D×D` weight shared by ``LULinear`` and
/// ``InvertibleConv1x1`` (Kingma & Dhariwal 2018, §3.2):
///
///     W = P · L · (U + diag(sign ⊙ exp(log_scale))),   log|det W| = Σ log_scale
///
/// `P` is a fixed permutation (`P[i, permutation[i]] = 1`), `L` unit lower triangular (the
/// strictly lower part of `lower`), `U` strictly upper triangular (the strictly upper part of
/// `upper`), `sign` fixed ±1. Initialised from a random orthogonal matrix (log|det| = 0).
struct LUWeight<Scalar: FlowScalar> {
    let dimension: Int
    let permutation: [Int]
    let sign: [Int]
    let lower: Parameter<Scalar>
    let upper: Parameter<Scalar>
    let logScale: Parameter<Scalar>

    /// Spec/file entries of the fixed part.
    static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("permutation", .intArray, "P[i, permutation[i]] = 1 (default: from the random orthogonal init)"),
            HyperParameter("sign", .intArray, "±1 signs of the diagonal of U (default: from the init)"),
        ]
    }

    /// A random orthogonal start from `seed`; `permutation`/`sign` from `config` when given.
    init(dimension d: Int, config: [String: JSONValue], seed: UInt64, context: String) throws {
        dimension = d
        lower = try Parameter(name: "lower", shape: [d, d])
        upper = try Parameter(name: "upper", shape: [d, d])
        logScale = try Parameter(name: "log_scale", shape: [d], bound: Scalar(Limits.maxLogScale))
        var rng = PhiloxStream(seed: seed, row: 0, stream: RandomStream.initialization)
        let q = DenseLinearAlgebra.randomOrthogonal(d, rng: &rng)
        guard let (lu, order) = DenseLinearAlgebra.luDecompose(q, d) else {
            throw FlowError.numerical("\(context): singular initial matrix")
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
                throw FlowError.invalidSpec("\(context): permutation is not a permutation of 0..<\(d)")
            }
            permutation = p
        } else {
            permutation = inv
        }
        if let s = config["sign"]?.intArrayValue {
            guard s.count == d, s.allSatisfy({ $0 == 1 || $0 == -1 }) else {
                throw FlowError.invalidSpec("\(context): sign must hold \(d) entries of ±1")
            }
            sign = s
        } else {
            sign = initialSign
        }
    }

    var config: [String: JSONValue] { ["permutation": JSONValue(permutation), "sign": JSONValue(sign)] }
    var parameters: [Parameter<Scalar>] { [lower, upper, logScale] }

    /// `Σ log_scale` = log|det W|.
    var logAbsDeterminant: Double { logScale.values.reduce(0.0) { $0 + Double($1) } }

    /// `W` assembled in Double. - Complexity: O(D³).
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    func assembled() -> [Double] {
        let d = dimension, lo = lower.values, up = upper.values, ls = logScale.values
        let diagonal = (0..<d).map { Double(sign[$0]) * Double.exp(Double(ls[$0])) }
        // M = L (U + diag s), then W[i, :] = M[permutation[i], :].
        var m = [Double](repeating: 0, count: d * d)
        for i in 0..<d {
            for j in 0..<d {
                var acc = 0.0
                for k in 0...min(i, j) {
                    let l = k == i ? 1.0 : Double(lo[i * d + k])
                    let u = k == j ? diagonal[j] : Double(up[k * d + j])
                    acc += l * u
                }
                m[i * d + j] = acc
            }
        }
        var w = [Double](repeating: 0, count: d * d)
        for i in 0..<d { for j in 0..<d { w[i * d + j] = m[permutation[i] * d + j] } }
        return w
    }

    /// Chains `∂L/∂W` (`D×D`, row-major) into the parameters' gradients, plus
    /// `logDetWeight · ∂log|det W|/∂θ` (= `logDetWeight` on every `log_scale`):
    /// `∂L/∂M = Pᵀ ∂L/∂W`, `∂L/∂L = ∂L/∂M·U'ᵀ` (strictly lower part), `∂L/∂U' = Lᵀ·∂L/∂M`
    /// (strictly upper part to `upper`, the diagonal times `sign·e^ls` to `log_scale`). In Double.
    /// - Complexity: O(D³).
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    func accumulateGradient(weightGradient dW: UnsafePointer<Scalar>, logDetWeight: Double) {
        let d = dimension
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
                var acc = 0.0
                for j in k..<d { acc += dM[i * d + j] * uEntry(k, j) }
                gLower[i * d + k] += Scalar(acc)
            }
        }
        for k in 0..<d {
            for j in k..<d {
                var acc = 0.0
                for i in k..<d { acc += lEntry(i, k) * dM[i * d + j] }
                if j > k { gUpper[k * d + j] += Scalar(acc) } else { gLogScale[j] += Scalar(acc * uEntry(j, j) + logDetWeight) }
            }
        }
    }
}
