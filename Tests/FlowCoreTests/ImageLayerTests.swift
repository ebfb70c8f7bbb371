@testable import FlowCore
@testable import FlowModelFile
import FlowTestSupport
import XCTest

/// Image layers (squeeze, 1×1 convolutions, convolutional couplings, multi-scale split,
/// preprocessing) through the shared checkers, plus the image presets' gradients.
final class ImageLayerTests: XCTestCase {
    private func flow<T: FlowScalar>(_ layers: [[String: JSONValue]], shape: [Int], seed: UInt64 = 3,
                                     _: T.Type = T.self) throws -> NormalizingFlow<T> {
        try NormalizingFlow<T>(spec: .object(["event_shape": JSONValue(shape), "layers": .array(layers.map(JSONValue.object))]),
                               seed: seed)
    }

    private func perturbed<T: FlowScalar>(_ f: NormalizingFlow<T>, scale: Double = 0.2, seed: UInt64 = 5) -> NormalizingFlow<T> {
        BijectionChecker.perturb(f.parameters, scale: scale, seed: seed)
        f.transform.parametersDidChange()
        return f
    }

    private func t(_ s: String) -> JSONValue { .string(s) }

    private var cases: [(String, [[String: JSONValue]], [Int])] { Fixtures.imageLayerCases }

    func testEveryImageLayerObeysTheBijectionContract() throws {
        for (name, layers, shape) in cases {
            let f = perturbed(try flow(layers, shape: shape, Double.self))
            BijectionChecker.check(f.transform, points: 3, name)
        }
    }

    func testFloatRoundTripsAndIdentityAtInitialisation() throws {
        for (name, layers, shape) in cases {
            let size = shape.reduce(1, *)
            let x = try Tensor<Float>(shape: [50] + shape, scalars: BijectionChecker.randomPoints(50, size, seed: 2).map { Float($0) })
            let fresh = try flow(layers, shape: shape, Float.self)
            let type = layers[0]["type"]?.stringValue ?? ""
            if type == "conv_affine_coupling" {
                // The coupling network's last convolution starts at zero: the identity.
                let (z, ld) = try fresh.forward(x)
                XCTAssertEqual(z.scalars, x.scalars, "\(name) is not the identity at initialisation")
                XCTAssertEqual(ld, [Double](repeating: 0, count: 50), name)
            }
            let f = perturbed(fresh)
            let (z, ldf) = try f.forward(x)
            let (back, ldi) = try f.inverse(try z.reshaped([50] + f.eventShape))
            XCTAssertLessThan(BijectionChecker.maxRelativeError(back.scalars, x.scalars), 2e-5, name)
            for i in 0..<50 { XCTAssertEqual(ldf[i], -ldi[i], accuracy: 1e-4 * max(1, abs(ldf[i])), name) }
        }
    }

    /// A training pass that keeps the layers' tapes (``Bijection/tapeBytes(count:)``: image
    /// couplings, splits) gives bit-identical outputs and gradients to one whose backward pass
    /// recomputes them, in Float and Double.
    func testTapedTrainingPassMatchesRecomputation() throws {
        let check = TapeChecker.self
        for (name, layers, shape) in cases where name.hasPrefix("coupling") || name.hasPrefix("split") {
            check.assertTapedPassMatchesRecomputation(perturbed(try flow(layers, shape: shape, Double.self)), name + " (Double)")
            check.assertTapedPassMatchesRecomputation(perturbed(try flow(layers, shape: shape, Float.self)), name + " (Float)")
        }
        check.assertTapedPassMatchesRecomputation(
            perturbed(try NormalizingFlow<Float>.glow(shape: [1, 8, 8], levels: 2, steps: 2, hidden: 16, seed: 1)), "glow width 16")
        check.assertTapedPassMatchesRecomputation(
            perturbed(try NormalizingFlow<Double>.glow(shape: [3, 4, 4], levels: 2, steps: 1, hidden: 5, seed: 2)), "glow (Double)")
    }

    func testSqueezeUsesPixelUnshuffleChannelOrder() throws {
        let f = try flow([["type": t("squeeze")]], shape: [2, 4, 4], Double.self)
        let x = (0..<32).map(Double.init)
        let (z, ld) = BijectionChecker.apply(f.transform, x, count: 1, inverse: false)
        XCTAssertEqual(ld, [0])
        XCTAssertEqual(f.layers[0].outputShape, [8, 2, 2])
        for c in 0..<2 {
            for dy in 0..<2 {
                for dx in 0..<2 {
                    for i in 0..<2 {
                        for j in 0..<2 {
                            let out = z[(4 * c + 2 * dy + dx) * 4 + i * 2 + j]
                            XCTAssertEqual(out, x[c * 16 + (2 * i + dy) * 4 + (2 * j + dx)])
                        }
                    }
                }
            }
        }
    }

    func testInvertibleConvLogDetIsPixelsTimesLogAbsDet() throws {
        let f = perturbed(try flow([["type": t("invertible_conv1x1"), "lu": .bool(false)]], shape: [3, 2, 5], Double.self), scale: 0.5)
        let w = f.parameters[0].array
        let expected = 10 * (DenseLinearAlgebra.logAbsDeterminant(w, 3)?.logAbs ?? .nan)
        let (_, ld) = BijectionChecker.apply(f.transform, BijectionChecker.randomPoints(1, 30, seed: 1), count: 1, inverse: false)
        XCTAssertEqual(ld[0], expected, accuracy: 1e-12)
    }

    /// Float runs the 1×1 convolution's channel mixing and weight gradient through the C kernels
    /// (positions in multiples of 8, the rest in scalar loops), Double plain loops: outputs,
    /// log-dets, inverses and NLL gradients agree to float rounding, for planes of 16 positions
    /// (vectors only), 9 and 25 (vectors and a tail) and 4 (tail only), LU and plain weights.
    func testFloatInvertibleConvAgreesWithDouble() throws {
        for (shape, lu) in [([3, 4, 4], true), ([5, 3, 3], false), ([2, 5, 5], true), ([4, 2, 2], true)] {
            let name = "\(shape) lu \(lu)", n = 40, size = shape.reduce(1, *)
            let double = perturbed(try flow([["type": t("invertible_conv1x1"), "lu": .bool(lu)]], shape: shape, Double.self),
                                   scale: 0.5)
            let single = try double.converted(to: Float.self)
            let x = BijectionChecker.randomPoints(n, size, seed: 4), xf = x.map { Float($0) }
            let (zD, ldD) = try double.forward(try Tensor(shape: [n] + shape, scalars: x))
            let (zF, ldF) = try single.forward(try Tensor(shape: [n] + shape, scalars: xf))
            XCTAssertLessThan(BijectionChecker.maxRelativeError(zF.scalars.map { Double($0) }, zD.scalars), 1e-5, name)
            for i in 0..<n { XCTAssertEqual(ldF[i], ldD[i], accuracy: 1e-4 * max(1, abs(ldD[i])), name) }
            let (backF, _) = try single.inverse(zF)
            XCTAssertLessThan(BijectionChecker.maxRelativeError(backF.scalars, xf), 1e-5, name + " inverse")
            double.zeroGradients()
            single.zeroGradients()
            let nllD = x.withUnsafeBufferPointer { double.accumulateNLLGradient($0.baseAddress!, count: n) }
            let nllF = xf.withUnsafeBufferPointer { single.accumulateNLLGradient($0.baseAddress!, count: n) }
            XCTAssertEqual(nllF, nllD, accuracy: 1e-4 * abs(nllD), name)
            for (pd, pf) in zip(double.parameters, single.parameters) {
                for i in 0..<pd.count {
                    XCTAssertEqual(Double(pf.gradient[i]), pd.gradient[i], accuracy: 1e-3 * max(1, abs(pd.gradient[i])),
                                   "\(name) ∂\(pd.name)[\(i)]")
                }
            }
        }
    }

    func testLogitMatchesItsFormulaAndFiniteDifferences() throws {
        let (_, logitLayers, logitShape) = Fixtures.unitIntervalLayerCases[0]
        let f = try flow(logitLayers, shape: logitShape, Double.self)
        var s = PhiloxStream(seed: 1, row: 0, stream: 9)
        let x = (0..<12).map { _ in s.nextUniform() }
        let (y, ld) = BijectionChecker.apply(f.transform, x, count: 2, inverse: false)
        for r in 0..<2 {
            var expected = 0.0
            for i in 0..<6 {
                let p = 0.05 + 0.9 * x[r * 6 + i]
                XCTAssertEqual(y[r * 6 + i], Double.log(p / (1 - p)), accuracy: 1e-12)
                expected += Double.log(0.9) - Double.log(p) - Double.log(1 - p)
            }
            XCTAssertEqual(ld[r], expected, accuracy: 1e-10)
            let fd = BijectionChecker.finiteDifferenceLogDet(f.transform, at: Array(x[(r * 6)..<(r * 6 + 6)]), step: 1e-6)
            XCTAssertEqual(ld[r], fd, accuracy: 1e-6)
        }
        let (back, ldi) = BijectionChecker.apply(f.transform, y, count: 2, inverse: true)
        for i in 0..<12 { XCTAssertEqual(back[i], x[i], accuracy: 1e-12) }
        XCTAssertEqual(ldi[0], -ld[0], accuracy: 1e-10)
        // Gradients, through a flow whose data live in (0, 1).
        let g = perturbed(try flow([["type": t("logit"), "alpha": 0.1], ["type": t("actnorm"), "initialized": .bool(true)]],
                                   shape: [6], Double.self))
        GradientChecker.check(g, data: x, count: 2, "logit")
    }

    func testSplitOutputLayoutIsNestedThenFactored() throws {
        // Standard prior, nested squeeze: the first half of the output is the squeezed kept
        // channels, the second half the factored channels unchanged.
        let f = try flow([["type": t("split"), "prior": t("standard"), "layers": .array([.object(["type": t("squeeze")])])]],
                         shape: [2, 2, 2], Double.self)
        XCTAssertEqual(f.layers[0].outputShape, [8])
        let x = (0..<8).map(Double.init)
        let (z, _) = BijectionChecker.apply(f.transform, x, count: 1, inverse: false)
        XCTAssertEqual(z, [0, 1, 2, 3, 4, 5, 6, 7])  // a 1×2×2 squeeze of channel 0 is [0,1,2,3]; channel 1 follows
        let g = try flow([["type": t("split"), "prior": t("standard"), "layers": .array([.object(["type": t("squeeze")])])]],
                         shape: [2, 4, 2], Double.self)
        let x2 = (0..<16).map(Double.init)
        let (z2, _) = BijectionChecker.apply(g.transform, x2, count: 1, inverse: false)
        XCTAssertEqual(Array(z2[8...]), Array(x2[8...]), "factored channel passes through")
        XCTAssertEqual(Set(z2[..<8]), Set(x2[..<8]), "kept channel is permuted by the nested squeeze")
    }

    func testNestedModelsRoundTripThroughFilesBitExactly() throws {
        let f = perturbed(try NormalizingFlow<Float>.glow(shape: [2, 8, 8], levels: 2, steps: 2, hidden: 8, bits: 5, seed: 4))
        let image = try f.fileImage()
        let g = try NormalizingFlow<Float>.load(image: image)
        XCTAssertEqual(g.spec, f.spec)
        for (a, b) in zip(f.parameters, g.parameters) { XCTAssertEqual(a.array, b.array, a.name) }
        XCTAssertEqual(try g.fileImage(), image)
        let x = try Tensor<Float>(shape: [7, 2, 8, 8], scalars: BijectionChecker.randomPoints(7, 128, seed: 1).map { Float(16 + 4 * $0) })
        XCTAssertEqual(try f.logProb(x), try g.logProb(x))
    }

    func testImagePresetsAreWellFormedAndTrainableEndToEnd() throws {
        let glow = try NormalizingFlow<Float>.glow(shape: [1, 8, 8], levels: 2, steps: 2, hidden: 8, seed: 1)
        XCTAssertEqual(glow.eventShape, [1, 8, 8])
        XCTAssertTrue(glow.needsDataDependentInitialization)
        let rnvp = try NormalizingFlow<Float>.realNVPImage(shape: [1, 8, 8], levels: 2, couplings: 2, hidden: 8, seed: 1)
        XCTAssertEqual(rnvp.layers.first.map { type(of: $0).typeName }, "dequantize")
        XCTAssertThrowsError(try NormalizingFlow<Float>.glow(shape: [1, 6, 6], levels: 2)) {
            XCTAssertTrue("\($0)".contains("divisible"), "\($0)")
        }
        // A short training run initialises every nested ActNorm and lowers the NLL.
        var s = PhiloxStream(seed: 3, row: 0, stream: 9)
        let data = (0..<(256 * 64)).map { i -> Float in Float(Int(s.nextUniform() * 4) + (i % 8 < 4 ? 200 : 20)) }
        var o = TrainingOptions()
        o.epochs = 3
        o.batchSize = 64
        o.optimizer.learningRate = 3e-3
        o.validationFraction = 0
        let trainer = try data.withUnsafeBufferPointer { try Trainer(flow: glow, data: $0, rows: 256, options: o) }
        let history = try trainer.run()
        XCTAssertFalse(glow.needsDataDependentInitialization)
        XCTAssertLessThan(history.last!.trainNLL, history.first!.trainNLL)
    }

    func testGlowPreprocessingIsScaleOrLogit() throws {
        func types(_ f: NormalizingFlow<Float>) -> [String] { f.layers.prefix(3).map { type(of: $0).typeName } }
        let scaled = try NormalizingFlow<Float>.glow(shape: [1, 4, 4], levels: 1, steps: 1, hidden: 4)
        XCTAssertEqual(types(scaled), ["dequantize", "scale", "squeeze"])
        let logit = try NormalizingFlow<Float>.glow(shape: [1, 4, 4], levels: 1, steps: 1, hidden: 4, preprocess: "logit")
        XCTAssertEqual(types(logit), ["dequantize", "logit", "squeeze"])
        XCTAssertEqual((logit.layers[1] as? Logit<Float>)?.alpha, 1e-6)
        let custom = try NormalizingFlow<Float>.glow(shape: [1, 4, 4], levels: 1, steps: 1, hidden: 4, preprocess: "logit", alpha: 0.05)
        XCTAssertEqual((custom.layers[1] as? Logit<Float>)?.alpha, 0.05)
        // The logit's log-det enters the density: same parameters, different preprocessing,
        // different log-probabilities of the same integer levels.
        let x = try Tensor<Float>(shape: [3, 1, 4, 4], scalars: (0..<48).map { Float(($0 * 37) % 256) })
        XCTAssertNotEqual(try scaled.logProb(x), try logit.logProb(x))
        XCTAssertThrowsError(try NormalizingFlow<Float>.glow(shape: [1, 4, 4], levels: 1, preprocess: "sigmoid")) {
            XCTAssertTrue("\($0)".contains("\"preprocess\" must be"), "\($0)")
        }
        XCTAssertThrowsError(try NormalizingFlow<Float>.glow(shape: [1, 4, 4], levels: 1, alpha: 0.05)) {
            XCTAssertTrue("\($0)".contains("alpha"), "\($0)")
        }
    }

    func testTinyGlowAndRealNVPImagePassTheFullGradientCheck() throws {
        let glow = perturbed(try NormalizingFlow<Double>.glow(shape: [1, 4, 4], levels: 2, steps: 2, hidden: 4, bits: 3, seed: 2),
                             scale: 0.1)
        var s = PhiloxStream(seed: 4, row: 0, stream: 9)
        let levels = (0..<(5 * 16)).map { _ in s.nextUniform() * 8 }
        GradientChecker.check(glow, data: levels, count: 5, tolerance: 1e-5, maxPerParameter: 6, "tiny glow")
        let rnvp = perturbed(try NormalizingFlow<Double>.realNVPImage(shape: [1, 4, 4], levels: 2, couplings: 1, hidden: 3,
                                                                        bits: 3, seed: 2), scale: 0.1)
        GradientChecker.check(rnvp, data: levels, count: 5, tolerance: 1e-5, maxPerParameter: 6, "tiny realnvp_image")
    }
}
