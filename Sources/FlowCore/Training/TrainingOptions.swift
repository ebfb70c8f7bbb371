/// Everything that defines a training run. Together with the data and the flow's initial state,
/// these fix the run's result exactly (any thread count).
public struct TrainingOptions: Equatable, Sendable {
    /// Passes over the training rows.
    public var epochs: Int = 50
    /// Rows per optimisation step (the last batch of an epoch may be smaller).
    public var batchSize: Int = 256
    public var optimizer = OptimizerSettings()
    public var schedule = LearningRateSchedule()
    /// Clip gradients to this global L2 norm; nil disables clipping.
    public var clipNorm: Double? = nil
    /// Fraction of the rows held out for validation when no validation set is given
    /// (0 disables validation, early stopping and best-parameter restoring).
    public var validationFraction: Double = 0.1
    /// Stop after this many epochs without a validation improvement larger than ``minDelta``
    /// (0 disables early stopping).
    public var patience: Int = 0
    public var minDelta: Double = 0
    /// At the end, restore the parameters of the epoch with the best validation NLL.
    public var restoreBest: Bool = true
    /// Seeds the validation split and the per-epoch shuffles (Philox stream 3).
    public var seed: UInt64 = 0
    /// Give up (``FlowError/numerical(_:)``) after this many consecutive skipped steps.
    public var maxConsecutiveSkips: Int = 100

    /// Most epochs of one run (keeps step counts far from integer overflow).
    public static let maxEpochs = 1 << 24

    public init() {}

    public func validate() throws {
        guard epochs >= 1, epochs <= Self.maxEpochs else {
            throw FlowError.invalidArgument("epochs must lie in 1...\(Self.maxEpochs), got \(epochs)")
        }
        guard batchSize >= 1, batchSize <= 1 << 24 else {
            throw FlowError.invalidArgument("batch size must lie in 1...\(1 << 24), got \(batchSize)")
        }
        try optimizer.validate()
        try schedule.validate()
        if let clip = clipNorm, !(clip.isFinite && clip > 0) {
            throw FlowError.invalidArgument("the clipping norm must be positive and finite, got \(clip)")
        }
        guard validationFraction.isFinite, validationFraction >= 0, validationFraction < 1 else {
            throw FlowError.invalidArgument("the validation fraction must lie in [0, 1), got \(validationFraction)")
        }
        guard patience >= 0 else { throw FlowError.invalidArgument("patience must be non-negative, got \(patience)") }
        guard minDelta.isFinite, minDelta >= 0 else { throw FlowError.invalidArgument("min delta must be non-negative") }
        guard maxConsecutiveSkips >= 1 else { throw FlowError.invalidArgument("max consecutive skips must be at least 1") }
    }
}

/// One finished epoch.
public struct EpochRecord: Equatable, Sendable {
    /// 1-based.
    public var epoch: Int
    /// Mean NLL (nats) of the epoch's minibatches, before each step.
    public var trainNLL: Double
    /// Mean NLL (nats) on the validation rows after the epoch (nil without validation).
    public var validationNLL: Double?
    /// The learning rate of the epoch's last step.
    public var learningRate: Double
    /// Steps skipped for non-finite loss or gradient.
    public var skippedSteps: Int
    /// Training rows per second over the epoch (excluding validation).
    public var samplesPerSecond: Double
    /// Seconds since the run (or the resumed run) started.
    public var elapsed: Double
    /// Whether the validation NLL improved on the best so far.
    public var improved: Bool

    public init(epoch: Int, trainNLL: Double, validationNLL: Double?, learningRate: Double, skippedSteps: Int,
                samplesPerSecond: Double, elapsed: Double, improved: Bool) {
        self.epoch = epoch
        self.trainNLL = trainNLL
        self.validationNLL = validationNLL
        self.learningRate = learningRate
        self.skippedSteps = skippedSteps
        self.samplesPerSecond = samplesPerSecond
        self.elapsed = elapsed
        self.improved = improved
    }
}

/// Progress of a running ``Trainer``. The callback returns false to cancel.
public enum TrainingEvent: Sendable {
    /// A minibatch step was taken: its loss, and the epoch's progress.
    case batch(epoch: Int, batch: Int, batchesPerEpoch: Int, loss: Double, samplesPerSecond: Double, elapsed: Double)
    /// A step was skipped because the loss or a gradient was not finite.
    case skipped(epoch: Int, batch: Int, reason: String)
    /// An epoch finished.
    case epoch(EpochRecord)
    /// Early stopping ends the run after `epoch`; the best epoch was `bestEpoch`.
    case stopped(epoch: Int, bestEpoch: Int)
}
