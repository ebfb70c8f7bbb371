/// The connectivity of a MADE network (Germain et al., "MADE: Masked Autoencoder for
/// Distribution Estimation", ICML 2015): an order over the features and a degree per hidden
/// unit, from which the masks follow.
///
/// Feature `i` has degree `order[i] + 1` (`order` is each feature's 0-based position in the
/// autoregressive order); context inputs have degree 0. A hidden unit of degree `k` sees the
/// units of the layer below with degree ≤ `k`; an output that drives feature `i` sees the units
/// of the last hidden layer (or the inputs) with degree < `order[i] + 1`. So output `i` depends
/// exactly on the features before `i` in the order (and on the context), and
/// `∂θ_i/∂x_j = 0` unless `order[j] < order[i]`.
struct AutoregressiveOrder: Equatable {
    /// `order[i]`: feature `i`'s position in the order; a permutation of `0..<D`.
    let order: [Int]
    /// Per hidden layer, the degree (in `0..<D`) of each unit.
    let hiddenDegrees: [[Int]]

    var dimension: Int { order.count }

    /// Resolves a spec's `order` (`"natural"`, `"reversed"`, `"random"` or an explicit
    /// permutation of `0..<D`) and `hidden_degrees` (all hidden layers' degrees concatenated).
    /// Without `hidden_degrees`, unit `k` of every layer gets the cyclic degree of nflows' MADE,
    /// `k mod max(1, D−1) + min(1, D−1)`, or with a context `k mod D`: units of degree 0 see only
    /// the context, so that the first feature in the order depends on it too.
    init(order spec: JSONValue?, hiddenDegrees degreesSpec: [Int]?, hidden: [Int], dimension d: Int,
         contextFeatures: Int = 0, seed: UInt64, context: String) throws {
        switch spec {
        case nil, .string("natural")?: order = Array(0..<d)
        case .string("reversed")?: order = Array((0..<d).reversed())
        case .string("random")?:
            var rng = PhiloxStream(seed: seed, row: 1, stream: RandomStream.permutation)
            order = rng.permutation(d)
        case .string(let other)?:
            throw FlowError.invalidSpec("\(context): unknown order \"\(other)\" (use \"natural\", \"reversed\", \"random\" or a permutation)")
        case let value?:
            guard let list = value.intArrayValue, list.count == d, Set(list) == Set(0..<d) else {
                throw FlowError.invalidSpec("\(context): order must be a permutation of 0..<\(d)")
            }
            order = list
        }
        if let given = degreesSpec {
            guard given.count == hidden.reduce(0, +) else {
                throw FlowError.invalidSpec("\(context): hidden_degrees has \(given.count) entries for \(hidden.reduce(0, +)) hidden units")
            }
            guard given.allSatisfy({ $0 >= 0 && $0 < Swift.max(d, 1) }) else {
                throw FlowError.invalidSpec("\(context): hidden_degrees must lie in 0..<\(d)")
            }
            var degrees: [[Int]] = [], start = 0
            for w in hidden {
                degrees.append(Array(given[start..<(start + w)]))
                start += w
            }
            hiddenDegrees = degrees
        } else if contextFeatures > 0 {
            hiddenDegrees = hidden.map { w in (0..<w).map { $0 % Swift.max(d, 1) } }
        } else {
            let span = Swift.max(1, d - 1), low = Swift.min(1, d - 1)
            hiddenDegrees = hidden.map { w in (0..<w).map { $0 % span + low } }
        }
    }

    /// The masks of a network `[D + C, hidden…, outputs]` (`C` context inputs after the
    /// features; `outputFeature(c)` is the feature output column `c` drives), one 0/1 per
    /// weight entry (`[out, in]` row-major) per layer.
    func masks<T: FlowScalar>(contextSize: Int, outputs: Int, outputFeature: (Int) -> Int) -> [[T]] {
        let inputDegrees = order.map { $0 + 1 } + [Int](repeating: 0, count: contextSize)
        let layers = [inputDegrees] + hiddenDegrees
        var masks: [[T]] = []
        for l in 0..<(layers.count - 1) {
            let below = layers[l], above = layers[l + 1]
            masks.append(above.flatMap { k in below.map { $0 <= k ? 1 : 0 } })
        }
        let last = layers[layers.count - 1]
        masks.append((0..<outputs).flatMap { c -> [T] in
            let degree = order[outputFeature(c)] + 1
            return last.map { $0 < degree ? 1 : 0 }
        })
        return masks
    }

    /// The mask of a residual MADE's `H → H` layers (``ResidualMADE``; one hidden layer of
    /// degrees): unit `k` sees unit `j` when `degree(j) ≤ degree(k)`, `[H, H]` row-major.
    func residualMask<T: FlowScalar>() -> [T] {
        let degrees = hiddenDegrees.first ?? []
        return degrees.flatMap { k in degrees.map { $0 <= k ? 1 : 0 } }
    }
}
