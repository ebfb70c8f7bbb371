import ArgumentParser
import FlowCore
import FlowModelFile
import FlowData

/// `swiftflows inspect`.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model file: format version, event shape, base, layers with shapes and parameter counts.")

    @Argument(help: "The model (HDF5).")
    var model: String

    @Flag(help: "Print the resolved architecture spec as JSON instead.")
    var spec = false

    func run() throws {
        let (flow, info) = try ModelFile.loadWithInfo(path: model)
        if spec {
            Terminal.out(flow.spec.description + "\n")
            return
        }
        var text = """
            file            \(model)
            format          \(ModelFile.formatName) \(info.formatVersion.map(String.init).joined(separator: ".")) (written by SwiftFlows \(info.libraryVersion))
            event shape     \(flow.eventShape)
            base            \(baseDescription(flow))
            parameters      \(flow.parameterCount)

            """
        if let encoder = flow.contextEncoder {
            var parts = ["\(encoder.inputSize) values per row"]
            if encoder.mean != nil || encoder.scale != nil { parts.append("standardised") }
            if let embedding = encoder.config["embedding"] { parts.append("embedding \(embedding.description) → \(encoder.outputSize)") }
            text += "context         " + parts.joined(separator: ", ") + "\n"
        }
        if info.isCheckpoint {
            text += "checkpoint      \(info.epochsCompleted ?? 0) epochs, \(info.steps ?? 0) steps"
            if let best = info.bestValidationNLL { text += ", best validation NLL \(Terminal.fixed(best, 4))" }
            text += "\n"
        }
        text += "\n  #  type                 input → output           params  hyper-parameters\n"
        for (i, layer) in flow.layers.enumerated() {
            let type = Swift.type(of: layer)
            let shapes = "\(layer.inputShape) → \(layer.outputShape)"
            let config = layer.config
            let hyper = type.hyperParameters.compactMap { hp -> String? in
                guard let v = config[hp.name], hp.kind != .intArray else { return nil }
                return "\(hp.name)=\(v.description)"
            }.joined(separator: " ")
            text += Terminal.right(String(i), 3) + "  " + Terminal.left(type.typeName, 20) + " " + Terminal.left(shapes, 22)
                + " " + Terminal.right(String(layer.parameterCount), 8) + "  " + hyper + "\n"
        }
        Terminal.out(text)
    }

    /// The base's type, hyper-parameters and parameter count (when it has any).
    private func baseDescription(_ flow: NormalizingFlow<Float>) -> String {
        let type = Swift.type(of: flow.base)
        let config = flow.base.config
        var parts = [type.typeName] + type.hyperParameters.compactMap { hp in config[hp.name].map { "\(hp.name)=\($0.description)" } }
        let count = flow.base.parameters.reduce(0) { $0 + $1.count }
        if count > 0 { parts.append("(\(count) parameters)") }
        return parts.joined(separator: " ")
    }
}
