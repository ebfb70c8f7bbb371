@testable import FlowCore
@testable import FlowModelFile
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The ODE solvers (Sources/FlowCore/ODE) against closed-form solutions of linear ODEs.
///
/// Accuracy criterion for DOPRI5 with `rtol = atol = tol`: the scaled global error
/// `maxᵢ |yᵢ − exactᵢ| / (tol · (1 + |exactᵢ|))` stays at or below ``globalErrorFactor`` = 5.
/// That is the tolerance's own scale (`atol + rtol·|y|`); the local-error control does not bound
/// the global error in general, but on these smooth, mildly contracting or expanding problems
/// over a few time units the measured factor is 0.003–3.0 (largest: the 3×3 system integrated
/// backward at tol 1e-6).
final class ODETests: XCTestCase {
    /// Global error bound in units of the requested tolerance (see the class comment).
    static let globalErrorFactor = 5.0
    static let tolerances = [1e-3, 1e-6, 1e-9]

    // MARK: - Helpers

    /// Runs the solver on an array state, reserving exactly `workspaceBytes` (an under-reserved
    /// arena trips the arena's assertion in debug builds) and checking the whole reservation is
    /// used.
    @discardableResult
    private func integrate<T: FlowScalar>(
        _ y: inout [T], from t0: T, to t1: T, _ options: ODESolver.Options,
        _ f: ODESolver.Dynamics<T>
    ) throws -> ODESolver.Statistics {
        let bytes = ODESolver.workspaceBytes(T.self, count: y.count, method: options.method)
        let workspace = Workspace()
        try! workspace.reserve(bytes: bytes)
        var arena = workspace.arena()
        let n = y.count
        var placeholder: [T] = [0]  // an empty array may have no base address
        func run(_ buffer: inout [T]) throws -> ODESolver.Statistics {
            try buffer.withUnsafeMutableBufferPointer {
                try ODESolver.solve($0.baseAddress!, count: n, from: t0, to: t1, options: options,
                                    arena: &arena, dynamics: f)
            }
        }
        let stats = n == 0 ? try run(&placeholder) : try run(&y)
        if n > 0 && t0 != t1 { XCTAssertEqual(arena.offset, bytes, "scratch taken != workspaceBytes") }
        return stats
    }

    /// `dy/dt = A y` for every row of a batch of `dim`-vectors (`a` row-major `dim×dim`).
    private func linearDynamics<T: FlowScalar>(_ a: [Double], dim: Int) -> ODESolver.Dynamics<T> {
        let m = a.map { T($0) }
        return { _, y, dy, count in
            for r in 0..<(count / dim) {
                for i in 0..<dim {
                    var s: T = 0
                    for j in 0..<dim { s += m[i * dim + j] * y[r * dim + j] }
                    dy[r * dim + i] = s
                }
            }
        }
    }

    private static func matmul(_ a: [Double], _ b: [Double], _ n: Int) -> [Double] {
        var c = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for k in 0..<n { for j in 0..<n { c[i * n + j] += a[i * n + k] * b[k * n + j] } } }
        return c
    }

    /// `exp(M)` by scaling and squaring: `exp(M) = exp(M/2ˢ)^(2ˢ)` with `‖M/2ˢ‖₁ ≤ 1/2`, and
    /// the Taylor series of `exp(M/2ˢ)` summed until the terms vanish in Double (at most 30).
    static func matrixExponential(_ m: [Double], _ n: Int) -> [Double] {
        var norm = 0.0
        for j in 0..<n { norm = max(norm, (0..<n).reduce(0) { $0 + abs(m[$1 * n + j]) }) }
        var s = 0
        while norm / Double(1 << s) > 0.5 { s += 1 }
        let scaled = m.map { $0 / Double(1 << s) }
        var result = (0..<(n * n)).map { $0 / n == $0 % n ? 1.0 : 0.0 }
        var term = result
        for k in 1...30 {
            term = matmul(term, scaled, n).map { $0 / Double(k) }
            for i in 0..<(n * n) { result[i] += term[i] }
            if term.allSatisfy({ abs($0) < 1e-18 }) { break }
        }
        for _ in 0..<s { result = matmul(result, result, n) }
        return result
    }

    /// The 3×3 test system: `A = S B S⁻¹` with `B` a decaying rotation (eigenvalues −0.3 ± 2i)
    /// plus a decaying mode (−1), so `exp(A t) = S exp(B t) S⁻¹` in closed form.
    static let s: [Double] = [1, 0.5, 0, 0.2, 1, 0.3, 0, -0.4, 1]
    static let sInverse = DenseLinearAlgebra.inverse(s, 3)!
    static let b: [Double] = [-0.3, 2, 0, -2, -0.3, 0, 0, 0, -1]
    static let a = matmul(matmul(s, b, 3), sInverse, 3)

    /// `exp(A t)` from the eigen-decomposition.
    static func propagator(_ t: Double) -> [Double] {
        let e = exp(-0.3 * t), c = cos(2 * t), sn = sin(2 * t)
        let expB: [Double] = [e * c, e * sn, 0, -e * sn, e * c, 0, 0, 0, exp(-t)]
        return matmul(matmul(s, expB, 3), sInverse, 3)
    }

    /// `rows` initial 3-vectors, row-major.
    static let rows = 4
    static let initial: [Double] = [1, 0, -1, 0.5, 2, 0.25, -1.5, 0.3, 0.7, 0.01, -0.02, 3]

    static func apply(_ p: [Double], _ y: [Double]) -> [Double] {
        var out = [Double](repeating: 0, count: y.count)
        for r in 0..<(y.count / 3) {
            for i in 0..<3 { for j in 0..<3 { out[r * 3 + i] += p[i * 3 + j] * y[r * 3 + j] } }
        }
        return out
    }

    /// `maxᵢ |yᵢ − exactᵢ| / (tol · (1 + |exactᵢ|))`.
    private func scaledError<T: FlowScalar>(_ y: [T], _ exact: [Double], tol: Double) -> Double {
        zip(y, exact).map { abs(Double($0) - $1) / (tol * (1 + abs($1))) }.max()!
    }

    private func maxError<T: FlowScalar>(_ y: [T], _ exact: [Double]) -> Double {
        zip(y, exact).map { abs(Double($0) - $1) }.max()!
    }

    private func assertNumerical(_ body: () throws -> Void, contains parts: [String],
                                 file: StaticString = #filePath, line: UInt = #line) {
        do {
            try body()
            XCTFail("expected FlowError.numerical", file: file, line: line)
        } catch let FlowError.numerical(message) {
            for part in parts {
                XCTAssertTrue(message.contains(part), "'\(message)' lacks '\(part)'", file: file, line: line)
            }
        } catch {
            XCTFail("expected FlowError.numerical, got \(error)", file: file, line: line)
        }
    }

    // MARK: - Tableau

    /// `c = A·1`, and the order conditions (Butcher trees up to order 5 for `b`, order 4 for
    /// `b̂`; Hairer, Nørsett & Wanner 1993, Table II.2.2) hold to rounding.
    func testTableauSatisfiesOrderConditions() {
        let (a, b, bHat, c) = DormandPrince.Coefficients<Double>().tableau
        for i in 0..<7 { XCTAssertEqual(a[i].reduce(0, +), c[i], accuracy: 1e-14, "row \(i)") }
        func dot(_ u: [Double], _ v: [Double]) -> Double { zip(u, v).reduce(0) { $0 + $1.0 * $1.1 } }
        func times(_ u: [Double], _ v: [Double]) -> [Double] { zip(u, v).map { $0 * $1 } }
        func apply(_ v: [Double]) -> [Double] { a.map { dot($0, v) } }
        let one = [Double](repeating: 1, count: 7)
        let c2 = times(c, c), c3 = times(c2, c), c4 = times(c3, c)
        let ac = apply(c), aac = apply(ac)
        let conditions: [(order: Int, vector: [Double], value: Double)] = [
            (1, one, 1), (2, c, 1.0 / 2),
            (3, c2, 1.0 / 3), (3, ac, 1.0 / 6),
            (4, c3, 1.0 / 4), (4, times(c, ac), 1.0 / 8), (4, apply(c2), 1.0 / 12), (4, aac, 1.0 / 24),
            (5, c4, 1.0 / 5), (5, times(c2, ac), 1.0 / 10), (5, times(c, apply(c2)), 1.0 / 15),
            (5, times(c, aac), 1.0 / 30), (5, times(ac, ac), 1.0 / 20), (5, apply(c3), 1.0 / 20),
            (5, apply(times(c, ac)), 1.0 / 40), (5, apply(apply(c2)), 1.0 / 60), (5, apply(aac), 1.0 / 120),
        ]
        XCTAssertEqual(conditions.count, 17)
        for (k, (order, v, value)) in conditions.enumerated() {
            XCTAssertEqual(dot(b, v), value, accuracy: 1e-14, "b, condition \(k) (order \(order))")
            if order <= 4 { XCTAssertEqual(dot(bHat, v), value, accuracy: 1e-14, "b̂, condition \(k)") }
        }
        // The embedded solution is genuinely 4th order (otherwise the error estimate would vanish).
        XCTAssertGreaterThan(abs(dot(bHat, c4) - 1.0 / 5), 1e-4)
        // FSAL: row 7 of A is b, and c₇ = 1.
        XCTAssertEqual(a[6], b)
        XCTAssertEqual(c[6], 1)
    }

    /// One DOPRI5 step: on `y' = y` the local error of the 5th-order solution scales as h⁶ and
    /// the error estimate as h⁵ (`exp(z)` minus the stability polynomials); on a nonlinear,
    /// time-dependent problem the local error is O(h⁶) or better (the nonlinear order
    /// conditions, checked exactly above, in action).
    func testSingleStepLocalErrorOrders() throws {
        let q = DormandPrince.Coefficients<Double>()
        let workspace = Workspace()
        try! workspace.reserve(bytes: ODESolver.workspaceBytes(Double.self, count: 1, method: .dopri5))
        var arena = workspace.arena()
        let k = DormandPrince.Stages(k1: arena.take(Double.self, 1), k2: arena.take(Double.self, 1),
                                     k3: arena.take(Double.self, 1), k4: arena.take(Double.self, 1),
                                     k5: arena.take(Double.self, 1), k6: arena.take(Double.self, 1),
                                     k7: arena.take(Double.self, 1))
        let y1 = arena.take(Double.self, 1)
        /// (local error, error estimate) of one step of size h from (0, y0).
        func step(_ f: ODESolver.Dynamics<Double>, _ y0: Double, _ h: Double, exact: Double) throws -> (Double, Double) {
            var y = y0
            try f(0, &y, k.k1, 1)
            // rtol = 0, atol = 1: the returned ratio is the error estimate |e| itself.
            let e = try DormandPrince.attempt(&y, stages: k, y1: y1, count: 1, normed: 1, t: 0, h: h, rtol: 0, atol: 1,
                                              coefficients: q, dynamics: f)
            return (abs(y1[0] - exact), e)
        }

        let growth: ODESolver.Dynamics<Double> = { _, y, dy, _ in dy[0] = y[0] }
        var previous: (Double, Double)?
        for h in [0.2, 0.1, 0.05, 0.025] {
            let now = try step(growth, 1, h, exact: exp(h))
            if let p = previous {
                XCTAssertEqual(log2(p.0 / now.0), 6, accuracy: 0.2, "y' = y: local error order at h = \(h)")
                XCTAssertEqual(log2(p.1 / now.1), 5, accuracy: 0.2, "y' = y: error estimate order at h = \(h)")
            }
            previous = now
        }

        // y' = cos(t)·y·(1 − y), y(0) = 1/4: y(t) = 1/(1 + 3·exp(−sin t)).
        let logistic: ODESolver.Dynamics<Double> = { t, y, dy, _ in dy[0] = cos(t) * y[0] * (1 - y[0]) }
        previous = nil
        for h in [0.4, 0.2, 0.1, 0.05] {
            let now = try step(logistic, 0.25, h, exact: 1 / (1 + 3 * exp(-sin(h))))
            if let p = previous {
                let order = log2(p.0 / now.0)
                XCTAssertGreaterThan(order, 5.7, "logistic: local error order at h = \(h)")
                XCTAssertLessThan(order, 7.5, "logistic: local error order at h = \(h)")
            }
            previous = now
        }
    }

    // MARK: - Accuracy against closed forms

    func testMatrixExponentialReferenceAgreesWithEigenDecomposition() {
        for t in [0.0, 0.3, 1, 2, -2, 5] {
            let series = Self.matrixExponential(Self.a.map { $0 * t }, 3)
            let closed = Self.propagator(t)
            for i in 0..<9 { XCTAssertEqual(series[i], closed[i], accuracy: 1e-13, "t = \(t), entry \(i)") }
        }
        // exp(A t) exp(−A t) = I.
        let p = Self.matmul(Self.propagator(1.7), Self.propagator(-1.7), 3)
        for i in 0..<9 { XCTAssertEqual(p[i], i % 4 == 0 ? 1 : 0, accuracy: 1e-13) }
    }

    /// `y' = λy` and the time-dependent `y' = cos(t)·y` (`y = y₀·exp(sin t − sin t₀)`), forward
    /// and backward, at each tolerance; NFE grows as the tolerance tightens.
    func testScalarLinearProblemsMeetTheTolerance() throws {
        let lambda = -0.7
        let problems: [(String, ODESolver.Dynamics<Double>, (Double, Double) -> Double)] = [
            ("y' = -0.7 y", { _, y, dy, _ in dy[0] = lambda * y[0] }, { t0, t in exp(lambda * (t - t0)) }),
            ("y' = cos(t) y", { t, y, dy, _ in dy[0] = cos(t) * y[0] }, { t0, t in exp(sin(t) - sin(t0)) }),
        ]
        for (name, f, flow) in problems {
            for (t0, t1) in [(0.0, 3.0), (3.0, 0.0), (-1.0, -4.5)] {
                var nfes: [Int] = []
                for tol in Self.tolerances {
                    var y = [2.0]
                    let stats = try integrate(&y, from: t0, to: t1, .dopri5(rtol: tol, atol: tol), f)
                    let exact = 2 * flow(t0, t1)
                    let scaled = scaledError(y, [exact], tol: tol)
                    XCTAssertLessThanOrEqual(scaled, Self.globalErrorFactor, "\(name) \(t0)→\(t1) tol \(tol)")
                    nfes.append(stats.functionEvaluations)
                }
                XCTAssertTrue(nfes[0] < nfes[1] && nfes[1] < nfes[2], "\(name) \(t0)→\(t1): NFE \(nfes)")
            }
        }
    }

    /// `y' = A y` (3×3, non-normal, oscillating and decaying) on a batch of 4 rows, forward over
    /// [0, 2] and backward from the exact `y(2)` to 0, against `exp(A t)`.
    func testLinearSystemMatchesMatrixExponentialForwardAndBackward() throws {
        let f: ODESolver.Dynamics<Double> = linearDynamics(Self.a, dim: 3)
        let y2 = Self.apply(Self.matrixExponential(Self.a.map { $0 * 2 }, 3), Self.initial)
        var forwardNFE: [Int] = [], backwardNFE: [Int] = []
        for tol in Self.tolerances {
            var y = Self.initial
            let forward = try integrate(&y, from: 0.0, to: 2.0, .dopri5(rtol: tol, atol: tol), f)
            XCTAssertLessThanOrEqual(scaledError(y, y2, tol: tol), Self.globalErrorFactor, "forward tol \(tol)")

            var back = y2
            let backward = try integrate(&back, from: 2.0, to: 0.0, .dopri5(rtol: tol, atol: tol), f)
            XCTAssertLessThanOrEqual(scaledError(back, Self.initial, tol: tol), Self.globalErrorFactor,
                                     "backward tol \(tol)")
            forwardNFE.append(forward.functionEvaluations)
            backwardNFE.append(backward.functionEvaluations)
        }
        XCTAssertTrue(forwardNFE[0] < forwardNFE[1] && forwardNFE[1] < forwardNFE[2], "forward NFE \(forwardNFE)")
        XCTAssertTrue(backwardNFE[0] < backwardNFE[1] && backwardNFE[1] < backwardNFE[2], "backward NFE \(backwardNFE)")
    }

    /// Fixed steps: halving the step divides the RK4 error by ≈ 16 and the Euler error by ≈ 2.
    func testFixedStepConvergenceOrders() throws {
        let f: ODESolver.Dynamics<Double> = linearDynamics(Self.a, dim: 3)
        let exact = Self.apply(Self.propagator(1), Self.initial)
        for (options, expected, sizes) in [
            (ODESolver.Options.rk4, 16.0, [0.1, 0.05, 0.025, 0.0125]),
            (ODESolver.Options.euler, 2.0, [0.01, 0.005, 0.0025, 0.00125]),
        ] as [((Double, Int) -> ODESolver.Options, Double, [Double])] {
            var errors: [Double] = []
            for h in sizes {
                var y = Self.initial
                let opts = options(h, 10_000)
                let stats = try integrate(&y, from: 0.0, to: 1.0, opts, f)
                let steps = Int((1 / h).rounded())
                XCTAssertEqual(stats.acceptedSteps, steps)
                XCTAssertEqual(stats.rejectedSteps, 0)
                XCTAssertEqual(stats.functionEvaluations, steps * opts.method.evaluationsPerStep)
                errors.append(maxError(y, exact))
            }
            for i in 0..<(errors.count - 1) {
                let ratio = errors[i] / errors[i + 1]
                XCTAssertEqual(ratio, expected, accuracy: 0.1 * expected, "\(options(1, 1).method) ratio \(ratio)")
            }
        }
        // Backward: RK4 from the exact y(1) back to 0.
        var y = exact
        try integrate(&y, from: 1.0, to: 0.0, .rk4(stepSize: 0.01), f)
        XCTAssertLessThan(maxError(y, Self.initial), 1e-7)
    }

    func testFixedStepGridLandsOnTheEndPoint() {
        XCTAssertEqual(FixedStep.stepCount(span: 1, stepSize: 0.1, limit: 100), 10)
        XCTAssertEqual(FixedStep.stepCount(span: 0.3, stepSize: 0.1, limit: 100), 3)
        XCTAssertEqual(FixedStep.stepCount(span: 1, stepSize: 0.3, limit: 100), 4)
        XCTAssertEqual(FixedStep.stepCount(span: 0.01, stepSize: 1, limit: 100), 1)
        XCTAssertEqual(FixedStep.stepCount(span: 1, stepSize: 0.001, limit: 1000), 1000)
        XCTAssertNil(FixedStep.stepCount(span: 1, stepSize: 0.001, limit: 999))
        XCTAssertNil(FixedStep.stepCount(span: 1, stepSize: 1e-300, limit: 10))
        XCTAssertNil(FixedStep.stepCount(span: 1, stepSize: 1e-300, limit: .max))
        XCTAssertNil(FixedStep.stepCount(span: 1, stepSize: 1e-19, limit: .max))
    }

    // MARK: - Evaluation accounting

    /// NFE = 1 (f at t0) + 1 (starting-step heuristic, unless `firstStep`) + 6 per attempted step,
    /// equal to the number of dynamics calls, with and without rejections.
    func testFunctionEvaluationCountWithFSAL() throws {
        let g: ODESolver.Dynamics<Double> = linearDynamics(Self.a, dim: 3)
        for (firstStep, heuristic) in [(nil, 1), (1.5, 0), (0.01, 0)] as [(Double?, Int)] {
            for tol in Self.tolerances {
                var calls = 0
                var y = Self.initial
                let stats = try integrate(&y, from: 0.0, to: 4.0,
                                          .dopri5(rtol: tol, atol: tol, firstStep: firstStep)) { t, y, dy, n in
                    calls += 1
                    try g(t, y, dy, n)
                }
                XCTAssertEqual(stats.functionEvaluations, calls)
                XCTAssertEqual(stats.functionEvaluations, 1 + heuristic + 6 * (stats.acceptedSteps + stats.rejectedSteps),
                               "first step \(String(describing: firstStep)), tol \(tol): \(stats)")
                XCTAssertGreaterThan(stats.nextStepSize, 0)
                if firstStep == 1.5 && tol <= 1e-6 {
                    XCTAssertGreaterThan(stats.rejectedSteps, 0, "a too-large first step must be rejected")
                }
            }
        }
    }

    func testStatisticsAddUp() {
        var a = ODESolver.Statistics()
        a.functionEvaluations = 14; a.acceptedSteps = 2; a.rejectedSteps = 0; a.nextStepSize = 0.5
        var b = ODESolver.Statistics()
        b.functionEvaluations = 20; b.acceptedSteps = 2; b.rejectedSteps = 1; b.nextStepSize = 0.25
        let s = a + b
        XCTAssertEqual(s.functionEvaluations, 34)
        XCTAssertEqual(s.acceptedSteps, 4)
        XCTAssertEqual(s.rejectedSteps, 1)
        XCTAssertEqual(s.steps, 5)
        XCTAssertEqual(s.nextStepSize, 0.25)
    }

    // MARK: - Failures

    /// An explicit method on a stiff problem needs steps of ~3/λ: it runs into the step limit.
    func testStiffProblemExceedsTheStepLimit() {
        let stiff: ODESolver.Dynamics<Double> = { t, y, dy, _ in dy[0] = -1e4 * (y[0] - cos(t)) }
        assertNumerical({
            var y = [0.0]
            try self.integrate(&y, from: 0.0, to: 10.0, .dopri5(rtol: 1e-6, atol: 1e-6, maxSteps: 500), stiff)
        }, contains: ["exceeded 500 steps at t = ", "loosen rtol/atol or raise max_steps"])
        // Backward too.
        assertNumerical({
            var y = [1.0]
            try self.integrate(&y, from: 10.0, to: 0.0, .dopri5(maxSteps: 200), { t, y, dy, _ in
                dy[0] = 1e4 * (y[0] - cos(t))  // stable backward, stiff
            })
        }, contains: ["exceeded 200 steps"])
        // A fixed step that needs more than max_steps steps fails before doing any work.
        var calls = 0
        assertNumerical({
            var y = [1.0]
            try self.integrate(&y, from: 0.0, to: 1.0, .rk4(stepSize: 1e-3, maxSteps: 999)) { _, y, dy, _ in
                calls += 1
                dy[0] = y[0]
            }
        }, contains: ["exceeded 999 steps", "needs 1000 steps"])
        XCTAssertEqual(calls, 0)
    }

    func testNonFiniteValuesAreNumericalErrors() {
        let nanEverywhere: ODESolver.Dynamics<Double> = { _, _, dy, n in for i in 0..<n { dy[i] = .nan } }
        for options in [ODESolver.Options.dopri5(), .rk4(stepSize: 0.1), .euler(stepSize: 0.1)] {
            assertNumerical({
                var y = [1.0, 2.0]
                try self.integrate(&y, from: 0.0, to: 1.0, options, nanEverywhere)
            }, contains: ["non-finite"])
            assertNumerical({
                var y = [1.0, .nan]
                try self.integrate(&y, from: 0.0, to: 1.0, options) { _, y, dy, n in
                    for i in 0..<n { dy[i] = y[i] }
                }
            }, contains: ["initial state", "not finite"])
        }
        // Non-finite only beyond t = 0.5: DOPRI5 rejects and shrinks the step toward the
        // boundary until it underflows.
        assertNumerical({
            var y = [1.0]
            try self.integrate(&y, from: 0.0, to: 1.0, .dopri5()) { t, y, dy, _ in
                dy[0] = t > 0.5 ? .infinity : -y[0]
            }
        }, contains: ["step size underflow", "non-finite"])
        // Blow-up in finite time (y' = y², y(0) = 1 explodes at t = 1).
        assertNumerical({
            var y = [1.0]
            try self.integrate(&y, from: 0.0, to: 2.0, .dopri5()) { _, y, dy, _ in dy[0] = y[0] * y[0] }
        }, contains: ["ODE solver (dopri5)"])
        assertNumerical({
            var y = [1.0]
            try self.integrate(&y, from: 0.0, to: 2.0, .rk4(stepSize: 0.25)) { _, y, dy, _ in dy[0] = y[0] * y[0] }
        }, contains: ["became non-finite"])
    }

    func testErrorsThrownByTheDynamicsPassThrough() {
        XCTAssertThrowsError(try {
            var y = [1.0]
            try self.integrate(&y, from: 0.0, to: 1.0, .dopri5()) { _, _, _, _ in
                throw FlowError.cancelled("stop")
            }
        }()) { XCTAssertEqual($0 as? FlowError, .cancelled("stop")) }
    }

    func testInvalidOptionsAreRejected() {
        let bad: [ODESolver.Options] = [
            .dopri5(rtol: -1), .dopri5(atol: .nan), .dopri5(rtol: 0, atol: 0), .dopri5(maxSteps: 0),
            .dopri5(firstStep: 0), .dopri5(firstStep: -.infinity),
            ODESolver.Options(method: .rk4), .rk4(stepSize: 0), .euler(stepSize: .infinity),
        ]
        for options in bad {
            XCTAssertThrowsError(try options.validate(), "\(options)") {
                guard case FlowError.invalidArgument = $0 else { return XCTFail("\($0)") }
            }
            var y = [1.0]
            XCTAssertThrowsError(try integrate(&y, from: 0.0, to: 1.0, options) { _, y, dy, _ in dy[0] = y[0] })
        }
        var y = [1.0]
        XCTAssertThrowsError(try integrate(&y, from: 0.0, to: .infinity, .dopri5()) { _, y, dy, _ in dy[0] = y[0] })
        XCTAssertNoThrow(try ODESolver.Options.dopri5(rtol: 0, atol: 1e-6).validate())
    }

    /// `t0 == t1` and an empty state cost nothing and change nothing.
    func testEmptyIntervalAndEmptyState() throws {
        for method in ODESolver.Method.allCases {
            let options = ODESolver.Options(method: method, stepSize: 0.1)
            var calls = 0
            var y = [1.0, 2.0]
            let stats = try integrate(&y, from: 0.5, to: 0.5, options) { _, _, _, _ in calls += 1 }
            XCTAssertEqual(stats, ODESolver.Statistics())
            XCTAssertEqual(y, [1.0, 2.0])
            var empty: [Double] = []
            let none = try integrate(&empty, from: 0.0, to: 1.0, options) { _, _, _, _ in calls += 1 }
            XCTAssertEqual(none, ODESolver.Statistics())
            XCTAssertEqual(calls, 0)
        }
    }

    // MARK: - Batches, precision

    /// The error norm covers the whole batch: a row solved alone takes its own steps, in a batch
    /// it takes the batch's. Both meet the tolerance, and repeated solves are bit-identical.
    func testWholeBatchErrorNormIsDeterministic() throws {
        let f: ODESolver.Dynamics<Double> = linearDynamics(Self.a, dim: 3)
        let options = ODESolver.Options.dopri5(rtol: 1e-6, atol: 1e-6)
        var batch = Self.initial, again = Self.initial
        let s1 = try integrate(&batch, from: 0.0, to: 2.0, options, f)
        let s2 = try integrate(&again, from: 0.0, to: 2.0, options, f)
        XCTAssertEqual(batch, again)
        XCTAssertEqual(s1, s2)
        var alone = Array(Self.initial[9..<12])  // the row with a 0.01 entry and a 3
        let s3 = try integrate(&alone, from: 0.0, to: 2.0, options, f)
        let exact = Self.apply(Self.propagator(2), Self.initial)
        XCTAssertLessThanOrEqual(scaledError(alone, Array(exact[9..<12]), tol: 1e-6), Self.globalErrorFactor)
        XCTAssertNotEqual(s1.functionEvaluations, s3.functionEvaluations, "batch and single-row steps coincide")
    }

    /// Float and Double run the same code: DOPRI5 in Float meets a Float-sized tolerance, RK4 and
    /// Euler converge.
    func testFloatAndDoubleBothWork() throws {
        let exact = Self.apply(Self.propagator(2), Self.initial)
        for tol in [1e-3, 1e-5] {
            var y = Self.initial.map { Float($0) }
            let fwd = try integrate(&y, from: Float(0), to: Float(2), .dopri5(rtol: tol, atol: tol),
                                    linearDynamics(Self.a, dim: 3))
            XCTAssertLessThanOrEqual(scaledError(y, exact, tol: tol), Self.globalErrorFactor, "Float tol \(tol)")
            XCTAssertEqual(fwd.functionEvaluations, 2 + 6 * fwd.steps)

            var back = exact.map { Float($0) }
            try integrate(&back, from: Float(2), to: Float(0), .dopri5(rtol: tol, atol: tol),
                          linearDynamics(Self.a, dim: 3))
            XCTAssertLessThanOrEqual(scaledError(back, Self.initial, tol: tol), Self.globalErrorFactor,
                                     "Float backward tol \(tol)")
        }
        var yf = Self.initial.map { Float($0) }, yd = Self.initial
        try integrate(&yf, from: Float(0), to: Float(2), .rk4(stepSize: 0.05), linearDynamics(Self.a, dim: 3))
        try integrate(&yd, from: 0.0, to: 2.0, .rk4(stepSize: 0.05), linearDynamics(Self.a, dim: 3))
        XCTAssertLessThan(maxError(yd, exact), 1e-5)  // measured 3.3e-6
        XCTAssertLessThan(maxError(yf, exact), 1e-5)  // measured 3.0e-6
        var ef = Self.initial.map { Float($0) }
        try integrate(&ef, from: Float(0), to: Float(2), .euler(stepSize: 0.001), linearDynamics(Self.a, dim: 3))
        XCTAssertLessThan(maxError(ef, exact), 0.01)  // measured 0.0045
    }
}
