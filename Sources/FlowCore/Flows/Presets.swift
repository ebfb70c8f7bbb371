/// Named architectures, expanded into explicit layer lists.
///
/// - `realnvp` (Dinh et al. 2017): `layers` affine couplings with half-split masks whose roles
///   alternate, conditioner MLP `hidden` (default [64, 64], ReLU), log-scale clamp `clamp`
///   (default 5). Options: `actnorm` (an ActNorm before each coupling), `mixing`:
///   `"alternate"` (default: flip the mask), `"reverse"` / `"random"` (a permutation between
///   couplings), `"lu"` (an LU linear layer between couplings).
/// - `nice` (Dinh et al. 2015): `layers` additive couplings (default 4) alternating as above and a
///   diagonal-normal base, whose learnable scale is NICE's final scaling layer.
/// - `nsf` (Durkan et al. 2019, coupling variant "RQ-NSF (C)"): `layers` rational-quadratic spline
///   couplings (default 8) with `bins` bins (default 8) on `[−bound, bound]` (default 3), conditioner
///   as for realnvp, the same `actnorm` and `mixing` options, standard-normal base.
public enum Presets {
    public static let names = ["realnvp", "nice", "nsf"] + ImagePresets.names

    static func expand(_ object: [String: JSONValue]) throws -> [String: JSONValue] {
        guard let name = object["preset"]?.stringValue else { throw FlowError.invalidSpec("\"preset\" must be a string") }
        if ImagePresets.names.contains(name) { return try ImagePresets.expand(name, object) }
        let common: Set<String> = ["preset", "dim", "layers", "hidden", "activation"]
        let allowed: Set<String>
        switch name {
        case "realnvp": allowed = common.union(["clamp", "actnorm", "mixing"])
        case "nice": allowed = common.union(["mixing"])
        case "nsf": allowed = common.union(["bins", "bound", "actnorm", "mixing"])
        default:
            throw FlowError.unknownType("unknown preset \"\(name)\" (known: \(names.joined(separator: ", ")))")
        }
        for key in object.keys.sorted() where !allowed.contains(key) {
            throw FlowError.invalidSpec("preset \(name): unknown key \"\(key)\" (known: \(allowed.sorted().joined(separator: ", ")))")
        }
        guard let dim = object["dim"]?.intValue, dim >= 1 else {
            throw FlowError.invalidSpec("preset \(name): \"dim\" must be a positive integer")
        }
        guard dim <= Limits.maxEventSize else {
            throw FlowError.limitExceeded("preset \(name): \"dim\" \(dim) exceeds the event-size limit \(Limits.maxEventSize)")
        }
        guard let count = (object["layers"] ?? .number(name == "nice" ? 4 : 8)).intValue, count >= 1, count <= Limits.maxLayers / 3 else {
            throw FlowError.invalidSpec("preset \(name): \"layers\" must be a positive integer no larger than \(Limits.maxLayers / 3)")
        }
        let hidden = object["hidden"] ?? JSONValue([64, 64])
        guard hidden.intArrayValue != nil else { throw FlowError.invalidSpec("preset \(name): \"hidden\" must be a list of integers") }
        let activation = object["activation"] ?? .string("relu")
        let mixing = object["mixing"]?.stringValue ?? "alternate"
        guard ["alternate", "reverse", "random", "lu"].contains(mixing) else {
            throw FlowError.invalidSpec("preset \(name): unknown mixing \"\(mixing)\" (use alternate, reverse, random or lu)")
        }
        let actnorm = object["actnorm"]?.boolValue ?? false

        var layers: [JSONValue] = []
        for i in 0..<count {
            if actnorm { layers.append(.object(["type": .string("actnorm")])) }
            var coupling: [String: JSONValue] = [
                "type": .string(name == "nice" ? "additive_coupling" : name == "nsf" ? "spline_coupling" : "affine_coupling"),
                "mask": .string("half"),
                // One feature: the single coordinate is always transformed (by learned constants).
                "invert_mask": .bool(dim > 1 && mixing == "alternate" && i % 2 == 1),
                "hidden": hidden,
                "activation": activation,
            ]
            if name == "realnvp", let clamp = object["clamp"] { coupling["clamp"] = clamp }
            if name == "nsf" {
                if let bins = object["bins"] { coupling["bins"] = bins }
                if let bound = object["bound"] { coupling["bound"] = bound }
            }
            layers.append(.object(coupling))
            if i < count - 1, dim > 1 {
                switch mixing {
                case "reverse": layers.append(.object(["type": .string("permutation"), "kind": .string("reverse")]))
                case "random": layers.append(.object(["type": .string("permutation"), "kind": .string("random")]))
                case "lu": layers.append(.object(["type": .string("lu_linear")]))
                default: break
                }
            }
        }
        return [
            "event_shape": JSONValue([dim]),
            "base": .object(["type": .string(name == "nice" ? "diagonal_normal" : "standard_normal")]),
            "layers": .array(layers),
        ]
    }
}

extension NormalizingFlow {
    /// RealNVP for `dim`-dimensional vectors (see ``Presets``).
    public static func realNVP(dim: Int, layers: Int = 8, hidden: [Int] = [64, 64], activation: String = "relu",
                               clamp: Double = 5, actnorm: Bool = false, mixing: String = "alternate",
                               seed: UInt64 = 0) throws -> NormalizingFlow {
        try NormalizingFlow(spec: .object([
            "preset": .string("realnvp"), "dim": .number(Double(dim)), "layers": .number(Double(layers)),
            "hidden": JSONValue(hidden), "activation": .string(activation), "clamp": .number(clamp),
            "actnorm": .bool(actnorm), "mixing": .string(mixing),
        ]), seed: seed)
    }

    /// A neural spline flow (coupling RQ-NSF) for `dim`-dimensional vectors (see ``Presets``):
    /// `layers` ``SplineCoupling`` layers with `bins` bins on `[−bound, bound]`, mixed like ``realNVP(dim:layers:hidden:activation:clamp:actnorm:mixing:seed:)``.
    public static func nsf(dim: Int, layers: Int = 8, hidden: [Int] = [64, 64], bins: Int = 8, bound: Double = 3,
                           activation: String = "relu", actnorm: Bool = false, mixing: String = "alternate",
                           seed: UInt64 = 0) throws -> NormalizingFlow {
        try NormalizingFlow(spec: .object([
            "preset": .string("nsf"), "dim": .number(Double(dim)), "layers": .number(Double(layers)),
            "hidden": JSONValue(hidden), "bins": .number(Double(bins)), "bound": .number(bound),
            "activation": .string(activation), "actnorm": .bool(actnorm), "mixing": .string(mixing),
        ]), seed: seed)
    }

    /// NICE for `dim`-dimensional vectors (see ``Presets``).
    public static func nice(dim: Int, layers: Int = 4, hidden: [Int] = [64, 64], activation: String = "relu",
                            mixing: String = "alternate", seed: UInt64 = 0) throws -> NormalizingFlow {
        try NormalizingFlow(spec: .object([
            "preset": .string("nice"), "dim": .number(Double(dim)), "layers": .number(Double(layers)),
            "hidden": JSONValue(hidden), "activation": .string(activation), "mixing": .string(mixing),
        ]), seed: seed)
    }
}
