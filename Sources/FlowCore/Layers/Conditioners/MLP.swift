/// A fully connected network `in → hidden… → out` that conditions a coupling layer.
///
/// Each dense layer is PyTorch's `Linear`: `y = x·Wᵀ + b` with `W` of shape `[out, in]`, so
/// weights exchange with PyTorch and numpy unchanged. The activation follows every layer but
/// the last. Hidden layers start from PyTorch's default `U(−1/√fan_in, 1/√fan_in)`; the last
/// layer starts at zero (Glow's `conv2d_zeros`), so a new coupling is the identity.
///
/// Parameters, in file order: `weight_0, bias_0, …, weight_L, bias_L` (`L` = number of hidden
/// layers).
///
/// With `masks` (a masked MLP, e.g. ``MADE``), layer `l` computes `x·(W ⊙ M)ᵀ + b`: masked
/// weights are held at exactly zero (at initialisation, after every parameter change in
/// ``repack()``, and their gradients are zeroed in ``backward``), so every product runs the
/// dense kernels unchanged.
final class MLP<T: FlowScalar> {
    let widths: [Int]
    let activation: Activation
    let weights: [Parameter<T>]
    let biases: [Parameter<T>]
    /// Per layer: 0/1 per weight entry (`[out, in]` row-major), or nil for a dense network.
    let masks: [[T]]?
    /// Each weight transposed (`in × out`, row-major), the layout the dense kernel streams;
    /// refreshed by ``repack()`` whenever the weights change.
    private let packed: [UnsafeMutablePointer<T>]

    /// - Parameters:
    ///   - widths: `[in, h₁, …, h_L, out]`.
    ///   - seed/stream row: where initial weights come from (a ``PhiloxStream``).
    ///   - masks: per layer, 0/1 per weight entry (`[out, in]`), or nil.
    ///   - zeroLastLayer: start the last layer at zero (conditioners: a new layer is the
    ///     identity); false initialises it like the others (embedding networks).
    /// - Throws: ``FlowError/limitExceeded(_:)`` or ``FlowError/outOfMemory(_:)`` from the
    ///   ``MemoryBudget``.
    init(widths: [Int], activation: Activation, seed: UInt64, row: UInt64, masks: [[T]]? = nil,
         zeroLastLayer: Bool = true) throws {
        self.widths = widths
        self.activation = activation
        self.masks = masks
        var ws: [Parameter<T>] = [], bs: [Parameter<T>] = []
        var rng = PhiloxStream(seed: seed, row: row, stream: RandomStream.initialization)
        for l in 0..<(widths.count - 1) {
            let fanIn = widths[l], fanOut = widths[l + 1]
            let w = try Parameter<T>(name: "weight_\(l)", shape: [fanOut, fanIn])
            let b = try Parameter<T>(name: "bias_\(l)", shape: [fanOut])
            if l < widths.count - 2 || !zeroLastLayer, fanIn > 0 {
                let bound = 1 / Double(fanIn).squareRoot()
                for i in 0..<w.count { w.values[i] = T(rng.nextUniform(in: -bound, bound)) }
                for i in 0..<b.count { b.values[i] = T(rng.nextUniform(in: -bound, bound)) }
            }
            ws.append(w)
            bs.append(b)
        }
        weights = ws
        biases = bs
        packed = try MemoryBudget.allocatePackedCopies(of: ws)
        repack()
    }

    deinit { for p in packed { MemoryBudget.free(p) } }

    /// Layer `l`'s transposed weight (`in × out`).
    @inline(__always) func packedWeight(_ l: Int) -> UnsafePointer<T> { UnsafePointer(packed[l]) }

    /// Refreshes the transposed weights from ``weights`` (call after any weight change; the
    /// coupling layers do it in `parametersDidChange`). O(parameters).
    func repack() {
        if let masks {
            for (w, m) in zip(weights, masks) {
                for i in 0..<w.count { w.values[i] *= m[i] }
            }
        }
        for l in 0..<weights.count {
            MatrixProducts.transpose(weights[l].pointer, rows: widths[l + 1], columns: widths[l], into: packed[l])
        }
    }

    /// Whether dense layer `l` runs the sparse-input kernel on `rows` rows: its input is a ReLU
    /// layer's output (an exact zero wherever the pre-activation was negative, which the kernel skips), with
    /// ≥ 16 inputs, and either ≥ 32 outputs (where its per-row loop beats the dense tiles) or
    /// fewer than 6 rows (single rows: about half the dense kernel's time on a narrow output).
    /// Both kernels give the same values (up to the sign of zeros), so the choice never shows
    /// in results; it does not depend on the thread count. Layers with at most 4 outputs run the
    /// narrow-output kernel instead, for any row count
    /// (``FlowScalar/usesNarrowKernel(inFeatures:outFeatures:)``).
    @inline(__always) func sparseInput(_ l: Int, rows: Int) -> Bool {
        l > 0 && activation == .relu && widths[l] >= 16 && (widths[l + 1] >= 32 || rows < 6)
    }

    /// Whether the backward product `∂x = δ·W` of dense layer `l` runs the sparse-input kernel:
    /// `δ`, the gradient of hidden layer `l + 1`'s pre-activation, is an exact zero wherever
    /// its ReLU was off (the fused ReLU′ gate of the product above made it so), with ≥ 16 of
    /// them feeding ≥ 32 outputs. Same values as the dense kernel up to the sign of zeros.
    @inline(__always) func sparseGradient(_ l: Int) -> Bool {
        l < weights.count - 1 && activation == .relu && widths[l + 1] >= 16 && widths[l] >= 32
    }

    /// Builds a conditioner after checking its size against ``Limits`` (before allocating).
    static func checked(widths: [Int], activation: Activation, seed: UInt64, context: String,
                        masks: [[T]]? = nil) throws -> MLP {
        let total = try checkedSize(widths: widths, context: context)
        // Weights and biases, their gradients and the packed copies of the weights.
        return try MemoryBudget.reserve(3 * total * MemoryLayout<T>.stride, "\(context): a conditioner \(widths) of \(total) parameters") {
            try MLP(widths: widths, activation: activation, seed: seed, row: 0, masks: masks)
        }
    }

    /// The parameter count of a network of `widths`, checked against ``Limits`` without
    /// allocating.
    static func checkedSize(widths: [Int], context: String) throws -> Int {
        var total = 0
        for l in 0..<(widths.count - 1) {
            let (w, o1) = widths[l].multipliedReportingOverflow(by: widths[l + 1])
            let (t, o2) = total.addingReportingOverflow(w + widths[l + 1])
            guard !o1, !o2, t <= Limits.maxParametersPerLayer else {
                throw FlowError.limitExceeded("\(context): conditioner \(widths) has more than \(Limits.maxParametersPerLayer) parameters")
            }
            total = t
        }
        return total
    }

    var inFeatures: Int { widths.first! }
    var outFeatures: Int { widths.last! }
    var parameters: [Parameter<T>] { zip(weights, biases).flatMap { [$0, $1] } }

    /// Widest layer output (hidden or final).
    var maxWidth: Int { widths.dropFirst().max() ?? 0 }

    /// Scratch for ``callAsFunction(_:ldx:rows:into:arena:)`` over `rows` rows.
    func workspaceBytes(rows: Int) -> Int { 2 * Arena.bytes(T.self, rows * maxWidth) }

    /// `y = net(x)` for `rows` rows of `x` (row stride `ldx`); `y` is `rows × out`, contiguous.
    /// Dense layers run the fused kernel (bias and ReLU in the same pass, see
    /// ``FlowScalar/denseLayer(_:ldx:rows:inFeatures:packedWeight:bias:outFeatures:into:ldy:relu:)``).
    @_specialize(where T == Float) @_specialize(where T == Double)
    func callAsFunction(_ x: UnsafePointer<T>, ldx: Int, rows: Int,
                        into y: UnsafeMutablePointer<T>, arena: inout Arena) {
        let layerCount = weights.count
        let fusedReLU = activation == .relu
        var input = UnsafePointer(x), ld = ldx
        var buffers: (UnsafeMutablePointer<T>, UnsafeMutablePointer<T>)?
        if layerCount > 1 {
            buffers = (arena.take(T.self, rows * maxWidth), arena.take(T.self, rows * maxWidth))
        }
        for l in 0..<layerCount {
            let last = l == layerCount - 1
            let width = widths[l + 1]
            let out = last ? y : buffers!.0
            T.denseLayer(input, ldx: ld, rows: rows, inFeatures: widths[l], packedWeight: packed[l],
                         bias: biases[l].pointer, outFeatures: width, into: out, ldy: width, relu: !last && fusedReLU,
                         sparseInput: sparseInput(l, rows: rows), weight: weights[l].pointer)
            if !last {
                if !fusedReLU { activation.apply(out, count: rows * width) }
                input = UnsafePointer(out)
                ld = width
                buffers = (buffers!.1, buffers!.0)
            }
        }
    }
}
