/// The base distribution types SwiftFlows knows, by their spec/file `type` string.
///
/// ``types(_:)`` is the one list: the spec parser, the model-file reader and writer, and the
/// documentation check (every type appears in docs/model-format.md) go through it, as they go
/// through ``LayerRegistry`` for layers.
public enum BaseRegistry {
    /// Every base type at scalar type `T`, in documentation order.
    public static func types<T: FlowScalar>(_: T.Type = T.self) -> [any BaseDistribution<T>.Type] {
        [StandardNormal<T>.self, DiagonalNormal<T>.self, ConditionalDiagonalNormal<T>.self]
    }

    /// All base type names, in documentation order.
    public static let typeNames: [String] = types(Float.self).map { $0.typeName }

    /// The base class for `name` at scalar type `T`, or nil for an unknown name.
    public static func baseType<T: FlowScalar>(_ name: String, _: T.Type = T.self) -> (any BaseDistribution<T>.Type)? {
        types(T.self).first { $0.typeName == name }
    }

    /// Builds a base distribution from its spec object (`type` defaults to `standard_normal`)
    /// for events of `eventSize` scalars, in a flow whose encoded context has `contextFeatures`
    /// scalars per row (0: unconditional). Parameters are initialised from `seed`.
    /// - Throws: ``FlowError/unknownType(_:)`` naming an unknown type, ``FlowError/invalidSpec(_:)``
    ///   for unknown keys, wrong kinds or a conditional base without a context,
    ///   ``FlowError/limitExceeded(_:)``; messages start with `base (<type>): `.
    package static func make<T: FlowScalar>(_ config: [String: JSONValue], eventSize: Int, contextFeatures: Int = 0,
                                            seed: UInt64 = 0, _: T.Type = T.self) throws -> any BaseDistribution<T> {
        var name = StandardNormal<T>.typeName
        if let value = config["type"] {
            guard let given = value.stringValue else { throw FlowError.invalidSpec("base: \"type\" must be a string") }
            name = given
        }
        guard let type = baseType(name, T.self) else {
            throw FlowError.unknownType("unknown base distribution type \"\(name)\" (known: \(typeNames.joined(separator: ", ")))")
        }
        let context = "base (\(name))"
        let known = Set(type.hyperParameters.map(\.name)).union(["type"])
        for key in config.keys.sorted() where !known.contains(key) {
            throw FlowError.invalidSpec("\(context): unknown key \"\(key)\"; known keys: \(known.sorted().joined(separator: ", "))")
        }
        for p in type.hyperParameters {
            if let v = config[p.name], !p.accepts(v) {
                throw FlowError.invalidSpec("\(context): \"\(p.name)\" must be \(p.kindDescription), got \(v)")
            }
        }
        return try type.init(config: config, eventSize: eventSize, contextFeatures: contextFeatures, seed: seed)
    }
}
