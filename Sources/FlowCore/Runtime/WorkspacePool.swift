/// A thread-safe pool of ``Workspace``s, so concurrent calls on one flow never share scratch.
///
/// A batch call checks out one workspace per worker thread (``checkOut(_:bytes:)``), reserved
/// with fallible allocations, and checks them in afterwards; the pool keeps them for the next
/// call, so steady-state calls allocate nothing.
final class WorkspacePool: @unchecked Sendable {
    private let lock = PosixMutex()
    private var free: [Workspace] = []

    /// Up to `wanted` workspaces of at least `bytes` bytes each, at least one: fewer when memory
    /// runs out after the first (a call then runs on fewer threads, with the same results).
    /// - Throws: ``FlowError/outOfMemory(_:)`` or ``FlowError/limitExceeded(_:)`` when not even
    ///   one workspace can be reserved.
    func checkOut(_ wanted: Int, bytes: Int) throws -> [Workspace] {
        let target = Swift.max(wanted, 1)
        var candidates: [Workspace] = lock.withLock {
            let n = Swift.min(target, free.count)
            let taken = Array(free.suffix(n))
            free.removeLast(n)
            return taken
        }
        while candidates.count < target { candidates.append(Workspace()) }
        var ready: [Workspace] = []
        var failure: Error?
        for ws in candidates {
            if failure == nil {
                do {
                    try ws.reserve(bytes: bytes)
                    ready.append(ws)
                    continue
                } catch {
                    failure = error
                }
            }
            checkIn([ws])
        }
        if ready.isEmpty, let failure { throw failure }
        return ready
    }

    /// Returns workspaces from ``checkOut(_:bytes:)``.
    func checkIn(_ workspaces: [Workspace]) {
        lock.withLock { free.append(contentsOf: workspaces) }
    }

    /// One workspace of at least `bytes` bytes, without the arrays of ``checkOut(_:bytes:)``
    /// (a single-worker call allocates nothing once the pool holds a workspace); give it back
    /// with ``checkIn(one:)``.
    func checkOutOne(bytes: Int) throws -> Workspace {
        let ws = lock.withLock { free.popLast() } ?? Workspace()
        do {
            try ws.reserve(bytes: bytes)
        } catch {
            checkIn(one: ws)
            throw error
        }
        return ws
    }

    /// Returns a workspace from ``checkOutOne(bytes:)``.
    func checkIn(one workspace: Workspace) {
        lock.withLock { free.append(workspace) }
    }

    /// Runs `body` with one workspace of at least `bytes` bytes.
    func withWorkspace<R>(bytes: Int, _ body: (Workspace) throws -> R) throws -> R {
        let ws = try checkOut(1, bytes: bytes)
        defer { checkIn(ws) }
        return try body(ws[0])
    }
}
