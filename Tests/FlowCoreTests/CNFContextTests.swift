@testable import FlowCore
@testable import FlowModelFile
import FlowTestSupport
import XCTest

/// Continuous flows with a context (`cnf` with `context_features`, the dynamics `g(z, t, c)`):
/// the layer's `∂L/∂c` in both gradient modes against finite differences, adjoint and
/// backpropagation agreeing with the RNODE penalties, the Hutchinson estimate unbiased, the
/// taped adjoint equal to re-solving, bit-identical results for any thread count, bit-exact files,
/// specs, and a conditional density learnt in a few seconds. (The shared checkers run the
/// fixtures `Fixtures.conditionalContinuousLayerConfigurations` in ConditionalTests.)
final class CNFContextTests: XCTestCase {
    private let tight: [String: JSONValue] = ["rtol": .number(1e-11), "atol": .number(1e-11)]

    /// A perturbed conditional `cnf` layer of `D = d` reading `cf` context scalars.
    private func makeLayer(_ d: Int, contextFeatures cf: Int, _ extra: [String: JSONValue]) throws -> ContinuousFlow<Double> {
        var config: [String: JSONValue] = ["type": .string("cnf"), "hidden": JSONValue([8, 8]),
                                           "context_features": .number(Double(cf))]
        for (k, v) in extra { config[k] = v }
        try ContinuousFlow<Double>.validate(config, context: "test")
        let layer = try ContinuousFlow<Double>(config: config, eventShape: [d], seed: 6)
        BijectionChecker.perturb(layer.parameters, scale: 0.3, seed: 2)
        layer.parametersDidChange()
        return layer
    }

    /// `L = Σ_r u_r·z_r(T) + Σ_r w_r Δ_r` of the layer's forward pass at the context rows `c`.
    private func loss(_ layer: ContinuousFlow<Double>, _ x: [Double], _ c: [Double], u: [Double], w: [Double]) -> Double {
        let rows = w.count
        var z = x, logDet = [Double](repeating: 0, count: rows)
        let ws = Workspace()
        try! ws.reserve(bytes: layer.workspaceBytes(count: rows))
        var arena = ws.arena()
        c.withUnsafeBufferPointer { layer.forward(&z, count: rows, context: $0.baseAddress, logDet: &logDet, arena: &arena) }
        return zip(u, z).reduce(0) { $0 + $1.0 * $1.1 } + zip(w, logDet).reduce(0) { $0 + $1.0 * $1.1 }
    }

    // The layer's backward pass adds ∂L/∂c (and gives ∂L/∂x) equal to central finite differences
    // of its forward pass, in both gradient modes, with both traces and every solver.
    func testLayerContextGradientMatchesFiniteDifferences() throws {
        let cases: [(String, [String: JSONValue])] = [
            ("adjoint, exact", tight),
            ("adjoint, hutchinson", tight.merging(["trace": .string("hutchinson"), "probe_seed": .number(4)]) { $1 }),
            ("backprop, exact, dopri5", ["gradient": .string("backprop"), "rtol": .number(1e-9), "atol": .number(1e-9)]),
            ("backprop, exact, rk4", ["gradient": .string("backprop"), "solver": .string("rk4"), "step_size": .number(0.1)]),
            ("backprop, hutchinson rademacher, euler", ["gradient": .string("backprop"), "solver": .string("euler"),
                                                        "step_size": .number(0.05), "trace": .string("hutchinson"),
                                                        "probe": .string("rademacher")]),
        ]
        let rows = 3, d = 2, cf = 2, h = 1e-5
        let x = BijectionChecker.randomPoints(rows, d, seed: 1, scale: 1.5)
        let c = BijectionChecker.randomPoints(rows, cf, seed: 2, scale: 1.5)
        let u = BijectionChecker.randomPoints(rows, d, seed: 3), w = BijectionChecker.randomPoints(rows, 1, seed: 4)
        for (name, extra) in cases {
            let layer = try makeLayer(d, contextFeatures: cf, extra)
            var g = u
            let offset = 0.25  // the pass adds to the context gradient
            var gc = [Double](repeating: offset, count: rows * cf)
            let ws = Workspace()
            try ws.reserve(bytes: layer.backwardWorkspaceBytes(count: rows))
            var arena = ws.arena()
            c.withUnsafeBufferPointer { cp in
                layer.backward(input: x, count: rows, context: cp.baseAddress, gradient: &g, logDetGradient: w,
                               contextGradient: &gc, recorded: nil, arena: &arena)
            }
            for i in 0..<(rows * cf) {
                var up = c, down = c
                up[i] += h
                down[i] -= h
                let fd = (loss(layer, x, up, u: u, w: w) - loss(layer, x, down, u: u, w: w)) / (2 * h)
                XCTAssertEqual(gc[i] - offset, fd, accuracy: 2e-6 * max(1, abs(fd)), "\(name): ∂L/∂c[\(i)]")
            }
            for i in 0..<(rows * d) {
                var up = x, down = x
                up[i] += h
                down[i] -= h
                let fd = (loss(layer, up, c, u: u, w: w) - loss(layer, down, c, u: u, w: w)) / (2 * h)
                XCTAssertEqual(g[i], fd, accuracy: 2e-6 * max(1, abs(fd)), "\(name): ∂L/∂x[\(i)]")
            }
            XCTAssertGreaterThan(gc.map { abs($0 - offset) }.max()!, 1e-3, "\(name): a non-trivial context gradient")
        }
    }

    /// A conditional flow: an affine coupling, then a `cnf`, both reading the embedded context.
    private func conditionalFlow(_ extra: [String: JSONValue], seed: UInt64 = 3) throws -> NormalizingFlow<Double> {
        var cnf: [String: JSONValue] = ["type": .string("cnf"), "hidden": JSONValue([8, 8])]
        for (k, v) in extra { cnf[k] = v }
        let flow = try NormalizingFlow<Double>(spec: .object([
            "event_shape": JSONValue([2]),
            "context": .object(["size": .number(3),
                                "embedding": .object(["hidden": JSONValue([4]), "activation": .string("tanh"),
                                                      "features": .number(2)])]),
            "layers": .array([.object(["type": .string("affine_coupling"), "hidden": JSONValue([8])]), .object(cnf)]),
        ]), seed: seed)
        BijectionChecker.perturb(flow.parameters, scale: 0.3, seed: 11)
        flow.parametersDidChange()
        return flow
    }

    private func gradients(_ flow: NormalizingFlow<Double>, _ x: [Double], _ c: [Double], count: Int) -> [[Double]] {
        flow.zeroGradients()
        c.withUnsafeBufferPointer { cp in
            x.withUnsafeBufferPointer { _ = flow.accumulateNLLGradient($0.baseAddress!, count: count, context: cp.baseAddress) }
        }
        return flow.parameters.map { Array($0.gradient) }
    }

    // Adjoint and backprop give the same gradients — the context embedding's (fed by ∂L/∂c)
    // included — with and without the RNODE penalties, which do reach the embedding.
    func testAdjointAndBackpropAgreeOnTheContextGradientWithRegularisers() throws {
        let x = BijectionChecker.randomPoints(9, 2, seed: 9), c = BijectionChecker.randomPoints(9, 3, seed: 10)
        var plainEmbedding: [Double] = []
        for (lk, lj) in [(0.0, 0.0), (0.7, 0.0), (0.0, 0.4), (0.5, 0.3)] {
            let penalties = tight.merging(["kinetic_energy": .number(lk), "jacobian_norm": .number(lj)]) { $1 }
            let adjoint = try conditionalFlow(penalties)
            let backprop = try conditionalFlow(penalties.merging(["gradient": .string("backprop")]) { $1 })
            let a = gradients(adjoint, x, c, count: 9), b = gradients(backprop, x, c, count: 9)
            let scale = b.joined().map(abs).max() ?? 1
            for (p, (ga, gb)) in zip(adjoint.parameters, zip(a, b)) {
                for i in ga.indices {
                    XCTAssertEqual(ga[i], gb[i], accuracy: 1e-7 * scale, "λ_K=\(lk) λ_J=\(lj): \(p.name)[\(i)]")
                }
            }
            // The embedding's parameters come last (after the layers' and the base's).
            let embedding = Array(a.suffix(4).joined())
            XCTAssertGreaterThan(embedding.map(abs).max()!, 1e-4, "the embedding learns through the cnf")
            if lk == 0, lj == 0 {
                plainEmbedding = embedding
            } else {
                let change = zip(embedding, plainEmbedding).map { abs($0 - $1) }.max() ?? 0
                XCTAssertGreaterThan(change, 1e-5 * scale, "λ_K=\(lk) λ_J=\(lj) must change the embedding's gradient")
            }
        }
    }

    // With a context, the Hutchinson estimate (probes in the first `D` of the first layer's
    // `D + C` input columns) is still unbiased, and the trajectory does not depend on the probe.
    func testHutchinsonWithContextIsUnbiased() throws {
        let d = 3, cf = 2, copies = 64
        let exact = try makeLayer(d, contextFeatures: cf, ["rtol": .number(1e-8), "atol": .number(1e-8)])
        let x = BijectionChecker.randomPoints(1, d, seed: 21), c = [0.7, -1.1]
        let batch = Array((0..<copies).map { _ in x }.joined()), contexts = Array((0..<copies).map { _ in c }.joined())
        func apply(_ l: ContinuousFlow<Double>, _ rows: [Double], _ ctx: [Double], count: Int) -> ([Double], [Double]) {
            var z = rows, logDet = [Double](repeating: 0, count: count)
            let ws = Workspace()
            try! ws.reserve(bytes: l.workspaceBytes(count: count))
            var arena = ws.arena()
            ctx.withUnsafeBufferPointer { l.forward(&z, count: count, context: $0.baseAddress, logDet: &logDet, arena: &arena) }
            return (z, logDet)
        }
        let (zExact, ldExact) = apply(exact, x, c, count: 1)
        for probe in ["gaussian", "rademacher"] {
            var estimates: [Double] = []
            for probeSeed in 0..<4 {
                let estimator = try makeLayer(d, contextFeatures: cf, ["rtol": .number(1e-8), "atol": .number(1e-8),
                                                                   "trace": .string("hutchinson"), "probe": .string(probe),
                                                                   "probe_seed": .number(Double(probeSeed))])
                let (z, ld) = apply(estimator, batch, contexts, count: copies)
                XCTAssertLessThan(BijectionChecker.maxRelativeError(Array(z[0..<d]), zExact), 1e-6)
                estimates += ld
            }
            let n = Double(estimates.count)
            let mean = estimates.reduce(0, +) / n
            let se = (estimates.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1) / n).squareRoot()
            XCTAssertGreaterThan(se, 1e-4, "\(probe): the estimates vary")
            XCTAssertLessThan(abs(mean - ldExact[0]), 3 * se, "\(probe): mean \(mean) vs exact \(ldExact[0]), SE \(se)")
        }
    }

    // With a context, the divergence estimate of row r is εᵀ J ε with J = ∂g/∂z at that row's
    // context (central differences here) and ε the documented draw: Philox stream 5, key
    // probe_seed, counter row r (standard normal, or ±1 by `fillUniform < 0.5`), whatever C is.
    func testHutchinsonProbeWithContextIsTheDocumentedDraw() throws {
        let d = 3, rows = 4, h = 1e-6
        for (probe, cf) in [("gaussian", 2), ("rademacher", 5), ("gaussian", 1)] {
            let layer = try makeLayer(d, contextFeatures: cf, ["trace": .string("hutchinson"), "probe": .string(probe),
                                                               "probe_seed": .number(3)])
            let z = BijectionChecker.randomPoints(rows, d, seed: 8), c = BijectionChecker.randomPoints(rows, cf, seed: 9)
            let out = layer.augmentedDynamics(t: 0.4, z, rows: rows, context: c)
            for r in 0..<rows {
                var eps = [Double](repeating: 0, count: d)
                eps.withUnsafeMutableBufferPointer {
                    let philox = Philox4x32(seed: 3)
                    if probe == "gaussian" {
                        philox.fillNormal($0.baseAddress!, count: d, row: UInt64(r), stream: RandomStream.probes)
                    } else {
                        philox.fillUniform($0.baseAddress!, count: d, row: UInt64(r), stream: RandomStream.probes)
                        for j in 0..<d { $0[j] = $0[j] < 0.5 ? -1 : 1 }
                    }
                }
                let row = Array(z[(r * d)..<((r + 1) * d)]), contextRow = Array(c[(r * cf)..<((r + 1) * cf)])
                let up = layer.augmentedDynamics(t: 0.4, zip(row, eps).map { $0 + h * $1 }, rows: 1, context: contextRow)
                let down = layer.augmentedDynamics(t: 0.4, zip(row, eps).map { $0 - h * $1 }, rows: 1, context: contextRow)
                var quadratic = 0.0
                for j in 0..<d { quadratic += eps[j] * (up[j] - down[j]) / (2 * h) }
                XCTAssertEqual(out[r * (d + 1) + d], quadratic, accuracy: 1e-7, "\(probe) C=\(cf) row \(r)")
            }
        }
    }

    // Training keeps each row's z(T) for the adjoint: with a context, outputs, input, parameter
    // and context gradients are bit-identical to a pass that solves forward again.
    func testTapedAdjointWithContextMatchesResolving() throws {
        for trace in ["exact", "hutchinson"] {
            let spec = JSONValue.object([
                "event_shape": JSONValue([2]), "context": .object(["size": .number(2)]),
                "layers": .array([.object(["type": .string("cnf"), "hidden": JSONValue([8]), "trace": .string(trace),
                                           "kinetic_energy": .number(0.1), "jacobian_norm": .number(0.1)])]),
            ])
            let flow = try NormalizingFlow<Float>(spec: spec, seed: 4)
            let transform = flow.transform, rows = 70, d = 2
            let x = BijectionChecker.randomPoints(rows, d, seed: 8).map { Float($0) }
            let r = BijectionChecker.randomPoints(rows, d, seed: 9).map { Float($0) }
            let context = BijectionChecker.randomPoints(rows, 2, seed: 10).map { Float($0) }
            func pass(taped: Bool) -> ([Float], [Double], [Float], [[Float]], [Float]) {
                var saved = [Float](repeating: 0, count: rows * d)
                var z = x, g = r, logDet = [Double](repeating: 0, count: rows)
                var contextGradient = [Float](repeating: 0, count: rows * 2)
                let w = [Float](repeating: -0.3, count: rows)
                let tape = UnsafeMutableRawPointer.allocate(byteCount: max(transform.layerTapeBytes(count: rows), 64), alignment: 64)
                defer { tape.deallocate() }
                flow.zeroGradients()
                let ws = Workspace()
                try! ws.reserve(bytes: transform.trainingWorkspaceBytes(count: rows))
                context.withUnsafeBufferPointer { cp in
                    var arena = ws.arena()
                    transform.forward(saving: &saved, tape: taped ? tape : nil, &z, count: rows, context: cp.baseAddress,
                                      logDet: &logDet, arena: &arena)
                    arena = ws.arena()
                    transform.backward(saved: saved, tape: taped ? UnsafeRawPointer(tape) : nil, count: rows,
                                       context: cp.baseAddress, gradient: &g, logDetGradient: w,
                                       contextGradient: &contextGradient, arena: &arena)
                }
                return (z, logDet, g, flow.parameters.map { Array($0.gradient) }, contextGradient)
            }
            XCTAssertGreaterThan(transform.layerTapeBytes(count: rows), 0)
            let a = pass(taped: true), b = pass(taped: false)
            XCTAssertEqual(a.0, b.0, "\(trace): z")
            XCTAssertEqual(a.1, b.1, "\(trace): logDet")
            XCTAssertEqual(a.2, b.2, "\(trace): ∂x")
            XCTAssertEqual(a.3, b.3, "\(trace): parameter gradients")
            XCTAssertEqual(a.4, b.4, "\(trace): context gradient")
            XCTAssertTrue(a.4.allSatisfy(\.isFinite) && a.4.contains { $0 != 0 }, trace)
        }
    }

    // log p(x | c), samples at contexts and gradients (the embedding's included) are
    // bit-identical for 1, 2 and 3 threads, over several chunks of the flow and of the layers.
    func testResultsAreBitIdenticalForAnyThreadCount() throws {
        let spec = JSONValue.object([
            "event_shape": JSONValue([2]),
            "context": .object(["size": .number(2), "embedding": .object(["hidden": JSONValue([4]), "features": .number(3)])]),
            "layers": .array([
                .object(["type": .string("cnf"), "hidden": JSONValue([16]), "trace": .string("hutchinson"),
                         "rtol": .number(1e-4), "atol": .number(1e-4)]),
                .object(["type": .string("cnf"), "hidden": JSONValue([8]), "gradient": .string("backprop"),
                         "solver": .string("rk4"), "step_size": .number(0.25)]),
            ]),
        ])
        let flow = try NormalizingFlow<Float>(spec: spec, seed: 2)
        BijectionChecker.perturb(flow.parameters, scale: 0.2, seed: 3)
        flow.parametersDidChange()
        let n = 2 * flow.chunkRows + 37
        let x = BijectionChecker.randomPoints(n, 2, seed: 4).map { Float($0) }
        let c = BijectionChecker.randomPoints(n, 2, seed: 5).map { Float($0) }
        func run() -> ([Double], [Float], [Double], [[Float]]) {
            var lp = [Double](repeating: 0, count: n), s = [Float](repeating: 0, count: n * 2)
            var slp = [Double](repeating: 0, count: n)
            c.withUnsafeBufferPointer { cp in
                x.withUnsafeBufferPointer { flow.logProb($0.baseAddress!, count: n, context: cp.baseAddress, into: &lp) }
                flow.sample(count: n, seed: 7, context: cp.baseAddress, into: &s, logProb: &slp)
            }
            flow.zeroGradients()
            c.withUnsafeBufferPointer { cp in
                x.withUnsafeBufferPointer { _ = flow.accumulateNLLGradient($0.baseAddress!, count: n, context: cp.baseAddress) }
            }
            return (lp, s, slp, flow.parameters.map { Array($0.gradient) })
        }
        let saved = FlowRuntime.threadCount
        defer { FlowRuntime.threadCount = saved }
        FlowRuntime.threadCount = 1
        let reference = run()
        XCTAssertTrue(reference.0.allSatisfy(\.isFinite) && reference.2.allSatisfy(\.isFinite))
        for threads in [2, 3] {
            FlowRuntime.threadCount = threads
            let other = run()
            XCTAssertEqual(other.0.map(\.bitPattern), reference.0.map(\.bitPattern), "\(threads) threads: log p")
            XCTAssertEqual(other.1.map(\.bitPattern), reference.1.map(\.bitPattern), "\(threads) threads: samples")
            XCTAssertEqual(other.2.map(\.bitPattern), reference.2.map(\.bitPattern), "\(threads) threads: sample log p")
            XCTAssertEqual(other.3, reference.3, "\(threads) threads: gradients")
        }
    }

    // A conditional CNF model survives the HDF5 file bit for bit: spec, parameters (the first
    // layer's weight is [h₁, D + E]), log p(x | c) and samples at contexts.
    func testFileRoundTripIsBitExact() throws {
        let spec = JSONValue.object([
            "event_shape": JSONValue([3]),
            "context": .object(["size": .number(2), "mean": .array([.number(0.5), .number(-1)]),
                                "scale": .array([.number(2), .number(0.5)]),
                                "embedding": .object(["hidden": JSONValue([5]), "activation": .string("tanh"),
                                                      "features": .number(4)])]),
            "layers": .array([
                .object(["type": .string("cnf"), "hidden": JSONValue([8, 8]), "trace": .string("hutchinson"),
                         "probe": .string("rademacher"), "probe_seed": .number(5), "rtol": .number(1e-4),
                         "atol": .number(1e-4)]),
                .object(["type": .string("affine_coupling"), "hidden": JSONValue([8])]),
                .object(["type": .string("cnf"), "hidden": JSONValue([Int]()), "solver": .string("rk4"),
                         "gradient": .string("backprop")]),
            ]),
        ])
        let flow = try NormalizingFlow<Float>(spec: spec, seed: 9)
        BijectionChecker.perturb(flow.parameters, scale: 0.2, seed: 1)
        flow.parametersDidChange()
        let first = try XCTUnwrap(flow.layers[0] as? ContinuousFlow<Float>)
        XCTAssertEqual(first.contextFeatures, 4)
        XCTAssertEqual(first.config["context_features"]?.intValue, 4)
        XCTAssertEqual(first.parameters[0].shape, [8, 3 + 4])
        XCTAssertEqual(try XCTUnwrap(flow.layers[2] as? ContinuousFlow<Float>).parameters[0].shape, [3, 3 + 4])

        let loaded = try NormalizingFlow<Float>.load(image: try flow.fileImage())
        XCTAssertEqual(loaded.spec, flow.spec)
        XCTAssertEqual(loaded.contextSize, 2)
        for (a, b) in zip(flow.parameters, loaded.parameters) {
            XCTAssertEqual(a.name, b.name)
            XCTAssertEqual(a.shape, b.shape)
            XCTAssertEqual(a.array.map(\.bitPattern), b.array.map(\.bitPattern), a.name)
        }
        let n = 50
        let c = BijectionChecker.randomPoints(n, 2, seed: 3).map { Float($0) }
        func outputs(_ f: NormalizingFlow<Float>) -> ([Double], [Float]) {
            var s = [Float](repeating: 0, count: n * 3), lp = [Double](repeating: 0, count: n)
            c.withUnsafeBufferPointer { cp in
                f.sample(count: n, seed: 4, context: cp.baseAddress, into: &s, logProb: &lp)
                s.withUnsafeBufferPointer { f.logProb($0.baseAddress!, count: n, context: cp.baseAddress, into: &lp) }
            }
            return (lp, s)
        }
        let (lp, s) = outputs(flow), (lpLoaded, sLoaded) = outputs(loaded)
        XCTAssertTrue(lp.allSatisfy(\.isFinite))
        XCTAssertEqual(lp.map(\.bitPattern), lpLoaded.map(\.bitPattern))
        XCTAssertEqual(s.map(\.bitPattern), sLoaded.map(\.bitPattern))
        // The context matters: other contexts give other densities.
        var shifted = [Double](repeating: 0, count: n)
        let other = c.map { $0 + 1 }
        other.withUnsafeBufferPointer { cp in
            s.withUnsafeBufferPointer { flow.logProb($0.baseAddress!, count: n, context: cp.baseAddress, into: &shifted) }
        }
        XCTAssertGreaterThan(zip(lp, shifted).map { abs($0 - $1) }.max()!, 1e-3)
    }

    // A flow's context reaches its cnf layers; unconditional specs stay as they were; bad
    // context sizes are refused with the same messages as for the other conditional layers.
    func testSpecs() throws {
        let flow = try NormalizingFlow<Float>(specJSON: #"""
            {"event_shape": [2], "context": {"size": 3},
             "layers": [{"type": "cnf", "hidden": [4]}, {"type": "affine_coupling", "hidden": [4]}]}
            """#, seed: 1)
        let layer = try XCTUnwrap(flow.layers[0] as? ContinuousFlow<Float>)
        XCTAssertEqual(layer.contextFeatures, 3)
        XCTAssertEqual(layer.parameters[0].shape, [4, 2 + 3])
        XCTAssertEqual(try NormalizingFlow<Float>(spec: flow.spec, seed: 0).spec, flow.spec)
        let plain = try XCTUnwrap(NormalizingFlow<Float>(specJSON: #"{"event_shape": [2], "layers": [{"type": "cnf"}]}"#,
                                                        seed: 1).layers[0] as? ContinuousFlow<Float>)
        XCTAssertEqual(plain.contextFeatures, 0)
        XCTAssertNil(plain.config["context_features"], "an unconditional cnf's config (and file) has no context_features")
        for (text, fragment) in [
            (#"{"event_shape": [2], "layers": [{"type": "cnf", "context_features": 3}]}"#, "the flow has no context"),
            (#"{"event_shape": [2], "context": {"size": 2}, "layers": [{"type": "cnf", "context_features": 3}]}"#,
             "the flow's context gives 2"),
            (#"{"event_shape": [2], "layers": [{"type": "cnf", "context_features": -1}]}"#, "context_features"),
            (#"{"event_shape": [2], "layers": [{"type": "cnf", "context_features": 1000000}]}"#, "context_features"),
        ] {
            ErrorAssertions.assertThrows([fragment], ErrorAssertions.isInvalidSpec) {
                _ = try NormalizingFlow<Float>(specJSON: text, seed: 0)
            }
        }
        // A first layer too large for the parameter limit is refused before anything is allocated.
        ErrorAssertions.assertThrows(["dynamics network"], ErrorAssertions.isLimit) {
            _ = try NormalizingFlow<Float>(specJSON: #"""
                {"event_shape": [2], "context": {"size": 65536},
                 "layers": [{"type": "cnf", "hidden": [8192]}]}
                """#, seed: 0)
        }
    }

    // p(x | c) = N(c, I) in 2-D with c ~ N(0, 2² I): a small conditional CNF (the context
    // standardised by its known scale) learns it in three epochs of 1000 rows, reaching a test
    // NLL well below what any unconditional model can (the entropy of the marginal N(0, 5 I),
    // log(2πe·5) ≈ 4.447 nats; this run: about 3.69), towards the conditional entropy
    // log(2πe) ≈ 2.838.
    func testConditionalTrainingLearnsTheContext() throws {
        func data(_ n: Int, seed: UInt64) -> ([Float], [Float]) {
            var rng = PhiloxStream(seed: seed, row: 0, stream: 3)
            var x: [Float] = [], c: [Float] = []
            for _ in 0..<n {
                for _ in 0..<2 {
                    let ci = 2 * rng.nextNormal()
                    c.append(Float(ci))
                    x.append(Float(ci + rng.nextNormal()))
                }
            }
            return (x, c)
        }
        let flow = try NormalizingFlow<Float>(specJSON: #"""
            {"event_shape": [2], "context": {"size": 2, "scale": [2, 2]},
             "layers": [{"type": "cnf", "hidden": [16], "rtol": 1e-2, "atol": 1e-2}]}
            """#, seed: 1)
        let (x, c) = data(1000, seed: 1), (testX, testC) = data(1000, seed: 2)
        func testNLL() -> Double {
            testC.withUnsafeBufferPointer { cp in testX.withUnsafeBufferPointer { flow.meanNLL($0.baseAddress!, count: 1000, context: cp.baseAddress) } }
        }
        let before = testNLL()
        var options = TrainingOptions()
        options.epochs = 3
        options.batchSize = 100
        options.optimizer.learningRate = 3e-2
        let history = try c.withUnsafeBufferPointer { cp in
            try x.withUnsafeBufferPointer { try Trainer(flow: flow, data: $0, rows: 1000, context: cp, options: options).run() }
        }
        let after = testNLL()
        let unconditionalOptimum = log(2 * Double.pi * M_E * 5)
        XCTAssertLessThan(after, unconditionalOptimum - 0.5, "test NLL \(before) → \(after); history \(history.map(\.trainNLL))")
        XCTAssertGreaterThan(after, log(2 * Double.pi * M_E) - 0.1, "below the conditional entropy: \(after)")
    }
}
