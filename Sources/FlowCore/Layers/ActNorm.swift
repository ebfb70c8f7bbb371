/// Activation normalisation (Kingma & Dhariwal, "Glow", NeurIPS 2018): a per-channel affine map
///
///     z = (x + bias) ⊙ exp(log_scale),   log|det J| = S · Σ_c log_scale_c
///
/// where channels are the first event dimension (`[D]` vectors: one channel per feature;
/// `[C, H, W]` images: per channel, `S = H·W` positions share it).
///
/// Data-dependent initialisation (``initialize(from:count:)``): on the first batch, `bias = −mean`
/// and `log_scale = −log(std + ε)`, so outputs start with zero mean and unit variance per channel.
/// The `initialized` flag is part of the spec and the model file, so a loaded model is never
/// re-initialised. An uninitialised ActNorm is the identity.
public final class ActNorm<Scalar: FlowScalar>: FlowLayer {
    public static var typeName: String { "actnorm" }
    public static var hyperParameters: [HyperParameter] {
        [HyperParameter("initialized", .bool, "whether data-dependent initialisation has run (default false)")]
    }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    public let channels: Int
    /// Positions per channel (product of the event dimensions after the first).
    public let spatial: Int
    public let bias: Parameter<Scalar>
    public let logScale: Parameter<Scalar>
    /// Whether data-dependent initialisation has run.
    public private(set) var isInitialized: Bool

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        guard let c = eventShape.first else { throw FlowError.invalidSpec("actnorm: empty event shape") }
        channels = c
        spatial = eventShape.dropFirst().reduce(1, *)
        inputShape = eventShape
        bias = try Parameter(name: "bias", shape: [c])
        logScale = try Parameter(name: "log_scale", shape: [c], bound: Scalar(Limits.maxLogScale))
        isInitialized = config.bool("initialized", default: false)
    }

    public var config: [String: JSONValue] {
        ["type": .string(Self.typeName), "initialized": .bool(isInitialized)]
    }

    public var parameters: [Parameter<Scalar>] { [bias, logScale] }
    public func workspaceBytes(count: Int) -> Int { Arena.bytes(Scalar.self, channels) }

    /// `S · Σ log_scale`, summed in Double.
    var logDetPerSample: Double {
        Double(spatial) * logScale.values.reduce(0.0) { $0 + Double($1) }
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        apply(x, count: count, logDet: logDet, arena: &arena, inverse: false)
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        apply(z, count: count, logDet: logDet, arena: &arena, inverse: true)
    }

    /// Forward `(x + b)·e^ls`, inverse `z·e^−ls − b`, row by row over contiguous memory.
    @inline(__always)
    private func apply(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                       logDet: UnsafeMutablePointer<Double>, arena: inout Arena, inverse: Bool) {
        let b = bias.pointer, ls = logScale.pointer
        let scale = arena.take(Scalar.self, channels)
        for c in 0..<channels { scale[c] = Scalar.exp(inverse ? -ls[c] : ls[c]) }
        for r in 0..<count {
            let row = x + r * channels * spatial
            if spatial == 1 {
                if inverse { for c in 0..<channels { row[c] = row[c] * scale[c] - b[c] } }
                else { for c in 0..<channels { row[c] = (row[c] + b[c]) * scale[c] } }
            } else {
                for c in 0..<channels {
                    let p = row + c * spatial, k = scale[c], shift = b[c]
                    if inverse { for s in 0..<spatial { p[s] = p[s] * k - shift } }
                    else { for s in 0..<spatial { p[s] = (p[s] + shift) * k } }
                }
            }
        }
        let ld = inverse ? -logDetPerSample : logDetPerSample
        for r in 0..<count { logDet[r] += ld }
    }

    /// Data-dependent initialisation from `count` samples: per channel, `bias = −mean` and
    /// `log_scale = −log(std + 1e−6)`, statistics in Double. Marks the layer initialised.
    public func initialize(from x: UnsafePointer<Scalar>, count: Int) {
        guard count > 0 else { return }
        for c in 0..<channels {
            var sum = 0.0, sumSq = 0.0
            for r in 0..<count {
                let p = x + r * channels * spatial + c * spatial
                for s in 0..<spatial { let v = Double(p[s]); sum += v; sumSq += v * v }
            }
            let n = Double(count * spatial)
            let mean = sum / n
            let variance = Swift.max(sumSq / n - mean * mean, 0)
            bias.values[c] = Scalar(-mean)
            logScale.values[c] = Scalar(-Double.log(variance.squareRoot() + 1e-6))
        }
        isInitialized = true
    }
}

extension ActNorm {
    public func backwardWorkspaceBytes(count: Int) -> Int { 0 }

    /// `z = (x + b)·e^ls`, `logDet = S·Σ ls`: `∂L/∂x = g·e^ls`, `∂L/∂b_c = Σ g·e^ls`,
    /// `∂L/∂ls_c = Σ g·(x + b)·e^ls + S·Σᵢ wᵢ` (sums over rows and the channel's positions).
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                         logDetGradient w: UnsafePointer<Scalar>, arena: inout Arena) {
        let b = bias.pointer, ls = logScale.pointer
        let gb = bias.gradient.baseAddress!, gls = logScale.gradient.baseAddress!
        var wSum: Scalar = 0
        for r in 0..<count { wSum += w[r] }
        for c in 0..<channels {
            let scale = Scalar.exp(ls[c]), shift = b[c]
            var dBias: Scalar = 0, dLogScale: Scalar = 0
            for r in 0..<count {
                let offset = r * channels * spatial + c * spatial
                let xp = x + offset, gp = g + offset
                for s in 0..<spatial {
                    let gs = gp[s] * scale
                    dBias += gs
                    dLogScale += gs * (xp[s] + shift)
                    gp[s] = gs
                }
            }
            gb[c] += dBias
            gls[c] += dLogScale + Scalar(spatial) * wSum
        }
    }
}
