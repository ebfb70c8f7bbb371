/// Training passes of ``ResidualMADE``: the tape of a recording forward pass and the
/// hand-derived backward pass, with the interface of ``MLP``'s (`couplingTape…`, `backward`).
extension ResidualMADE: CouplingTaped {
    /// Scalars of the tape ``run(_:ldx:rows:into:tape:scratch:)`` writes over `rows` rows:
    /// ``headSections`` and ``blockSections`` per block, each `rows × H`.
    func tapeCount(rows: Int) -> Int { rows * width * (headSections + blocks * blockSections) }

    /// A training forward pass over `x` (`rows` rows, stride `ldx`), its output and tape kept
    /// in `couplingTape` (``couplingTapeBytes(rows:)`` bytes). Returns the output.
    func forwardRecording(_ x: UnsafePointer<T>, ldx: Int, rows: Int,
                          couplingTape: UnsafeMutableRawPointer) -> UnsafeMutablePointer<T> {
        let (output, tape) = couplingTapeParts(couplingTape, rows: rows)
        run(x, ldx: ldx, rows: rows, into: output, tape: tape, scratch: nil)
        return output
    }

    /// The output and tape the backward pass reads: those `recorded` kept, or without one, a
    /// recording forward pass over `x` into the arena.
    func couplingTape(_ recorded: UnsafeRawPointer?, input x: UnsafePointer<T>, ldx: Int, rows: Int,
                      arena: inout Arena) -> (output: UnsafeMutablePointer<T>, tape: UnsafeMutablePointer<T>) {
        if let recorded { return couplingTapeParts(recorded, rows: rows) }
        let output = arena.take(T.self, rows * outFeatures), tape = arena.take(T.self, tapeCount(rows: rows))
        run(x, ldx: ldx, rows: rows, into: output, tape: tape, scratch: nil)
        return (output, tape)
    }

    /// Scratch of ``backward(_:ldx:rows:tape:outputGradient:inputGradient:parameterGradients:arena:)``.
    func backwardWorkspaceBytes(rows: Int) -> Int {
        3 * Arena.bytes(T.self, rows * width) + Arena.bytes(T.self, rows * features)
            + 2 * Arena.bytes(T.self, rows * contextFeatures)
    }

    /// Back-propagates `outputGradient` (`rows × out`) through the recorded pass at input `x`
    /// (stride `ldx`): adds every parameter's gradient (unless `parameterGradients` is false: a
    /// vector-Jacobian product with respect to the input only) and writes `∂L/∂[x, e]`
    /// (`rows × (D + E)`, contiguous) into `inputGradient` when given; the context columns
    /// collect the first context layer's and every block's terms.
    ///
    /// With `δ = ∂L/∂s_{b+1}`, block `b` gives `∂L/∂a = act′(a) ⊙ W₁ᵀδ` (also the gradient of
    /// the block's context term) and `∂L/∂s_b = δ + act′(s_b) ⊙ W₀ᵀ·∂L/∂a`; the first context
    /// layer's pre-activation gets `act′ ⊙ ∂L/∂s₀`.
    /// - Complexity: about twice the forward pass's flops.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func backward(_ x: UnsafePointer<T>, ldx: Int, rows: Int, tape: UnsafePointer<T>,
                  outputGradient: UnsafeMutablePointer<T>, inputGradient: UnsafeMutablePointer<T>?,
                  parameterGradients: Bool = true, arena: inout Arena) {
        let h = width, n = rows * h, d = features, e = contextFeatures, relu = activation == .relu
        let sections = blockSections, grads = parameterGradients, context = x + d
        let dS = arena.take(T.self, n), dA = arena.take(T.self, n), dU = arena.take(T.self, n)
        let dX = arena.take(T.self, rows * d)
        let dContext = arena.take(T.self, rows * e), dTerm = arena.take(T.self, rows * e)
        dContext.update(repeating: 0, count: rows * e)
        final.backward(stream(blocks, tape: tape, rows: rows), ldx: h, rows: rows, outputGradient: outputGradient,
                       inputGradient: dS, parameterGradients: grads)
        for b in stride(from: blocks - 1, through: 0, by: -1) {
            let base = tape + (headSections + b * sections) * n
            let u = base, a = base + n, t = base + (relu ? 1 : 2) * n
            // ReLU: its derivative is read off its output (t > 0 exactly where a > 0), fused.
            linear1[b].backward(t, ldx: h, rows: rows, outputGradient: dS, inputGradient: dA, gate: relu ? t : nil,
                                parameterGradients: grads)
            if !relu { activation.multiplyByDerivative(dA, at: a, count: n) }
            if e > 0 {
                blockContexts[b].backward(context, ldx: ldx, rows: rows, outputGradient: dA, inputGradient: dTerm,
                                          parameterGradients: grads)
                for i in 0..<(rows * e) { dContext[i] += dTerm[i] }
            }
            linear0[b].backward(u, ldx: h, rows: rows, outputGradient: dA, inputGradient: dU, gate: relu ? u : nil,
                                parameterGradients: grads)
            if !relu { activation.multiplyByDerivative(dU, at: stream(b, tape: tape, rows: rows), count: n) }
            for i in 0..<n { dS[i] += dU[i] }
        }
        initial.backward(x, ldx: ldx, rows: rows, outputGradient: dS, inputGradient: e > 0 ? dX : inputGradient,
                         parameterGradients: grads)
        guard let layer = self.context else { return }
        // s₀ += act(pre): pre's gradient is act′(pre) ⊙ ∂L/∂s₀ (ReLU's too: pre > 0).
        dA.update(from: dS, count: n)
        activation.multiplyByDerivative(dA, at: tape + n, count: n)
        layer.backward(context, ldx: ldx, rows: rows, outputGradient: dA, inputGradient: dTerm, parameterGradients: grads)
        guard let inputGradient else { return }
        let w = d + e
        for r in 0..<rows {
            let row = inputGradient + r * w
            row.update(from: dX + r * d, count: d)
            for j in 0..<e { row[d + j] = dContext[r * e + j] + dTerm[r * e + j] }
        }
    }
}
