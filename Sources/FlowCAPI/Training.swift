import CSwiftFlowsABI
import FlowCore
import FlowModelFile
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Training

@_cdecl("sf_train_options_init")
public func sf_train_options_init(_ options: UnsafeMutablePointer<sf_train_options>?) {
    guard let options else { return }
    let d = TrainingOptions()
    var o = sf_train_options()
    o.struct_size = MemoryLayout<sf_train_options>.size
    o.epochs = UInt32(d.epochs)
    o.batch_size = UInt32(d.batchSize)
    o.optimizer = SF_OPTIMIZER_ADAM
    o.learning_rate = d.optimizer.learningRate
    o.beta1 = d.optimizer.beta1
    o.beta2 = d.optimizer.beta2
    o.epsilon = d.optimizer.epsilon
    o.weight_decay = d.optimizer.weightDecay
    o.momentum = d.optimizer.momentum
    o.clip_norm = 0
    o.schedule = SF_SCHEDULE_CONSTANT
    o.warmup_steps = UInt32(d.schedule.warmupSteps)
    o.min_lr_factor = d.schedule.minimumFactor
    o.step_size = UInt32(d.schedule.stepSize)
    o.gamma = d.schedule.gamma
    o.validation_fraction = d.validationFraction
    o.patience = UInt32(d.patience)
    o.min_delta = d.minDelta
    o.restore_best = d.restoreBest ? 1 : 0
    o.seed = d.seed
    o.checkpoint_path = nil
    o.progress = nil
    o.user_data = nil
    options.pointee = o
}

/// The engine's options from a caller's struct (checked for size and ranges).
func trainingOptions(_ p: UnsafePointer<sf_train_options>?) throws -> (TrainingOptions, sf_train_options) {
    guard let p else { throw FlowError.invalidArgument("options is NULL (initialise one with sf_train_options_init)") }
    let size = p.pointee.struct_size
    guard size == MemoryLayout<sf_train_options>.size else {
        throw FlowError.invalidArgument("options.struct_size is \(size), expected \(MemoryLayout<sf_train_options>.size): "
            + "initialise options with sf_train_options_init from this library's header")
    }
    let c = p.pointee
    var o = TrainingOptions()
    o.epochs = Int(c.epochs)
    o.batchSize = Int(c.batch_size)
    switch c.optimizer {
    case SF_OPTIMIZER_ADAM: o.optimizer.kind = .adam
    case SF_OPTIMIZER_ADAMAX: o.optimizer.kind = .adamax
    case SF_OPTIMIZER_SGD: o.optimizer.kind = .sgd
    default: throw FlowError.invalidArgument("unknown optimizer \(c.optimizer.rawValue)")
    }
    o.optimizer.learningRate = c.learning_rate
    o.optimizer.beta1 = c.beta1
    o.optimizer.beta2 = c.beta2
    o.optimizer.epsilon = c.epsilon
    o.optimizer.weightDecay = c.weight_decay
    o.optimizer.momentum = c.momentum
    guard c.clip_norm.isFinite, c.clip_norm >= 0 else {
        throw FlowError.invalidArgument("clip_norm must be finite and non-negative, got \(c.clip_norm)")
    }
    o.clipNorm = c.clip_norm > 0 ? c.clip_norm : nil
    switch c.schedule {
    case SF_SCHEDULE_CONSTANT: o.schedule.decay = .constant
    case SF_SCHEDULE_COSINE: o.schedule.decay = .cosine
    case SF_SCHEDULE_STEP: o.schedule.decay = .step
    default: throw FlowError.invalidArgument("unknown schedule \(c.schedule.rawValue)")
    }
    o.schedule.warmupSteps = Int(c.warmup_steps)
    o.schedule.minimumFactor = c.min_lr_factor
    o.schedule.stepSize = Int(c.step_size)
    o.schedule.gamma = c.gamma
    o.validationFraction = c.validation_fraction
    o.patience = Int(c.patience)
    o.minDelta = c.min_delta
    o.restoreBest = c.restore_best != 0
    o.seed = c.seed
    try o.validate()
    return (o, c)
}

/// Checks a row buffer argument: NULL only when `rows` is 0.
func rowBuffer(_ p: UnsafePointer<Float>?, _ rows: UInt, _ eventSize: Int, _ name: String) throws -> UnsafeBufferPointer<Float>? {
    guard rows > 0 else { return nil }
    guard let p else { throw FlowError.invalidArgument("\(name) is NULL") }
    guard rows <= UInt(Int.max) else { throw FlowError.invalidArgument("\(name): \(rows) rows is too many") }
    let (count, overflow) = Int(rows).multipliedReportingOverflow(by: eventSize)
    guard !overflow, count <= Int.max / 8 else {
        throw FlowError.invalidArgument("\(name): \(rows) rows of \(eventSize) values overflow the address space")
    }
    return UnsafeBufferPointer(start: p, count: count)
}

/// Forwards engine events to a C progress callback; false means the callback cancelled.
func forward(_ event: TrainingEvent, to callback: sf_progress_fn, _ userData: UnsafeMutableRawPointer?) -> Bool {
    var p = sf_progress()
    switch event {
    case let .batch(epoch, batch, batches, loss, rate, elapsed):
        p.kind = SF_PROGRESS_BATCH
        p.epoch = UInt32(clamping: epoch)
        p.batch = UInt32(clamping: batch)
        p.batches_per_epoch = UInt32(clamping: batches)
        p.loss = loss
        p.samples_per_second = rate
        p.elapsed_seconds = elapsed
        return callback(&p, userData) == 0
    case let .skipped(epoch, batch, reason):
        p.kind = SF_PROGRESS_SKIPPED
        p.epoch = UInt32(clamping: epoch)
        p.batch = UInt32(clamping: batch)
        return reason.withCString { message in
            p.message = message
            return callback(&p, userData) == 0
        }
    case let .epoch(record):
        var report = epochReport(record)
        p.kind = SF_PROGRESS_EPOCH
        p.epoch = UInt32(clamping: record.epoch)
        p.elapsed_seconds = record.elapsed
        return withUnsafePointer(to: &report) { r in
            p.report = r
            return callback(&p, userData) == 0
        }
    case let .stopped(epoch, best):
        p.kind = SF_PROGRESS_STOPPED
        p.epoch = UInt32(clamping: epoch)
        p.best_epoch = UInt32(clamping: best)
        return callback(&p, userData) == 0
    }
}

func epochReport(_ r: EpochRecord) -> sf_epoch_report {
    var e = sf_epoch_report()
    e.epoch = UInt32(clamping: r.epoch)
    e.skipped_steps = UInt32(clamping: r.skippedSteps)
    e.train_nll = r.trainNLL
    e.validation_nll = r.validationNLL ?? .nan
    e.learning_rate = r.learningRate
    e.samples_per_second = r.samplesPerSecond
    e.elapsed_seconds = r.elapsed
    e.improved = r.improved ? 1 : 0
    return e
}

/// Runs a trainer with the C callback, then copies its history out.
func runAndReport(_ trainer: Trainer<Float>, _ progress: sf_progress_fn?, _ userData: UnsafeMutableRawPointer?,
                  _ history: UnsafeMutablePointer<sf_epoch_report>?, _ capacity: UInt,
                  _ outEpochs: UnsafeMutablePointer<Int>?) throws {
    defer {
        outEpochs?.pointee = trainer.history.count
        if let history {
            for (i, r) in trainer.history.enumerated() where UInt(i) < capacity { history[i] = epochReport(r) }
        }
    }
    if let progress {
        try trainer.run { forward($0, to: progress, userData) }
    } else {
        try trainer.run()
    }
}

@_cdecl("sf_train")
public func sf_train(_ handle: OpaquePointer?, _ x: UnsafePointer<Float>?, _ n: UInt, _ xVal: UnsafePointer<Float>?,
                     _ nVal: UInt, _ options: UnsafePointer<sf_train_options>?,
                     _ history: UnsafeMutablePointer<sf_epoch_report>?, _ historyCapacity: UInt,
                     _ outEpochs: UnsafeMutablePointer<Int>?) -> Int32 {
    sf_train_context(handle, x, nil, n, xVal, nil, nVal, options, history, historyCapacity, outEpochs)
}

@_cdecl("sf_train_context")
public func sf_train_context(_ handle: OpaquePointer?, _ x: UnsafePointer<Float>?, _ context: UnsafePointer<Float>?,
                             _ n: UInt, _ xVal: UnsafePointer<Float>?, _ contextVal: UnsafePointer<Float>?, _ nVal: UInt,
                             _ options: UnsafePointer<sf_train_options>?,
                             _ history: UnsafeMutablePointer<sf_epoch_report>?, _ historyCapacity: UInt,
                             _ outEpochs: UnsafeMutablePointer<Int>?) -> Int32 {
    outEpochs?.pointee = 0
    return guarded {
        try writing(handle) { flow in
            let (o, c) = try trainingOptions(options)
            guard n > 0 else { throw FlowError.invalidArgument("n is 0: there is nothing to train on") }
            let data = try rowBuffer(x, n, flow.eventSize, "x")!
            let validation = try rowBuffer(xVal, nVal, flow.eventSize, "x_val")
            let (trainContext, validationContext) = try contextBuffers(flow, context, n, contextVal, nVal)
            let trainer = try Trainer(flow: flow, data: data, rows: Int(n), context: trainContext, validation: validation,
                                      validationRows: Int(nVal), validationContext: validationContext, options: o)
            if let path = c.checkpoint_path {
                let checkpoint = try string(path, "checkpoint_path", limit: 4096)
                try ModelFile.checkSaveTarget(checkpoint)
                trainer.saveCheckpoints(to: checkpoint)
            }
            try runAndReport(trainer, c.progress, c.user_data, history, historyCapacity, outEpochs)
            return Status.ok.rawValue
        }
    }
}

/// The training and validation context buffers of a call on `flow`: refused for an
/// unconditional flow, sized by its context size for a conditional one (the trainer then
/// reports what is missing).
func contextBuffers(_ flow: NormalizingFlow<Float>, _ context: UnsafePointer<Float>?, _ n: UInt,
                    _ contextVal: UnsafePointer<Float>?, _ nVal: UInt) throws
    -> (UnsafeBufferPointer<Float>?, UnsafeBufferPointer<Float>?)
{
    let c = flow.contextSize
    guard c > 0 else {
        guard context == nil, contextVal == nil else {
            throw FlowError.invalidArgument("the model is unconditional: pass context = NULL and context_val = NULL")
        }
        return (nil, nil)
    }
    return (try rowBuffer(context, n, c, "context"), try rowBuffer(contextVal, nVal, c, "context_val"))
}

@_cdecl("sf_train_resume")
public func sf_train_resume(_ path: UnsafePointer<CChar>?, _ x: UnsafePointer<Float>?, _ n: UInt,
                            _ xVal: UnsafePointer<Float>?, _ nVal: UInt, _ epochs: UInt32,
                            _ progress: sf_progress_fn?, _ userData: UnsafeMutableRawPointer?,
                            _ history: UnsafeMutablePointer<sf_epoch_report>?, _ historyCapacity: UInt,
                            _ outEpochs: UnsafeMutablePointer<Int>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    sf_train_resume_v2(path, x, n, 0, xVal, nVal, epochs, progress, userData, history, historyCapacity, outEpochs, out)
}

@_cdecl("sf_train_resume_v2")
public func sf_train_resume_v2(_ path: UnsafePointer<CChar>?, _ x: UnsafePointer<Float>?, _ n: UInt, _ rowSize: UInt,
                               _ xVal: UnsafePointer<Float>?, _ nVal: UInt, _ epochs: UInt32,
                               _ progress: sf_progress_fn?, _ userData: UnsafeMutableRawPointer?,
                               _ history: UnsafeMutablePointer<sf_epoch_report>?, _ historyCapacity: UInt,
                               _ outEpochs: UnsafeMutablePointer<Int>?,
                               _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    sf_train_resume_context(path, x, nil, n, rowSize, 0, xVal, nil, nVal, epochs, progress, userData, history,
                            historyCapacity, outEpochs, out)
}

@_cdecl("sf_train_resume_context")
public func sf_train_resume_context(_ path: UnsafePointer<CChar>?, _ x: UnsafePointer<Float>?,
                                    _ context: UnsafePointer<Float>?, _ n: UInt, _ rowSize: UInt, _ contextSize: UInt,
                                    _ xVal: UnsafePointer<Float>?, _ contextVal: UnsafePointer<Float>?, _ nVal: UInt,
                                    _ epochs: UInt32, _ progress: sf_progress_fn?, _ userData: UnsafeMutableRawPointer?,
                                    _ history: UnsafeMutablePointer<sf_epoch_report>?, _ historyCapacity: UInt,
                                    _ outEpochs: UnsafeMutablePointer<Int>?,
                                    _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    outEpochs?.pointee = 0
    guard let out else { return fail(.invalidArgument, "out_model is NULL") }
    out.pointee = nil
    return guarded {
        let checkpoint = try string(path, "checkpoint_path", limit: 4096)
        guard n > 0, let x else { throw FlowError.invalidArgument("x is NULL or n is 0: resume needs the training rows") }
        // One read of the file: the flow sizes the row buffers, the state continues the run.
        let (flow, state) = try CheckpointFile.read(path: checkpoint)
        guard rowSize == 0 || rowSize == UInt(flow.eventSize) else {
            throw FlowError.shapeMismatch("the rows hold \(rowSize) values each; the checkpoint's model takes \(flow.eventSize)")
        }
        guard context == nil || contextSize == 0 || contextSize == UInt(flow.contextSize) else {
            throw FlowError.shapeMismatch("the context rows hold \(contextSize) values each; the checkpoint's model takes \(flow.contextSize)")
        }
        let data = try rowBuffer(x, n, flow.eventSize, "x")!
        let validation = try rowBuffer(xVal, nVal, flow.eventSize, "x_val")
        let (trainContext, validationContext) = try contextBuffers(flow, context, n, contextVal, nVal)
        let trainer = try Trainer(flow: flow, data: data, rows: Int(n), context: trainContext, validation: validation,
                                  validationRows: Int(nVal), validationContext: validationContext, resuming: state,
                                  epochs: epochs > 0 ? Int(epochs) : nil)
        trainer.saveCheckpoints(to: checkpoint)
        do {
            // A scope without cancellation (the model has no handle yet): it records scratch that
            // cannot be allocated, which then ends the run with its status.
            try CallScope.run(cancellation: nil, since: 0) {
                try runAndReport(trainer, progress, userData, history, historyCapacity, outEpochs)
            }
        } catch {
            return fail(error)  // no model is handed out on failure
        }
        return publish(trainer.flow, out)
    }
}
