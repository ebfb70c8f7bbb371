@testable import FlowCore
@testable import FlowModelFile
import FlowTestSupport
import Glibc
import XCTest

final class TrainingTests: XCTestCase {
    /// `n` rows of a correlated 2-D Gaussian: x = A·ε + μ with A = [[1, 0], [0.8, 0.5]], μ = (1, −2).
    /// Its entropy is log(2πe) + log|det A| = 2.8379 + log 0.5.
    private func gaussianData(_ n: Int, seed: UInt64) -> [Float] {
        var s = PhiloxStream(seed: seed, row: 0, stream: 9)
        var x = [Float]()
        for _ in 0..<n {
            let e1 = s.nextNormal(), e2 = s.nextNormal()
            x += [Float(e1 + 1), Float(0.8 * e1 + 0.5 * e2 - 2)]
        }
        return x
    }

    private let gaussianEntropy = Double.log(2 * Double.pi * M_E) + Double.log(0.5)

    // MARK: Optimisers and schedules

    func testAdamFirstStepMovesEachParameterByTheLearningRate() throws {
        let p = try! Parameter<Double>(name: "w", shape: [3])
        p.assign([1, 2, 3])
        for (i, g) in [0.5, -2, 1e-3].enumerated() { p.gradient[i] = g }
        let adam = try Optimizer([p], settings: OptimizerSettings(kind: .adam, learningRate: 0.1, epsilon: 1e-12))
        adam.step(learningRate: 0.1)
        // Bias-corrected m/√v = sign(g) on the first step.
        XCTAssertEqual(p.array[0], 0.9, accuracy: 1e-9)
        XCTAssertEqual(p.array[1], 2.1, accuracy: 1e-9)
        XCTAssertEqual(p.array[2], 2.9, accuracy: 1e-6)
    }

    /// Large parameter sets are updated in parallel blocks: every optimiser gives the same values
    /// and state for any thread count as an element-by-element reference loop.
    func testOptimizerStepsAreIdenticalForAnyThreadCountAndMatchTheRecurrence() throws {
        let saved = FlowRuntime.threadCount
        defer { FlowRuntime.threadCount = saved }
        let sizes = [40_000, 7, 30_001]   // 70,008 scalars: over the parallel threshold, ragged blocks
        XCTAssertGreaterThan(sizes.reduce(0, +), Optimizer<Float>.parallelThreshold)
        for kind in [OptimizerKind.adam, .adamax, .sgd] {
            var results: [[[Float]]] = []
            for threads in [1, 2, 3] {
                FlowRuntime.threadCount = threads
                let params = sizes.enumerated().map { try! Parameter<Float>(name: "p\($0.offset)", shape: [$0.element]) }
                var rng = PhiloxStream(seed: 4, row: 0, stream: 1)
                for p in params { for i in 0..<p.count { p.values[i] = Float(rng.nextNormal()) } }
                let settings = OptimizerSettings(kind: kind, learningRate: 0.01, weightDecay: 0.01, momentum: 0.9)
                let opt = try Optimizer(params, settings: settings)
                for step in 0..<3 {
                    var g = PhiloxStream(seed: 5, row: UInt64(step), stream: 2)
                    for p in params { for i in 0..<p.count { p.gradient[i] = Float(g.nextNormal()) } }
                    opt.step(learningRate: 0.01)
                }
                results.append(params.map(\.array) + params.indices.map { opt.first[$0].map(Float.init) })
            }
            XCTAssertEqual(results[1], results[0], "\(kind): 2 threads")
            XCTAssertEqual(results[2], results[0], "\(kind): 3 threads")
        }
        // Adam against its recurrence, element 39,999 (the last of the first parameter's third block).
        FlowRuntime.threadCount = 2
        let p = try! Parameter<Double>(name: "w", shape: [70_000])
        let adam = try Optimizer([p], settings: OptimizerSettings(kind: .adam, learningRate: 0.1))
        var w = 0.5, m = 0.0, v = 0.0
        p.values[39_999] = w
        for step in 1...4 {
            let g = 2 * w - 0.3
            p.gradient[39_999] = g
            adam.step(learningRate: 0.1)
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            w -= 0.1 / (1 - pow(0.9, Double(step))) * m / (v.squareRoot() / (1 - pow(0.999, Double(step))).squareRoot() + 1e-8)
            XCTAssertEqual(p.values[39_999], w, accuracy: 1e-12, "step \(step)")
        }
    }

    func testSGDMomentumAndDecoupledWeightDecayFollowTheirRecurrences() throws {
        let p = try! Parameter<Double>(name: "w", shape: [1])
        p.assign([2])
        let sgd = try Optimizer([p], settings: OptimizerSettings(kind: .sgd, weightDecay: 0.1, momentum: 0.5))
        var w = 2.0, buf = 0.0
        for step in 0..<5 {
            let g = Double(step) - w  // any gradient
            p.gradient[0] = g
            sgd.step(learningRate: 0.2)
            buf = 0.5 * buf + g
            w = w * (1 - 0.2 * 0.1) - 0.2 * buf
            XCTAssertEqual(p.array[0], w, accuracy: 1e-12)
        }
    }

    func testAdamaxUsesTheInfinityNorm() throws {
        let p = try! Parameter<Double>(name: "w", shape: [1])
        let opt = try Optimizer([p], settings: OptimizerSettings(kind: .adamax, learningRate: 0.01, epsilon: 1e-12))
        var m = 0.0, u = 0.0, w = 0.0
        for (t, g) in [3.0, -1.0, 0.5].enumerated() {
            p.gradient[0] = g
            opt.step(learningRate: 0.01)
            m = 0.9 * m + 0.1 * g
            u = max(0.999 * u, abs(g) + 1e-12)
            w -= 0.01 / (1 - pow(0.9, Double(t + 1))) * m / u
            XCTAssertEqual(p.array[0], w, accuracy: 1e-12)
        }
    }

    func testScheduleWarmsUpThenDecays() {
        let cosine = LearningRateSchedule(decay: .cosine, warmupSteps: 10, minimumFactor: 0.1)
        XCTAssertEqual(cosine.factor(step: 0, total: 110), 0.1, accuracy: 1e-12)
        XCTAssertEqual(cosine.factor(step: 4, total: 110), 0.5, accuracy: 1e-12)
        XCTAssertEqual(cosine.factor(step: 10, total: 110), 1, accuracy: 1e-12)
        XCTAssertEqual(cosine.factor(step: 60, total: 110), 0.55, accuracy: 1e-12)
        XCTAssertEqual(cosine.factor(step: 110, total: 110), 0.1, accuracy: 1e-12)
        let step = LearningRateSchedule(decay: .step, stepSize: 100, gamma: 0.5)
        XCTAssertEqual(step.factor(step: 99, total: 1000), 1)
        XCTAssertEqual(step.factor(step: 250, total: 1000), 0.25)
        XCTAssertThrowsError(try LearningRateSchedule(decay: .cosine, minimumFactor: 2).validate())
    }

    func testGradientNormAndClippingScaleAllGradients() throws {
        let a = try! Parameter<Float>(name: "a", shape: [2]), b = try! Parameter<Float>(name: "b", shape: [1])
        a.gradient[0] = 3
        b.gradient[0] = 4
        let opt = try Optimizer([a, b], settings: OptimizerSettings())
        XCTAssertEqual(opt.gradientNorm(), 5, accuracy: 1e-12)
        opt.scaleGradients(by: 0.5)
        XCTAssertEqual(opt.gradientNorm(), 2.5, accuracy: 1e-6)
    }

    // MARK: The trainer

    private func options(epochs: Int, seed: UInt64 = 1) -> TrainingOptions {
        var o = TrainingOptions()
        o.epochs = epochs
        o.batchSize = 128
        o.optimizer.learningRate = 3e-3
        o.seed = seed
        return o
    }

    func testTrainingApproachesTheDataEntropy() throws {
        let flow = try NormalizingFlow<Float>.realNVP(dim: 2, layers: 4, hidden: [16], actnorm: true, seed: 3)
        let data = gaussianData(4000, seed: 1)
        var o = options(epochs: 15)
        o.schedule = LearningRateSchedule(decay: .cosine, warmupSteps: 20)
        let trainer = try data.withUnsafeBufferPointer { try Trainer(flow: flow, data: $0, rows: 4000, options: o) }
        XCTAssertEqual(trainer.trainRows, 3600)
        XCTAssertEqual(trainer.validationRows, 400)
        let before = data.withUnsafeBufferPointer { flow.meanNLL($0.baseAddress!, count: 4000) }
        let history = try trainer.run()
        let test = gaussianData(4000, seed: 2)
        let after = test.withUnsafeBufferPointer { flow.meanNLL($0.baseAddress!, count: 4000) }
        XCTAssertEqual(history.count, 15)
        XCTAssertLessThan(after, before - 0.5)
        XCTAssertEqual(after, gaussianEntropy, accuracy: 0.05, "test NLL \(after) vs entropy \(gaussianEntropy)")
        XCTAssertTrue(history.allSatisfy { $0.skippedSteps == 0 && $0.validationNLL != nil })
        XCTAssertFalse(flow.needsDataDependentInitialization, "ActNorm was initialised from the first batch")
    }

    /// RealNVP with ActNorm, and an IAF with nflows' residual MADE (trained through its
    /// implicit-function gradient).
    func testResumedRunRepeatsTheUninterruptedRunExactly() throws {
        for (name, make) in [("realnvp", { try NormalizingFlow<Float>.realNVP(dim: 2, layers: 3, hidden: [8], actnorm: true, seed: 5) }),
                             ("iaf residual", { try NormalizingFlow<Float>.iaf(dim: 2, layers: 2, hidden: [8], residualBlocks: 2, seed: 5) })] {
            try checkResumedRunRepeatsTheUninterruptedRun(name, make)
        }
    }

    private func checkResumedRunRepeatsTheUninterruptedRun(_ name: String, _ make: () throws -> NormalizingFlow<Float>) throws {
        let temporary = try TemporaryDirectory(prefix: "sf_train")
        defer { temporary.remove() }
        let dir = temporary.path
        let data = gaussianData(1500, seed: 4)
        var o = options(epochs: 5)
        o.schedule = LearningRateSchedule(decay: .cosine, warmupSteps: 5, minimumFactor: 0.05)
        o.clipNorm = 5
        o.optimizer.weightDecay = 1e-4

        let full = try make()
        let fullHistory = try data.withUnsafeBufferPointer {
            try Trainer(flow: full, data: $0, rows: 1500, options: o).run()
        }

        // Same run, stopped after 2 epochs with a checkpoint, then resumed from the file.
        let first = try make()
        let path = dir + "/ckpt.h5"
        try data.withUnsafeBufferPointer { buffer in
            let t = try Trainer(flow: first, data: buffer, rows: 1500, options: o)
            t.saveCheckpoints(to: path)
            XCTAssertThrowsError(try t.run { event in
                if case .epoch(let r) = event { return r.epoch < 2 }
                return true
            }) { XCTAssertEqual(($0 as? FlowError).map { "\($0)" }?.contains("cancelled"), true) }
        }
        let resumed = try data.withUnsafeBufferPointer { try Trainer.resume(checkpoint: path, data: $0, rows: 1500) }
        XCTAssertEqual(resumed.history.count, 2, name)
        let resumedHistory = try resumed.run()
        XCTAssertEqual(resumedHistory.map(\.trainNLL), fullHistory.map(\.trainNLL), name)
        XCTAssertEqual(resumedHistory.map(\.validationNLL), fullHistory.map(\.validationNLL), name)
        XCTAssertLessThan(fullHistory.last!.trainNLL, fullHistory.first!.trainNLL, name)
        for (a, b) in zip(full.parameters, resumed.flow.parameters) { XCTAssertEqual(a.array, b.array, "\(name) \(a.name)") }

        // A checkpoint is an ordinary model file, and refuses other data.
        XCTAssertNoThrow(try NormalizingFlow<Float>.load(path: path))
        let other = gaussianData(1500, seed: 99)
        XCTAssertThrowsError(try other.withUnsafeBufferPointer { try Trainer.resume(checkpoint: path, data: $0, rows: 1500) }) {
            XCTAssertTrue("\($0)".contains("other data"), "\($0)")
        }
    }

    func testNonFiniteStepsAreSkippedAndThenTheRunStops() throws {
        let flow = try NormalizingFlow<Float>.realNVP(dim: 2, layers: 2, hidden: [4], seed: 1)
        flow.parameters[0].values[0] = .nan
        flow.transform.parametersDidChange()
        var o = options(epochs: 3)
        o.maxConsecutiveSkips = 4
        var skips = 0
        let data = gaussianData(1000, seed: 3)
        XCTAssertThrowsError(try data.withUnsafeBufferPointer { buffer in
            try Trainer(flow: flow, data: buffer, rows: 1000, options: o).run { event in
                if case .skipped = event { skips += 1 }
                return true
            }
        }) { error in
            guard case FlowError.numerical(let m) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("4 consecutive"), m)
        }
        XCTAssertEqual(skips, 4)
    }

    /// A step that would make a parameter non-finite, or move a bounded one (a log-scale) past
    /// its bound, is refused whole: values, moments and the step count stay as they were.
    func testOptimizerRefusesAStepThatLeavesTheParametersRange() throws {
        for kind in OptimizerKind.allCases {
            let p = try Parameter<Float>(name: "w", shape: [3])
            let bounded = try Parameter<Float>(name: "log_scale", shape: [2], bound: 30)
            p.assign([1, 2, 3])
            bounded.assign([29.5, -1])
            for i in 0..<3 { p.gradient[i] = 0.5 }
            for i in 0..<2 { bounded.gradient[i] = -1 }
            let optimizer = try Optimizer([p, bounded], settings: OptimizerSettings(kind: kind, learningRate: 1e300))
            XCTAssertFalse(optimizer.step(learningRate: 1e300), "\(kind): a step to ±inf")
            XCTAssertEqual(p.array, [1, 2, 3])
            XCTAssertEqual(optimizer.stepCount, 0)
            XCTAssertTrue(optimizer.first[0].allSatisfy { $0 == 0 })
            XCTAssertFalse(optimizer.step(learningRate: 1), "\(kind): log_scale 29.5 → past 30")
            XCTAssertEqual(bounded.array, [29.5, -1])
            XCTAssertTrue(optimizer.step(learningRate: 0.1), "\(kind): an ordinary step")
            XCTAssertEqual(optimizer.stepCount, 1)
            XCTAssertTrue(p.valuesAreValid && bounded.valuesAreValid)
        }
    }

    /// `saveState`/`restoreState` undo a step exactly (parameters, moments, step count).
    func testOptimizerStateRestoresExactly() throws {
        let flow = try NormalizingFlow<Float>.realNVP(dim: 2, layers: 2, hidden: [4], seed: 1)
        let data = gaussianData(64, seed: 5)
        let optimizer = try Optimizer(flow.parameters, settings: OptimizerSettings(kind: .adam, learningRate: 1e-2))
        for _ in 0..<2 {
            flow.zeroGradients()
            data.withUnsafeBufferPointer { _ = flow.accumulateNLLGradient($0.baseAddress!, count: 64) }
            XCTAssertTrue(optimizer.step(learningRate: 1e-2))
        }
        let values = flow.parameters.map(\.array), first = optimizer.first[0], count = optimizer.stepCount
        optimizer.saveState()
        XCTAssertTrue(optimizer.step(learningRate: 0.5))
        XCTAssertNotEqual(flow.parameters.map(\.array), values)
        optimizer.restoreState()
        XCTAssertEqual(flow.parameters.map(\.array), values)
        XCTAssertEqual(optimizer.first[0], first)
        XCTAssertEqual(optimizer.stepCount, count)
    }

    /// Training never leaves parameters a loader refuses: steps that would make an LU weight
    /// non-finite, move its log-scales past ±30 or make it ill-conditioned are undone and
    /// reported as skipped; the model then saves as a file that loads.
    func testTrainingUndoesStepsThatWouldMakeTheModelUnloadable() throws {
        let flow = try NormalizingFlow<Float>(specJSON: #"{"event_shape": [3], "layers": [{"type": "lu_linear"}]}"#, seed: 1)
        var data = [Float]()
        var s = PhiloxStream(seed: 4, row: 0, stream: 9)
        for _ in 0..<256 { data += [Float(s.nextNormal()), Float(100 * s.nextNormal()), Float(0.01 * s.nextNormal())] }
        var reasons: [String] = []
        for rate in [1e300, 1e6, 1e3, 10] {
            var o = options(epochs: 1)
            o.batchSize = 64
            o.validationFraction = 0
            o.optimizer = OptimizerSettings(kind: .sgd, learningRate: rate, momentum: 0)
            _ = try? data.withUnsafeBufferPointer { buffer in
                try Trainer(flow: flow, data: buffer, rows: 256, options: o).run { event in
                    if case .skipped(_, _, let reason) = event { reasons.append(reason) }
                    return true
                }
            }
            XCTAssertNil(flow.parameterProblem, "learning rate \(rate)")
            XCTAssertNoThrow(try NormalizingFlow<Float>.load(image: try flow.fileImage()), "learning rate \(rate)")
        }
        XCTAssertTrue(reasons.contains { $0.contains("non-finite") }, "\(reasons)")
    }

    /// What the trainer checks after a step of a flow with mixing matrices: an LU weight whose
    /// factors are finite and in range but ill-conditioned is reported (and a loader refuses it).
    func testIllConditionedLUWeightsAreDetected() throws {
        let flow = try NormalizingFlow<Float>(specJSON: #"{"event_shape": [3], "layers": [{"type": "lu_linear"}]}"#, seed: 1)
        XCTAssertNil(flow.parameterProblem)
        XCTAssertEqual(flow.invertibilityConstrainedLayers.count, 1)
        let upper = try XCTUnwrap(flow.parameters.first { $0.name == "upper" })
        upper.values[1] = 1e7  // row 0, column 1: strictly upper
        flow.parametersDidChange()
        let problem = try XCTUnwrap(flow.parameterProblem)
        XCTAssertTrue(problem.contains("lu_linear") && problem.contains("condition number"), problem)
        XCTAssertThrowsError(try NormalizingFlow<Float>.load(image: try flow.fileImage())) { error in
            guard case FlowError.numerical(let m) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("condition number"), m)
        }
    }

    func testEarlyStoppingRestoresTheBestEpoch() throws {
        let flow = try NormalizingFlow<Float>.realNVP(dim: 2, layers: 2, hidden: [8], seed: 2)
        var o = options(epochs: 20)
        o.patience = 2
        o.minDelta = 10  // no later epoch can improve by 10 nats
        var stopped: (Int, Int)?
        let data = gaussianData(1000, seed: 5)
        let trainer = try data.withUnsafeBufferPointer { try Trainer(flow: flow, data: $0, rows: 1000, options: o) }
        var epochOne: [[Float]] = []
        let history = try trainer.run { event in
            if case .epoch(let r) = event, r.epoch == 1 { epochOne = flow.parameters.map(\.array) }
            if case .stopped(let e, let b) = event { stopped = (e, b) }
            return true
        }
        XCTAssertEqual(history.count, 3)
        XCTAssertEqual(stopped?.0, 3)
        XCTAssertEqual(stopped?.1, 1)
        XCTAssertEqual(flow.parameters.map(\.array), epochOne)
    }

    func testGradientsAndTrainingAreBitIdenticalForAnyThreadCount() throws {
        let saved = FlowRuntime.threadCount
        defer { FlowRuntime.threadCount = saved }
        let data = gaussianData(1300, seed: 8)
        var results: [([[Float]], [Double])] = []
        for threads in [1, 2, 3] {
            FlowRuntime.threadCount = threads
            let flow = try NormalizingFlow<Float>.realNVP(dim: 2, layers: 3, hidden: [16], actnorm: true, seed: 2)
            // One gradient over 1300 rows: six chunks, folded in chunk order.
            flow.zeroGradients()
            _ = data.withUnsafeBufferPointer { flow.accumulateNLLGradient($0.baseAddress!, count: 1300) }
            let gradients = flow.parameters.map { Array($0.gradient) }
            var o = options(epochs: 2)
            o.batchSize = 600
            let history = try data.withUnsafeBufferPointer { try Trainer(flow: flow, data: $0, rows: 1300, options: o).run() }
            results.append((gradients + flow.parameters.map(\.array), history.map(\.trainNLL)))
        }
        for r in results.dropFirst() {
            XCTAssertEqual(r.0, results[0].0)
            XCTAssertEqual(r.1, results[0].1)
        }
    }

    func testBadOptionsAndDataAreRefused() throws {
        let flow = try NormalizingFlow<Float>.realNVP(dim: 2, layers: 2, hidden: [4], seed: 1)
        var bad = options(epochs: 0)
        let data: [Float] = [0, 1, 2, 3, .nan, 5]
        XCTAssertThrowsError(try data.withUnsafeBufferPointer { try Trainer(flow: flow, data: $0, rows: 3, options: bad) })
        bad = options(epochs: 1)
        XCTAssertThrowsError(try data.withUnsafeBufferPointer { try Trainer(flow: flow, data: $0, rows: 3, options: bad) }) {
            XCTAssertTrue("\($0)".contains("row 2, column 0"), "\($0)")
        }
        XCTAssertThrowsError(try data.withUnsafeBufferPointer { try Trainer(flow: flow, data: $0, rows: 2, options: bad) })
        bad.optimizer.learningRate = -1
        XCTAssertThrowsError(try bad.validate())
    }
}
