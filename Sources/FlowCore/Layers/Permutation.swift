/// A fixed permutation of features: `z[i] = x[indices[i]]`, log|det J| = 0.
///
/// Spec forms: `{"kind": "reverse"}`, `{"kind": "random"}` (drawn from the flow's seed by
/// Fisher–Yates over Philox), or `{"indices": [...]}`. Files always store the explicit
/// `indices`.
public final class Permutation<Scalar: FlowScalar>: FlowLayer {
    public static var typeName: String { "permutation" }
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("indices", .intArray, "z[i] = x[indices[i]]; a permutation of 0..<D"),
            HyperParameter("kind", .string, "\"reverse\" or \"random\" when indices are not given"),
        ]
    }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    let indices: [Int]
    let inverseIndices: [Int]

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        let d = eventShape.reduce(1, *)
        if let given = config["indices"]?.intArrayValue {
            guard given.count == d else {
                throw FlowError.invalidSpec("permutation: \(given.count) indices for \(d) features")
            }
            var seen = [Bool](repeating: false, count: d)
            for i in given {
                guard i >= 0, i < d, !seen[i] else {
                    throw FlowError.invalidSpec("permutation: indices are not a permutation of 0..<\(d) (at \(i))")
                }
                seen[i] = true
            }
            indices = given
        } else {
            switch config.string("kind", default: "reverse") {
            case "reverse": indices = Array((0..<d).reversed())
            case "random":
                var rng = PhiloxStream(seed: seed, row: 0, stream: RandomStream.permutation)
                indices = rng.permutation(d)
            case let other:
                throw FlowError.invalidSpec("permutation: unknown kind \"\(other)\" (use \"reverse\", \"random\" or give indices)")
            }
        }
        var inv = [Int](repeating: 0, count: d)
        for (i, j) in indices.enumerated() { inv[j] = i }
        inverseIndices = inv
        inputShape = eventShape
    }

    public var config: [String: JSONValue] { ["type": .string(Self.typeName), "indices": JSONValue(indices)] }
    public var parameters: [Parameter<Scalar>] { [] }
    public func workspaceBytes(count: Int) -> Int { Arena.bytes(Scalar.self, indices.count) }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        gather(x, count: count, by: indices, arena: &arena)
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        gather(z, count: count, by: inverseIndices, arena: &arena)
    }

    @inline(__always)
    private func gather(_ x: UnsafeMutablePointer<Scalar>, count: Int, by map: [Int], arena: inout Arena) {
        let d = map.count
        let tmp = arena.take(Scalar.self, d)
        map.withUnsafeBufferPointer { idx in
            for r in 0..<count {
                let row = x + r * d
                tmp.update(from: row, count: d)
                for i in 0..<d { row[i] = tmp[idx[i]] }
            }
        }
    }
}

extension Permutation {
    public func backwardWorkspaceBytes(count: Int) -> Int { Arena.bytes(Scalar.self, indices.count) }

    /// `z[i] = x[p[i]]` ⇒ `∂L/∂x[p[i]] = ∂L/∂z[i]`: the inverse permutation applied to the gradient.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                         logDetGradient w: UnsafePointer<Scalar>, arena: inout Arena) {
        gather(g, count: count, by: inverseIndices, arena: &arena)
    }
}
