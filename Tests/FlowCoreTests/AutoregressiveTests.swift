@testable import FlowCore
import FlowTestSupport
import XCTest

/// Masked autoregressive layers beyond the shared checkers (LayerTests, GradientTests): the
/// autoregressive property in the declared order (plain and residual MADE, with and without a
/// context, both directions), masks held at zero.
final class AutoregressiveTests: XCTestCase {
    /// A one-layer flow around `config` (with a context of `context` values when positive),
    /// its parameters perturbed.
    private func flow(_ config: [String: JSONValue], d: Int, context: Int = 0, seed: UInt64 = 3) throws -> NormalizingFlow<Double> {
        var spec: [String: JSONValue] = ["event_shape": JSONValue([d]), "layers": .array([.object(config)])]
        if context > 0 { spec["context"] = .object(["size": .number(Double(context))]) }
        let flow = try NormalizingFlow<Double>(spec: .object(spec), seed: seed)
        BijectionChecker.perturb(flow.parameters, scale: 0.4, seed: seed)
        flow.transform.parametersDidChange()
        return flow
    }

    private func layer(_ config: [String: JSONValue], d: Int, context: Int = 0, seed: UInt64 = 3) throws -> any FlowLayer<Double> {
        try flow(config, d: d, context: context, seed: seed).layers[0]
    }

    /// The orders a test covers at `d` features: the shorthands and an explicit permutation.
    private func orders(_ d: Int) -> [JSONValue] {
        [.string("natural"), .string("reversed"), .string("random"), JSONValue((0..<d).map { ($0 * 3 + 1) % d })]
    }

    /// The network configurations of the property tests: plain MADE with several, one or no
    /// hidden layers, and nflows' residual MADE with one and two blocks.
    private let networks: [(type: String, hidden: [Int], blocks: Int)] = [
        ("affine_autoregressive", [16, 12], 0), ("spline_autoregressive", [9], 0), ("affine_autoregressive", [], 0),
        ("affine_autoregressive", [10], 2), ("spline_autoregressive", [9, 9], 1),
    ]

    /// `∂θ_i/∂x_j = 0` for every `j` not before `i` in the order, exactly (the masked weights are
    /// zero), and `θ_i` does depend on some earlier feature: finite differences of the network's
    /// output over random orders, both transforms, with and without several hidden layers, with
    /// residual blocks, with and without a context. With a context, every `θ_i` (the first in
    /// the order's too) depends on it.
    func testConditionerIsAutoregressiveInItsOrder() throws {
        for d in [2, 3, 5, 8] where Set((0..<d).map { ($0 * 3 + 1) % d }).count == d {
            for order in orders(d) {
                for (type, hidden, blocks) in networks {
                    for contextSize in [0, 2] {
                        var config: [String: JSONValue] = ["type": .string(type), "order": order, "hidden": JSONValue(hidden),
                                                           "activation": .string("tanh")]
                        if blocks > 0 { config["residual_blocks"] = .number(Double(blocks)) }
                        let made = try layer(config, d: d, context: contextSize)
                        let label = "\(type) \(hidden) blocks \(blocks) context \(contextSize) D=\(d)"
                        let ar = try XCTUnwrap(made as? any AutoregressiveProbe)
                        let positions = ar.orderPositions
                        let x = BijectionChecker.randomPoints(1, d, seed: 4)
                        let c = BijectionChecker.randomPoints(1, contextSize, seed: 5)
                        let base = ar.conditionerOutputs(x, context: c)
                        for j in 0..<d {
                            var moved = x
                            moved[j] += 0.37
                            let out = ar.conditionerOutputs(moved, context: c)
                            for i in 0..<d {
                                let changed = ar.columns(of: i).contains { out[$0] != base[$0] }
                                if positions[j] >= positions[i] {
                                    XCTAssertFalse(changed, "\(label) order \(positions): θ_\(i) depends on x_\(j)")
                                }
                            }
                        }
                        // Non-vacuous: the feature last in the order sees the one before it.
                        if d > 1 {
                            let last = positions.firstIndex(of: d - 1)!, previous = positions.firstIndex(of: d - 2)!
                            var moved = x
                            moved[previous] += 0.37
                            let out = ar.conditionerOutputs(moved, context: c)
                            XCTAssertTrue(ar.columns(of: last).contains { out[$0] != base[$0] },
                                          "\(label): θ of the last feature ignores the one before it")
                        }
                        if contextSize > 0 {
                            let out = ar.conditionerOutputs(x, context: c.map { $0 + 0.37 })
                            for i in 0..<d {
                                XCTAssertTrue(ar.columns(of: i).contains { out[$0] != base[$0] }, "\(label): θ_\(i) ignores the context")
                            }
                        }
                    }
                }
            }
        }
    }

    /// The layer itself, both ways: `∂z_i/∂x_j = 0` (exactly) for every `j` later than `i` in
    /// the order, for `z = P(x)` (MAF's forward pass: one network pass) and `z = P⁻¹(x)` (IAF's:
    /// the sequential pass), plain and residual, with and without a context; and the last
    /// feature in the order depends on the one before it.
    func testLayerIsAutoregressiveInItsOrderInBothDirections() throws {
        for d in [4, 5] {
            for order in orders(d) {
                for (type, hidden, blocks) in networks where !hidden.isEmpty {
                    for contextSize in [0, 3] {
                        for direction in ["maf", "iaf"] {
                            var config: [String: JSONValue] = ["type": .string(type), "order": order, "hidden": JSONValue(hidden),
                                                               "activation": .string("tanh"), "direction": .string(direction)]
                            if blocks > 0 { config["residual_blocks"] = .number(Double(blocks)) }
                            let f = try flow(config, d: d, context: contextSize)
                            let label = "\(type) \(hidden) blocks \(blocks) context \(contextSize) \(direction) D=\(d)"
                            let positions = try XCTUnwrap(f.layers[0] as? any AutoregressiveProbe).orderPositions
                            let c = BijectionChecker.randomPoints(1, contextSize, seed: 6)
                            func z(_ x: [Double]) -> [Double] {
                                var out = x, ld = [0.0]
                                c.withUnsafeBufferPointer { cp in
                                    x.withUnsafeBufferPointer { f.forward($0.baseAddress!, count: 1, context: cp.baseAddress, z: &out, logDet: &ld) }
                                }
                                return out
                            }
                            let x = BijectionChecker.randomPoints(1, d, seed: 7)
                            let base = z(x)
                            for j in 0..<d {
                                var moved = x
                                moved[j] += 0.37
                                let out = z(moved)
                                for i in 0..<d where positions[j] > positions[i] {
                                    XCTAssertEqual(out[i], base[i], "\(label) order \(positions): z_\(i) depends on x_\(j)")
                                }
                                XCTAssertNotEqual(out[j], base[j], "\(label): z_\(j) ignores x_\(j)")
                            }
                            let last = positions.firstIndex(of: d - 1)!, previous = positions.firstIndex(of: d - 2)!
                            var moved = x
                            moved[previous] += 0.37
                            XCTAssertNotEqual(z(moved)[last], base[last], "\(label): the last feature ignores the one before it")
                        }
                    }
                }
            }
        }
    }

    /// An IAF layer is a MAF layer run the other way: with the same parameters, one's forward
    /// pass is the other's inverse, bit for bit, log-determinants included.
    func testIAFIsMAFReversed() throws {
        for (type, blocks) in [("affine_autoregressive", 0), ("spline_autoregressive", 0), ("affine_autoregressive", 2),
                               ("spline_autoregressive", 1)] {
            let d = 5
            var config: [String: JSONValue] = ["type": .string(type), "order": .string("random"), "hidden": JSONValue([10, 10])]
            if blocks > 0 { config["residual_blocks"] = .number(Double(blocks)) }
            var iafConfig = config
            iafConfig["direction"] = .string("iaf")
            let maf = try NormalizingFlow<Double>(spec: Fixtures.singleLayer(config, shape: [d]), seed: 5)
            let iaf = try NormalizingFlow<Double>(spec: Fixtures.singleLayer(iafConfig, shape: [d]), seed: 5)
            BijectionChecker.perturb(maf.parameters, scale: 0.4, seed: 2)
            for (a, b) in zip(iaf.parameters, maf.parameters) { a.assign(b.values) }
            maf.transform.parametersDidChange()
            iaf.transform.parametersDidChange()
            let x = BijectionChecker.randomPoints(40, d, seed: 6)
            let (mafForward, mafLD) = BijectionChecker.apply(maf.transform, x, count: 40, inverse: false)
            let (iafInverse, iafLD) = BijectionChecker.apply(iaf.transform, x, count: 40, inverse: true)
            XCTAssertEqual(mafForward, iafInverse, type)
            XCTAssertEqual(mafLD, iafLD, type)
            let (mafInverse, _) = BijectionChecker.apply(maf.transform, x, count: 40, inverse: true)
            let (iafForward, _) = BijectionChecker.apply(iaf.transform, x, count: 40, inverse: false)
            XCTAssertEqual(mafInverse, iafForward, type)
        }
    }

    /// The sequential pass (pulled by ``SequentialPlan`` or pushed by ``SequentialPushPlan``) gives
    /// every row the same bits whatever the row count (one row alone, inside 32-row blocks, across
    /// a block boundary), inverts the one-pass map, and its log-determinant is the negative of the
    /// forward one: Float (the C kernels), with a context, units of degree 0, several hidden layers
    /// or none, ReLU and tanh.
    func testSequentialPassIsExactPerRowAndInvertsTheForwardPass() throws {
        let d = 6, c = 2, rows = 70
        let variants: [[String: JSONValue]] = [
            ["hidden": JSONValue([16, 16]), "order": .string("random")],
            ["hidden": JSONValue([9]), "activation": .string("tanh"), "hidden_degrees": JSONValue((0..<9).map { $0 % d })],
            ["hidden": JSONValue([] as [Int]), "order": .string("reversed")],
            ["hidden": JSONValue([12, 7, 10]), "order": JSONValue((0..<d).map { ($0 * 5 + 2) % d })],
            // Wide enough to push (SequentialPushPlan), the variants above pull by dot products.
            ["hidden": JSONValue([24, 20]), "order": .string("random")],
            ["hidden": JSONValue([21]), "activation": .string("tanh"), "hidden_degrees": JSONValue((0..<21).map { $0 % d })],
        ]
        for type in ["affine_autoregressive", "spline_autoregressive"] {
            for variant in variants {
                var layer = variant
                layer["type"] = .string(type)
                layer["context_features"] = .number(Double(c))
                let spec: JSONValue = .object(["event_shape": JSONValue([d]), "layers": .array([.object(layer)]),
                                               "context": .object(["size": .number(Double(c))])])
                let flow = try NormalizingFlow<Float>(spec: spec, seed: 4)
                let hidden = variant["hidden"]?.intArrayValue ?? []
                let pushPlan = Mirror(reflecting: flow.layers[0]).children.first { $0.label == "pushPlan" }?.value
                let pushes = pushPlan.map { "\($0)" != "nil" } ?? false
                XCTAssertEqual(pushes, hidden.isEmpty || hidden.min()! >= 4 * (d - 1), "\(type) \(variant): the plan the shape picks")
                BijectionChecker.perturb(flow.parameters, scale: 0.5, seed: 8)
                flow.parametersDidChange()
                let label = "\(type) \(variant)"
                let z = BijectionChecker.randomPoints(rows, d, seed: 9).map { Float($0) }
                let context = BijectionChecker.randomPoints(rows, c, seed: 10).map { Float($0) }
                var x = [Float](repeating: 0, count: rows * d), logDet = [Double](repeating: 0, count: rows)
                flow.inverse(z, count: rows, context: context, x: &x, logDet: &logDet)
                for r in [0, 31, 32, 33, 69] {
                    var alone = [Float](repeating: 0, count: d), aloneLD = [0.0]
                    flow.inverse(Array(z[(r * d)..<(r * d + d)]), count: 1, context: Array(context[(r * c)..<(r * c + c)]),
                                 x: &alone, logDet: &aloneLD)
                    XCTAssertEqual(alone.map(\.bitPattern), x[(r * d)..<(r * d + d)].map(\.bitPattern), "\(label) row \(r)")
                    XCTAssertEqual(aloneLD[0].bitPattern, logDet[r].bitPattern, "\(label) row \(r) log-det")
                }
                var back = [Float](repeating: 0, count: rows * d), forwardLD = [Double](repeating: 0, count: rows)
                flow.forward(x, count: rows, context: context, z: &back, logDet: &forwardLD)
                for i in 0..<(rows * d) { XCTAssertEqual(back[i], z[i], accuracy: 2e-4 * (1 + abs(z[i])), "\(label) [\(i)]") }
                for r in 0..<rows { XCTAssertEqual(forwardLD[r], -logDet[r], accuracy: 1e-3, "\(label) log-det row \(r)") }
            }
        }
    }

    /// Masked weights stay exactly zero through training, and a file whose masked entries are
    /// not zero evaluates as if they were (the mask defines the network): plain and residual.
    func testMaskedWeightsStayZero() throws {
        let d = 4
        for blocks in [0, 2] {
            let flow = try NormalizingFlow<Float>.maf(dim: d, layers: 2, hidden: [12], residualBlocks: blocks, seed: 1)
            let data = BijectionChecker.randomPoints(512, d, seed: 3).map { Float($0) }
            var options = TrainingOptions()
            options.epochs = 2
            options.batchSize = 64
            options.validationFraction = 0
            let trainer = try data.withUnsafeBufferPointer { try Trainer(flow: flow, data: $0, rows: 512, options: options) }
            try trainer.run()
            for layer in flow.layers {
                let made = try XCTUnwrap(layer as? AffineAutoregressive<Float>)
                let weights = maskedWeights(made.net)
                XCTAssertEqual(weights.count, blocks > 0 ? 2 + 2 * blocks : 2)
                for (w, mask) in weights {
                    for i in 0..<w.count where mask[i] == 0 { XCTAssertEqual(w.values[i], 0, "\(w.name)") }
                    XCTAssertTrue(zip(w.array, mask).contains { $0.1 == 1 && $0.0 != 0 }, "training moved no weight of \(w.name)")
                    XCTAssertTrue(mask.contains(0), "\(w.name) has no masked entry")
                }
            }
            let x = try Tensor<Float>(shape: [20, d], scalars: Array(data.prefix(20 * d)))
            let before = try flow.logProb(x)
            let made = try XCTUnwrap(flow.layers[0] as? AffineAutoregressive<Float>)
            for (w, mask) in maskedWeights(made.net) {
                for i in 0..<mask.count where mask[i] == 0 { w.values[i] = 1e3 }
            }
            flow.transform.parametersDidChange()
            XCTAssertEqual(try flow.logProb(x), before, "residual blocks \(blocks)")
            var sampledBefore = [Float](repeating: 0, count: 30 * d), sampledAfter = sampledBefore
            flow.sample(count: 30, seed: 2, into: &sampledBefore)
            for (w, mask) in maskedWeights(made.net) {
                for i in 0..<mask.count where mask[i] == 0 { w.values[i] = -1e3 }
            }
            flow.transform.parametersDidChange()
            flow.sample(count: 30, seed: 2, into: &sampledAfter)
            XCTAssertEqual(sampledBefore, sampledAfter, "residual blocks \(blocks): the sequential pass")
        }
    }

    /// nflows' residual MADE, written out naively from the parameters (by dataset name) and
    /// nflows 0.14's `MADE.forward` / `MaskedResidualBlock.forward`, equals the network's output;
    /// its masks are nflows' (`out_degree ≥ in_degree` into hidden units, `>` into outputs, the
    /// context layers unmasked), and without a context its default degrees are nflows'.
    func testResidualMADEIsNflowsResidualMADE() throws {
        for (d, contextSize, activation, order) in [(4, 0, "relu", JSONValue.string("natural")), (5, 3, "tanh", .string("random")),
                                                    (3, 2, "elu", .string("reversed")), (1, 2, "softplus", .string("natural"))] {
            let (h, blocks) = (7, 2)
            let made = try layer(["type": .string("affine_autoregressive"), "hidden": JSONValue([h, h]), "order": order,
                                  "residual_blocks": .number(Double(blocks)), "activation": .string(activation)],
                                 d: d, context: contextSize)
            let ar = try XCTUnwrap(made as? AffineAutoregressive<Double>)
            let label = "D=\(d) context \(contextSize) \(activation)"
            XCTAssertEqual(ar.config["hidden"], JSONValue([h]), label)
            XCTAssertEqual(ar.config["residual_blocks"], .number(Double(blocks)), label)
            let p = Dictionary(uniqueKeysWithValues: ar.parameters.map { ($0.name, $0) })
            var names = ["initial_weight", "initial_bias"] + (contextSize > 0 ? ["context_weight", "context_bias"] : [])
            for b in 0..<blocks {
                names += ["block_\(b)_weight_0", "block_\(b)_bias_0"]
                if contextSize > 0 { names += ["block_\(b)_context_weight", "block_\(b)_context_bias"] }
                names += ["block_\(b)_weight_1", "block_\(b)_bias_1"]
            }
            XCTAssertEqual(ar.parameters.map(\.name), names + ["final_weight", "final_bias"], label)
            // Degrees: inputs order + 1, context 0; hidden units nflows' cyclic default without a
            // context (k mod D with one); outputs of feature f: order[f] + 1.
            let order = ar.structure.order
            let hiddenDegrees = (0..<h).map { contextSize > 0 ? $0 % d : $0 % max(1, d - 1) + min(1, d - 1) }
            XCTAssertEqual(ar.structure.hiddenDegrees, [hiddenDegrees], label)
            let inputDegrees = order.map { $0 + 1 }
            let out = 2 * d
            let outputDegrees = (0..<out).map { order[$0 % d] + 1 }
            func weight(_ name: String, _ k: Int, _ j: Int) -> Double {
                let w = p[name]!
                return w.values[k * w.shape[1] + j]
            }
            for k in 0..<h {
                for j in 0..<d where hiddenDegrees[k] < inputDegrees[j] {
                    XCTAssertEqual(weight("initial_weight", k, j), 0, "\(label): initial mask")
                }
                for j in 0..<h where hiddenDegrees[k] < hiddenDegrees[j] {
                    for b in 0..<blocks {
                        XCTAssertEqual(weight("block_\(b)_weight_0", k, j), 0, "\(label): block mask")
                        XCTAssertEqual(weight("block_\(b)_weight_1", k, j), 0, "\(label): block mask")
                    }
                }
            }
            for c in 0..<out {
                for j in 0..<h where outputDegrees[c] <= hiddenDegrees[j] {
                    XCTAssertEqual(weight("final_weight", c, j), 0, "\(label): output mask")
                }
            }
            // The forward pass, naively.
            let act = try XCTUnwrap(Activation(rawValue: activation))
            func linear(_ name: String, _ x: [Double]) -> [Double] {
                let w = p[name + "_weight"] ?? p[name.replacingOccurrences(of: "#", with: "weight")]!
                let b = p[name + "_bias"] ?? p[name.replacingOccurrences(of: "#", with: "bias")]!
                let (rows, columns) = (w.shape[0], w.shape[1])
                var y = [Double](repeating: 0, count: rows)
                for k in 0..<rows {
                    var sum: Double = b.values[k]
                    for j in 0..<columns { sum += w.values[k * columns + j] * x[j] }
                    y[k] = sum
                }
                return y
            }
            func apply(_ v: [Double]) -> [Double] {
                var v = v
                v.withUnsafeMutableBufferPointer { act.apply($0.baseAddress!, count: $0.count) }
                return v
            }
            for row in 0..<3 {
                let x = BijectionChecker.randomPoints(1, d, seed: UInt64(10 + row))
                let e = BijectionChecker.randomPoints(1, contextSize, seed: UInt64(20 + row))
                var temps = linear("initial", x)  // MADE.forward
                if contextSize > 0 { temps = zip(temps, apply(linear("context", e))).map(+) }
                for b in 0..<blocks {  // MaskedResidualBlock.forward
                    var t = apply(temps)
                    t = linear("block_\(b)_#_0", t)
                    if contextSize > 0 { t = zip(t, linear("block_\(b)_context", e)).map(+) }
                    t = apply(t)
                    t = linear("block_\(b)_#_1", t)
                    temps = zip(temps, t).map(+)
                }
                let reference = linear("final", temps)
                let got = ar.conditionerOutputs(x, context: e)
                XCTAssertLessThan(BijectionChecker.maxRelativeError(got, reference), 1e-12, "\(label) row \(row)")
            }
        }
    }

    /// A new residual layer is the identity (every block too: the second layer of each and the
    /// output layer start at zero), and its spec is checked: equal widths, a width at all, a
    /// block count in range, `H` hidden degrees. The resolved spec stores `hidden = [H]` and
    /// builds the same layer.
    func testResidualSpecsAreChecked() throws {
        let good: [String: JSONValue] = ["type": .string("spline_autoregressive"), "hidden": JSONValue([6, 6, 6]),
                                         "residual_blocks": .number(3), "order": .string("random"), "bins": .number(3)]
        let flow = try NormalizingFlow<Float>(spec: Fixtures.singleLayer(good, shape: [4]), seed: 2)
        let made = try XCTUnwrap(flow.layers[0] as? SplineAutoregressive<Float>)
        let residual = try XCTUnwrap(made.net.residualMADE)
        XCTAssertEqual(residual.blocks, 3)
        XCTAssertEqual(residual.width, 6)
        for layer in residual.linear1 + [residual.final] { XCTAssertTrue(layer.weight.array.allSatisfy { $0 == 0 }) }
        XCTAssertTrue(residual.linear0.allSatisfy { $0.weight.array.contains { $0 != 0 } })
        let layerSpec = try XCTUnwrap(flow.spec["layers"]?.arrayValue?.first)
        XCTAssertEqual(layerSpec["hidden"], JSONValue([6]))
        XCTAssertEqual(layerSpec["hidden_degrees"]?.intArrayValue?.count, 6)
        let again = try NormalizingFlow<Float>(spec: flow.spec, seed: 2)
        XCTAssertEqual(again.spec, flow.spec)
        XCTAssertEqual(again.parameters.map(\.shape), flow.parameters.map(\.shape))
        for (a, b) in zip(again.parameters, flow.parameters) { XCTAssertEqual(a.array, b.array, a.name) }
        func attempt(_ changes: [String: JSONValue], shape: [Int] = [4]) throws {
            var config = good
            for (key, value) in changes { config[key] = value }
            _ = try NormalizingFlow<Float>(spec: Fixtures.singleLayer(config, shape: shape), seed: 0)
        }
        let refusals: [([String: JSONValue], String)] = [
            (["hidden": JSONValue([6, 5])], "equal hidden widths"),
            (["hidden": JSONValue([Int]())], "needs a hidden width"),
            (["residual_blocks": .number(-1)], "residual_blocks must be an integer in 0...32"),
            (["residual_blocks": .number(33)], "residual_blocks must be an integer in 0...32"),
            (["hidden_degrees": JSONValue([1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3])], "hidden_degrees has 12 entries for 6"),
            (["hidden_degrees": JSONValue([0, 1, 2, 3, 4, 1])], "hidden_degrees must lie in 0..<4"),
        ]
        for (changes, fragment) in refusals {
            ErrorAssertions.assertThrows([fragment], ErrorAssertions.isInvalidSpec) { try attempt(changes) }
        }
        ErrorAssertions.assertThrows(["residual_blocks"], ErrorAssertions.isInvalidSpec) { try attempt(["residual_blocks": .number(1.5)]) }
        ErrorAssertions.assertThrows(["residual MADE", "parameters"], ErrorAssertions.isLimit) {
            try attempt(["hidden": JSONValue([1 << 16]), "residual_blocks": .number(32)])
        }
        // Explicit degrees: one list of H, used by every layer.
        var explicit = good
        explicit["hidden_degrees"] = JSONValue([3, 2, 1, 0, 0, 1])
        let custom = try NormalizingFlow<Float>(spec: Fixtures.singleLayer(explicit, shape: [4]), seed: 1)
        XCTAssertEqual(try XCTUnwrap(custom.layers[0] as? SplineAutoregressive<Float>).structure.hiddenDegrees, [[3, 2, 1, 0, 0, 1]])
        // Zero blocks is the plain MADE, spec and parameters unchanged.
        var plain = good
        plain["residual_blocks"] = .number(0)
        plain["hidden"] = JSONValue([6, 5])
        let zero = try NormalizingFlow<Float>(spec: Fixtures.singleLayer(plain, shape: [4]), seed: 2)
        plain["residual_blocks"] = nil
        let absent = try NormalizingFlow<Float>(spec: Fixtures.singleLayer(plain, shape: [4]), seed: 2)
        XCTAssertEqual(zero.spec, absent.spec)
        XCTAssertNil(zero.spec["layers"]?.arrayValue?.first?["residual_blocks"])
        for (a, b) in zip(zero.parameters, absent.parameters) { XCTAssertEqual(a.array, b.array) }
    }

    /// Every masked weight of a MADE network with its mask.
    private func maskedWeights<T>(_ net: MADENetwork<T>) -> [(Parameter<T>, [T])] {
        switch net {
        case .plain(let mlp, _): return Array(zip(mlp.weights, mlp.masks ?? []))
        case .residual(let made):
            return ([made.initial] + made.linear0 + made.linear1 + [made.final]).map { ($0.weight, $0.mask ?? []) }
        }
    }

    /// Resolved specs store the order and every hidden degree; building from them gives the same
    /// masks, and explicit degrees are checked.
    func testResolvedSpecKeepsOrderAndDegrees() throws {
        let spec = Fixtures.singleLayer(["type": .string("spline_autoregressive"), "order": .string("random"),
                                         "hidden": JSONValue([6, 4])], shape: [5])
        let flow = try NormalizingFlow<Float>(spec: spec, seed: 9)
        let again = try NormalizingFlow<Float>(spec: flow.spec, seed: 0)
        let a = try XCTUnwrap(flow.layers[0] as? SplineAutoregressive<Float>)
        let b = try XCTUnwrap(again.layers[0] as? SplineAutoregressive<Float>)
        XCTAssertEqual(a.structure, b.structure)
        XCTAssertEqual(a.net.mlp?.masks, b.net.mlp?.masks)
        XCTAssertNil(flow.spec["layers"]?.arrayValue?.first?["residual_blocks"], "a plain MADE's spec has no residual_blocks")
        XCTAssertEqual(a.structure.hiddenDegrees, [[1, 2, 3, 4, 1, 2], [1, 2, 3, 4]])
        for (bad, fragment) in [(JSONValue([0, 0, 1, 2, 3]), "permutation"), (.string("sorted"), "unknown order")] {
            ErrorAssertions.assertThrows([fragment], ErrorAssertions.isInvalidSpec) {
                _ = try NormalizingFlow<Float>(spec: Fixtures.singleLayer(["type": .string("affine_autoregressive"),
                                                                            "order": bad], shape: [5]), seed: 0)
            }
        }
        ErrorAssertions.assertThrows(["hidden_degrees has 3 entries for 4"], ErrorAssertions.isInvalidSpec) {
            _ = try NormalizingFlow<Float>(spec: Fixtures.singleLayer(["type": .string("affine_autoregressive"), "hidden": JSONValue([4]),
                                                                        "hidden_degrees": JSONValue([1, 2, 3])], shape: [5]), seed: 0)
        }
        ErrorAssertions.assertThrows(["hidden_degrees must lie in 0..<5"], ErrorAssertions.isInvalidSpec) {
            _ = try NormalizingFlow<Float>(spec: Fixtures.singleLayer(["type": .string("affine_autoregressive"), "hidden": JSONValue([2]),
                                                                        "hidden_degrees": JSONValue([1, 5])], shape: [5]), seed: 0)
        }
        ErrorAssertions.assertThrows(["direction must be"], ErrorAssertions.isInvalidSpec) {
            _ = try NormalizingFlow<Float>(spec: Fixtures.singleLayer(["type": .string("affine_autoregressive"),
                                                                        "direction": .string("both")], shape: [5]), seed: 0)
        }
    }
}

/// What the property test reads of a masked autoregressive layer, whatever its transform.
protocol AutoregressiveProbe {
    var orderPositions: [Int] { get }
    func columns(of feature: Int) -> [Int]
    /// The network's outputs at the features `x` and the (encoded) context row `context`.
    func conditionerOutputs(_ x: [Double], context: [Double]) -> [Double]
}

extension MaskedAutoregressive: AutoregressiveProbe where Transform.Scalar == Double {
    var orderPositions: [Int] { structure.order }
    func columns(of feature: Int) -> [Int] { featureColumns[feature] }
    func conditionerOutputs(_ x: [Double], context: [Double]) -> [Double] {
        let ws = Workspace()
        try! ws.reserve(bytes: net.workspaceBytes(rows: 1) + 4096)
        var arena = ws.arena()
        var out = [Double](repeating: 0, count: net.outFeatures)
        let input = x + context
        precondition(input.count == net.inFeatures)
        input.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { net(input.baseAddress!, ldx: input.count, rows: 1, into: $0.baseAddress!, arena: &arena) }
        }
        return out
    }
}
