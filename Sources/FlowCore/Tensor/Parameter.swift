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

    /// Largest magnitude a value may have, if the parameter has a documented range (log-scales:
    /// ``Limits/maxLogScale``). Loaders refuse values outside it and an optimiser step that would
    /// leave it is skipped, so every model that trains also loads.
    public let bound: Scalar?

    /// A zero-filled parameter of `shape`, charged to the ``MemoryBudget`` (values and gradient)
    /// before it is allocated.
    /// - Throws: ``FlowError/limitExceeded(_:)`` past the memory limit or for a shape whose size
    ///   overflows, ``FlowError/outOfMemory(_:)`` when the allocation fails.
    public init(name: String, shape: [Int], bound: Scalar? = nil) throws {
        guard let count = Tensor<Scalar>.elementCount(shape) else {
            throw FlowError.limitExceeded("parameter \(name): shape \(shape) overflows the address space")
        }
        self.name = name
        self.shape = shape
        self.count = count
        self.bound = bound
        let bytes = try MemoryBudget.bytes(Scalar.self, count, "parameter \(name)")
        let (both, overflow) = bytes.multipliedReportingOverflow(by: 2)
        guard !overflow else { throw FlowError.limitExceeded("parameter \(name): \(count) values overflow the address space") }
        try MemoryBudget.charge(both, "parameter \(name) (\(count) values and their gradient)")
        let v = try MemoryBudget.allocateUncharged(Scalar.self, count: count, "parameter \(name)")
        let g: UnsafeMutablePointer<Scalar>
        do {
            g = try MemoryBudget.allocateUncharged(Scalar.self, count: count, "the gradient of parameter \(name)")
        } catch {
            MemoryBudget.free(v)
            throw error
        }
        values = UnsafeMutableBufferPointer(start: v, count: count)
        ownGradient = UnsafeMutableBufferPointer(start: g, count: count)
    }

    deinit {
        MemoryBudget.free(values.baseAddress!)
        MemoryBudget.free(ownGradient.baseAddress!)
        for g in extraGradients { MemoryBudget.free(g.baseAddress!) }
    }

    /// Makes sure gradient slots `1...slots` exist (single-threaded; before a parallel pass).
    /// - Throws: ``FlowError/outOfMemory(_:)`` or ``FlowError/limitExceeded(_:)`` (charged to the
    ///   calling thread's ledger); the slots made so far stay.
    func reserveGradientSlots(_ slots: Int) throws {
        while extraGradients.count < slots {
            let g = try MemoryBudget.allocate(Scalar.self, count: count, "gradient copy \(extraGradients.count + 1) of parameter \(name)")
            extraGradients.append(UnsafeMutableBufferPointer(start: g, count: count))
        }
    }

    /// Whether every value is finite and inside ``bound``.
    public var valuesAreValid: Bool { firstInvalidIndex == nil }

    /// The index of the first value that is not finite or lies outside ``bound``, if any.
    public var firstInvalidIndex: Int? {
        if let bound {
            return values.firstIndex { !$0.isFinite || $0.magnitude > bound }
        }
        return values.firstIndex { !$0.isFinite }
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
