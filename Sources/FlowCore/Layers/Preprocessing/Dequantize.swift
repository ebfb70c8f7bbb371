/// Uniform dequantisation of `n`-bit data (Theis et al. 2016; RealNVP, Glow).
///
/// Discrete data hold integer levels `0 … 2ⁿ − 1`. Training adds uniform noise `u ~ U[0, 1)` to
/// every level (``Trainer`` does it when a flow starts with this layer, from Philox stream
/// ``RandomStream/dequantization``); this bijection then maps the continuous `x = level + u`
/// into the unit cube:
///
///     y = x / 2ⁿ,   log|det J| = −D·n·log 2
///
/// With it, `−log p(level + u)` in nats is an upper bound on the discrete data's code length, so
/// bits/dim = `−log p / (D·log 2)` directly (no further correction). Inverse: `x = y·2ⁿ`;
/// `floor(x)` clamped to the level range gives sampled levels.
public final class Dequantize<Scalar: FlowScalar>: FlowLayer {
    public static var typeName: String { "dequantize" }
    public static var hyperParameters: [HyperParameter] {
        [HyperParameter("bits", .int, "bits per value n: levels 0…2ⁿ−1 (1…16, default 8)")]
    }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    public let bits: Int
    /// 2ⁿ.
    public var levels: Int { 1 << bits }

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        bits = config.int("bits", default: 8)
        guard (1...16).contains(bits) else { throw FlowError.invalidSpec("dequantize: bits must be in 1...16, got \(bits)") }
        inputShape = eventShape
    }

    public var config: [String: JSONValue] { ["type": .string(Self.typeName), "bits": .number(Double(bits))] }
    public var parameters: [Parameter<Scalar>] { [] }
    public func workspaceBytes(count: Int) -> Int { 0 }
    public func backwardWorkspaceBytes(count: Int) -> Int { 0 }

    var logDetPerSample: Double { -Double(eventSize * bits) * Double.log(2) }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let f = 1 / Scalar(levels)
        for i in 0..<(count * eventSize) { x[i] *= f }
        for r in 0..<count { logDet[r] += logDetPerSample }
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let f = Scalar(levels)
        for i in 0..<(count * eventSize) { z[i] *= f }
        for r in 0..<count { logDet[r] -= logDetPerSample }
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                         logDetGradient w: UnsafePointer<Scalar>, arena: inout Arena) {
        let f = 1 / Scalar(levels)
        for i in 0..<(count * eventSize) { g[i] *= f }
    }
}
