import ArgumentParser
import FlowCore
#if canImport(Glibc)
import Glibc
#endif

/// How `train` builds a new model: a preset with sizes, or a JSON architecture spec.
struct ModelOptions: ParsableArguments {
    @Option(help: "Architecture spec: a JSON file or inline JSON (docs/model-format.md). Overrides --preset.")
    var spec: String?

    @Option(help: "Preset: \(Presets.names.joined(separator: ", ")).")
    var preset: String = "realnvp"

    @Option(help: "Coupling layers of the preset (preset default if omitted).")
    var layers: Int?

    @Option(help: "Hidden widths of each conditioner MLP, comma-separated (e.g. 64,64).")
    var hidden: String?

    @Option(help: "Conditioner activation: relu, tanh, elu, softplus, silu, leaky_relu.")
    var activation: String?

    @Option(help: "Mixing between couplings: alternate, reverse, random, lu.")
    var mixing: String?

    @Flag(help: "Insert ActNorm (data-dependent init) before each coupling.")
    var actnorm = false

    @Option(help: "Spline bins (nsf).")
    var bins: Int?

    @Option(help: "Spline tail bound B: the spline acts on [-B, B] (nsf).")
    var bound: Double?

    @Option(name: .customLong("model-seed"), help: "Seed of the initial parameters.")
    var modelSeed: UInt64 = 0

    /// A new flow for events of `dimension` features.
    func makeFlow(dimension: Int) throws -> NormalizingFlow<Float> {
        if let spec {
            let text = spec.hasPrefix("{") ? spec : try readText(spec)
            let flow = try NormalizingFlow<Float>(specJSON: text, seed: modelSeed)
            guard flow.eventSize == dimension else {
                throw ValidationError("the spec's events have \(flow.eventSize) values, the data \(dimension) columns")
            }
            return flow
        }
        var o: [String: JSONValue] = ["preset": .string(preset), "dim": .number(Double(dimension))]
        if let layers { o["layers"] = .number(Double(layers)) }
        if let hidden {
            let widths = hidden.split(separator: ",").map { Int($0.trimmingCharacters(in: " ")) }
            guard widths.allSatisfy({ $0 != nil }) else { throw ValidationError("--hidden must be comma-separated integers") }
            o["hidden"] = JSONValue(widths.map { $0! })
        }
        if let activation { o["activation"] = .string(activation) }
        if let mixing { o["mixing"] = .string(mixing) }
        if actnorm { o["actnorm"] = .bool(true) }
        if let bins { o["bins"] = .number(Double(bins)) }
        if let bound { o["bound"] = .number(bound) }
        return try NormalizingFlow<Float>(spec: .object(o), seed: modelSeed)
    }
}

extension Substring {
    func trimmingCharacters(in set: Character) -> Substring {
        var s = self
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return s
    }
}

/// The whole text file at `path` (spec files are small; capped at the spec size limit).
func readText(_ path: String) throws -> String {
    guard let f = fopen(path, "rb") else {
        throw FlowError.io("cannot open '\(path)': \(String(cString: strerror(errno)))")
    }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        if n == 0 { break }
        bytes += chunk[0..<n]
        guard bytes.count <= Limits.maxSpecBytes else { throw FlowError.limitExceeded("'\(path)' is larger than the spec limit") }
    }
    return String(decoding: bytes, as: UTF8.self)
}
