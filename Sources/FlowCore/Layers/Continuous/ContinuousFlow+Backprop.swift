/// Gradients of a continuous flow by backpropagation through the solver (`gradient =
/// "backprop"`, "discretise-then-optimise"): the exact gradient of the solution the solver
/// computed, as autograd through torchdiffeq's `odeint` gives, rather than the adjoint's
/// approximation of the continuous gradient.
///
/// ## Method
///
/// The forward solve is repeated with an observer that records every accepted step: its start
/// time `tₙ`, signed size `hₙ` and state `yₙ = [z, Δ]` (memory: `steps × rows × (D+1)`
/// scalars, held in an array allocated per chunk). Step sizes are treated as constants (as
/// autograd does; their dependence on the state through the error control is not
/// differentiated). Then, for `n` from the last step down, the step's stages are recomputed
/// from `yₙ` and the explicit Runge–Kutta map `y_{n+1} = yₙ + h Σᵢ bᵢ kᵢ`,
/// `kᵢ = f(tₙ + cᵢh, Yᵢ)`, `Yᵢ = yₙ + h Σ_{j<i} aᵢⱼ kⱼ` is reversed:
///
///     k̄ᵢ = h bᵢ ȳ_{n+1} + h Σ_{m>i} a_{mi} Ȳ_m,    Ȳᵢ = (∂f/∂Y)ᵀ k̄ᵢ  (and θ̄ += (∂f/∂θ)ᵀ k̄ᵢ),
///     ȳₙ = ȳ_{n+1} + Σᵢ Ȳᵢ
///
/// for `i` from the last stage down — one reverse pass of the dynamics network per stage
/// (DOPRI5: 6, its 7th stage only estimates the error; RK4: 4; Euler: 1). The `Δ` column's
/// cotangent is constant (`f` does not depend on `Δ`) and weighs each stage's trace term.
///
/// With a context (``ContinuousFlow/contextFeatures`` `C > 0`), each row's `c` enters every
/// stage as a constant input, so, like `θ̄`, `c̄ += (∂f/∂c)ᵀ k̄ᵢ` over every stage of every
/// step, added straight into the caller's context gradient.
///
/// ## Regularisers
///
/// The RNODE penalties are integrated by the same quadrature (as if `∫ r dt` were one more state
/// component), so stage `i` of step `n` adds `hₙ bᵢ c_r (λ_K ‖g‖² + λ_J ‖J‖_F²)` with
/// `c_r = −w_r` (see `ContinuousFlow+Adjoint.swift`).
extension ContinuousFlow {
    /// The explicit Runge–Kutta tableau `(A, b, c)` the forward solver steps with (DOPRI5
    /// without its error-only 7th stage).
    var tableau: (a: [[Double]], b: [Double], c: [Double]) {
        switch solverOptions.method {
        case .euler:
            return ([[]], [1], [0])
        case .rk4:
            return ([[], [0.5], [0, 0.5], [0, 0, 1]], [1.0 / 6, 1.0 / 3, 1.0 / 3, 1.0 / 6], [0, 0.5, 0.5, 1])
        case .dopri5:
            let q = DormandPrince.Coefficients<Double>()
            return ([[], [q.a21], [q.a31, q.a32], [q.a41, q.a42, q.a43], [q.a51, q.a52, q.a53, q.a54],
                     [q.a61, q.a62, q.a63, q.a64, q.a65]],
                    [q.b1, 0, q.b3, q.b4, q.b5, q.b6],
                    [0, DormandPrince.c2, DormandPrince.c3, DormandPrince.c4, DormandPrince.c5, 1])
        }
    }

    /// Scratch of one backpropagation chunk of `rows` rows (besides the recorded trajectory):
    /// the forward solve (whose scratch the stage recomputation reuses), the stage inputs,
    /// stages and stage cotangents, the state cotangent, per-row weights, probes and the
    /// network's reverse tape.
    func backpropChunkBytes(rows: Int) -> Int {
        let d = dimension, n = rows * (d + 1), s = tableau.b.count
        return chunkBytes(rows: rows) + (3 * s + 1) * Arena.bytes(Scalar.self, n)
            + Arena.bytes(Scalar.self, rows * d) + 3 * Arena.bytes(Scalar.self, rows)
            + reverseWorkspaceBytes(rows: rows)
    }

    /// One chunk by backpropagation through the recorded steps at the chunk's context rows
    /// (`rows × C`; nil: zeros), adding `∂L/∂c` to `contextGradient` when given; false when the
    /// solve failed.
    func backpropChunk(_ x: UnsafePointer<Scalar>, rows: Int, rowOffset: Int, context: UnsafePointer<Scalar>?,
                       gradient g: UnsafeMutablePointer<Scalar>, logDetGradient w: UnsafePointer<Scalar>,
                       contextGradient: UnsafeMutablePointer<Scalar>?, arena: inout Arena) -> Bool {
        let d = dimension, n1 = d + 1, n = rows * n1, k = directions
        let (a, b, c) = tableau
        let stages = b.count

        // Forward, recording (t, h, y) of every accepted step.
        var times: [Double] = [], sizes: [Double] = [], trajectory: [Scalar] = []
        do {
            var scratch = arena
            let state = scratch.take(Scalar.self, n)
            for r in 0..<rows {
                (state + r * n1).update(from: x + r * d, count: d)
                state[r * n1 + d] = 0
            }
            let ok = solveChunk(state, rows: rows, rowOffset: rowOffset, context: context, from: 0, to: endTime,
                                arena: &scratch) { t, h, y in
                times.append(t)
                sizes.append(h)
                trajectory.append(contentsOf: UnsafeBufferPointer(start: y, count: n))
            }
            guard ok else { return false }
        }

        var local = arena
        let stageInputs = local.take(Scalar.self, stages * n)
        let stageValues = local.take(Scalar.self, stages * n)
        let stageBars = local.take(Scalar.self, stages * n)
        let ybar = local.take(Scalar.self, n)
        let inputBar = local.take(Scalar.self, rows * d)
        let traceW = local.take(Scalar.self, rows)
        let kineticW = local.take(Scalar.self, rows)
        let jacobianW = local.take(Scalar.self, rows)
        let probes = local.take(Scalar.self, rows * k * net.inputWidth)
        let uniforms = local.take(Double.self, d)
        fillProbes(probes, rows: rows, rowOffset: rowOffset, uniforms: uniforms)
        let afterProbes = local
        var dynamicsArena = local
        _ = dynamicsArena.take(UInt8.self, net.reverseWorkspaceBytes(rows: rows, directions: k))
        let dynamics = makeDynamics(rows: rows, rowOffset: rowOffset, context: context, arena: &dynamicsArena)

        for r in 0..<rows {
            (ybar + r * n1).update(from: g + r * d, count: d)
            ybar[r * n1 + d] = w[r]
        }
        let useKinetic = kineticEnergy != 0, useJacobian = jacobianNorm != 0
        let stepCount = times.count
        for step in stride(from: stepCount - 1, through: 0, by: -1) {
            let t = times[step], h = sizes[step], hs = Scalar(h)
            // Recompute the stages from y_n.
            let ok: Bool = trajectory.withUnsafeBufferPointer { traj in
                let yn = traj.baseAddress! + step * n
                for i in 0..<stages {
                    let yi = stageInputs + i * n
                    yi.update(from: yn, count: n)
                    for j in 0..<i where a[i][j] != 0 {
                        let coefficient = hs * Scalar(a[i][j]), kj = stageValues + j * n
                        for e in 0..<n { yi[e] += coefficient * kj[e] }
                    }
                    do {
                        try dynamics(Scalar(t + c[i] * h), yi, stageValues + i * n, n)
                    } catch {
                        return false
                    }
                }
                return true
            }
            guard ok else { return false }
            // Stage cotangents, last stage first.
            for i in 0..<stages {
                let kb = stageBars + i * n, weight = hs * Scalar(b[i])
                for e in 0..<n { kb[e] = weight * ybar[e] }
            }
            for i in stride(from: stages - 1, through: 0, by: -1) {
                let kb = stageBars + i * n, yi = stageInputs + i * n
                let quadrature = hs * Scalar(b[i])
                for r in 0..<rows {
                    traceW[r] = kb[r * n1 + d]
                    kineticW[r] = -Scalar(kineticEnergy) * quadrature * w[r]
                    jacobianW[r] = -Scalar(jacobianNorm) * quadrature * w[r]
                }
                var tape = afterProbes
                net.reverse(t: Scalar(t + c[i] * h), yi, ldz: n1, rows: rows, outputCotangent: kb, ldu: n1,
                            probes: probes, directions: k, traceWeights: traceW,
                            kineticWeights: useKinetic ? kineticW : nil, jacobianWeights: useJacobian ? jacobianW : nil,
                            inputGradient: inputBar, ldg: d, accumulateInput: false, timeGradient: nil,
                            context: context, contextGradient: contextGradient, arena: &tape)
                for r in 0..<rows {
                    for j in 0..<d { ybar[r * n1 + j] += inputBar[r * d + j] }
                }
                for m in 0..<i where a[i][m] != 0 {
                    let coefficient = hs * Scalar(a[i][m]), km = stageBars + m * n
                    for r in 0..<rows {
                        for j in 0..<d { km[r * n1 + j] += coefficient * inputBar[r * d + j] }
                    }
                }
            }
        }
        for r in 0..<rows { (g + r * d).update(from: ybar + r * n1, count: d) }
        return true
    }
}
