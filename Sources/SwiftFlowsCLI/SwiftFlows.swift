import ArgumentParser
import FlowCore
import FlowModelFile
import FlowData
import FlowEnvironment

/// `swiftflows`: train, evaluate, sample and inspect normalizing flows stored as HDF5 models.
@main
struct SwiftFlows: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftflows",
        abstract: "Train, evaluate, sample and inspect normalizing flows (HDF5 model files).",
        discussion: """
            Data sources: a .csv file (optional header), a .npy file, FILE.h5:/path/to/dataset,
            toy:NAME[:N[:SEED]] for the built-in 2-D sets (\(ToyDataset.allCases.map(\.rawValue).joined(separator: ", "))),
            fashion-mnist:train|test[:N] (Debian's dataset-fashion-mnist; `make data`) or
            digits:train|val|test (scikit-learn's 8x8 digits exported by `make data`). Image data are
            integer levels [N, C, H, W]; image models dequantise them.
            """,
        version: ModelFile.libraryVersion,
        subcommands: [Train.self, Eval.self, Sample.self, Inspect.self, Toy.self]
    )
}

/// `--threads`, shared by the commands that compute.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "Worker threads for batch work (default: SWIFTFLOWS_NUM_THREADS or all cores). Results do not depend on it.")
    var threads: Int?

    func apply() throws {
        FlowRuntime.configureFromProcessEnvironment()
        if let threads {
            guard (1...256).contains(threads) else { throw ValidationError("--threads must be in 1...256") }
            FlowRuntime.threadCount = threads
        }
    }
}
