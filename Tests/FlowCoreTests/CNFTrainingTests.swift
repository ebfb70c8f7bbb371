@testable import FlowCore
@testable import FlowModelFile
import FlowTestSupport
import XCTest

/// Training continuous flows: adjoint and backpropagation-through-the-solver gradients against
/// finite differences (Float64), the RNODE penalties' gradients against finite differences of
/// the penalties computed independently here, fresh probes per training step, and a short
/// training run.
final class CNFTrainingTests: XCTestCase {
    private func cnfFlow(_ d: Int, _ extra: [String: JSONValue], coupling: Bool = false, seed: UInt64 = 3) throws
        -> NormalizingFlow<Double>
    {
        var layer: [String: JSONValue] = ["type": .string("cnf"), "hidden": JSONValue([8, 8])]
        for (k, v) in extra { layer[k] = v }
        var layers: [JSONValue] = []
        if coupling {
            layers.append(.object(["type": .string("affine_coupling"), "hidden": JSONValue([8]), "mask": .string("half")]))
        }
        layers.append(.object(layer))
        let flow = try NormalizingFlow<Double>(spec: .object([
            "event_shape": JSONValue([d]), "base": .object(["type": .string("standard_normal")]),
            "layers": .array(layers),
        ]), seed: seed)
        // A non-trivial coupling, so the gradient with respect to the CNF's input matters.
        if coupling { BijectionChecker.perturb(flow.layers[0].parameters, scale: 0.3, seed: 11) }
        flow.transform.parametersDidChange()
        return flow
    }

    private func cnfLayer(_ flow: NormalizingFlow<Double>) throws -> ContinuousFlow<Double> {
        try XCTUnwrap(flow.layers.last as? ContinuousFlow<Double>)
    }

    private let tight: [String: JSONValue] = ["rtol": .number(1e-11), "atol": .number(1e-11)]

    // The adjoint gradient of the mean NLL (through z(T) and Δ(T), into a preceding coupling)
    // equals central finite differences, for the exact trace and the Hutchinson estimate.
    func testAdjointGradientMatchesFiniteDifferences() throws {
        for trace in ["exact", "hutchinson"] {
            let flow = try cnfFlow(2, tight.merging(["trace": .string(trace)]) { $1 }, coupling: true)
            let x = BijectionChecker.randomPoints(7, 2, seed: 5)
            GradientChecker.check(flow, data: x, count: 7, step: 1e-5, tolerance: 2e-6, maxPerParameter: 12,
                                  "adjoint, \(trace) trace")
        }
        let flow3 = try cnfFlow(3, tight.merging(["activation": .string("softplus")]) { $1 })
        GradientChecker.check(flow3, data: BijectionChecker.randomPoints(5, 3, seed: 6), count: 5, step: 1e-5,
                              tolerance: 2e-6, maxPerParameter: 12, "adjoint, softplus, D=3")
    }

    // Backpropagation through fixed RK4 and Euler steps is the exact gradient of the discrete
    // map; through DOPRI5 it is exact for the accepted step sequence.
    func testBackpropGradientMatchesFiniteDifferences() throws {
        for (solver, extra) in [("rk4", ["step_size": JSONValue.number(0.1)]), ("euler", ["step_size": .number(0.05)]),
                                ("dopri5", ["rtol": .number(1e-7), "atol": .number(1e-7)])] {
            for trace in ["exact", "hutchinson"] {
                var config: [String: JSONValue] = ["solver": .string(solver), "trace": .string(trace),
                                                   "gradient": .string("backprop")]
                for (k, v) in extra { config[k] = v }
                let flow = try cnfFlow(2, config, coupling: true)
                GradientChecker.check(flow, data: BijectionChecker.randomPoints(6, 2, seed: 8), count: 6, step: 1e-5,
                                      tolerance: 1e-6, maxPerParameter: 10, "backprop \(solver) \(trace)")
            }
        }
    }

    /// With the adjoint method, training keeps each row's `z(T)` from the forward pass instead of
    /// solving it again: the gradients are bit-identical to re-solving, with both traces and the
    /// RNODE penalties, and one forward solve per chunk is saved.
    func testAdjointFromTheTapedEndStateMatchesResolving() throws {
        for trace in ["exact", "hutchinson"] {
            let config: [String: JSONValue] = ["trace": .string(trace), "kinetic_energy": .number(0.1),
                                               "jacobian_norm": .number(0.1)]
            let flow = try cnfFlow(2, config, coupling: true)
            TapeChecker.assertTapedPassMatchesRecomputation(flow, rows: 70, "adjoint \(trace)")
            let float = try NormalizingFlow<Float>(spec: flow.spec, seed: 3)
            BijectionChecker.perturb(float.parameters, scale: 0.3, seed: 4)
            float.transform.parametersDidChange()
            TapeChecker.assertTapedPassMatchesRecomputation(float, rows: 70, "adjoint \(trace) (Float)")
        }
        let backprop = try cnfFlow(2, ["gradient": .string("backprop")], coupling: false)
        XCTAssertEqual(backprop.transform.layerTapeBytes(count: 8), 0, "backprop records its steps by re-solving")
    }

    /// `∂(mean NLL)/∂θ` and `∂L/∂x` (through a preceding coupling) as computed by the layer.
    private func gradients(_ flow: NormalizingFlow<Double>, _ x: [Double], count: Int) -> [Double] {
        flow.zeroGradients()
        x.withUnsafeBufferPointer { _ = flow.accumulateNLLGradient($0.baseAddress!, count: count) }
        return flow.parameters.flatMap { Array($0.gradient) }
    }

    // Adjoint and backprop agree (tight tolerances), with and without the RNODE penalties, and
    // the penalties do change the gradient.
    func testAdjointAndBackpropAgreeWithRegularisers() throws {
        let x = BijectionChecker.randomPoints(9, 2, seed: 9)
        var plain: [Double] = []
        for (lk, lj) in [(0.0, 0.0), (0.7, 0.0), (0.0, 0.4), (0.5, 0.3)] {
            let penalties: [String: JSONValue] = ["kinetic_energy": .number(lk), "jacobian_norm": .number(lj)]
            let adjoint = try cnfFlow(2, tight.merging(penalties) { $1 }, coupling: true)
            let backprop = try cnfFlow(2, tight.merging(penalties) { $1 }.merging(["gradient": .string("backprop")]) { $1 },
                                       coupling: true)
            let a = gradients(adjoint, x, count: 9), b = gradients(backprop, x, count: 9)
            let scale = b.map(abs).max() ?? 1
            for i in a.indices {
                XCTAssertEqual(a[i], b[i], accuracy: 1e-7 * scale, "λ_K=\(lk) λ_J=\(lj): gradient \(i)")
            }
            if lk == 0, lj == 0 {
                plain = a
            } else {
                let change = zip(a, plain).map { abs($0 - $1) }.max() ?? 0
                XCTAssertGreaterThan(change, 1e-4 * scale, "λ_K=\(lk) λ_J=\(lj) must change the gradient")
            }
        }
    }

    /// `Σ_r (λ_K ∫‖g‖² + λ_J ∫‖J‖_F²) / rows` along each row's trajectory, by classical RK4 on the
    /// state `[z, R]` with `R′ = λ_K‖g‖² + λ_J‖J‖_F²` — `g` from the layer's dynamics, `J` by central
    /// differences in `z` — over the layer's own RK4 grid.
    private func penalty(_ layer: ContinuousFlow<Double>, _ x: [Double], rows: Int, steps: Int,
                         lambdaK: Double, lambdaJ: Double) -> Double {
        let d = layer.dimension
        func g(_ t: Double, _ z: [Double]) -> [Double] {
            let out = layer.augmentedDynamics(t: t, z, rows: 1)
            return Array(out[0..<d])
        }
        func f(_ t: Double, _ y: [Double]) -> [Double] {
            let z = Array(y[0..<d]), gz = g(t, z)
            var frobenius = 0.0
            let eps = 1e-5
            for k in 0..<d {
                var up = z, down = z
                up[k] += eps
                down[k] -= eps
                let gu = g(t, up), gd = g(t, down)
                for j in 0..<d { frobenius += pow((gu[j] - gd[j]) / (2 * eps), 2) }
            }
            let kinetic = gz.reduce(0) { $0 + $1 * $1 }
            return gz + [lambdaK * kinetic + lambdaJ * frobenius]
        }
        var total = 0.0
        let h = layer.endTime / Double(steps)
        for r in 0..<rows {
            var y = Array(x[(r * d)..<((r + 1) * d)]) + [0]
            for s in 0..<steps {
                let t = Double(s) * h
                let k1 = f(t, y)
                let k2 = f(t + h / 2, zip(y, k1).map { $0 + h / 2 * $1 })
                let k3 = f(t + h / 2, zip(y, k2).map { $0 + h / 2 * $1 })
                let k4 = f(t + h, zip(y, k3).map { $0 + h * $1 })
                for i in y.indices { y[i] += h * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]) / 6 }
            }
            total += y[d]
        }
        return total / Double(rows)
    }

    // The penalties' gradients equal finite differences of the penalties computed above.
    func testRegulariserGradientsMatchFiniteDifferences() throws {
        let rows = 4, lambdaK = 0.8, lambdaJ = 0.6
        let x = BijectionChecker.randomPoints(rows, 2, seed: 12)
        let config: [String: JSONValue] = ["solver": .string("rk4"), "step_size": .number(0.25), "gradient": .string("backprop"),
                                           "kinetic_energy": .number(lambdaK), "jacobian_norm": .number(lambdaJ)]
        let flow = try cnfFlow(2, config)
        let layer = try cnfLayer(flow)
        let plainFlow = try cnfFlow(2, config.merging(["kinetic_energy": .number(0), "jacobian_norm": .number(0)]) { $1 })
        let withPenalty = gradients(flow, x, count: rows), without = gradients(plainFlow, x, count: rows)
        var index = 0, checked = 0
        for p in flow.parameters {
            for i in stride(from: 0, to: p.count, by: max(1, p.count / 6)) {
                let original = p.values[i], h = 1e-5
                p.values[i] = original + h
                flow.transform.parametersDidChange()
                let up = penalty(layer, x, rows: rows, steps: 4, lambdaK: lambdaK, lambdaJ: lambdaJ)
                p.values[i] = original - h
                flow.transform.parametersDidChange()
                let down = penalty(layer, x, rows: rows, steps: 4, lambdaK: lambdaK, lambdaJ: lambdaJ)
                p.values[i] = original
                flow.transform.parametersDidChange()
                let fd = (up - down) / (2 * h)
                let analytic = withPenalty[index + i] - without[index + i]
                XCTAssertEqual(analytic, fd, accuracy: 1e-5 * max(1, abs(fd)), "∂R/∂\(p.name)[\(i)]")
                checked += 1
            }
            index += p.count
        }
        XCTAssertGreaterThan(checked, 20)
    }

    // Hutchinson probes: a new draw per training step, the evaluation draw (0) otherwise.
    func testProbeDrawsChangeTheEstimateOnly() throws {
        let flow = try cnfFlow(3, ["trace": .string("hutchinson")])
        let layer = try cnfLayer(flow)
        let x = BijectionChecker.randomPoints(4, 3, seed: 2)
        func logProb() -> [Double] {
            var out = [Double](repeating: 0, count: 4)
            x.withUnsafeBufferPointer { p in out.withUnsafeMutableBufferPointer { flow.logProb(p.baseAddress!, count: 4, into: $0.baseAddress!) } }
            return out
        }
        let first = logProb()
        layer.probeDraw = 7
        let other = logProb()
        layer.probeDraw = 0
        XCTAssertEqual(logProb(), first)
        XCTAssertNotEqual(first, other)
    }

    /// Four epochs on 1200 rows of 8gaussians (batch 100, learning rate 1e-2), which must lower
    /// the validation NLL by more than 0.2 nats.
    private func trainBriefly(_ flow: NormalizingFlow<Float>, dataSeed: UInt64, _ label: String) throws {
        let data = try ToyDataset.eightGaussians.generate(1200, seed: dataSeed)
        var options = TrainingOptions()
        options.epochs = 4
        options.batchSize = 100
        options.optimizer.learningRate = 1e-2
        let history = try data.withUnsafeBufferPointer {
            try Trainer(flow: flow, data: $0, rows: 1200, options: options).run()
        }
        let first = try XCTUnwrap(history.first?.validationNLL), last = try XCTUnwrap(history.last?.validationNLL)
        XCTAssertLessThan(last, first - 0.2, "\(label): validation NLL \(history.map(\.validationNLL))")
    }

    // A short training run lowers the NLL of 8gaussians and leaves the evaluation probes in place.
    func testTrainingLowersTheLoss() throws {
        for trace in ["exact", "hutchinson"] {
            let flow = try NormalizingFlow<Float>(spec: Fixtures.singleLayer(
                ["type": .string("cnf"), "hidden": JSONValue([16, 16]), "trace": .string(trace),
                 "rtol": .number(1e-3), "atol": .number(1e-3)], shape: [2]), seed: 1)
            try trainBriefly(flow, dataSeed: 4, trace)
            XCTAssertEqual(try XCTUnwrap(flow.layers[0] as? ContinuousFlow<Float>).probeDraw, 0)
        }
    }

    // On a trained model (where the dynamics are far from their initial state), the mean of many
    // Hutchinson log-densities matches the exact one within its standard error, for both probes.
    func testHutchinsonAgreesWithExactOnATrainedModel() throws {
        let layer: [String: JSONValue] = ["type": .string("cnf"), "hidden": JSONValue([16, 16]),
                                          "rtol": .number(1e-3), "atol": .number(1e-3)]
        let trained = try NormalizingFlow<Float>(spec: Fixtures.singleLayer(layer, shape: [2]), seed: 5)
        try trainBriefly(trained, dataSeed: 6, "exact")

        // The trained parameters in Float64 flows solved tightly, exact and Hutchinson.
        func copy(_ extra: [String: JSONValue]) throws -> NormalizingFlow<Double> {
            var config = layer.merging(["rtol": .number(1e-7), "atol": .number(1e-7)]) { $1 }
            for (k, v) in extra { config[k] = v }
            let flow = try NormalizingFlow<Double>(spec: Fixtures.singleLayer(config, shape: [2]), seed: 0)
            for (target, source) in zip(flow.parameters, trained.parameters) { target.assign(source.array.map(Double.init)) }
            flow.transform.parametersDidChange()
            return flow
        }
        let exact = try copy([:])
        let points = try ToyDataset.eightGaussians.generate(4, seed: 7).map(Double.init)
        let exactLogP = try exact.logProb(Tensor(shape: [4, 2], scalars: points))
        let copies = 256
        for probe in ["gaussian", "rademacher"] {
            let estimator = try copy(["trace": .string("hutchinson"), "probe": .string(probe), "probe_seed": .number(9)])
            for p in 0..<4 {
                // Every row of a batch draws its own probe: `copies` independent estimates.
                let batch = Array((0..<copies).map { _ in points[(2 * p)..<(2 * p + 2)] }.joined())
                let estimates = try estimator.logProb(Tensor(shape: [copies, 2], scalars: batch))
                let n = Double(copies)
                let mean = estimates.reduce(0, +) / n
                let variance = estimates.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)
                let se = (variance / n).squareRoot()
                XCTAssertGreaterThan(se, 1e-4, "\(probe) point \(p): the estimates vary")
                XCTAssertLessThan(abs(mean - exactLogP[p]), 3 * se,
                                  "\(probe) point \(p): mean \(mean) vs exact \(exactLogP[p]), SE \(se)")
            }
        }
    }
}
