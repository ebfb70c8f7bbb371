import FlowCore
import FlowModelFile
import FlowData
#if canImport(Glibc)
import Glibc
#endif

/// How long and how often a row is timed.
///
/// A row first calls its operation once (workspaces reserved, pages touched), then estimates
/// the time of one call and fixes `calls per repeat` so a repeat lasts at least
/// ``targetRepeatSeconds`` (one call when a call is already longer). One whole repeat is run as
/// warm-up and discarded; then `R` repeats are timed, with `R` the number that fits in
/// ``rowBudgetSeconds``, clamped to ``minRepeats``…``maxRepeats``.
struct MeasureSettings {
    var targetRepeatSeconds: Double
    var minRepeats: Int
    var maxRepeats: Int
    var rowBudgetSeconds: Double

    /// The default run (about 1–2 minutes for the whole table on 2 cores).
    static let standard = MeasureSettings(targetRepeatSeconds: 0.05, minRepeats: 3, maxRepeats: 11, rowBudgetSeconds: 2)
    /// `--quick`: smoke tests.
    static let quick = MeasureSettings(targetRepeatSeconds: 0.01, minRepeats: 2, maxRepeats: 3, rowBudgetSeconds: 0.2)
}

/// The timings of one row.
struct RowMeasurement {
    /// Calls of the operation per timed repeat.
    let callsPerRepeat: Int
    /// Rows (samples) per second of each timed repeat.
    let samplesPerSecond: [Double]
    /// Sum of the operation's outputs after timing (a sanity value: finite for a healthy model).
    let checksum: Double
}

/// Times `call` (which processes `rows` rows) under `settings`.
func measure(rows: Int, settings: MeasureSettings, _ call: () -> Void) -> (callsPerRepeat: Int, samplesPerSecond: [Double]) {
    call()  // first call: scratch reservation, page faults, lazy initialisation
    // Time per call: at least one call, and enough calls to span a fifth of a repeat.
    var calls = 0
    let start = monotonicSeconds()
    var elapsed = 0.0
    repeat {
        call()
        calls += 1
        elapsed = monotonicSeconds() - start
    } while elapsed < settings.targetRepeatSeconds / 5
    let perCall = elapsed / Double(calls)
    let k = max(1, Int((settings.targetRepeatSeconds / perCall).rounded(.up)))

    func timedRepeat() -> Double {
        let t0 = monotonicSeconds()
        for _ in 0..<k { call() }
        return monotonicSeconds() - t0
    }
    let warm = timedRepeat()  // warm-up repeat, discarded
    let repeats = min(settings.maxRepeats, max(settings.minRepeats, Int(settings.rowBudgetSeconds / max(warm, 1e-9))))
    var rates: [Double] = []
    rates.reserveCapacity(repeats)
    for _ in 0..<repeats {
        let t = timedRepeat()
        rates.append(Double(k * rows) / t)
    }
    return (k, rates)
}

/// Gives a flow the parameters of a (briefly) trained model: a new coupling flow is the identity
/// map (its conditioners' last layers are zero), which is not what a deployed model computes.
/// Runs data-dependent initialisation, then `steps` Adam steps (learning rate 5·10⁻³) on fresh
/// batches of 512 rows (64 for images) of the benchmark's correlated Gaussian (``fillData(_:rows:dim:seed:)``),
/// and checks that log-densities and samples are finite.
func perturb(_ flow: NormalizingFlow<Float>, steps: Int = 25) throws {
    // 512 rows a step for vectors; images take 64 (a Glow step on 512 images takes seconds).
    let d = flow.eventSize, rows = d > 256 ? 64 : 512
    let x = AlignedBuffer<Float>(count: rows * d, repeating: 0)
    defer { x.free() }
    fillData(x.pointer, rows: rows, dim: d, seed: 7)
    try flow.initializeDataDependentLayers(x.pointer, count: rows)
    let learningRate = 5e-3
    let optimizer = try Optimizer(flow.parameters, settings: OptimizerSettings(kind: .adam, learningRate: learningRate))
    for step in 0..<steps {
        fillData(x.pointer, rows: rows, dim: d, seed: 1000 + UInt64(step))
        flow.zeroGradients()
        let loss = flow.accumulateNLLGradient(x.pointer, count: rows)
        guard loss.isFinite else { throw BenchError("perturbation step \(step): the loss is not finite (\(loss))") }
        optimizer.step(learningRate: learningRate)
        flow.parametersDidChange()
    }
    let lp = AlignedBuffer<Double>(count: rows, repeating: 0)
    defer { lp.free() }
    flow.logProb(x.pointer, count: rows, into: lp.pointer)
    flow.sample(count: rows, seed: 3, into: x.pointer, logProb: nil)
    for i in 0..<rows where !lp.pointer[i].isFinite {
        throw BenchError("the perturbed model gives a non-finite log-density (\(lp.pointer[i])) at row \(i)")
    }
    for i in 0..<(rows * d) where !x.pointer[i].isFinite {
        throw BenchError("the perturbed model draws a non-finite sample value (\(x.pointer[i]))")
    }
}

/// An error that ends the benchmark (or one row of it) with a message.
struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// Runs one row on `flow` (already perturbed) and returns its timings.
func runRow(_ row: RowSpec, flow: NormalizingFlow<Float>, settings: MeasureSettings) throws -> RowMeasurement {
    let d = flow.eventSize, n = row.batch
    let input = AlignedBuffer<Float>(count: n * d, repeating: 0)
    let output = AlignedBuffer<Float>(count: n * d, repeating: 0)
    let densities = AlignedBuffer<Double>(count: n, repeating: 0)
    defer { input.free(); output.free(); densities.free() }
    let x = input.pointer, out = output.pointer, lp = densities.pointer

    switch row.operation {
    case .inverse: fillNormal(x, count: n * d, seed: 11)
    case .sample: break
    default: fillData(x, rows: n, dim: d, seed: 13)
    }

    let timing: (callsPerRepeat: Int, samplesPerSecond: [Double])
    var checksum = 0.0
    switch row.operation {
    case .logProb:
        timing = measure(rows: n, settings: settings) { flow.logProb(x, count: n, into: lp) }
        for i in 0..<n { checksum += lp[i] }
    case .sample:
        var seed: UInt64 = 0
        timing = measure(rows: n, settings: settings) {
            seed &+= 1
            flow.sample(count: n, seed: seed, into: out, logProb: nil)
        }
        for i in 0..<(n * d) { checksum += Double(out[i]) }
    case .forward:
        timing = measure(rows: n, settings: settings) { flow.forward(x, count: n, z: out, logDet: lp) }
        for i in 0..<n { checksum += lp[i] }
    case .inverse:
        timing = measure(rows: n, settings: settings) { flow.inverse(x, count: n, x: out, logDet: lp) }
        for i in 0..<n { checksum += lp[i] }
    case .trainStep:
        // A small learning rate keeps the model near its perturbed state over many repeats.
        let learningRate = 1e-4
        let optimizer = try Optimizer(flow.parameters, settings: OptimizerSettings(kind: .adam, learningRate: learningRate))
        var loss = 0.0
        timing = measure(rows: n, settings: settings) {
            flow.zeroGradients()
            loss = flow.accumulateNLLGradient(x, count: n)
            optimizer.step(learningRate: learningRate)
            flow.parametersDidChange()
        }
        checksum = loss / Double(n)
    }
    return RowMeasurement(callsPerRepeat: timing.callsPerRepeat, samplesPerSecond: timing.samplesPerSecond,
                          checksum: checksum)
}
