import Synchronization
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
        first = try MomentStore(counts: counts)
        second = try MomentStore(counts: settings.kind == .sgd ? counts.map { _ in 0 } : counts)
        var blocks: [(Int, Int, Int)] = []
        for (k, n) in counts.enumerated() {
            for start in stride(from: 0, to: n, by: Self.blockSize) { blocks.append((k, start, Swift.min(n, start + Self.blockSize))) }
        }
        self.blocks = blocks
    }

    /// What ``saveState()`` kept: every parameter's values (concatenated), both moments and the
    /// step count; the buffers are reused from step to step.
    private var savedValues: [Scalar] = []
    private var savedFirst: [Double] = []
    private var savedSecond: [Double] = []
    private var savedStepCount: Int?

    /// Keeps a copy of the parameters and the optimiser state, so ``restoreState()`` can undo the
    /// next step (for flows whose layers check more than ``Parameter/bound`` after a step: the
    /// invertibility of ``InvertibilityConstrained`` layers). O(P) time; the copies (about
    /// `4 + 16` bytes per parameter) are allocated on the first call.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func saveState() {
        if savedValues.count != first.total {
            savedValues = [Scalar](repeating: 0, count: first.total)
            savedFirst = [Double](repeating: 0, count: first.total)
            savedSecond = [Double](repeating: 0, count: second.total)
        }
        savedValues.withUnsafeMutableBufferPointer { out in
            var offset = 0
            for p in parameters {
                (out.baseAddress! + offset).update(from: p.pointer, count: p.count)
                offset += p.count
            }
        }
        savedFirst.withUnsafeMutableBufferPointer { first.copy(into: $0.baseAddress!) }
        savedSecond.withUnsafeMutableBufferPointer { second.copy(into: $0.baseAddress!) }
        savedStepCount = stepCount
    }

    /// Puts back what ``saveState()`` kept (parameters, moments, step count); the caller then
    /// calls the flow's `parametersDidChange()`.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func restoreState() {
        guard let savedStepCount else { return }
        savedValues.withUnsafeBufferPointer { saved in
            var offset = 0
            for p in parameters {
                p.pointer.update(from: saved.baseAddress! + offset, count: p.count)
                offset += p.count
            }
        }
        savedFirst.withUnsafeBufferPointer { first.restore(from: $0.baseAddress!) }
        savedSecond.withUnsafeBufferPointer { second.restore(from: $0.baseAddress!) }
        stepCount = savedStepCount
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

    /// Applies one update with the current gradients at `learningRate`, unless it would make a
    /// parameter non-finite or move it outside its ``Parameter/bound`` (or make the optimiser
    /// state non-finite): then nothing changes and the result is false.
    ///
    /// The update is computed twice: a first pass only checks the new values (so a refused step
    /// leaves parameters, moments and ``stepCount`` exactly as they were), the second writes them.
    /// - Complexity: O(P), about twice a plain update.
    @discardableResult
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func step(learningRate lr: Double) -> Bool {
        guard update(learningRate: lr, commit: false) else { return false }
        _ = update(learningRate: lr, commit: true)
        return true
    }

    /// One pass of ``step(learningRate:)``: with `commit`, writes the new values and moments and
    /// counts the step; without, returns whether every new value is finite and in bounds.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    private func update(learningRate lr: Double, commit: Bool) -> Bool {
        let stepNumber = stepCount + 1
        if commit { stepCount = stepNumber }
        let s = settings
        let decay = 1 - lr * s.weightDecay
        let beta1 = s.beta1, beta2 = s.beta2, epsilon = s.epsilon, momentum = s.momentum
        let c1 = 1 - pow(beta1, Double(stepNumber)), c2 = 1 - pow(beta2, Double(stepNumber))
        let c2Root = c2.squareRoot()
        let parameters = self.parameters, first = self.first, second = self.second, blocks = self.blocks
        let invalid = Atomic<Bool>(false)
        // One block: raw pointers hoisted out of the element loops, so they vectorise. The check
        // pass sums the magnitudes of the new moments and values (finite exactly when every term
        // is; NaN propagates) and tracks the largest new value against the parameter's bound.
        let update = { (b: Int) in
            let (k, start, end) = blocks[b]
            let p = parameters[k]
            let grad = p.ownGradient.baseAddress!, values = p.pointer
            let m = first.pointer(k), v = second.pointer(k)
            var sum = 0.0, largest: Scalar = 0
            switch s.kind {
            case .adam:
                let stepSize = lr / c1
                for i in start..<end {
                    let g = Double(grad[i])
                    let mi = beta1 * m[i] + (1 - beta1) * g
                    let vi = beta2 * v[i] + (1 - beta2) * g * g
                    let denom = vi.squareRoot() / c2Root + epsilon
                    let value = Scalar(Double(values[i]) * decay - stepSize * mi / denom)
                    if commit {
                        m[i] = mi
                        v[i] = vi
                        values[i] = value
                    } else {
                        sum += mi.magnitude + vi + Double(value.magnitude)
                        largest = Swift.max(largest, value.magnitude)
                    }
                }
            case .adamax:
                let stepSize = lr / c1
                for i in start..<end {
                    let g = Double(grad[i])
                    let mi = beta1 * m[i] + (1 - beta1) * g
                    let vi = Swift.max(beta2 * v[i], abs(g) + epsilon)
                    let value = Scalar(Double(values[i]) * decay - stepSize * mi / vi)
                    if commit {
                        m[i] = mi
                        v[i] = vi
                        values[i] = value
                    } else {
                        sum += mi.magnitude + vi + Double(value.magnitude)
                        largest = Swift.max(largest, value.magnitude)
                    }
                }
            case .sgd:
                for i in start..<end {
                    let mi = momentum * m[i] + Double(grad[i])
                    let value = Scalar(Double(values[i]) * decay - lr * mi)
                    if commit {
                        m[i] = mi
                        values[i] = value
                    } else {
                        sum += mi.magnitude + Double(value.magnitude)
                        largest = Swift.max(largest, value.magnitude)
                    }
                }
            }
            if !commit, !sum.isFinite || largest > (p.bound ?? .greatestFiniteMagnitude) {
                invalid.store(true, ordering: .relaxed)
            }
        }
        if first.total >= Self.parallelThreshold {
            FlowRuntime.forEachChunk(blocks.count, update)
        } else {
            for b in 0..<blocks.count { update(b) }
        }
        return !invalid.load(ordering: .relaxed)
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

    /// Zero-filled state for parameters of `counts` scalars, from the ``MemoryBudget``.
    /// - Throws: ``FlowError/limitExceeded(_:)`` or ``FlowError/outOfMemory(_:)``.
    init(counts: [Int]) throws {
        var offsets: [Int] = [], total = 0
        for n in counts { offsets.append(total); total += n }
        self.counts = counts
        self.offsets = offsets
        self.total = total
        base = try MemoryBudget.allocate(Double.self, count: total, "optimiser state of \(total) values")
    }

    deinit { MemoryBudget.free(base) }

    /// Parameter `k`'s state (`counts[k]` values).
    @inline(__always) func pointer(_ k: Int) -> UnsafeMutablePointer<Double> { base + offsets[k] }

    /// Copies every parameter's state (``total`` values) to `out`.
    func copy(into out: UnsafeMutablePointer<Double>) { out.update(from: base, count: total) }

    /// Replaces every parameter's state by ``total`` values from `source`.
    func restore(from source: UnsafePointer<Double>) { base.update(from: source, count: total) }

    /// A copy of parameter `k`'s state; setting replaces it (the new value must have `counts[k]` elements).
    subscript(k: Int) -> [Double] {
        get { Array(UnsafeBufferPointer(start: pointer(k), count: counts[k])) }
        set {
            precondition(newValue.count == counts[k], "moment of \(newValue.count) values for a parameter of \(counts[k])")
            pointer(k).update(from: newValue, count: counts[k])
        }
    }
}
