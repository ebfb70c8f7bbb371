import ArgumentParser
import FlowCore
import FlowModelFile
import FlowData

/// `swiftflows train`: maximum-likelihood training, saved as an HDF5 model.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a flow by maximum likelihood and save it as an HDF5 model.",
        discussion: """
            Example: swiftflows train --data toy:8gaussians:60000:1 --epochs 40 --batch-size 512 \\
                       --schedule cosine --output 8gaussians.h5 --test toy:8gaussians:20000:2
            """)

    @Option(help: "Training data source (see `swiftflows --help`).")
    var data: String

    @Option(name: .shortAndLong, help: "Where to save the trained model (HDF5, written atomically).")
    var output: String

    @OptionGroup var model: ModelOptions

    @Option(help: "Passes over the training rows.")
    var epochs = 50

    @Option(name: .customLong("batch-size"), help: "Rows per optimisation step.")
    var batchSize = 256

    @Option(name: [.customLong("lr"), .customLong("learning-rate")], help: "Base learning rate.")
    var learningRate = 1e-3

    @Option(help: "Optimiser: adam (AdamW), adamax, sgd.")
    var optimizer = "adam"

    @Option(name: .customLong("weight-decay"), help: "Decoupled weight decay.")
    var weightDecay = 0.0

    @Option(help: "SGD momentum.")
    var momentum = 0.9

    @Option(name: .customLong("clip-norm"), help: "Clip gradients to this global L2 norm (0: off).")
    var clipNorm = 0.0

    @Option(help: "Learning-rate decay after warm-up: constant, cosine, step.")
    var schedule = "constant"

    @Option(help: "Linear warm-up steps.")
    var warmup = 0

    @Option(name: .customLong("min-lr-factor"), help: "Cosine: final learning rate as a fraction of --lr.")
    var minLRFactor = 0.0

    @Option(name: .customLong("step-size"), help: "Step schedule: steps between decays.")
    var stepSize = 1000

    @Option(help: "Step schedule: decay factor.")
    var gamma = 0.5

    @Option(help: "Fraction of the rows held out for validation (ignored with --validation-data).")
    var validation = 0.1

    @Option(name: .customLong("validation-data"), help: "A separate validation data source.")
    var validationData: String?

    @Option(help: "Early stopping: epochs without validation improvement (0: off).")
    var patience = 0

    @Flag(name: .customLong("no-restore-best"), help: "Keep the last epoch's parameters instead of the best validation epoch's.")
    var noRestoreBest = false

    @Option(help: "Seed of the validation split and the shuffles.")
    var seed: UInt64 = 0

    @Option(help: "Write a checkpoint (model + optimiser state) here after every epoch.")
    var checkpoint: String?

    @Option(help: "Resume the run saved in this checkpoint (same data); the model options are ignored.")
    var resume: String?

    @Option(help: "Evaluate the trained model on this data source.")
    var test: String?

    @Option(help: "Context rows of --data for a conditional flow p(x | c): a data source with one row per data row (e.g. data.h5:/c). A new model from a preset takes its context size from it.")
    var context: String?

    @Option(name: .customLong("validation-context"), help: "Context rows of --validation-data.")
    var validationContext: String?

    @Option(name: .customLong("test-context"), help: "Context rows of --test.")
    var testContext: String?

    @Option(help: "Progress output: auto, bar, plain, json, none.")
    var progress: ProgressStyle = .auto

    @OptionGroup var runtime: RuntimeOptions

    func options() throws -> TrainingOptions {
        var o = TrainingOptions()
        o.epochs = epochs
        o.batchSize = batchSize
        guard let kind = OptimizerKind(rawValue: optimizer) else {
            throw ValidationError("--optimizer must be one of \(OptimizerKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        o.optimizer = OptimizerSettings(kind: kind, learningRate: learningRate, weightDecay: weightDecay, momentum: momentum)
        o.clipNorm = clipNorm > 0 ? clipNorm : nil
        guard let decay = LearningRateSchedule.Decay(rawValue: schedule) else {
            throw ValidationError("--schedule must be one of constant, cosine, step")
        }
        o.schedule = LearningRateSchedule(decay: decay, warmupSteps: warmup, minimumFactor: minLRFactor,
                                          stepSize: stepSize, gamma: gamma)
        o.validationFraction = validationData == nil ? validation : 0
        o.patience = patience
        o.restoreBest = !noRestoreBest
        o.seed = seed
        try o.validate()
        return o
    }

    func run() throws {
        try runtime.apply()
        let started = Terminal.now()
        let rows = try DataSource.load(data)
        let validationRows = try validationData.map(DataSource.load)
        let contextRows = try loadContext(context, for: rows, "--context")
        let validationContextRows = try loadContext(validationContext, for: validationRows, "--validation-context")
        let d = rows.eventSize
        let trainer: Trainer<Float>
        if let resume {
            trainer = try rows.scalars.withUnsafeBufferPointer { x in
                try (validationRows?.scalars ?? []).withUnsafeBufferPointer { v in
                    try buffers(contextRows, validationContextRows) { c, vc in
                        try Trainer.resume(checkpoint: resume, data: x, rows: rows.batchCount, context: c,
                                           validation: validationRows == nil ? nil : v,
                                           validationRows: validationRows?.batchCount ?? 0, validationContext: vc,
                                           epochs: epochs)
                    }
                }
            }
            trainer.saveCheckpoints(to: checkpoint ?? resume)
            Terminal.error("resuming \(resume) after epoch \(trainer.history.count)\n")
        } else {
            let flow = try model.makeFlow(eventShape: rows.eventShape, contextSize: contextRows?.eventSize ?? 0)
            trainer = try rows.scalars.withUnsafeBufferPointer { x in
                try (validationRows?.scalars ?? []).withUnsafeBufferPointer { v in
                    try buffers(contextRows, validationContextRows) { c, vc in
                        try Trainer(flow: flow, data: x, rows: rows.batchCount, context: c,
                                    validation: validationRows == nil ? nil : v,
                                    validationRows: validationRows?.batchCount ?? 0, validationContext: vc,
                                    options: try options())
                    }
                }
            }
            trainer.saveCheckpoints(to: checkpoint)
        }
        let flow = trainer.flow
        if progress != .json {
            Terminal.error("training on \(trainer.trainRows) rows of \(d) (validation \(trainer.validationRows)), "
                + "\(flow.layers.count) layers, \(flow.parameterCount) parameters, \(trainer.batchesPerEpoch) steps/epoch\n")
        }
        _ = flow.solverWork(reset: true)  // count from the first step (not the data-dependent init)
        let reporter = ProgressReporter(style: progress, epochs: trainer.options.epochs,
                                        solverWork: { flow.solverWork(reset: true) })
        try trainer.run(progress: reporter.handle)
        try flow.save(to: output)

        var summary: [String: JSONValue] = [
            "event": .string("done"), "model": .string(output), "epochs": .number(Double(trainer.history.count)),
            "seconds": .number(Terminal.now() - started),
        ]
        var text = "saved \(output) after \(trainer.history.count) epochs in \(Terminal.duration(Terminal.now() - started))"
        if trainer.bestEpoch > 0 {
            summary["best_epoch"] = .number(Double(trainer.bestEpoch))
            summary["validation_nll"] = .number(trainer.bestValidationNLL)
            text += "; best validation NLL \(Terminal.fixed(trainer.bestValidationNLL, 4)) (epoch \(trainer.bestEpoch))"
        }
        if let test {
            let t = try DataSource.load(test)
            _ = flow.solverWork(reset: true)
            let result = try Evaluation.run(flow, t, context: try loadContext(testContext, for: t, "--test-context"), seed: seed)
            summary["test_nll"] = .number(result.meanNLL)
            summary["test_nll_stderr"] = .number(result.standardError)
            summary["test_bits_per_dim"] = .number(result.bitsPerDimension)
            text += "\ntest NLL \(Terminal.fixed(result.meanNLL, 4)) ± \(Terminal.fixed(result.standardError, 4)) nats on \(t.batchCount) rows"
                + " (\(Terminal.fixed(result.bitsPerDimension, 4)) bits/dim)"
            if let work = flow.solverWork() {
                summary["test_nfe_per_solve"] = work.meanNFE.map(JSONValue.number) ?? .null
                text += "; \(work)"
            }
        }
        if progress == .json {
            Terminal.out(JSONValue.object(summary).description + "\n")
        } else {
            Terminal.out(text + "\n")
        }
    }
}

/// The context rows of `rows` from a data source (nil without one), checked to have one row per
/// data row.
func loadContext(_ source: String?, for rows: Tensor<Float>?, _ option: String) throws -> Tensor<Float>? {
    guard let source else { return nil }
    guard let rows else { throw ValidationError("\(option) is given without the data it belongs to") }
    let context = try DataSource.load(source)
    guard context.batchCount == rows.batchCount else {
        throw ValidationError("\(option) has \(context.batchCount) rows; the data has \(rows.batchCount)")
    }
    return context
}

/// Runs `body` with the training and validation context buffers (nil where there are none).
private func buffers<R>(_ context: Tensor<Float>?, _ validation: Tensor<Float>?,
                        _ body: (UnsafeBufferPointer<Float>?, UnsafeBufferPointer<Float>?) throws -> R) rethrows -> R {
    try (context?.scalars ?? []).withUnsafeBufferPointer { c in
        try (validation?.scalars ?? []).withUnsafeBufferPointer { v in
            try body(context == nil ? nil : c, validation == nil ? nil : v)
        }
    }
}
