/// A learnable array of a layer: values, gradient and the name and shape under which the model
/// file stores it (see docs/model-format.md).
///
/// Storage is a stable, 64-byte-aligned allocation so kernels and BLAS read it without copies
/// and optimisers update it in place.
public final class Parameter<Scalar: FlowScalar> {
    /// Dataset name inside the layer's HDF5 group, e.g. `weight_0`.
    public let name: String
    /// Shape, e.g. `[out, in]` for a dense weight.
    public let shape: [Int]
    /// Element count (product of `shape`).
    public let count: Int
    /// The values.
    public let values: UnsafeMutableBufferPointer<Scalar>
    /// The gradient of the loss, accumulated by backward passes (same layout as `values`).
    /// Inside a parallel gradient pass this is the calling thread's slot (``GradientSlot``).
    public var gradient: UnsafeMutableBufferPointer<Scalar> {
        let slot = GradientSlot.current
        return slot == 0 ? ownGradient : extraGradients[slot - 1]
    }

    /// Slot 0 of the gradient.
    let ownGradient: UnsafeMutableBufferPointer<Scalar>
    /// Slots 1, 2, … of parallel gradient passes (see ``reserveGradientSlots(_:)``).
    private(set) var extraGradients: [UnsafeMutableBufferPointer<Scalar>] = []

    /// A zero-filled parameter.
    public init(name: String, shape: [Int]) {
        self.name = name
        self.shape = shape
        self.count = Tensor<Scalar>.elementCount(shape) ?? 0
        let v = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(count, 1) * MemoryLayout<Scalar>.stride,
                                                 alignment: 64).bindMemory(to: Scalar.self, capacity: Swift.max(count, 1))
        let g = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(count, 1) * MemoryLayout<Scalar>.stride,
                                                 alignment: 64).bindMemory(to: Scalar.self, capacity: Swift.max(count, 1))
        v.initialize(repeating: 0, count: Swift.max(count, 1))
        g.initialize(repeating: 0, count: Swift.max(count, 1))
        values = UnsafeMutableBufferPointer(start: v, count: count)
        ownGradient = UnsafeMutableBufferPointer(start: g, count: count)
    }

    deinit {
        UnsafeMutableRawPointer(values.baseAddress!).deallocate()
        UnsafeMutableRawPointer(ownGradient.baseAddress!).deallocate()
        for g in extraGradients { UnsafeMutableRawPointer(g.baseAddress!).deallocate() }
    }

    /// Makes sure gradient slots `1...slots` exist (single-threaded; before a parallel pass).
    func reserveGradientSlots(_ slots: Int) {
        while extraGradients.count < slots {
            let g = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(count, 1) * MemoryLayout<Scalar>.stride,
                                                     alignment: 64).bindMemory(to: Scalar.self, capacity: Swift.max(count, 1))
            g.initialize(repeating: 0, count: Swift.max(count, 1))
            extraGradients.append(UnsafeMutableBufferPointer(start: g, count: count))
        }
    }

    /// Adds slot `slot` into slot 0 and zeroes it.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    func foldGradientSlot(_ slot: Int) {
        let src = extraGradients[slot - 1]
        for i in 0..<count {
            ownGradient[i] += src[i]
            src[i] = 0
        }
    }

    /// Pointer to the first value (valid while the parameter lives).
    @inline(__always) public var pointer: UnsafeMutablePointer<Scalar> { values.baseAddress! }

    /// Copies `source` (of exactly `count` elements) into the values.
    public func assign<S: Collection>(_ source: S) where S.Element == Scalar {
        var i = 0
        for v in source where i < count { values[i] = v; i += 1 }
    }

    /// The values as an array (a copy).
    public var array: [Scalar] { Array(values) }

    /// Sets the gradient to zero (specialised: called on every parameter at every training step).
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func zeroGradient() { ownGradient.update(repeating: 0) }
}
