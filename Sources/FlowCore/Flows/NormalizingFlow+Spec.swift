/// Building flows from the JSON architecture spec (docs/model-format.md, "Architecture spec").
///
///     {"event_shape": [2],
///      "base": {"type": "standard_normal"},
///      "layers": [{"type": "affine_coupling", "mask": "half", "hidden": [64, 64]}, ...]}
///
/// or a preset, expanded to the same form: `{"preset": "realnvp", "dim": 2, "layers": 8}`.
extension NormalizingFlow {
    /// Builds a flow from spec JSON text; parameters are initialised from `seed`.
    public convenience init(specJSON: String, seed: UInt64) throws {
        try self.init(spec: try JSONValue.parse(specJSON), seed: seed)
    }

    /// Builds a flow from a parsed spec. Everything the flow allocates is charged to the
    /// ``MemoryBudget`` before it is allocated: a spec whose model needs more than the limit fails
    /// with ``FlowError/limitExceeded(_:)`` without taking the memory.
    public convenience init(spec: JSONValue, seed: UInt64) throws {
        let (parts, bytes) = try MemoryBudget.measure { try Self.parts(spec: spec, seed: seed) }
        try self.init(eventShape: parts.shape, layers: parts.layers, base: parts.base, context: parts.encoder, charged: bytes)
    }

    /// The event shape, layers, base and context encoder a spec describes.
    private static func parts(spec: JSONValue, seed: UInt64) throws
        -> (shape: [Int], layers: [any FlowLayer<Scalar>], base: any BaseDistribution<Scalar>, encoder: ContextEncoder<Scalar>?)
    {
        guard var object = spec.objectValue else { throw FlowError.invalidSpec("the spec must be a JSON object") }
        if object["preset"] != nil { object = try Presets.expand(object) }
        let known: Set<String> = ["event_shape", "base", "layers", "context", "format", "version"]
        for key in object.keys.sorted() where !known.contains(key) {
            throw FlowError.invalidSpec("unknown top-level key \"\(key)\" (known: base, context, event_shape, layers, preset)")
        }
        guard let shape = object["event_shape"]?.intArrayValue else {
            throw FlowError.invalidSpec("\"event_shape\" must be a list of positive integers")
        }
        let size = try Self.validatedEventSize(shape)
        guard var layerSpecs = (object["layers"] ?? .array([])).arrayValue else {
            throw FlowError.invalidSpec("\"layers\" must be a list of layer objects")
        }
        var encoder: ContextEncoder<Scalar>?
        if let contextSpec = object["context"] {
            guard let contextObject = contextSpec.objectValue else {
                throw FlowError.invalidSpec("\"context\" must be an object such as {\"size\": 3}")
            }
            let built = try ContextEncoder<Scalar>(config: contextObject, seed: seed)
            encoder = built
            layerSpecs = Self.withContextFeatures(layerSpecs, built.outputSize)
        }
        let base: any BaseDistribution<Scalar> = try BaseRegistry.make(try Self.baseConfig(object["base"]), eventSize: size,
                                                                       contextFeatures: encoder?.outputSize ?? 0, seed: seed)
        let (layers, _) = try LayerRegistry.makeLayers(layerSpecs, eventShape: shape, seed: seed, context: "", Scalar.self)
        return (shape, layers, base, encoder)
    }

    /// The spec's `base`: an object, or a type name for `{"type": name}`; the standard normal
    /// when absent.
    static func baseConfig(_ value: JSONValue?) throws -> [String: JSONValue] {
        switch value {
        case nil: return ["type": .string(StandardNormal<Scalar>.typeName)]
        case .string(let name)?: return ["type": .string(name)]
        case .object(let object)?: return object
        case let other?:
            throw FlowError.invalidSpec("\"base\" must be a base object such as {\"type\": \"standard_normal\"} or a type name, got \(other)")
        }
    }

    /// The layer specs with `context_features` set to `features` in every conditional layer type
    /// (one that declares it) whose spec does not give it.
    static func withContextFeatures(_ specs: [JSONValue], _ features: Int) -> [JSONValue] {
        specs.map { spec in
            guard var object = spec.objectValue, object["context_features"] == nil,
                  let name = object["type"]?.stringValue, let type = LayerRegistry.layerType(name, Scalar.self),
                  type.hyperParameters.contains(where: { $0.name == "context_features" }) else { return spec }
            object["context_features"] = .number(Double(features))
            return .object(object)
        }
    }

    /// Checks an event shape against ``Limits`` and returns its element count.
    package static func validatedEventSize(_ shape: [Int]) throws -> Int {
        guard !shape.isEmpty, shape.count <= Limits.maxEventRank, shape.allSatisfy({ $0 > 0 }) else {
            throw FlowError.invalidSpec("event_shape \(shape) must hold 1 to \(Limits.maxEventRank) positive extents")
        }
        guard let size = Tensor<Scalar>.elementCount(shape), size <= Limits.maxEventSize else {
            throw FlowError.limitExceeded("event_shape \(shape) has more than \(Limits.maxEventSize) elements")
        }
        return size
    }

    /// The resolved spec: every layer explicit. `NormalizingFlow(spec: flow.spec, seed: s)`
    /// rebuilds the same architecture (parameters freshly initialised).
    public var spec: JSONValue {
        var object: [String: JSONValue] = [
            "event_shape": JSONValue(eventShape),
            "base": .object(base.config),
            "layers": .array(layers.map { .object($0.config) }),
        ]
        if let contextEncoder { object["context"] = .object(contextEncoder.config) }
        return .object(object)
    }

    /// The same flow, parameters converted to another scalar type (e.g. Double for reference
    /// evaluations in tests).
    public func converted<U: FlowScalar>(to: U.Type = U.self) throws -> NormalizingFlow<U> {
        let copy = try NormalizingFlow<U>(spec: spec, seed: 0)
        for (dst, src) in zip(copy.parameters, parameters) {
            for i in 0..<src.count { dst.values[i] = U(src.values[i]) }
        }
        copy.parametersDidChange()
        return copy
    }
}
