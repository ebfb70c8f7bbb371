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
    /// Per hidden layer and degree: packed weights (`in × n`, inputs in the layer below's sorted
    /// order) and biases (`n`).
    private(set) var hiddenWeights: [[[T]]]
    private(set) var hiddenBiases: [[[T]]]
    /// Per feature: packed weights (`width × P` over the last hidden layer's sorted units, or the
    /// inputs without hidden layers) and biases (`P`) of its output columns.
    private(set) var outputWeights: [[T]]
    private(set) var outputBiases: [[T]]
    let featureColumns: [[Int]]
    /// The network's widths `[in, hidden…, out]`.
    let widths: [Int]
    /// Hidden units of all layers, and where each layer's start among them.
    let hiddenUnits: Int
    let hiddenOffsets: [Int]

    init(net: MLP<T>, structure: AutoregressiveOrder, featureColumns: [[Int]]) {
        let d = structure.dimension
        widths = net.widths
        self.featureColumns = featureColumns
        let hiddenWidths = Array(net.widths.dropFirst().dropLast())
        hiddenUnits = hiddenWidths.reduce(0, +)
        var offsets: [Int] = [], total = 0
        for w in hiddenWidths { offsets.append(total); total += w }
        hiddenOffsets = offsets
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
        hiddenWeights = []
        hiddenBiases = []
        outputWeights = []
        outputBiases = []
        refresh(from: net)
    }

    /// Repacks every block from the network's current (masked) weights.
    func refresh(from net: MLP<T>) {
        let hiddenLayers = permutation.count
        // Column `q` of layer `l`'s input in sorted order → the original input index.
        func inputIndex(_ l: Int, _ q: Int) -> Int { l == 0 ? q : permutation[l - 1][q] }
        hiddenWeights = (0..<hiddenLayers).map { l in
            let w = net.weights[l].values, fanIn = widths[l]
            return ranges[l].map { range in
                var packed = [T](repeating: 0, count: fanIn * range.count)
                for (j, position) in range.enumerated() {
                    let unit = permutation[l][position]
                    for q in 0..<fanIn { packed[q * range.count + j] = w[unit * fanIn + inputIndex(l, q)] }
                }
                return packed
            }
        }
        hiddenBiases = (0..<hiddenLayers).map { l in
            ranges[l].map { range in range.map { net.biases[l].values[permutation[l][$0]] } }
        }
        let last = hiddenLayers, fanIn = widths[last]
        let w = net.weights[last].values
        outputWeights = featureColumns.map { columns in
            var packed = [T](repeating: 0, count: fanIn * columns.count)
            for (j, c) in columns.enumerated() {
                for q in 0..<fanIn { packed[q * columns.count + j] = w[c * fanIn + inputIndex(last, q)] }
            }
            return packed
        }
        outputBiases = featureColumns.map { columns in columns.map { net.biases[last].values[$0] } }
    }

    /// Scratch of a sequential pass over `rows` rows: the hidden activations.
    func workspaceBytes(rows: Int) -> Int { Arena.bytes(T.self, rows * hiddenUnits) }
}
