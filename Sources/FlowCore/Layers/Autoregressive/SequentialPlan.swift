/// The network of a masked autoregressive layer rearranged for its sequential pass (`P⁻¹`): the
/// hidden units of each layer sorted by degree, and the weights of every (layer, degree) block
/// and of every feature's outputs packed on their own.
///
/// Pass `k` of `P⁻¹` needs the outputs of the feature at position `k` of the order, which see
/// the hidden units of degree ≤ `k`. Units of degree < `k` were computed by earlier passes and do
/// not change (their inputs are final), units of degree > `k` are not needed yet: so pass `k`
/// computes only the units of degree `k`, layer after layer, then that feature's outputs. Over
/// the `D` passes every unit and output is computed once — one network pass of work instead of
/// `D` (the cost model in bench/README.md) — as `D·(L + 1)` small products.
///
/// Derived from the network's weights; ``refresh(from:)`` rebuilds it after they change.
final class SequentialPlan<T: FlowScalar> {
    /// Per hidden layer: sorted position → original unit index.
    let permutation: [[Int]]
    /// Per hidden layer and degree `k`: the sorted positions of the units of degree `k`.
    let ranges: [[Range<Int>]]
    /// Every packed block in one allocation: per hidden layer and degree, weights (`in × n`,
    /// inputs in the layer below's sorted order), biases (`n`), then the same weights untransposed
    /// (`n × in`); per feature, likewise over the last hidden layer's sorted units (or the inputs
    /// without hidden layers) with `P` outputs.
    private let storage: UnsafeMutablePointer<T>
    private let storageCount: Int
    /// Start of the weights of hidden block `l·D + k` and of feature `f`'s output block.
    let hiddenOffsets: [Int]
    let outputOffsets: [Int]
    /// Per hidden block `l·D + k`: the first sorted position and the number of its units.
    let blockStarts: [Int]
    let blockCounts: [Int]
    let featureColumns: [[Int]]
    /// The network's widths `[in, hidden…, out]`.
    let widths: [Int]
    /// Hidden units of all layers, and where each layer's start among them.
    let hiddenUnits: Int
    let layerOffsets: [Int]
    /// Features (`D`) and outputs per feature (`P`).
    let dimension: Int
    let outputsPerFeature: Int

    /// - Throws: ``FlowError/limitExceeded(_:)`` or ``FlowError/outOfMemory(_:)`` from the
    ///   ``MemoryBudget`` (the plan holds about two copies of the network's weights).
    init(net: MLP<T>, structure: AutoregressiveOrder, featureColumns: [[Int]]) throws {
        let d = structure.dimension
        widths = net.widths
        self.featureColumns = featureColumns
        let hiddenWidths = Array(net.widths.dropFirst().dropLast())
        hiddenUnits = hiddenWidths.reduce(0, +)
        var offsets: [Int] = [], total = 0
        for w in hiddenWidths { offsets.append(total); total += w }
        layerOffsets = offsets
        dimension = d
        outputsPerFeature = featureColumns.first?.count ?? 0
        var permutation: [[Int]] = [], ranges: [[Range<Int>]] = []
        for degrees in structure.hiddenDegrees {
            let order = degrees.indices.sorted { (degrees[$0], $0) < (degrees[$1], $1) }
            permutation.append(order)
            var layerRanges: [Range<Int>] = []
            var start = 0
            for k in 0..<Swift.max(d, 1) {
                var end = start
                while end < order.count, degrees[order[end]] == k { end += 1 }
                layerRanges.append(start..<end)
                start = end
            }
            ranges.append(layerRanges)
        }
        self.permutation = permutation
        self.ranges = ranges
        var cursor = 0, hidden: [Int] = [], outputs: [Int] = []
        for l in 0..<hiddenWidths.count {
            for range in ranges[l] {
                hidden.append(cursor)
                cursor += (2 * net.widths[l] + 1) * range.count
            }
        }
        for columns in featureColumns {
            outputs.append(cursor)
            cursor += (2 * net.widths[hiddenWidths.count] + 1) * columns.count
        }
        hiddenOffsets = hidden
        outputOffsets = outputs
        blockStarts = ranges.flatMap { $0.map(\.lowerBound) }
        blockCounts = ranges.flatMap { $0.map(\.count) }
        storageCount = Swift.max(cursor, 1)
        storage = try MemoryBudget.allocate(T.self, count: storageCount, "the sequential plan of a masked network")
        refresh(from: net)
    }

    deinit { MemoryBudget.free(storage) }

    /// Hidden layer `l`'s units of degree `k`: packed weights (`in × n`), biases (`n`) and the
    /// untransposed weights (`n × in`, for the narrow-output kernel).
    @inline(__always) func hiddenBlock(_ l: Int, _ k: Int)
        -> (weights: UnsafePointer<T>, biases: UnsafePointer<T>, rows: UnsafePointer<T>)
    {
        let start = storage + hiddenOffsets[l * dimension + k], n = blockCounts[l * dimension + k]
        return (UnsafePointer(start), UnsafePointer(start + widths[l] * n), UnsafePointer(start + (widths[l] + 1) * n))
    }

    /// Feature `f`'s outputs: packed weights (`width × P`), biases (`P`), untransposed weights.
    @inline(__always) func outputBlock(_ f: Int) -> (weights: UnsafePointer<T>, biases: UnsafePointer<T>, rows: UnsafePointer<T>) {
        let start = storage + outputOffsets[f], fanIn = widths[widths.count - 2], n = outputsPerFeature
        return (UnsafePointer(start), UnsafePointer(start + fanIn * n), UnsafePointer(start + (fanIn + 1) * n))
    }

    /// Repacks every block from the network's current (masked) weights.
    func refresh(from net: MLP<T>) {
        let hiddenLayers = permutation.count
        // Column `q` of layer `l`'s input in sorted order → the original input index.
        func inputIndex(_ l: Int, _ q: Int) -> Int { l == 0 ? q : permutation[l - 1][q] }
        for l in 0..<hiddenLayers {
            let w = net.weights[l].values, b = net.biases[l].values, fanIn = widths[l]
            for (k, range) in ranges[l].enumerated() {
                let packed = storage + hiddenOffsets[l * dimension + k], n = range.count
                for (j, position) in range.enumerated() {
                    let unit = permutation[l][position]
                    for q in 0..<fanIn {
                        let value = w[unit * fanIn + inputIndex(l, q)]
                        packed[q * n + j] = value
                        packed[(fanIn + 1) * n + j * fanIn + q] = value
                    }
                    packed[fanIn * n + j] = b[unit]
                }
            }
        }
        let last = hiddenLayers, fanIn = widths[last]
        let w = net.weights[last].values, b = net.biases[last].values
        for (f, columns) in featureColumns.enumerated() {
            let packed = storage + outputOffsets[f], n = columns.count
            for (j, c) in columns.enumerated() {
                for q in 0..<fanIn {
                    let value = w[c * fanIn + inputIndex(last, q)]
                    packed[q * n + j] = value
                    packed[(fanIn + 1) * n + j * fanIn + q] = value
                }
                packed[fanIn * n + j] = b[c]
            }
        }
    }

    /// Scratch of a sequential pass over `rows` rows: the hidden activations.
    func workspaceBytes(rows: Int) -> Int { Arena.bytes(T.self, rows * hiddenUnits) }
}
