extension MLP {
    /// Scalars of the tape ``forwardRecording(_:ldx:rows:into:tape:)`` writes: pre- and
    /// post-activations of every hidden layer.
    func tapeCount(rows: Int) -> Int { 2 * rows * widths.dropFirst().dropLast().reduce(0, +) }

    /// Scratch for ``backward(_:ldx:rows:tape:outputGradient:inputGradient:arena:)``.
    func backwardWorkspaceBytes(rows: Int) -> Int { 2 * Arena.bytes(T.self, rows * max(maxWidth, inFeatures)) }

    /// The forward pass, keeping every hidden layer's pre-activation `a_l` and activation `h_l`
    /// in `tape` (``tapeCount(rows:)`` scalars) for ``backward``.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func forwardRecording(_ x: UnsafePointer<T>, ldx: Int, rows: Int, into y: UnsafeMutablePointer<T>,
                          tape: UnsafeMutablePointer<T>) {
        var input = x, ld = ldx
        var cursor = tape
        for l in 0..<weights.count {
            let last = l == weights.count - 1
            let width = widths[l + 1]
            let pre = last ? y : cursor
            T.denseLayer(input, ldx: ld, rows: rows, inFeatures: widths[l], packedWeight: packedWeight(l),
                         bias: biases[l].pointer, outFeatures: width, into: pre, ldy: width, relu: false)
            if !last {
                let post = cursor + rows * width
                activation.apply(pre, into: post, count: rows * width)
                input = UnsafePointer(post)
                ld = width
                cursor = post + rows * width
            }
        }
    }

    /// Back-propagates `outputGradient` (`rows × out`; destroyed) through the recorded pass:
    /// adds weight and bias gradients, and writes `∂L/∂x` (`rows × in`, contiguous) into
    /// `inputGradient` when given.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func backward(_ x: UnsafePointer<T>, ldx: Int, rows: Int, tape: UnsafePointer<T>,
                  outputGradient: UnsafeMutablePointer<T>, inputGradient: UnsafeMutablePointer<T>?,
                  arena: inout Arena) {
        let scratch = rows * max(maxWidth, inFeatures)
        let bufferA = arena.take(T.self, scratch), bufferB = arena.take(T.self, scratch)
        var delta = outputGradient
        var nextIsA = true
        for l in stride(from: weights.count - 1, through: 0, by: -1) {
            // Input of dense layer l: x, or the activation h_l of hidden layer l (tape: pre, post).
            let input: UnsafePointer<T>, ld: Int
            if l == 0 {
                (input, ld) = (x, ldx)
            } else {
                (input, ld) = (tape + tapeOffset(hidden: l, rows: rows) + rows * widths[l], widths[l])
            }
            let target: UnsafeMutablePointer<T>? = l == 0 ? inputGradient : (nextIsA ? bufferA : bufferB)
            MatrixProducts.linearBackward(input, ldx: ld, rows: rows, inFeatures: widths[l],
                                          weight: weights[l].pointer, outFeatures: widths[l + 1],
                                          outputGradient: delta, weightGradient: weights[l].gradient.baseAddress!,
                                          biasGradient: biases[l].gradient.baseAddress!, inputGradient: target)
            if l > 0, let target {
                let pre = tape + tapeOffset(hidden: l, rows: rows)
                activation.multiplyByDerivative(target, at: pre, count: rows * widths[l])
                delta = target
                nextIsA.toggle()
            }
        }
    }

    /// Start of hidden layer `l`'s (pre, post) pair in the tape (`l` ≥ 1 counts dense outputs).
    @inline(__always)
    private func tapeOffset(hidden l: Int, rows: Int) -> Int {
        var offset = 0
        for k in 1..<l { offset += 2 * rows * widths[k] }
        return offset
    }
}
