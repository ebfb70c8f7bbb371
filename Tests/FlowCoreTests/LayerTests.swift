@testable import FlowCore
@testable import FlowModelFile
import FlowTestSupport
import XCTest

/// Every layer type, at several dimensions, through the shared checker.
final class LayerTests: XCTestCase {
    static let dimensions = [1, 3, 8, 64]

    func testEveryLayerObeysTheBijectionContract() throws {
        for d in Self.dimensions {
            for (name, config) in Fixtures.layerConfigurations(dimension: d) {
                let flow = try NormalizingFlow<Double>(spec: Fixtures.singleLayer(config, shape: [d]), seed: 7)
                BijectionChecker.perturb(flow.parameters, scale: 0.2, seed: UInt64(d))
                flow.transform.parametersDidChange()
                BijectionChecker.check(flow.transform, points: 3, "\(name) D=\(d)")
            }
        }
    }

    /// Float32 round trips: relative error around 1e-5 or better (reported tolerance 2e-5).
    func testFloatRoundTripError() throws {
        for d in Self.dimensions {
            for (name, config) in Fixtures.layerConfigurations(dimension: d) {
                let flow = try NormalizingFlow<Float>(spec: Fixtures.singleLayer(config, shape: [d]), seed: 7)
                BijectionChecker.perturb(flow.parameters, scale: 0.2, seed: UInt64(d))
                flow.transform.parametersDidChange()
                let x = try Tensor<Float>(shape: [200, d],
                                          scalars: BijectionChecker.randomPoints(200, d, seed: 3).map { Float($0) })
                let (z, ldf) = try flow.forward(x)
                let (back, ldi) = try flow.inverse(z)
                let err = BijectionChecker.maxRelativeError(back.scalars, x.scalars)
                XCTAssertLessThan(err, 2e-5, "\(name) D=\(d): Float round-trip error \(err)")
                for i in 0..<200 {
                    XCTAssertEqual(ldf[i], -ldi[i], accuracy: 1e-4 * max(1, abs(ldf[i])), "\(name) D=\(d)")
                }
                XCTAssertTrue(z.scalars.allSatisfy(\.isFinite))
            }
        }
    }

    /// Couplings, autoregressive layers and ActNorm start as the identity (all but nflows'
    /// "sigmoid" scale, which scales by sigmoid(2) + 0.001 at zero parameters).
    func testCouplingLayersStartAsTheIdentity() throws {
        for d in Self.dimensions {
            for (name, config) in Fixtures.layerConfigurations(dimension: d)
            where ((config["type"]?.stringValue ?? "").hasSuffix("coupling") || (config["type"]?.stringValue ?? "").hasSuffix("autoregressive")
                   || config["type"] == .string("actnorm")) && config["scale"] != .string("sigmoid") {
                let flow = try NormalizingFlow<Float>(spec: Fixtures.singleLayer(config, shape: [d]), seed: 11)
                let x = try Tensor<Float>(shape: [5, d], scalars: BijectionChecker.randomPoints(5, d, seed: 1).map { Float($0) })
                let (z, ld) = try flow.forward(x)
                XCTAssertEqual(z, x, "\(name) D=\(d) is not the identity at initialisation")
                XCTAssertEqual(ld, [Double](repeating: 0, count: 5), "\(name) D=\(d)")
            }
        }
    }

    func testActNormDataDependentInitialisation() throws {
        let flow = try NormalizingFlow<Double>(spec: Fixtures.singleLayer(["type": .string("actnorm")], shape: [3]), seed: 0)
        let actnorm = try XCTUnwrap(flow.layers[0] as? ActNorm<Double>)
        XCTAssertFalse(actnorm.isInitialized)
        // Columns with means 1, −2, 5 and standard deviations 2, 0.5, 3.
        let n = 4000
        var x = BijectionChecker.randomPoints(n, 3, seed: 4)
        for r in 0..<n {
            x[r * 3] = 1 + 2 * x[r * 3]
            x[r * 3 + 1] = -2 + 0.5 * x[r * 3 + 1]
            x[r * 3 + 2] = 5 + 3 * x[r * 3 + 2]
        }
        x.withUnsafeBufferPointer { actnorm.initialize(from: $0.baseAddress!, count: n) }
        XCTAssertTrue(actnorm.isInitialized)
        XCTAssertEqual(flow.spec["layers"]?.arrayValue?.first?["initialized"], .bool(true))
        let (z, _) = BijectionChecker.apply(flow.transform, x, count: n, inverse: false)
        for c in 0..<3 {
            let column = stride(from: c, to: z.count, by: 3).map { z[$0] }
            let mean = column.reduce(0, +) / Double(n)
            let variance = column.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
            XCTAssertEqual(mean, 0, accuracy: 1e-9)
            XCTAssertEqual(variance, 1, accuracy: 1e-5)
        }
    }

    func testLULinearAssemblesItsDocumentedWeight() throws {
        // W = P L (U + diag(sign·exp(log_scale))) applied as z = W x, checked against a direct product.
        let flow = try NormalizingFlow<Double>(spec: Fixtures.singleLayer(["type": .string("lu_linear")], shape: [4]), seed: 3)
        BijectionChecker.perturb(flow.parameters, scale: 0.3, seed: 2)
        flow.transform.parametersDidChange()
        let layer = try XCTUnwrap(flow.layers[0] as? LULinear<Double>)
        let d = 4
        let p = layer.permutation, s = layer.sign
        func entry(_ i: Int, _ j: Int) -> Double {
            // (L (U + D))[permutation[i], j]
            let r = p[i]
            var acc = 0.0
            for k in 0..<d {
                let l = k == r ? 1 : (k < r ? layer.lower.values[r * d + k] : 0)
                let u = k == j ? Double(s[j]) * exp(layer.logScale.values[j]) : (k < j ? layer.upper.values[k * d + j] : 0)
                acc += l * u
            }
            return acc
        }
        let x = [0.3, -1.2, 2.0, 0.7]
        let (z, ld) = BijectionChecker.apply(flow.transform, x, count: 1, inverse: false)
        for i in 0..<d {
            let expected = (0..<d).reduce(0.0) { $0 + entry(i, $1) * x[$1] }
            XCTAssertEqual(z[i], expected, accuracy: 1e-12)
        }
        XCTAssertEqual(ld[0], layer.logScale.values.reduce(0, +), accuracy: 1e-12)
    }
}
