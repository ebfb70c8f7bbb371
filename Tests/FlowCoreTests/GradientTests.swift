@testable import FlowCore
@testable import FlowModelFile
import FlowTestSupport
import XCTest

/// Hand-derived backward passes against central finite differences in Double
/// (step 1e-6, tolerance 1e-6 relative to max(1, |fd|)).
final class GradientTests: XCTestCase {
    func testEveryLayerGradientMatchesFiniteDifferences() throws {
        for d in [1, 3, 8] {
            for (name, config) in Fixtures.layerConfigurations(dimension: d) {
                // A diagonal-normal base makes the base's own gradients part of the check.
                let spec = JSONValue.object(["event_shape": JSONValue([d]), "base": .object(["type": .string("diagonal_normal")]),
                                             "layers": .array([.object(config)])])
                let flow = try NormalizingFlow<Double>(spec: spec, seed: 3)
                BijectionChecker.perturb(flow.parameters, scale: 0.3, seed: UInt64(d))
                flow.transform.parametersDidChange()
                let x = BijectionChecker.randomPoints(300, d, seed: 5, scale: 1.5)
                GradientChecker.check(flow, data: x, count: 300, "\(name) D=\(d)")
            }
        }
    }

    func testEveryPresetGradientMatchesFiniteDifferences() throws {
        let flows: [(String, NormalizingFlow<Double>)] = [
            ("realnvp", try .realNVP(dim: 4, layers: 3, hidden: [8, 8], seed: 1)),
            ("realnvp actnorm lu", try .realNVP(dim: 5, layers: 2, hidden: [6], activation: "tanh", actnorm: true, mixing: "lu", seed: 2)),
            ("realnvp random", try .realNVP(dim: 3, layers: 3, hidden: [5], activation: "elu", mixing: "random", seed: 3)),
            // Smooth activation: with ReLU, one of 313 rows can sit within the FD step of a kink.
            ("nice", try .nice(dim: 4, layers: 3, hidden: [7], activation: "softplus", seed: 4)),
            ("realnvp D=1", try .realNVP(dim: 1, layers: 2, hidden: [4], seed: 5)),
            ("nsf", try .nsf(dim: 4, layers: 3, hidden: [8], bins: 5, activation: "tanh", seed: 6)),
            ("nsf actnorm lu", try .nsf(dim: 3, layers: 2, hidden: [6], bins: 4, bound: 2, activation: "softplus",
                                        actnorm: true, mixing: "lu", seed: 7)),
            ("nsf D=1", try .nsf(dim: 1, layers: 2, hidden: [4], activation: "elu", seed: 8)),
            // Residual MADE: each layer's ∂L/∂x reaches the layer before it.
            ("maf residual actnorm", try .maf(dim: 4, layers: 3, hidden: [8], activation: "tanh", actnorm: true, residualBlocks: 2,
                                              seed: 9)),
            ("iaf residual lu", try .iaf(dim: 3, layers: 2, hidden: [6], activation: "softplus", mixing: "lu", residualBlocks: 1,
                                         seed: 10)),
            ("nsf autoregressive residual", try .nsf(dim: 3, layers: 2, hidden: [6], bins: 4, activation: "silu",
                                                     autoregressive: true, residualBlocks: 2, seed: 11)),
        ]
        for (name, flow) in flows {
            BijectionChecker.perturb(flow.parameters, scale: 0.2, seed: 8)
            flow.transform.parametersDidChange()
            // More rows than one chunk, so chunked accumulation is covered.
            let n = flow.chunkRows + 57
            let x = BijectionChecker.randomPoints(n, flow.eventSize, seed: 6)
            GradientChecker.check(flow, data: x, count: n, maxPerParameter: 12, name)
        }
    }

    /// The MLP couplings keep their conditioner's output and activations between the forward and
    /// backward passes of training (ReLU: the activations only); the taped pass must equal the
    /// recomputing one bit for bit, for contiguous and scattered masks, ReLU (derivative fused
    /// into the gradient product) and other activations, in Float (the AVX2 kernels) and Double.
    func testMLPCouplingTapesMatchRecomputation() throws {
        func flows<T: FlowScalar>(_: T.Type) throws -> [(String, NormalizingFlow<T>)] {
            [
                ("realnvp relu", try .realNVP(dim: 6, layers: 3, hidden: [16, 9], seed: 1)),
                ("realnvp tanh lu", try .realNVP(dim: 5, layers: 2, hidden: [8], activation: "tanh", mixing: "lu", seed: 2)),
                ("nice relu", try .nice(dim: 7, layers: 3, hidden: [12, 12], seed: 3)),
                ("nsf silu", try .nsf(dim: 4, layers: 2, hidden: [8], bins: 4, activation: "silu", seed: 4)),
                ("maf residual relu", try .maf(dim: 5, layers: 2, hidden: [16], residualBlocks: 2, seed: 6)),
                ("maf residual relu wide", try .maf(dim: 6, layers: 2, hidden: [40], residualBlocks: 1, seed: 7)),
                ("nsf autoregressive residual tanh", try .nsf(dim: 4, layers: 2, hidden: [8], bins: 3, activation: "tanh",
                                                              autoregressive: true, residualBlocks: 2, seed: 8)),
                ("affine alternating relu", try NormalizingFlow<T>(spec: [
                    "event_shape": [9],
                    "layers": [["type": "affine_coupling", "mask": "alternating", "hidden": [10, 10]],
                               ["type": "additive_coupling", "mask": "alternating", "invert_mask": true, "hidden": [6]]],
                ], seed: 5)),
            ]
        }
        for (name, f) in try flows(Double.self) {
            BijectionChecker.perturb(f.parameters, scale: 0.3, seed: 6)
            f.transform.parametersDidChange()
            TapeChecker.assertTapedPassMatchesRecomputation(f, rows: 23, name + " (Double)")
        }
        for (name, f) in try flows(Float.self) {
            BijectionChecker.perturb(f.parameters, scale: 0.3, seed: 6)
            f.transform.parametersDidChange()
            TapeChecker.assertTapedPassMatchesRecomputation(f, rows: 23, name + " (Float)")
        }
    }

    func testFloatGradientAgreesWithDouble() throws {
        let double = try NormalizingFlow<Double>.realNVP(dim: 3, layers: 3, hidden: [16], actnorm: true, mixing: "lu", seed: 1)
        BijectionChecker.perturb(double.parameters, scale: 0.2, seed: 2)
        double.transform.parametersDidChange()
        let single = try double.converted(to: Float.self)
        let x = BijectionChecker.randomPoints(500, 3, seed: 1)
        let xf = x.map { Float($0) }
        double.zeroGradients()
        single.zeroGradients()
        let nllD = x.withUnsafeBufferPointer { double.accumulateNLLGradient($0.baseAddress!, count: 500) }
        let nllF = xf.withUnsafeBufferPointer { single.accumulateNLLGradient($0.baseAddress!, count: 500) }
        XCTAssertEqual(nllD, nllF, accuracy: 1e-3 * abs(nllD))
        for (pd, pf) in zip(double.parameters, single.parameters) {
            for i in 0..<pd.count {
                XCTAssertEqual(Double(pf.gradient[i]), pd.gradient[i], accuracy: 1e-3 * max(1, abs(pd.gradient[i])), pd.name)
            }
        }
    }
}
