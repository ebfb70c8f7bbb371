import RealModule

/// A continuous normalizing flow (Chen et al., "Neural Ordinary Differential Equations",
/// NeurIPS 2018; Grathwohl et al., "FFJORD", ICLR 2019): the map from `z(0)` to `z(T)` of
///
///     dz/dt = g(z(t), t; θ),   t ∈ [0, T]
///
/// with `g` an ``ODENet`` of concat-squash layers.
///
/// ## Context
///
/// With ``contextFeatures`` `C > 0` (a conditional flow `p(x | c)`) the layer is a
/// ``ConditionalLayer``: each data row's context row `c` (the flow's encoded context) is held
/// fixed along its trajectory and read by the dynamics, `dz/dt = g(z(t), t, c)`, as extra inputs
/// of the network's first layer (``ODENet``, "Context"). For a fixed `c` the map is still the
/// time-`T` flow of an ODE in `z`, so everything below holds row by row; the log-determinant
/// is that of `x ↦ z` at fixed `c`. The gradient passes also return `∂L/∂c`: backpropagation
/// sums it over the recorded stages, the adjoint method integrates it backward in time like
/// the parameter gradient (see `ContinuousFlow+Adjoint.swift`). Without a context row (the
/// ``Bijection`` entry points) the layer runs at `c = 0`. `C = 0` is the unconditional layer,
/// unchanged (its `config`, and so its files, have no `context_features`).
///
/// ## Log-determinant and signs
///
/// Along a trajectory, `d/dt log|det ∂z(t)/∂z(0)| = tr(∂g/∂z(z(t), t))` (Liouville; equivalently
/// FFJORD's instantaneous change of variables `d log p(z(t))/dt = −tr(∂g/∂z)`). The layer
/// integrates the augmented state `[z, Δ]` with `dΔ/dt = +tr(∂g/∂z)`:
///
///     forward  (data → latent): z(0) = x, Δ(0) = 0, solve 0 → T;  z = z(T),
///                               logDet += Δ(T) = ∫₀ᵀ tr(∂g/∂z) dt = log|det ∂z(T)/∂z(0)|
///     inverse  (latent → data): z(T) = z, Δ(T) = 0, solve T → 0;  x = z(0),
///                               logDet += Δ(0) = −∫₀ᵀ tr(∂g/∂z) dt
///
/// so `log p(x) = log p_base(z(T)) + Δ(T)` (FFJORD's `logp_x = logp_z − Δlogp` with its
/// `Δlogp = −Δ`). Forward and inverse are exact inverses only up to the solver tolerance.
///
/// ## Trace
///
/// - `trace = "exact"` (default): `tr(∂g/∂z) = Σᵢ eᵢᵀ J eᵢ` by forward-mode differentiation
///   through the network, all `D` unit directions at once (a `[rows·D]` tangent batch), so
///   O(D) times the cost of `g`; meant for small `D`.
/// - `trace = "hutchinson"`: `tr(J) ≈ εᵀ J ε` with one forward-mode (JVP) pass `J ε` per
///   evaluation. `ε` (`probe = "gaussian"`: N(0, I); `"rademacher"`: ±1) is drawn once per solve
///   and row and held fixed over the whole integration (as FFJORD), from Philox stream
///   ``RandomStream/probes`` keyed by `probe_seed`, counter row = the row's index within the
///   layer call. The log-determinant is then an unbiased estimate; the same row index gets the
///   same `ε` forward and inverse.
///
/// ## Solving
///
/// Each call is cut into fixed chunks of ``chunkRows`` rows (fewer for a large `D` with the
/// exact trace); each chunk is one ``ODESolver`` solve of the flat state `rows × (D + 1)`
/// (row-major `[z₁ … z_D, Δ]`), so the adaptive error norm covers the chunk and its `Δ` column.
/// Results hence depend on the chunking, which is deterministic (the runtime cuts batches into
/// fixed chunks too). When a solve fails (step limit, step-size underflow, non-finite state),
/// the chunk's rows and log-determinants become NaN — the protocol's `forward`/`inverse`
/// cannot throw, and a NaN log-density is how the engine reports an unusable evaluation.
///
/// ## Training
///
/// ``backward(input:count:gradient:logDetGradient:arena:)`` differentiates by the adjoint
/// method (`gradient = "adjoint"`, the default; memory independent of the number of solver
/// steps; see `ContinuousFlow+Adjoint.swift`; a training pass keeps the forward solve's `z(T)` as
/// the layer's tape, so the adjoint solve starts from it without solving forward again) or by backpropagation through the solver's
/// accepted steps (`gradient = "backprop"`; see `ContinuousFlow+Backprop.swift`). Optional RNODE
/// regularisers (`kinetic_energy`, `jacobian_norm`) shape the dynamics during training. With the
/// Hutchinson trace, ``Trainer`` sets ``probeDraw`` to the step number during each gradient
/// pass, so every training step sees fresh probes (as FFJORD), and back to 0 afterwards.
/// ``solverWork(reset:)`` counts the solves and their function evaluations (NFE).
public final class ContinuousFlow<Scalar: FlowScalar>: ConditionalLayer {
    public static var typeName: String { "cnf" }
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("hidden", .intList, "dynamics network hidden widths (default [64, 64, 64])"),
            HyperParameter("activation", .string, "\"tanh\" (default) or \"softplus\""),
            HyperParameter("end_time", .double, "integration time T > 0 (default 1)"),
            HyperParameter("solver", .string, "\"dopri5\" (default), \"rk4\" or \"euler\""),
            HyperParameter("rtol", .double, "relative tolerance of dopri5 (default 1e-5)"),
            HyperParameter("atol", .double, "absolute tolerance of dopri5 (default 1e-5)"),
            HyperParameter("max_steps", .int, "most solver steps per solve (default 10000)"),
            HyperParameter("step_size", .double, "largest step of rk4/euler (default 0.05; ignored by dopri5)"),
            HyperParameter("trace", .string, "\"exact\" (default) or \"hutchinson\""),
            HyperParameter("probe", .string, "Hutchinson probe: \"gaussian\" (default) or \"rademacher\""),
            HyperParameter("probe_seed", .int, "Philox key of the Hutchinson probes (default 0)"),
            HyperParameter("gradient", .string, "training gradients: \"adjoint\" (default) or \"backprop\" (through the solver's steps)"),
            HyperParameter("kinetic_energy", .double, "RNODE weight λ_K of ∫‖g‖² dt in the training loss (default 0)"),
            HyperParameter("jacobian_norm", .double, "RNODE weight λ_J of ∫‖∂g/∂z‖_F² dt in the training loss (default 0)"),
            .contextFeatures,
        ]
    }

    /// How the divergence `tr(∂g/∂z)` is computed.
    public enum TraceMode: String, CaseIterable, Sendable { case exact, hutchinson }
    /// The distribution of Hutchinson probes.
    public enum Probe: String, CaseIterable, Sendable { case gaussian, rademacher }


    /// Rows per ODE solve (the batch chunk), for the Hutchinson trace and small `D`.
    public static var chunkRows: Int { 64 }
    /// Largest `D` the exact trace accepts.
    public static var maxExactDimension: Int { 1024 }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    let net: ODENet<Scalar>
    public let endTime: Double
    public let solverOptions: ODESolver.Options
    /// The configured fixed step (stored even when the solver is adaptive).
    let stepSize: Double
    public let traceMode: TraceMode
    public let probe: Probe
    public let probeSeed: Int
    /// How training gradients are computed.
    public let gradientMode: GradientMode
    /// RNODE kinetic-energy weight λ_K (0: off).
    public let kineticEnergy: Double
    /// RNODE Jacobian-Frobenius weight λ_J (0: off).
    public let jacobianNorm: Double
    /// Context scalars per row the dynamics read (0: an unconditional layer).
    public let contextFeatures: Int
    /// Which independent draw of Hutchinson probes the layer uses: probe row = row index +
    /// `probeDraw · 2⁴⁰`. 0 (evaluation, sampling, saved models) unless ``Trainer`` is inside a
    /// gradient pass. Not synchronised: only set it with exclusive access to the flow.
    public var probeDraw: UInt64 = 0
    /// The solves of this layer since the last ``solverWork(reset:)`` with `reset`.
    let work = SolverWorkCounter()

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        let d = eventShape.reduce(1, *)
        guard d >= 1 else { throw FlowError.invalidSpec("cnf: the event must have at least one feature") }
        let (hidden, activation) = try MLP<Scalar>.settings(config, context: "cnf", defaultHidden: [64, 64, 64],
                                                           defaultActivation: .tanh, allowed: [.tanh, .softplus])
        let t = config.double("end_time", default: 1)
        guard t.isFinite, t > 0 else { throw FlowError.invalidSpec("cnf: end_time must be positive and finite (got \(t))") }
        let solverName = config.string("solver", default: "dopri5")
        guard let method = ODESolver.Method(rawValue: solverName) else {
            throw FlowError.invalidSpec("cnf: unknown solver \"\(solverName)\" (known: \(ODESolver.Method.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let h = config.double("step_size", default: 0.05)
        let options = ODESolver.Options(method: method, rtol: config.double("rtol", default: 1e-5),
                                        atol: config.double("atol", default: 1e-5),
                                        maxSteps: config.int("max_steps", default: 10_000),
                                        stepSize: method.isAdaptive ? nil : h)
        do {
            try options.validate()
        } catch let e as FlowError {
            throw FlowError.invalidSpec("cnf: " + e.message)
        }
        guard h.isFinite, h > 0 else { throw FlowError.invalidSpec("cnf: step_size must be positive and finite (got \(h))") }
        // Bounded work per solve: at most Limits.maxSolverSteps steps (dopri5: attempted steps,
        // NFE ≤ 2 + 6·max_steps), and a fixed step that reaches end_time within max_steps.
        guard options.maxSteps <= Limits.maxSolverSteps else {
            throw FlowError.limitExceeded("cnf: max_steps \(options.maxSteps) exceeds the limit of \(Limits.maxSolverSteps)")
        }
        if !method.isAdaptive, (t / h).rounded(.up) > Double(options.maxSteps) {
            throw FlowError.invalidSpec("cnf: end_time \(t) with step_size \(h) needs \((t / h).rounded(.up)) steps, more than "
                + "max_steps \(options.maxSteps)")
        }
        let traceName = config.string("trace", default: "exact")
        guard let trace = TraceMode(rawValue: traceName) else {
            throw FlowError.invalidSpec("cnf: trace must be \"exact\" or \"hutchinson\", got \"\(traceName)\"")
        }
        let probeName = config.string("probe", default: "gaussian")
        guard let probe = Probe(rawValue: probeName) else {
            throw FlowError.invalidSpec("cnf: probe must be \"gaussian\" or \"rademacher\", got \"\(probeName)\"")
        }
        if trace == .exact, d > Self.maxExactDimension {
            throw FlowError.limitExceeded("cnf: the exact trace costs O(D) network passes; D = \(d) exceeds \(Self.maxExactDimension) (use \"trace\": \"hutchinson\")")
        }
        let gradientName = config.string("gradient", default: "adjoint")
        guard let mode = GradientMode(rawValue: gradientName) else {
            throw FlowError.invalidSpec("cnf: gradient must be \"adjoint\" or \"backprop\", got \"\(gradientName)\"")
        }
        let lambdaK = config.double("kinetic_energy", default: 0), lambdaJ = config.double("jacobian_norm", default: 0)
        guard lambdaK.isFinite, lambdaK >= 0, lambdaJ.isFinite, lambdaJ >= 0 else {
            throw FlowError.invalidSpec("cnf: kinetic_energy and jacobian_norm must be finite and non-negative (got \(lambdaK), \(lambdaJ))")
        }
        let c = try config.contextFeatures(context: "cnf")
        gradientMode = mode
        contextFeatures = c
        kineticEnergy = lambdaK
        jacobianNorm = lambdaJ
        inputShape = eventShape
        endTime = t
        solverOptions = options
        stepSize = h
        traceMode = trace
        self.probe = probe
        probeSeed = config.int("probe_seed", default: 0)
        net = try ODENet.checked(widths: [d] + hidden + [d], activation: activation, contextFeatures: c, seed: seed,
                                 context: "cnf")
    }

    public var config: [String: JSONValue] {
        var config: [String: JSONValue] = [
            "type": .string(Self.typeName),
            "hidden": JSONValue(Array(net.widths.dropFirst().dropLast())),
            "activation": .string(net.activation.rawValue),
            "end_time": .number(endTime),
            "solver": .string(solverOptions.method.rawValue),
            "rtol": .number(solverOptions.rtol),
            "atol": .number(solverOptions.atol),
            "max_steps": .number(Double(solverOptions.maxSteps)),
            "step_size": .number(stepSize),
            "trace": .string(traceMode.rawValue),
            "probe": .string(probe.rawValue),
            "probe_seed": .number(Double(probeSeed)),
            "gradient": .string(gradientMode.rawValue),
            "kinetic_energy": .number(kineticEnergy),
            "jacobian_norm": .number(jacobianNorm),
        ]
        // Absent when 0, so unconditional layers keep their specs and files.
        if contextFeatures > 0 { config["context_features"] = .number(Double(contextFeatures)) }
        return config
    }

    public var parameters: [Parameter<Scalar>] { net.parameters }

    /// What this layer's solves have cost since the last call with `reset` (or since it was
    /// built). Thread-safe.
    public func solverWork(reset: Bool = false) -> SolverWork { work.read(reset: reset) }

    public func parametersDidChange() { net.repack() }

    var dimension: Int { net.dimension }

    /// Tangent directions per row: `D` (exact) or 1 (Hutchinson).
    var directions: Int { traceMode == .exact ? dimension : 1 }

    /// Rows per solve: ``chunkRows``, fewer for the exact trace at large `D` (bounds the
    /// `rows · D · width` tangent scratch).
    var rowsPerSolve: Int {
        traceMode == .exact ? Swift.max(1, Swift.min(Self.chunkRows, 4096 / dimension)) : Self.chunkRows
    }

    /// Scratch of one chunk of `rows` rows: the augmented state, the solver's stage buffers, the
    /// tangent inputs (`D + C` wide) and outputs, the network's scratch, (Rademacher) the uniform
    /// draws and (with a context) the first layer's per-row bias.
    func chunkBytes(rows: Int) -> Int {
        let d = dimension, k = directions, n = rows * (d + 1)
        return Arena.bytes(Scalar.self, n)
            + ODESolver.workspaceBytes(Scalar.self, count: n, method: solverOptions.method)
            + Arena.bytes(Scalar.self, rows * k * net.inputWidth) + Arena.bytes(Scalar.self, rows * k * d)
            + net.scratchBytes(rows: rows, directions: k)
            + Arena.bytes(Double.self, d)
            + net.contextBiasBytes(rows: rows)
    }

    public func workspaceBytes(count: Int) -> Int {
        count > 0 ? chunkBytes(rows: Swift.min(count, rowsPerSolve)) : 0
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        integrate(x, count: count, context: nil, logDet: logDet, arena: &arena, from: 0, to: endTime)
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        integrate(z, count: count, context: nil, logDet: logDet, arena: &arena, from: endTime, to: 0)
    }

    /// ``forward(_:count:logDet:arena:)`` along the dynamics at the context rows `context`
    /// (`count × C`; nil: zeros).
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        integrate(x, count: count, context: context, logDet: logDet, arena: &arena, from: 0, to: endTime)
    }

    /// ``inverse(_:count:logDet:arena:)`` along the dynamics at the context rows `context`
    /// (`count × C`; nil: zeros).
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        integrate(z, count: count, context: context, logDet: logDet, arena: &arena, from: endTime, to: 0)
    }

    /// The dynamics `g` and the divergence estimate of each row at `t`, for tests and tools:
    /// `out` gets `[g(z, t, c), tr]` per row (`rows × (D+1)`); `rowOffset` is the probe row of the
    /// first row (Hutchinson); `context`: `rows × C` (nil: zeros). NaN everywhere when the scratch
    /// cannot be allocated.
    func augmentedDynamics(t: Scalar, _ z: [Scalar], rows: Int, rowOffset: Int = 0, context: [Scalar]? = nil) -> [Scalar] {
        let d = dimension, n1 = d + 1
        var state = [Scalar](repeating: 0, count: rows * n1)
        for r in 0..<rows { for j in 0..<d { state[r * n1 + j] = z[r * d + j] } }
        var out = state
        let ws = Workspace()
        guard (try? ws.reserve(bytes: chunkBytes(rows: rows))) != nil else { return [Scalar](repeating: .nan, count: rows * n1) }
        var arena = ws.arena()
        func evaluate(_ c: UnsafePointer<Scalar>?) {
            let f = makeDynamics(rows: rows, rowOffset: rowOffset, context: c, arena: &arena)
            state.withUnsafeBufferPointer { s in
                out.withUnsafeMutableBufferPointer { o in
                    try? f(t, s.baseAddress!, o.baseAddress!, rows * n1)
                }
            }
        }
        if let context {
            context.withUnsafeBufferPointer { evaluate($0.baseAddress) }
        } else {
            evaluate(nil)
        }
        return out
    }

    /// Sets up the probes, scratch and (with a context) the first layer's per-row bias of a
    /// chunk of `rows` rows at the context rows `context` (`rows × C`; nil: zeros) and returns
    /// the augmented dynamics `[z, Δ] ↦ [g(z, t, c), tr(∂g/∂z)]` over it.
    func makeDynamics(rows: Int, rowOffset: Int, context: UnsafePointer<Scalar>?,
                      arena: inout Arena) -> ODESolver.Dynamics<Scalar> {
        let d = dimension, n1 = d + 1, k = directions, width = net.inputWidth
        let v = arena.take(Scalar.self, rows * k * width)
        let jv = arena.take(Scalar.self, rows * k * d)
        let uniforms = arena.take(Double.self, d)
        fillProbes(v, rows: rows, rowOffset: rowOffset, uniforms: uniforms)
        let scratch = net.takeScratch(rows: rows, directions: k, arena: &arena)
        let contextBias: UnsafePointer<Scalar>?
        if contextFeatures > 0 {
            let bias = arena.take(Scalar.self, rows * net.widths[1])
            net.contextBias(context, rows: rows, into: bias)
            contextBias = UnsafePointer(bias)
        } else {
            contextBias = nil
        }
        let net = self.net, mode = traceMode
        let scope = CallScope.current
        return { t, y, dy, _ in
            // A cancelled call (sf_cancel) stops its solves at the next function evaluation.
            if let scope, scope.isStopped { throw FlowError.cancelled("the ODE solve was cancelled") }
            net.evaluate(t: t, y, ldz: n1, rows: rows, into: dy, ldo: n1, tangents: UnsafePointer(v), directions: k,
                         tangentOut: jv, contextBias: contextBias, scratch: scratch)
            for r in 0..<rows {
                var tr: Scalar = 0
                switch mode {
                case .exact:
                    for i in 0..<d { tr += jv[(r * d + i) * d + i] }
                case .hutchinson:
                    for j in 0..<d { tr += v[r * width + j] * jv[r * d + j] }
                }
                dy[r * n1 + d] = tr
            }
        }
    }

    /// Solves the augmented state `[z, Δ]` of one chunk (`rows × (D+1)`, in place) from `t0` to
    /// `t1` with the probes of rows `rowOffset…` at the chunk's context rows `context`
    /// (`rows × C`; nil: zeros); false when the solver failed. Scratch:
    /// ``chunkBytes(rows:)`` minus the state. The forward and inverse passes and the gradient
    /// passes all solve through here, so their chunks and probes agree.
    func solveChunk(_ state: UnsafeMutablePointer<Scalar>, rows: Int, rowOffset: Int, context: UnsafePointer<Scalar>?,
                    from t0: Double, to t1: Double, arena: inout Arena,
                    onAcceptedStep: ODESolver.StepObserver<Scalar>? = nil) -> Bool {
        let dynamics = makeDynamics(rows: rows, rowOffset: rowOffset, context: context, arena: &arena)
        do {
            let statistics = try ODESolver.solve(state, count: rows * (dimension + 1), from: Scalar(t0), to: Scalar(t1),
                                                 options: solverOptions, arena: &arena, onAcceptedStep: onAcceptedStep,
                                                 dynamics: dynamics)
            work.add(state: statistics)
            return true
        } catch {
            return false
        }
    }

    /// Solves every chunk of the call from `t0` to `t1` at its context rows (`count × C`; nil:
    /// zeros), adding `Δ(t1)` to `logDet`.
    private func integrate(_ x: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                           logDet: UnsafeMutablePointer<Double>, arena: inout Arena, from t0: Double, to t1: Double) {
        let d = dimension, n1 = d + 1, chunk = rowsPerSolve, c = contextFeatures
        var start = 0
        while start < count {
            let rows = Swift.min(chunk, count - start)
            var local = arena  // every chunk reuses the same scratch
            let state = local.take(Scalar.self, rows * n1)
            for r in 0..<rows {
                (state + r * n1).update(from: x + (start + r) * d, count: d)
                state[r * n1 + d] = 0
            }
            let ok = solveChunk(state, rows: rows, rowOffset: start, context: context.map { $0 + start * c },
                                from: t0, to: t1, arena: &local)
            for r in 0..<rows {
                let out = x + (start + r) * d
                if ok {
                    out.update(from: state + r * n1, count: d)
                    logDet[start + r] += Double(state[r * n1 + d])
                } else {
                    out.update(repeating: .nan, count: d)
                    logDet[start + r] = .nan
                }
            }
            start += rows
        }
    }
}
