/// A bijection that can be described by the JSON architecture spec and stored in a model file.
///
/// Each layer type declares its hyper-parameters once (``hyperParameters``); the spec parser,
/// the HDF5 writer and the HDF5 reader all follow that declaration, so the JSON spec, the file
/// schema (docs/model-format.md) and the code cannot drift apart.
public protocol FlowLayer<Scalar>: Bijection {
    /// The `type` string in specs and files, e.g. `"affine_coupling"`.
    static var typeName: String { get }

    /// Declared hyper-parameters, in documentation order.
    static var hyperParameters: [HyperParameter] { get }

    /// Builds a layer for events of `eventShape` from a spec object (already checked against
    /// ``hyperParameters``: known keys only, right kinds). Parameters are initialised from
    /// `seed` (a fresh coupling flow is the identity).
    init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws

    /// The resolved spec of this layer: every hyper-parameter explicit (e.g. a `"half"` mask
    /// becomes its 0/1 list), plus `"type"`. Building from it gives the same architecture.
    var config: [String: JSONValue] { get }
}

/// One declared hyper-parameter of a layer type.
public struct HyperParameter: Sendable {
    /// How the value is typed in JSON and stored in HDF5.
    public enum Kind: Sendable {
        /// Integer; HDF5 int64 scalar attribute.
        case int
        /// Real; HDF5 float64 scalar attribute.
        case double
        /// String; HDF5 variable-length UTF-8 scalar attribute.
        case string
        /// Boolean; HDF5 int64 scalar attribute, 0 or 1.
        case bool
        /// Short list of integers (e.g. hidden widths); HDF5 1-D int64 attribute.
        case intList
        /// Per-feature integer array (masks, permutations); HDF5 1-D int64 dataset.
        case intArray
        /// A nested list of layer objects (containers such as `split`); HDF5 subgroup `layers`
        /// with one group per layer, exactly like the top level.
        case layers
    }

    public let name: String
    public let kind: Kind
    /// Whether a spec must give it. Optional ones have a default documented in `summary`.
    public let required: Bool
    /// Whether the spec may give a string shorthand instead (e.g. `"mask": "half"`).
    public let allowsShorthand: Bool
    public let summary: String

    public init(_ name: String, _ kind: Kind, required: Bool = false, shorthand: Bool = false, _ summary: String) {
        self.name = name
        self.kind = kind
        self.required = required
        self.allowsShorthand = shorthand
        self.summary = summary
    }

    /// Checks a spec value's JSON kind.
    func accepts(_ value: JSONValue) -> Bool {
        if allowsShorthand, value.stringValue != nil { return true }
        switch kind {
        case .int: return value.intValue != nil
        case .double: return value.doubleValue != nil
        case .string: return value.stringValue != nil
        case .bool: return value.boolValue != nil
        case .intList, .intArray: return value.intArrayValue != nil
        case .layers: return value.arrayValue?.allSatisfy { $0.objectValue != nil } ?? false
        }
    }
}

/// A layer that runs other layers (its ``sublayers``) on part of its input, e.g. the factor-out
/// step of a multi-scale flow. Files store the sublayers in a `layers` subgroup of the
/// container's group, and ``FlowLayer/parameters`` lists the container's own parameters
/// (``ownParameters``) followed by every sublayer's.
public protocol LayerContainer<Scalar>: FlowLayer {
    /// The nested layers, in order.
    var sublayers: [any FlowLayer<Scalar>] { get }
    /// Parameters stored in the container's own group.
    var ownParameters: [Parameter<Scalar>] { get }
    /// Runs data-dependent initialisation of nested layers on `count` rows reaching the container.
    /// - Throws: ``FlowError/outOfMemory(_:)`` or ``FlowError/limitExceeded(_:)`` for scratch.
    func initializeDataDependentSublayers(_ x: UnsafePointer<Scalar>, count: Int) throws
}

extension FlowLayer {
    /// Checks `config` against the declaration: known keys, right kinds, required keys present.
    static func validate(_ config: [String: JSONValue], context: String) throws {
        let known = Set(hyperParameters.map(\.name)).union(["type"])
        for key in config.keys.sorted() where !known.contains(key) {
            throw FlowError.invalidSpec("\(context) (\(typeName)): unknown key \"\(key)\"; known keys: \(known.sorted().joined(separator: ", "))")
        }
        for p in hyperParameters {
            if let v = config[p.name] {
                guard p.accepts(v) else {
                    throw FlowError.invalidSpec("\(context) (\(typeName)): \"\(p.name)\" must be \(p.kindDescription), got \(v)")
                }
            } else if p.required {
                throw FlowError.invalidSpec("\(context) (\(typeName)): missing \"\(p.name)\"")
            }
        }
    }
}

extension HyperParameter {
    var kindDescription: String {
        let base: String
        switch kind {
        case .int: base = "an integer"
        case .double: base = "a number"
        case .string: base = "a string"
        case .bool: base = "true or false"
        case .intList, .intArray: base = "a list of integers"
        case .layers: base = "a list of layer objects"
        }
        return allowsShorthand ? base + " or a string" : base
    }
}

/// Reading typed values from a validated layer config.
extension Dictionary where Key == String, Value == JSONValue {
    package func int(_ key: String, default value: Int) -> Int { self[key]?.intValue ?? value }
    package func double(_ key: String, default value: Double) -> Double { self[key]?.doubleValue ?? value }
    package func string(_ key: String, default value: String) -> String { self[key]?.stringValue ?? value }
    package func bool(_ key: String, default value: Bool) -> Bool { self[key]?.boolValue ?? value }
    package func ints(_ key: String, default value: [Int]) -> [Int] { self[key]?.intArrayValue ?? value }
}
