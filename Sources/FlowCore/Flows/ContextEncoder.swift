/// The context front end of a conditional flow `p(x | c)`: the caller's context rows (``inputSize``
/// scalars each) are standardised with stored constants (as sbi z-scores its conditioning data)
/// and optionally embedded by an MLP shared by all layers; every ``ConditionalLayer`` reads the
/// result (``outputSize`` scalars per row).
///
///     e = embed((c − mean) / scale)        (no standardisation: mean 0, scale 1; no embedding: identity)
///
/// The embedding network's layers all start from PyTorch's default initialisation (none at zero:
/// the conditioners' last layers already make a new flow the identity). Its parameters follow
/// the layers' and the base's in ``NormalizingFlow/parameters``.
///
/// Spec (`"context"` of the flow spec): `{"size": C, "mean": [C numbers], "scale": [C positive
/// numbers], "embedding": {"hidden": [...], "activation": "relu", "features": E}}`; only `size`
/// is required.
public final class ContextEncoder<Scalar: FlowScalar> {
    /// Context scalars per row the caller gives.
    public let inputSize: Int
    /// Per context feature, the standardisation's shift and scale (nil: none).
    public let mean: [Double]?
    public let scale: [Double]?
    /// The embedding network (nil: none).
    let embedding: MLP<Scalar>?

    /// Context scalars per row the conditional layers read.
    public var outputSize: Int { embedding?.outFeatures ?? inputSize }

    /// The embedding network's parameters (empty without one).
    public var parameters: [Parameter<Scalar>] { embedding?.parameters ?? [] }

    /// - Throws: ``FlowError/invalidSpec(_:)`` naming the bad key; ``FlowError/limitExceeded(_:)``.
    public init(config: [String: JSONValue], seed: UInt64) throws {
        let known: Set<String> = ["size", "mean", "scale", "embedding"]
        for key in config.keys.sorted() where !known.contains(key) {
            throw FlowError.invalidSpec("context: unknown key \"\(key)\" (known: \(known.sorted().joined(separator: ", ")))")
        }
        guard let size = config["size"]?.intValue, size >= 1, size <= Limits.maxContextSize else {
            throw FlowError.invalidSpec("context: \"size\" must be an integer in 1...\(Limits.maxContextSize)")
        }
        inputSize = size
        func vector(_ key: String) throws -> [Double]? {
            guard let value = config[key] else { return nil }
            guard let list = value.arrayValue?.compactMap(\.doubleValue), list.count == size,
                  list.allSatisfy({ $0.isFinite && Scalar($0).isFinite }) else {
                throw FlowError.invalidSpec("context: \"\(key)\" must hold \(size) finite numbers")
            }
            return list
        }
        mean = try vector("mean")
        scale = try vector("scale")
        if let scale, !scale.allSatisfy({ $0 > 0 }) {
            throw FlowError.invalidSpec("context: every \"scale\" must be positive")
        }
        if let spec = config["embedding"] {
            guard let object = spec.objectValue else { throw FlowError.invalidSpec("context: \"embedding\" must be an object") }
            for key in object.keys.sorted() where !["hidden", "activation", "features"].contains(key) {
                throw FlowError.invalidSpec("context embedding: unknown key \"\(key)\" (known: activation, features, hidden)")
            }
            guard let features = object["features"]?.intValue, features >= 1, features <= Limits.maxContextSize else {
                throw FlowError.invalidSpec("context embedding: \"features\" must be an integer in 1...\(Limits.maxContextSize)")
            }
            let (hidden, activation) = try MLP<Scalar>.settings(object, context: "context embedding")
            let widths = [size] + hidden + [features]
            _ = try MLP<Scalar>.checkedSize(widths: widths, context: "context embedding")
            embedding = try MLP(widths: widths, activation: activation, seed: seed, row: 1 << 40, zeroLastLayer: false)
        } else {
            embedding = nil
        }
    }

    /// The resolved spec object.
    public var config: [String: JSONValue] {
        var c: [String: JSONValue] = ["size": .number(Double(inputSize))]
        if let mean { c["mean"] = .array(mean.map { .number($0) }) }
        if let scale { c["scale"] = .array(scale.map { .number($0) }) }
        if let embedding {
            c["embedding"] = .object([
                "hidden": JSONValue(Array(embedding.widths.dropFirst().dropLast())),
                "activation": .string(embedding.activation.rawValue),
                "features": .number(Double(embedding.outFeatures)),
            ])
        }
        return c
    }

    /// Refreshes the embedding's packed weights.
    public func parametersDidChange() { embedding?.repack() }

    /// Scratch of ``encode(_:rows:into:arena:)`` over `rows` rows.
    func workspaceBytes(rows: Int) -> Int {
        Arena.bytes(Scalar.self, rows * inputSize) + (embedding?.workspaceBytes(rows: rows) ?? 0)
    }

    /// `(c − mean)/scale` of `rows` rows into `s`.
    @inline(__always)
    private func standardize(_ c: UnsafePointer<Scalar>?, rows: Int, into s: UnsafeMutablePointer<Scalar>) {
        let n = rows * inputSize
        guard let c else { return s.update(repeating: 0, count: n) }
        s.update(from: c, count: n)
        guard mean != nil || scale != nil else { return }
        for r in 0..<rows {
            for j in 0..<inputSize {
                let v = (Double(s[r * inputSize + j]) - (mean?[j] ?? 0)) / (scale?[j] ?? 1)
                s[r * inputSize + j] = Scalar(v)
            }
        }
    }

    /// The encoded context of `rows` rows of `c` (nil: zeros) into `e` (`rows × outputSize`).
    func encode(_ c: UnsafePointer<Scalar>?, rows: Int, into e: UnsafeMutablePointer<Scalar>, arena: inout Arena) {
        guard let embedding else { return standardize(c, rows: rows, into: e) }
        let s = arena.take(Scalar.self, rows * inputSize)
        standardize(c, rows: rows, into: s)
        embedding(s, ldx: inputSize, rows: rows, into: e, arena: &arena)
    }

    /// Scratch of a training pass over `rows` rows (``encodeRecording`` and ``backward``).
    func trainingBytes(rows: Int) -> Int {
        guard let embedding else { return 0 }
        return Arena.bytes(Scalar.self, rows * inputSize) + Arena.bytes(Scalar.self, embedding.tapeCount(rows: rows))
            + Swift.max(embedding.workspaceBytes(rows: rows), embedding.backwardWorkspaceBytes(rows: rows))
    }

    /// A training pass's encoding: as ``encode(_:rows:into:arena:)``, keeping in the arena what
    /// ``backward(rows:recorded:outputGradient:arena:)`` needs. Returns it (nil without an
    /// embedding: nothing to learn).
    func encodeRecording(_ c: UnsafePointer<Scalar>?, rows: Int, into e: UnsafeMutablePointer<Scalar>,
                         arena: inout Arena) -> (input: UnsafePointer<Scalar>, tape: UnsafePointer<Scalar>)? {
        guard let embedding else { standardize(c, rows: rows, into: e); return nil }
        let s = arena.take(Scalar.self, rows * inputSize)
        standardize(c, rows: rows, into: s)
        let tape = arena.take(Scalar.self, embedding.tapeCount(rows: rows))
        embedding.forwardRecording(s, ldx: inputSize, rows: rows, into: e, tape: tape)
        return (UnsafePointer(s), UnsafePointer(tape))
    }

    /// Adds the embedding's parameter gradients for `∂L/∂e` (`rows × outputSize`; destroyed).
    func backward(rows: Int, recorded: (input: UnsafePointer<Scalar>, tape: UnsafePointer<Scalar>)?,
                  outputGradient: UnsafeMutablePointer<Scalar>, arena: inout Arena) {
        guard let embedding, let recorded else { return }
        embedding.backward(recorded.input, ldx: inputSize, rows: rows, tape: recorded.tape, outputGradient: outputGradient,
                           inputGradient: nil, arena: &arena)
    }
}
