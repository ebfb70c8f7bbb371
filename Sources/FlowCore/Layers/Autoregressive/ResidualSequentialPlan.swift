/// A ``ResidualMADE`` rearranged for the sequential pass (`P⁻¹`) of a masked autoregressive
/// layer: the hidden units sorted by degree (all of the network's hidden layers share one
/// degree per unit), and per degree `k` the weights of the units of degree `k` in every masked
/// layer, per feature the weights of its outputs, each packed on its own.
///
/// Pass `k` needs the outputs of the feature at position `k` of the order, which see the units
/// of degree ≤ `k` of the last stream `s_N`. A unit of degree `k` (of `s₀`, of a block's hidden
/// layer, of every `s_b`) depends on the features before position `k` and the context only, so
/// it is final from pass `k` on: pass `k` computes the units of degree `k` through the first
/// layer and the `N` blocks (`s` updated in place; `act(s_b)` and `act(a)` kept per block for
/// later passes), then that feature's outputs. The blocks' and the output layer's products read
/// only the units of degree ≤ `k`, a prefix in sorted order, so the `D` passes do at most one
/// network pass of work (the `H × H` products about half of it). The context terms depend on
/// the context only: they are computed once per block of rows, for all units.
///
/// Derived from the network's weights; ``refresh(from:)`` rebuilds it after they change.
final class ResidualSequentialPlan<T: FlowScalar> {
    /// Sorted position → unit index.
    let permutation: [Int]
    /// Per degree `k`: the sorted positions of the units of degree `k`.
    let ranges: [Range<Int>]
    let featureColumns: [[Int]]
    /// Each feature's position in the order.
    let order: [Int]
    /// Features `D`, context inputs `E`, width `H`, blocks `N`, outputs per feature `P`.
    let dimension: Int
    let contextFeatures: Int
    let width: Int
    let blocks: Int
    let outputsPerFeature: Int
    let activation: Activation
    /// Every packed block in one allocation, each laid out as weights (`in × n`, hidden inputs
    /// in sorted order), biases (`n`), then the same weights untransposed (`n × in`, for the
    /// narrow-output kernel).
    private let storage: UnsafeMutablePointer<T>
    /// Where each packed block starts: the first layer's per degree, the blocks' first and
    /// second layers per (block, degree) at `b·D + k`, the context layers (the first one's, then
    /// each block's; all `H` units, sorted), the outputs per feature.
    private let initialOffsets: [Int]
    private let firstOffsets: [Int]
    private let secondOffsets: [Int]
    private let contextOffsets: [Int]
    private let outputOffsets: [Int]

    init(structure: AutoregressiveOrder, featureColumns: [[Int]], width h: Int, blocks: Int, contextFeatures e: Int,
         activation: Activation) throws {
        let d = structure.dimension
        dimension = d
        contextFeatures = e
        width = h
        self.blocks = blocks
        self.activation = activation
        self.featureColumns = featureColumns
        order = structure.order
        outputsPerFeature = featureColumns.first?.count ?? 0
        let degrees = structure.hiddenDegrees.first ?? []
        permutation = degrees.indices.sorted { (degrees[$0], $0) < (degrees[$1], $1) }
        var ranges: [Range<Int>] = [], start = 0
        for k in 0..<Swift.max(d, 1) {
            var end = start
            while end < permutation.count, degrees[permutation[end]] == k { end += 1 }
            ranges.append(start..<end)
            start = end
        }
        self.ranges = ranges
        func size(_ fanIn: Int, _ n: Int) -> Int { (2 * fanIn + 1) * n }
        var cursor = 0
        var initial: [Int] = [], first: [Int] = [], second: [Int] = [], contexts: [Int] = [], outputs: [Int] = []
        for range in ranges {
            initial.append(cursor)
            cursor += size(d, range.count)
        }
        for _ in 0..<blocks {
            for range in ranges {
                first.append(cursor)
                cursor += size(range.upperBound, range.count)
                second.append(cursor)
                cursor += size(range.upperBound, range.count)
            }
        }
        if e > 0 {
            for _ in 0...blocks {
                contexts.append(cursor)
                cursor += size(e, h)
            }
        }
        for (f, columns) in featureColumns.enumerated() {
            outputs.append(cursor)
            cursor += size(ranges[order[f]].upperBound, columns.count)
        }
        initialOffsets = initial
        firstOffsets = first
        secondOffsets = second
        contextOffsets = contexts
        outputOffsets = outputs
        let count = Swift.max(cursor, 1)
        storage = try MemoryBudget.allocate(T.self, count: count, "the sequential plan of a residual MADE")
    }

    deinit { MemoryBudget.free(storage) }

    /// Packs rows `units` of `layer`'s weight (and their biases) at `offset`, input `q` of the
    /// packed block read from column `input(q)` of the weight, for `q < fanIn`.
    private func pack(_ layer: MaskedLinear<T>, units: [Int], fanIn: Int, input: (Int) -> Int, at offset: Int) {
        let packed = storage + offset, n = units.count, w = layer.weight.values, b = layer.bias.values
        let columns = layer.inFeatures
        for (j, unit) in units.enumerated() {
            for q in 0..<fanIn {
                let value = w[unit * columns + input(q)]
                packed[q * n + j] = value
                packed[(fanIn + 1) * n + j * fanIn + q] = value
            }
            packed[fanIn * n + j] = b[unit]
        }
    }

    /// Repacks every block from the network's current (masked) weights.
    func refresh(from made: ResidualMADE<T>) {
        let d = dimension, sorted = permutation
        for (k, range) in ranges.enumerated() {
            let units = Array(sorted[range])
            pack(made.initial, units: units, fanIn: d, input: { $0 }, at: initialOffsets[k])
            for b in 0..<blocks {
                pack(made.linear0[b], units: units, fanIn: range.upperBound, input: { sorted[$0] }, at: firstOffsets[b * d + k])
                pack(made.linear1[b], units: units, fanIn: range.upperBound, input: { sorted[$0] }, at: secondOffsets[b * d + k])
            }
        }
        if let context = made.context {
            for (i, layer) in ([context] + made.blockContexts).enumerated() {
                pack(layer, units: sorted, fanIn: contextFeatures, input: { $0 }, at: contextOffsets[i])
            }
        }
        for (f, columns) in featureColumns.enumerated() {
            pack(made.final, units: columns, fanIn: ranges[order[f]].upperBound, input: { sorted[$0] }, at: outputOffsets[f])
        }
    }

    /// `y[r, 0..<n] = x[r, 0..<fanIn] · packed + bias` over `rows` rows (ReLU fused when
    /// `relu`), for the packed block at `offset`.
    @inline(__always)
    private func apply(_ offset: Int, fanIn: Int, n: Int, _ x: UnsafePointer<T>, ldx: Int, rows: Int,
                       into y: UnsafeMutablePointer<T>, ldy: Int, relu: Bool) {
        let start = storage + offset
        let weights = UnsafePointer(start), biases = UnsafePointer(start + fanIn * n)
        if fanIn == 0 {
            // No unit to read (nothing of a lower degree exists): the biases.
            for r in 0..<rows {
                let yr = y + r * ldy
                for j in 0..<n { yr[j] = relu ? Swift.max(biases[j], 0) : biases[j] }
            }
            return
        }
        T.denseLayer(x, ldx: ldx, rows: rows, inFeatures: fanIn, packedWeight: weights, bias: biases, outFeatures: n,
                     into: y, ldy: ldy, relu: relu, weight: UnsafePointer(start + (fanIn + 1) * n))
    }

    /// The values a sequential pass keeps for a block of up to `rows` rows, each `rows × H` in
    /// sorted unit order: the stream `s` (updated in place through the blocks), per block
    /// `act(s_b)` and `act(a)`, with a context its terms (`act` of the first layer's, then each
    /// block's), and one block's second product.
    struct State {
        let rows: Int
        let stream: UnsafeMutablePointer<T>
        let activated: UnsafeMutablePointer<T>
        let hidden: UnsafeMutablePointer<T>
        let contexts: UnsafeMutablePointer<T>
        let product: UnsafeMutablePointer<T>
    }

    /// Sections (`rows × H` each) of a ``State``.
    private var stateSections: Int { 2 + 2 * blocks + (contextFeatures > 0 ? blocks + 1 : 0) }

    /// Bytes of a ``State`` for blocks of up to `rows` rows.
    func workspaceBytes(rows: Int) -> Int { Arena.bytes(T.self, stateSections * rows * width) }

    /// A ``State`` for blocks of up to `rows` rows, from the arena.
    func state(rows: Int, arena: inout Arena) -> State {
        let n = rows * width, base = arena.take(T.self, stateSections * n)
        return State(rows: rows, stream: base, activated: base + n, hidden: base + (1 + blocks) * n,
                     contexts: base + (1 + 2 * blocks) * n, product: base + (stateSections - 1) * n)
    }

    /// Starts a block of `rows` rows (at most `state.rows`) of the network input `x` (stride
    /// `ldx`, the context in its last `E` columns): the context terms of every unit.
    func begin(_ x: UnsafePointer<T>, ldx: Int, rows: Int, state: State) {
        let h = width, e = contextFeatures, section = state.rows * h
        guard e > 0 else { return }
        for i in 0...blocks {
            let c = state.contexts + i * section
            apply(contextOffsets[i], fanIn: e, n: h, x + dimension, ldx: ldx, rows: rows, into: c, ldy: h, relu: false)
            if i == 0 { activation.apply(c, count: rows * h) }
        }
    }

    /// Pass `k`: the units of degree `k` through the network, then the parameters of feature
    /// `f` (at position `k`) into `theta` (`rows × P`), for `rows` rows of the network input `x`
    /// whose features before position `k` are final.
    /// - Complexity: `2·rows·n_k·(D + 2N·m_k) + 2·rows·m_k·P` flops, with `n_k` the units of
    ///   degree `k` and `m_k` those of degree ≤ `k`.
    @inline(__always)
    func pass(_ k: Int, feature f: Int, input x: UnsafePointer<T>, ldx: Int, rows: Int, state: State,
              into theta: UnsafeMutablePointer<T>) {
        let d = dimension, h = width, range = ranges[k], n = range.count, seen = range.upperBound
        let relu = activation == .relu, gated = contextFeatures > 0, section = state.rows * h, low = range.lowerBound
        if n > 0 {
            let s = state.stream + low
            apply(initialOffsets[k], fanIn: d, n: n, x, ldx: ldx, rows: rows, into: s, ldy: h, relu: false)
            if gated {
                let c = state.contexts + low
                for r in 0..<rows { for j in 0..<n { s[r * h + j] += c[r * h + j] } }
            }
            for b in 0..<blocks {
                let u = state.activated + b * section, t = state.hidden + b * section
                for r in 0..<rows { activation.apply(UnsafePointer(s + r * h), into: u + low + r * h, count: n) }
                apply(firstOffsets[b * d + k], fanIn: seen, n: n, u, ldx: h, rows: rows, into: t + low, ldy: h,
                      relu: relu && !gated)
                if gated {
                    let c = state.contexts + (1 + b) * section + low, a = t + low
                    for r in 0..<rows { for j in 0..<n { a[r * h + j] += c[r * h + j] } }
                }
                if gated || !relu { for r in 0..<rows { activation.apply(t + low + r * h, count: n) } }
                let v = state.product
                apply(secondOffsets[b * d + k], fanIn: seen, n: n, t, ldx: h, rows: rows, into: v, ldy: n, relu: false)
                for r in 0..<rows { for j in 0..<n { s[r * h + j] += v[r * n + j] } }
            }
        }
        apply(outputOffsets[f], fanIn: seen, n: outputsPerFeature, state.stream, ldx: h, rows: rows, into: theta,
              ldy: outputsPerFeature, relu: false)
    }
}
