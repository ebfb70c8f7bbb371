@testable import FlowCore
@testable import FlowModelFile
import FlowTestSupport
import XCTest

/// Continuous normalizing flows (`cnf`, FFJORD): round trips, the sign and accuracy of the
/// log-determinant, the Hutchinson estimator, files, a closed-form linear case, composition.
final class CNFTests: XCTestCase {
    private func cnf<T: FlowScalar>(_ d: Int, _ extra: [String: JSONValue] = [:], seed: UInt64 = 7,
                                    _: T.Type = T.self) throws -> ContinuousFlow<T> {
        var config = Fixtures.continuousLayerConfigurations[0].1
        for (k, v) in extra { config[k] = v }
        try ContinuousFlow<T>.validate(config, context: "test")
        return try ContinuousFlow<T>(config: config, eventShape: [d], seed: seed)
    }

    private func tolerances(_ tol: Double) -> [String: JSONValue] {
        ["rtol": .number(tol), "atol": .number(tol)]
    }

    // (1) inverse(forward(x)) ≈ x at the solver tolerance.
    func testRoundTripDouble() throws {
        for d in [1, 2, 3, 5] {
            let layer = try cnf(d, tolerances(1e-8), Double.self)
            let x = BijectionChecker.randomPoints(20, d, seed: 3)
            let (z, fld) = BijectionChecker.apply(layer, x, count: 20, inverse: false)
            XCTAssertGreaterThan(BijectionChecker.maxRelativeError(z, x), 1e-3, "a CNF at init is not the identity")
            let (back, ild) = BijectionChecker.apply(layer, z, count: 20, inverse: true)
            let err = BijectionChecker.maxRelativeError(back, x)
            XCTAssertLessThan(err, 1e-6, "D=\(d) round trip \(err)")
            for i in 0..<20 { XCTAssertEqual(ild[i], -fld[i], accuracy: 1e-6) }
        }
    }

    func testRoundTripFloat() throws {
        for solver in ["dopri5", "rk4"] {
            let layer = try cnf(3, tolerances(1e-5).merging(["solver": .string(solver), "step_size": .number(0.02)]) { $1 },
                                Float.self)
            let x = BijectionChecker.randomPoints(50, 3, seed: 4).map(Float.init)
            let (z, fld) = BijectionChecker.apply(layer, x, count: 50, inverse: false)
            let (back, ild) = BijectionChecker.apply(layer, z, count: 50, inverse: true)
            let err = BijectionChecker.maxRelativeError(back, x)
            XCTAssertLessThan(err, 2e-4, "\(solver) Float round trip \(err)")
            for i in 0..<50 { XCTAssertEqual(ild[i], -fld[i], accuracy: 2e-4) }
        }
    }

    // (2) exact log-det = log|det| of a central-difference Jacobian of the solution map.
    func testExactLogDetMatchesFiniteDifferences() throws {
        for d in [1, 2, 3] {
            for activation in ["tanh", "softplus"] {
                let layer = try cnf(d, tolerances(1e-11).merging(["activation": .string(activation),
                                                                   "end_time": .number(1.5)]) { $1 }, Double.self)
                BijectionChecker.perturb(layer.parameters, scale: 0.5, seed: UInt64(d))
                layer.parametersDidChange()
                let x = BijectionChecker.randomPoints(4, d, seed: 11)
                let (z, fld) = BijectionChecker.apply(layer, x, count: 4, inverse: false)
                let (_, ild) = BijectionChecker.apply(layer, z, count: 4, inverse: true)
                for i in 0..<4 {
                    let row = Array(x[(i * d)..<((i + 1) * d)])
                    let fd = BijectionChecker.finiteDifferenceLogDet(layer, at: row, step: 1e-5)
                    XCTAssertEqual(fld[i], fd, accuracy: 1e-7, "D=\(d) \(activation) forward")
                    let zRow = Array(z[(i * d)..<((i + 1) * d)])
                    let fdInv = BijectionChecker.finiteDifferenceLogDet(layer, at: zRow, step: 1e-5, inverse: true)
                    XCTAssertEqual(ild[i], fdInv, accuracy: 1e-7, "D=\(d) \(activation) inverse")
                }
                XCTAssertGreaterThan(fld.map(abs).max()!, 1e-2, "D=\(d) \(activation): a non-trivial log-det")
            }
        }
    }

    func testFixedStepSolvers() throws {
        // RK4 passes the whole bijection contract at a modest step.
        let rk4 = try cnf(2, ["solver": .string("rk4"), "step_size": .number(0.05)], Double.self)
        var tol = BijectionChecker.Tolerance()
        tol.roundTrip = 1e-6
        tol.logDet = 1e-6
        BijectionChecker.check(rk4, points: 3, tolerance: tol, "rk4")
        // Euler (first order) converges to the adaptive solution as the step shrinks.
        let reference = try cnf(2, tolerances(1e-10), Double.self)
        let x = BijectionChecker.randomPoints(5, 2, seed: 6)
        let (zRef, ldRef) = BijectionChecker.apply(reference, x, count: 5, inverse: false)
        var errors: [Double] = []
        for h in [0.01, 0.001] {
            let euler = try cnf(2, ["solver": .string("euler"), "step_size": .number(h)], Double.self)
            let (z, ld) = BijectionChecker.apply(euler, x, count: 5, inverse: false)
            errors.append(max(BijectionChecker.maxRelativeError(z, zRef), BijectionChecker.maxRelativeError(ld, ldRef)))
        }
        XCTAssertLessThan(errors[1], errors[0] / 5, "Euler converges at first order: \(errors)")
    }

    // (3) Hutchinson: unbiased around the exact value, both probe kinds.
    func testHutchinsonMeanMatchesExact() throws {
        let d = 3
        let exactLayer = try cnf(d, tolerances(1e-8), Double.self)
        let x = BijectionChecker.randomPoints(1, d, seed: 21)
        let exact = BijectionChecker.apply(exactLayer, x, count: 1, inverse: false).1[0]
        let copies = 64
        let batch = Array((0..<copies).map { _ in x }.joined())
        for probe in ["gaussian", "rademacher"] {
            var estimates: [Double] = []
            for probeSeed in 0..<8 {
                let layer = try cnf(d, tolerances(1e-8).merging(["trace": .string("hutchinson"), "probe": .string(probe),
                                                                  "probe_seed": .number(Double(probeSeed))]) { $1 },
                                    Double.self)
                XCTAssertEqual(layer.parameters.map(\.array), exactLayer.parameters.map(\.array))
                let (z, ld) = BijectionChecker.apply(layer, batch, count: copies, inverse: false)
                // The trajectory does not depend on the probe.
                XCTAssertLessThan(BijectionChecker.maxRelativeError(Array(z[0..<d]),
                                                                    BijectionChecker.apply(exactLayer, x, count: 1, inverse: false).0), 1e-6)
                estimates += ld
            }
            let n = Double(estimates.count)
            let mean = estimates.reduce(0, +) / n
            let variance = estimates.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)
            let se = (variance / n).squareRoot()
            XCTAssertGreaterThan(se, 0, "\(probe): estimates vary")
            XCTAssertLessThan(abs(mean - exact), 3 * se, "\(probe): mean \(mean) vs exact \(exact), SE \(se)")
            if probe == "rademacher" {
                // ±1 probes: every estimate is finite and the per-row estimate is exact for D = 1.
                XCTAssertTrue(estimates.allSatisfy(\.isFinite))
            }
        }
        // D = 1 with Rademacher probes: ε² = 1, so the estimate is exact.
        let one = try cnf(1, tolerances(1e-9).merging(["trace": .string("hutchinson"), "probe": .string("rademacher")]) { $1 },
                          Double.self)
        let oneExact = try cnf(1, tolerances(1e-9), Double.self)
        let p = BijectionChecker.randomPoints(5, 1, seed: 2)
        let a = BijectionChecker.apply(one, p, count: 5, inverse: false).1
        let b = BijectionChecker.apply(oneExact, p, count: 5, inverse: false).1
        for i in 0..<5 { XCTAssertEqual(a[i], b[i], accuracy: 1e-12) }
    }

    // (4) spec and file round trips.
    func testSpecAndFileRoundTripsAreExact() throws {
        let spec = Fixtures.singleLayer(["type": .string("cnf"), "hidden": JSONValue([8, 8]), "activation": .string("softplus"),
                                         "end_time": .number(0.75), "trace": .string("hutchinson"),
                                         "probe": .string("rademacher"), "probe_seed": .number(5),
                                         "rtol": .number(1e-6), "atol": .number(1e-7), "max_steps": .number(500)],
                                        shape: [3])
        let flow = try NormalizingFlow<Float>(spec: spec, seed: 9)
        let again = try NormalizingFlow<Float>(spec: flow.spec, seed: 9)
        XCTAssertEqual(again.spec, flow.spec)
        for (a, b) in zip(flow.parameters, again.parameters) { XCTAssertEqual(a.array, b.array) }
        let layer = try XCTUnwrap(flow.layers[0] as? ContinuousFlow<Float>)
        XCTAssertEqual(layer.parameters.map(\.name),
                       (0..<3).flatMap { l in ["weight_\(l)", "bias_\(l)", "gate_weight_\(l)", "gate_bias_\(l)", "time_weight_\(l)"] })
        XCTAssertEqual(layer.config["probe_seed"]?.intValue, 5)
        XCTAssertEqual(layer.config["solver"]?.stringValue, "dopri5")

        let loaded = try NormalizingFlow<Float>.load(image: try flow.fileImage())
        XCTAssertEqual(loaded.spec, flow.spec)
        for (a, b) in zip(flow.parameters, loaded.parameters) {
            XCTAssertEqual(a.name, b.name)
            XCTAssertEqual(a.array.map(\.bitPattern), b.array.map(\.bitPattern), a.name)
        }
        let x = flow.sample(40, seed: 1)
        let lp = try flow.logProb(x)
        XCTAssertTrue(lp.allSatisfy(\.isFinite))
        XCTAssertEqual(try loaded.logProb(x), lp)
    }

    // (5a) g(z, t) = A z: closed form z(T) = exp(A T) z(0), log-det = T · tr A.
    func testLinearDynamicsClosedForm() throws {
        let d = 3, t = 0.8
        let layer = try cnf(d, tolerances(1e-11).merging(["hidden": JSONValue([Int]()), "end_time": .number(t)]) { $1 },
                            Double.self)
        let a: [Double] = [-0.4, 0.9, 0.1, -0.7, 0.3, 0.5, 0.2, -0.6, 0.25]
        let net = layer.net
        for i in 0..<(d * d) { net.weights[0].values[i] = a[i] }
        for j in 0..<d {
            net.biases[0].values[j] = 0
            net.gateWeights[0].values[j] = 0
            net.gateBiases[0].values[j] = 60  // σ(60) rounds to 1 in Double
            net.timeWeights[0].values[j] = 0
        }
        layer.parametersDidChange()
        let propagator = ODETests.matrixExponential(a.map { $0 * t }, d)
        let x = BijectionChecker.randomPoints(4, d, seed: 5)
        let (z, ld) = BijectionChecker.apply(layer, x, count: 4, inverse: false)
        let trace = a[0] + a[4] + a[8]
        for r in 0..<4 {
            for i in 0..<d {
                var expected = 0.0
                for j in 0..<d { expected += propagator[i * d + j] * x[r * d + j] }
                XCTAssertEqual(z[r * d + i], expected, accuracy: 1e-9)
            }
            XCTAssertEqual(ld[r], t * trace, accuracy: 1e-10)
        }
        let (_, ild) = BijectionChecker.apply(layer, z, count: 4, inverse: true)
        for r in 0..<4 { XCTAssertEqual(ild[r], -t * trace, accuracy: 1e-10) }
    }

    // (5b) the divergence against the trace of a central-difference Jacobian of g, random nets.
    func testDivergenceMatchesJacobianTrace() throws {
        for (d, hidden, activation) in [(1, [5], "tanh"), (2, [7, 3], "softplus"), (4, [6, 6, 6], "tanh"), (3, [Int](), "tanh")] {
            let layer = try cnf(d, ["hidden": JSONValue(hidden), "activation": .string(activation)], seed: UInt64(d), Double.self)
            let rows = 3
            let z = BijectionChecker.randomPoints(rows, d, seed: 8)
            for t in [0.0, 0.37, 1.0] {
                let out = layer.augmentedDynamics(t: t, z, rows: rows)
                let h = 1e-6
                for r in 0..<rows {
                    var trace = 0.0
                    for j in 0..<d {
                        var plus = Array(z[(r * d)..<((r + 1) * d)]), minus = plus
                        plus[j] += h
                        minus[j] -= h
                        let fp = layer.augmentedDynamics(t: t, plus, rows: 1), fm = layer.augmentedDynamics(t: t, minus, rows: 1)
                        trace += (fp[j] - fm[j]) / (2 * h)
                    }
                    XCTAssertEqual(out[r * (d + 1) + d], trace, accuracy: 1e-8, "D=\(d) \(hidden) t=\(t)")
                }
            }
            // Hutchinson: εᵀ J ε from one JVP equals the quadratic form of the FD Jacobian.
            let hutch = try cnf(d, ["hidden": JSONValue(hidden), "activation": .string(activation),
                                    "trace": .string("hutchinson"), "probe_seed": .number(3)], seed: UInt64(d), Double.self)
            let out = hutch.augmentedDynamics(t: 0.5, z, rows: rows)
            for r in 0..<rows {
                var eps = [Double](repeating: 0, count: d)
                eps.withUnsafeMutableBufferPointer {
                    Philox4x32(seed: 3).fillNormal($0.baseAddress!, count: d, row: UInt64(r), stream: RandomStream.probes)
                }
                let h = 1e-6
                let base = Array(z[(r * d)..<((r + 1) * d)])
                let fp = hutch.augmentedDynamics(t: 0.5, zip(base, eps).map { $0 + h * $1 }, rows: 1)
                let fm = hutch.augmentedDynamics(t: 0.5, zip(base, eps).map { $0 - h * $1 }, rows: 1)
                var quad = 0.0
                for j in 0..<d { quad += eps[j] * (fp[j] - fm[j]) / (2 * h) }
                XCTAssertEqual(out[r * (d + 1) + d], quad, accuracy: 1e-7)
            }
        }
    }

    // (6) composes with discrete layers.
    func testComposesWithDiscreteLayers() throws {
        let spec = JSONValue.object([
            "event_shape": JSONValue([3]),
            "layers": .array([
                .object(["type": .string("actnorm")]),
                .object(["type": .string("cnf"), "hidden": JSONValue([8]), "rtol": .number(1e-10), "atol": .number(1e-10)]),
                .object(["type": .string("affine_coupling"), "hidden": JSONValue([8])]),
            ]),
        ])
        let flow = try NormalizingFlow<Double>(spec: spec, seed: 4)
        BijectionChecker.perturb(flow.layers[2].parameters, scale: 0.3, seed: 2)
        flow.layers[2].parametersDidChange()
        var tol = BijectionChecker.Tolerance()
        tol.roundTrip = 1e-7
        tol.logDet = 1e-6
        BijectionChecker.check(flow.transform, points: 3, tolerance: tol, "actnorm + cnf + affine_coupling")
        let x = flow.sample(10, seed: 3)
        XCTAssertTrue(try flow.logProb(x).allSatisfy(\.isFinite))
    }

    // NFE accounting: one state solve per chunk of rows, NFE = 2 + 6·steps for dopri5 (first
    // evaluation, step-size heuristic, six stages per attempted step), adjoint solves from the
    // gradient pass, reset, and nil for flows without continuous layers.
    func testSolverWorkCountsEverySolve() throws {
        let spec = JSONValue.object([
            "event_shape": JSONValue([2]),
            "layers": .array([
                .object(["type": .string("cnf"), "hidden": JSONValue([8])]),
                .object(["type": .string("affine_coupling"), "hidden": JSONValue([8])]),
                .object(["type": .string("cnf"), "hidden": JSONValue([8]), "solver": .string("rk4"), "step_size": .number(0.25)]),
            ]),
        ])
        let flow = try NormalizingFlow<Double>(spec: spec, seed: 5)
        let cnfs = flow.continuousLayers
        XCTAssertEqual(cnfs.count, 2)
        let rows = ContinuousFlow<Double>.chunkRows + 5  // two chunks per layer
        XCTAssertEqual(try flow.logProb(Tensor(shape: [rows, 2], scalars: BijectionChecker.randomPoints(rows, 2, seed: 1))).count, rows)
        let adaptive = cnfs[0].solverWork(), fixed = cnfs[1].solverWork()
        XCTAssertEqual(adaptive.solves, 2)
        XCTAssertEqual(adaptive.statistics.functionEvaluations, 2 * 2 + 6 * adaptive.statistics.steps)
        XCTAssertEqual(fixed.solves, 2)
        XCTAssertEqual(fixed.statistics.functionEvaluations, 2 * 4 * 4)  // 4 RK4 steps of 4 stages over t ∈ [0, 1]
        XCTAssertEqual(adaptive.adjointSolves + fixed.adjointSolves, 0)
        let total = try XCTUnwrap(flow.solverWork(reset: true))
        XCTAssertEqual(total, adaptive + fixed)
        XCTAssertEqual(try XCTUnwrap(total.meanNFE), Double(adaptive.statistics.functionEvaluations + 32) / 4)
        XCTAssertEqual(flow.solverWork(), SolverWork())

        let x = BijectionChecker.randomPoints(6, 2, seed: 2)
        flow.zeroGradients()
        x.withUnsafeBufferPointer { _ = flow.accumulateNLLGradient($0.baseAddress!, count: 6) }
        let trained = try XCTUnwrap(flow.solverWork())
        XCTAssertEqual(trained.solves, 2)          // one chunk per layer
        XCTAssertEqual(trained.adjointSolves, 2)
        XCTAssertGreaterThan(trained.adjointStatistics.functionEvaluations, 0)
        XCTAssertNil(try NormalizingFlow<Double>.realNVP(dim: 2, layers: 1, hidden: [4], seed: 1).solverWork())
    }

    func testInvalidSpecsAreRefused() throws {
        for bad: [String: JSONValue] in [["activation": .string("relu")], ["end_time": .number(0)],
                                          ["solver": .string("bogus")], ["trace": .string("approx")],
                                          ["probe": .string("uniform")], ["rtol": .number(-1)],
                                          ["solver": .string("rk4"), "step_size": .number(0)], ["max_steps": .number(0)],
                                          ["gradient": .string("autograd")], ["kinetic_energy": .number(-1)],
                                          ["jacobian_norm": .number(.infinity)]] {
            XCTAssertThrowsError(try cnf(2, bad, Double.self), "\(bad)")
        }
    }

    func testSolverFailureGivesNaNNotACrash() throws {
        let layer = try cnf(2, ["max_steps": .number(1)], Double.self)
        let (z, ld) = BijectionChecker.apply(layer, [0.3, -0.2, 1, 2], count: 2, inverse: false)
        XCTAssertTrue(z.allSatisfy(\.isNaN) && ld.allSatisfy(\.isNaN))
        // A failed solve in the gradient pass: NaN gradients (the trainer skips the step), no trap.
        for mode in ["adjoint", "backprop"] {
            let failing = try cnf(2, ["max_steps": .number(1), "gradient": .string(mode)], Double.self)
            var g: [Double] = [1, 2]
            let w: [Double] = [1]
            let ws = Workspace()
            try! ws.reserve(bytes: failing.backwardWorkspaceBytes(count: 1))
            var arena = ws.arena()
            failing.backward(input: [0.1, 0.2], count: 1, gradient: &g, logDetGradient: w, arena: &arena)
            XCTAssertTrue(g.allSatisfy(\.isNaN), mode)
            XCTAssertTrue(failing.parameters.allSatisfy { $0.gradient.allSatisfy(\.isNaN) }, mode)
        }
    }
}
