import ArgumentParser
import FlowCore
import FlowModelFile
import FlowData
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

    @Flag(help: "nsf: autoregressive splines (MADE conditioners) instead of spline couplings.")
    var autoregressive = false

    @Option(name: .customLong("residual-blocks"),
            help: "maf, iaf, nsf --autoregressive: residual blocks of nflows' residual MADE, whose width is the --hidden width (all widths equal; 0 = the plain MADE).")
    var residualBlocks: Int?

    @Option(help: "Spline bins (nsf).")
    var bins: Int?

    @Option(help: "Spline tail bound B: the spline acts on [-B, B] (nsf).")
    var bound: Double?

    @Option(help: "Image presets: levels of the multi-scale architecture.")
    var levels: Int?

    @Option(help: "glow: flow steps per level.")
    var steps: Int?

    @Option(help: "realnvp_image: couplings per stage.")
    var couplings: Int?

    @Option(help: "Image presets: bits per value of the discrete data (dequantisation; 0 = none).")
    var bits: Int?

    @Option(name: .customLong("data-levels"), help: "Image presets: number of levels of the discrete data when not 2^bits (e.g. 17 for digits).")
    var dataLevels: Int?

    @Option(help: "glow: preprocessing after dequantisation: scale (to [-0.5, 0.5), Glow's) or logit (RealNVP's).")
    var preprocess: String?

    @Option(help: "Image presets: the logit's boundary margin alpha (realnvp_image default 0.05; glow with --preprocess logit 1e-6).")
    var alpha: Double?

    @Option(help: "Soft clamp of the couplings' log-scale.")
    var clamp: Double?

    @Option(help: "Vector presets: the base distribution, \(BaseRegistry.typeNames.joined(separator: ", ")) (preset default if omitted; conditional_diagonal_normal needs --context).")
    var base: String?

    @Option(name: .customLong("model-seed"), help: "Seed of the initial parameters.")
    var modelSeed: UInt64 = 0

    /// A new flow for events of `eventShape` (`[D]` for vectors, `[C, H, W]` for images).
    /// A new model for rows of `eventShape` (and `contextSize` context values per row: a
    /// conditional flow when positive).
    func makeFlow(eventShape: [Int], contextSize: Int = 0) throws -> NormalizingFlow<Float> {
        let size = eventShape.reduce(1, *)
        if let spec {
            let text = spec.hasPrefix("{") ? spec : try readText(spec)
            let flow = try NormalizingFlow<Float>(specJSON: text, seed: modelSeed)
            guard flow.eventSize == size else {
                throw ValidationError("the spec's events have \(flow.eventSize) values, the data \(size) per row")
            }
            guard flow.contextSize == contextSize else {
                throw ValidationError("the spec's context has \(flow.contextSize) values per row, --context \(contextSize)")
            }
            return flow
        }
        let image = ["glow", "realnvp_image"].contains(preset)
        var o: [String: JSONValue] = ["preset": .string(preset)]
        if image {
            guard eventShape.count == 3 else {
                throw ValidationError("preset \(preset) needs image data [N, C, H, W]; the data rows have shape \(eventShape)")
            }
            o["shape"] = JSONValue(eventShape)
        } else {
            o["dim"] = .number(Double(size))
        }
        if contextSize > 0 { o["context"] = .number(Double(contextSize)) }
        if let layers { o["layers"] = .number(Double(layers)) }
        if let hidden {
            let widths = hidden.split(separator: ",").map { Int($0.trimmingCharacters(in: " ")) }
            guard widths.allSatisfy({ $0 != nil }), !widths.isEmpty else { throw ValidationError("--hidden must be comma-separated integers") }
            o["hidden"] = image ? .number(Double(widths[0]!)) : JSONValue(widths.map { $0! })
        }
        if let levels { o["levels"] = .number(Double(levels)) }
        if let steps { o["steps"] = .number(Double(steps)) }
        if let couplings { o["couplings"] = .number(Double(couplings)) }
        if let bits { o["bits"] = .number(Double(bits)) }
        if let dataLevels { o["data_levels"] = .number(Double(dataLevels)) }
        if let preprocess { o["preprocess"] = .string(preprocess) }
        if let alpha { o["alpha"] = .number(alpha) }
        if let clamp { o["clamp"] = .number(clamp) }
        if let activation { o["activation"] = .string(activation) }
        if let mixing { o["mixing"] = .string(mixing) }
        if actnorm { o["actnorm"] = .bool(true) }
        if autoregressive { o["autoregressive"] = .bool(true) }
        if let residualBlocks { o["residual_blocks"] = .number(Double(residualBlocks)) }
        if let bins { o["bins"] = .number(Double(bins)) }
        if let bound { o["bound"] = .number(bound) }
        if let base { o["base"] = .string(base) }
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
