import CFlowKernels

/// Glow's invertible 1×1 convolution (Kingma & Dhariwal 2018): the same invertible `C×C` matrix
/// mixes the channels at every pixel, `z[:, p] = W · x[:, p]`.
///
///     log|det J| = H·W · log|det W|
///
/// Two parameterisations (`"lu"` hyper-parameter):
/// - `lu = true` (default): `W = P·L·(U + diag(sign·e^log_scale))` (``LUWeight``):
///   log|det W| = Σ log_scale, O(C) per evaluation and always invertible in exact arithmetic.
/// - `lu = false`: a plain `weight [C, C]`; log|det W| and `W⁻¹` come from a pivoted LU
///   factorisation in Double on every parameter change (O(C³), stable: Σ log|u_ii|).
/// Both start from a random orthogonal matrix (log|det| = 0).
///
/// Events are `[C, spatial…]` (images `[C, H, W]`); the first extent is the channel axis.
/// - Complexity: O(N·C²·H·W) per call.
public final class InvertibleConv1x1<Scalar: FlowScalar>: FlowLayer {
    public static var typeName: String { "invertible_conv1x1" }
    public static var hyperParameters: [HyperParameter] {
        [HyperParameter("lu", .bool, "LU parameterisation (default true); false stores a plain weight")]
            + LUWeight<Scalar>.hyperParameters
    }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    let channels: Int
    let spatial: Int
    /// The LU factors (`lu = true`) or nil.
    let lu: LUWeight<Scalar>?
    /// The plain weight `[C, C]` (`lu = false`) or nil.
    let plainWeight: Parameter<Scalar>?
    /// `W`, `W⁻¹` and `Wᵀ` in the scalar type, and log|det W|, rebuilt by ``parametersDidChange()``.
    private var weight: [Scalar] = []
    private var inverseWeight: [Scalar] = []
    private var inverseTransposeDouble: [Double] = []
    private var logAbsDet = 0.0
    /// ‖W‖₁·‖W⁻¹‖₁, rebuilt with `W⁻¹`.
    private var conditionNumber = 1.0

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        guard eventShape.count >= 2 else {
            throw FlowError.invalidSpec("invertible_conv1x1 needs events [C, H, W] (use lu_linear for vectors), got \(eventShape)")
        }
        let c = eventShape[0]
        guard c <= 4096 else { throw FlowError.limitExceeded("invertible_conv1x1: \(c) channels; the limit is 4096") }
        channels = c
        spatial = eventShape.dropFirst().reduce(1, *)
        inputShape = eventShape
        if config.bool("lu", default: true) {
            lu = try LUWeight(dimension: c, config: config, seed: seed, context: "invertible_conv1x1")
            plainWeight = nil
        } else {
            guard config["permutation"] == nil, config["sign"] == nil else {
                throw FlowError.invalidSpec("invertible_conv1x1: permutation and sign belong to the LU parameterisation (lu = true)")
            }
            lu = nil
            let w = try Parameter<Scalar>(name: "weight", shape: [c, c])
            var rng = PhiloxStream(seed: seed, row: 0, stream: RandomStream.initialization)
            let q = DenseLinearAlgebra.randomOrthogonal(c, rng: &rng)
            for i in 0..<(c * c) { w.values[i] = Scalar(q[i]) }
            plainWeight = w
        }
        parametersDidChange()
    }

    public var config: [String: JSONValue] {
        var c: [String: JSONValue] = ["type": .string(Self.typeName), "lu": .bool(lu != nil)]
        if let lu { c.merge(lu.config) { $1 } }
        return c
    }

    public var parameters: [Parameter<Scalar>] { lu?.parameters ?? [plainWeight!] }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func parametersDidChange() {
        let c = channels
        let w: [Double]
        if let lu {
            w = lu.assembled()
            logAbsDet = lu.logAbsDeterminant
        } else {
            w = plainWeight!.values.map { Double($0) }
            logAbsDet = DenseLinearAlgebra.logAbsDeterminant(w, c)?.logAbs ?? -.infinity
        }
        weight = w.map { Scalar($0) }
        let inv = DenseLinearAlgebra.inverse(w, c) ?? [Double](repeating: .nan, count: c * c)
        inverseWeight = inv.map { Scalar($0) }
        conditionNumber = DenseLinearAlgebra.conditionNumber(w, inverse: inv, c)
        var invT = [Double](repeating: 0, count: c * c)
        for i in 0..<c { for j in 0..<c { invT[i * c + j] = inv[j * c + i] } }
        inverseTransposeDouble = invT
    }

    /// log|det J| per sample.
    var logDetPerSample: Double { Double(spatial) * logAbsDet }

    /// Scratch of ``mix(_:count:by:transpose:arena:)``: one sample's copy and, for float32, the
    /// mixing matrix laid out for the kernel.
    public func workspaceBytes(count: Int) -> Int {
        Arena.bytes(Scalar.self, channels * spatial) + Arena.bytes(Scalar.self, channels * channels)
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        weight.withUnsafeBufferPointer { mix(x, count: count, by: $0.baseAddress!, transpose: false, arena: &arena) }
        let ld = logDetPerSample
        for r in 0..<count { logDet[r] += ld }
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        inverseWeight.withUnsafeBufferPointer { mix(z, count: count, by: $0.baseAddress!, transpose: false, arena: &arena) }
        let ld = logDetPerSample
        for r in 0..<count { logDet[r] -= ld }
    }

    /// In place, per sample: `X ← M·X` (or `Mᵀ·X`) with `X` the `C × S` channel-major block.
    ///
    /// Float32 runs the direct convolution kernel with one tap (`fk_conv_f32`: four output
    /// channels × sixteen positions in registers per pass over the inputs) on the positions in
    /// multiples of 8, the rest in scalar loops; wide matrices (`C ≥ 32`) use BLAS.
    /// - Complexity: `2·count·C²·S` flops; scratch ``workspaceBytes(count:)``.
    @inline(__always)
    func mix(_ x: UnsafeMutablePointer<Scalar>, count: Int, by m: UnsafePointer<Scalar>, transpose: Bool,
             arena: inout Arena) {
        let c = channels, s = spatial
        let tmp = arena.take(Scalar.self, c * s)
        // The kernel's weight: coefficient of input j for output i at [j·C + i], i.e. Mᵀ for M·X.
        let kernelWeight = arena.take(Scalar.self, c * c)
        for i in 0..<c { for j in 0..<c { kernelWeight[j * c + i] = transpose ? m[j * c + i] : m[i * c + j] } }
        let vectorized = Scalar.self == Float.self && c < 32 ? s & ~7 : 0
        for r in 0..<count {
            let block = x + r * c * s
            tmp.update(from: block, count: c * s)
            if c >= 32 {
                Scalar.blasGemm(transA: transpose, transB: false, m: c, n: s, k: c, alpha: 1, a: m, lda: c,
                                b: tmp, ldb: s, beta: 0, c: block, ldc: s)
                continue
            }
            if vectorized > 0 {
                var offset = 0
                fk_conv_f32(UnsafeRawPointer(tmp).assumingMemoryBound(to: Float.self), s, c, &offset, 1,
                            UnsafeRawPointer(kernelWeight).assumingMemoryBound(to: Float.self), nil, c,
                            UnsafeMutableRawPointer(block).assumingMemoryBound(to: Float.self), s, 0, vectorized,
                            nil, 0, 0)
            }
            for i in 0..<c {
                let out = block + i * s
                for p in vectorized..<s { out[p] = 0 }
                for j in 0..<c {
                    let mij = kernelWeight[j * c + i]
                    let src = tmp + j * s
                    for p in vectorized..<s { out[p] += mij * src[p] }
                }
            }
        }
    }
}

extension InvertibleConv1x1 {
    public func backwardWorkspaceBytes(count: Int) -> Int {
        workspaceBytes(count: count) + Arena.bytes(Scalar.self, channels * channels)
            + (usesWeightGradientKernel ? Arena.bytes(Float.self, channels * channels * 8) : 0)
    }

    /// Whether float32 weight gradients run the direct kernel (`fk_conv_wgrad_f32` with one tap,
    /// `C < 32`, `S` a multiple of 8) instead of one small BLAS GEMM per sample.
    var usesWeightGradientKernel: Bool { Scalar.self == Float.self && channels < 32 && spatial % 8 == 0 }

    /// `Z = W X` per sample: `∂L/∂X = Wᵀ G`, `∂L/∂W = Σ_n G_n X_nᵀ`, and the log-det term
    /// `S·Σ wᵢ · ∂log|det W|/∂θ`: `S·Σw·W⁻ᵀ` for the plain weight, through ``LUWeight`` otherwise.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                         logDetGradient w: UnsafePointer<Scalar>, arena: inout Arena) {
        let c = channels, s = spatial
        let dW = arena.take(Scalar.self, c * c)
        dW.update(repeating: 0, count: c * c)
        if usesWeightGradientKernel {
            // dW[i·C + j] += Σ_p G[i, p] X[j, p]: the kernel's [out][cin][taps] layout with one tap.
            let scratch = arena.take(Float.self, c * c * 8), dWf = UnsafeMutableRawPointer(dW).assumingMemoryBound(to: Float.self)
            var offset = 0
            for r in 0..<count {
                fk_conv_wgrad_f32(UnsafeRawPointer(g + r * c * s).assumingMemoryBound(to: Float.self), s, c,
                                  UnsafeRawPointer(x + r * c * s).assumingMemoryBound(to: Float.self), s, c,
                                  &offset, 1, 0, s, dWf, scratch)
            }
        } else {
            for r in 0..<count {
                let xr = x + r * c * s, gr = UnsafePointer(g + r * c * s)
                // dW[i, j] += Σ_p G[i, p] X[j, p]
                Scalar.blasGemm(transA: false, transB: true, m: c, n: c, k: s, alpha: 1, a: gr, lda: s,
                                b: xr, ldb: s, beta: 1, c: dW, ldc: c)
            }
        }
        weight.withUnsafeBufferPointer { mix(g, count: count, by: $0.baseAddress!, transpose: true, arena: &arena) }
        var wSum = 0.0
        for r in 0..<count { wSum += Double(w[r]) }
        let logDetWeight = wSum * Double(spatial)
        if let lu {
            lu.accumulateGradient(weightGradient: dW, logDetWeight: logDetWeight)
        } else {
            let gw = plainWeight!.gradient
            for i in 0..<(c * c) { gw[i] += dW[i] + Scalar(logDetWeight * inverseTransposeDouble[i]) }
        }
    }
}

extension InvertibleConv1x1: InvertibilityConstrained {
    /// `W` must be invertible, with a finite log-determinant and inverse in the scalar type, and a
    /// condition number of at most ``Limits/maxConditionNumber`` (float32 keeps about 7 digits:
    /// beyond it the inverse no longer undoes the forward map). A plain weight can be singular;
    /// the LU parameterisation is invertible for every finite value but can be as badly
    /// conditioned.
    public var invertibilityProblem: String? {
        guard logAbsDet.isFinite, inverseWeight.allSatisfy({ $0.isFinite }) else {
            return "the weight is singular: the convolution has no inverse"
        }
        guard conditionNumber <= Limits.maxConditionNumber else {
            return "the weight's condition number \(conditionNumber) exceeds \(Limits.maxConditionNumber): its inverse is not usable in float32"
        }
        return nil
    }
}
