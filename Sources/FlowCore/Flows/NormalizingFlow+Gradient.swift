/// Gradients of the negative log-likelihood, by the layers' hand-derived backward passes.
extension NormalizingFlow {
    /// Sets every parameter's gradient to zero.
    public func zeroGradients() { for p in parameters { p.zeroGradient() } }

    /// Adds `∂L/∂θ` of `L = −(1/normalizer)·Σᵢ log p(xᵢ)` over `count` rows of `x` to the
    /// parameters' gradients and returns `Σᵢ −log p(xᵢ)` (in Double).
    ///
    /// The batch is processed in chunks of ``chunkRows`` rows, one after the other, so gradients
    /// add up in a fixed order (deterministic). Not thread-safe: it writes the gradients.
    /// - Complexity: about three times the cost of ``logProb(_:count:into:)`` (forward, the
    ///   conditioners again, backward).
    @discardableResult
    public func accumulateNLLGradient(_ x: UnsafePointer<Scalar>, count: Int, normalizer: Int? = nil) -> Double {
        let d = eventSize
        let rows = Self.chunkRows
        let scale = -1 / Scalar(normalizer ?? count)
        let bytes = transform.trainingWorkspaceBytes(count: rows) + 2 * Arena.bytes(Scalar.self, rows * d)
            + Arena.bytes(Double.self, rows) * 2 + Arena.bytes(Scalar.self, rows)
        var total = 0.0
        trainingWorkspace.reserve(bytes: bytes)
        var first = 0
        while first < count {
            let n = min(rows, count - first)
            var arena = trainingWorkspace.arena()
            let z = arena.take(Scalar.self, rows * d)
            let g = arena.take(Scalar.self, rows * d)
            let logDet = arena.take(Double.self, rows)
            let logProb = arena.take(Double.self, rows)
            let w = arena.take(Scalar.self, rows)
            let saved = arena.take(Scalar.self, max(layers.count, 1) * n * d)
            z.update(from: x + first * d, count: n * d)
            logDet.update(repeating: 0, count: n)
            let layerArena = arena
            transform.forward(saving: saved, z, count: n, logDet: logDet, arena: &arena)
            base.logProb(z, count: n, into: logProb)
            for i in 0..<n {
                total -= logProb[i] + logDet[i]
                w[i] = scale
            }
            base.backward(z, count: n, logProbGradient: w, gradient: g)
            arena = layerArena
            transform.backward(saved: saved, count: n, gradient: g, logDetGradient: w, arena: &arena)
            first += n
        }
        return total
    }

    /// The mean negative log-likelihood of `count` rows, in nats.
    public func meanNLL(_ x: UnsafePointer<Scalar>, count: Int) -> Double {
        guard count > 0 else { return .nan }
        var lp = [Double](repeating: 0, count: count)
        lp.withUnsafeMutableBufferPointer { logProb(x, count: count, into: $0.baseAddress!) }
        return -lp.reduce(0, +) / Double(count)
    }
}
