/// Everything a ``Trainer`` needs, besides the flow's parameters and the data, to continue a run
/// exactly as an uninterrupted run would: the options, the finished epochs, the optimiser's step
/// and moments, the early-stopping bookkeeping and the best parameters so far.
///
/// A plain value: the trainer hands it out (``Trainer/state``) and takes it back
/// (``Trainer/restore(_:)``); storing it (model-file checkpoints, FlowModelFile) is someone
/// else's business. ``Trainer/restore(_:)`` checks every value, so a state from an untrusted file
/// can never trap or make the optimiser non-finite.
public struct TrainingState<Scalar: FlowScalar>: Sendable {
    public var options: TrainingOptions
    /// The finished epochs, in order.
    public var history: [EpochRecord]
    /// Optimiser steps taken.
    public var step: Int
    /// ``Trainer/dataFingerprint`` of the rows the run trains on; a restore refuses other data.
    public var dataFingerprint: UInt64
    public var trainRows: Int
    public var validationRows: Int
    /// The epoch whose parameters ``best`` holds (0: none yet).
    public var bestEpoch: Int
    /// Epochs since the last validation improvement.
    public var badEpochs: Int
    public var bestValidationNLL: Double
    /// Per parameter (``NormalizingFlow/parameters`` order): the optimiser's first moments.
    public var firstMoments: [[Double]]
    /// Per parameter: second moments (Adam) or infinity norms (Adamax); empty lists for SGD.
    public var secondMoments: [[Double]]
    /// Per parameter: the values at ``bestEpoch``; nil before the first validated epoch.
    public var best: [[Scalar]]?

    public init(options: TrainingOptions, history: [EpochRecord], step: Int, dataFingerprint: UInt64,
                trainRows: Int, validationRows: Int, bestEpoch: Int, badEpochs: Int, bestValidationNLL: Double,
                firstMoments: [[Double]], secondMoments: [[Double]], best: [[Scalar]]?) {
        self.options = options
        self.history = history
        self.step = step
        self.dataFingerprint = dataFingerprint
        self.trainRows = trainRows
        self.validationRows = validationRows
        self.bestEpoch = bestEpoch
        self.badEpochs = badEpochs
        self.bestValidationNLL = bestValidationNLL
        self.firstMoments = firstMoments
        self.secondMoments = secondMoments
        self.best = best
    }
}

extension Trainer {
    /// A trainer that continues the run `state` describes (``restore(_:)``) on the same rows;
    /// `flow` must hold the parameters stored with the state. `epochs` may raise the planned
    /// number of epochs (the cosine schedule then spans the new total).
    public convenience init(flow: NormalizingFlow<Scalar>, data: UnsafeBufferPointer<Scalar>, rows: Int,
                            context: UnsafeBufferPointer<Scalar>? = nil,
                            validation: UnsafeBufferPointer<Scalar>? = nil, validationRows: Int = 0,
                            validationContext: UnsafeBufferPointer<Scalar>? = nil,
                            resuming state: TrainingState<Scalar>, epochs: Int? = nil) throws {
        var options = state.options
        if let epochs { options.epochs = epochs }
        try self.init(flow: flow, data: data, rows: rows, context: context, validation: validation,
                      validationRows: validationRows, validationContext: validationContext, options: options)
        try restore(state)
    }

    /// The run's state after the last finished epoch (or now, between epochs).
    public var state: TrainingState<Scalar> {
        TrainingState(options: options, history: history, step: optimizer.stepCount, dataFingerprint: dataFingerprint,
                      trainRows: trainRows, validationRows: validationRows, bestEpoch: bestEpoch,
                      badEpochs: badEpochs, bestValidationNLL: bestValidationNLL,
                      firstMoments: flow.parameters.indices.map { optimizer.first[$0] },
                      secondMoments: flow.parameters.indices.map { optimizer.settings.kind == .sgd ? [] : optimizer.second[$0] },
                      best: best)
    }

    /// Continues the run `state` describes: history, step, moments, best parameters and the
    /// early-stopping counter. The trainer must have been built on the same flow (with the
    /// state's parameters loaded) and the same rows; its options must equal the state's except
    /// for ``TrainingOptions/epochs``, which may be raised.
    ///
    /// Every value is checked before anything changes.
    /// - Throws: ``FlowError/invalidArgument(_:)`` for other data (fingerprint) or other options;
    ///   ``FlowError/format(_:)`` for inconsistent counts or shapes; ``FlowError/numerical(_:)``
    ///   for non-finite moments or best parameters.
    public func restore(_ state: TrainingState<Scalar>) throws {
        guard state.dataFingerprint == dataFingerprint else {
            throw FlowError.invalidArgument("the checkpoint was trained on other data (fingerprint \(hex(state.dataFingerprint)), "
                + "these rows give \(hex(dataFingerprint))); resume needs the same rows and validation split")
        }
        var stateOptions = state.options
        stateOptions.epochs = options.epochs
        guard stateOptions == options else {
            throw FlowError.invalidArgument("the trainer's options differ from the checkpoint's")
        }
        let completed = state.history.count
        guard completed <= TrainingOptions.maxEpochs else {
            throw FlowError.format("\(completed) finished epochs exceed \(TrainingOptions.maxEpochs)")
        }
        for (i, r) in state.history.enumerated() {
            guard r.epoch >= 1, r.epoch <= completed, r.skippedSteps >= 0 else {
                throw FlowError.format("history row \(i): epoch \(r.epoch) or skipped steps \(r.skippedSteps) out of range")
            }
        }
        guard state.step >= 0, state.step <= 1 << 53 else { throw FlowError.format("step count \(state.step) is outside 0...2^53") }
        guard state.bestEpoch >= 0, state.bestEpoch <= completed, state.badEpochs >= 0, state.badEpochs <= completed else {
            throw FlowError.format("best_epoch \(state.bestEpoch) and bad_epochs \(state.badEpochs) must lie in 0...\(completed)")
        }
        guard !state.bestValidationNLL.isNaN, state.bestValidationNLL != -.infinity else {
            throw FlowError.format("best_validation_nll is \(state.bestValidationNLL)")
        }
        let counts = flow.parameters.map(\.count)
        let usesSecond = optimizer.settings.kind != .sgd
        guard state.firstMoments.map(\.count) == counts,
              state.secondMoments.map(\.count) == (usesSecond ? counts : counts.map { _ in 0 }) else {
            throw FlowError.format("the optimiser state does not match the flow's \(counts.count) parameters")
        }
        guard state.firstMoments.allSatisfy({ $0.allSatisfy(\.isFinite) }) else {
            throw FlowError.numerical("the optimiser's first moments contain NaN or infinite values")
        }
        guard state.secondMoments.allSatisfy({ $0.allSatisfy { $0.isFinite && $0 >= 0 } }) else {
            throw FlowError.numerical("the optimiser's second moments contain negative, NaN or infinite values")
        }
        if let best = state.best {
            guard best.map(\.count) == counts else { throw FlowError.format("the best parameters do not match the flow's") }
            guard best.allSatisfy({ $0.allSatisfy(\.isFinite) }) else {
                throw FlowError.numerical("the best parameters contain NaN or infinite values")
            }
        }
        history = state.history
        optimizer.stepCount = state.step
        bestEpoch = state.bestEpoch
        badEpochs = state.badEpochs
        bestValidationNLL = state.bestValidationNLL
        for k in counts.indices {
            optimizer.first[k] = state.firstMoments[k]
            if usesSecond { optimizer.second[k] = state.secondMoments[k] }
        }
        best = state.best
    }
}

/// 16 lowercase hex digits.
package func hex(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}
