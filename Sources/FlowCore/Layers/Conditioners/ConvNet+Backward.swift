extension ConvNet {
    /// Scalars of the tape ``forwardRecording(_:ldx:rows:into:tape:arena:)`` writes: the two
    /// hidden activations `h₀ = ReLU(conv₀(x))` and `h₁ = ReLU(conv₁(h₀))`,
    /// `2·rows·hidden·H·W`. (ReLU's derivative is read off its output, so no pre-activation is
    /// kept.)
    func tapeCount(rows: Int) -> Int { 2 * rows * hiddenFeatures }

    /// Scratch for ``backward(_:ldx:rows:tape:outputGradient:inputGradient:arena:)`` over `rows`
    /// samples: two hidden-activation gradients (`rows·hidden·H·W` each) and the largest
    /// convolution's scratch. It also covers ``forwardRecording(_:ldx:rows:into:tape:arena:)``,
    /// which hands the arena back unchanged, so one reservation serves the recorded forward pass
    /// and the backward pass that follows it.
    func backwardWorkspaceBytes(rows: Int) -> Int {
        let forward = Swift.max(layers.map { $0.workspaceBytes(T.self, rows: rows) }.max() ?? 0, winogradScratchBytes)
        let backward = 2 * Arena.bytes(T.self, rows * hiddenFeatures)
            + (layers.map { $0.backwardWorkspaceBytes(T.self, rows: rows) }.max() ?? 0)
        return Swift.max(forward, backward)
    }

    /// The forward pass (same arithmetic as ``callAsFunction(_:ldx:rows:into:arena:)``, so the
    /// same `y`), keeping `h₀` then `h₁` in `tape` (``tapeCount(rows:)`` scalars) for
    /// ``backward(_:ldx:rows:tape:outputGradient:inputGradient:arena:)``.
    ///
    /// Scratch comes from `arena` (at most ``backwardWorkspaceBytes(rows:)``, and at most
    /// ``workspaceBytes(rows:)``) and is released on return: the arena is handed back as it was.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func forwardRecording(_ x: UnsafePointer<T>, ldx: Int, rows: Int, into y: UnsafeMutablePointer<T>,
                          tape: UnsafeMutablePointer<T>, arena: inout Arena) {
        guard rows > 0 else { return }
        let h0 = tape, h1 = tape + rows * hiddenFeatures
        var scratch = arena
        layers[0].forward(x, ldx: ldx, rows: rows, weight: weights[0].pointer,
                          packedWeight: packedWeight(0), bias: biases[0].pointer, into: h0, relu: true,
                          arena: &scratch)
        scratch = arena
        layers[1].forward(h0, ldx: hiddenFeatures, rows: rows, weight: weights[1].pointer,
                          packedWeight: packedWeight(1), bias: biases[1].pointer, into: h1, relu: true,
                          arena: &scratch)
        scratch = arena
        lastLayerForward(h1, rows: rows, into: y, arena: &scratch)
    }

    /// ``forwardRecording(_:ldx:rows:into:tape:arena:)`` for `rows` contiguous samples.
    @inline(__always)
    func forwardRecording(_ x: UnsafePointer<T>, rows: Int, into y: UnsafeMutablePointer<T>,
                          tape: UnsafeMutablePointer<T>, arena: inout Arena) {
        forwardRecording(x, ldx: inFeatures, rows: rows, into: y, tape: tape, arena: &arena)
    }

    /// Back-propagates `outputGradient` (`rows × out × H × W`; read, left unchanged) through the
    /// pass recorded in `tape` at the same `x`: adds every weight and bias gradient into the
    /// parameters' ``Parameter/gradient`` (the calling thread's ``GradientSlot``), and writes
    /// `∂L/∂x` (`rows × in × H × W`, contiguous, overwritten) into `inputGradient` when given;
    /// without it, the first convolution's input-gradient product is skipped.
    ///
    /// Scratch: ``backwardWorkspaceBytes(rows:)``.
    /// - Complexity: about twice the forward pass's flops (one less product without
    ///   `inputGradient`).
    @_specialize(where T == Float) @_specialize(where T == Double)
    func backward(_ x: UnsafePointer<T>, ldx: Int, rows: Int, tape: UnsafePointer<T>,
                  outputGradient: UnsafeMutablePointer<T>, inputGradient: UnsafeMutablePointer<T>?,
                  arena: inout Arena) {
        guard rows > 0 else { return }
        let count = rows * hiddenFeatures
        let h0 = tape, h1 = tape + count
        // `raw` takes each convolution's input gradient, `masked` the same through ReLU′, which
        // the next convolution back reads (out of place, see maskByReLU).
        let raw = arena.take(T.self, count), masked = arena.take(T.self, count)
        var scratch = arena
        layers[2].backward(h1, ldx: hiddenFeatures, rows: rows, weight: weights[2].pointer, packedWeight: packedWeight(2),
                           outputGradient: outputGradient, weightGradient: weights[2].gradient.baseAddress!,
                           biasGradient: biases[2].gradient.baseAddress!, inputGradient: raw, arena: &scratch)
        ConvNet.maskByReLU(raw, output: h1, into: masked, count: count)
        scratch = arena
        layers[1].backward(h0, ldx: hiddenFeatures, rows: rows, weight: weights[1].pointer, packedWeight: packedWeight(1),
                           outputGradient: masked, weightGradient: weights[1].gradient.baseAddress!,
                           biasGradient: biases[1].gradient.baseAddress!, inputGradient: raw, arena: &scratch)
        ConvNet.maskByReLU(raw, output: h0, into: masked, count: count)
        scratch = arena
        layers[0].backward(x, ldx: ldx, rows: rows, weight: weights[0].pointer, packedWeight: packedWeight(0),
                           outputGradient: masked, weightGradient: weights[0].gradient.baseAddress!,
                           biasGradient: biases[0].gradient.baseAddress!, inputGradient: inputGradient, arena: &scratch)
    }

    /// ``backward(_:ldx:rows:tape:outputGradient:inputGradient:arena:)`` for `rows` contiguous
    /// samples.
    @inline(__always)
    func backward(_ x: UnsafePointer<T>, rows: Int, tape: UnsafePointer<T>,
                  outputGradient: UnsafeMutablePointer<T>, inputGradient: UnsafeMutablePointer<T>?,
                  arena: inout Arena) {
        backward(x, ldx: inFeatures, rows: rows, tape: tape, outputGradient: outputGradient,
                 inputGradient: inputGradient, arena: &arena)
    }

    /// `out[i] = h[i] > 0 ? g[i] : 0`: the gradient through ReLU, read off its output `h` (where
    /// `h[i]` is 0 the pre-activation was ≤ 0, so ReLU′ = 0; elsewhere ReLU′ = 1).
    ///
    /// Out of place on purpose: in place, the compiler turns the select into a conditional
    /// store of 0 (keeping `g[i]` is a no-op store), which does not vectorise and branches on
    /// the activation's sign pattern — mispredicted about half the time, it cost a third of the
    /// conditioner's backward pass. Here both loads are unconditional and every element is
    /// stored, so the loop is vector selects.
    @inline(__always)
    static func maskByReLU(_ g: UnsafePointer<T>, output h: UnsafePointer<T>, into out: UnsafeMutablePointer<T>,
                           count: Int) {
        for i in 0..<count {
            let v = g[i]
            out[i] = h[i] > 0 ? v : 0
        }
    }
}
