extension MLP: CouplingTaped {
    /// Whether the tape keeps pre-activations: every activation's derivative needs them but
    /// ReLU's, which reads off the activation itself (`h > 0` exactly where `a > 0`).
    private var tapesPreActivations: Bool { activation != .relu }

    /// Scalars of the tape ``forwardRecording(_:ldx:rows:into:tape:)`` writes: every hidden
    /// layer's activation `h_l`, preceded by its pre-activation `a_l` unless the activation is
    /// ReLU.
    func tapeCount(rows: Int) -> Int {
        (tapesPreActivations ? 2 : 1) * rows * widths.dropFirst().dropLast().reduce(0, +)
    }

    /// An MLP coupling's training forward pass: the network over `x` (`rows` rows, stride `ldx`),
    /// its output and tape kept in `couplingTape` (``couplingTapeBytes(rows:)`` bytes). Returns
    /// the output (`rows × out`, inside the tape).
    func forwardRecording(_ x: UnsafePointer<T>, ldx: Int, rows: Int,
                          couplingTape: UnsafeMutableRawPointer) -> UnsafeMutablePointer<T> {
        let (output, tape) = couplingTapeParts(couplingTape, rows: rows)
        forwardRecording(x, ldx: ldx, rows: rows, into: output, tape: tape)
        return output
    }

    /// The network output and tape an MLP coupling's backward pass reads: those `recorded` kept
    /// (a tape of ``forwardRecording(_:ldx:rows:couplingTape:)``), or without one, a recording
    /// forward pass over `x` into the arena.
    func couplingTape(_ recorded: UnsafeRawPointer?, input x: UnsafePointer<T>, ldx: Int, rows: Int,
                      arena: inout Arena) -> (output: UnsafeMutablePointer<T>, tape: UnsafeMutablePointer<T>) {
        if let recorded { return couplingTapeParts(recorded, rows: rows) }
        let output = arena.take(T.self, rows * outFeatures), tape = arena.take(T.self, tapeCount(rows: rows))
        forwardRecording(x, ldx: ldx, rows: rows, into: output, tape: tape)
        return (output, tape)
    }

    /// Scratch for ``backward(_:ldx:rows:tape:outputGradient:inputGradient:arena:)``.
    func backwardWorkspaceBytes(rows: Int) -> Int { 2 * Arena.bytes(T.self, rows * max(maxWidth, inFeatures)) }

    /// The forward pass (the same values as ``callAsFunction(_:ldx:rows:into:arena:)``),
    /// keeping what ``backward`` needs in `tape` (``tapeCount(rows:)`` scalars).
    @_specialize(where T == Float) @_specialize(where T == Double)
    func forwardRecording(_ x: UnsafePointer<T>, ldx: Int, rows: Int, into y: UnsafeMutablePointer<T>,
                          tape: UnsafeMutablePointer<T>) {
        let relu = !tapesPreActivations
        var input = x, ld = ldx
        var cursor = tape
        for l in 0..<weights.count {
            let last = l == weights.count - 1
            let width = widths[l + 1]
            let out = last ? y : cursor
            T.denseLayer(input, ldx: ld, rows: rows, inFeatures: widths[l], packedWeight: packedWeight(l),
                         bias: biases[l].pointer, outFeatures: width, into: out, ldy: width, relu: !last && relu,
                         sparseInput: sparseInput(l, rows: rows), weight: weights[l].pointer)
            if !last {
                var post = cursor
                if !relu {
                    post = cursor + rows * width
                    activation.apply(cursor, into: post, count: rows * width)
                }
                input = UnsafePointer(post)
                ld = width
                cursor = post + rows * width
            }
        }
    }

    /// Back-propagates `outputGradient` (`rows × out`; destroyed) through the recorded pass:
    /// adds weight and bias gradients (unless `parameterGradients` is false: a vector-Jacobian
    /// product with respect to the input only), and writes `∂L/∂x` (`rows × in`, contiguous)
    /// into `inputGradient` when given. With ReLU, each hidden layer's derivative is fused into
    /// the product that produces its gradient.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func backward(_ x: UnsafePointer<T>, ldx: Int, rows: Int, tape: UnsafePointer<T>,
                  outputGradient: UnsafeMutablePointer<T>, inputGradient: UnsafeMutablePointer<T>?,
                  parameterGradients: Bool = true, arena: inout Arena) {
        let scratch = rows * max(maxWidth, inFeatures)
        let bufferA = arena.take(T.self, scratch), bufferB = arena.take(T.self, scratch)
        let fused = !tapesPreActivations
        var delta = outputGradient
        var nextIsA = true
        for l in stride(from: weights.count - 1, through: 0, by: -1) {
            // Input of dense layer l: x, or the activation h_l of hidden layer l.
            let (input, ld) = l == 0 ? (x, ldx) : (hiddenActivation(l, tape: tape, rows: rows), widths[l])
            let target: UnsafeMutablePointer<T>? = l == 0 ? inputGradient : (nextIsA ? bufferA : bufferB)
            MatrixProducts.linearBackward(input, ldx: ld, rows: rows, inFeatures: widths[l],
                                          weight: weights[l].pointer, outFeatures: widths[l + 1],
                                          outputGradient: delta,
                                          weightGradient: parameterGradients ? weights[l].gradient.baseAddress! : nil,
                                          biasGradient: parameterGradients ? biases[l].gradient.baseAddress! : nil,
                                          inputGradient: target,
                                          gate: l > 0 && fused ? input : nil,
                                          sparseOutputGradient: fused && sparseGradient(l))
            if parameterGradients, let masks {
                let g = weights[l].gradient, m = masks[l]
                for i in 0..<g.count { g[i] *= m[i] }
            }
            if l > 0, let target {
                if !fused {
                    activation.multiplyByDerivative(target, at: input - rows * widths[l], count: rows * widths[l])
                }
                delta = target
                nextIsA.toggle()
            }
        }
    }

    /// Hidden layer `l`'s activation `h_l` in the tape (`l` ≥ 1 counts dense outputs); its
    /// pre-activation, when taped, sits just before it.
    @inline(__always)
    private func hiddenActivation(_ l: Int, tape: UnsafePointer<T>, rows: Int) -> UnsafePointer<T> {
        let perLayer = tapesPreActivations ? 2 : 1
        var offset = 0
        for k in 1..<l { offset += perLayer * rows * widths[k] }
        return tape + offset + (perLayer - 1) * rows * widths[l]
    }
}
