@testable import FlowCore
@testable import FlowModelFile
@testable import FlowHDF5
import FlowTestSupport
import Glibc
import XCTest

/// Checks specific to ``SplineCoupling`` beyond the generic contract (LayerTests, GradientTests).
final class SplineCouplingTests: XCTestCase {
    /// A spline coupling flow with non-trivial parameters (bins far from uniform).
    func splineFlow<T: FlowScalar>(_: T.Type, dim: Int, extra: [String: JSONValue] = [:],
                                   scale: Double = 0.7, seed: UInt64 = 3) throws -> NormalizingFlow<T> {
        var config: [String: JSONValue] = ["type": .string("spline_coupling"), "hidden": JSONValue([8])]
        for (k, v) in extra { config[k] = v }
        let flow = try NormalizingFlow<T>(spec: Fixtures.singleLayer(config, shape: [dim]), seed: seed)
        BijectionChecker.perturb(flow.parameters, scale: scale, seed: seed)
        flow.transform.parametersDidChange()
        return flow
    }

    func testRandomParametersGiveAMonotoneNonIdentityMap() throws {
        // D = 3, half mask: feature 0 conditions, features 1 and 2 are splined on [−3, 3].
        let d = 3
        // Monotone: sweep the transformed features over [−4, 4] for several conditioning values,
        // in Double with strongly perturbed parameters (slopes from ~1e-5 to ~100).
        let strong = try splineFlow(Double.self, dim: d, scale: 0.7)
        let steps = 4001
        var worstStep = Double.infinity, largestChange = 0.0
        for c in [-1.5, -0.2, 0.7, 2.0] {
            var rows = [Double]()
            for s in 0..<steps {
                let v = -4 + 8 * Double(s) / Double(steps - 1)
                rows += [c, v, -v]
            }
            let (z, ld) = BijectionChecker.apply(strong.transform, rows, count: steps, inverse: false)
            XCTAssertTrue(ld.allSatisfy(\.isFinite))
            for s in 1..<steps {
                XCTAssertEqual(z[s * d], c, "the conditioning feature must pass through")
                worstStep = min(worstStep, z[s * d + 1] - z[(s - 1) * d + 1])
                worstStep = min(worstStep, z[(s - 1) * d + 2] - z[s * d + 2])
            }
            for s in 0..<steps { largestChange = max(largestChange, abs(z[s * d + 1] - rows[s * d + 1])) }
        }
        XCTAssertGreaterThan(worstStep, 0, "the spline is not strictly increasing")
        XCTAssertGreaterThan(largestChange, 0.5, "random parameters should give a visibly non-identity map")

        // Inverse accuracy in Float for a clearly non-identity but well-conditioned map (slopes
        // ~0.06 … 10, points moved by up to ~1.8). Float errors scale with ulp / min slope, so the
        // strongly perturbed map above would not be a fair 1e-5 test.
        let flow = try splineFlow(Float.self, dim: d, scale: 0.4)
        let n = 4000
        let x = try Tensor<Float>(shape: [n, d], scalars: BijectionChecker.randomPoints(n, d, seed: 11).map { Float($0) })
        let (z, ldf) = try flow.forward(x)
        var moved: Float = 0
        for i in 0..<(n * d) { moved = max(moved, abs(z.scalars[i] - x.scalars[i])) }
        XCTAssertGreaterThan(moved, 0.5)
        let (back, ldi) = try flow.inverse(z)
        let err = BijectionChecker.maxRelativeError(back.scalars, x.scalars)
        XCTAssertLessThan(err, 1e-5, "Float round-trip error \(err)")
        for i in 0..<n { XCTAssertEqual(ldf[i], -ldi[i], accuracy: 1e-4 * max(1, abs(ldf[i]))) }
        // And from the latent side.
        let (x2, _) = try flow.inverse(x)
        let (z2, _) = try flow.forward(x2)
        let err2 = BijectionChecker.maxRelativeError(z2.scalars, x.scalars)
        XCTAssertLessThan(err2, 1e-5, "Float forward(inverse(z)) error \(err2)")
    }

    func testPointsOutsideTheBoundPassThrough() throws {
        for inverse in [false, true] {
            let flow = try splineFlow(Double.self, dim: 3, extra: ["bound": .number(2)])
            // Both transformed features outside [−2, 2]: the identity with log-det exactly 0.
            let x: [Double] = [0.3, 2.0000001, -7, -1, -2.5, 2.5, 1.2, 40, -2.0000001]
            let (z, ld) = BijectionChecker.apply(flow.transform, x, count: 3, inverse: inverse)
            XCTAssertEqual(z, x)
            XCTAssertEqual(ld, [0, 0, 0])
            // One inside, one outside: the outside one is unchanged, the inside one moves.
            let (z1, _) = BijectionChecker.apply(flow.transform, [0.3, 1.0, 3.5], count: 1, inverse: inverse)
            XCTAssertEqual(z1[2], 3.5)
            XCTAssertNotEqual(z1[1], 1.0)
        }
    }

    /// The layer against an independent transcription of the parameterisation (docs/model-format.md)
    /// and nflows' formula: D = 1 (empty conditioning half), so the spline inputs are the last bias.
    func testMatchesTheDocumentedFormula() throws {
        let k = 6, bound = 2.5, mw = 0.01, mh = 0.02, md = 0.05
        let flow = try NormalizingFlow<Double>(spec: Fixtures.singleLayer(
            ["type": .string("spline_coupling"), "hidden": JSONValue([]), "bins": .number(Double(k)),
             "bound": .number(bound), "min_bin_width": .number(mw), "min_bin_height": .number(mh),
             "min_derivative": .number(md)], shape: [1]), seed: 1)
        let bias = try XCTUnwrap(flow.parameters.first { $0.name == "bias_0" })
        XCTAssertEqual(bias.shape, [3 * k - 1])
        var rng = PhiloxStream(seed: 4, row: 0, stream: 3)
        for i in 0..<bias.count { bias.values[i] = 1.2 * rng.nextNormal() }
        let u = bias.array

        func knots(_ raw: ArraySlice<Double>, _ minimum: Double) -> [Double] {
            let e = raw.map { exp($0) }, total = e.reduce(0, +)
            var out = [-bound], acc = 0.0
            for v in e { acc += minimum + (1 - minimum * Double(k)) * v / total; out.append(-bound + 2 * bound * acc) }
            out[k] = bound
            return out
        }
        let xs = knots(u[0..<k], mw), ys = knots(u[k..<(2 * k)], mh)
        let c = log(exp(1 - md) - 1)
        let ds = [1.0] + u[(2 * k)...].map { md + log(1 + exp($0 + c)) } + [1.0]
        func reference(_ x: Double) -> (Double, Double) {
            guard abs(x) <= bound else { return (x, 0) }
            var b = 0
            while b < k - 1 && xs[b + 1] <= x { b += 1 }
            let w = xs[b + 1] - xs[b], h = ys[b + 1] - ys[b], s = h / w
            let th = (x - xs[b]) / w, t = th * (1 - th)
            let den = s + (ds[b] + ds[b + 1] - 2 * s) * t
            let y = ys[b] + h * (s * th * th + ds[b] * t) / den
            let dnum = s * s * (ds[b + 1] * th * th + 2 * s * t + ds[b] * (1 - th) * (1 - th))
            return (y, log(dnum) - 2 * log(den))
        }
        let points = (0...400).map { -3 + 6 * Double($0) / 400 } + xs + ys
        let (z, ld) = BijectionChecker.apply(flow.transform, points, count: points.count, inverse: false)
        for (i, x) in points.enumerated() {
            let (y, l) = reference(x)
            XCTAssertEqual(z[i], y, accuracy: 1e-12, "y at \(x)")
            XCTAssertEqual(ld[i], l, accuracy: 1e-11, "log-derivative at \(x)")
        }
        // Knots map to knots.
        let (zk, _) = BijectionChecker.apply(flow.transform, xs, count: xs.count, inverse: false)
        for (a, b) in zip(zk, ys) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        // The inverse maps the reference outputs back.
        let ref = points.map { reference($0).0 }
        let (back, ldi) = BijectionChecker.apply(flow.transform, ref, count: ref.count, inverse: true)
        for i in points.indices {
            XCTAssertEqual(back[i], points[i], accuracy: 1e-12)
            XCTAssertEqual(ldi[i], -reference(points[i]).1, accuracy: 1e-10)
        }
    }

    /// `∂L/∂x` of the layer's backward against central differences of `L = Σ G·z + Σ W·logDet`,
    /// including the conditioning features (through the conditioner) and tail points.
    func testInputGradientMatchesFiniteDifferences() throws {
        for (mask, bins) in [("alternating", 5), ("half", 8)] {
            let d = 5, n = 40
            let flow = try splineFlow(Double.self, dim: d, extra: ["mask": .string(mask), "bins": .number(Double(bins)),
                                                                   "bound": .number(2), "activation": .string("tanh")],
                                      scale: 0.8)
            let layer = flow.layers[0]
            let x = BijectionChecker.randomPoints(n, d, seed: 21, scale: 1.4)
            let gz = BijectionChecker.randomPoints(n, d, seed: 22)
            let w = BijectionChecker.randomPoints(n, 1, seed: 23)
            func loss(_ x: [Double]) -> Double {
                let (z, ld) = BijectionChecker.apply(layer, x, count: n, inverse: false)
                return zip(z, gz).reduce(0) { $0 + $1.0 * $1.1 } + zip(ld, w).reduce(0) { $0 + $1.0 * $1.1 }
            }
            var g = gz
            let ws = Workspace()
            try! ws.reserve(bytes: layer.backwardWorkspaceBytes(count: n))
            flow.zeroGradients()
            x.withUnsafeBufferPointer { xp in
                g.withUnsafeMutableBufferPointer { gp in
                    w.withUnsafeBufferPointer { wp in
                        var arena = ws.arena()
                        layer.backward(input: xp.baseAddress!, count: n, gradient: gp.baseAddress!,
                                       logDetGradient: wp.baseAddress!, arena: &arena)
                    }
                }
            }
            let h = 1e-6
            for i in 0..<(n * d) {
                var up = x, down = x
                up[i] += h
                down[i] -= h
                let fd = (loss(up) - loss(down)) / (2 * h)
                XCTAssertEqual(g[i], fd, accuracy: 1e-6 * max(1, abs(fd)), "\(mask): ∂L/∂x[\(i)] at \(x[i])")
            }
        }
    }

    func testIdentityAtInitialisationIsExactForEveryOption() throws {
        for extra: [String: JSONValue] in [[:], ["bins": .number(3), "min_bin_width": .number(0.2), "min_bin_height": .number(0.05),
                                                 "min_derivative": .number(0.3), "bound": .number(1.7)],
                                           ["bins": .number(1)], ["bins": .number(11), "mask": .string("alternating")]] {
            var config: [String: JSONValue] = ["type": .string("spline_coupling"), "hidden": JSONValue([5])]
            for (k, v) in extra { config[k] = v }
            for d in extra["mask"] == nil ? [1, 2, 7] : [2, 7] {
                let flow = try NormalizingFlow<Float>(spec: Fixtures.singleLayer(config, shape: [d]), seed: 2)
                let x = try Tensor<Float>(shape: [50, d], scalars: BijectionChecker.randomPoints(50, d, seed: 5, scale: 1.2).map { Float($0) })
                let (z, ld) = try flow.forward(x)
                XCTAssertEqual(z, x, "\(extra) D=\(d)")
                XCTAssertEqual(ld, [Double](repeating: 0, count: 50))
                let (back, ldi) = try flow.inverse(x)
                XCTAssertEqual(back, x, "\(extra) D=\(d)")
                XCTAssertEqual(ldi, [Double](repeating: 0, count: 50))
            }
        }
    }

    func testSpecValidationAndResolvedConfig() throws {
        func fails(_ extra: [String: JSONValue], _ fragment: String, line: UInt = #line) {
            var config: [String: JSONValue] = ["type": .string("spline_coupling")]
            for (k, v) in extra { config[k] = v }
            XCTAssertThrowsError(try NormalizingFlow<Float>(spec: Fixtures.singleLayer(config, shape: [4]), seed: 0), line: line) {
                XCTAssertTrue("\($0)".contains(fragment), "\($0)", line: line)
            }
        }
        fails(["bins": .number(0)], "bins")
        fails(["bins": .number(2.5)], "bins")
        fails(["bound": .number(0)], "bound")
        fails(["bound": .number(-1)], "bound")
        fails(["min_bin_width": .number(0.2)], "min_bin_width")   // 0.2 · 8 bins ≥ 1
        fails(["min_bin_height": .number(0)], "min_bin_height")
        fails(["min_derivative": .number(1)], "min_derivative")
        fails(["clamp": .number(1)], "clamp")
        fails(["activation": .string("gelu")], "gelu")

        let flow = try NormalizingFlow<Float>(spec: Fixtures.singleLayer(["type": .string("spline_coupling"), "hidden": JSONValue([4])],
                                                                     shape: [5]), seed: 0)
        let layer = try XCTUnwrap(flow.layers[0] as? SplineCoupling<Float>)
        let config = layer.config
        XCTAssertEqual(config["mask"], JSONValue([1, 1, 0, 0, 0]))
        XCTAssertEqual(config["bins"], .number(8))
        XCTAssertEqual(config["bound"], .number(3))
        XCTAssertEqual(config["min_bin_width"], .number(1e-3))
        XCTAssertEqual(config["min_bin_height"], .number(1e-3))
        XCTAssertEqual(config["min_derivative"], .number(1e-3))
        XCTAssertEqual(Set(config.keys), Set(SplineCoupling<Float>.hyperParameters.map(\.name) + ["type"]))
        // Conditioner 2 → 4 → 3·(3·8 − 1).
        XCTAssertEqual(flow.parameters.map(\.shape), [[4, 2], [4], [69, 4], [69]])
    }

    func testNSFPresetStructureAndFileRoundTrip() throws {
        let flow = try NormalizingFlow<Float>.nsf(dim: 4, layers: 3, hidden: [6], bins: 5, bound: 2.5,
                                                  actnorm: true, mixing: "lu", seed: 3)
        XCTAssertEqual(flow.layers.map { type(of: $0).typeName },
                       ["actnorm", "spline_coupling", "lu_linear", "actnorm", "spline_coupling", "lu_linear",
                        "actnorm", "spline_coupling"])
        let plain = try NormalizingFlow<Float>.nsf(dim: 4)
        XCTAssertEqual(plain.layers.count, 8)
        let masks = plain.spec["layers"]!.arrayValue!.map { $0["mask"]!.intArrayValue! }
        XCTAssertEqual(masks[0], [1, 1, 0, 0])
        XCTAssertEqual(masks[1], [0, 0, 1, 1])
        XCTAssertEqual(plain.spec["layers"]!.arrayValue![0]["bins"], .number(8))
        // 8 couplings of 2 → 64 → 64 → 2·23.
        XCTAssertEqual(plain.parameterCount, 8 * ((2 * 64 + 64) + (64 * 64 + 64) + (64 * 46 + 46)))
        XCTAssertThrowsError(try NormalizingFlow<Float>(specJSON: #"{"preset": "nsf", "dim": 2, "clamp": 3}"#, seed: 0))

        BijectionChecker.perturb(flow.parameters, scale: 0.5, seed: 1)
        flow.transform.parametersDidChange()
        let image = try flow.fileImage()
        let loaded = try NormalizingFlow<Float>.load(image: image)
        XCTAssertEqual(loaded.spec, flow.spec)
        for (a, b) in zip(flow.parameters, loaded.parameters) {
            XCTAssertEqual(a.name, b.name)
            XCTAssertEqual(a.shape, b.shape)
            XCTAssertEqual(a.array.map(\.bitPattern), b.array.map(\.bitPattern), a.name)
        }
        let x = flow.sample(200, seed: 1)
        XCTAssertEqual(try flow.logProb(x), try loaded.logProb(x))
        // The documented schema: hyper-parameters as attributes, the mask as a dataset.
        let file = try image.withUnsafeBytes { try HDF5File.openImage($0) }
        let group = try file.root.openGroup("layers").openGroup("0001")
        XCTAssertEqual(try group.stringAttribute("type"), "spline_coupling")
        XCTAssertEqual(try group.intAttribute("bins"), 5)
        XCTAssertEqual(try group.doubleAttribute("bound"), 2.5)
        XCTAssertEqual(try group.doubleAttribute("min_bin_width"), 1e-3)
        XCTAssertEqual(try group.doubleAttribute("min_bin_height"), 1e-3)
        XCTAssertEqual(try group.doubleAttribute("min_derivative"), 1e-3)
        XCTAssertEqual(try group.intsAttribute("hidden"), [6])
        XCTAssertEqual(try group.readInt64s("mask").0, [1, 1, 0, 0])
        XCTAssertEqual(try group.datasetShape("weight_1"), [2 * 14, 6])
        XCTAssertEqual(try group.datasetShape("bias_1"), [2 * 14])
    }
}
