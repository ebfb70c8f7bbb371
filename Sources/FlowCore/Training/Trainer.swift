#if canImport(Glibc)
import Glibc
#endif

/// Maximum-likelihood training of a ``NormalizingFlow`` on rows held in memory.
///
/// Each epoch visits the training rows in a seeded random order (Philox stream
/// ``RandomStream/shuffle``, row = epoch) in minibatches of ``TrainingOptions/batchSize``; each
/// minibatch takes one optimiser step on `L = −(1/B)·Σ log p(xᵢ)` with gradients from the layers'
/// hand-derived backward passes. Before the first step, layers with data-dependent
/// initialisation (ActNorm) are initialised from the first minibatch.
///
/// - A step whose loss or gradient is not finite is skipped (parameters untouched) and reported
///   with ``TrainingEvent/skipped(epoch:batch:reason:)``; so is a step that would make a parameter
///   non-finite or move it outside its ``Parameter/bound``, or leave an
///   ``InvertibilityConstrained`` layer without a usable inverse (it is undone): a model being
///   trained always saves as a file that loads. ``TrainingOptions/maxConsecutiveSkips`` skips in a
///   row end the run with ``FlowError/numerical(_:)``.
/// - Memory: the optimiser state, the gradient copies, the scratch and the copies of the rows are
///   charged to the ``MemoryBudget`` before they are allocated (``FlowError/limitExceeded(_:)``).
/// - Inside a ``CallScope`` (the C API), a cancelled scope ends the run after the current step
///   with ``FlowError/cancelled(_:)``.
/// - Flows that start with ``Dequantize`` get uniform noise on every minibatch
///   (``Dequantization``) and one fixed draw on the validation rows.
/// - With validation rows, the validation NLL is measured after each epoch; early stopping
///   (``TrainingOptions/patience``) and restoring the best parameters follow it.
/// - After every epoch, ``checkpoint`` (if set) receives the trainer; it stores the flow and
///   ``state`` (FlowModelFile writes them as one checkpoint file), and a trainer built on the same
///   data that ``restore(_:)``s that state continues exactly as an uninterrupted run would.
///
/// The result depends only on the flow's initial state, the data, and the options, never on the
/// thread count. Not thread-safe: nothing else may use the flow while ``run(progress:)`` runs.
public final class Trainer<Scalar: FlowScalar> {
    public let flow: NormalizingFlow<Scalar>
    public let options: TrainingOptions
    public let optimizer: Optimizer<Scalar>
    /// Training rows, row-major (`trainRows × eventSize`).
    let train: [Scalar]
    public let trainRows: Int
    /// Validation rows, row-major (may be empty).
    let validation: [Scalar]
    /// Context rows of the training and validation rows (conditional flows; else empty).
    let trainContext: [Scalar]
    let validationContext: [Scalar]
    public let validationRows: Int
    /// 64-bit FNV-1a of the training and validation rows; a checkpoint refuses other data.
    public let dataFingerprint: UInt64
    /// Whether batches get uniform dequantisation noise (the flow starts with ``Dequantize``).
    public let dequantize: Bool
    /// Called after every finished epoch (before the progress callback sees it), e.g. to write
    /// a checkpoint; an error it throws ends the run.
    public var checkpoint: ((Trainer<Scalar>) throws -> Void)?

    /// The finished epochs (a resumed run starts with the checkpoint's).
    public internal(set) var history: [EpochRecord] = []
    public internal(set) var bestValidationNLL: Double = .infinity
    /// The epoch whose parameters ``best`` holds (0: none yet).
    public internal(set) var bestEpoch = 0
    /// Epochs since the last improvement.
    public internal(set) var badEpochs = 0
    /// Parameter values at ``bestEpoch``.
    public internal(set) var best: [[Scalar]]?
    /// The flow's continuous layers (``NormalizingFlow/continuousLayers``), whose probes change
    /// every step.
    private let continuousLayers: [ContinuousFlow<Scalar>]
    /// Whether the flow has ``InvertibilityConstrained`` layers, checked (and undone if need be)
    /// after every step.
    private let checksInvertibility: Bool

    /// A trainer over `rows` rows of `data` (copied). Validation rows are `validation` if given,
    /// otherwise a seeded ``TrainingOptions/validationFraction`` of `data`.
    /// - Throws: ``FlowError/invalidArgument(_:)`` for inconsistent sizes or options,
    ///   ``FlowError/numerical(_:)`` for non-finite data.
    ///
    /// A conditional flow (``NormalizingFlow/contextSize`` `C > 0`) needs `context`: one row of
    /// `C` scalars per data row (and `validationContext` with `validation`); they travel with their
    /// rows through the validation split and every shuffle. An unconditional flow refuses them.
    public init(flow: NormalizingFlow<Scalar>, data: UnsafeBufferPointer<Scalar>, rows: Int,
                context: UnsafeBufferPointer<Scalar>? = nil,
                validation: UnsafeBufferPointer<Scalar>? = nil, validationRows: Int = 0,
                validationContext: UnsafeBufferPointer<Scalar>? = nil,
                options: TrainingOptions) throws {
        try options.validate()
        let d = flow.eventSize, c = flow.contextSize
        try Self.checkMemory(flow: flow, values: data.count + (validation?.count ?? 0),
                             contextValues: (context?.count ?? 0) + (validationContext?.count ?? 0), options: options)
        guard rows >= 1, data.count == rows * d else {
            throw FlowError.shapeMismatch("training data holds \(data.count) values, expected \(rows) rows of \(d)")
        }
        try Self.requireFinite(data, "training data", d)
        try Self.checkContext(context, rows: rows, contextSize: c, "training")
        if let validation, validationRows > 0 {
            guard validation.count == validationRows * d else {
                throw FlowError.shapeMismatch("validation data holds \(validation.count) values, expected \(validationRows) rows of \(d)")
            }
            try Self.requireFinite(validation, "validation data", d)
            try Self.checkContext(validationContext, rows: validationRows, contextSize: c, "validation")
        } else if validationContext != nil {
            throw FlowError.invalidArgument("a validation context was given without validation rows")
        }
        var trainValues: [Scalar], validationValues: [Scalar]
        var trainContextValues: [Scalar] = [], validationContextValues: [Scalar] = []
        if let validation, validationRows > 0 {
            trainValues = Array(data)
            validationValues = Array(validation)
            if c > 0 {
                trainContextValues = Array(context!)
                validationContextValues = Array(validationContext!)
            }
        } else if options.validationFraction > 0 {
            let held = Swift.max(1, Int((Double(rows) * options.validationFraction).rounded()))
            guard rows - held >= 1 else {
                throw FlowError.invalidArgument("\(rows) rows leave none for training after holding out \(held) for validation")
            }
            var stream = PhiloxStream(seed: options.seed, row: UInt64.max, stream: RandomStream.shuffle)
            let order = stream.permutation(rows)
            var isValidation = [Bool](repeating: false, count: rows)
            for i in order.prefix(held) { isValidation[i] = true }
            trainValues = []
            validationValues = []
            trainValues.reserveCapacity((rows - held) * d)
            validationValues.reserveCapacity(held * d)
            for r in 0..<rows {
                let row = data[(r * d)..<((r + 1) * d)]
                if isValidation[r] { validationValues.append(contentsOf: row) } else { trainValues.append(contentsOf: row) }
                if c > 0, let context {
                    let contextRow = context[(r * c)..<((r + 1) * c)]
                    if isValidation[r] { validationContextValues.append(contentsOf: contextRow) } else {
                        trainContextValues.append(contentsOf: contextRow)
                    }
                }
            }
        } else {
            trainValues = Array(data)
            validationValues = []
            if c > 0 { trainContextValues = Array(context!) }
        }
        if Dequantization.applies(to: flow), !validationValues.isEmpty {
            // One fixed draw for the validation rows, so epochs compare like with like.
            validationValues.withUnsafeMutableBufferPointer {
                Dequantization.addEvaluationNoise($0.baseAddress!, count: $0.count, seed: options.seed)
            }
        }
        self.dequantize = Dequantization.applies(to: flow)
        self.continuousLayers = flow.continuousLayers
        self.checksInvertibility = !flow.invertibilityConstrainedLayers.isEmpty
        self.flow = flow
        self.options = options
        self.optimizer = try Optimizer(flow.parameters, settings: options.optimizer)
        self.train = trainValues
        self.trainRows = trainValues.count / d
        self.validation = validationValues
        self.validationRows = validationValues.count / d
        self.trainContext = trainContextValues
        self.validationContext = validationContextValues
        var fingerprint = Self.fingerprint(trainValues, validationValues, eventSize: d)
        if c > 0 {
            // Conditional runs also hash their context rows (unconditional fingerprints are unchanged).
            fingerprint ^= Self.fingerprint(trainContextValues, validationContextValues, eventSize: c) &* 0x9E37_79B9_7F4A_7C15
        }
        self.dataFingerprint = fingerprint
        try flow.prepareGradientPasses(rows: Swift.min(options.batchSize, trainRows))
    }

    /// Charges what a run on `values` data and `contextValues` context scalars allocates to a
    /// ledger of the ``MemoryBudget`` before anything is allocated: the copies of the rows, the
    /// optimiser's moments and the gradient copies of a batch.
    private static func checkMemory(flow: NormalizingFlow<Scalar>, values: Int, contextValues: Int,
                                    options: TrainingOptions) throws {
        let parameters = flow.parameterCount
        let chunks = (Swift.max(options.batchSize, 1) + flow.chunkRows - 1) / flow.chunkRows
        let copies = chunks > 1 ? Swift.min(NormalizingFlow<Scalar>.gradientGroup, chunks) : 0
        let moments = options.optimizer.kind == .sgd ? 1 : 2
        // Flows with invertibility checks keep a copy of the parameters and moments per step.
        let undo = flow.invertibilityConstrainedLayers.isEmpty ? 0 : MemoryLayout<Scalar>.stride + 8 * moments
        _ = try MemoryBudget.measure {
            try MemoryBudget.charge(parameters * undo, "the copy of \(parameters) parameters that undoes a step")
            try MemoryBudget.charge(try MemoryBudget.bytes(Scalar.self, values + contextValues, "training rows"),
                                    "the copy of \(values + contextValues) training values")
            try MemoryBudget.charge(try MemoryBudget.bytes(Double.self, parameters, "optimiser state") * moments,
                                    "the optimiser state of \(parameters) parameters")
            try MemoryBudget.charge(try MemoryBudget.bytes(Scalar.self, parameters, "gradient copies") * copies,
                                    "\(copies) gradient copies of \(parameters) parameters")
        }
        try MemoryBudget.requireAvailable((values + contextValues) * MemoryLayout<Scalar>.stride, "the copy of the training rows")
    }

    /// Minibatches per epoch.
    public var batchesPerEpoch: Int { (trainRows + options.batchSize - 1) / options.batchSize }

    /// Trains until ``TrainingOptions/epochs`` epochs are done or early stopping ends the run,
    /// then (with validation and ``TrainingOptions/restoreBest``) restores the best parameters.
    ///
    /// - Parameter progress: called after every step, skipped step and epoch; return false to
    ///   cancel. A cancelled run throws ``FlowError/cancelled(_:)`` and leaves the flow with the
    ///   parameters of its last step (``history`` holds the finished epochs).
    /// - Returns: ``history``.
    @discardableResult
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func run(progress: ((TrainingEvent) -> Bool)? = nil) throws -> [EpochRecord] {
        let d = flow.eventSize
        let batchSize = options.batchSize
        let (totalSteps, overflow) = options.epochs.multipliedReportingOverflow(by: batchesPerEpoch)
        guard !overflow else {
            throw FlowError.limitExceeded("\(options.epochs) epochs of \(batchesPerEpoch) batches are too many steps")
        }
        var batch = [Scalar](repeating: 0, count: Swift.min(batchSize, trainRows) * d)
        let c = flow.contextSize
        var batchContext = [Scalar](repeating: 0, count: Swift.min(batchSize, trainRows) * c)
        let start = Self.now()
        var consecutiveSkips = 0
        var stoppedEarly = false
        var epoch = history.count
        while epoch < options.epochs, !stoppedEarly {
            epoch += 1
            var stream = PhiloxStream(seed: options.seed, row: UInt64(epoch), stream: RandomStream.shuffle)
            let order = stream.permutation(trainRows)
            var lossSum = 0.0, lossRows = 0, skipped = 0
            var learningRate = options.optimizer.learningRate
            let epochStart = Self.now()
            for b in 0..<batchesPerEpoch {
                let first = b * batchSize, n = Swift.min(batchSize, trainRows - first)
                train.withUnsafeBufferPointer { src in
                    batch.withUnsafeMutableBufferPointer { dst in
                        for i in 0..<n {
                            (dst.baseAddress! + i * d).update(from: src.baseAddress! + order[first + i] * d, count: d)
                        }
                    }
                }
                if c > 0 {
                    trainContext.withUnsafeBufferPointer { src in
                        batchContext.withUnsafeMutableBufferPointer { dst in
                            for i in 0..<n {
                                (dst.baseAddress! + i * c).update(from: src.baseAddress! + order[first + i] * c, count: c)
                            }
                        }
                    }
                }
                if dequantize {
                    batch.withUnsafeMutableBufferPointer {
                        Dequantization.addNoise($0.baseAddress!, count: n * d, seed: options.seed,
                                                row: UInt64(epoch) << 24 | UInt64(b))
                    }
                }
                let loss = try batch.withUnsafeBufferPointer { x -> Double in try batchContext.withUnsafeBufferPointer { bc -> Double in
                    let context = c > 0 ? bc.baseAddress : nil
                    try flow.initializeDataDependentLayers(x.baseAddress!, count: n, context: context)
                    flow.zeroGradients()
                    // Fresh Hutchinson probes for every step (continuous flows), from the step number.
                    for layer in continuousLayers { layer.probeDraw = UInt64(optimizer.stepCount + 1) }
                    defer { for layer in continuousLayers { layer.probeDraw = 0 } }
                    return flow.accumulateNLLGradient(x.baseAddress!, count: n, context: context) / Double(n)
                } }
                // Cancelled (sf_cancel), or scratch that could not be allocated: end the run.
                try CallScope.current?.check()
                let norm = optimizer.gradientNorm()
                var problem: String?
                if !loss.isFinite {
                    problem = "non-finite loss (\(loss))"
                } else if !norm.isFinite {
                    problem = "non-finite gradient"
                } else {
                    if let clip = options.clipNorm, norm > clip { optimizer.scaleGradients(by: clip / norm) }
                    let rate = options.optimizer.learningRate * options.schedule.factor(step: optimizer.stepCount, total: totalSteps)
                    if checksInvertibility { optimizer.saveState() }
                    if optimizer.step(learningRate: rate) {
                        flow.parametersDidChange()
                        learningRate = rate
                        if checksInvertibility, let invalid = flow.parameterProblem {
                            optimizer.restoreState()
                            flow.parametersDidChange()
                            problem = "the step was undone: \(invalid)"
                        }
                    } else {
                        problem = "the step was skipped: it would make parameters non-finite or move a log-scale past ±\(Limits.maxLogScale)"
                    }
                }
                if let reason = problem {
                    skipped += 1
                    consecutiveSkips += 1
                    if let progress, !progress(.skipped(epoch: epoch, batch: b + 1, reason: reason)) {
                        throw FlowError.cancelled("training cancelled in epoch \(epoch), batch \(b + 1)")
                    }
                    if consecutiveSkips >= options.maxConsecutiveSkips {
                        throw FlowError.numerical("\(consecutiveSkips) consecutive steps were skipped in epoch \(epoch) (the last: "
                            + "\(reason)); lower the learning rate, enable gradient clipping or a warm-up")
                    }
                    continue
                }
                consecutiveSkips = 0
                lossSum += loss * Double(n)
                lossRows += n
                if let progress {
                    let seconds = Self.now() - epochStart
                    let event = TrainingEvent.batch(epoch: epoch, batch: b + 1, batchesPerEpoch: batchesPerEpoch, loss: loss,
                                                    samplesPerSecond: Double(first + n) / Swift.max(seconds, 1e-9),
                                                    elapsed: Self.now() - start)
                    if !progress(event) { throw FlowError.cancelled("training cancelled in epoch \(epoch), batch \(b + 1)") }
                }
            }
            let trainSeconds = Self.now() - epochStart
            let record = finishEpoch(epoch, trainNLL: lossRows > 0 ? lossSum / Double(lossRows) : .nan,
                                     learningRate: learningRate, skipped: skipped,
                                     samplesPerSecond: Double(trainRows) / Swift.max(trainSeconds, 1e-9),
                                     elapsed: Self.now() - start)
            if let checkpoint { try checkpoint(self) }
            if let progress, !progress(.epoch(record)) {
                throw FlowError.cancelled("training cancelled after epoch \(epoch)")
            }
            if options.patience > 0, validationRows > 0, badEpochs >= options.patience {
                stoppedEarly = true
                if let progress, !progress(.stopped(epoch: epoch, bestEpoch: bestEpoch)) {
                    throw FlowError.cancelled("training cancelled after epoch \(epoch)")
                }
            }
        }
        if options.restoreBest { restoreBestParameters() }
        return history
    }

    /// Validation, best-parameter bookkeeping and the history entry of a finished epoch.
    private func finishEpoch(_ epoch: Int, trainNLL: Double, learningRate: Double, skipped: Int,
                             samplesPerSecond: Double, elapsed: Double) -> EpochRecord {
        var validationNLL: Double?
        var improved = false
        if validationRows > 0 {
            let nll = validation.withUnsafeBufferPointer { v in
                validationContext.withUnsafeBufferPointer { vc in
                    flow.meanNLL(v.baseAddress!, count: validationRows, context: validationContext.isEmpty ? nil : vc.baseAddress)
                }
            }
            validationNLL = nll
            if nll.isFinite, nll < bestValidationNLL - options.minDelta {
                improved = true
                bestValidationNLL = nll
                bestEpoch = epoch
                badEpochs = 0
                best = flow.parameters.map(\.array)
            } else {
                badEpochs += 1
            }
        }
        let record = EpochRecord(epoch: epoch, trainNLL: trainNLL, validationNLL: validationNLL,
                                 learningRate: learningRate, skippedSteps: skipped,
                                 samplesPerSecond: samplesPerSecond, elapsed: elapsed, improved: improved)
        history.append(record)
        return record
    }

    /// Puts the best epoch's parameters back (no-op without validation).
    public func restoreBestParameters() {
        guard let best else { return }
        for (p, values) in zip(flow.parameters, best) { p.assign(values) }
        flow.parametersDidChange()
    }

    // MARK: - Helpers

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Checks a context buffer against the flow: required (with `rows × contextSize` finite
    /// values) for a conditional flow, refused for an unconditional one.
    private static func checkContext(_ context: UnsafeBufferPointer<Scalar>?, rows: Int, contextSize c: Int,
                                     _ what: String) throws {
        guard c > 0 else {
            if context != nil { throw FlowError.invalidArgument("the flow is unconditional: it takes no \(what) context") }
            return
        }
        guard let context else {
            throw FlowError.invalidArgument("the flow is conditional (\(c) context values per row): the \(what) rows need their context")
        }
        guard context.count == rows * c else {
            throw FlowError.shapeMismatch("\(what) context holds \(context.count) values, expected \(rows) rows of \(c)")
        }
        try requireFinite(context, "\(what) context", c)
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    private static func requireFinite(_ values: UnsafeBufferPointer<Scalar>, _ what: String, _ d: Int) throws {
        for (i, v) in values.enumerated() where !v.isFinite {
            throw FlowError.numerical("\(what): row \(i / d), column \(i % d) is \(v); remove or impute non-finite values")
        }
    }

    /// A 64-bit FNV-1a-style hash taking whole 64-bit words: the row counts, then each training
    /// and validation value widened to Double (its bit pattern), `h = (h ⊕ w)·0x100000001b3`.
    /// One multiply per value, so hashing is cheap next to a training step.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    static func fingerprint(_ train: [Scalar], _ validation: [Scalar], eventSize: Int) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        @inline(__always) func mix(_ word: UInt64) { h = (h ^ word) &* 0x0000_0100_0000_01b3 }
        mix(UInt64(train.count / eventSize))
        mix(UInt64(validation.count / eventSize))
        for v in train { mix(Double(v).bitPattern) }
        for v in validation { mix(Double(v).bitPattern) }
        return h
    }
}
