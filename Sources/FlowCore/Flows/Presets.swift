/// One preset's options and their defaults, in a fixed order: the single source of the defaults
/// for ``Presets``' spec expansion, for the builders (``NormalizingFlow/realNVP(dim:layers:hidden:activation:clamp:actnorm:mixing:context:base:seed:)``
/// and the others, which leave out what the caller does not give) and for the C API
/// (`sf_preset_defaults`, which the Python package's tests compare with its keyword defaults).
public struct PresetDefaults: Sendable {
    /// The preset's name in a spec (`"preset": "realnvp"`).
    public let name: String
    /// Options without a default that a spec must give (`dim`, `shape`).
    public let required: [String]
    /// The other options with their defaults, in documentation order. ``JSONValue/null`` marks an
    /// option that is left out unless given (e.g. `data_levels`).
    public let defaults: [(name: String, value: JSONValue)]

    /// Every option name: the required ones, then the others.
    public var optionNames: [String] { required + defaults.map(\.name) }

    /// The default of `option` (nil for a required or unknown option, ``JSONValue/null`` for one
    /// left out unless given).
    public subscript(option: String) -> JSONValue? { defaults.first { $0.name == option }?.value }

    /// `{option: default}` for every option; required options map to `null`.
    public var json: JSONValue {
        var object: [String: JSONValue] = [:]
        for key in required { object[key] = .null }
        for (key, value) in defaults { object[key] = value }
        return .object(object)
    }

    /// A preset spec object with every option it leaves out filled in from the defaults (options
    /// whose default is `null` stay out). Throws for keys the preset does not know.
    func resolve(_ object: [String: JSONValue]) throws -> [String: JSONValue] {
        let allowed = Set(optionNames + ["preset"])
        for key in object.keys.sorted() where !allowed.contains(key) {
            throw FlowError.invalidSpec("preset \(name): unknown key \"\(key)\" (known: \(allowed.sorted().joined(separator: ", ")))")
        }
        var merged = object
        for (key, value) in defaults where merged[key] == nil && value != .null { merged[key] = value }
        return merged
    }

    /// A spec object for this preset from the options a builder was given (nil: the default).
    func spec(_ options: [String: JSONValue?]) -> JSONValue {
        var object = options.compactMapValues { $0 }
        object["preset"] = .string(name)
        return .object(object)
    }
}

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
///   as for realnvp, the same `actnorm` and `mixing` options, standard-normal base. With
///   `autoregressive: true`, autoregressive splines ("RQ-NSF (AR)", zuko's NSF) instead of
///   couplings: `layers` ``SplineAutoregressive`` layers whose MADE has the `hidden` widths.
/// - `maf` (Papamakarios et al. 2017): `layers` affine autoregressive layers (default 5) with MADE
///   conditioners of widths `hidden`, log-scale clamp `clamp`; density in one pass.
/// - `iaf` (Kingma et al. 2016): the same layers in the inverse direction; sampling in one pass.
///
/// The autoregressive presets (`maf`, `iaf`, `nsf` with `autoregressive: true`) take
/// `residual_blocks` (default 0): N ≥ 1 makes every MADE nflows' residual MADE with N residual
/// blocks of width `hidden[0]` (all `hidden` widths must then be equal; the default `[64, 64]`
/// gives width 64), as nflows' `use_residual_blocks=True`.
///
/// Every vector preset takes `context`: a context size `C` (0, the default: unconditional), or a
/// context object (``ContextEncoder``); its conditioners then read the encoded context. And
/// `base`: the base distribution, a type name (``BaseRegistry/typeNames``) or a base spec object
/// (default `"standard_normal"`; nice `"diagonal_normal"`). `"conditional_diagonal_normal"`
/// (``ConditionalDiagonalNormal``, a conditional flow only) makes the base's mean and scale
/// functions of the encoded context too.
///
/// For the autoregressive presets, `mixing: "alternate"` alternates the layers' orders between
/// natural and reversed (as zuko's MAF); `"reverse"`, `"random"` and `"lu"` keep the natural order
/// and put a permutation or an LU linear layer between layers (as nflows' MAF).
public enum Presets {
    /// realnvp: `dim` required.
    public static let realNVP = PresetDefaults(name: "realnvp", required: ["dim"], defaults: [
        ("layers", 8), ("hidden", [64, 64]), ("activation", "relu"), ("clamp", 5), ("actnorm", false),
        ("mixing", "alternate"), ("context", 0), ("base", "standard_normal"),
    ])
    /// nice: `dim` required.
    public static let nice = PresetDefaults(name: "nice", required: ["dim"], defaults: [
        ("layers", 4), ("hidden", [64, 64]), ("activation", "relu"), ("mixing", "alternate"), ("context", 0),
        ("base", "diagonal_normal"),
    ])
    /// nsf: `dim` required.
    public static let nsf = PresetDefaults(name: "nsf", required: ["dim"], defaults: [
        ("layers", 8), ("hidden", [64, 64]), ("bins", 8), ("bound", 3), ("activation", "relu"), ("actnorm", false),
        ("mixing", "alternate"), ("autoregressive", false), ("residual_blocks", 0), ("context", 0),
        ("base", "standard_normal"),
    ])
    /// maf: `dim` required.
    public static let maf = PresetDefaults(name: "maf", required: ["dim"], defaults: [
        ("layers", 5), ("hidden", [64, 64]), ("activation", "relu"), ("clamp", 5), ("actnorm", false),
        ("mixing", "alternate"), ("residual_blocks", 0), ("context", 0), ("base", "standard_normal"),
    ])
    /// iaf: `dim` required.
    public static let iaf = PresetDefaults(name: "iaf", required: ["dim"], defaults: [
        ("layers", 5), ("hidden", [64, 64]), ("activation", "relu"), ("clamp", 5), ("actnorm", false),
        ("mixing", "alternate"), ("residual_blocks", 0), ("context", 0), ("base", "standard_normal"),
    ])

    /// Every preset, vector ones first.
    public static let all: [PresetDefaults] = [realNVP, nice, nsf, maf, iaf] + ImagePresets.all
    public static let names = all.map(\.name)

    /// The preset called `name`; ``FlowError/unknownType(_:)`` listing the known names otherwise.
    public static func named(_ name: String) throws -> PresetDefaults {
        guard let preset = all.first(where: { $0.name == name }) else {
            throw FlowError.unknownType("unknown preset \"\(name)\" (known: \(names.joined(separator: ", ")))")
        }
        return preset
    }

    static func expand(_ original: [String: JSONValue]) throws -> [String: JSONValue] {
        guard let name = original["preset"]?.stringValue else { throw FlowError.invalidSpec("\"preset\" must be a string") }
        let preset = try named(name)
        if ImagePresets.names.contains(name) { return try ImagePresets.expand(name, try preset.resolve(original)) }
        let object = try preset.resolve(original)
        guard let dim = object["dim"]?.intValue, dim >= 1 else {
            throw FlowError.invalidSpec("preset \(name): \"dim\" must be a positive integer")
        }
        guard dim <= Limits.maxEventSize else {
            throw FlowError.limitExceeded("preset \(name): \"dim\" \(dim) exceeds the event-size limit \(Limits.maxEventSize)")
        }
        guard let count = object["layers"]?.intValue, count >= 1, count <= Limits.maxLayers / 3 else {
            throw FlowError.invalidSpec("preset \(name): \"layers\" must be a positive integer no larger than \(Limits.maxLayers / 3)")
        }
        let hidden = object["hidden"]!
        guard hidden.intArrayValue != nil else { throw FlowError.invalidSpec("preset \(name): \"hidden\" must be a list of integers") }
        let activation = object["activation"]!
        let mixing = object["mixing"]?.stringValue ?? ""
        guard ["alternate", "reverse", "random", "lu"].contains(mixing) else {
            throw FlowError.invalidSpec("preset \(name): unknown mixing \"\(mixing)\" (use alternate, reverse, random or lu)")
        }
        let actnorm = object["actnorm"]?.boolValue ?? false

        if let flag = object["autoregressive"], flag.boolValue == nil {
            throw FlowError.invalidSpec("preset \(name): \"autoregressive\" must be true or false")
        }
        let autoregressive = name == "maf" || name == "iaf" || (name == "nsf" && object["autoregressive"]?.boolValue == true)
        var residualBlocks = 0
        if let value = object["residual_blocks"] {
            guard let blocks = value.intValue, blocks >= 0, blocks <= Limits.maxResidualBlocks else {
                throw FlowError.invalidSpec("preset \(name): \"residual_blocks\" must be an integer in 0...\(Limits.maxResidualBlocks)")
            }
            guard blocks == 0 || autoregressive else {
                throw FlowError.invalidSpec("preset \(name): \"residual_blocks\" needs autoregressive layers (\"autoregressive\": true)")
            }
            residualBlocks = blocks
        }
        var layers: [JSONValue] = []
        for i in 0..<count {
            if actnorm { layers.append(.object(["type": .string("actnorm")])) }
            var layer: [String: JSONValue] = ["hidden": hidden, "activation": activation]
            if autoregressive {
                layer["type"] = .string(name == "nsf" ? "spline_autoregressive" : "affine_autoregressive")
                layer["order"] = .string(mixing == "alternate" && i % 2 == 1 ? "reversed" : "natural")
                layer["direction"] = .string(name == "iaf" ? "iaf" : "maf")
                if residualBlocks > 0 { layer["residual_blocks"] = .number(Double(residualBlocks)) }
            } else {
                layer["type"] = .string(name == "nice" ? "additive_coupling" : name == "nsf" ? "spline_coupling" : "affine_coupling")
                layer["mask"] = .string("half")
                // One feature: the single coordinate is always transformed (by learned constants).
                layer["invert_mask"] = .bool(dim > 1 && mixing == "alternate" && i % 2 == 1)
            }
            if ["realnvp", "maf", "iaf"].contains(name) { layer["clamp"] = object["clamp"]! }
            if name == "nsf" {
                layer["bins"] = object["bins"]!
                layer["bound"] = object["bound"]!
            }
            layers.append(.object(layer))
            if i < count - 1, dim > 1 {
                switch mixing {
                case "reverse": layers.append(.object(["type": .string("permutation"), "kind": .string("reverse")]))
                case "random": layers.append(.object(["type": .string("permutation"), "kind": .string("random")]))
                case "lu": layers.append(.object(["type": .string("lu_linear")]))
                default: break
                }
            }
        }
        let base: JSONValue
        switch object["base"] {
        case .string(let type)?: base = .object(["type": .string(type)])
        case .object(let spec)?: base = .object(spec)
        case let other:
            throw FlowError.invalidSpec("preset \(name): \"base\" must be a base type name (\(BaseRegistry.typeNames.joined(separator: ", "))) or a base object, got \(other ?? .null)")
        }
        var flow: [String: JSONValue] = ["event_shape": JSONValue([dim]), "base": base, "layers": .array(layers)]
        switch object["context"] {
        case nil, .number(0)?: break
        case .number(let size)? where size >= 1 && size.rounded() == size: flow["context"] = .object(["size": .number(size)])
        case .object(let spec)?: flow["context"] = .object(spec)
        case let other?:
            throw FlowError.invalidSpec("preset \(name): \"context\" must be a context size (an integer ≥ 0) or a context object, got \(other)")
        }
        return flow
    }
}

extension NormalizingFlow {
    /// RealNVP for `dim`-dimensional vectors (see ``Presets``); an option left nil takes its
    /// default from ``Presets/realNVP``. `base`: a base type name (e.g.
    /// `"conditional_diagonal_normal"` with a `context`).
    public static func realNVP(dim: Int, layers: Int? = nil, hidden: [Int]? = nil, activation: String? = nil,
                               clamp: Double? = nil, actnorm: Bool? = nil, mixing: String? = nil,
                               context: Int? = nil, base: String? = nil, seed: UInt64 = 0) throws -> NormalizingFlow {
        try NormalizingFlow(spec: Presets.realNVP.spec([
            "dim": .number(Double(dim)), "layers": layers.map { .number(Double($0)) }, "hidden": hidden.map { JSONValue($0) },
            "activation": activation.map { .string($0) }, "clamp": clamp.map { .number($0) },
            "actnorm": actnorm.map { .bool($0) }, "mixing": mixing.map { .string($0) },
            "context": context.map { .number(Double($0)) }, "base": base.map { .string($0) },
        ]), seed: seed)
    }

    /// A neural spline flow for `dim`-dimensional vectors (see ``Presets``): `layers`
    /// ``SplineCoupling`` layers (or, with `autoregressive`, ``SplineAutoregressive`` layers) with
    /// `bins` bins on `[−bound, bound]`, mixed like
    /// ``realNVP(dim:layers:hidden:activation:clamp:actnorm:mixing:context:base:seed:)``; an option
    /// left nil takes its default from ``Presets/nsf``.
    public static func nsf(dim: Int, layers: Int? = nil, hidden: [Int]? = nil, bins: Int? = nil, bound: Double? = nil,
                           activation: String? = nil, actnorm: Bool? = nil, mixing: String? = nil,
                           autoregressive: Bool? = nil, residualBlocks: Int? = nil, context: Int? = nil,
                           base: String? = nil,
                           seed: UInt64 = 0) throws -> NormalizingFlow {
        try NormalizingFlow(spec: Presets.nsf.spec([
            "dim": .number(Double(dim)), "layers": layers.map { .number(Double($0)) }, "hidden": hidden.map { JSONValue($0) },
            "bins": bins.map { .number(Double($0)) }, "bound": bound.map { .number($0) },
            "activation": activation.map { .string($0) }, "actnorm": actnorm.map { .bool($0) },
            "mixing": mixing.map { .string($0) }, "autoregressive": autoregressive.map { .bool($0) },
            "residual_blocks": residualBlocks.map { .number(Double($0)) }, "context": context.map { .number(Double($0)) },
            "base": base.map { .string($0) },
        ]), seed: seed)
    }

    /// A masked autoregressive flow (``Presets``, `maf`) for `dim`-dimensional vectors; an option
    /// left nil takes its default from ``Presets/maf``.
    public static func maf(dim: Int, layers: Int? = nil, hidden: [Int]? = nil, activation: String? = nil,
                           clamp: Double? = nil, actnorm: Bool? = nil, mixing: String? = nil, residualBlocks: Int? = nil,
                           context: Int? = nil, base: String? = nil, seed: UInt64 = 0) throws -> NormalizingFlow {
        try NormalizingFlow(spec: Presets.maf.spec(autoregressiveOptions(dim, layers, hidden, activation, clamp, actnorm, mixing,
                                                                         residualBlocks, context, base)),
                            seed: seed)
    }

    /// An inverse autoregressive flow (``Presets``, `iaf`) for `dim`-dimensional vectors; an
    /// option left nil takes its default from ``Presets/iaf``.
    public static func iaf(dim: Int, layers: Int? = nil, hidden: [Int]? = nil, activation: String? = nil,
                           clamp: Double? = nil, actnorm: Bool? = nil, mixing: String? = nil, residualBlocks: Int? = nil,
                           context: Int? = nil, base: String? = nil, seed: UInt64 = 0) throws -> NormalizingFlow {
        try NormalizingFlow(spec: Presets.iaf.spec(autoregressiveOptions(dim, layers, hidden, activation, clamp, actnorm, mixing,
                                                                         residualBlocks, context, base)),
                            seed: seed)
    }

    private static func autoregressiveOptions(_ dim: Int, _ layers: Int?, _ hidden: [Int]?, _ activation: String?,
                                              _ clamp: Double?, _ actnorm: Bool?, _ mixing: String?,
                                              _ residualBlocks: Int?, _ context: Int?, _ base: String?) -> [String: JSONValue?] {
        [
            "dim": .number(Double(dim)), "layers": layers.map { .number(Double($0)) }, "hidden": hidden.map { JSONValue($0) },
            "activation": activation.map { .string($0) }, "clamp": clamp.map { .number($0) },
            "actnorm": actnorm.map { .bool($0) }, "mixing": mixing.map { .string($0) },
            "residual_blocks": residualBlocks.map { .number(Double($0)) }, "context": context.map { .number(Double($0)) },
            "base": base.map { .string($0) },
        ]
    }

    /// NICE for `dim`-dimensional vectors (see ``Presets``); an option left nil takes its default
    /// from ``Presets/nice``.
    public static func nice(dim: Int, layers: Int? = nil, hidden: [Int]? = nil, activation: String? = nil,
                            mixing: String? = nil, context: Int? = nil, base: String? = nil,
                            seed: UInt64 = 0) throws -> NormalizingFlow {
        try NormalizingFlow(spec: Presets.nice.spec([
            "dim": .number(Double(dim)), "layers": layers.map { .number(Double($0)) }, "hidden": hidden.map { JSONValue($0) },
            "activation": activation.map { .string($0) }, "mixing": mixing.map { .string($0) },
            "context": context.map { .number(Double($0)) }, "base": base.map { .string($0) },
        ]), seed: seed)
    }
}
