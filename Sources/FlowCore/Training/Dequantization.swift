/// Uniform dequantisation noise for flows that start with a ``Dequantize`` layer: integer levels
/// `k` become `k + u`, `u ~ U[0, 1)`, drawn from Philox stream ``RandomStream/dequantization``
/// so a run (and a resumed run) sees the same noise for the same seed.
public enum Dequantization {
    /// Whether `flow` expects dequantised levels (its first layer is ``Dequantize``).
    public static func applies<T>(to flow: NormalizingFlow<T>) -> Bool {
        flow.layers.first.map { $0 is Dequantize<T> } ?? false
    }

    /// The Philox row of the one fixed draw an evaluation adds (validation during training,
    /// `swiftflows eval`): 2⁴⁷ − 1, a row the training batches (epoch·2²⁴ + batch) reach only
    /// after 2²³ epochs.
    public static let evaluationRow: UInt64 = UInt64.max >> 17

    /// `count` values with the evaluation draw (``evaluationRow``) of `seed` added, the input of
    /// a dequantised NLL: the same rows and seed give the same noise everywhere.
    public static func addEvaluationNoise<T: FlowScalar>(_ x: UnsafeMutablePointer<T>, count: Int, seed: UInt64) {
        addNoise(x, count: count, seed: seed, row: evaluationRow)
    }

    /// Adds `U[0, 1)` noise to `count` values, from `seed` and Philox `row`.
    public static func addNoise<T: FlowScalar>(_ x: UnsafeMutablePointer<T>, count: Int, seed: UInt64, row: UInt64) {
        let philox = Philox4x32(seed: seed)
        let chunk = 4096
        var noise = [Double](repeating: 0, count: Swift.min(count, chunk))
        var done = 0, part: UInt64 = 0
        noise.withUnsafeMutableBufferPointer { u in
            while done < count {
                let n = Swift.min(chunk, count - done)
                // Rows are spread so that consecutive chunks of one draw use distinct counters.
                philox.fillUniform(u.baseAddress!, count: n, row: row &* 65_537 &+ part, stream: RandomStream.dequantization)
                for i in 0..<n { x[done + i] += T(u[i]) }
                done += n
                part += 1
            }
        }
    }
}
