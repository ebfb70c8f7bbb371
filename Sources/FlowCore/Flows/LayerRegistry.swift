/// The layer types SwiftFlows knows, by their spec/file `type` string.
///
/// ``types(_:)`` is the one list: the spec parser, the model-file reader and writer, and the
/// documentation check (every type appears in docs/model-format.md) all go through it. Adding a
/// layer type means its own file, one line here and its section in the format document.
public enum LayerRegistry {
    /// Every layer type at scalar type `T`, in documentation order.
    public static func types<T: FlowScalar>(_: T.Type = T.self) -> [any FlowLayer<T>.Type] {
        [
            AffineCoupling<T>.self, AdditiveCoupling<T>.self, SplineCoupling<T>.self, AffineAutoregressive<T>.self,
            SplineAutoregressive<T>.self, Permutation<T>.self,
            ActNorm<T>.self, LULinear<T>.self, Squeeze<T>.self, InvertibleConv1x1<T>.self,
            ConvAffineCoupling<T>.self, Split<T>.self, Dequantize<T>.self, Logit<T>.self, AffineConstant<T>.self,
            ContinuousFlow<T>.self,
        ]
    }

    /// All layer type names, in documentation order.
    public static let typeNames: [String] = types(Float.self).map { $0.typeName }

    /// The layer class for `name` at scalar type `T`, or nil for an unknown name.
    public static func layerType<T: FlowScalar>(_ name: String, _: T.Type = T.self) -> (any FlowLayer<T>.Type)? {
        types(T.self).first { $0.typeName == name }
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
    package static func makeLayers<T: FlowScalar>(
        _ specs: [JSONValue], eventShape: [Int], seed: UInt64, context: String, _: T.Type = T.self
    ) throws -> (layers: [any FlowLayer<T>], outputShape: [Int]) {
        guard specs.count <= Limits.maxLayers else {
            throw FlowError.limitExceeded("\(context)\(specs.count) layers; the limit is \(Limits.maxLayers)")
        }
        if !MemoryBudget.isSizing {
            // A sizing pass first: a flow whose layers together pass the memory limit fails before
            // the first one is built (MemoryBudget).
            var shape = eventShape
            let estimate = MemoryBudget.estimate(specs.enumerated().map { i, spec in
                {
                    guard let config = spec.objectValue else { return }
                    try chargeIndexArrays(eventSize: shape.reduce(1, *), context: "\(context)layer \(i)")
                    let layer: any FlowLayer<T> = try makeLayer(config, eventShape: shape, seed: seed, index: i)
                    shape = layer.outputShape
                }
            })
            guard estimate <= MemoryBudget.remaining else {
                throw FlowError.limitExceeded("\(context)the \(specs.count) layers need at least \(estimate) bytes, more than the "
                    + "\(MemoryBudget.remaining) bytes left of the memory limit of \(MemoryBudget.limit) bytes (raise it with "
                    + "sf_set_memory_limit, swiftflows.set_memory_limit or SWIFTFLOWS_MEMORY_LIMIT)")
            }
        }
        var layers: [any FlowLayer<T>] = []
        var shape = eventShape
        var total = 0
        for (i, spec) in specs.enumerated() {
            guard let config = spec.objectValue else { throw FlowError.invalidSpec("\(context)layer \(i) must be a JSON object") }
            try chargeIndexArrays(eventSize: shape.reduce(1, *), context: "\(context)layer \(i)")
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

    /// Bytes charged for the per-feature index arrays and masks a layer over events of `size`
    /// values builds outside its parameters (masks, feature lists, permutations and their
    /// inverses: up to four arrays of `Int`).
    static func indexArrayBytes(eventSize size: Int) -> Int { 4 * MemoryLayout<Int>.stride * size }

    /// Charges ``indexArrayBytes(eventSize:)`` for the next layer to the ``MemoryBudget`` and, when
    /// building for real, checks that twice as much can be allocated (Swift arrays stop the
    /// process when their allocation fails).
    private static func chargeIndexArrays(eventSize: Int, context: String) throws {
        let bytes = indexArrayBytes(eventSize: eventSize)
        try MemoryBudget.charge(bytes, "\(context): index arrays of \(eventSize) features")
        try MemoryBudget.requireAvailable(2 * bytes, "\(context): index arrays of \(eventSize) features")
    }

    /// The initialisation seed of layer `index`: one Philox block of the flow's seed.
    static func layerSeed(_ seed: UInt64, index: Int) -> UInt64 {
        let (a, b, _, _) = Philox4x32(seed: seed).block(UInt32(truncatingIfNeeded: index), 0, 0, RandomStream.initialization)
        return UInt64(a) << 32 | UInt64(b)
    }
}

extension FlowError {
    /// The same error with `prefix` before its message (context from an outer level).
    package func prefixed(_ prefix: String) -> FlowError {
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
        case .outOfMemory(let m): return .outOfMemory(prefix + m)
        }
    }
}
