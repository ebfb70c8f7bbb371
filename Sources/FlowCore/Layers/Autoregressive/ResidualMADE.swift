/// nflows' residual MADE (`nflows.transforms.made.MADE` with `use_residual_blocks=True`, nflows
/// 0.14, without batch norm; dropout is the identity at evaluation): the masked network of a
/// ``MaskedAutoregressive`` layer with `residual_blocks` N ≥ 1.
///
/// With `x` the `D` features, `e` the `E` context inputs, `H` the width and `act` the
/// activation, for each row (the context terms only when `E > 0`):
///
///     s₀ = W_in·x + b_in + act(W_c·e + b_c)                 (MADE.forward: initial_layer, context_layer)
///     for b in 0..<N:                                         (MaskedResidualBlock.forward)
///         a = W₀ᵇ·act(s_b) + b₀ᵇ + W_cᵇ·e + b_cᵇ            (linear_layers[0], the block's context_layer)
///         s_{b+1} = s_b + W₁ᵇ·act(a) + b₁ᵇ                   (linear_layers[1])
///     θ = W_out·s_N + b_out                                   (final_layer; no activation)
///
/// `W_in`, `W₀ᵇ`, `W₁ᵇ` and `W_out` are masked; the context layers are not (the context has
/// degree 0). Every hidden unit has one degree (``AutoregressiveOrder/hiddenDegrees`` holds
/// one layer of `H`): `W_in` and the blocks let a unit see the units or features of degree ≤ its
/// own, `W_out` lets an output see the units of degree < its own, so unit `k` of every `s_b`
/// depends only on the features of degree ≤ `degree(k)` (and the context), and `θ_i` only on the
/// features before `i`.
///
/// `W₁ᵇ`, `b₁ᵇ`, `W_out` and `b_out` start at zero (nflows draws `W₁ᵇ`, `b₁ᵇ` from `U(±10⁻³)`;
/// zero makes every block and the layer start as the identity); the others from PyTorch's
/// `U(±1/√fan_in)`.
///
/// Parameters, in file order: `initial_weight` `[H, D]`, `initial_bias` `[H]`; with a context
/// `context_weight` `[H, E]`, `context_bias` `[H]`; per block `b`: `block_b_weight_0` `[H, H]`,
/// `block_b_bias_0` `[H]`, with a context `block_b_context_weight` `[H, E]`,
/// `block_b_context_bias` `[H]`, then `block_b_weight_1` `[H, H]`, `block_b_bias_1` `[H]`; then
/// `final_weight` `[out, H]`, `final_bias` `[out]`.
///
/// - Complexity: one pass over `n` rows: `2n·(H·(D + E) + N·(2H² + E·H) + H·out)` flops.
final class ResidualMADE<T: FlowScalar> {
    /// Features `D`, context inputs `E` and width `H`.
    let features: Int
    let contextFeatures: Int
    let width: Int
    let activation: Activation
    let initial: MaskedLinear<T>
    /// The first layer's context layer (nil without a context).
    let context: MaskedLinear<T>?
    /// Per block: the two masked `H → H` layers and (with a context) the block's `E → H` layer.
    let linear0: [MaskedLinear<T>]
    let linear1: [MaskedLinear<T>]
    let blockContexts: [MaskedLinear<T>]
    let final: MaskedLinear<T>
    /// The network rearranged for the sequential pass.
    let plan: ResidualSequentialPlan<T>

    /// - Parameters:
    ///   - masks: the initial layer's (`[H, D]`), the blocks' (`[H, H]`) and the final layer's
    ///     (`[outputs, H]`) 0/1 masks, row-major.
    ///   - structure/featureColumns: the order and degrees, and each feature's output columns
    ///     (for the sequential plan).
    init(features d: Int, contextFeatures e: Int, width h: Int, blocks: Int, outputs: Int, activation: Activation,
         masks: (initial: [T], block: [T], final: [T]), structure: AutoregressiveOrder, featureColumns: [[Int]],
         seed: UInt64) throws {
        features = d
        contextFeatures = e
        width = h
        self.activation = activation
        var rng = PhiloxStream(seed: seed, row: 0, stream: RandomStream.initialization)
        initial = try MaskedLinear(in: d, out: h, weightName: "initial_weight", biasName: "initial_bias", mask: masks.initial,
                               random: true, rng: &rng)
        context = e > 0 ? try MaskedLinear(in: e, out: h, weightName: "context_weight", biasName: "context_bias", mask: nil,
                                       random: true, rng: &rng) : nil
        var first: [MaskedLinear<T>] = [], second: [MaskedLinear<T>] = [], contexts: [MaskedLinear<T>] = []
        for b in 0..<blocks {
            first.append(try MaskedLinear(in: h, out: h, weightName: "block_\(b)_weight_0", biasName: "block_\(b)_bias_0",
                                      mask: masks.block, random: true, rng: &rng))
            if e > 0 {
                contexts.append(try MaskedLinear(in: e, out: h, weightName: "block_\(b)_context_weight",
                                             biasName: "block_\(b)_context_bias", mask: nil, random: true, rng: &rng))
            }
            second.append(try MaskedLinear(in: h, out: h, weightName: "block_\(b)_weight_1", biasName: "block_\(b)_bias_1",
                                       mask: masks.block, random: false, rng: &rng))
        }
        linear0 = first
        linear1 = second
        blockContexts = contexts
        final = try MaskedLinear(in: h, out: outputs, weightName: "final_weight", biasName: "final_bias",
                             mask: masks.final, random: false, rng: &rng)
        plan = try ResidualSequentialPlan(structure: structure, featureColumns: featureColumns, width: h, blocks: blocks,
                                      contextFeatures: e, activation: activation)
        plan.refresh(from: self)
    }

    /// The parameter count of a residual MADE, checked against ``Limits`` without allocating.
    /// - Throws: ``FlowError/limitExceeded(_:)``.
    static func checkedSize(features d: Int, contextFeatures e: Int, width h: Int, blocks: Int, outputs: Int,
                            context: String) throws -> Int {
        // (in + 1)·out per layer; every factor is bounded by limits checked before, so only the
        // products and the sum can overflow.
        var layers = [(d, h), (h, outputs)] + [(Int, Int)](repeating: (h, h), count: 2 * blocks)
        if e > 0 { layers += [(Int, Int)](repeating: (e, h), count: blocks + 1) }
        var total = 0
        for (fanIn, fanOut) in layers {
            let (w, o1) = (fanIn + 1).multipliedReportingOverflow(by: fanOut)
            let (t, o2) = total.addingReportingOverflow(w)
            guard !o1, !o2, t <= Limits.maxParametersPerLayer else {
                throw FlowError.limitExceeded("\(context): a residual MADE of width \(h) with \(blocks) blocks over \(d) features and \(outputs) outputs has more than \(Limits.maxParametersPerLayer) parameters")
            }
            total = t
        }
        return total
    }

    var blocks: Int { linear0.count }
    var inFeatures: Int { features + contextFeatures }
    var outFeatures: Int { final.outFeatures }

    /// In file order (see the type's documentation).
    var parameters: [Parameter<T>] {
        var list = initial.parameters + (context?.parameters ?? [])
        for b in 0..<blocks {
            list += linear0[b].parameters + (blockContexts.isEmpty ? [] : blockContexts[b].parameters) + linear1[b].parameters
        }
        return list + final.parameters
    }

    /// Zeroes the masked weights and refreshes the packed weights and the sequential plan.
    func repack() {
        initial.repack()
        context?.repack()
        for layer in linear0 + blockContexts + linear1 { layer.repack() }
        final.repack()
        plan.refresh(from: self)
    }

    /// Whether the blocks' products read a ReLU's output with the sparse-input kernel (the
    /// rule of ``MLP/sparseInput(_:rows:)``; the same values as the dense kernel).
    @inline(__always) func sparseInput(rows: Int) -> Bool {
        activation == .relu && width >= 16 && (width >= 32 || rows < 6)
    }

    /// Scratch of ``callAsFunction(_:ldx:rows:into:arena:)`` over `rows` rows.
    func workspaceBytes(rows: Int) -> Int { Arena.bytes(T.self, 4 * rows * width) }

    /// `θ = net([x, e])` for `rows` rows of the network input (stride `ldx`, the context in the
    /// last `E` columns); `y` is `rows × out`, contiguous.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func callAsFunction(_ x: UnsafePointer<T>, ldx: Int, rows: Int, into y: UnsafeMutablePointer<T>, arena: inout Arena) {
        run(x, ldx: ldx, rows: rows, into: y, tape: nil, scratch: arena.take(T.self, 4 * rows * width))
    }

    /// Tape sections (`rows × H` each) before the first block: `s₀`, and with a context the
    /// first context layer's pre-activation.
    var headSections: Int { contextFeatures > 0 ? 2 : 1 }

    /// Tape sections per block: `act(s_b)`, `a` (not for ReLU, whose derivative reads off
    /// `act(a)`), `act(a)` and `s_{b+1}`.
    var blockSections: Int { activation == .relu ? 3 : 4 }

    /// Where `s_b` lies in a tape of `rows` rows.
    @inline(__always) func stream(_ b: Int, tape: UnsafePointer<T>, rows: Int) -> UnsafePointer<T> {
        b == 0 ? tape : tape + (headSections + b * blockSections - 1) * rows * width
    }

    /// One forward pass. With `tape` (``tapeCount(rows:)`` scalars), every intermediate value is
    /// kept there for ``backward(_:ldx:rows:tape:outputGradient:inputGradient:parameterGradients:arena:)``:
    /// `s₀`, [the context layer's pre-activation], then per block `act(s_b)`, [`a`], `act(a)`,
    /// `s_{b+1}`, each `rows × H`. Without, `scratch` (`4·rows·H` scalars) holds one block's
    /// values at a time. Both give the same values bit for bit.
    @inline(__always)
    func run(_ x: UnsafePointer<T>, ldx: Int, rows: Int, into y: UnsafeMutablePointer<T>, tape: UnsafeMutablePointer<T>?,
             scratch: UnsafeMutablePointer<T>?) {
        let h = width, n = rows * h, relu = activation == .relu, e = x + features
        let sparse = sparseInput(rows: rows), sections = blockSections
        // Without a tape: s, the context's pre-activation or act(s_b), a = act(a) in place, and
        // the block's context term then its second product.
        var s = tape ?? scratch!
        initial(x, ldx: ldx, rows: rows, into: s, ldy: h)
        if let context {
            let pre = (tape ?? scratch!) + n
            // act(pre) goes where act(s₀) is written next (there is at least one block).
            let activated = tape.map { $0 + headSections * n } ?? scratch! + 2 * n
            context(e, ldx: ldx, rows: rows, into: pre, ldy: h)
            activation.apply(UnsafePointer(pre), into: activated, count: n)
            for i in 0..<n { s[i] += activated[i] }
        }
        for b in 0..<blocks {
            let u: UnsafeMutablePointer<T>, a: UnsafeMutablePointer<T>, t: UnsafeMutablePointer<T>
            let next: UnsafeMutablePointer<T>
            if let tape {
                let base = tape + (headSections + b * sections) * n
                u = base
                t = base + (relu ? 1 : 2) * n
                a = relu ? t : base + n
                next = base + (sections - 1) * n
            } else {
                let buffer = scratch!
                (u, a, t, next) = (buffer + n, buffer + 2 * n, buffer + 2 * n, buffer + 3 * n)
            }
            activation.apply(UnsafePointer(s), into: u, count: n)
            if blockContexts.isEmpty {
                linear0[b](u, ldx: h, rows: rows, into: a, ldy: h, relu: relu, sparseInput: sparse)
            } else {
                // The block's context term, in the place s_{b+1} (or v) takes below.
                blockContexts[b](e, ldx: ldx, rows: rows, into: next, ldy: h)
                linear0[b](u, ldx: h, rows: rows, into: a, ldy: h, sparseInput: sparse)
                for i in 0..<n { a[i] += next[i] }
                if relu { for i in 0..<n { a[i] = Swift.max(a[i], 0) } }
            }
            if !relu {
                if a == t { activation.apply(t, count: n) } else { activation.apply(UnsafePointer(a), into: t, count: n) }
            }
            linear1[b](t, ldx: h, rows: rows, into: next, ldy: h, sparseInput: relu && sparse)
            if tape != nil {
                for i in 0..<n { next[i] += s[i] }
                s = next
            } else {
                for i in 0..<n { s[i] += next[i] }
            }
        }
        final(s, ldx: h, rows: rows, into: y, ldy: outFeatures)
    }
}
