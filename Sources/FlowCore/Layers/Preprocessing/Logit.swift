/// RealNVP's logit preprocessing (Dinh et al. 2017, §4.1): squeezes `[0, 1]` away from the
/// boundary by `α`, then maps it to the real line.
///
///     p = α + (1 − 2α)·x,   y = log p − log(1 − p)
///     log|det J| = Σ [log(1 − 2α) − log p − log(1 − p)]
///
/// Inverse: `p = σ(y)`, `x = (p − α)/(1 − 2α)`. Inputs outside `[0, 1]` give NaN (as the math
/// does); `α ∈ [0, 0.5)`, default 0.05 (RealNVP's CIFAR-10 value; it used 10⁻⁶ for MNIST).
public final class Logit<Scalar: FlowScalar>: FlowLayer {
    public static var typeName: String { "logit" }
    public static var hyperParameters: [HyperParameter] {
        [HyperParameter("alpha", .double, "boundary margin α in [0, 0.5) (default 0.05)")]
    }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    public let alpha: Double

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        alpha = config.double("alpha", default: 0.05)
        guard alpha >= 0, alpha < 0.5 else { throw FlowError.invalidSpec("logit: alpha must be in [0, 0.5), got \(alpha)") }
        inputShape = eventShape
    }

    public var config: [String: JSONValue] { ["type": .string(Self.typeName), "alpha": .number(alpha)] }
    public var parameters: [Parameter<Scalar>] { [] }
    public func workspaceBytes(count: Int) -> Int { 0 }
    public func backwardWorkspaceBytes(count: Int) -> Int { 0 }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let a = Scalar(alpha), span = Scalar(1 - 2 * alpha), logSpan = Double.log(1 - 2 * alpha)
        let d = eventSize
        for r in 0..<count {
            let row = x + r * d
            var sum = 0.0
            for i in 0..<d {
                let p = a + span * row[i]
                let lp = Scalar.log(p), l1p = Scalar.log(onePlus: -p)
                row[i] = lp - l1p
                sum += logSpan - Double(lp) - Double(l1p)
            }
            logDet[r] += sum
        }
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let a = Scalar(alpha), span = Scalar(1 - 2 * alpha), logSpan = Double.log(1 - 2 * alpha)
        let d = eventSize
        for r in 0..<count {
            let row = z + r * d
            var sum = 0.0
            for i in 0..<d {
                let y = row[i]
                // log p = −softplus(−y), log(1 − p) = −softplus(y), computed stably.
                let lp = -softplus(-y), l1p = -softplus(y)
                row[i] = (Scalar.exp(lp) - a) / span
                sum += logSpan - Double(lp) - Double(l1p)
            }
            logDet[r] -= sum
        }
    }

    @inline(__always) private func softplus(_ v: Scalar) -> Scalar {
        Swift.max(v, 0) + Scalar.log(onePlus: Scalar.exp(-Swift.abs(v)))
    }

    /// `∂y/∂x = (1 − 2α)/(p(1 − p))`, `∂logDet/∂x = (1 − 2α)(2p − 1)/(p(1 − p))`.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                         logDetGradient w: UnsafePointer<Scalar>, arena: inout Arena) {
        let a = Scalar(alpha), span = Scalar(1 - 2 * alpha)
        let d = eventSize
        for r in 0..<count {
            let wr = w[r]
            for i in 0..<d {
                let k = r * d + i
                let p = a + span * x[k]
                let q = p * (1 - p)
                g[k] = g[k] * span / q + wr * span * (2 * p - 1) / q
            }
        }
    }
}
