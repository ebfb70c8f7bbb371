/// Explicit Runge–Kutta solvers for `dy/dt = f(t, y)` over a flat batch state, the integrators
/// under continuous flows (FFJORD): adaptive Dormand–Prince 5(4), fixed-step classical RK4, and
/// fixed-step explicit Euler (for tests and baselines).
///
/// ## State and dynamics
///
/// The state is one flat array of `count` scalars — typically a batch of `rows` samples of
/// `D + 1` values (`[z, Δlog p]`), row-major — and the dynamics is evaluated on the whole of it
/// at once: `dynamics(t, y, dy, count)` writes `dy[i] = fᵢ(t, y)` for `i < count`. `y` and `dy`
/// never alias, and `dy` holds garbage on entry. The dynamics may throw (e.g.
/// ``FlowError/cancelled(_:)``); the error is passed through unchanged.
///
/// ## Direction
///
/// `t1` may be smaller than `t0`: the solver then integrates backward in time (the inverse of a
/// continuous flow, the adjoint pass). Step sizes are magnitudes; the sign comes from
/// `t1 − t0`. Time is kept in `Double` inside the solver whatever the `Scalar`, and the end
/// point is hit exactly (the last step is shortened; no dense-output interpolation).
///
/// ## Memory
///
/// All scratch (the seven Dormand–Prince stages and one stage-input buffer; three buffers for
/// RK4, one for Euler) is carved once per solve from the caller's ``Arena`` — reserve
/// ``workspaceBytes(_:count:method:)`` — so no step allocates.
///
/// ## Error norm (adaptive method)
///
/// A step's error ratio is the RMS norm of Hairer, Nørsett & Wanner (1993, eq. II.4.11), which is
/// also torchdiffeq's default `_rms_norm`:
///
///     err = sqrt( (1/n) Σᵢ ( eᵢ / (atol + rtol · max(|y0ᵢ|, |y1ᵢ|)) )² )
///
/// over **the whole state** (all `count` scalars, the batch included), and the step is accepted
/// when `err ≤ 1`. Because one norm covers the batch, the steps taken — and hence the result, to
/// within the tolerance — depend on which samples are solved together. Callers that need
/// reproducible results must solve fixed, deterministic chunks (as torchdiffeq effectively does
/// per call).
///
/// ## Step-size control
///
/// `h_new = h · min(facmax, max(0.2, 0.9 · err^(−1/5)))` (`h_new = 10·h` when `err = 0`) with
/// ``safety`` 0.9, ``minFactor`` 0.2 and ``maxFactor`` 10, exponent `1/5` = `1/(q+1)` for the
/// embedded order `q = 4`. As in Hairer's DOPRI5 (and unlike torchdiffeq), `facmax` drops to 1
/// for the step right after a rejection, and an accepted step with `err` just below 1 may
/// shrink the next one (to no less than 0.9·h). A step whose trial state or error is not finite
/// is rejected and shrunk by ``minFactor``; if the step falls below the resolution of the time
/// variable the solve fails with ``FlowError/numerical(_:)``. Steps never exceed `|t1 − t0|`.
///
/// ## Differences from torchdiffeq's `dopri5`
///
/// Same tableau, norm formula, safety, factor bounds and starting-step heuristic, but: the last
/// step is shortened to land on `t1` (torchdiffeq steps past it and interpolates), the
/// controller details above, and for a *tuple* state such as FFJORD's `(z, Δlog p)` torchdiffeq
/// takes the maximum of the per-tensor RMS norms, whereas this solver takes one RMS norm over
/// the flat state (so a `Δlog p` column weighs `1/(D+1)` of it).
///
/// ## References
///
/// - J. R. Dormand, P. J. Prince, "A family of embedded Runge–Kutta formulae", *Journal of
///   Computational and Applied Mathematics* 6(1), 19–26 (1980).
/// - E. Hairer, S. P. Nørsett, G. Wanner, *Solving Ordinary Differential Equations I: Nonstiff
///   Problems*, 2nd ed., Springer (1993): §II.4 (automatic step-size control, starting step
///   size), §II.5 (Table 5.2, the DOPRI5 tableau).
/// - R. T. Q. Chen, torchdiffeq (`rk_common.py`, `misc.py`): the reference the FFJORD
///   experiments use.
public enum ODESolver {
    /// The integration scheme.
    public enum Method: String, CaseIterable, Sendable {
        /// Dormand–Prince 5(4): adaptive, 5th-order solution, embedded 4th-order error estimate,
        /// FSAL (6 evaluations per attempted step). The default.
        case dopri5
        /// Classical 4th-order Runge–Kutta with a fixed step (4 evaluations per step).
        case rk4
        /// Explicit Euler with a fixed step (1 evaluation per step). First order; for tests.
        case euler

        /// Evaluations per step (per attempted step for ``dopri5``).
        public var evaluationsPerStep: Int {
            switch self {
            case .dopri5: return 6
            case .rk4: return 4
            case .euler: return 1
            }
        }

        /// Whether the method chooses its own steps from ``Options/rtol`` and ``Options/atol``.
        public var isAdaptive: Bool { self == .dopri5 }
    }

    /// How to solve. Plain values; ``validate()`` checks them (``solve(_:count:from:to:options:arena:dynamics:)``
    /// calls it).
    public struct Options: Equatable, Sendable {
        /// The scheme; ``Method/dopri5`` by default.
        public var method: Method
        /// Relative tolerance of the adaptive method (default `1e-5`, FFJORD's setting).
        /// Tolerances far below the scalar's precision (`rtol < ~1e-6` in `Float`) cannot be met
        /// and end in the step limit or a step-size underflow.
        public var rtol: Double
        /// Absolute tolerance of the adaptive method (default `1e-5`, FFJORD's setting).
        /// `atol = 0` (pure relative control) is only sensible when no component of the state
        /// passes through zero.
        public var atol: Double
        /// Most steps one solve may take: attempted steps (accepted + rejected) for
        /// ``Method/dopri5``, steps for the fixed-step methods. Default 10,000. Bounds the work:
        /// `NFE ≤ 2 + 6 · maxSteps` for DOPRI5.
        public var maxSteps: Int
        /// The step magnitude of ``Method/rk4`` and ``Method/euler`` (required for them). The
        /// interval is cut into `n = ⌈|t1 − t0| / stepSize⌉` equal steps, so the step actually
        /// taken is `|t1 − t0| / n ≤ stepSize` and the grid ends exactly on `t1` (torchdiffeq
        /// instead keeps `stepSize` and shortens the last step). Ignored by ``Method/dopri5``.
        public var stepSize: Double?
        /// The first step magnitude of ``Method/dopri5``, replacing the Hairer–Nørsett–Wanner
        /// starting-step heuristic (and saving its one evaluation). Clipped to `|t1 − t0|`.
        /// Ignored by the fixed-step methods.
        public var firstStep: Double?

        public init(method: Method = .dopri5, rtol: Double = 1e-5, atol: Double = 1e-5,
                    maxSteps: Int = 10_000, stepSize: Double? = nil, firstStep: Double? = nil) {
            self.method = method
            self.rtol = rtol
            self.atol = atol
            self.maxSteps = maxSteps
            self.stepSize = stepSize
            self.firstStep = firstStep
        }

        /// Adaptive Dormand–Prince 5(4) with the given tolerances.
        public static func dopri5(rtol: Double = 1e-5, atol: Double = 1e-5, maxSteps: Int = 10_000,
                                  firstStep: Double? = nil) -> Options {
            Options(method: .dopri5, rtol: rtol, atol: atol, maxSteps: maxSteps, firstStep: firstStep)
        }

        /// Classical RK4 with steps of at most `stepSize`.
        public static func rk4(stepSize: Double, maxSteps: Int = 10_000) -> Options {
            Options(method: .rk4, maxSteps: maxSteps, stepSize: stepSize)
        }

        /// Explicit Euler with steps of at most `stepSize`.
        public static func euler(stepSize: Double, maxSteps: Int = 10_000) -> Options {
            Options(method: .euler, maxSteps: maxSteps, stepSize: stepSize)
        }

        /// Throws ``FlowError/invalidArgument(_:)`` for unusable settings: negative or non-finite
        /// tolerances, both tolerances zero, `maxSteps < 1`, a missing or non-positive
        /// `stepSize` for a fixed-step method, a non-positive `firstStep`.
        public func validate() throws {
            if method.isAdaptive {
                guard rtol.isFinite, rtol >= 0, atol.isFinite, atol >= 0 else {
                    throw FlowError.invalidArgument(
                        "ODE solver: rtol and atol must be finite and non-negative (rtol = \(rtol), atol = \(atol))")
                }
                guard rtol > 0 || atol > 0 else {
                    throw FlowError.invalidArgument("ODE solver: rtol and atol cannot both be zero")
                }
                if let h = firstStep, !(h.isFinite && h > 0) {
                    throw FlowError.invalidArgument("ODE solver: first_step must be positive and finite (got \(h))")
                }
            } else {
                guard let h = stepSize else {
                    throw FlowError.invalidArgument("ODE solver: method \(method.rawValue) needs a step_size")
                }
                guard h.isFinite, h > 0 else {
                    throw FlowError.invalidArgument("ODE solver: step_size must be positive and finite (got \(h))")
                }
            }
            guard maxSteps >= 1 else {
                throw FlowError.invalidArgument("ODE solver: max_steps must be at least 1 (got \(maxSteps))")
            }
        }
    }

    /// What one solve cost. Add the statistics of several solves (e.g. the chunks of a batch)
    /// with `+` / `+=`.
    ///
    /// For ``Method/dopri5`` the evaluation count is exact:
    ///
    ///     functionEvaluations = 1 + (heuristic ? 1 : 0) + 6 · (acceptedSteps + rejectedSteps)
    ///
    /// — one evaluation at `(t0, y0)` (whose result is the first stage of the first step), one
    /// more for the starting-step heuristic unless ``Options/firstStep`` is set, and six per
    /// attempted step (stages 2…7; stage 7 at the new point is the next step's stage 1, FSAL,
    /// and a rejected step keeps its stage 1). RK4: `4 · acceptedSteps`; Euler: `acceptedSteps`.
    /// A solve with `t0 == t1` or `count == 0` costs nothing.
    public struct Statistics: Equatable, Sendable, CustomStringConvertible {
        /// Calls of the dynamics (NFE).
        public var functionEvaluations = 0
        /// Steps kept.
        public var acceptedSteps = 0
        /// Steps tried and discarded (error too large or non-finite). Always 0 for fixed steps.
        public var rejectedSteps = 0
        /// The adaptive solver's proposal for the step after the last one (a magnitude; 0 for the
        /// fixed-step methods). Passing it as ``Options/firstStep`` to a following solve of a
        /// similar problem skips the heuristic. For a sum of statistics: the last operand's.
        public var nextStepSize = 0.0

        public init() {}

        /// Attempted steps (accepted + rejected).
        public var steps: Int { acceptedSteps + rejectedSteps }

        public static func + (a: Statistics, b: Statistics) -> Statistics {
            var s = a
            s += b
            return s
        }

        public static func += (a: inout Statistics, b: Statistics) {
            a.functionEvaluations += b.functionEvaluations
            a.acceptedSteps += b.acceptedSteps
            a.rejectedSteps += b.rejectedSteps
            a.nextStepSize = b.nextStepSize
        }

        public var description: String {
            "NFE \(functionEvaluations), \(acceptedSteps) accepted, \(rejectedSteps) rejected steps"
        }
    }

    /// The dynamics `f`: `(t, y, dy, count)` writes `dy[0..<count] = f(t, y[0..<count])`.
    public typealias Dynamics<T: FlowScalar> =
        (_ t: T, _ y: UnsafePointer<T>, _ dy: UnsafeMutablePointer<T>, _ count: Int) throws -> Void

    /// Called once per accepted step, before the state moves: `(t, h, y)` with the step's start
    /// time, its signed size and the state `y(t)` (valid only during the call). Backpropagation
    /// through the solver records the trajectory with it.
    public typealias StepObserver<T: FlowScalar> = (_ t: Double, _ h: Double, _ y: UnsafePointer<T>) -> Void

    /// Safety factor of the step-size controller (Hairer's `fac`, torchdiffeq's `safety`).
    public static let safety = 0.9
    /// Smallest step-size factor per step (Hairer's `fac1` = 0.2, torchdiffeq's `dfactor`).
    public static let minFactor = 0.2
    /// Largest step-size factor per step (Hairer's `fac2` = 10, torchdiffeq's `ifactor`).
    public static let maxFactor = 10.0

    /// Scratch bytes one solve of `count` scalars with `method` takes from its arena.
    public static func workspaceBytes<T: FlowScalar>(_: T.Type, count: Int, method: Method) -> Int {
        let buffers: Int
        switch method {
        case .dopri5: buffers = DormandPrince.bufferCount
        case .rk4: buffers = FixedStep.rk4BufferCount
        case .euler: buffers = FixedStep.eulerBufferCount
        }
        return buffers * Arena.bytes(T.self, count)
    }

    /// Integrates `dy/dt = f(t, y)` from `t0` to `t1` in place: `y` holds `y(t0)` on entry and
    /// `y(t1)` on return (unchanged when the solve throws before its first accepted step; a
    /// partially advanced state otherwise).
    ///
    /// - Parameters:
    ///   - y: `count` scalars of state.
    ///   - t0: Start time. `t1 < t0` integrates backward.
    ///   - t1: End time, reached exactly.
    ///   - options: Method, tolerances, limits (validated first).
    ///   - arena: Scratch source with ``workspaceBytes(_:count:method:)`` bytes left.
    ///   - errorControlled: How many leading components of the state the adaptive error norm
    ///     (and the starting-step heuristic) covers; `nil` = all. The remaining components are
    ///     integrated with the same stages but do not steer the step size — the *seminorm* of
    ///     Kidger, Chen & Lyons, "'Hey, that's not an ODE': Faster ODE Adjoints via Seminorms"
    ///     (ICML 2021), meant for quadrature components whose derivative does not depend on
    ///     them (the parameter gradient of the adjoint method).
    ///   - onAcceptedStep: Observer of every accepted step (see ``StepObserver``).
    ///   - dynamics: `f`, evaluated on the whole state.
    /// - Returns: Evaluation and step counts.
    /// - Throws: ``FlowError/invalidArgument(_:)`` for bad options, a negative count or
    ///   non-finite times; ``FlowError/numerical(_:)`` when `y(t0)` or a derivative at an
    ///   accepted point is not finite, the step limit is exceeded ("… exceeded N steps at t = …;
    ///   loosen rtol/atol or raise max_steps"), or the adaptive step size underflows; whatever
    ///   `dynamics` throws.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public static func solve<T: FlowScalar>(
        _ y: UnsafeMutablePointer<T>, count: Int, from t0: T, to t1: T,
        options: Options, arena: inout Arena, errorControlled: Int? = nil,
        onAcceptedStep: StepObserver<T>? = nil, dynamics: Dynamics<T>
    ) throws -> Statistics {
        try options.validate()
        guard count >= 0 else {
            throw FlowError.invalidArgument("ODE solver: negative state size \(count)")
        }
        guard t0.isFinite, t1.isFinite else {
            throw FlowError.invalidArgument("ODE solver: times must be finite (t0 = \(t0), t1 = \(t1))")
        }
        if let m = errorControlled {
            guard (1...Swift.max(count, 1)).contains(m) else {
                throw FlowError.invalidArgument("ODE solver: errorControlled = \(m) must be in 1...\(count)")
            }
        }
        if count == 0 || t0 == t1 { return Statistics() }
        switch options.method {
        case .dopri5:
            return try DormandPrince.integrate(y, count: count, from: Double(t0), to: Double(t1),
                                               options: options, arena: &arena, errorControlled: errorControlled ?? count,
                                               onAcceptedStep: onAcceptedStep, dynamics: dynamics)
        case .rk4, .euler:
            return try FixedStep.integrate(y, count: count, from: Double(t0), to: Double(t1),
                                           options: options, arena: &arena, onAcceptedStep: onAcceptedStep,
                                           dynamics: dynamics)
        }
    }

    /// ``solve(_:count:from:to:options:arena:dynamics:)`` with scratch allocated for this call
    /// (once, not per step). For tests and one-off solves; hot paths pass a reused arena.
    public static func solve<T: FlowScalar>(
        _ y: UnsafeMutablePointer<T>, count: Int, from t0: T, to t1: T,
        options: Options, dynamics: Dynamics<T>
    ) throws -> Statistics {
        let workspace = Workspace()
        try workspace.reserve(bytes: workspaceBytes(T.self, count: Swift.max(count, 0), method: options.method))
        var arena = workspace.arena()
        return try solve(y, count: count, from: t0, to: t1, options: options, arena: &arena, dynamics: dynamics)
    }
}

// MARK: - Shared helpers

extension ODESolver {
    /// `true` when every one of the `count` values is finite.
    @inline(__always)
    static func allFinite<T: FlowScalar>(_ p: UnsafePointer<T>, _ count: Int) -> Bool {
        // A sum of magnitudes in Double is finite exactly when every term is (Float and Double
        // magnitudes cannot overflow a Double sum of realistic length).
        var s = 0.0
        for i in 0..<count { s += Double(p[i].magnitude) }
        return s.isFinite
    }

    /// The step-limit error every method reports.
    static func stepLimitError(_ method: Method, maxSteps: Int, t: Double, t0: Double, t1: Double) -> FlowError {
        .numerical("ODE solver (\(method.rawValue)) exceeded \(maxSteps) steps at t = \(t) "
            + "while integrating from t = \(t0) to \(t1); loosen rtol/atol or raise max_steps")
    }
}
