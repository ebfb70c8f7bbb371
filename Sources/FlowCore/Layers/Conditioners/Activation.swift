import CFlowKernels
import RealModule

/// Element-wise non-linearities of conditioner networks, with their derivatives for backward
/// passes. Names are the spec/file strings.
public enum Activation: String, CaseIterable, Sendable {
    /// max(0, x)
    case relu
    /// x for x > 0, 0.01·x otherwise
    case leakyRelu = "leaky_relu"
    /// tanh(x)
    case tanh
    /// x for x > 0, eˣ − 1 otherwise
    case elu
    /// log(1 + eˣ), computed stably
    case softplus
    /// x·σ(x) (a.k.a. swish)
    case silu

    /// Applies the activation in place to `count` values.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func apply<T: FlowScalar>(_ v: UnsafeMutablePointer<T>, count: Int) {
        switch self {
        case .relu: for i in 0..<count { v[i] = Swift.max(v[i], 0) }
        case .leakyRelu: for i in 0..<count { let x = v[i]; v[i] = x > 0 ? x : x * T(0.01) }
        case .tanh: for i in 0..<count { v[i] = T.tanh(v[i]) }
        case .elu: for i in 0..<count { let x = v[i]; v[i] = x > 0 ? x : T.expMinusOne(x) }
        case .softplus:
            for i in 0..<count {
                let x = v[i]
                v[i] = Swift.max(x, 0) + T.log(onePlus: T.exp(-Swift.abs(x)))
            }
        case .silu: for i in 0..<count { let x = v[i]; v[i] = x / (1 + T.exp(-x)) }
        }
    }

    /// `out[i] = f(x[i])` for `count` values (`out` may not alias `x`).
    @_specialize(where T == Float) @_specialize(where T == Double)
    func apply<T: FlowScalar>(_ x: UnsafePointer<T>, into out: UnsafeMutablePointer<T>, count: Int) {
        if self == .relu {
            for i in 0..<count { out[i] = Swift.max(x[i], 0) }
            return
        }
        out.update(from: x, count: count)
        apply(out, count: count)
    }

    /// `g[i] *= f′(x[i])` for `count` values: one loop per activation, so ReLU's vectorises.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func multiplyByDerivative<T: FlowScalar>(_ g: UnsafeMutablePointer<T>, at x: UnsafePointer<T>, count: Int) {
        switch self {
        case .relu:
            if T.self == Float.self {
                fk_relu_mask_f32(UnsafeMutableRawPointer(g).assumingMemoryBound(to: Float.self),
                                 UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), count)
            } else {
                for i in 0..<count { g[i] = x[i] > 0 ? g[i] : 0 }
            }
        case .leakyRelu: for i in 0..<count { g[i] = x[i] > 0 ? g[i] : g[i] * T(0.01) }
        default: for i in 0..<count { g[i] *= derivative(x[i]) }
        }
    }

    /// The derivative at pre-activation `x`.
    @inline(__always)
    func derivative<T: FlowScalar>(_ x: T) -> T {
        switch self {
        case .relu: return x > 0 ? 1 : 0
        case .leakyRelu: return x > 0 ? 1 : T(0.01)
        case .tanh: let t = T.tanh(x); return 1 - t * t
        case .elu: return x > 0 ? 1 : T.exp(x)
        case .softplus: return 1 / (1 + T.exp(-x))
        case .silu: let s = 1 / (1 + T.exp(-x)); return s * (1 + x * (1 - s))
        }
    }
}
