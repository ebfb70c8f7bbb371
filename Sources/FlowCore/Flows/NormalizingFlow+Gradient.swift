#if canImport(Glibc)
import Glibc
#endif

/// Gradients of the negative log-likelihood, by the layers' hand-derived backward passes.
extension NormalizingFlow {
    /// Sets every parameter's gradient to zero.
    public func zeroGradients() { for p in parameters { p.zeroGradient() } }

    /// Adds `∂L/∂θ` of `L = −(1/normalizer)·Σᵢ log p(xᵢ)` over `count` rows of `x` to the
    /// parameters' gradients and returns `Σᵢ −log p(xᵢ)` (in Double).
    ///
    /// The batch is cut into chunks of ``chunkRows`` rows, processed in parallel over
    /// ``FlowRuntime/threadCount`` threads, each chunk into its own gradient slot
    /// (``GradientSlot``); slots are then added in chunk order, so gradients are bit-identical
    /// for any thread count. Not thread-safe: it writes the gradients.
    /// - Complexity: about three times the cost of ``logProb(_:count:into:)`` (forward, the
    ///   conditioners again, backward); extra memory: one gradient copy per chunk of a group of
    ///   ``gradientGroup`` chunks.
    @discardableResult
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    ///
    /// A conditional flow reads `count` context rows from `context` (nil: zeros); the gradient
    /// then also flows through the context embedding into its parameters.
    ///
    /// Scratch and gradient copies come from fallible allocations (``prepareGradientPasses(rows:)``
    /// makes them ahead); when they cannot be allocated, or the caller's ``CallScope`` is cancelled,
    /// the pass stops and returns NaN (the failure is recorded in the scope).
    public func accumulateNLLGradient(_ x: UnsafePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>? = nil,
                                      normalizer: Int? = nil) -> Double {
        let rows = chunkRows
        let chunks = (count + rows - 1) / rows
        guard chunks > 0 else { return 0 }
        let scale = -1 / Scalar(normalizer ?? count)
        let bytes = gradientChunkBytes
        let scope = CallScope.current
        func failed(_ error: Error) -> Double {
            scope?.record(error as? FlowError ?? .outOfMemory("cannot allocate gradient scratch: \(error)"))
            return .nan
        }
        if chunks == 1 {
            do { try trainingWorkspace.reserve(bytes: bytes) } catch { return failed(error) }
            var arena = trainingWorkspace.arena()
            return chunkGradient(x, count: count, context: context, scale: scale, arena: &arena)
        }
        let params = parameters
        let group = Swift.min(Self.gradientGroup, chunks)
        let workspaces: [Workspace]
        do {
            for p in params { try p.reserveGradientSlots(group) }
            workspaces = try pool.checkOut(Swift.min(group, workersWithinBudget(scratch: bytes)), bytes: bytes)
        } catch {
            return failed(error)
        }
        defer { pool.checkIn(workspaces) }
        var total = 0.0
        var partial = [Double](repeating: 0, count: group)
        var start = 0
        while start < chunks {
            let size = Swift.min(group, chunks - start)
            partial.withUnsafeMutableBufferPointer { part in
                FlowRuntime.forEachChunk(size, workers: workspaces.count) { worker, i in
                    let first = (start + i) * rows
                    if let scope, scope.isStopped {
                        part[i] = .nan
                        return
                    }
                    var arena = workspaces[worker].arena()
                    part[i] = GradientSlot.with(i + 1) {
                        chunkGradient(x + first * eventSize, count: Swift.min(rows, count - first),
                                      context: context.map { $0 + first * contextSize }, scale: scale, arena: &arena)
                    }
                }
            }
            for i in 0..<size {
                total += partial[i]
                for p in params { p.foldGradientSlot(i + 1) }
            }
            start += size
        }
        return total
    }

    /// Allocates ahead what ``accumulateNLLGradient(_:count:context:normalizer:)`` needs for
    /// batches of up to `rows` rows: the scratch of its chunks and one gradient copy per chunk of
    /// a group, charged to the calling thread's ``MemoryBudget`` ledger.
    /// - Throws: ``FlowError/limitExceeded(_:)`` or ``FlowError/outOfMemory(_:)``.
    public func prepareGradientPasses(rows: Int) throws {
        let chunks = (Swift.max(rows, 1) + chunkRows - 1) / chunkRows
        let bytes = gradientChunkBytes
        if chunks == 1 {
            try trainingWorkspace.reserve(bytes: bytes)
            return
        }
        let group = Swift.min(Self.gradientGroup, chunks)
        for p in parameters { try p.reserveGradientSlots(group) }
        let workspaces = try pool.checkOut(Swift.min(group, workersWithinBudget(scratch: bytes)), bytes: bytes)
        pool.checkIn(workspaces)
    }

    /// Chunks per parallel group of ``accumulateNLLGradient(_:count:normalizer:)`` (bounds the
    /// gradient copies held at once).
    static var gradientGroup: Int { 16 }

    /// Scratch of one chunk's gradient pass.
    private var gradientChunkBytes: Int {
        let rows = chunkRows, d = eventSize
        return transform.trainingWorkspaceBytes(count: rows) + 2 * Arena.bytes(Scalar.self, rows * d)
            + 2 * Arena.bytes(Double.self, rows) + Arena.bytes(Scalar.self, rows)
            + Arena.bytes(Scalar.self, Swift.max(layers.count, 1) * rows * d) + tapeBytes + contextBytes
            + (conditionalBase?.backwardWorkspaceBytes(count: rows) ?? 0)
    }

    /// Scratch of a chunk's encoded context, its gradient and the encoder's training pass.
    private var contextBytes: Int {
        guard let encoder = contextEncoder else { return 0 }
        return 2 * Arena.bytes(Scalar.self, chunkRows * encoder.outputSize) + encoder.trainingBytes(rows: chunkRows)
    }

    /// Most bytes of layer tapes (``Bijection/tapeBytes(count:)``) one chunk's gradient pass
    /// keeps between its forward and backward passes; beyond it, layers recompute in the
    /// backward pass what they need (e.g. an image coupling's network forward pass). 64 MiB:
    /// the Fashion-MNIST Glow (2 levels × 8 steps, width 64) needs about 28 MiB per chunk.
    /// ``RuntimeConfiguration/tapeBudget`` (default 64 MiB).
    static var tapeBudget: Int { FlowRuntime.configuration.tapeBudget }

    /// Tape bytes of one chunk's gradient pass: the layers' tapes if they fit ``tapeBudget``,
    /// else 0 (fixed per flow, like ``chunkRows``, so results never depend on the thread count).
    private var tapeBytes: Int {
        let bytes = transform.layerTapeBytes(count: chunkRows)
        return bytes <= Self.tapeBudget ? bytes : 0
    }

    /// Forward with saved activations, the base's and the layers' backward passes for `count`
    /// rows (at most ``chunkRows``), accumulating into the calling thread's gradient slot.
    /// A conditional flow's `∂L/∂e` (from the conditional layers and a conditional base) flows
    /// into the context embedding. Returns `Σ −log p(xᵢ)`.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    private func chunkGradient(_ x: UnsafePointer<Scalar>, count n: Int, context: UnsafePointer<Scalar>?, scale: Scalar,
                               arena: inout Arena) -> Double {
        let rows = chunkRows, d = eventSize
        let z = arena.take(Scalar.self, rows * d)
        let g = arena.take(Scalar.self, rows * d)
        let logDet = arena.take(Double.self, rows)
        let logProb = arena.take(Double.self, rows)
        let w = arena.take(Scalar.self, rows)
        let saved = arena.take(Scalar.self, Swift.max(layers.count, 1) * n * d)
        let tapeSize = tapeBytes
        let tape: UnsafeMutableRawPointer? = tapeSize > 0 ? UnsafeMutableRawPointer(arena.take(UInt8.self, tapeSize)) : nil
        z.update(from: x, count: n * d)
        logDet.update(repeating: 0, count: n)
        // The encoded context (kept for the embedding's backward pass) and its gradient.
        var encoded: UnsafeMutablePointer<Scalar>?, contextGradient: UnsafeMutablePointer<Scalar>?
        var recorded: (input: UnsafePointer<Scalar>, tape: UnsafePointer<Scalar>)?
        if let encoder = contextEncoder {
            let e = arena.take(Scalar.self, n * encoder.outputSize)
            recorded = encoder.encodeRecording(context, rows: n, into: e, arena: &arena)
            encoded = e
            let de = arena.take(Scalar.self, n * encoder.outputSize)
            de.update(repeating: 0, count: n * encoder.outputSize)
            contextGradient = de
        }
        let layerArena = arena
        transform.forward(saving: saved, tape: tape, z, count: n, context: encoded.map { UnsafePointer($0) },
                          logDet: logDet, arena: &arena)
        if let conditionalBase {
            // The base reads the encoded context: its ∂L/∂e joins the layers' in the embedding's
            // output gradient (only needed when there is an embedding to learn).
            arena = layerArena
            let e = encoded.map { UnsafePointer($0) }
            conditionalBase.logProb(z, count: n, context: e, into: logProb, arena: &arena)
            for i in 0..<n { w[i] = scale }
            arena = layerArena
            conditionalBase.backward(z, count: n, context: e, logProbGradient: w, gradient: g,
                                     contextGradient: recorded == nil ? nil : contextGradient, arena: &arena)
        } else {
            base.logProb(z, count: n, into: logProb)
            for i in 0..<n { w[i] = scale }
            base.backward(z, count: n, logProbGradient: w, gradient: g)
        }
        var total = 0.0
        for i in 0..<n { total -= logProb[i] + logDet[i] }
        arena = layerArena
        transform.backward(saved: saved, tape: tape.map { UnsafeRawPointer($0) }, count: n,
                           context: encoded.map { UnsafePointer($0) }, gradient: g, logDetGradient: w,
                           contextGradient: recorded == nil ? nil : contextGradient, arena: &arena)
        if let contextGradient, let encoder = contextEncoder {
            arena = layerArena
            encoder.backward(rows: n, recorded: recorded, outputGradient: contextGradient, arena: &arena)
        }
        return total
    }

    /// The mean negative log-likelihood of `count` rows (at their `context` rows for a
    /// conditional flow), in nats.
    public func meanNLL(_ x: UnsafePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>? = nil) -> Double {
        guard count > 0 else { return .nan }
        var lp = [Double](repeating: 0, count: count)
        lp.withUnsafeMutableBufferPointer { logProb(x, count: count, context: context, into: $0.baseAddress!) }
        return -lp.reduce(0, +) / Double(count)
    }
}
