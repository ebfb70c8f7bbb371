#if canImport(Glibc)
import Glibc
#endif

/// The update rule of an ``Optimizer``.
public enum OptimizerKind: String, CaseIterable, Sendable {
    /// Adam (Kingma & Ba, 2015) with decoupled weight decay (AdamW, Loshchilov & Hutter, 2019).
    case adam
    /// Adamax, Adam's infinity-norm variant (Kingma & Ba, 2015, §7.1); Glow trains with it.
    case adamax
    /// Stochastic gradient descent with (heavy-ball) momentum.
    case sgd
}

/// Hyper-parameters of an ``Optimizer``. Defaults follow PyTorch.
public struct OptimizerSettings: Equatable, Sendable {
    public var kind: OptimizerKind
    /// Base learning rate (a ``LearningRateSchedule`` scales it per step).
    public var learningRate: Double
    /// First-moment decay (Adam, Adamax).
    public var beta1: Double
    /// Second-moment decay (Adam) or infinity-norm decay (Adamax).
    public var beta2: Double
    public var epsilon: Double
    /// Decoupled weight decay: each step multiplies parameters by `1 − lr·weightDecay` before the
    /// gradient update (AdamW's rule, also used for Adamax and SGD).
    public var weightDecay: Double
    /// Momentum of SGD (`buf = μ·buf + g; θ −= lr·buf`).
    public var momentum: Double

    public init(kind: OptimizerKind = .adam, learningRate: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999,
                epsilon: Double = 1e-8, weightDecay: Double = 0, momentum: Double = 0.9) {
        self.kind = kind
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.momentum = momentum
    }

    /// Checks ranges: positive finite learning rate, betas in [0, 1), non-negative decay.
    public func validate() throws {
        guard learningRate.isFinite, learningRate > 0 else {
            throw FlowError.invalidArgument("learning rate must be positive and finite, got \(learningRate)")
        }
        guard (0..<1).contains(beta1), (0..<1).contains(beta2) else {
            throw FlowError.invalidArgument("beta1 and beta2 must lie in [0, 1), got \(beta1), \(beta2)")
        }
        guard epsilon.isFinite, epsilon > 0 else { throw FlowError.invalidArgument("epsilon must be positive, got \(epsilon)") }
        guard weightDecay.isFinite, weightDecay >= 0 else {
            throw FlowError.invalidArgument("weight decay must be non-negative, got \(weightDecay)")
        }
        guard momentum.isFinite, (0..<1).contains(momentum) else {
            throw FlowError.invalidArgument("momentum must lie in [0, 1), got \(momentum)")
        }
    }
}

/// A first-order optimiser over a flow's ``Parameter``s, with its state (moments) in Double.
///
/// State is kept in Double whatever the parameters' scalar type, so checkpoints store it exactly
/// and a resumed run repeats an uninterrupted one bit for bit.
///
/// - Complexity: O(P) per ``step(learningRate:)`` for P scalars; no allocation after init.
public final class Optimizer<Scalar: FlowScalar> {
    public let settings: OptimizerSettings
    public let parameters: [Parameter<Scalar>]
    /// Number of updates applied so far (Adam's bias correction uses it).
    public internal(set) var stepCount: Int = 0
    /// Per parameter: first moment (Adam, Adamax) or momentum buffer (SGD).
    var first: [[Double]]
    /// Per parameter: second moment (Adam) or infinity norm (Adamax); empty for SGD.
    var second: [[Double]]

    public init(_ parameters: [Parameter<Scalar>], settings: OptimizerSettings) throws {
        try settings.validate()
        self.settings = settings
        self.parameters = parameters
        first = parameters.map { [Double](repeating: 0, count: $0.count) }
        second = settings.kind == .sgd ? parameters.map { _ in [] } : parameters.map { [Double](repeating: 0, count: $0.count) }
    }

    /// The global L2 norm of all gradients, in Double (NaN or ∞ if any gradient is non-finite).
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func gradientNorm() -> Double {
        var sum = 0.0
        for p in parameters {
            for g in p.ownGradient { let v = Double(g); sum += v * v }
        }
        return sum.squareRoot()
    }

    /// Multiplies every gradient by `factor`.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func scaleGradients(by factor: Double) {
        let f = Scalar(factor)
        for p in parameters {
            let g = p.ownGradient
            for i in 0..<p.count { g[i] *= f }
        }
    }

    /// Applies one update with the current gradients at `learningRate`.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func step(learningRate lr: Double) {
        stepCount += 1
        let s = settings
        let decay = 1 - lr * s.weightDecay
        switch s.kind {
        case .adam:
            let c1 = 1 - pow(s.beta1, Double(stepCount)), c2 = 1 - pow(s.beta2, Double(stepCount))
            let stepSize = lr / c1, c2Root = c2.squareRoot()
            let beta1 = s.beta1, beta2 = s.beta2, epsilon = s.epsilon
            for (k, p) in parameters.enumerated() {
                // Raw pointers hoisted out of the loop, so it vectorises.
                let grad = p.ownGradient.baseAddress!, values = p.pointer, n = p.count
                guard n > 0 else { continue }
                first[k].withUnsafeMutableBufferPointer { mb in
                    second[k].withUnsafeMutableBufferPointer { vb in
                        let m = mb.baseAddress!, v = vb.baseAddress!
                        for i in 0..<n {
                            let g = Double(grad[i])
                            m[i] = beta1 * m[i] + (1 - beta1) * g
                            v[i] = beta2 * v[i] + (1 - beta2) * g * g
                            let denom = v[i].squareRoot() / c2Root + epsilon
                            values[i] = Scalar(Double(values[i]) * decay - stepSize * m[i] / denom)
                        }
                    }
                }
            }
        case .adamax:
            let stepSize = lr / (1 - pow(s.beta1, Double(stepCount)))
            for (k, p) in parameters.enumerated() {
                let grad = p.ownGradient
                first[k].withUnsafeMutableBufferPointer { m in
                    second[k].withUnsafeMutableBufferPointer { u in
                        for i in 0..<p.count {
                            let g = Double(grad[i])
                            m[i] = s.beta1 * m[i] + (1 - s.beta1) * g
                            u[i] = Swift.max(s.beta2 * u[i], abs(g) + s.epsilon)
                            p.values[i] = Scalar(Double(p.values[i]) * decay - stepSize * m[i] / u[i])
                        }
                    }
                }
            }
        case .sgd:
            for (k, p) in parameters.enumerated() {
                let grad = p.ownGradient
                first[k].withUnsafeMutableBufferPointer { b in
                    for i in 0..<p.count {
                        b[i] = s.momentum * b[i] + Double(grad[i])
                        p.values[i] = Scalar(Double(p.values[i]) * decay - lr * b[i])
                    }
                }
            }
        }
    }
}
