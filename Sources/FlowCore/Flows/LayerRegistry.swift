/// The layer types SwiftFlows knows, by their spec/file `type` string.
public enum LayerRegistry {
    /// All layer type names, in documentation order.
    public static let typeNames: [String] = [
        "affine_coupling", "additive_coupling", "spline_coupling", "permutation", "actnorm", "lu_linear",
        "squeeze", "invertible_conv1x1", "conv_affine_coupling", "split", "dequantize", "logit", "scale",
        "cnf",
    ]

    /// The layer class for `name` at scalar type `T`, or nil for an unknown name.
    public static func layerType<T: FlowScalar>(_ name: String, _: T.Type = T.self) -> (any FlowLayer<T>.Type)? {
        switch name {
        case "affine_coupling": return AffineCoupling<T>.self
        case "additive_coupling": return AdditiveCoupling<T>.self
        case "spline_coupling": return SplineCoupling<T>.self
        case "permutation": return Permutation<T>.self
        case "actnorm": return ActNorm<T>.self
        case "lu_linear": return LULinear<T>.self
        case "squeeze": return Squeeze<T>.self
        case "invertible_conv1x1": return InvertibleConv1x1<T>.self
        case "conv_affine_coupling": return ConvAffineCoupling<T>.self
        case "split": return Split<T>.self
        case "dequantize": return Dequantize<T>.self
        case "logit": return Logit<T>.self
        case "scale": return AffineConstant<T>.self
        case "cnf": return ContinuousFlow<T>.self
        default: return nil
        }
    }

    /// Builds layer number `index` of a flow from its spec object.
    /// - Throws: ``FlowError/unknownType(_:)`` naming an unknown type; ``FlowError/invalidSpec(_:)``.
    public static func makeLayer<T: FlowScalar>(
        _ config: [String: JSONValue], eventShape: [Int], seed: UInt64, index: Int, _: T.Type = T.self
    ) throws -> any FlowLayer<T> {
        guard let name = config["type"]?.stringValue else {
            throw FlowError.invalidSpec("layer \(index): missing \"type\"")
        }
        guard let type = layerType(name, T.self) else {
            throw FlowError.unknownType("layer \(index): unknown layer type \"\(name)\" (known: \(typeNames.joined(separator: ", ")))")
        }
        try type.validate(config, context: "layer \(index)")
        do {
            return try type.init(config: config, eventShape: eventShape, seed: layerSeed(seed, index: index))
        } catch let error as FlowError {
            throw error.prefixed("layer \(index): ")
        }
    }

    /// Builds a list of layers from spec objects, starting at events of `eventShape`; returns
    /// them with the last layer's output shape. `context` prefixes error messages
    /// (e.g. `"layer 3 (split): "`); `seed` seeds layer `i` with ``layerSeed(_:index:)``.
    static func makeLayers<T: FlowScalar>(
        _ specs: [JSONValue], eventShape: [Int], seed: UInt64, context: String, _: T.Type = T.self
    ) throws -> (layers: [any FlowLayer<T>], outputShape: [Int]) {
        guard specs.count <= Limits.maxLayers else {
            throw FlowError.limitExceeded("\(context)\(specs.count) layers; the limit is \(Limits.maxLayers)")
        }
        var layers: [any FlowLayer<T>] = []
        var shape = eventShape
        var total = 0
        for (i, spec) in specs.enumerated() {
            guard let config = spec.objectValue else { throw FlowError.invalidSpec("\(context)layer \(i) must be a JSON object") }
            let layer: any FlowLayer<T>
            do {
                layer = try makeLayer(config, eventShape: shape, seed: seed, index: i)
            } catch let e as FlowError {
                throw e.prefixed(context)
            }
            total += layer.parameterCount
            guard total <= Limits.maxParameters else {
                throw FlowError.limitExceeded("\(context)more than \(Limits.maxParameters) parameters")
            }
            shape = layer.outputShape
            layers.append(layer)
        }
        return (layers, shape)
    }

    /// The initialisation seed of layer `index`: one Philox block of the flow's seed.
    static func layerSeed(_ seed: UInt64, index: Int) -> UInt64 {
        let (a, b, _, _) = Philox4x32(seed: seed).block(UInt32(truncatingIfNeeded: index), 0, 0, RandomStream.initialization)
        return UInt64(a) << 32 | UInt64(b)
    }
}

extension FlowError {
    /// The same error with `prefix` before its message (context from an outer level).
    func prefixed(_ prefix: String) -> FlowError {
        if message.hasPrefix(prefix) { return self }
        switch self {
        case .invalidArgument(let m): return .invalidArgument(prefix + m)
        case .shapeMismatch(let m): return .shapeMismatch(prefix + m)
        case .invalidSpec(let m): return .invalidSpec(prefix + m)
        case .io(let m): return .io(prefix + m)
        case .format(let m): return .format(prefix + m)
        case .corrupt(let m): return .corrupt(prefix + m)
        case .unsupportedVersion(let m): return .unsupportedVersion(prefix + m)
        case .unknownType(let m): return .unknownType(prefix + m)
        case .limitExceeded(let m): return .limitExceeded(prefix + m)
        case .numerical(let m): return .numerical(prefix + m)
        case .cancelled(let m): return .cancelled(prefix + m)
        }
    }
}
