/// A normalizing flow: a transform `f` from data to latent space and a base distribution `p_Z`.
///
///     log p(x) = log p_Z(f(x)) + log|det ∂f/∂x|
///
/// Batch methods take `count` contiguous rows of ``eventSize`` scalars. Batches are processed in
/// chunks of ``chunkRows`` rows (bounded scratch memory, working set in cache) spread over
/// ``FlowRuntime/threadCount`` threads; chunking is independent of the thread count, so results
/// are too.
///
/// Thread safety: inference (`forward`, `inverse`, `logProb`, `sample`) only reads the flow and
/// may run on many threads at once. Training and parameter loading mutate it and must not
/// overlap with any other call.
public final class NormalizingFlow<Scalar: FlowScalar> {
    /// Shape of one sample, e.g. `[2]` or `[1, 28, 28]`.
    public let eventShape: [Int]
    public let eventSize: Int
    public let transform: Composition<Scalar>
    public let base: any BaseDistribution<Scalar>
    /// ``base`` when it reads the context (a ``ConditionalBaseDistribution``): the flow then calls
    /// its context-taking entry points with the encoded context rows. Nil for every other base,
    /// whose calls stay exactly those of an unconditional flow.
    let conditionalBase: (any ConditionalBaseDistribution<Scalar>)?
    /// The context front end of a conditional flow `p(x | c)`; nil for an unconditional flow.
    public let contextEncoder: ContextEncoder<Scalar>?
    /// Context scalars per row the flow takes (0: unconditional).
    public var contextSize: Int { contextEncoder?.inputSize ?? 0 }
    /// Rows per chunk of batch work for small events (vectors up to 64 features).
    public static var defaultChunkRows: Int { 256 }
    /// Rows per chunk of batch work: 256 for vectors, fewer for large events (the largest power
    /// of two with at most about 16k values per chunk, at least 4 rows), so image batches split
    /// across threads and a chunk's working set stays in cache. A power of two, so the usual
    /// batch sizes (64, 256, …) cut into equal chunks that spread evenly over the threads.
    /// Fixed per flow, so results never depend on the thread count.
    public let chunkRows: Int

    /// ``chunkRows`` for events of `size` values.
    static func chunkRows(eventSize size: Int) -> Int {
        let target = Swift.max(4, Swift.min(defaultChunkRows, 16_384 / size))
        var rows = 4
        while rows * 2 <= target { rows *= 2 }
        return rows
    }

    let pool = WorkspacePool()
    private let chunkWorkspaceBytes: Int
    /// What building the flow charged to the ``MemoryBudget``: parameters with their gradients,
    /// derived state (packed weights, plans) and one chunk's scratch. Batch calls keep their
    /// scratch within the rest of the limit by running on fewer threads.
    public private(set) var allocatedBytes = 0
    /// Scratch of training passes (which are single-threaded per flow).
    let trainingWorkspace = Workspace()

    /// A flow from built layers and a base distribution.
    ///
    /// With a `context` encoder every ``ConditionalLayer`` must read its ``ContextEncoder/outputSize``
    /// scalars (or none), and a ``ConditionalBaseDistribution`` exactly that many; without one,
    /// neither may read a context. `charged` is what building the parts charged to the
    /// ``MemoryBudget`` outside the calling thread's ledger (if any); the scratch of one chunk is
    /// charged on top.
    public init(eventShape: [Int], layers: [any FlowLayer<Scalar>], base: any BaseDistribution<Scalar>,
                context: ContextEncoder<Scalar>? = nil, charged: Int = 0) throws {
        FlowRuntime.configureBLAS()
        guard let size = Tensor<Scalar>.elementCount(eventShape), size > 0 else {
            throw FlowError.invalidSpec("event shape \(eventShape) is empty or invalid")
        }
        var shape = eventShape
        for (i, layer) in layers.enumerated() {
            guard layer.inputShape == shape else {
                throw FlowError.invalidSpec("layer \(i) expects events of shape \(layer.inputShape), receives \(shape)")
            }
            shape = layer.outputShape
        }
        guard base.eventSize == size else {
            throw FlowError.invalidSpec("base distribution has \(base.eventSize) features, the flow \(size)")
        }
        let encoded = context?.outputSize ?? 0
        for (i, layer) in layers.enumerated() {
            guard let c = (layer as? any ConditionalLayer<Scalar>)?.contextFeatures, c > 0 else { continue }
            guard c == encoded else {
                throw FlowError.invalidSpec(encoded == 0
                    ? "layer \(i) reads \(c) context values but the flow has no context"
                    : "layer \(i) reads \(c) context values; the flow's context gives \(encoded)")
            }
        }
        var conditionalBase: (any ConditionalBaseDistribution<Scalar>)?
        if let conditional = base as? any ConditionalBaseDistribution<Scalar> {
            let c = conditional.contextFeatures
            guard c == encoded else {
                throw FlowError.invalidSpec(encoded == 0
                    ? "the base distribution (\(Swift.type(of: base).typeName)) reads \(c) context values but the flow has no context"
                    : "the base distribution (\(Swift.type(of: base).typeName)) reads \(c) context values; the flow's context gives \(encoded)")
            }
            conditionalBase = conditional
        }
        self.conditionalBase = conditionalBase
        self.eventShape = eventShape
        self.eventSize = size
        self.transform = Composition(layers: layers, eventShape: eventShape)
        self.base = base
        self.contextEncoder = context
        let rows = Self.chunkRows(eventSize: size)
        chunkRows = rows
        chunkWorkspaceBytes = Arena.bytes(Scalar.self, rows * size) + Arena.bytes(Double.self, rows)
            + transform.workspaceBytes(count: rows) + Arena.bytes(Scalar.self, rows * encoded)
            + (context?.workspaceBytes(rows: rows) ?? 0) + (conditionalBase?.workspaceBytes(count: rows) ?? 0)
        if MemoryBudget.isMeasuring {
            try MemoryBudget.charge(chunkWorkspaceBytes, "the scratch of one chunk of \(rows) rows")
        } else {
            _ = try MemoryBudget.measure {
                try MemoryBudget.charge(charged, "the model's parameters and derived state")
                try MemoryBudget.charge(chunkWorkspaceBytes, "the scratch of one chunk of \(rows) rows")
            }
        }
        let parameterBytes = parameters.reduce(0) { $0 + 2 * $1.count * MemoryLayout<Scalar>.stride }
        allocatedBytes = Swift.max(charged, parameterBytes) + chunkWorkspaceBytes
    }

    /// The layers, data side first.
    public var layers: [any FlowLayer<Scalar>] { transform.layers }

    /// Every learnable array: the layers' in order, then the base's, then the context embedding's.
    public var parameters: [Parameter<Scalar>] { transform.parameters + base.parameters + (contextEncoder?.parameters ?? []) }

    /// Recomputes state derived from the parameters (packed weights, LU products) after they
    /// changed: every layer's, the base's and the context embedding's.
    public func parametersDidChange() {
        transform.parametersDidChange()
        base.parametersDidChange()
        contextEncoder?.parametersDidChange()
    }

    /// The encoded context of chunk rows `first ..< first + n` (nil for an unconditional flow;
    /// zeros when the flow is conditional and `context` is nil).
    @inline(__always)
    func encodedContext(_ context: UnsafePointer<Scalar>?, first: Int, rows n: Int,
                        arena: inout Arena) -> UnsafePointer<Scalar>? {
        guard let encoder = contextEncoder else { return nil }
        let e = arena.take(Scalar.self, n * encoder.outputSize)
        encoder.encode(context.map { $0 + first * encoder.inputSize }, rows: n, into: e, arena: &arena)
        return UnsafePointer(e)
    }

    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    // MARK: - Batch computation on raw buffers

    /// Worker threads whose scratch fits the ``MemoryBudget`` next to the flow, for scratch of
    /// `bytes` per worker (at least one).
    func workersWithinBudget(scratch bytes: Int) -> Int {
        let room = MemoryBudget.limit - allocatedBytes
        return Swift.max(1, Swift.min(FlowRuntime.threadCount, room / Swift.max(bytes, 1)))
    }

    /// Splits `count` rows into chunks and runs `body(firstRow, rows, arena)` for each.
    ///
    /// Chunks that do not run — the scratch could not be allocated, or the caller's ``CallScope``
    /// was cancelled or failed — are handed to `skipped(firstRow, rows)` instead (the batch
    /// methods write NaN there); an allocation failure is recorded in the scope.
    private func chunked(_ count: Int, skipped: (Int, Int) -> Void, _ body: (Int, Int, inout Arena) -> Void) {
        guard count > 0 else { return }
        let rows = chunkRows
        let chunks = (count + rows - 1) / rows
        let scope = CallScope.current
        let workers = Swift.min(chunks, workersWithinBudget(scratch: chunkWorkspaceBytes))
        if workers == 1 {
            // One worker (batch-1 calls among them): no arrays, nothing allocated once warm.
            let ws: Workspace
            do { ws = try pool.checkOutOne(bytes: chunkWorkspaceBytes) } catch {
                scope?.record(error as? FlowError ?? .outOfMemory("cannot allocate scratch: \(error)"))
                skipped(0, count)
                return
            }
            defer { pool.checkIn(one: ws) }
            for c in 0..<chunks {
                let first = c * rows, n = min(rows, count - first)
                if let scope, scope.isStopped {
                    skipped(first, n)
                    continue
                }
                var arena = ws.arena()
                body(first, n, &arena)
            }
            return
        }
        let workspaces: [Workspace]
        do {
            workspaces = try pool.checkOut(workers, bytes: chunkWorkspaceBytes)
        } catch {
            scope?.record(error as? FlowError ?? .outOfMemory("cannot allocate scratch: \(error)"))
            skipped(0, count)
            return
        }
        defer { pool.checkIn(workspaces) }
        FlowRuntime.forEachChunk(chunks, workers: workspaces.count) { worker, c in
            let first = c * rows, n = min(rows, count - first)
            if let scope, scope.isStopped {
                skipped(first, n)
                return
            }
            var arena = workspaces[worker].arena()
            body(first, n, &arena)
        }
    }

    /// `z = f(x)` and `logDet[i] = log|det ∂f/∂x|(xᵢ)` (pass nil to skip). `x` and `z` may alias.
    /// A conditional flow reads one row of ``contextSize`` scalars per data row from `context`
    /// (nil: zeros); an unconditional flow ignores it.
    public func forward(_ x: UnsafePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>? = nil,
                        z: UnsafeMutablePointer<Scalar>, logDet: UnsafeMutablePointer<Double>?) {
        let d = eventSize
        chunked(count, skipped: { first, n in
            (z + first * d).update(repeating: .nan, count: n * d)
            logDet?.advanced(by: first).update(repeating: .nan, count: n)
        }) { first, n, arena in
            let out = z + first * d
            if UnsafePointer(out) != x + first * d { out.update(from: x + first * d, count: n * d) }
            let ld = arena.take(Double.self, chunkRows)
            ld.update(repeating: 0, count: n)
            let c = encodedContext(context, first: first, rows: n, arena: &arena)
            transform.forward(out, count: n, context: c, logDet: ld, arena: &arena)
            logDet?.advanced(by: first).update(from: ld, count: n)
        }
    }

    /// `x = f⁻¹(z)` and `logDet[i] = log|det ∂f⁻¹/∂z|(zᵢ)` (nil to skip). `z` and `x` may alias.
    /// `context` as for ``forward(_:count:context:z:logDet:)``.
    public func inverse(_ z: UnsafePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>? = nil,
                        x: UnsafeMutablePointer<Scalar>, logDet: UnsafeMutablePointer<Double>?) {
        let d = eventSize
        chunked(count, skipped: { first, n in
            (x + first * d).update(repeating: .nan, count: n * d)
            logDet?.advanced(by: first).update(repeating: .nan, count: n)
        }) { first, n, arena in
            let out = x + first * d
            if UnsafePointer(out) != z + first * d { out.update(from: z + first * d, count: n * d) }
            let ld = arena.take(Double.self, chunkRows)
            ld.update(repeating: 0, count: n)
            let c = encodedContext(context, first: first, rows: n, arena: &arena)
            transform.inverse(out, count: n, context: c, logDet: ld, arena: &arena)
            logDet?.advanced(by: first).update(from: ld, count: n)
        }
    }

    /// `out[i] = log p(xᵢ) = log p_Z(f(xᵢ)) + log|det ∂f/∂x|(xᵢ)` (`log p(xᵢ | cᵢ)` for a
    /// conditional flow; `context` as for ``forward(_:count:context:z:logDet:)``).
    public func logProb(_ x: UnsafePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>? = nil,
                        into out: UnsafeMutablePointer<Double>) {
        let d = eventSize
        chunked(count, skipped: { first, n in (out + first).update(repeating: .nan, count: n) }) { first, n, arena in
            let z = arena.take(Scalar.self, chunkRows * d)
            let ld = arena.take(Double.self, chunkRows)
            z.update(from: x + first * d, count: n * d)
            ld.update(repeating: 0, count: n)
            let c = encodedContext(context, first: first, rows: n, arena: &arena)
            transform.forward(z, count: n, context: c, logDet: ld, arena: &arena)
            if let conditionalBase {
                conditionalBase.logProb(z, count: n, context: c, into: out + first, arena: &arena)
            } else {
                base.logProb(z, count: n, into: out + first)
            }
            for i in 0..<n { out[first + i] += ld[i] }
        }
    }

    /// Draws `count` samples `x = f⁻¹(z)`, `z ~ p_Z` (standard deviation times `temperature`),
    /// into `out`; with `logProb`, also `log p(xᵢ)` under the flow at temperature 1.
    /// The base draw of sample `i` depends only on `(seed, i)`; results are bit-identical for
    /// any thread count. A conditional flow draws sample `i` from `p(x | cᵢ)` with `cᵢ` row `i` of
    /// `context` (nil: zeros); a conditional base draws `zᵢ` from `p_Z(· | eᵢ)` (its mean and
    /// scale at the encoded context, the standard deviation times `temperature`).
    public func sample(count: Int, seed: UInt64, context: UnsafePointer<Scalar>? = nil, into out: UnsafeMutablePointer<Scalar>,
                       logProb: UnsafeMutablePointer<Double>? = nil, temperature: Scalar = 1) {
        let d = eventSize
        chunked(count, skipped: { first, n in
            (out + first * d).update(repeating: .nan, count: n * d)
            logProb?.advanced(by: first).update(repeating: .nan, count: n)
        }) { first, n, arena in
            let x = out + first * d
            let ld = arena.take(Double.self, chunkRows)
            ld.update(repeating: 0, count: n)
            let c = encodedContext(context, first: first, rows: n, arena: &arena)
            if let conditionalBase {
                conditionalBase.sample(into: x, count: n, seed: seed, firstRow: UInt64(first), temperature: temperature,
                                       context: c, logProb: logProb.map { $0 + first }, arena: &arena)
            } else {
                base.sample(into: x, count: n, seed: seed, firstRow: UInt64(first), temperature: temperature)
                if let logProb {
                    base.logProb(x, count: n, into: logProb + first)
                }
            }
            transform.inverse(x, count: n, context: c, logDet: ld, arena: &arena)
            if let logProb {
                for i in 0..<n { logProb[first + i] -= ld[i] }
            }
        }
    }

    // MARK: - Tensor conveniences

    private func checkBatch(_ t: Tensor<Scalar>) throws {
        guard t.shape.count >= 1, t.eventSize == eventSize else {
            throw FlowError.shapeMismatch("expected a batch of events of shape \(eventShape), got a tensor of shape \(t.shape)")
        }
    }

    /// `(z, log|det J|)` for a batch `[N, event…]`.
    public func forward(_ x: Tensor<Scalar>) throws -> (Tensor<Scalar>, [Double]) {
        try checkBatch(x)
        var z = x
        var ld = [Double](repeating: 0, count: x.batchCount)
        x.scalars.withUnsafeBufferPointer { xp in
            z.scalars.withUnsafeMutableBufferPointer { zp in
                ld.withUnsafeMutableBufferPointer { lp in
                    forward(xp.baseAddress!, count: x.batchCount, z: zp.baseAddress!, logDet: lp.baseAddress!)
                }
            }
        }
        return (z, ld)
    }

    /// `(x, log|det ∂f⁻¹/∂z|)` for a batch `[N, event…]`.
    public func inverse(_ z: Tensor<Scalar>) throws -> (Tensor<Scalar>, [Double]) {
        try checkBatch(z)
        var x = z
        var ld = [Double](repeating: 0, count: z.batchCount)
        z.scalars.withUnsafeBufferPointer { zp in
            x.scalars.withUnsafeMutableBufferPointer { xp in
                ld.withUnsafeMutableBufferPointer { lp in
                    inverse(zp.baseAddress!, count: z.batchCount, x: xp.baseAddress!, logDet: lp.baseAddress!)
                }
            }
        }
        return (x, ld)
    }

    /// `log p(x)` per sample.
    public func logProb(_ x: Tensor<Scalar>) throws -> [Double] {
        try checkBatch(x)
        var out = [Double](repeating: 0, count: x.batchCount)
        x.scalars.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in logProb(xp.baseAddress!, count: x.batchCount, into: op.baseAddress!) }
        }
        return out
    }

    /// `count` samples as a `[count, event…]` tensor.
    public func sample(_ count: Int, seed: UInt64, temperature: Scalar = 1) -> Tensor<Scalar> {
        sampleAndLogProb(count, seed: seed, temperature: temperature, wantLogProb: false).0
    }

    /// `count` samples and their log-densities.
    public func sampleAndLogProb(_ count: Int, seed: UInt64) -> (Tensor<Scalar>, [Double]) {
        let (x, lp) = sampleAndLogProb(count, seed: seed, temperature: 1, wantLogProb: true)
        return (x, lp!)
    }

    private func sampleAndLogProb(_ count: Int, seed: UInt64, temperature: Scalar, wantLogProb: Bool)
        -> (Tensor<Scalar>, [Double]?)
    {
        var x = Tensor<Scalar>(shape: [count] + eventShape)
        var lp = [Double](repeating: 0, count: wantLogProb ? count : 0)
        x.scalars.withUnsafeMutableBufferPointer { xp in
            lp.withUnsafeMutableBufferPointer { lpp in
                sample(count: count, seed: seed, into: xp.baseAddress!,
                       logProb: wantLogProb ? lpp.baseAddress : nil, temperature: temperature)
            }
        }
        return (x, wantLogProb ? lp : nil)
    }
}
