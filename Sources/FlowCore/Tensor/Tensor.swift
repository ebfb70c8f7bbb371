/// A dense, contiguous, row-major array of scalars with a shape, batch dimension first.
///
/// Vectors are `[N, D]` and images `[N, C, H, W]`: the numpy/PyTorch order, so buffers cross to
/// C and Python unchanged. `Tensor` is a value type (copy-on-write through its storage array);
/// the engine's kernels work on raw pointers into it.
public struct Tensor<Scalar: FlowScalar>: Equatable {
    /// Extents of each dimension; the product equals `scalars.count`.
    public private(set) var shape: [Int]
    /// The elements in row-major order.
    public var scalars: [Scalar]

    /// A tensor of `shape` filled with `value`.
    public init(shape: [Int], repeating value: Scalar = 0) {
        self.shape = shape
        self.scalars = Array(repeating: value, count: Tensor.elementCount(shape) ?? 0)
    }

    /// A tensor of `shape` over `scalars` (whose count must equal the product of `shape`).
    public init(shape: [Int], scalars: [Scalar]) throws {
        guard let count = Tensor.elementCount(shape), count == scalars.count else {
            throw FlowError.shapeMismatch("\(scalars.count) values do not fill shape \(shape)")
        }
        self.shape = shape
        self.scalars = scalars
    }

    /// Rows of equal length, as a `[rows.count, rows[0].count]` tensor.
    public init(rows: [[Scalar]]) throws {
        let width = rows.first?.count ?? 0
        guard rows.allSatisfy({ $0.count == width }) else {
            throw FlowError.shapeMismatch("ragged rows")
        }
        self.shape = [rows.count, width]
        self.scalars = rows.flatMap { $0 }
    }

    /// Number of samples (the first dimension), or 1 for a scalar tensor.
    public var batchCount: Int { shape.first ?? 1 }

    /// Elements per sample: the product of all dimensions but the first.
    public var eventSize: Int { shape.dropFirst().reduce(1, *) }

    /// Shape of one sample.
    public var eventShape: [Int] { Array(shape.dropFirst()) }

    /// Row `i` of a `[N, ...]` tensor as an array.
    public func row(_ i: Int) -> [Scalar] {
        let d = eventSize
        return Array(scalars[(i * d)..<((i + 1) * d)])
    }

    /// Element access by full multi-index (bounds are the caller's responsibility).
    public subscript(_ index: Int...) -> Scalar {
        get { scalars[flatIndex(index)] }
        set { scalars[flatIndex(index)] = newValue }
    }

    private func flatIndex(_ index: [Int]) -> Int {
        var flat = 0
        for (i, extent) in zip(index, shape) { flat = flat * extent + i }
        return flat
    }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        try Tensor(shape: newShape, scalars: scalars)
    }

    /// The elements converted to another scalar type (e.g. Float → Double for reference checks).
    public func converted<U: FlowScalar>(to: U.Type = U.self) -> Tensor<U> {
        var t = Tensor<U>(shape: shape)
        for i in scalars.indices { t.scalars[i] = U(scalars[i]) }
        return t
    }

    /// Product of `shape`, or nil on a negative extent or overflow.
    public static func elementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for extent in shape {
            guard extent >= 0 else { return nil }
            let (p, overflow) = count.multipliedReportingOverflow(by: extent)
            if overflow { return nil }
            count = p
        }
        return count
    }
}
