@testable import FlowCore
@testable import FlowModelFile
import FlowTestSupport
import XCTest

final class PresetTests: XCTestCase {
    func presets(_ d: Int) throws -> [(String, NormalizingFlow<Double>)] {
        [
            ("realnvp", try .realNVP(dim: d, layers: 4, hidden: [16, 16], seed: 1)),
            ("realnvp actnorm+lu", try .realNVP(dim: d, layers: 3, hidden: [16], actnorm: true, mixing: "lu", seed: 2)),
            ("realnvp random", try .realNVP(dim: d, layers: 3, hidden: [16], activation: "tanh", mixing: "random", seed: 3)),
            ("realnvp reverse", try .realNVP(dim: d, layers: 3, hidden: [16], clamp: 2, mixing: "reverse", seed: 4)),
            ("nice", try .nice(dim: d, layers: 4, hidden: [16], seed: 5)),
            ("nsf", try .nsf(dim: d, layers: 3, hidden: [16], bins: 6, seed: 6)),
            ("nsf actnorm random", try .nsf(dim: d, layers: 2, hidden: [16], bound: 2.5, actnorm: true, mixing: "random", seed: 7)),
            ("nsf autoregressive", try .nsf(dim: d, layers: 2, hidden: [16], bins: 5, autoregressive: true, seed: 10)),
            ("maf", try .maf(dim: d, layers: 3, hidden: [16, 16], seed: 11)),
            ("maf lu", try .maf(dim: d, layers: 2, hidden: [16], actnorm: true, mixing: "lu", seed: 12)),
            ("iaf", try .iaf(dim: d, layers: 2, hidden: [16], activation: "tanh", seed: 13)),
            ("maf residual", try .maf(dim: d, layers: 2, hidden: [16], residualBlocks: 2, seed: 14)),
            ("iaf residual", try .iaf(dim: d, layers: 2, hidden: [12], activation: "tanh", residualBlocks: 1, seed: 15)),
            ("nsf autoregressive residual", try .nsf(dim: d, layers: 2, hidden: [16], bins: 4, autoregressive: true,
                                                     residualBlocks: 2, seed: 16)),
        ]
    }

    func testEveryPresetObeysTheBijectionContract() throws {
        for d in [1, 3, 8, 64] {
            for (name, flow) in try presets(d) {
                BijectionChecker.perturb(flow.parameters, scale: 0.1, seed: 9)
                flow.transform.parametersDidChange()
                BijectionChecker.check(flow.transform, points: 2, "\(name) D=\(d)")
            }
        }
    }

    func testFreshCouplingFlowsAreTheIdentity() throws {
        for d in [1, 2, 5, 64] {
            for flow in [try NormalizingFlow<Float>.realNVP(dim: d, actnorm: true), try .nice(dim: d), try .nsf(dim: d, actnorm: true),
                         try .nsf(dim: d, autoregressive: true), try .maf(dim: d), try .iaf(dim: d),
                         try .maf(dim: d, residualBlocks: 2), try .iaf(dim: d, residualBlocks: 1),
                         try .nsf(dim: d, autoregressive: true, residualBlocks: 2)] {
                let x = try Tensor<Float>(shape: [7, d], scalars: BijectionChecker.randomPoints(7, d, seed: 2).map { Float($0) })
                let (z, ld) = try flow.forward(x)
                XCTAssertEqual(z, x)
                XCTAssertEqual(ld, [Double](repeating: 0, count: 7))
                // log p(x) is then the standard normal log-density.
                let lp = try flow.logProb(x)
                for i in 0..<7 {
                    let sq = x.row(i).reduce(0.0) { $0 + Double($1) * Double($1) }
                    XCTAssertEqual(lp[i], -0.5 * sq - Double(d) * 0.5 * log(2 * Double.pi), accuracy: 1e-9)
                }
            }
        }
    }

    /// The defaults table is what the expansion uses: a spec giving every default explicitly
    /// expands exactly like one giving none, and unknown keys are refused.
    func testDefaultsTableDrivesTheExpansion() throws {
        XCTAssertEqual(Presets.names, ["realnvp", "nice", "nsf", "maf", "iaf", "glow", "realnvp_image"])
        for preset in Presets.all {
            var minimal: [String: JSONValue] = ["preset": .string(preset.name)]
            for key in preset.required { minimal[key] = key == "dim" ? 3 : [1, 8, 8] }
            var full = minimal
            for (key, value) in preset.defaults where value != .null { full[key] = value }
            XCTAssertEqual(try Presets.expand(minimal), try Presets.expand(full), preset.name)
            XCTAssertEqual(Set(preset.json.objectValue!.keys), Set(preset.optionNames), preset.name)
            minimal["no_such_option"] = 1
            XCTAssertThrowsError(try Presets.expand(minimal), preset.name)
        }
        XCTAssertThrowsError(try Presets.named("no_such_preset"))
        // The builders leave out what they are not given.
        XCTAssertEqual(try NormalizingFlow<Float>.realNVP(dim: 3, seed: 1).spec,
                       try NormalizingFlow<Float>(spec: ["preset": "realnvp", "dim": 3], seed: 1).spec)
    }

    func testPresetStructure() throws {
        let flow = try NormalizingFlow<Float>.realNVP(dim: 6, layers: 3, actnorm: true, mixing: "lu")
        XCTAssertEqual(flow.layers.map { type(of: $0).typeName },
                       ["actnorm", "affine_coupling", "lu_linear", "actnorm", "affine_coupling", "lu_linear",
                        "actnorm", "affine_coupling"])
        // Default RealNVP: 8 couplings whose masks alternate.
        let plain = try NormalizingFlow<Float>.realNVP(dim: 4)
        XCTAssertEqual(plain.layers.count, 8)
        let masks = plain.spec["layers"]!.arrayValue!.map { $0["mask"]!.intArrayValue! }
        XCTAssertEqual(masks[0], [1, 1, 0, 0])
        XCTAssertEqual(masks[1], [0, 0, 1, 1])
        // 8 couplings of 2 → 64 → 64 → 4: (2·64 + 64) + (64·64 + 64) + (64·4 + 4).
        XCTAssertEqual(plain.parameterCount, 8 * ((2 * 64 + 64) + (64 * 64 + 64) + (64 * 4 + 4)))
    }

    /// `residual_blocks` makes every MADE of the autoregressive presets nflows' residual MADE of
    /// width `hidden[0]`; coupling presets refuse it.
    func testAutoregressivePresetsTakeResidualBlocks() throws {
        for (name, flow) in [("maf", try NormalizingFlow<Float>.maf(dim: 3, layers: 2, residualBlocks: 2)),
                             ("iaf", try .iaf(dim: 3, layers: 2, hidden: [16, 16], residualBlocks: 1)),
                             ("nsf", try .nsf(dim: 3, layers: 2, autoregressive: true, residualBlocks: 3))] {
            let layers = try XCTUnwrap(flow.spec["layers"]?.arrayValue)
            XCTAssertEqual(layers.count, 2, name)
            for layer in layers {
                XCTAssertEqual(layer["residual_blocks"], .number(name == "maf" ? 2 : name == "iaf" ? 1 : 3), name)
                XCTAssertEqual(layer["hidden"], JSONValue([name == "iaf" ? 16 : 64]), name)
            }
        }
        XCTAssertNil(try NormalizingFlow<Float>.maf(dim: 3, layers: 2, residualBlocks: 0).spec["layers"]?.arrayValue?.first?["residual_blocks"])
        XCTAssertEqual(try NormalizingFlow<Float>.maf(dim: 3, layers: 2, residualBlocks: 0).spec,
                       try NormalizingFlow<Float>.maf(dim: 3, layers: 2).spec)
        ErrorAssertions.assertThrows(["needs autoregressive layers"], ErrorAssertions.isInvalidSpec) {
            _ = try NormalizingFlow<Float>.nsf(dim: 3, residualBlocks: 1)
        }
        ErrorAssertions.assertThrows(["unknown key \"residual_blocks\""], ErrorAssertions.isInvalidSpec) {
            _ = try NormalizingFlow<Float>(spec: ["preset": "realnvp", "dim": 3, "residual_blocks": 1], seed: 0)
        }
        ErrorAssertions.assertThrows(["\"residual_blocks\" must be an integer"], ErrorAssertions.isInvalidSpec) {
            _ = try NormalizingFlow<Float>(spec: ["preset": "maf", "dim": 3, "residual_blocks": -2], seed: 0)
        }
        ErrorAssertions.assertThrows(["equal hidden widths"], ErrorAssertions.isInvalidSpec) {
            _ = try NormalizingFlow<Float>.maf(dim: 3, hidden: [16, 8], residualBlocks: 1)
        }
    }

    /// A 2-D flow's density integrates to 1 (midpoint rule over a grid covering the mass).
    func testTwoDimensionalDensityIntegratesToOne() throws {
        for flow in [try NormalizingFlow<Double>.realNVP(dim: 2, layers: 4, hidden: [16, 16], mixing: "lu", seed: 3),
                     try .nice(dim: 2, layers: 3, hidden: [16], seed: 4),
                     try .nsf(dim: 2, layers: 3, hidden: [16], mixing: "lu", seed: 6)] {
            BijectionChecker.perturb(flow.parameters, scale: 0.2, seed: 5)
            flow.transform.parametersDidChange()
            let lo = -10.0, hi = 10.0, n = 700
            let h = (hi - lo) / Double(n)
            var grid = [Double]()
            grid.reserveCapacity(2 * n * n)
            for i in 0..<n { for j in 0..<n { grid += [lo + (Double(i) + 0.5) * h, lo + (Double(j) + 0.5) * h] } }
            let lp = try flow.logProb(Tensor(shape: [n * n, 2], scalars: grid))
            let mass = lp.reduce(0.0) { $0 + exp($1) } * h * h
                        XCTAssertEqual(mass, 1, accuracy: 1e-3, "density integrates to \(mass)")
        }
    }
}
