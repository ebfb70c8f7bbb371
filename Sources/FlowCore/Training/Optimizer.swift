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
/// and a resumed run repeats an uninterrupted one bit for bit. Updates are element-wise, so a
/// step runs in parallel over fixed blocks of elements (``FlowRuntime/threadCount`` threads, for
/// flows of at least ``parallelThreshold`` scalars) with the same result for any thread count.
///
/// - Complexity: O(P) per ``step(learningRate:)`` for P scalars; no allocation after init.
public final class Optimizer<Scalar: FlowScalar> {
    public let settings: OptimizerSettings
    public let parameters: [Parameter<Scalar>]
    /// Number of updates applied so far (Adam's bias correction uses it).
    public internal(set) var stepCount: Int = 0
    /// Per parameter: first moment (Adam, Adamax) or momentum buffer (SGD).
    let first: MomentStore
    /// Per parameter: second moment (Adam) or infinity norm (Adamax); empty for SGD.
    let second: MomentStore
    /// (parameter, start, end) element ranges of at most ``blockSize`` elements: a step's units
    /// of parallel work.
    private let blocks: [(parameter: Int, start: Int, end: Int)]

    /// Elements per unit of parallel work in ``step(learningRate:)``.
    static var blockSize: Int { 16_384 }
    /// Fewer scalars than this are updated on the calling thread (waking workers costs more).
    static var parallelThreshold: Int { 65_536 }

    public init(_ parameters: [Parameter<Scalar>], settings: OptimizerSettings) throws {
        try settings.validate()
        self.settings = settings
        self.parameters = parameters
        let counts = parameters.map(\.count)
        first = MomentStore(counts: counts)
        second = MomentStore(counts: settings.kind == .sgd ? counts.map { _ in 0 } : counts)
        var blocks: [(Int, Int, Int)] = []
        for (k, n) in counts.enumerated() {
            for start in stride(from: 0, to: n, by: Self.blockSize) { blocks.append((k, start, Swift.min(n, start + Self.blockSize))) }
        }
        self.blocks = blocks
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
        let beta1 = s.beta1, beta2 = s.beta2, epsilon = s.epsilon, momentum = s.momentum
        let c1 = 1 - pow(beta1, Double(stepCount)), c2 = 1 - pow(beta2, Double(stepCount))
        let c2Root = c2.squareRoot()
        let parameters = self.parameters, first = self.first, second = self.second, blocks = self.blocks
        // One block: raw pointers hoisted out of the element loops, so they vectorise.
        let update = { (b: Int) in
            let (k, start, end) = blocks[b]
            let p = parameters[k]
            let grad = p.ownGradient.baseAddress!, values = p.pointer
            let m = first.pointer(k), v = second.pointer(k)
            switch s.kind {
            case .adam:
                let stepSize = lr / c1
                for i in start..<end {
                    let g = Double(grad[i])
                    m[i] = beta1 * m[i] + (1 - beta1) * g
                    v[i] = beta2 * v[i] + (1 - beta2) * g * g
                    let denom = v[i].squareRoot() / c2Root + epsilon
                    values[i] = Scalar(Double(values[i]) * decay - stepSize * m[i] / denom)
                }
            case .adamax:
                let stepSize = lr / c1
                for i in start..<end {
                    let g = Double(grad[i])
                    m[i] = beta1 * m[i] + (1 - beta1) * g
                    v[i] = Swift.max(beta2 * v[i], abs(g) + epsilon)
                    values[i] = Scalar(Double(values[i]) * decay - stepSize * m[i] / v[i])
                }
            case .sgd:
                for i in start..<end {
                    m[i] = momentum * m[i] + Double(grad[i])
                    values[i] = Scalar(Double(values[i]) * decay - lr * m[i])
                }
            }
        }
        if first.total >= Self.parallelThreshold {
            FlowRuntime.forEachChunk(blocks.count, update)
        } else {
            for b in 0..<blocks.count { update(b) }
        }
    }
}

/// Optimiser state of every parameter in one 64-byte-aligned Double allocation (stable pointers,
/// so a step updates blocks in parallel); `store[k]` reads or replaces parameter `k`'s slice.
final class MomentStore: @unchecked Sendable {
    private let base: UnsafeMutablePointer<Double>
    private let offsets: [Int]
    let counts: [Int]
    /// Scalars over all parameters.
    let total: Int

    /// Zero-filled state for parameters of `counts` scalars.
    init(counts: [Int]) {
        var offsets: [Int] = [], total = 0
        for n in counts { offsets.append(total); total += n }
        self.counts = counts
        self.offsets = offsets
        self.total = total
        base = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(total, 1) * MemoryLayout<Double>.stride, alignment: 64)
            .bindMemory(to: Double.self, capacity: Swift.max(total, 1))
        base.initialize(repeating: 0, count: Swift.max(total, 1))
    }

    deinit { UnsafeMutableRawPointer(base).deallocate() }

    /// Parameter `k`'s state (`counts[k]` values).
    @inline(__always) func pointer(_ k: Int) -> UnsafeMutablePointer<Double> { base + offsets[k] }

    /// A copy of parameter `k`'s state; setting replaces it (the new value must have `counts[k]` elements).
    subscript(k: Int) -> [Double] {
        get { Array(UnsafeBufferPointer(start: pointer(k), count: counts[k])) }
        set {
            precondition(newValue.count == counts[k], "moment of \(newValue.count) values for a parameter of \(counts[k])")
            pointer(k).update(from: newValue, count: counts[k])
        }
    }
}
