/// Gradients of a continuous flow by the adjoint sensitivity method (Chen et al., "Neural
/// Ordinary Differential Equations", NeurIPS 2018, §2 and Appendix B; Pontryagin 1962).
///
/// ## The adjoint system
///
/// The layer maps `x = z(0)` to `z(T)` and adds `Δ(T) = ∫₀ᵀ tr(∂g/∂z) dt` to the
/// log-determinant. Given the cotangents `ū = ∂L/∂z(T)` (rows × D) and `w_r = ∂L/∂logDet_r`,
/// the adjoint `a(t) = ∂L/∂z(t)` and the parameter cotangent `θ̄(t)` solve, backward from
/// `t = T` to `0`,
///
///     dz/dt = g(z, t)                                                  z(T) from the forward solve
///     da/dt = −[aᵀ ∂g/∂z + w ∂tr/∂z + c(κ ∂‖g‖²/∂z + ι ∂‖J‖²/∂z)]     a(T) = ū
///     dθ̄/dt = −Σ_r [aᵀ ∂g/∂θ + w ∂tr/∂θ + c(κ ∂‖g‖²/∂θ + ι ∂‖J‖²/∂θ)]   θ̄(T) = 0
///
/// so `∂L/∂x = a(0)` and `∂L/∂θ = θ̄(0)`. The bracket is one reverse pass of the dynamics
/// network (``ODENet/adjointStep(t:_:ldz:rows:cotangent:ldu:probes:directions:traceWeights:kineticWeights:jacobianWeights:primalOut:ldp:inputGradient:ldg:context:contextGradient:arena:)``),
/// which also returns `g` for the `z` equation; the trace directions are the forward solve's
/// (unit vectors, or the same fixed Hutchinson probe of each row). Memory does not depend on
/// the number of steps: the state is `[z, a]` per row plus one `θ̄` of P scalars per solve.
///
/// ## Context
///
/// With a context (``contextFeatures`` `C > 0`) `g = g(z, t, e_r)` with row `r`'s context `e_r`
/// constant along its trajectory, so `e_r` is a per-row parameter: when the caller asks for
/// `∂L/∂e`, the state gains one `ē_r` of `C` scalars per row,
///
///     dē_r/dt = −[a_rᵀ ∂g/∂e_r + w_r ∂tr_r/∂e_r + c_r(κ ∂‖g‖²/∂e_r + ι ∂‖J‖²/∂e_r)]   ē_r(T) = 0
///
/// (the bracket of the `a` equation, differentiated in `e_r` instead of `z`) from the same
/// reverse pass (the context columns of its first-layer input gradient), and
/// `∂L/∂e_r = ē_r(0)` is added to the caller's context gradient. Like `θ̄` it is a quadrature
/// component, outside the error norm, so the steps (and every other result) are the same
/// whether or not it is integrated.
///
/// ## Error control
///
/// `θ̄` is integrated with the same Runge–Kutta stages but left out of the adaptive error norm
/// (the seminorm of Kidger, Chen & Lyons, ICML 2021: its derivative does not depend on it, so
/// controlling `[z, a]` suffices and saves steps). The system is linear in `(ū, w)`; it is
/// solved for `(ū, w)/c` with `c` the largest magnitude among them in the solve's chunk and the
/// results multiplied back by `c`, so `atol` acts on cotangents of order one rather than on the
/// `1/batch` scale of a mean loss.
///
/// ## Regularisers (RNODE)
///
/// With `kinetic_energy` λ_K and `jacobian_norm` λ_J (Finlay et al., "How to train your neural
/// ODE", ICML 2020) each row's loss gains `c_r (λ_K ∫‖g‖² dt + λ_J ∫‖J‖_F² dt)` with
/// `c_r = −w_r` — the weight the loss gives that row's negative log-likelihood (`1/batch` for
/// the mean NLL the trainer minimises). `‖J‖_F²` is exact with `trace = "exact"`
/// (`Σ_k ‖J e_k‖²`) and the unbiased `‖J ε‖²` with the Hutchinson probe. The penalties change
/// the gradients only; log-densities and the reported loss are the plain likelihood.
///
/// ## Failure
///
/// When a solve fails (step limit, underflow, non-finite state) the chunk's input (and context)
/// gradients and this layer's parameter gradients become NaN; the trainer then skips the step
/// as for any non-finite gradient.
extension ContinuousFlow {
    /// How ``backward(input:count:gradient:logDetGradient:arena:)`` differentiates.
    public enum GradientMode: String, CaseIterable, Sendable {
        /// The adjoint sensitivity method: memory independent of the number of steps.
        case adjoint
        /// Backpropagation through the solver's accepted steps (discretise-then-optimise): the
        /// exact gradient of the computed solution, memory growing with the steps.
        case backprop
    }

    /// Number of parameters (the length of `θ̄`).
    var parameterCount: Int { net.parameters.reduce(0) { $0 + $1.count } }

    /// Scratch of one adjoint chunk of `rows` rows: the `[z, a, c̄, θ̄]` state and the solver's
    /// stages over it, the saved parameter gradients, per-row weights, probes and the network's
    /// reverse tape.
    func adjointChunkBytes(rows: Int) -> Int {
        let d = dimension, p = parameterCount, n = 2 * rows * d + rows * contextFeatures + p
        return Arena.bytes(Scalar.self, n)
            + ODESolver.workspaceBytes(Scalar.self, count: n, method: solverOptions.method)
            + Arena.bytes(Scalar.self, p)
            + 3 * Arena.bytes(Scalar.self, rows)
            + reverseWorkspaceBytes(rows: rows)
    }

    public func backwardWorkspaceBytes(count: Int) -> Int {
        guard count > 0 else { return 0 }
        let rows = Swift.min(count, rowsPerSolve)
        switch gradientMode {
        case .adjoint: return adjointChunkBytes(rows: rows) + chunkBytes(rows: rows)
        case .backprop: return backpropChunkBytes(rows: rows)
        }
    }

    /// Replaces `g = ∂L/∂z(T)` by `∂L/∂x` and adds `∂L/∂θ` to the parameter gradients (the
    /// calling thread's ``GradientSlot``), by ``gradientMode``. Re-solves the forward pass from
    /// `x` (chunk by chunk, the same chunks and probes as ``forward(_:count:logDet:arena:)``).
    public func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                         logDetGradient w: UnsafePointer<Scalar>, arena: inout Arena) {
        backward(input: x, endStates: nil, count: count, context: nil, gradient: g, logDetGradient: w,
                 contextGradient: nil, arena: &arena)
    }

    /// With the adjoint method: `z(T)` of every row (`count × D` scalars), so that training does
    /// not solve the forward pass a second time; none with backpropagation (which re-solves to
    /// record the steps).
    public func tapeBytes(count: Int) -> Int {
        gradientMode == .adjoint ? Arena.bytes(Scalar.self, count * dimension) : 0
    }

    /// ``forward(_:count:logDet:arena:)``, keeping its output `z(T)` in `tape`.
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, logDet: UnsafeMutablePointer<Double>,
                        tape: UnsafeMutableRawPointer, arena: inout Arena) {
        forward(x, count: count, context: nil, logDet: logDet, tape: tape, arena: &arena)
    }

    /// ``forward(_:count:context:logDet:arena:)``, keeping its output `z(T)` in `tape`.
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                        logDet: UnsafeMutablePointer<Double>, tape: UnsafeMutableRawPointer, arena: inout Arena) {
        forward(x, count: count, context: context, logDet: logDet, arena: &arena)
        if gradientMode == .adjoint {
            tape.bindMemory(to: Scalar.self, capacity: count * dimension).update(from: x, count: count * dimension)
        }
    }

    /// ``backward(input:count:gradient:logDetGradient:arena:)`` starting the adjoint solves from
    /// the `z(T)` in `tape` (bit-identical: the same chunks, probes and solves produced them).
    public func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                         logDetGradient w: UnsafePointer<Scalar>, tape: UnsafeRawPointer, arena: inout Arena) {
        backward(input: x, count: count, context: nil, gradient: g, logDetGradient: w, contextGradient: nil,
                 recorded: tape, arena: &arena)
    }

    /// The backward pass at the context rows `context` (`count × C`; nil: zeros): as
    /// ``backward(input:count:gradient:logDetGradient:arena:)``, and with `contextGradient` also
    /// adds `∂L/∂c` (`count × C`) there. `recorded`: the tape of
    /// ``forward(_:count:context:logDet:tape:arena:)`` (the adjoint then starts from its `z(T)`),
    /// or nil to solve forward again.
    public func backward(input x: UnsafePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                         gradient g: UnsafeMutablePointer<Scalar>, logDetGradient w: UnsafePointer<Scalar>,
                         contextGradient: UnsafeMutablePointer<Scalar>?, recorded: UnsafeRawPointer?,
                         arena: inout Arena) {
        let endStates = gradientMode == .adjoint ? recorded?.assumingMemoryBound(to: Scalar.self) : nil
        backward(input: x, endStates: endStates, count: count, context: context, gradient: g, logDetGradient: w,
                 contextGradient: contextGradient, arena: &arena)
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    private func backward(input x: UnsafePointer<Scalar>, endStates: UnsafePointer<Scalar>?, count: Int,
                          context: UnsafePointer<Scalar>?, gradient g: UnsafeMutablePointer<Scalar>,
                          logDetGradient w: UnsafePointer<Scalar>, contextGradient: UnsafeMutablePointer<Scalar>?,
                          arena: inout Arena) {
        let d = dimension, chunk = rowsPerSolve, c = contextFeatures
        // Without a context the layer has no context gradient to give.
        let contextGradient = c > 0 ? contextGradient : nil
        var start = 0
        while start < count {
            let rows = Swift.min(chunk, count - start)
            var local = arena
            let ok: Bool
            let rowContext = context.map { $0 + start * c }, rowContextGradient = contextGradient.map { $0 + start * c }
            switch gradientMode {
            case .adjoint:
                ok = adjointChunk(x + start * d, endState: endStates.map { $0 + start * d }, rows: rows, rowOffset: start,
                                  context: rowContext, gradient: g + start * d, logDetGradient: w + start,
                                  contextGradient: rowContextGradient, arena: &local)
            case .backprop:
                ok = backpropChunk(x + start * d, rows: rows, rowOffset: start, context: rowContext, gradient: g + start * d,
                                   logDetGradient: w + start, contextGradient: rowContextGradient, arena: &local)
            }
            if !ok {
                (g + start * d).update(repeating: .nan, count: rows * d)
                rowContextGradient?.update(repeating: .nan, count: rows * c)
                for p in net.parameters { p.gradient.update(repeating: .nan) }
            }
            start += rows
        }
    }

    /// One chunk by the adjoint method, from the forward pass's `z(T)` (`endState`) or a new
    /// forward solve, at the chunk's context rows; with `contextGradient`, `c̄` is integrated
    /// too and `∂L/∂c` added there. False when a solve failed.
    private func adjointChunk(_ x: UnsafePointer<Scalar>, endState: UnsafePointer<Scalar>?, rows: Int, rowOffset: Int,
                              context: UnsafePointer<Scalar>?, gradient g: UnsafeMutablePointer<Scalar>,
                              logDetGradient w: UnsafePointer<Scalar>, contextGradient: UnsafeMutablePointer<Scalar>?,
                              arena: inout Arena) -> Bool {
        let d = dimension, k = directions, rd = rows * d, params = net.parameters
        // State [z, a, c̄, θ̄]: c̄ (rows × C) only when the caller wants ∂L/∂c.
        let rc = contextGradient == nil ? 0 : rows * contextFeatures
        let p = parameterCount, n = 2 * rd + rc + p, thetaOffset = 2 * rd + rc
        let state = arena.take(Scalar.self, n)
        let savedGradient = arena.take(Scalar.self, p)
        let traceW = arena.take(Scalar.self, rows)
        let kineticW = arena.take(Scalar.self, rows)
        let jacobianW = arena.take(Scalar.self, rows)

        // z(T): kept by the forward pass (NaN if its solve failed), or the forward solve again.
        if let endState {
            for i in 0..<rd where !endState[i].isFinite { return false }
            state.update(from: endState, count: rd)
        } else {
            var scratch = arena
            let forwardState = scratch.take(Scalar.self, rows * (d + 1))
            for r in 0..<rows {
                (forwardState + r * (d + 1)).update(from: x + r * d, count: d)
                forwardState[r * (d + 1) + d] = 0
            }
            guard solveChunk(forwardState, rows: rows, rowOffset: rowOffset, context: context, from: 0, to: endTime,
                             arena: &scratch) else {
                return false
            }
            for r in 0..<rows { (state + r * d).update(from: forwardState + r * (d + 1), count: d) }
        }

        // Scale: the largest cotangent magnitude of the chunk.
        var c: Scalar = 0
        for i in 0..<rd { c = Swift.max(c, g[i].magnitude) }
        for r in 0..<rows { c = Swift.max(c, w[r].magnitude) }
        guard c.isFinite else { return false }
        guard c > 0 else { return true }  // Nothing flows back: ∂L/∂x = 0, no parameter gradient.
        let inverseScale = 1 / c
        for i in 0..<rd { state[rd + i] = g[i] * inverseScale }
        (state + 2 * rd).update(repeating: 0, count: rc + p)
        let lambdaK = Scalar(kineticEnergy), lambdaJ = Scalar(jacobianNorm)
        for r in 0..<rows {
            traceW[r] = w[r] * inverseScale
            kineticW[r] = -lambdaK * traceW[r]
            jacobianW[r] = -lambdaJ * traceW[r]
        }

        // The layer's gradients so far; each evaluation below overwrites them with its own θ-term.
        var offset = 0
        for q in params {
            (savedGradient + offset).update(from: q.gradient.baseAddress!, count: q.count)
            offset += q.count
        }

        let probes = arena.take(Scalar.self, rows * k * net.inputWidth)
        let uniforms = arena.take(Double.self, d)
        fillProbes(probes, rows: rows, rowOffset: rowOffset, uniforms: uniforms)
        let net = self.net, useKinetic = kineticEnergy != 0, useJacobian = jacobianNorm != 0
        let tape = arena
        let scope = CallScope.current
        let dynamics: ODESolver.Dynamics<Scalar> = { t, y, dy, _ in
            if let scope, scope.isStopped { throw FlowError.cancelled("the adjoint solve was cancelled") }
            for q in params { q.zeroGradient() }
            // The reverse pass adds ∂/∂c into dc̄/dt's slot.
            if rc > 0 { (dy + 2 * rd).update(repeating: 0, count: rc) }
            var scratch = tape
            net.adjointStep(t: t, y, ldz: d, rows: rows, cotangent: y + rd, ldu: d, probes: probes, directions: k,
                            traceWeights: traceW, kineticWeights: useKinetic ? kineticW : nil,
                            jacobianWeights: useJacobian ? jacobianW : nil, primalOut: dy, ldp: d,
                            inputGradient: dy + rd, ldg: d, context: context,
                            contextGradient: rc > 0 ? dy + 2 * rd : nil, arena: &scratch)
            for i in rd..<(2 * rd + rc) { dy[i] = -dy[i] }
            var o = thetaOffset
            for q in params {
                let src = q.gradient.baseAddress!
                for i in 0..<q.count { dy[o + i] = -src[i] }
                o += q.count
            }
        }
        var solverArena = arena
        _ = solverArena.take(UInt8.self, net.reverseWorkspaceBytes(rows: rows, directions: k))
        let solved: Bool
        do {
            let statistics = try ODESolver.solve(state, count: n, from: Scalar(endTime), to: 0, options: solverOptions,
                                                 arena: &solverArena, errorControlled: 2 * rd, dynamics: dynamics)
            work.add(adjoint: statistics)
            solved = true
        } catch {
            solved = false
        }
        offset = 0
        for q in params {
            let dst = q.gradient.baseAddress!
            for i in 0..<q.count { dst[i] = savedGradient[offset + i] + (solved ? c * state[thetaOffset + offset + i] : 0) }
            offset += q.count
        }
        guard solved else { return false }
        for i in 0..<rd { g[i] = c * state[rd + i] }
        if let contextGradient {
            for i in 0..<rc { contextGradient[i] += c * state[2 * rd + i] }
        }
        return true
    }
}
