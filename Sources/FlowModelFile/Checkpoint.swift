import FlowCore
import FlowHDF5

/// Training checkpoints: a model file with a `/training` group holding a ``TrainingState`` (the
/// options, the optimiser state, the history and the best parameters; schema in
/// docs/model-format.md, "Training checkpoints"). A checkpoint is an ordinary model file for
/// every other reader.
public enum CheckpointFile {
    /// Writes the trainer's flow and ``Trainer/state`` to `path`, atomically.
    public static func save(_ trainer: Trainer<Float>, to path: String) throws {
        let state = trainer.state
        try ModelFile.save(trainer.flow, to: path) { root in try writeTrainingGroup(state, into: root) }
    }

    /// The flow and training state stored at `path`, read in one pass over the file.
    /// - Throws: ``FlowError/format(_:)`` for a file without a valid `/training` group, and
    ///   every error of ``ModelFile/load(path:)``.
    public static func read(path: String) throws -> (flow: NormalizingFlow<Float>, state: TrainingState<Float>) {
        try ModelFile.withFile(path: path) { file, source in
            let flow = try ModelFile.read(file, source: source)
            do {
                let root = try file.root
                guard root.isGroup("training") else {
                    throw FlowError.format("\(source) is a model without training state (no /training group)")
                }
                let g = try root.openGroup("training")
                guard try g.stringAttribute("format", maxLength: 64) == CheckpointSchema.formatName else {
                    throw FlowError.format("\(source): /training is not a SwiftFlows training group")
                }
                let version = try g.intsAttribute("format_version", maxCount: 4)
                guard version.first == CheckpointSchema.formatVersion[0] else {
                    throw FlowError.unsupportedVersion("\(source): training state version \(version) is not supported")
                }
                return (flow, try readState(g, parameterCounts: flow.parameters.map(\.count)))
            } catch let e as HDF5Error {
                throw FlowError.format("\(source): \(e.message)")
            }
        }
    }
}

extension Trainer where Scalar == Float {
    /// Continues the run saved in the checkpoint at `path` on the same data (the file is read
    /// once; see ``Trainer/init(flow:data:rows:validation:validationRows:resuming:epochs:)``).
    /// - Throws: ``FlowError/invalidArgument(_:)`` if the data differ from the checkpoint's
    ///   (fingerprint), ``FlowError/format(_:)`` for a file without a valid `/training` group.
    public static func resume(checkpoint path: String, data: UnsafeBufferPointer<Float>, rows: Int,
                              context: UnsafeBufferPointer<Float>? = nil,
                              validation: UnsafeBufferPointer<Float>? = nil, validationRows: Int = 0,
                              validationContext: UnsafeBufferPointer<Float>? = nil,
                              epochs: Int? = nil) throws -> Trainer<Float> {
        let (flow, state) = try CheckpointFile.read(path: path)
        return try Trainer(flow: flow, data: data, rows: rows, context: context, validation: validation,
                           validationRows: validationRows, validationContext: validationContext, resuming: state,
                           epochs: epochs)
    }

    /// Writes a checkpoint to `path` after every epoch (``Trainer/checkpoint``); nil writes none.
    public func saveCheckpoints(to path: String?) {
        checkpoint = path.map { path in { trainer in try CheckpointFile.save(trainer, to: path) } }
    }
}

/// Names and layout of the `/training` group.
enum CheckpointSchema {
    static let formatName = "swiftflows-training"
    static let formatVersion: [Int64] = [1, 0]
    static let historyColumns = ["epoch", "train_nll", "validation_nll", "learning_rate", "skipped_steps",
                                 "samples_per_second", "elapsed_seconds", "improved"]
}

extension CheckpointFile {
    static func writeTrainingGroup(_ state: TrainingState<Float>, into root: HDF5Group) throws {
        let g = try root.createGroup("training")
        let o = state.options
        try g.setAttribute("format", string: CheckpointSchema.formatName)
        try g.setAttribute("format_version", ints: CheckpointSchema.formatVersion)
        try g.setAttribute("epochs_completed", int: Int64(state.history.count))
        try g.setAttribute("step", int: Int64(state.step))
        try g.setAttribute("data_fingerprint", string: hex(state.dataFingerprint))
        try g.setAttribute("train_rows", int: Int64(state.trainRows))
        try g.setAttribute("validation_rows", int: Int64(state.validationRows))
        try g.setAttribute("best_epoch", int: Int64(state.bestEpoch))
        try g.setAttribute("best_validation_nll", double: state.bestValidationNLL)
        try g.setAttribute("bad_epochs", int: Int64(state.badEpochs))
        // Options.
        try g.setAttribute("epochs", int: Int64(o.epochs))
        try g.setAttribute("batch_size", int: Int64(o.batchSize))
        try g.setAttribute("optimizer", string: o.optimizer.kind.rawValue)
        try g.setAttribute("learning_rate", double: o.optimizer.learningRate)
        try g.setAttribute("beta1", double: o.optimizer.beta1)
        try g.setAttribute("beta2", double: o.optimizer.beta2)
        try g.setAttribute("epsilon", double: o.optimizer.epsilon)
        try g.setAttribute("weight_decay", double: o.optimizer.weightDecay)
        try g.setAttribute("momentum", double: o.optimizer.momentum)
        try g.setAttribute("clip_norm", double: o.clipNorm ?? 0)
        try g.setAttribute("schedule", string: o.schedule.decay.rawValue)
        try g.setAttribute("warmup_steps", int: Int64(o.schedule.warmupSteps))
        try g.setAttribute("min_factor", double: o.schedule.minimumFactor)
        try g.setAttribute("step_size", int: Int64(o.schedule.stepSize))
        try g.setAttribute("gamma", double: o.schedule.gamma)
        try g.setAttribute("validation_fraction", double: o.validationFraction)
        try g.setAttribute("patience", int: Int64(o.patience))
        try g.setAttribute("min_delta", double: o.minDelta)
        try g.setAttribute("restore_best", int: o.restoreBest ? 1 : 0)
        try g.setAttribute("seed", string: String(o.seed))
        try g.setAttribute("max_consecutive_skips", int: Int64(o.maxConsecutiveSkips))
        // History, one row per finished epoch.
        var rows: [Double] = []
        for r in state.history {
            rows += [Double(r.epoch), r.trainNLL, r.validationNLL ?? .nan, r.learningRate, Double(r.skippedSteps),
                     r.samplesPerSecond, r.elapsed, r.improved ? 1 : 0]
        }
        try g.writeDataset("history", doubles: rows, shape: [state.history.count, CheckpointSchema.historyColumns.count])
        // Optimiser state, per parameter in flow.parameters order.
        let opt = try g.createGroup("optimizer")
        for (k, first) in state.firstMoments.enumerated() {
            try opt.writeDataset("first_\(ModelFile.layerGroupName(k))", doubles: first, shape: [first.count])
            if o.optimizer.kind != .sgd {
                let second = state.secondMoments[k]
                try opt.writeDataset("second_\(ModelFile.layerGroupName(k))", doubles: second, shape: [second.count])
            }
        }
        if let best = state.best {
            let b = try g.createGroup("best")
            for (k, values) in best.enumerated() {
                try values.withUnsafeBufferPointer {
                    try b.writeDataset(ModelFile.layerGroupName(k), floats: $0, shape: [values.count])
                }
            }
        }
    }

}

extension CheckpointFile {
    private static func readOptions(_ g: HDF5Group) throws -> TrainingOptions {
        var o = TrainingOptions()
        o.epochs = Int(try g.intAttribute("epochs"))
        o.batchSize = Int(try g.intAttribute("batch_size"))
        let kind = try g.stringAttribute("optimizer", maxLength: 32)
        guard let optimizerKind = OptimizerKind(rawValue: kind) else { throw FlowError.format("unknown optimizer \"\(kind)\"") }
        o.optimizer = OptimizerSettings(kind: optimizerKind, learningRate: try g.doubleAttribute("learning_rate"),
                                        beta1: try g.doubleAttribute("beta1"), beta2: try g.doubleAttribute("beta2"),
                                        epsilon: try g.doubleAttribute("epsilon"),
                                        weightDecay: try g.doubleAttribute("weight_decay"),
                                        momentum: try g.doubleAttribute("momentum"))
        let clip = try g.doubleAttribute("clip_norm")
        o.clipNorm = clip > 0 ? clip : nil
        let decay = try g.stringAttribute("schedule", maxLength: 32)
        guard let scheduleDecay = LearningRateSchedule.Decay(rawValue: decay) else {
            throw FlowError.format("unknown learning-rate schedule \"\(decay)\"")
        }
        o.schedule = LearningRateSchedule(decay: scheduleDecay, warmupSteps: Int(try g.intAttribute("warmup_steps")),
                                          minimumFactor: try g.doubleAttribute("min_factor"),
                                          stepSize: Int(try g.intAttribute("step_size")),
                                          gamma: try g.doubleAttribute("gamma"))
        o.validationFraction = try g.doubleAttribute("validation_fraction")
        o.patience = Int(try g.intAttribute("patience"))
        o.minDelta = try g.doubleAttribute("min_delta")
        o.restoreBest = try g.intAttribute("restore_best") != 0
        guard let seed = UInt64(try g.stringAttribute("seed", maxLength: 32)) else { throw FlowError.format("bad seed attribute") }
        o.seed = seed
        o.maxConsecutiveSkips = Int(try g.intAttribute("max_consecutive_skips"))
        do { try o.validate() } catch let e as FlowError { throw FlowError.format("training options: \(e.message)") }
        return o
    }

    /// The ``TrainingState`` stored in `g`, for a flow whose parameters hold `parameterCounts`
    /// scalars. Sizes and integer columns are checked before anything is allocated or converted
    /// (a hostile or damaged checkpoint gives ``FlowError/format(_:)``, never a trap);
    /// ``Trainer/restore(_:)`` checks the values' ranges and consistency.
    private static func readState(_ g: HDF5Group, parameterCounts counts: [Int]) throws -> TrainingState<Float> {
        let options = try readOptions(g)
        let completed = try g.intAttribute("epochs_completed")
        guard completed >= 0, completed <= Int64(TrainingOptions.maxEpochs) else {
            throw FlowError.format("epochs_completed \(completed) is outside 0...\(TrainingOptions.maxEpochs)")
        }
        let epochsDone = Int(completed)
        let columns = CheckpointSchema.historyColumns.count
        let table = try g.readDoubles("history", expectedShape: [epochsDone, columns], maxElements: 1 << 24).values
        let history = try (0..<epochsDone).map { i in
            let r = Array(table[(i * columns)..<((i + 1) * columns)])
            func count(_ column: Int, _ range: ClosedRange<Int>) throws -> Int {
                guard r[column].isFinite, r[column].rounded() == r[column], Double(range.lowerBound) <= r[column],
                      r[column] <= Double(range.upperBound) else {
                    throw FlowError.format("history row \(i): \(CheckpointSchema.historyColumns[column]) \(r[column]) "
                        + "is not an integer in \(range.lowerBound)...\(range.upperBound)")
                }
                return Int(r[column])
            }
            return EpochRecord(epoch: try count(0, 1...epochsDone), trainNLL: r[1], validationNLL: r[2].isNaN ? nil : r[2],
                               learningRate: r[3], skippedSteps: try count(4, 0...(1 << 50)), samplesPerSecond: r[5],
                               elapsed: r[6], improved: r[7] != 0)
        }
        // Step, best epoch and the early-stopping counter are range-checked by Trainer.restore.
        let step = try g.intAttribute("step")
        let bestEpoch = try g.intAttribute("best_epoch"), badEpochs = try g.intAttribute("bad_epochs")
        guard let fingerprint = UInt64(try g.stringAttribute("data_fingerprint", maxLength: 32), radix: 16) else {
            throw FlowError.format("data_fingerprint is not a 64-bit hexadecimal number")
        }
        let trainRows = try g.intAttribute("train_rows"), validationRows = try g.intAttribute("validation_rows")
        guard trainRows >= 0, validationRows >= 0, trainRows <= 1 << 53, validationRows <= 1 << 53 else {
            throw FlowError.format("train_rows \(trainRows) or validation_rows \(validationRows) is out of range")
        }
        let opt = try g.openGroup("optimizer")
        var first: [[Double]] = [], second: [[Double]] = []
        for (k, n) in counts.enumerated() {
            let name = ModelFile.layerGroupName(k)
            let m = try opt.readDoubles("first_\(name)", expectedShape: [n], maxElements: n).values
            guard m.allSatisfy(\.isFinite) else {
                throw FlowError.numerical("\(opt.path)/first_\(name) contains NaN or infinite values")
            }
            first.append(m)
            guard options.optimizer.kind != .sgd else { second.append([]); continue }
            let v = try opt.readDoubles("second_\(name)", expectedShape: [n], maxElements: n).values
            guard v.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
                throw FlowError.numerical("\(opt.path)/second_\(name) contains negative, NaN or infinite values")
            }
            second.append(v)
        }
        var best: [[Float]]?
        if g.isGroup("best") {
            let b = try g.openGroup("best")
            best = try counts.enumerated().map { k, n in
                let values = try b.readFloats(ModelFile.layerGroupName(k), expectedShape: [n], maxElements: n).values
                guard values.allSatisfy(\.isFinite) else {
                    throw FlowError.numerical("\(b.path)/\(ModelFile.layerGroupName(k)) contains NaN or infinite values")
                }
                return values
            }
        }
        return TrainingState(options: options, history: history, step: Int(step), dataFingerprint: fingerprint,
                             trainRows: Int(trainRows), validationRows: Int(validationRows), bestEpoch: Int(bestEpoch),
                             badEpochs: Int(badEpochs), bestValidationNLL: try g.doubleAttribute("best_validation_nll"),
                             firstMoments: first, secondMoments: second, best: best)
    }
}
