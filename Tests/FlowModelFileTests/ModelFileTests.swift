@testable import FlowCore
@testable import FlowHDF5
@testable import FlowModelFile
import FlowTestSupport
import Glibc
import XCTest

final class ModelFileTests: XCTestCase {
    var temporary: TemporaryDirectory!
    var directory: String { temporary.path }

    override func setUpWithError() throws { temporary = try TemporaryDirectory(prefix: "swiftflows-tests") }

    override func tearDown() { temporary?.remove() }

    /// A flow with every layer type and non-trivial parameters.
    func everyLayerFlow() throws -> NormalizingFlow<Float> {
        let flow = try NormalizingFlow<Float>(specJSON: #"""
        {"event_shape": [5], "base": {"type": "diagonal_normal"},
         "layers": [{"type": "actnorm", "initialized": true},
                    {"type": "affine_coupling", "mask": "alternating", "hidden": [7], "clamp": 3},
                    {"type": "permutation", "kind": "random"}, {"type": "lu_linear"},
                    {"type": "additive_coupling", "invert_mask": true, "hidden": [3, 4], "activation": "tanh"}]}
        """#, seed: 4)
        BijectionChecker.perturb(flow.parameters, scale: 0.3, seed: 1)
        flow.transform.parametersDidChange()
        return flow
    }

    func testSaveThenLoadIsBitExact() throws {
        let flow = try everyLayerFlow()
        let path = directory + "/model.h5"
        try flow.save(to: path)
        let loaded = try NormalizingFlow<Float>.load(path: path)
        XCTAssertEqual(loaded.spec, flow.spec)
        for (a, b) in zip(flow.parameters, loaded.parameters) {
            XCTAssertEqual(a.array.map(\.bitPattern), b.array.map(\.bitPattern), a.name)
        }
        let x = flow.sample(100, seed: 1)
        XCTAssertEqual(try flow.logProb(x), try loaded.logProb(x))
        // In-memory images too; and saving again reproduces the same parameters.
        let fromImage = try NormalizingFlow<Float>.load(image: try loaded.fileImage())
        XCTAssertEqual(try fromImage.logProb(x), try flow.logProb(x))
        XCTAssertEqual((fromImage.layers[0] as? ActNorm<Float>)?.isInitialized, true)
    }

    /// A conditional flow (context standardisation and embedding, conditional coupling and
    /// autoregressive layers) and an autoregressive one round trip bit for bit; the context
    /// group and each layer's `context_features` are in the file.
    func testConditionalAndAutoregressiveFlowsRoundTripBitExact() throws {
        let flow = try NormalizingFlow<Float>(specJSON: #"""
        {"event_shape": [3], "context": {"size": 2, "mean": [0.5, -1], "scale": [2, 0.25],
                                         "embedding": {"hidden": [5], "activation": "tanh", "features": 4}},
         "layers": [{"type": "affine_coupling", "hidden": [6]}, {"type": "affine_autoregressive", "order": "random",
                     "hidden": [7, 7], "direction": "iaf"}, {"type": "spline_autoregressive", "hidden": [6], "bins": 3},
                    {"type": "permutation", "kind": "reverse"}]}
        """#, seed: 2)
        BijectionChecker.perturb(flow.parameters, scale: 0.3, seed: 3)
        flow.parametersDidChange()
        let path = directory + "/conditional.h5"
        try flow.save(to: path)
        let loaded = try NormalizingFlow<Float>.load(path: path)
        XCTAssertEqual(loaded.spec, flow.spec)
        XCTAssertEqual(loaded.contextSize, 2)
        XCTAssertEqual(loaded.parameters.count, flow.parameters.count)
        for (a, b) in zip(flow.parameters, loaded.parameters) {
            XCTAssertEqual(a.array.map(\.bitPattern), b.array.map(\.bitPattern), a.name)
        }
        let n = 50
        let c = BijectionChecker.randomPoints(n, 2, seed: 5).map(Float.init)
        var x = [Float](repeating: 0, count: n * 3), a = [Double](repeating: 0, count: n), b = a
        c.withUnsafeBufferPointer { cp in
            flow.sample(count: n, seed: 1, context: cp.baseAddress, into: &x)
            x.withUnsafeBufferPointer { xp in
                flow.logProb(xp.baseAddress!, count: n, context: cp.baseAddress, into: &a)
                loaded.logProb(xp.baseAddress!, count: n, context: cp.baseAddress, into: &b)
            }
        }
        XCTAssertEqual(a, b)
        let file = try HDF5File.open(path: path)
        defer { file.close() }
        let root = try file.root
        XCTAssertTrue(root.isGroup("context"))
        XCTAssertEqual(try root.openGroup("context").intAttribute("size"), 2)
        XCTAssertEqual(try root.openGroup("layers").openGroup("0000").intAttribute("context_features"), 4)
        XCTAssertEqual(try root.intsAttribute("format_version", maxCount: 2), [1, 1])
    }

    /// Residual MADE layers (nflows' residual MADE, with and without a context, MAF and IAF,
    /// affine and spline) round trip bit for bit beside a plain MADE layer; the file holds
    /// `residual_blocks`, `hidden = [H]` and the documented datasets, the plain layer neither of
    /// the new names; inconsistent or hostile residual settings are refused with a message.
    func testResidualMADERoundTripsBitExact() throws {
        let flow = try NormalizingFlow<Float>(specJSON: #"""
        {"event_shape": [3], "context": {"size": 2, "mean": [0.5, -1], "scale": [2, 0.25]},
         "layers": [{"type": "affine_autoregressive", "order": "random", "hidden": [6, 6], "residual_blocks": 2},
                    {"type": "spline_autoregressive", "hidden": [5], "residual_blocks": 1, "bins": 3, "direction": "iaf",
                     "activation": "tanh"},
                    {"type": "affine_autoregressive", "hidden": [4], "scale": "sigmoid"}]}
        """#, seed: 2)
        BijectionChecker.perturb(flow.parameters, scale: 0.3, seed: 3)
        flow.parametersDidChange()
        let path = directory + "/residual.h5"
        try flow.save(to: path)
        let loaded = try NormalizingFlow<Float>.load(path: path)
        XCTAssertEqual(loaded.spec, flow.spec)
        XCTAssertEqual(loaded.parameters.map(\.name), flow.parameters.map(\.name))
        for (a, b) in zip(flow.parameters, loaded.parameters) {
            XCTAssertEqual(a.array.map(\.bitPattern), b.array.map(\.bitPattern), a.name)
        }
        let n = 40
        let c = BijectionChecker.randomPoints(n, 2, seed: 5).map(Float.init)
        var x = [Float](repeating: 0, count: n * 3), y = x, a = [Double](repeating: 0, count: n), b = a
        c.withUnsafeBufferPointer { cp in
            flow.sample(count: n, seed: 1, context: cp.baseAddress, into: &x)
            loaded.sample(count: n, seed: 1, context: cp.baseAddress, into: &y)
            x.withUnsafeBufferPointer { xp in
                flow.logProb(xp.baseAddress!, count: n, context: cp.baseAddress, into: &a)
                loaded.logProb(xp.baseAddress!, count: n, context: cp.baseAddress, into: &b)
            }
        }
        XCTAssertEqual(x, y)
        XCTAssertEqual(a, b)
        XCTAssertTrue(a.allSatisfy(\.isFinite))
        do {
            let file = try HDF5File.open(path: path)
            defer { file.close() }
            let layers = try file.root.openGroup("layers")
            let first = try layers.openGroup("0000"), second = try layers.openGroup("0001"), plain = try layers.openGroup("0002")
            XCTAssertEqual(try first.intAttribute("residual_blocks"), 2)
            XCTAssertEqual(try first.intsAttribute("hidden"), [6])
            XCTAssertEqual(try first.readInt64s("hidden_degrees").1, [6])
            XCTAssertEqual(try first.readFloats("initial_weight").1, [6, 3])
            XCTAssertEqual(try first.readFloats("context_weight").1, [6, 2])
            XCTAssertEqual(try first.readFloats("block_1_weight_1").1, [6, 6])
            XCTAssertEqual(try first.readFloats("block_1_context_weight").1, [6, 2])
            XCTAssertEqual(try first.readFloats("final_weight").1, [6, 6])
            XCTAssertEqual(try second.intAttribute("residual_blocks"), 1)
            XCTAssertEqual(try second.readFloats("final_bias").1, [3 * (3 * 3 - 1)])
            XCTAssertFalse(second.isDataset("block_1_weight_0"))
            XCTAssertFalse(plain.hasAttribute("residual_blocks"))
            XCTAssertTrue(plain.isDataset("weight_0") && !plain.isDataset("initial_weight"))
            XCTAssertFalse(first.isDataset("weight_0"))
        }
        try expectLoadError({ try $0.openGroup("layers").openGroup("0000").setAttribute("residual_blocks", int: 3) }, {
            if case .format(let m) = $0 { return m.contains("/layers/0000/block_2_weight_0") }; return false
        }, "more blocks than datasets", of: flow)
        try expectLoadError({ try $0.openGroup("layers").openGroup("0000").setAttribute("residual_blocks", int: 1 << 40) }, {
            if case .format(let m) = $0 { return m.contains("residual_blocks must be an integer in 0...32") }; return false
        }, "hostile block count", of: flow)
        try expectLoadError({ try $0.openGroup("layers").openGroup("0000").setAttribute("residual_blocks", int: 0) }, {
            if case .format(let m) = $0 { return m.contains("/layers/0000/weight_0") }; return false
        }, "residual datasets read as a plain MADE", of: flow)
        try expectLoadError({ try $0.openGroup("layers").openGroup("0001").setAttribute("hidden", ints: [5, 4]) }, {
            if case .format(let m) = $0 { return m.contains("equal hidden widths") }; return false
        }, "unequal widths", of: flow)
        try expectLoadError({ try $0.openGroup("layers").openGroup("0002").setAttribute("residual_blocks", int: 1) }, {
            if case .format(let m) = $0 { return m.contains("/layers/0002/initial_weight") }; return false
        }, "a plain MADE's datasets read as a residual one", of: flow)
    }

    /// A conditional base (with a context embedding and a MADE layer) round trips bit for bit:
    /// spec, parameters, densities and samples; `/base` holds `type`, `hidden`, `activation`
    /// and the network's datasets; saving again gives the same bytes.
    func testConditionalBaseRoundTripsBitExact() throws {
        let flow = try NormalizingFlow<Float>(specJSON: #"""
        {"event_shape": [3], "context": {"size": 2, "mean": [0.5, -1], "scale": [2, 0.25],
                                         "embedding": {"hidden": [5], "activation": "tanh", "features": 4}},
         "base": {"type": "conditional_diagonal_normal", "hidden": [5], "activation": "tanh"},
         "layers": [{"type": "affine_autoregressive", "hidden": [7], "order": "random"}]}
        """#, seed: 2)
        BijectionChecker.perturb(flow.parameters, scale: 0.3, seed: 3)
        flow.parametersDidChange()
        let path = directory + "/conditional-base.h5"
        try flow.save(to: path)
        let loaded = try NormalizingFlow<Float>.load(path: path)
        XCTAssertEqual(loaded.spec, flow.spec)
        XCTAssertTrue(loaded.base is ConditionalDiagonalNormal<Float>)
        XCTAssertEqual(loaded.parameters.map(\.name), flow.parameters.map(\.name))
        for (a, b) in zip(flow.parameters, loaded.parameters) {
            XCTAssertEqual(a.array.map(\.bitPattern), b.array.map(\.bitPattern), a.name)
        }
        let n = 300
        let c = BijectionChecker.randomPoints(n, 2, seed: 5).map(Float.init)
        var x = [Float](repeating: 0, count: n * 3), y = x
        var a = [Double](repeating: 0, count: n), b = a, sa = a, sb = a
        c.withUnsafeBufferPointer { cp in
            flow.sample(count: n, seed: 1, context: cp.baseAddress, into: &x, logProb: &sa)
            loaded.sample(count: n, seed: 1, context: cp.baseAddress, into: &y, logProb: &sb)
            x.withUnsafeBufferPointer { xp in
                flow.logProb(xp.baseAddress!, count: n, context: cp.baseAddress, into: &a)
                loaded.logProb(xp.baseAddress!, count: n, context: cp.baseAddress, into: &b)
            }
        }
        XCTAssertEqual(a, b)
        XCTAssertEqual(x.map(\.bitPattern), y.map(\.bitPattern))
        XCTAssertEqual(sa, sb)
        XCTAssertEqual(try loaded.fileImage(), try flow.fileImage())
        let file = try HDF5File.open(path: path)
        defer { file.close() }
        let root = try file.root
        let base = try root.openGroup("base")
        XCTAssertEqual(try base.stringAttribute("type"), "conditional_diagonal_normal")
        XCTAssertEqual(try base.intsAttribute("hidden"), [5])
        XCTAssertEqual(try base.stringAttribute("activation"), "tanh")
        XCTAssertEqual(try base.readFloats("weight_0").shape, [5, 4])
        XCTAssertEqual(try base.readFloats("bias_1").shape, [6])
        XCTAssertEqual(try root.intsAttribute("format_version", maxCount: 2), [1, 1])
    }

    /// A file whose conditional base lacks a setting, a dataset or the context it reads is
    /// refused, naming what is missing; an empty `hidden` (one linear map) loads.
    func testConditionalBaseFilesMissingPiecesAreRefused() throws {
        let flow = try NormalizingFlow<Float>(specJSON: #"""
        {"event_shape": [2], "context": {"size": 3}, "base": {"type": "conditional_diagonal_normal", "hidden": [4]},
         "layers": [{"type": "affine_coupling", "hidden": [3]}]}
        """#, seed: 1)
        BijectionChecker.perturb(flow.parameters, scale: 0.3, seed: 2)
        flow.parametersDidChange()
        let image = try flow.fileImage()
        func rewritten(omitting: Set<String>, _ edit: (HDF5Group) throws -> Void = { _ in }) throws -> [UInt8] {
            let original = try image.withUnsafeBytes { try HDF5File.openImage($0) }
            let copy = try HDF5File.createInMemory()
            try ModelFileTests.copyModel(from: try original.root, to: try copy.root, omitting: omitting)
            try edit(try copy.root)
            return try copy.fileImage()
        }
        let copy = try NormalizingFlow<Float>.load(image: try rewritten(omitting: []))
        XCTAssertEqual(copy.spec, flow.spec)
        for (omitted, fragments) in [
            ("/base/@hidden", ["/base", "hidden"]), ("/base/@activation", ["/base", "activation"]),
            ("/context", ["/base", "no /context group"]), ("/base/weight_1", ["missing dataset /base/weight_1", "[4, 4]"]),
        ] {
            ErrorAssertions.assertThrows(fragments, ErrorAssertions.isFormat) {
                _ = try NormalizingFlow<Float>.load(image: try rewritten(omitting: [omitted]))
            }
        }
        ErrorAssertions.assertThrows(["/base/weight_0", "[7, 3]"], ErrorAssertions.isFormat) {
            _ = try NormalizingFlow<Float>.load(image: try rewritten(omitting: []) { try $0.openGroup("base").setAttribute("hidden", ints: [7]) })
        }
        ErrorAssertions.assertThrows(["/base", "hidden width"], ErrorAssertions.isFormat) {
            _ = try NormalizingFlow<Float>.load(image: try rewritten(omitting: []) { try $0.openGroup("base").setAttribute("hidden", ints: [-2]) })
        }
        // A linear base network (hidden = []) is stored as an empty attribute and loads.
        let linear = try NormalizingFlow<Float>(specJSON: #"{"event_shape": [2], "context": {"size": 1}, "base": "conditional_diagonal_normal"}"#,
                                                seed: 0)
        XCTAssertEqual(try NormalizingFlow<Float>.load(image: try linear.fileImage()).spec, linear.spec)
    }

    /// Training a conditional base, stopped with a checkpoint and resumed from the file, repeats
    /// the uninterrupted run exactly (the base's parameters and optimiser state are in the
    /// checkpoint, in ``NormalizingFlow/parameters`` order).
    func testResumingAConditionalBaseRunRepeatsItExactly() throws {
        let spec = #"""
        {"event_shape": [2], "context": {"size": 1, "embedding": {"hidden": [3], "features": 2}},
         "base": {"type": "conditional_diagonal_normal", "hidden": [4]}, "layers": [{"type": "affine_coupling", "hidden": [4]}]}
        """#
        let rows = 600
        let c = BijectionChecker.randomPoints(rows, 1, seed: 1).map(Float.init)
        let x = zip(BijectionChecker.randomPoints(rows, 2, seed: 2), (0..<(2 * rows)).map { c[$0 / 2] }).map { Float($0 * 0.5) + 2 * $1 }
        var o = TrainingOptions()
        o.epochs = 3
        o.batchSize = 100
        o.optimizer.learningRate = 1e-2
        func trainer(_ flow: NormalizingFlow<Float>, _ body: (Trainer<Float>) throws -> Void) throws {
            try x.withUnsafeBufferPointer { xp in
                try c.withUnsafeBufferPointer { try body(try Trainer(flow: flow, data: xp, rows: rows, context: $0, options: o)) }
            }
        }
        let full = try NormalizingFlow<Float>(specJSON: spec, seed: 3)
        var fullHistory: [EpochRecord] = []
        try trainer(full) { fullHistory = try $0.run() }
        let path = directory + "/conditional-base-checkpoint.h5"
        try trainer(try NormalizingFlow<Float>(specJSON: spec, seed: 3)) { t in
            t.saveCheckpoints(to: path)
            XCTAssertThrowsError(try t.run { event in
                if case .epoch(let r) = event { return r.epoch < 1 }
                return true
            })
        }
        let resumed = try x.withUnsafeBufferPointer { xp in
            try c.withUnsafeBufferPointer { try Trainer.resume(checkpoint: path, data: xp, rows: rows, context: $0) }
        }
        XCTAssertTrue(resumed.flow.base is ConditionalDiagonalNormal<Float>)
        let resumedHistory = try resumed.run()
        XCTAssertEqual(resumedHistory.map(\.trainNLL), fullHistory.map(\.trainNLL))
        XCTAssertEqual(resumedHistory.map(\.validationNLL), fullHistory.map(\.validationNLL))
        for (a, b) in zip(full.parameters, resumed.flow.parameters) { XCTAssertEqual(a.array, b.array, a.name) }
    }

    func testSavingReplacesAnExistingFileAtomically() throws {
        let path = directory + "/model.h5"
        try NormalizingFlow<Float>.realNVP(dim: 2, layers: 2, seed: 1).save(to: path)
        let second = try everyLayerFlow()
        try second.save(to: path)
        XCTAssertEqual(try NormalizingFlow<Float>.load(path: path).eventShape, [5])
        var names: [String] = []
        if let d = opendir(directory) {
            while let e = readdir(d) {
                names.append(withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) })
            }
            closedir(d)
        }
        XCTAssertEqual(names.filter { $0 != "." && $0 != ".." }, ["model.h5"])
        XCTAssertThrowsError(try second.save(to: directory + "/missing/dir/model.h5")) { error in
            guard case FlowError.io = error else { return XCTFail("\(error)") }
        }
    }

    /// Copies a saved model with the HDF5 wrapper, applies `edit`, and expects a specific error
    /// when loading the result.
    func expectLoadError(_ edit: (HDF5Group) throws -> Void, _ check: (FlowError) -> Bool, _ label: String,
                         of flow: NormalizingFlow<Float>? = nil) throws {
        let image = try (flow ?? everyLayerFlow()).fileImage()
        let original = try image.withUnsafeBytes { try HDF5File.openImage($0) }
        let rewritten = try HDF5File.createInMemory()
        try ModelFileTests.copyModel(from: try original.root, to: try rewritten.root)
        try edit(try rewritten.root)
        let bytes = try rewritten.fileImage()
        XCTAssertThrowsError(try NormalizingFlow<Float>.load(image: bytes), label) { error in
            guard let e = error as? FlowError else { return XCTFail("\(label): \(error)") }
            XCTAssertTrue(check(e), "\(label): \(e)")
        }
    }

    /// Copies the documented structure of a model file (attributes, groups, datasets), leaving
    /// out the objects whose paths are in `omitting` (`"/base/@hidden"` for an attribute).
    static func copyModel(from src: HDF5Group, to dst: HDF5Group, omitting: Set<String> = []) throws {
        func child(_ name: String) -> String { src.path == "/" ? "/" + name : src.path + "/" + name }
        for name in try src.attributeNames() where !omitting.contains(child("@" + name)) {
            if let s = try? src.stringAttribute(name) { try dst.setAttribute(name, string: s) }
            else if let v = try? src.intsAttribute(name) {
                if name == "format_version" || name == "event_shape" || name == "hidden" { try dst.setAttribute(name, ints: v) }
                else { try dst.setAttribute(name, int: v[0]) }
            } else { try dst.setAttribute(name, double: try src.doubleAttribute(name)) }
        }
        for name in try src.childNames() where !omitting.contains(child(name)) {
            if src.isGroup(name) {
                try copyModel(from: try src.openGroup(name), to: try dst.createGroup(name), omitting: omitting)
            } else if let (ints, shape) = try? src.readInt64s(name) {
                try dst.writeDataset(name, int64s: ints, shape: shape)
            } else {
                let (v, shape) = try src.readFloats(name)
                try v.withUnsafeBufferPointer { try dst.writeDataset(name, floats: $0, shape: shape) }
            }
        }
    }

    func testCopyOfAValidModelLoads() throws {
        let source = try everyLayerFlow()
        let image = try source.fileImage()
        let original = try image.withUnsafeBytes { try HDF5File.openImage($0) }
        let copy = try HDF5File.createInMemory()
        try ModelFileTests.copyModel(from: try original.root, to: try copy.root)
        let loaded = try NormalizingFlow<Float>.load(image: try copy.fileImage())
        let x = source.sample(10, seed: 2)
        XCTAssertEqual(try loaded.logProb(x), try source.logProb(x))
    }

    func testBrokenFilesGiveSpecificErrors() throws {
        try expectLoadError({ try $0.setAttribute("format_version", ints: [2, 0]) }, {
            if case .unsupportedVersion(let m) = $0 { return m.contains("2.0") }; return false
        }, "newer major version")
        try expectLoadError({ try $0.setAttribute("format", string: "something-else") }, {
            if case .format(let m) = $0 { return m.contains("something-else") }; return false
        }, "wrong format name")
        try expectLoadError({ try $0.openGroup("layers").openGroup("0001").setAttribute("type", string: "spline") }, {
            if case .unknownType(let m) = $0 { return m.contains("spline") && m.contains("/layers/0001") }; return false
        }, "unknown layer type")
        try expectLoadError({ try $0.openGroup("base").setAttribute("type", string: "cauchy") }, {
            if case .unknownType(let m) = $0 { return m.contains("cauchy") }; return false
        }, "unknown base type")
        try expectLoadError({ try $0.openGroup("layers").setAttribute("count", int: 6) }, {
            if case .format(let m) = $0 { return m.contains("missing 0005") }; return false
        }, "missing layer group")
        try expectLoadError({ _ = try $0.openGroup("layers").createGroup("0009") }, {
            if case .format(let m) = $0 { return m.contains("unexpected 0009") }; return false
        }, "extra layer group")
        try expectLoadError({ try $0.openGroup("layers").openGroup("0001").setAttribute("hidden", ints: [7, 3]) }, {
            if case .format(let m) = $0 { return m.contains("weight_1") && m.contains("[3, 7]") }; return false
        }, "hidden widths inconsistent with the datasets")
        try expectLoadError({ _ = try $0.openGroup("layers").createGroup("tmp") }, {
            if case .format(let m) = $0 { return m.contains("unexpected tmp") }; return false
        }, "stray group under /layers")
        try expectLoadError({ g in
            try g.openGroup("layers").openGroup("0002").setAttribute("type", string: "actnorm")
        }, {
            if case .format(let m) = $0 { return m.contains("/layers/0002/bias") }; return false
        }, "layer type changed without its datasets")
    }

    func testNonFiniteParametersAreRefused() throws {
        let source = try everyLayerFlow()
        (source.layers[0] as! ActNorm<Float>).bias.values[2] = .nan
        XCTAssertThrowsError(try NormalizingFlow<Float>.load(image: try source.fileImage())) { error in
            guard case FlowError.numerical(let m) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("/layers/0000/bias") && m.contains("NaN"), m)
        }
    }

    func testGarbageImagesAreFormatErrorsAndTruncatedOnesCorrupt() throws {
        let image = try everyLayerFlow().fileImage()
        for bytes in [Array("not an hdf5 file".utf8), [UInt8](repeating: 0, count: 4096)] {
            XCTAssertThrowsError(try NormalizingFlow<Float>.load(image: bytes)) { error in
                guard case FlowError.format = error else { return XCTFail("\(error)") }
            }
        }
        XCTAssertThrowsError(try NormalizingFlow<Float>.load(image: Array(image.prefix(image.count / 2)))) { error in
            guard case FlowError.corrupt(let m) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("truncated"), m)
        }
        XCTAssertThrowsError(try NormalizingFlow<Float>.load(path: directory + "/absent.h5")) { error in
            guard case FlowError.io = error else { return XCTFail("\(error)") }
        }
    }
}
