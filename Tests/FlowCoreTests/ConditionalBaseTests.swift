@testable import FlowCore
import FlowTestSupport
import Foundation
import XCTest

/// The conditional base `conditional_diagonal_normal` (``ConditionalDiagonalNormal``): its
/// density against the analytic conditional normal, identity at initialisation, gradients
/// (parameters, embedding, z and context) against finite differences, sampling and temperature,
/// a fit of a known linear-Gaussian conditional, and the spec's refusals.
final class ConditionalBaseTests: XCTestCase {
    private func spec(d: Int, context: [String: JSONValue], base: [String: JSONValue],
                      layers: [[String: JSONValue]] = []) -> JSONValue {
        .object(["event_shape": JSONValue([d]), "context": .object(context), "base": .object(base),
                 "layers": .array(layers.map(JSONValue.object))])
    }

    private func conditionalBase<T>(_ flow: NormalizingFlow<T>) throws -> ConditionalDiagonalNormal<T> {
        try XCTUnwrap(flow.base as? ConditionalDiagonalNormal<T>)
    }

    /// The base network evaluated independently: `[loc | log σ]` at the encoded row `e`.
    private func networkOutput(_ base: ConditionalDiagonalNormal<Double>, _ e: [Double]) -> [Double] {
        let net = base.network
        var h = e
        for l in 0..<net.weights.count {
            let rows = net.widths[l + 1], cols = net.widths[l]
            var next = [Double](repeating: 0, count: rows)
            for i in 0..<rows {
                var v = net.biases[l].values[i]
                for j in 0..<cols { v += net.weights[l].values[i * cols + j] * h[j] }
                next[i] = l < net.weights.count - 1 ? Foundation.tanh(v) : v
            }
            h = next
        }
        return h
    }

    /// `log N(z; loc, diag σ²)`, σ = exp(log σ), straight from the formula.
    private func normalLogDensity(_ z: [Double], loc: [Double], logScale: [Double]) -> Double {
        var total = 0.0
        for j in z.indices {
            let u = (z[j] - loc[j]) / Foundation.exp(logScale[j])
            total += -0.5 * u * u - logScale[j] - 0.5 * Foundation.log(2 * Double.pi)
        }
        return total
    }

    /// With the network's weights given, `log p(x | c)` is the analytic normal at
    /// `[loc | log σ] = net((c − mean)/scale)`, after the layers (none, or a reversal).
    func testLogProbEqualsTheAnalyticConditionalNormal() throws {
        let d = 3
        let mean = [0.5, -1.0], scale = [2.0, 0.5]
        let context: [String: JSONValue] = ["size": 2, "mean": .array(mean.map { .number($0) }),
                                            "scale": .array(scale.map { .number($0) })]
        let cases: [([[String: JSONValue]], [String: JSONValue])] = [
            ([], ["type": "conditional_diagonal_normal"]),
            ([["type": "permutation", "kind": "reverse"]],
             ["type": "conditional_diagonal_normal", "hidden": JSONValue([4]), "activation": "tanh"]),
        ]
        for (layers, baseSpec) in cases {
            let flow = try NormalizingFlow<Double>(spec: spec(d: d, context: context, base: baseSpec, layers: layers), seed: 3)
            let base = try conditionalBase(flow)
            XCTAssertEqual(base.contextFeatures, 2)
            XCTAssertEqual(base.network.widths.last, 2 * d)
            BijectionChecker.perturb(base.parameters, scale: 0.6, seed: 2)
            flow.parametersDidChange()
            let n = 300  // two chunks
            let x = BijectionChecker.randomPoints(n, d, seed: 5, scale: 1.5)
            let c = BijectionChecker.randomPoints(n, 2, seed: 6)
            var lp = [Double](repeating: 0, count: n)
            c.withUnsafeBufferPointer { cp in x.withUnsafeBufferPointer { flow.logProb($0.baseAddress!, count: n, context: cp.baseAddress, into: &lp) } }
            for i in 0..<n {
                let e = (0..<2).map { (c[i * 2 + $0] - mean[$0]) / scale[$0] }
                let theta = networkOutput(base, e)
                let row = Array(x[(i * d)..<((i + 1) * d)])
                let z = layers.isEmpty ? row : Array(row.reversed())
                let expected = normalLogDensity(z, loc: Array(theta[0..<d]), logScale: Array(theta[d...]))
                XCTAssertEqual(lp[i], expected, accuracy: 1e-10 * max(1, abs(expected)), "row \(i), \(layers.count) layers")
            }
        }
    }

    /// A new conditional base is the standard normal at every context: a conditional MAF with it
    /// gives the same bits as the same MAF with a standard-normal base (log p, samples at two
    /// temperatures and their log-densities).
    func testANewConditionalBaseIsTheStandardNormal() throws {
        let context: JSONValue = ["size": 2, "embedding": ["hidden": [5], "activation": "tanh", "features": 3]]
        for base: JSONValue in ["conditional_diagonal_normal",
                                ["type": "conditional_diagonal_normal", "hidden": [6], "activation": "relu"]] {
            let conditional = try NormalizingFlow<Float>(spec: ["preset": "maf", "dim": 3, "layers": 2, "hidden": [8],
                                                                "context": context, "base": base], seed: 7)
            let standard = try NormalizingFlow<Float>(spec: ["preset": "maf", "dim": 3, "layers": 2, "hidden": [8],
                                                             "context": context], seed: 7)
            XCTAssertTrue(conditional.base is ConditionalDiagonalNormal<Float>)
            XCTAssertTrue(standard.base is StandardNormal<Float>)
            for flow in [conditional, standard] {
                BijectionChecker.perturb(flow.transform.parameters, scale: 0.3, seed: 4)
                flow.parametersDidChange()
            }
            let n = 400
            let c = BijectionChecker.randomPoints(n, 2, seed: 8).map(Float.init)
            let x = BijectionChecker.randomPoints(n, 3, seed: 9).map(Float.init)
            func run(_ flow: NormalizingFlow<Float>, temperature: Float) -> ([Double], [Float], [Double]) {
                var lp = [Double](repeating: 0, count: n), s = [Float](repeating: 0, count: n * 3), slp = lp
                c.withUnsafeBufferPointer { cp in
                    x.withUnsafeBufferPointer { flow.logProb($0.baseAddress!, count: n, context: cp.baseAddress, into: &lp) }
                    flow.sample(count: n, seed: 11, context: cp.baseAddress, into: &s, logProb: &slp, temperature: temperature)
                }
                return (lp, s, slp)
            }
            for t: Float in [1, 0.6] {
                let (a, b) = (run(conditional, temperature: t), run(standard, temperature: t))
                XCTAssertEqual(a.0, b.0, "log p at T = \(t)")
                XCTAssertEqual(a.1.map(\.bitPattern), b.1.map(\.bitPattern), "samples at T = \(t)")
                XCTAssertEqual(a.2, b.2, "samples' log p at T = \(t)")
            }
        }
    }

    /// ∂ mean NLL / ∂θ for every parameter (layers, base network, embedding) equals finite
    /// differences, for every base fixture, with and without an embedding.
    func testGradientsMatchFiniteDifferences() throws {
        let contexts: [[String: JSONValue]] = [
            ["size": 3, "mean": [0.5, -1, 0], "scale": [2, 0.5, 1],
             "embedding": ["hidden": [5], "activation": "tanh", "features": 4]],
            ["size": 2],
        ]
        for context in contexts {
            let size = context["size"]!.intValue!
            for (name, base) in Fixtures.baseConfigurations {
                for d in [1, 3] {
                    let flow = try NormalizingFlow<Double>(
                        spec: spec(d: d, context: context, base: base,
                                   layers: [["type": "affine_coupling", "hidden": JSONValue([6]), "activation": "tanh"]]),
                        seed: 4)
                    BijectionChecker.perturb(flow.parameters, scale: 0.3, seed: 5)
                    flow.parametersDidChange()
                    let x = BijectionChecker.randomPoints(70, d, seed: 5, scale: 1.5)
                    let c = BijectionChecker.randomPoints(70, size, seed: 6)
                    GradientChecker.check(flow, data: x, count: 70, context: c, "\(name) D=\(d) context \(size)")
                }
            }
        }
    }

    /// With an embedding and no conditional layer, the base alone reads the context: the
    /// embedding's gradients come only from the base's ∂L/∂e, and equal finite differences.
    func testTheEmbeddingLearnsThroughTheBaseAlone() throws {
        let context: [String: JSONValue] = ["size": 2, "embedding": ["hidden": [4], "activation": "tanh", "features": 3]]
        let flow = try NormalizingFlow<Double>(
            spec: spec(d: 2, context: context, base: ["type": "conditional_diagonal_normal", "hidden": [5], "activation": "tanh"],
                       layers: [["type": "permutation", "kind": "reverse"]]), seed: 2)
        BijectionChecker.perturb(flow.parameters, scale: 0.4, seed: 3)
        flow.parametersDidChange()
        let n = 600  // three chunks, accumulated in gradient slots
        let x = BijectionChecker.randomPoints(n, 2, seed: 1), c = BijectionChecker.randomPoints(n, 2, seed: 2)
        GradientChecker.check(flow, data: x, count: n, context: c, maxPerParameter: 8, "base-only context")
        let embedding = try XCTUnwrap(flow.contextEncoder?.parameters)
        XCTAssertEqual(embedding.count, 4)
        flow.zeroGradients()
        c.withUnsafeBufferPointer { cp in x.withUnsafeBufferPointer { _ = flow.accumulateNLLGradient($0.baseAddress!, count: n, context: cp.baseAddress) } }
        for p in embedding { XCTAssertGreaterThan(p.gradient.map(abs).max() ?? 0, 1e-6, "embedding \(p.name) receives a gradient") }
    }

    /// The base's own backward pass: `∂/∂z`, the added `∂/∂e` and the parameter gradients of
    /// `Σᵢ wᵢ·log p(zᵢ | eᵢ)` against finite differences; the context-free entry points run at
    /// `e = 0`.
    func testBaseBackwardMatchesFiniteDifferencesInZContextAndParameters() throws {
        let d = 3, e = 2, n = 5
        let base = try ConditionalDiagonalNormal<Double>(config: ["hidden": [4], "activation": "tanh"], eventSize: d,
                                                         contextFeatures: e, seed: 1)
        BijectionChecker.perturb(base.parameters, scale: 0.5, seed: 2)
        base.parametersDidChange()
        var z = BijectionChecker.randomPoints(n, d, seed: 3), ctx = BijectionChecker.randomPoints(n, e, seed: 4)
        let w = BijectionChecker.randomPoints(n, 1, seed: 5)
        let workspace = Workspace()
        try workspace.reserve(bytes: max(base.workspaceBytes(count: n), base.backwardWorkspaceBytes(count: n)))
        func loss() -> Double {
            var lp = [Double](repeating: 0, count: n)
            var arena = workspace.arena()
            ctx.withUnsafeBufferPointer { cp in z.withUnsafeBufferPointer { base.logProb($0.baseAddress!, count: n, context: cp.baseAddress, into: &lp, arena: &arena) } }
            return zip(lp, w).reduce(0) { $0 + $1.0 * $1.1 }
        }
        for p in base.parameters { p.zeroGradient() }
        var g = [Double](repeating: 0, count: n * d), ce = [Double](repeating: 1, count: n * e)
        var arena = workspace.arena()
        ctx.withUnsafeBufferPointer { cp in
            z.withUnsafeBufferPointer { zp in
                w.withUnsafeBufferPointer { base.backward(zp.baseAddress!, count: n, context: cp.baseAddress, logProbGradient: $0.baseAddress!,
                                                          gradient: &g, contextGradient: &ce, arena: &arena) }
            }
        }
        let h = 1e-6
        func fd(_ set: (Double) -> Void, _ original: Double) -> Double {
            set(original + h); let up = loss()
            set(original - h); let down = loss()
            set(original)
            return (up - down) / (2 * h)
        }
        for i in 0..<(n * d) {
            XCTAssertEqual(g[i], fd({ z[i] = $0 }, z[i]), accuracy: 1e-6, "∂/∂z[\(i)]")
        }
        for i in 0..<(n * e) {
            XCTAssertEqual(ce[i] - 1, fd({ ctx[i] = $0 }, ctx[i]), accuracy: 1e-6, "∂/∂e[\(i)] (added to the given values)")
        }
        for p in base.parameters {
            for i in 0..<p.count {
                let analytic = p.gradient[i]
                let numeric = fd({ p.values[i] = $0; base.parametersDidChange() }, p.values[i])
                XCTAssertEqual(analytic, numeric, accuracy: 1e-6, "∂/∂\(p.name)[\(i)]")
            }
        }
        // Without a context: e = 0.
        var zeroContext = [Double](repeating: 0, count: n * e)
        var a = [Double](repeating: 0, count: n), b = a
        z.withUnsafeBufferPointer { zp in
            base.logProb(zp.baseAddress!, count: n, into: &a)
            var arena = workspace.arena()
            zeroContext.withUnsafeMutableBufferPointer { base.logProb(zp.baseAddress!, count: n, context: $0.baseAddress, into: &b, arena: &arena) }
        }
        XCTAssertEqual(a, b)
    }

    /// Samples' reported log-densities equal `log_prob` at their contexts (temperature 1, over
    /// several chunks); at temperature T a pure-base flow draws `loc + T·(x₁ − loc)` from the
    /// same noise, and reports the density of what it drew at temperature 1.
    func testSamplingAgreesWithLogProbAndTemperatureScalesTheSpread() throws {
        let base: JSONValue = ["type": "conditional_diagonal_normal", "hidden": [6], "activation": "tanh"]
        let maf = try NormalizingFlow<Double>(spec: ["preset": "maf", "dim": 3, "layers": 2, "hidden": [8], "activation": "tanh",
                                                     "context": 2, "base": base], seed: 1)
        let pure = try NormalizingFlow<Double>(spec: spec(d: 3, context: ["size": 2], base: base.objectValue!), seed: 1)
        for flow in [maf, pure] {
            BijectionChecker.perturb(flow.parameters, scale: 0.4, seed: 2)
            flow.parametersDidChange()
        }
        let n = 600
        let c = BijectionChecker.randomPoints(n, 2, seed: 7)
        func draw(_ flow: NormalizingFlow<Double>, _ t: Double) -> ([Double], [Double], [Double]) {
            var x = [Double](repeating: 0, count: n * 3), lp = [Double](repeating: 0, count: n), scored = lp
            c.withUnsafeBufferPointer { cp in
                flow.sample(count: n, seed: 5, context: cp.baseAddress, into: &x, logProb: &lp, temperature: t)
                x.withUnsafeBufferPointer { flow.logProb($0.baseAddress!, count: n, context: cp.baseAddress, into: &scored) }
            }
            return (x, lp, scored)
        }
        for flow in [maf, pure] {
            let (_, lp, scored) = draw(flow, 1)
            for i in 0..<n { XCTAssertEqual(lp[i], scored[i], accuracy: 1e-8 * max(1, abs(lp[i]))) }
        }
        let (x1, _, _) = draw(pure, 1), (loc, _, _) = draw(pure, 0), (xt, lpt, scoredT) = draw(pure, 0.4)
        for i in 0..<(n * 3) { XCTAssertEqual(xt[i] - loc[i], 0.4 * (x1[i] - loc[i]), accuracy: 1e-12 * max(1, abs(x1[i]))) }
        for i in 0..<n { XCTAssertEqual(lpt[i], scoredT[i], accuracy: 1e-10 * max(1, abs(lpt[i]))) }
        // The context moves the base: different contexts give different means.
        XCTAssertGreaterThan(zip(loc[0..<3], loc[3..<6]).map { abs($0 - $1) }.max() ?? 0, 1e-3)
    }

    /// A flow made of a conditional base only learns `p(x | c) = N(a·c + b, exp(s·c)²)`
    /// (per feature; exactly representable by the linear base network) in a few hundred Adam
    /// steps: held-out NLL within 0.02 nats of the true conditional NLL on the same rows, and
    /// the network's weights near `(a, s)`, its biases near `(b, 0)`.
    func testAConditionalBaseLearnsALinearGaussianConditional() throws {
        let a = [1.5, -0.7], b = [0.3, 1.0], s = [0.5, -0.4]
        func data(_ n: Int, seed: UInt64) -> (x: [Float], c: [Float], trueNLL: Double) {
            var rng = PhiloxStream(seed: seed, row: 3, stream: 11)
            var x = [Float](), c = [Float](), nll = 0.0
            for _ in 0..<n {
                let ci = Float(rng.nextUniform(in: -1, 1))
                c.append(ci)
                for j in 0..<2 {
                    let logScale = s[j] * Double(ci)
                    let xi = Float(a[j] * Double(ci) + b[j] + Foundation.exp(logScale) * rng.nextNormal())
                    x.append(xi)
                    let u = (Double(xi) - a[j] * Double(ci) - b[j]) / Foundation.exp(logScale)
                    nll += 0.5 * u * u + logScale + 0.5 * Foundation.log(2 * Double.pi)
                }
            }
            return (x, c, nll / Double(n))
        }
        let flow = try NormalizingFlow<Float>(specJSON: #"""
            {"event_shape": [2], "context": {"size": 1}, "base": {"type": "conditional_diagonal_normal"}}
            """#, seed: 1)
        XCTAssertEqual(flow.layers.count, 0)
        let train = data(4000, seed: 1), test = data(4000, seed: 2)
        var o = TrainingOptions()
        o.epochs = 10  // 10 × ⌈4000/128⌉ = 320 steps
        o.batchSize = 128
        o.validationFraction = 0
        o.optimizer.learningRate = 0.05
        o.schedule = LearningRateSchedule(decay: .cosine, minimumFactor: 0.01)
        let history = try train.x.withUnsafeBufferPointer { xp in
            try train.c.withUnsafeBufferPointer { cp in try Trainer(flow: flow, data: xp, rows: 4000, context: cp, options: o).run() }
        }
        XCTAssertEqual(history.count, 10)
        let nll = test.x.withUnsafeBufferPointer { xp in test.c.withUnsafeBufferPointer { flow.meanNLL(xp.baseAddress!, count: 4000, context: $0.baseAddress) } }
        XCTAssertEqual(nll, test.trueNLL, accuracy: 0.02, "held-out NLL \(nll) vs the true conditional NLL \(test.trueNLL)")
        let net = try conditionalBase(flow).network
        let weight = net.weights[0].array.map(Double.init), bias = net.biases[0].array.map(Double.init)
        for (learned, truth) in zip(weight, a + s) { XCTAssertEqual(learned, truth, accuracy: 0.1, "weights \(weight)") }
        for (learned, truth) in zip(bias, b + [0, 0]) { XCTAssertEqual(learned, truth, accuracy: 0.1, "biases \(bias)") }
    }

    /// Specs: the resolved spec round trips; a conditional base needs a context; bad keys and
    /// kinds are refused; presets take `base` as a name or an object.
    func testSpecsAndPresetsAndTheirRefusals() throws {
        let flow = try NormalizingFlow<Float>(specJSON: #"""
            {"event_shape": [2], "context": {"size": 3, "embedding": {"hidden": [4], "features": 2}},
             "base": {"type": "conditional_diagonal_normal", "hidden": [5, 3], "activation": "elu"},
             "layers": [{"type": "affine_coupling", "hidden": [4]}]}
            """#, seed: 1)
        XCTAssertEqual(flow.base.config["hidden"], JSONValue([5, 3]))
        XCTAssertEqual(flow.base.config["activation"], "elu")
        XCTAssertEqual(flow.base.parameters.map(\.shape), [[5, 2], [5], [3, 5], [3], [4, 3], [4]])
        XCTAssertEqual(try NormalizingFlow<Float>(spec: flow.spec, seed: 0).spec, flow.spec)
        // Parameters: the layers', then the base's, then the embedding's.
        let names = flow.parameters.map(\.name)
        XCTAssertEqual(names.count, flow.transform.parameters.count + 6 + 4)
        XCTAssertTrue(flow.parameters[flow.transform.parameters.count] === flow.base.parameters[0])
        // Defaults: hidden [] (one linear map), relu.
        let plain = try NormalizingFlow<Float>(specJSON: #"{"event_shape": [3], "context": {"size": 2}, "base": "conditional_diagonal_normal"}"#,
                                               seed: 0)
        XCTAssertEqual(plain.base.config["hidden"], JSONValue([Int]()))
        XCTAssertEqual(plain.base.parameters.map(\.shape), [[6, 2], [6]])
        XCTAssertTrue(plain.base.parameters.allSatisfy { $0.array.allSatisfy { $0 == 0 } })
        // Presets: by name or object, on every vector preset; the Swift builders too.
        for preset in ["realnvp", "nice", "nsf", "maf", "iaf"] {
            let built = try NormalizingFlow<Float>(spec: ["preset": .string(preset), "dim": 2, "layers": 1, "hidden": [4], "context": 1,
                                                          "base": "conditional_diagonal_normal"], seed: 0)
            XCTAssertTrue(built.base is ConditionalDiagonalNormal<Float>, preset)
        }
        XCTAssertTrue(try NormalizingFlow<Float>.nice(dim: 2, layers: 1).base is DiagonalNormal<Float>)
        XCTAssertTrue(try NormalizingFlow<Float>.maf(dim: 2, layers: 1, context: 2, base: "conditional_diagonal_normal").base
                      is ConditionalDiagonalNormal<Float>)
        XCTAssertTrue(try NormalizingFlow<Float>.realNVP(dim: 2, layers: 1, base: "diagonal_normal").base is DiagonalNormal<Float>)
        let objectBase = try NormalizingFlow<Float>(spec: ["preset": "iaf", "dim": 2, "layers": 1, "context": 1,
                                                           "base": ["type": "conditional_diagonal_normal", "hidden": [3]]], seed: 0)
        XCTAssertEqual(objectBase.base.config["hidden"], JSONValue([3]))

        for (text, fragment) in [
            (#"{"event_shape": [2], "base": {"type": "conditional_diagonal_normal"}}"#, "the flow has none"),
            (#"{"preset": "maf", "dim": 2, "base": "conditional_diagonal_normal"}"#, "the flow has none"),
            (#"{"event_shape": [2], "context": {"size": 1}, "base": {"type": "conditional_diagonal_normal", "width": 3}}"#,
             "unknown key \"width\""),
            (#"{"event_shape": [2], "context": {"size": 1}, "base": {"type": "conditional_diagonal_normal", "hidden": 3}}"#,
             "\"hidden\" must be a list of integers"),
            (#"{"event_shape": [2], "context": {"size": 1}, "base": {"type": "conditional_diagonal_normal", "hidden": [0]}}"#,
             "hidden width 0"),
            (#"{"event_shape": [2], "context": {"size": 1}, "base": {"type": "conditional_diagonal_normal", "activation": "cos"}}"#,
             "unknown activation \"cos\""),
            (#"{"event_shape": [2], "base": {"type": "diagonal_normal", "hidden": [3]}}"#, "unknown key \"hidden\""),
            (#"{"event_shape": [2], "base": 7}"#, "\"base\" must be"),
            (#"{"preset": "maf", "dim": 2, "base": 7}"#, "\"base\" must be a base type name"),
        ] {
            ErrorAssertions.assertThrows([fragment], ErrorAssertions.isInvalidSpec) {
                _ = try NormalizingFlow<Float>(specJSON: text, seed: 0)
            }
        }
        ErrorAssertions.assertThrows(["\"cauchy\"", "conditional_diagonal_normal"], { if case .unknownType = $0 { return true }; return false }) {
            _ = try NormalizingFlow<Float>(specJSON: #"{"preset": "realnvp", "dim": 2, "base": "cauchy"}"#, seed: 0)
        }
        ErrorAssertions.assertThrows(["hidden layers"], ErrorAssertions.isLimit) {
            _ = try NormalizingFlow<Float>(spec: ["event_shape": [2], "context": ["size": 1],
                                                  "base": ["type": "conditional_diagonal_normal",
                                                           "hidden": JSONValue([Int](repeating: 2, count: Limits.maxHiddenLayers + 1))]],
                                           seed: 0)
        }
        // A base built for another context width is refused by the flow.
        let other = try ConditionalDiagonalNormal<Float>(config: [:], eventSize: 2, contextFeatures: 3, seed: 0)
        ErrorAssertions.assertThrows(["reads 3 context values", "gives 1"], ErrorAssertions.isInvalidSpec) {
            _ = try NormalizingFlow<Float>(eventShape: [2], layers: [], base: other,
                                           context: try ContextEncoder(config: ["size": 1], seed: 0))
        }
        ErrorAssertions.assertThrows(["reads 3 context values", "no context"], ErrorAssertions.isInvalidSpec) {
            _ = try NormalizingFlow<Float>(eventShape: [2], layers: [], base: other)
        }
    }
}
