/// Uniform dequantisation of discrete data with `L` levels (`L = 2ⁿ` for `n`-bit data; Theis
/// et al. 2016; RealNVP, Glow).
///
/// Discrete data hold integer levels `0 … L − 1`. Training adds uniform noise `u ~ U[0, 1)` to
/// every level (``Trainer`` does it when a flow starts with this layer, from Philox stream
/// ``RandomStream/dequantization``); this bijection then maps the continuous `x = level + u`
/// into the unit cube:
///
///     y = x / L,   log|det J| = −D·log L
///
/// With it, `−log p(level + u)` in nats is an upper bound on the discrete data's code length, so
/// bits/dim = `−log p / (D·log 2)` directly (no further correction). Inverse: `x = y·L`;
/// `floor(x)` clamped to the level range gives sampled levels.
public final class Dequantize<Scalar: FlowScalar>: FlowLayer {
    public static var typeName: String { "dequantize" }
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("levels", .int, "number of levels L (2…65536); files store this"),
            HyperParameter("bits", .int, "shorthand for levels = 2ⁿ (1…16); default 8 when levels is absent"),
        ]
    }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    /// L.
    public let levels: Int

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        if let l = config["levels"]?.intValue {
            guard (2...65536).contains(l) else { throw FlowError.invalidSpec("dequantize: levels must be in 2...65536, got \(l)") }
            if let b = config["bits"]?.intValue, 1 << Swift.min(Swift.max(b, 0), 30) != l {
                throw FlowError.invalidSpec("dequantize: bits \(b) and levels \(l) disagree")
            }
            levels = l
        } else {
            let bits = config.int("bits", default: 8)
            guard (1...16).contains(bits) else { throw FlowError.invalidSpec("dequantize: bits must be in 1...16, got \(bits)") }
            levels = 1 << bits
        }
        inputShape = eventShape
    }

    public var config: [String: JSONValue] { ["type": .string(Self.typeName), "levels": .number(Double(levels))] }
    public var parameters: [Parameter<Scalar>] { [] }
    public func workspaceBytes(count: Int) -> Int { 0 }
    public func backwardWorkspaceBytes(count: Int) -> Int { 0 }

    var logDetPerSample: Double { -Double(eventSize) * Double.log(Double(levels)) }

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
