import ArgumentParser
import FlowCore
import FlowModelFile
import FlowData

/// `swiftflows sample`.
struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw samples from a model into a .csv, .npy or .h5 file (dataset /samples), or CSV on stdout.")

    @Argument(help: "The model (HDF5).")
    var model: String

    @Option(name: .short, help: "Number of samples.")
    var n = 1000

    @Option(help: "Seed (the same seed gives the same samples on every run).")
    var seed: UInt64 = 0

    @Option(help: "Temperature: scales the base distribution's standard deviation.")
    var temperature: Float = 1

    @Option(name: .shortAndLong, help: "Output file (.csv, .npy, .h5); CSV on stdout if omitted.")
    var output: String?

    @Option(help: "A conditional model's context: comma-separated values (one context for all samples), or a data source with one row per sample.")
    var context: String?

    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        try runtime.apply()
        guard n >= 1 else { throw ValidationError("-n must be at least 1") }
        guard temperature > 0, temperature.isFinite else { throw ValidationError("--temperature must be positive") }
        let flow = try NormalizingFlow<Float>.load(path: model)
        let (elements, overflow) = n.multipliedReportingOverflow(by: flow.eventSize)
        guard !overflow, elements <= 1 << 31 else { throw ValidationError("-n \(n) is too many samples") }
        var contextRows: [Float]?
        if let context {
            let values = context.split(separator: ",").map { Float($0.trimmingCharacters(in: " ")) }
            let one = values.allSatisfy { $0 != nil } ? try Tensor<Float>(shape: [1, values.count], scalars: values.map { $0! }) : nil
            let rows = try one ?? DataSource.load(context)
            try checkContext(rows, flow, rows: n)
            guard temperature == 1 else { throw ValidationError("conditional models sample at --temperature 1") }
            contextRows = rows.batchCount == n ? rows.scalars : (0..<n).flatMap { _ in rows.scalars }
        } else {
            try checkContext(nil, flow, rows: n)
        }
        var samples = Tensor<Float>(shape: [n] + flow.eventShape)
        samples.scalars.withUnsafeMutableBufferPointer { out in
            (contextRows ?? []).withUnsafeBufferPointer { c in
                flow.sample(count: n, seed: seed, context: contextRows == nil ? nil : c.baseAddress, into: out.baseAddress!,
                            temperature: temperature)
            }
        }
        let flat = try samples.reshaped([n, flow.eventSize])
        if let output {
            try DataSource.save(flat, to: output)
            Terminal.error("wrote \(n) samples to \(output)\n")
        } else {
            Terminal.out(String(decoding: try CSVWriter.encode(flat), as: UTF8.self))
        }
    }
}
