/// Fixed-step explicit Runge–Kutta methods: the classical 4th-order method (RK4) and explicit
/// Euler (Hairer, Nørsett & Wanner 1993, §II.1).
///
///     RK4:   k1 = f(t, y)            k2 = f(t + h/2, y + h/2·k1)
///            k3 = f(t + h/2, y + h/2·k2)   k4 = f(t + h, y + h·k3)
///            y ← y + h·(k1/6 + k2/3 + k3/3 + k4/6)        (4 evaluations, global error O(h⁴))
///     Euler: y ← y + h·f(t, y)                            (1 evaluation,  global error O(h))
///
/// The interval is cut into `n = ⌈|t1 − t0| / stepSize⌉` equal steps `h = (t1 − t0)/n` (a
/// quotient within a relative 1e-9 of an integer counts as that integer, so `1 / 0.1` is 10
/// steps); the grid ends exactly on `t1`. RK4 accumulates the weighted stages as it goes, so it
/// needs three buffers (accumulator, stage input, stage), Euler one.
enum FixedStep {
    static let rk4BufferCount = 3
    static let eulerBufferCount = 1

    /// Steps of at most `stepSize` covering `span`, or nil when that is more than `limit` (or
    /// than 10¹⁵, whatever the limit).
    static func stepCount(span: Double, stepSize: Double, limit: Int) -> Int? {
        let q = span / stepSize
        guard q.isFinite, q <= Swift.min(Double(limit) * (1 + 1e-9), 1e15) else { return nil }
        let down = q.rounded(.down)
        let n = q - down <= 1e-9 * q ? Swift.max(1, Int(down)) : Int(q.rounded(.up))
        return n <= limit ? n : nil
    }

    /// The fixed-step solve behind ``ODESolver/solve(_:count:from:to:options:arena:dynamics:)``
    /// (options validated, `count > 0`, `t0 ≠ t1`, both finite).
    @_specialize(where T == Float) @_specialize(where T == Double)
    static func integrate<T: FlowScalar>(
        _ y: UnsafeMutablePointer<T>, count n: Int, from t0: Double, to t1: Double,
        options: ODESolver.Options, arena: inout Arena, onAcceptedStep: ODESolver.StepObserver<T>? = nil,
        dynamics: ODESolver.Dynamics<T>
    ) throws -> ODESolver.Statistics {
        let method = options.method
        let stepSize = options.stepSize!  // validated
        guard let steps = stepCount(span: abs(t1 - t0), stepSize: stepSize, limit: options.maxSteps) else {
            let q = (abs(t1 - t0) / stepSize).rounded(.up)
            let needed = q < 1e18 ? "\(Int(q))" : "\(q)"
            throw FlowError.numerical(
                "ODE solver (\(method.rawValue)) exceeded \(options.maxSteps) steps at t = \(t0): "
                + "integrating from t = \(t0) to \(t1) with step_size \(stepSize) needs \(needed) steps; "
                + "raise step_size or max_steps")
        }
        guard ODESolver.allFinite(y, n) else {
            throw FlowError.numerical("ODE solver (\(method.rawValue)): the initial state at t = \(t0) is not finite")
        }
        let dt = (t1 - t0) / Double(steps)
        switch method {
        case .rk4:
            try rk4(y, count: n, t0: t0, dt: dt, steps: steps, arena: &arena, observer: onAcceptedStep, dynamics: dynamics)
        case .euler:
            try euler(y, count: n, t0: t0, dt: dt, steps: steps, arena: &arena, observer: onAcceptedStep, dynamics: dynamics)
        case .dopri5:
            preconditionFailure("dopri5 is adaptive")
        }
        var stats = ODESolver.Statistics()
        stats.acceptedSteps = steps
        stats.functionEvaluations = steps * method.evaluationsPerStep
        return stats
    }

    @_specialize(where T == Float) @_specialize(where T == Double)
    static func rk4<T: FlowScalar>(
        _ y: UnsafeMutablePointer<T>, count n: Int, t0: Double, dt: Double, steps: Int,
        arena: inout Arena, observer: ODESolver.StepObserver<T>?, dynamics: ODESolver.Dynamics<T>
    ) throws {
        let acc = arena.take(T.self, n), ys = arena.take(T.self, n), k = arena.take(T.self, n)
        let h = T(dt), half = T(dt / 2), sixth = T(dt / 6), third = T(dt / 3)
        for s in 0..<steps {
            let t = t0 + Double(s) * dt
            observer?(t, dt, y)
            try dynamics(T(t), y, k, n)
            for i in 0..<n {
                acc[i] = y[i] + sixth * k[i]
                ys[i] = y[i] + half * k[i]
            }
            try dynamics(T(t + dt / 2), ys, k, n)
            for i in 0..<n {
                acc[i] += third * k[i]
                ys[i] = y[i] + half * k[i]
            }
            try dynamics(T(t + dt / 2), ys, k, n)
            for i in 0..<n {
                acc[i] += third * k[i]
                ys[i] = y[i] + h * k[i]
            }
            try dynamics(T(t + dt), ys, k, n)
            var magnitude = 0.0
            for i in 0..<n {
                y[i] = acc[i] + sixth * k[i]
                magnitude += Double(y[i].magnitude)
            }
            guard magnitude.isFinite else { throw nonFinite(.rk4, t: t + dt, step: s, of: steps) }
        }
    }

    @_specialize(where T == Float) @_specialize(where T == Double)
    static func euler<T: FlowScalar>(
        _ y: UnsafeMutablePointer<T>, count n: Int, t0: Double, dt: Double, steps: Int,
        arena: inout Arena, observer: ODESolver.StepObserver<T>?, dynamics: ODESolver.Dynamics<T>
    ) throws {
        let k = arena.take(T.self, n)
        let h = T(dt)
        for s in 0..<steps {
            let t = t0 + Double(s) * dt
            observer?(t, dt, y)
            try dynamics(T(t), y, k, n)
            var magnitude = 0.0
            for i in 0..<n {
                y[i] += h * k[i]
                magnitude += Double(y[i].magnitude)
            }
            guard magnitude.isFinite else { throw nonFinite(.euler, t: t + dt, step: s, of: steps) }
        }
    }

    private static func nonFinite(_ method: ODESolver.Method, t: Double, step: Int, of steps: Int) -> FlowError {
        .numerical("ODE solver (\(method.rawValue)): the state became non-finite at t = \(t) "
            + "(step \(step + 1) of \(steps)); the dynamics returned non-finite values or the step is too large")
    }
}
