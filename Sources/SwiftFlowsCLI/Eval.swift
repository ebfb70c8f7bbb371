import ArgumentParser
import FlowCore
import FlowModelFile
import FlowData

/// Mean NLL of a model on data, with its standard error and bits per dimension.
struct Evaluation {
    var rows: Int
    var dimension: Int
    var meanNLL: Double
    var standardError: Double
    /// `meanNLL / (D · ln 2)`.
    var bitsPerDimension: Double { meanNLL / (Double(dimension) * Double.log(2)) }

    /// Mean NLL of `flow` on `data`. Models that start with `dequantize` get uniform noise on
    /// the levels (one draw from `seed`), so the NLL is the dequantised bound in nats and
    /// bits/dim is the discrete data's code length.
    static func run(_ flow: NormalizingFlow<Float>, _ data: Tensor<Float>, context: Tensor<Float>? = nil,
                    seed: UInt64 = 0) throws -> Evaluation {
        guard data.eventSize == flow.eventSize else {
            throw FlowError.shapeMismatch("the model takes \(flow.eventSize) values per row, the data has \(data.eventSize)")
        }
        try checkContext(context, flow, rows: data.batchCount)
        let n = data.batchCount
        var values = data.scalars
        if Dequantization.applies(to: flow) {
            values.withUnsafeMutableBufferPointer {
                Dequantization.addEvaluationNoise($0.baseAddress!, count: $0.count, seed: seed)
            }
        }
        var lp = [Double](repeating: 0, count: n)
        let c = context?.scalars ?? []
        values.withUnsafeBufferPointer { x in
            c.withUnsafeBufferPointer { cp in
                lp.withUnsafeMutableBufferPointer {
                    flow.logProb(x.baseAddress!, count: n, context: context == nil ? nil : cp.baseAddress, into: $0.baseAddress!)
                }
            }
        }
        let mean = -lp.reduce(0, +) / Double(n)
        let variance = n > 1 ? lp.reduce(0) { $0 + ($1 + mean) * ($1 + mean) } / Double(n - 1) : 0
        return Evaluation(rows: n, dimension: flow.eventSize, meanNLL: mean, standardError: (variance / Double(n)).squareRoot())
    }
}

/// `swiftflows eval`.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mean negative log-likelihood (nats, ± standard error) and bits/dim of a model on data.")

    @Argument(help: "The model (HDF5).")
    var model: String

    @Option(help: "Data source.")
    var data: String

    @Option(help: "Context rows of the data (a conditional model), one per data row.")
    var context: String?

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        try runtime.apply()
        let flow = try NormalizingFlow<Float>.load(path: model)
        let rows = try DataSource.load(data)
        let e = try Evaluation.run(flow, rows, context: try loadContext(context, for: rows, "--context"))
        let work = flow.solverWork()
        if json {
            var o: [String: JSONValue] = [
                "rows": .number(Double(e.rows)), "nll": .number(e.meanNLL), "nll_stderr": .number(e.standardError),
                "bits_per_dim": .number(e.bitsPerDimension),
            ]
            if let work {
                o["solves"] = .number(Double(work.solves))
                o["nfe_per_solve"] = work.meanNFE.map(JSONValue.number) ?? .null
            }
            Terminal.out(JSONValue.object(o).description + "\n")
        } else {
            var text = "rows       \(e.rows)\nNLL        \(Terminal.fixed(e.meanNLL, 4)) ± \(Terminal.fixed(e.standardError, 4)) nats\n"
                + "bits/dim   \(Terminal.fixed(e.bitsPerDimension, 4))\n"
            if let work { text += "solver     \(work)\n" }
            Terminal.out(text)
        }
    }
}

/// Refuses a context for an unconditional model, a missing one for a conditional model, and
/// rows of the wrong width.
func checkContext(_ context: Tensor<Float>?, _ flow: NormalizingFlow<Float>, rows: Int) throws {
    guard flow.contextSize > 0 else {
        if context != nil { throw FlowError.invalidArgument("the model is unconditional: it takes no --context") }
        return
    }
    guard let context else {
        throw FlowError.invalidArgument("the model is conditional (\(flow.contextSize) context values per row): give --context")
    }
    guard context.eventSize == flow.contextSize, context.batchCount == rows || context.batchCount == 1 else {
        throw FlowError.shapeMismatch("--context must hold \(rows) rows (or one) of \(flow.contextSize) values")
    }
}

