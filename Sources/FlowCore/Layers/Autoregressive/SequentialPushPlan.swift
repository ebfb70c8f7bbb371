/// The network of a masked autoregressive layer rearranged for its sequential pass (`P⁻¹`), in
/// push form: every unit's pre-activation is a running sum that receives each input's term when
/// that input becomes final.
///
/// Degrees (``AutoregressiveOrder``): the feature at position `p` of the order has degree `p + 1`,
/// context inputs 0, hidden units their own degree, and the outputs of the feature at position
/// `k` degree `k`. A unit of degree `t` reads exactly the units below it of degree `s ≤ t`. With
/// each stage's units (every hidden layer, then the outputs ordered by feature position) sorted
/// by degree, the units a source feeds form a suffix of the stage above: a source block's
/// weights are one dense `sources × suffix` matrix.
///
/// Pass `k` of `P⁻¹`: the hidden units of degree `k` have every term (their sources have degree
/// ≤ `k` and are final), so they are activated layer after layer and pushed into the suffix of
/// the layer above; then the outputs of the feature at position `k` are complete, its transform
/// runs, and the new value is pushed into the first stage's units of degree ≥ `k + 1`. Each
/// connection is used once: one network pass of work for the `D` passes (the cost model in
/// bench/README.md), as products `in` long and `out` wide (few sources, many targets), which a
/// row of one sample runs near peak where a dot product per unit would wait on its chain.
///
/// A unit's sum order is fixed (bias, the context in column order, then its sources by degree
/// and sorted position), and rows never mix: results do not depend on the row count.
///
/// Derived from the network's weights; ``refresh(from:)`` rebuilds it after they change.
final class SequentialPushPlan<T: FlowScalar> {
    /// Features (`D`), context inputs (`C`) and outputs per feature (`P`).
    let dimension: Int
    let contextSize: Int
    let outputsPerFeature: Int
    /// Units per stage: each hidden layer's width, then `D·P` outputs.
    let targets: [Int]
    /// Where each stage starts in a row of the running sums (``totalTargets`` per row).
    let stageOffsets: [Int]
    let totalTargets: Int
    /// Where the outputs start in a row of sums.
    private let outputOffset: Int
    /// Per stage and degree `k` in `0...D`: the first sorted unit of degree ≥ `k`.
    let suffixStarts: [[Int]]
    /// Per stage: sorted position → the network's unit (hidden) or output column.
    private let units: [[Int]]
    /// Features in the autoregressive order.
    private let orderedFeatures: [Int]
    /// Packed weights and biases in one allocation.
    private let storage: UnsafeMutablePointer<T>
    private let storageCount: Int
    /// Per stage, the sorted biases (the stages' biases lead the storage, in a row of sums'
    /// layout).
    private let biasOffsets: [Int]
    /// The context's weights: `C × targets[0]`.
    private let contextOffset: Int
    /// Per order position `p < D − 1`: the feature's weights into the first stage's suffix of
    /// degree `p + 1`.
    private let inputOffsets: [Int]
    /// Per stage `s ≥ 1` and degree `k`: the weights of stage `s − 1`'s units of degree `k` into
    /// stage `s`'s suffix of degree `k` (index `s − 1`).
    private let blockOffsets: [[Int]]

    /// One push: `sources` running values from `source` (an offset in a row of sums) times the
    /// `sources × targets` weights at `weights` (an offset in the storage), added to `targets`
    /// values from `target`.
    struct Push {
        var source: Int, sources: Int, weights: Int, target: Int, targets: Int
    }
    /// Per degree `k`, then hidden layer `l`: the push of layer `l`'s units of degree `k`
    /// (`k·L + l`); and per order position `p < D − 1`, the push of that feature. Fixed after
    /// init and read without bounds checks in the pass.
    private let hiddenPushes: UnsafeMutablePointer<Push>
    private let inputPushes: UnsafeMutablePointer<Push>
    private let hiddenLayers: Int

    /// - Throws: ``FlowError/limitExceeded(_:)`` or ``FlowError/outOfMemory(_:)`` from the
    ///   ``MemoryBudget`` (the plan holds about two copies of the network's weights).
    /// - Throws: ``FlowError/limitExceeded(_:)`` or ``FlowError/outOfMemory(_:)`` from the
    ///   ``MemoryBudget`` (the plan holds about one copy of the network's weights).
    init(net: MLP<T>, structure: AutoregressiveOrder, featureColumns: [[Int]]) throws {
        let d = structure.dimension
        dimension = d
        contextSize = net.inFeatures - d
        let p = featureColumns.first?.count ?? 0
        outputsPerFeature = p
        let ordered = (0..<d).sorted { structure.order[$0] < structure.order[$1] }
        orderedFeatures = ordered
        // Each stage's units sorted by (degree, index), and their degrees.
        var units: [[Int]] = [], degrees: [[Int]] = []
        for layerDegrees in structure.hiddenDegrees {
            let sorted = layerDegrees.indices.sorted { (layerDegrees[$0], $0) < (layerDegrees[$1], $1) }
            units.append(sorted)
            degrees.append(sorted.map { layerDegrees[$0] })
        }
        units.append(ordered.flatMap { featureColumns[$0] })
        degrees.append((0..<d).flatMap { k in [Int](repeating: k, count: p) })
        self.units = units
        let targets = units.map(\.count)
        let suffixStarts = degrees.map { sortedDegrees in
            (0...d).map { k in sortedDegrees.firstIndex { $0 >= k } ?? sortedDegrees.count }
        }
        self.targets = targets
        self.suffixStarts = suffixStarts
        var offsets: [Int] = [], running = 0
        for n in targets { offsets.append(running); running += n }
        stageOffsets = offsets
        totalTargets = running
        outputOffset = offsets[targets.count - 1]

        var cursor = 0
        func reserve(_ n: Int) -> Int { defer { cursor += n }; return cursor }
        biasOffsets = targets.map { reserve($0) }
        contextOffset = reserve((net.inFeatures - d) * targets[0])
        inputOffsets = (0..<Swift.max(d - 1, 0)).map { position in
            reserve(targets[0] - suffixStarts[0][position + 1])
        }
        var blocks: [[Int]] = []
        for s in 1..<targets.count {
            blocks.append((0..<d).map { k in
                let sources = suffixStarts[s - 1][k + 1] - suffixStarts[s - 1][k]
                return reserve(sources * (targets[s] - suffixStarts[s][k]))
            })
        }
        blockOffsets = blocks
        let layers = targets.count - 1
        hiddenLayers = layers
        var hidden: [Push] = []
        for k in 0..<d {
            for l in 0..<layers {
                let first = suffixStarts[l][k], start = suffixStarts[l + 1][k]
                hidden.append(Push(source: offsets[l] + first, sources: suffixStarts[l][k + 1] - first,
                                   weights: blocks[l][k], target: offsets[l + 1] + start, targets: targets[l + 1] - start))
            }
        }
        let inputs = inputOffsets.enumerated().map { position, offset in
            let start = suffixStarts[0][position + 1]
            return Push(source: 0, sources: 1, weights: offset, target: start, targets: targets[0] - start)
        }
        storageCount = Swift.max(cursor, 1)
        storage = try MemoryBudget.allocate(T.self, count: storageCount, "the sequential plan of a masked network")
        // Nothing throws from here on: the small push tables are plain allocations.
        hiddenPushes = .allocate(capacity: Swift.max(hidden.count, 1))
        hiddenPushes.initialize(from: hidden, count: hidden.count)
        inputPushes = .allocate(capacity: Swift.max(inputs.count, 1))
        inputPushes.initialize(from: inputs, count: inputs.count)
        refresh(from: net)
    }

    deinit {
        MemoryBudget.free(storage)
        hiddenPushes.deallocate()
        inputPushes.deallocate()
    }

    /// Repacks every block from the network's current (masked) weights.
    func refresh(from net: MLP<T>) {
        let d = dimension
        for s in 0..<targets.count {
            let b = net.biases[s].values
            for (q, unit) in units[s].enumerated() { storage[biasOffsets[s] + q] = b[unit] }
        }
        // The first stage: the context columns (after the D features), then each feature.
        do {
            let w = net.weights[0].values, fanIn = net.widths[0], n = targets[0]
            for j in 0..<contextSize {
                for (q, unit) in units[0].enumerated() { storage[contextOffset + j * n + q] = w[unit * fanIn + d + j] }
            }
            for (position, offset) in inputOffsets.enumerated() {
                let f = orderedFeatures[position], start = suffixStarts[0][position + 1]
                for q in start..<n { storage[offset + q - start] = w[units[0][q] * fanIn + f] }
            }
        }
        for s in 1..<targets.count {
            let w = net.weights[s].values, fanIn = net.widths[s], n = targets[s]
            for k in 0..<d {
                let sources = suffixStarts[s - 1][k]..<suffixStarts[s - 1][k + 1], start = suffixStarts[s][k]
                let packed = storage + blockOffsets[s - 1][k], width = n - start
                for (i, source) in sources.enumerated() {
                    let input = units[s - 1][source]
                    for q in start..<n { packed[i * width + q - start] = w[units[s][q] * fanIn + input] }
                }
            }
        }
    }

    /// Rows per block of the sequential pass: the running sums of a block stay in L1 across the
    /// `D` passes.
    static var blockRows: Int { 32 }

    /// Scratch of a sequential pass over `rows` rows: one block's running sums and a column.
    func workspaceBytes(rows: Int) -> Int {
        let n = Swift.min(rows, Self.blockRows)
        return Arena.bytes(T.self, n * totalTargets) + Arena.bytes(T.self, n)
    }

    /// Starts `rows` rows of running sums (`rows × totalTargets` at `sums`): every unit's bias,
    /// plus the context's terms (`rows × C` at `context`; nil: zeros).
    @inline(__always)
    func begin(_ sums: UnsafeMutablePointer<T>, rows: Int, context: UnsafePointer<T>?) {
        // The biases lead the storage, stage after stage: a row of sums' layout.
        let stride = totalTargets
        for r in 0..<rows { (sums + r * stride).update(from: storage, count: stride) }
        guard contextSize > 0, let context else { return }
        T.accumulateLayer(context, ldx: contextSize, rows: rows, inFeatures: contextSize,
                          packedWeight: storage + contextOffset, outFeatures: targets[0], into: sums, ldy: stride)
    }

    /// Pass `k`'s hidden work: pushes each hidden layer's units of degree `k`, activated, into
    /// the stage above (ReLU inside the push; other activations in place first: a completed
    /// unit is read by this push only).
    @inline(__always)
    func completeHidden(degree k: Int, _ sums: UnsafeMutablePointer<T>, rows: Int, activation: Activation) {
        let stride = totalTargets, relu = activation == .relu
        for l in 0..<hiddenLayers {
            let push = hiddenPushes[k * hiddenLayers + l], n = push.sources
            guard n > 0 else { continue }
            let block = sums + push.source
            if !relu { for r in 0..<rows { activation.apply(block + r * stride, count: n) } }
            T.accumulateLayer(block, ldx: stride, rows: rows, inFeatures: n, packedWeight: storage + push.weights,
                              outFeatures: push.targets, into: sums + push.target, ldy: stride, relu: relu)
        }
    }

    /// The parameters of the feature at position `k` (`P` values per row, rows ``totalTargets``
    /// apart), complete after ``completeHidden(degree:_:rows:activation:)`` of pass `k`.
    @inline(__always)
    func parameters(position k: Int, _ sums: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<T> {
        sums + outputOffset + k * outputsPerFeature
    }

    /// Pushes the final values of the feature at position `p` (`rows` values, `ldv` apart) into
    /// the first stage's units of degree ≥ `p + 1`.
    @inline(__always)
    func pushInput(position p: Int, _ values: UnsafePointer<T>, ldv: Int, _ sums: UnsafeMutablePointer<T>, rows: Int) {
        guard p < dimension - 1 else { return }
        let push = inputPushes[p]
        T.accumulateLayer(values, ldx: ldv, rows: rows, inFeatures: 1, packedWeight: storage + push.weights,
                          outFeatures: push.targets, into: sums + push.target, ldy: totalTargets)
    }
}
