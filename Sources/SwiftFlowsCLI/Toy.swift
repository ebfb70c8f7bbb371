import ArgumentParser
import FlowCore
import FlowModelFile
import FlowData

/// `swiftflows toy`.
struct Toy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write points of a built-in 2-D toy data set (FFJORD's recipes) to a file or stdout.")

    @Argument(help: "One of: \(ToyDataset.allCases.map(\.rawValue).joined(separator: ", ")).")
    var name: String

    @Option(name: .short, help: "Number of points.")
    var n = 10_000

    @Option(help: "Seed.")
    var seed: UInt64 = 0

    @Option(name: .shortAndLong, help: "Output file (.csv, .npy, .h5); CSV on stdout if omitted.")
    var output: String?

    func run() throws {
        let points = try ToyDataset.named(name).tensor(n, seed: seed)
        if let output {
            try DataSource.save(points, to: output)
        } else {
            Terminal.out(String(decoding: try CSVWriter.encode(points), as: UTF8.self))
        }
    }
}
