@testable import FlowCore
import FlowTestSupport
import XCTest

/// Conditional flows `p(x | c)`: every conditional layer at a fixed context obeys the bijection
/// contract; gradients (layers, context standardisation and embedding) equal finite
/// differences; contexts change the map; specs round trip.
final class ConditionalTests: XCTestCase {
    /// A bijection that runs `layers` at one fixed context row (broadcast to every row).
    final class AtContext: Bijection {
        typealias Scalar = Double
        let flow: NormalizingFlow<Double>
        let row: [Double]
        init(_ flow: NormalizingFlow<Double>, context row: [Double]) { self.flow = flow; self.row = row }
        var inputShape: [Int] { flow.eventShape }
        var outputShape: [Int] { flow.transform.outputShape }
        var parameters: [Parameter<Double>] { flow.parameters }
        func workspaceBytes(count: Int) -> Int { 0 }
        func backwardWorkspaceBytes(count: Int) -> Int { 0 }
        private func contexts(_ count: Int) -> [Double] { (0..<count).flatMap { _ in row } }
        func forward(_ x: UnsafeMutablePointer<Double>, count: Int, logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
            let c = contexts(count)
            var ld = [Double](repeating: 0, count: count)
            c.withUnsafeBufferPointer { flow.forward(x, count: count, context: $0.baseAddress, z: x, logDet: &ld) }
            for i in 0..<count { logDet[i] += ld[i] }
        }
        func inverse(_ z: UnsafeMutablePointer<Double>, count: Int, logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
            let c = contexts(count)
            var ld = [Double](repeating: 0, count: count)
            c.withUnsafeBufferPointer { flow.inverse(z, count: count, context: $0.baseAddress, x: z, logDet: &ld) }
            for i in 0..<count { logDet[i] += ld[i] }
        }
        func backward(input x: UnsafePointer<Double>, count: Int, gradient: UnsafeMutablePointer<Double>,
                      logDetGradient: UnsafePointer<Double>, arena: inout Arena) {}
    }

    private func conditionalFlow(_ config: [String: JSONValue], d: Int, context: [String: JSONValue],
                                 seed: UInt64 = 4) throws -> NormalizingFlow<Double> {
        let spec = JSONValue.object(["event_shape": JSONValue([d]), "context": .object(context),
                                     "base": .object(["type": .string("diagonal_normal")]), "layers": .array([.object(config)])])
        let flow = try NormalizingFlow<Double>(spec: spec, seed: seed)
        BijectionChecker.perturb(flow.parameters, scale: 0.3, seed: seed)
        flow.parametersDidChange()
        return flow
    }

    func testConditionalLayersObeyTheBijectionContractAtAContext() throws {
        for d in [1, 3, 8] {
            for (name, config) in Fixtures.conditionalLayerConfigurations where d > 1 || !name.contains("alternating") {
                let flow = try conditionalFlow(config, d: d, context: ["size": .number(2)])
                XCTAssertEqual(flow.contextSize, 2)
                XCTAssertEqual((flow.layers[0] as? any ConditionalLayer<Double>)?.contextFeatures, 2, name)
                for (k, c) in [[0.3, -1.2], [2.0, 0.5]].enumerated() {
                    BijectionChecker.check(AtContext(flow, context: c), points: 3, seed: UInt64(k + 1), "\(name) D=\(d) c=\(c)")
                }
                // The context changes the map (the conditioner reads it).
                let x = BijectionChecker.randomPoints(4, d, seed: 9)
                let (z1, _) = BijectionChecker.apply(AtContext(flow, context: [0.3, -1.2]), x, count: 4, inverse: false)
                let (z2, _) = BijectionChecker.apply(AtContext(flow, context: [2.0, 0.5]), x, count: 4, inverse: false)
                XCTAssertGreaterThan(BijectionChecker.maxRelativeError(z1, z2), 1e-6, "\(name) D=\(d): the context has no effect")
            }
        }
    }

    /// Gradients of the mean NLL with respect to every parameter — the layers', the base's and
    /// the context embedding's (which receive ∂L/∂context from every conditional layer) — equal
    /// finite differences.
    func testGradientsThroughLayersAndEmbeddingMatchFiniteDifferences() throws {
        let context: [String: JSONValue] = [
            "size": .number(3), "mean": JSONValue.array([.number(0.5), .number(-1), .number(0)]),
            "scale": JSONValue.array([.number(2), .number(0.5), .number(1)]),
            "embedding": .object(["hidden": JSONValue([5]), "activation": .string("tanh"), "features": .number(4)]),
        ]
        for d in [1, 3] {
            for (name, config) in Fixtures.conditionalLayerConfigurations where d > 1 || !name.contains("alternating") {
                var smooth = config
                if smooth["activation"] == nil { smooth["activation"] = .string("tanh") }
                let flow = try conditionalFlow(smooth, d: d, context: context)
                XCTAssertEqual(flow.contextSize, 3)
                let x = BijectionChecker.randomPoints(70, d, seed: 5, scale: 1.5)
                let c = BijectionChecker.randomPoints(70, 3, seed: 6)
                GradientChecker.check(flow, data: x, count: 70, context: c, "\(name) D=\(d)")
                // The embedding's parameters are part of the flow's, after the layers' and the base's.
                XCTAssertEqual(Array(flow.parameters.suffix(4).map(\.name)), ["weight_0", "bias_0", "weight_1", "bias_1"])
            }
        }
    }

    /// Continuous layers (`cnf`) at fixed contexts: the bijection contract at the solver's
    /// accuracy, and the context changes the map. A Hutchinson layer's log-determinant is an
    /// estimate, so its map is checked through its exact-trace twin (the same trajectory). Fixed
    /// steps are no exact inverses of each other: RK4 (4th order) passes at looser tolerances,
    /// Euler (1st order) must converge to the adaptive solution at the same context instead.
    func testContinuousLayersObeyTheBijectionContractAtAContext() throws {
        for d in [1, 2, 3] {
            for (name, config) in Fixtures.conditionalContinuousLayerConfigurations {
                var exact = config
                exact["trace"] = .string("exact")
                let flow = try conditionalFlow(exact, d: d, context: ["size": .number(2)])
                XCTAssertEqual((flow.layers[0] as? any ConditionalLayer<Double>)?.contextFeatures, 2, name)
                let contexts: [[Double]] = [[0.3, -1.2], [2.0, 0.5]]
                switch config["solver"]?.stringValue ?? "dopri5" {
                case "euler":
                    var reference = exact
                    for key in ["solver", "step_size"] { reference[key] = nil }
                    reference["rtol"] = .number(1e-11)
                    reference["atol"] = .number(1e-11)
                    let tight = try conditionalFlow(reference, d: d, context: ["size": .number(2)])
                    var fine = exact
                    fine["step_size"] = .number(0.001)
                    let finer = try conditionalFlow(fine, d: d, context: ["size": .number(2)])
                    let x = BijectionChecker.randomPoints(4, d, seed: 3)
                    for c in contexts {
                        func error(_ f: NormalizingFlow<Double>) -> Double {
                            let (z, ld) = BijectionChecker.apply(AtContext(f, context: c), x, count: 4, inverse: false)
                            let (zRef, ldRef) = BijectionChecker.apply(AtContext(tight, context: c), x, count: 4, inverse: false)
                            return max(BijectionChecker.maxRelativeError(z, zRef), BijectionChecker.maxRelativeError(ld, ldRef))
                        }
                        let coarse = error(flow), small = error(finer)
                        XCTAssertLessThan(small, coarse / 5, "\(name) D=\(d) c=\(c): Euler converges at first order")
                        XCTAssertLessThan(small, 1e-2, "\(name) D=\(d) c=\(c)")
                    }
                default:
                    var tolerance = BijectionChecker.Tolerance()
                    let rtol = config["rtol"]?.doubleValue ?? 1e-5
                    tolerance.roundTrip = config["solver"]?.stringValue == "rk4" ? 1e-6 : max(1e-7, 300 * rtol)
                    tolerance.logDet = config["solver"]?.stringValue == "rk4" ? 1e-6 : max(1e-6, 300 * rtol)
                    tolerance.inverseLogDet = tolerance.roundTrip
                    for (k, c) in contexts.enumerated() {
                        BijectionChecker.check(AtContext(flow, context: c), points: 3, seed: UInt64(k + 1), tolerance: tolerance,
                                               "\(name) D=\(d) c=\(c)")
                    }
                }
                let x = BijectionChecker.randomPoints(4, d, seed: 9)
                let (z1, _) = BijectionChecker.apply(AtContext(flow, context: contexts[0]), x, count: 4, inverse: false)
                let (z2, _) = BijectionChecker.apply(AtContext(flow, context: contexts[1]), x, count: 4, inverse: false)
                XCTAssertGreaterThan(BijectionChecker.maxRelativeError(z1, z2), 1e-3, "\(name) D=\(d): the context has no effect")
            }
        }
    }

    /// The mean NLL's gradients through continuous layers equal finite differences for every
    /// parameter: the layer's (its first layer's context columns included), the base's and the
    /// context embedding's, which learns from the `∂L/∂context` the layer returns (integrated
    /// backward with the adjoint, summed over the recorded stages with backpropagation).
    func testContinuousLayerGradientsThroughTheEmbeddingMatchFiniteDifferences() throws {
        let context: [String: JSONValue] = [
            "size": .number(3), "mean": JSONValue.array([.number(0.5), .number(-1), .number(0)]),
            "scale": JSONValue.array([.number(2), .number(0.5), .number(1)]),
            "embedding": .object(["hidden": JSONValue([5]), "activation": .string("tanh"), "features": .number(4)]),
        ]
        for (name, config) in Fixtures.conditionalContinuousLayerConfigurations {
            let flow = try conditionalFlow(config, d: 2, context: context)
            XCTAssertEqual((flow.layers[0] as? any ConditionalLayer<Double>)?.contextFeatures, 4, name)
            let x = BijectionChecker.randomPoints(12, 2, seed: 5, scale: 1.5)
            let c = BijectionChecker.randomPoints(12, 3, seed: 6)
            GradientChecker.check(flow, data: x, count: 12, context: c, step: 1e-5, tolerance: 2e-6, maxPerParameter: 3, name)
        }
    }

    /// A whole conditional preset over several chunks: gradients, and samples whose reported
    /// log-densities equal `log_prob` at the same contexts.
    func testConditionalPresetsSampleAndScoreConsistently() throws {
        for flow in [try NormalizingFlow<Double>.maf(dim: 3, layers: 2, hidden: [8], activation: "tanh", context: 2, seed: 1),
                     try .realNVP(dim: 3, layers: 2, hidden: [8], activation: "tanh", context: 2, seed: 2),
                     try .nsf(dim: 3, layers: 2, hidden: [8], activation: "tanh", autoregressive: true, context: 2, seed: 3),
                     try .maf(dim: 3, layers: 2, hidden: [8], activation: "tanh", residualBlocks: 2, context: 2, seed: 4),
                     try .iaf(dim: 3, layers: 2, hidden: [6], activation: "tanh", residualBlocks: 1, context: 2, seed: 5)] {
            BijectionChecker.perturb(flow.parameters, scale: 0.2, seed: 4)
            flow.parametersDidChange()
            let n = 600
            let c = BijectionChecker.randomPoints(n, 2, seed: 7)
            var x = [Double](repeating: 0, count: n * 3), lp = [Double](repeating: 0, count: n)
            c.withUnsafeBufferPointer { flow.sample(count: n, seed: 5, context: $0.baseAddress, into: &x, logProb: &lp) }
            var scored = [Double](repeating: 0, count: n)
            c.withUnsafeBufferPointer { cp in x.withUnsafeBufferPointer { flow.logProb($0.baseAddress!, count: n, context: cp.baseAddress, into: &scored) } }
            for i in 0..<n { XCTAssertEqual(lp[i], scored[i], accuracy: 1e-8 * max(1, abs(lp[i]))) }
            GradientChecker.check(flow, data: x, count: n, context: c, maxPerParameter: 6, "preset")
        }
    }

    func testSpecsRoundTripAndMismatchesAreRefused() throws {
        let spec = try JSONValue.parse(#"""
            {"event_shape": [2], "context": {"size": 3, "embedding": {"hidden": [4], "features": 2}},
             "layers": [{"type": "affine_coupling", "hidden": [4]}, {"type": "permutation"},
                        {"type": "spline_autoregressive", "hidden": [4]}]}
            """#)
        let flow = try NormalizingFlow<Float>(spec: spec, seed: 1)
        XCTAssertEqual(flow.contextSize, 3)
        XCTAssertEqual(flow.contextEncoder?.outputSize, 2)
        let again = try NormalizingFlow<Float>(spec: flow.spec, seed: 0)
        XCTAssertEqual(again.spec, flow.spec)
        for (text, fragment) in [
            (#"{"event_shape": [2], "layers": [{"type": "affine_coupling", "context_features": 3}]}"#, "the flow has no context"),
            (#"{"event_shape": [2], "context": {"size": 2}, "layers": [{"type": "affine_coupling", "context_features": 3}]}"#,
             "the flow's context gives 2"),
            (#"{"event_shape": [2], "context": {"size": 0}}"#, "\"size\""),
            (#"{"event_shape": [2], "context": {"size": 2, "scale": [1, 0]}}"#, "positive"),
            (#"{"event_shape": [2], "context": {"size": 2, "mean": [1]}}"#, "2 finite numbers"),
            (#"{"event_shape": [2], "context": {"size": 2, "embed": {}}}"#, "unknown key"),
            (#"{"preset": "maf", "dim": 2, "context": -1}"#, "context size"),
        ] {
            ErrorAssertions.assertThrows([fragment], ErrorAssertions.isInvalidSpec) {
                _ = try NormalizingFlow<Float>(specJSON: text, seed: 0)
            }
        }
    }
}
