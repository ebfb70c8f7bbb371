/// The split of a coupling layer's features: `mask[i] = 1` keeps feature `i` unchanged and feeds
/// it to the conditioner (RealNVP's `b`), `mask[i] = 0` marks it transformed.
///
/// Masks are folded into index lists at construction, and into contiguous ranges when they are
/// (the half split): the conditioner then reads its input in place through a row stride and no
/// gather happens on the hot path.
struct CouplingMask {
    let dimension: Int
    /// The 0/1 mask as stored in specs and files.
    let mask: [Int]
    /// Indices with mask 1 (conditioning) and 0 (transformed), ascending.
    let identity: [Int]
    var transformed: [Int] { transformedFeatures.indices }
    /// The transformed features as an element-wise transform takes them.
    let transformedFeatures: FeatureIndices
    /// Start of `identity` when it is one contiguous range.
    let identityRangeStart: Int?

    /// Resolves a spec's `mask` (`"half"`, `"alternating"` or an explicit 0/1 list) and
    /// `invert_mask` for `dimension` features.
    ///
    /// - `"half"`: the first ⌊D/2⌋ features condition, the rest are transformed.
    /// - `"alternating"`: even indices condition, odd ones are transformed.
    /// - `invert_mask` swaps the roles.
    init(spec: JSONValue?, invert: Bool, dimension d: Int, context: String) throws {
        var m: [Int]
        switch spec {
        case nil, .string("half")?: m = (0..<d).map { $0 < d / 2 ? 1 : 0 }
        case .string("alternating")?: m = (0..<d).map { $0 % 2 == 0 ? 1 : 0 }
        case .string(let other)?:
            throw FlowError.invalidSpec("\(context): unknown mask \"\(other)\" (use \"half\", \"alternating\" or a list of 0/1)")
        case let value?:
            guard let list = value.intArrayValue else { throw FlowError.invalidSpec("\(context): mask must be a string or a list of 0/1") }
            guard list.count == d else {
                throw FlowError.invalidSpec("\(context): mask has \(list.count) entries for \(d) features")
            }
            guard list.allSatisfy({ $0 == 0 || $0 == 1 }) else { throw FlowError.invalidSpec("\(context): mask entries must be 0 or 1") }
            m = list
        }
        if invert { m = m.map { 1 - $0 } }
        guard m.contains(0) else {
            throw FlowError.invalidSpec("\(context): the mask transforms no feature (all \(d) entries are 1)")
        }
        self.dimension = d
        self.mask = m
        identity = m.indices.filter { m[$0] == 1 }
        transformedFeatures = FeatureIndices(m.indices.filter { m[$0] == 0 })
        identityRangeStart = FeatureIndices(identity).rangeStart
    }

    /// Scratch of an MLP coupling's backward pass over `rows` rows: the gathered conditioning
    /// input, the conditioner output and tape, `∂L/∂x_a`, and the conditioner's own scratch.
    func couplingBackwardBytes<T>(_ net: MLP<T>, rows: Int) -> Int {
        gatherBytes(T.self, rows: rows) + Arena.bytes(T.self, rows * net.outFeatures)
            + Arena.bytes(T.self, net.tapeCount(rows: rows))
            + Arena.bytes(T.self, rows * identity.count) + net.backwardWorkspaceBytes(rows: rows)
    }

    /// Scratch for ``conditioningInput(_:rows:arena:)``.
    func gatherBytes<T>(_: T.Type, rows: Int) -> Int {
        identityRangeStart == nil ? Arena.bytes(T.self, rows * identity.count) : 0
    }

    /// The conditioning features of `rows` rows as (pointer, row stride): in place for a
    /// contiguous range, gathered into the arena otherwise.
    @inline(__always)
    func conditioningInput<T>(_ x: UnsafePointer<T>, rows: Int, arena: inout Arena)
        -> (UnsafePointer<T>, Int)
    {
        if let start = identityRangeStart { return (UnsafePointer(x + start), dimension) }
        let k = identity.count
        let g = arena.take(T.self, rows * k)
        identity.withUnsafeBufferPointer { idx in
            for r in 0..<rows {
                let src = x + r * dimension, dst = g + r * k
                for j in 0..<k { dst[j] = src[idx[j]] }
            }
        }
        return (UnsafePointer(g), k)
    }

    /// `gradient[:, identity] += dx` for `dx` of `rows × |identity|` (contiguous).
    @inline(__always)
    func addToConditioning<T: FlowScalar>(_ dx: UnsafePointer<T>, rows: Int, gradient: UnsafeMutablePointer<T>) {
        let k = identity.count
        identity.withUnsafeBufferPointer { idx in
            for r in 0..<rows {
                let g = gradient + r * dimension, d = dx + r * k
                if let start = identityRangeStart {
                    for j in 0..<k { g[start + j] += d[j] }
                } else {
                    for j in 0..<k { g[idx[j]] += d[j] }
                }
            }
        }
    }
}
