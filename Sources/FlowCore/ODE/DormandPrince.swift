import RealModule

/// Dormand–Prince 5(4) (DOPRI5): the 7-stage explicit Runge–Kutta pair of Dormand & Prince
/// (1980) in the form of Hairer, Nørsett & Wanner (1993, Table II.5.2) — the propagated solution
/// is the 5th-order one (local extrapolation), the embedded 4th-order solution only estimates
/// the error, and the last stage is evaluated at the new point, so it is the first stage of the
/// next step (FSAL).
///
/// Butcher tableau (exact rationals; `c` = row sums of `A`):
///
///     c     | A
///     0     |
///     1/5   | 1/5
///     3/10  | 3/40        9/40
///     4/5   | 44/45      −56/15      32/9
///     8/9   | 19372/6561 −25360/2187 64448/6561 −212/729
///     1     | 9017/3168  −355/33     46732/5247  49/176  −5103/18656
///     1     | 35/384      0          500/1113   125/192  −2187/6784    11/84
///     ------+---------------------------------------------------------------------------
///     b  (5)| 35/384      0          500/1113   125/192  −2187/6784    11/84      0
///     b̂  (4)| 5179/57600  0          7571/16695 393/640  −92097/339200 187/2100   1/40
///     b − b̂ | 71/57600    0         −71/16695   71/1920  −17253/339200 22/525    −1/40
///
/// The step's error estimate is `eᵢ = h · Σⱼ (bⱼ − b̂ⱼ) kⱼ,ᵢ` (stage 7 included), normed as
/// documented on ``ODESolver``.
enum DormandPrince {
    /// Scratch buffers of `count` scalars: stages k1…k7 and one stage-input / new-state buffer.
    static let bufferCount = 8

    /// Stage nodes `c₂…c₆` (`c₇ = 1`), in `Double` since time is kept in `Double`.
    static let c2 = 1.0 / 5, c3 = 3.0 / 10, c4 = 4.0 / 5, c5 = 8.0 / 9

    /// The tableau in the working precision, each entry a correctly rounded quotient of the
    /// exact rational.
    struct Coefficients<T: FlowScalar> {
        let a21: T
        let a31: T, a32: T
        let a41: T, a42: T, a43: T
        let a51: T, a52: T, a53: T, a54: T
        let a61: T, a62: T, a63: T, a64: T, a65: T
        /// 5th-order weights (= row 7 of `A`; `b₂ = b₇ = 0`).
        let b1: T, b3: T, b4: T, b5: T, b6: T
        /// Error weights `b − b̂` (`e₂ = 0`).
        let e1: T, e3: T, e4: T, e5: T, e6: T, e7: T

        init() {
            func q(_ n: Int, _ d: Int) -> T { T(n) / T(d) }
            a21 = q(1, 5)
            a31 = q(3, 40); a32 = q(9, 40)
            a41 = q(44, 45); a42 = q(-56, 15); a43 = q(32, 9)
            a51 = q(19372, 6561); a52 = q(-25360, 2187); a53 = q(64448, 6561); a54 = q(-212, 729)
            a61 = q(9017, 3168); a62 = q(-355, 33); a63 = q(46732, 5247); a64 = q(49, 176)
            a65 = q(-5103, 18656)
            b1 = q(35, 384); b3 = q(500, 1113); b4 = q(125, 192); b5 = q(-2187, 6784); b6 = q(11, 84)
            e1 = q(71, 57600); e3 = q(-71, 16695); e4 = q(71, 1920); e5 = q(-17253, 339200)
            e6 = q(22, 525); e7 = q(-1, 40)
        }

        /// Full `A` (7×7, strictly lower), `b`, `b̂` and `c`, for checking the order conditions.
        var tableau: (a: [[T]], b: [T], bHat: [T], c: [T]) {
            let a: [[T]] = [
                [0, 0, 0, 0, 0, 0, 0],
                [a21, 0, 0, 0, 0, 0, 0],
                [a31, a32, 0, 0, 0, 0, 0],
                [a41, a42, a43, 0, 0, 0, 0],
                [a51, a52, a53, a54, 0, 0, 0],
                [a61, a62, a63, a64, a65, 0, 0],
                [b1, 0, b3, b4, b5, b6, 0],
            ]
            let b: [T] = [b1, 0, b3, b4, b5, b6, 0]
            let e: [T] = [e1, 0, e3, e4, e5, e6, e7]
            let bHat = zip(b, e).map { $0 - $1 }
            let c: [T] = [0, T(c2), T(c3), T(c4), T(c5), 1, 1]
            return (a, b, bHat, c)
        }
    }

    /// The seven stage buffers.
    struct Stages<T> {
        var k1, k2, k3, k4, k5, k6, k7: UnsafeMutablePointer<T>
    }

    /// The adaptive solve behind ``ODESolver/solve(_:count:from:to:options:arena:dynamics:)``
    /// (options validated, `count > 0`, `t0 ≠ t1`, both finite).
    @_specialize(where T == Float) @_specialize(where T == Double)
    static func integrate<T: FlowScalar>(
        _ y: UnsafeMutablePointer<T>, count n: Int, from t0: Double, to t1: Double,
        options: ODESolver.Options, arena: inout Arena, errorControlled m: Int,
        onAcceptedStep: ODESolver.StepObserver<T>?, dynamics: ODESolver.Dynamics<T>
    ) throws -> ODESolver.Statistics {
        var k = Stages(k1: arena.take(T.self, n), k2: arena.take(T.self, n), k3: arena.take(T.self, n),
                       k4: arena.take(T.self, n), k5: arena.take(T.self, n), k6: arena.take(T.self, n),
                       k7: arena.take(T.self, n))
        let ys = arena.take(T.self, n)
        let coefficients = Coefficients<T>()
        let rtol = options.rtol, atol = options.atol
        let direction: Double = t1 > t0 ? 1 : -1
        let span = abs(t1 - t0)
        var stats = ODESolver.Statistics()

        guard ODESolver.allFinite(y, n) else {
            throw FlowError.numerical("ODE solver (dopri5): the initial state at t = \(t0) is not finite")
        }
        try dynamics(T(t0), y, k.k1, n)
        stats.functionEvaluations = 1
        guard ODESolver.allFinite(k.k1, n) else {
            throw FlowError.numerical("ODE solver (dopri5): the dynamics returned non-finite values at t = \(t0)")
        }

        var h: Double
        if let first = options.firstStep {
            h = Swift.min(first, span)
        } else {
            h = try initialStep(y, f0: k.k1, count: n, normed: m, t0: t0, direction: direction, span: span,
                                rtol: rtol, atol: atol, y1: ys, f1: k.k2, dynamics: dynamics)
            stats.functionEvaluations += 1
        }

        var t = t0
        var facmax = ODESolver.maxFactor
        while true {
            if stats.steps >= options.maxSteps {
                throw ODESolver.stepLimitError(.dopri5, maxSteps: options.maxSteps, t: t, t0: t0, t1: t1)
            }
            // Land exactly on t1; stretch by up to 1 % rather than leave a sliver (Hairer).
            let remaining = abs(t1 - t)
            let isLast = h * 1.01 >= remaining
            let step = isLast ? t1 - t : direction * h
            guard t + step != t else {
                throw FlowError.numerical(
                    "ODE solver (dopri5): step size underflow (h = \(abs(step))) at t = \(t) while "
                    + "integrating from t = \(t0) to \(t1); the solution may be blowing up, or the problem is "
                    + "too stiff for the tolerances")
            }

            let error = try attempt(y, stages: k, y1: ys, count: n, normed: m, t: t, h: step, rtol: rtol, atol: atol,
                                    coefficients: coefficients, dynamics: dynamics)
            stats.functionEvaluations += 6

            if error <= 1 {  // false for NaN
                onAcceptedStep?(t, step, y)
                y.update(from: ys, count: n)
                swap(&k.k1, &k.k7)  // FSAL: f(t + h, y1) is the next step's first stage.
                t = isLast ? t1 : t + step
                stats.acceptedSteps += 1
                let factor = error == 0
                    ? facmax
                    : Swift.min(facmax, Swift.max(ODESolver.minFactor,
                                                  ODESolver.safety * Double.pow(error, -0.2)))
                h = Swift.min(abs(step) * factor, span)
                facmax = ODESolver.maxFactor
                if isLast { break }
            } else {
                stats.rejectedSteps += 1
                let factor = error.isFinite
                    ? Swift.min(1, Swift.max(ODESolver.minFactor, ODESolver.safety * Double.pow(error, -0.2)))
                    : ODESolver.minFactor
                h = abs(step) * factor
                facmax = 1  // No growth right after a rejection (Hairer's DOPRI5).
                guard t + direction * h != t, h > 0 else {
                    let cause = error.isFinite
                        ? "the solution may be blowing up, or the problem is too stiff for the tolerances"
                        : "the dynamics or the trial state became non-finite"
                    throw FlowError.numerical(
                        "ODE solver (dopri5): step size underflow (h = \(h)) at t = \(t) while integrating "
                        + "from t = \(t0) to \(t1); \(cause)")
                }
            }
        }
        stats.nextStepSize = h
        return stats
    }

    /// One attempted step from `(t, y)` with the signed step `h`, `stages.k1 = f(t, y)` given.
    /// Writes the 5th-order solution to `y1` and stages 2…7 (`k7 = f(t + h, y1)`), and returns
    /// the RMS error ratio over the first `normed` components — not finite when `y1` or any stage
    /// is not.
    @_specialize(where T == Float) @_specialize(where T == Double)
    static func attempt<T: FlowScalar>(
        _ y: UnsafePointer<T>, stages k: Stages<T>, y1 ys: UnsafeMutablePointer<T>, count n: Int, normed m: Int,
        t: Double, h: Double, rtol: Double, atol: Double,
        coefficients q: Coefficients<T>, dynamics: ODESolver.Dynamics<T>
    ) throws -> Double {
        let ht = T(h)
        let k1 = k.k1, k2 = k.k2, k3 = k.k3, k4 = k.k4, k5 = k.k5, k6 = k.k6, k7 = k.k7
        for i in 0..<n { ys[i] = y[i] + ht * (q.a21 * k1[i]) }
        try dynamics(T(t + c2 * h), ys, k2, n)
        for i in 0..<n { ys[i] = y[i] + ht * (q.a31 * k1[i] + q.a32 * k2[i]) }
        try dynamics(T(t + c3 * h), ys, k3, n)
        for i in 0..<n { ys[i] = y[i] + ht * (q.a41 * k1[i] + q.a42 * k2[i] + q.a43 * k3[i]) }
        try dynamics(T(t + c4 * h), ys, k4, n)
        for i in 0..<n {
            ys[i] = y[i] + ht * (q.a51 * k1[i] + q.a52 * k2[i] + q.a53 * k3[i] + q.a54 * k4[i])
        }
        try dynamics(T(t + c5 * h), ys, k5, n)
        for i in 0..<n {
            ys[i] = y[i] + ht * (q.a61 * k1[i] + q.a62 * k2[i] + q.a63 * k3[i] + q.a64 * k4[i] + q.a65 * k5[i])
        }
        try dynamics(T(t + h), ys, k6, n)
        for i in 0..<n {
            ys[i] = y[i] + ht * (q.b1 * k1[i] + q.b3 * k3[i] + q.b4 * k4[i] + q.b5 * k5[i] + q.b6 * k6[i])
        }
        try dynamics(T(t + h), ys, k7, n)

        // RMS of eᵢ / (atol + rtol · max(|y0ᵢ|, |y1ᵢ|)), the error vector formed on the fly.
        var sum = 0.0, magnitude = 0.0
        for i in 0..<n {
            let e = ht * (q.e1 * k1[i] + q.e3 * k3[i] + q.e4 * k4[i] + q.e5 * k5[i] + q.e6 * k6[i]
                + q.e7 * k7[i])
            let y1 = Double(ys[i].magnitude)
            magnitude += y1 + Double(e.magnitude)
            if e != 0, i < m {
                let r = Double(e) / (atol + rtol * Swift.max(Double(y[i].magnitude), y1))
                sum += r * r
            }
        }
        guard magnitude.isFinite else { return .nan }
        return (sum / Double(m)).squareRoot()
    }

    /// The starting step of Hairer, Nørsett & Wanner (1993, §II.4, "Starting step size"; their
    /// routine HINIT), as torchdiffeq's `_select_initial_step` with order 5, plus Hairer's cap
    /// at the interval length:
    ///
    ///     sc = atol + rtol·|y0|,  d0 = ‖y0/sc‖,  d1 = ‖f0/sc‖           (RMS norms)
    ///     h0 = 0.01·d0/d1  (1e-6 if d0 < 1e-5 or d1 < 1e-5),  capped at |t1 − t0|
    ///     f1 = f(t0 + h0, y0 + h0·f0),  d2 = ‖(f1 − f0)/sc‖ / h0
    ///     h1 = (0.01 / max(d1, d2))^(1/5)  (max(1e-6, 1e-3·h0) if max(d1, d2) ≤ 1e-15)
    ///     h  = min(100·h0, h1, |t1 − t0|)
    ///
    /// One evaluation of the dynamics. Uses `y1` and `f1` as scratch.
    @_specialize(where T == Float) @_specialize(where T == Double)
    static func initialStep<T: FlowScalar>(
        _ y0: UnsafePointer<T>, f0: UnsafePointer<T>, count n: Int, normed m: Int, t0: Double, direction: Double,
        span: Double, rtol: Double, atol: Double,
        y1: UnsafeMutablePointer<T>, f1: UnsafeMutablePointer<T>, dynamics: ODESolver.Dynamics<T>
    ) throws -> Double {
        var s0 = 0.0, s1 = 0.0
        for i in 0..<m {
            let scale = atol + rtol * Double(y0[i].magnitude)
            let a = Double(y0[i]) / scale, b = Double(f0[i]) / scale
            s0 += a * a
            s1 += b * b
        }
        let d0 = (s0 / Double(m)).squareRoot(), d1 = (s1 / Double(m)).squareRoot()
        var h0 = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : 0.01 * d0 / d1
        if !(h0.isFinite && h0 > 0) { h0 = 1e-6 }  // A zero scale (atol = 0 at yᵢ = 0).
        h0 = Swift.min(h0, span)

        let step = T(direction * h0)
        for i in 0..<n { y1[i] = y0[i] + step * f0[i] }
        try dynamics(T(t0 + direction * h0), y1, f1, n)
        var s2 = 0.0
        for i in 0..<m {
            let d = (Double(f1[i]) - Double(f0[i])) / (atol + rtol * Double(y0[i].magnitude))
            s2 += d * d
        }
        let d2 = (s2 / Double(m)).squareRoot() / h0
        guard d2.isFinite else { return h0 }  // Let the step control deal with a bad probe.

        let dMax = Swift.max(d1, d2)
        let h1 = dMax <= 1e-15 ? Swift.max(1e-6, h0 * 1e-3) : Double.pow(0.01 / dMax, 1.0 / 5)
        let h = Swift.min(100 * h0, h1, span)
        return h.isFinite && h > 0 ? h : h0
    }
}
