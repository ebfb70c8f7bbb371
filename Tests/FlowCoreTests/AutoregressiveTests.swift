@testable import FlowCore
import FlowTestSupport
import XCTest

/// Masked autoregressive layers beyond the shared checkers (LayerTests, GradientTests): the
/// autoregressive property in the declared order, the two directions, masks held at zero.
final class AutoregressiveTests: XCTestCase {
    private func layer(_ config: [String: JSONValue], d: Int, seed: UInt64 = 3) throws -> any FlowLayer<Double> {
        let flow = try NormalizingFlow<Double>(spec: Fixtures.singleLayer(config, shape: [d]), seed: seed)
        BijectionChecker.perturb(flow.parameters, scale: 0.4, seed: seed)
        flow.transform.parametersDidChange()
        return flow.layers[0]
    }

    /// The orders a test covers at `d` features: the shorthands and an explicit permutation.
    private func orders(_ d: Int) -> [JSONValue] {
        [.string("natural"), .string("reversed"), .string("random"), JSONValue((0..<d).map { ($0 * 3 + 1) % d })]
    }

    /// `∂θ_i/∂x_j = 0` for every `j` not before `i` in the order, exactly (the masked weights are
    /// zero), and `θ_i` does depend on some earlier feature: finite differences of the network's
    /// output over random orders, both transforms, with and without several hidden layers.
    func testConditionerIsAutoregressiveInItsOrder() throws {
        for d in [2, 3, 5, 8] where Set((0..<d).map { ($0 * 3 + 1) % d }).count == d {
            for order in orders(d) {
                for (type, hidden) in [("affine_autoregressive", [16, 12]), ("spline_autoregressive", [9]),
                                       ("affine_autoregressive", [Int]())] {
                    let made = try layer(["type": .string(type), "order": order, "hidden": JSONValue(hidden),
                                          "activation": .string("tanh")], d: d)
                    let ar = try XCTUnwrap(made as? any AutoregressiveProbe)
                    let positions = ar.orderPositions
                    let x = BijectionChecker.randomPoints(1, d, seed: 4)
                    let base = ar.conditionerOutputs(x)
                    for j in 0..<d {
                        var moved = x
                        moved[j] += 0.37
                        let out = ar.conditionerOutputs(moved)
                        for i in 0..<d {
                            let changed = ar.columns(of: i).contains { out[$0] != base[$0] }
                            if positions[j] >= positions[i] {
                                XCTAssertFalse(changed, "\(type) \(hidden) D=\(d) order \(positions): θ_\(i) depends on x_\(j)")
                            }
                        }
                    }
                    // Non-vacuous: the feature last in the order sees the one before it.
                    if d > 1 {
                        let last = positions.firstIndex(of: d - 1)!, previous = positions.firstIndex(of: d - 2)!
                        var moved = x
                        moved[previous] += 0.37
                        let out = ar.conditionerOutputs(moved)
                        XCTAssertTrue(ar.columns(of: last).contains { out[$0] != base[$0] },
                                      "\(type) \(hidden) D=\(d): θ of the last feature ignores the one before it")
                    }
                }
            }
        }
    }

    /// An IAF layer is a MAF layer run the other way: with the same parameters, one's forward
    /// pass is the other's inverse, bit for bit, log-determinants included.
    func testIAFIsMAFReversed() throws {
        for type in ["affine_autoregressive", "spline_autoregressive"] {
            let d = 5
            let config: [String: JSONValue] = ["type": .string(type), "order": .string("random"), "hidden": JSONValue([10, 10])]
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

    /// Masked weights stay exactly zero through training, and a file whose masked entries are
    /// not zero evaluates as if they were (the mask defines the network).
    func testMaskedWeightsStayZero() throws {
        let d = 4
        let flow = try NormalizingFlow<Float>.maf(dim: d, layers: 2, hidden: [12], seed: 1)
        let data = BijectionChecker.randomPoints(512, d, seed: 3).map { Float($0) }
        var options = TrainingOptions()
        options.epochs = 2
        options.batchSize = 64
        options.validationFraction = 0
        let trainer = try data.withUnsafeBufferPointer { try Trainer(flow: flow, data: $0, rows: 512, options: options) }
        try trainer.run()
        for layer in flow.layers {
            let made = try XCTUnwrap(layer as? AffineAutoregressive<Float>)
            for (w, mask) in zip(made.net.weights, try XCTUnwrap(made.net.masks)) {
                for i in 0..<w.count where mask[i] == 0 { XCTAssertEqual(w.values[i], 0) }
                XCTAssertTrue(zip(w.array, mask).contains { $0.1 == 1 && $0.0 != 0 }, "training moved no weight")
            }
        }
        let x = try Tensor<Float>(shape: [20, d], scalars: Array(data.prefix(20 * d)))
        let before = try flow.logProb(x)
        let made = try XCTUnwrap(flow.layers[0] as? AffineAutoregressive<Float>)
        let mask = try XCTUnwrap(made.net.masks)[0]
        for i in 0..<mask.count where mask[i] == 0 { made.net.weights[0].values[i] = 1e3 }
        flow.transform.parametersDidChange()
        XCTAssertEqual(try flow.logProb(x), before)
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
        XCTAssertEqual(a.net.masks, b.net.masks)
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
    func conditionerOutputs(_ x: [Double]) -> [Double]
}

extension MaskedAutoregressive: AutoregressiveProbe where Transform.Scalar == Double {
    var orderPositions: [Int] { structure.order }
    func columns(of feature: Int) -> [Int] { featureColumns[feature] }
    func conditionerOutputs(_ x: [Double]) -> [Double] {
        let ws = Workspace()
        try! ws.reserve(bytes: net.workspaceBytes(rows: 1) + 4096)
        var arena = ws.arena()
        var out = [Double](repeating: 0, count: net.outFeatures)
        x.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { net(input.baseAddress!, ldx: x.count, rows: 1, into: $0.baseAddress!, arena: &arena) }
        }
        return out
    }
}
