#if canImport(Glibc)
import Glibc
#endif

/// One call into the engine as the C API sees it: whether it was cancelled (``CancellationSource``)
/// and the first failure its worker threads hit (scratch that could not be allocated).
///
/// Batch methods such as ``NormalizingFlow/logProb(_:count:context:into:)`` cannot throw; inside
/// ``run(cancellation:since:_:)`` they stop taking new chunks once the scope is cancelled or
/// failed, long-running layers (the ODE solves of ``ContinuousFlow``) check ``isStopped`` at every
/// function evaluation, and ``run(cancellation:since:_:)`` then throws ``FlowError/cancelled(_:)``
/// or the failure. ``FlowRuntime/forEachChunk(_:_:)`` hands the caller's scope to its worker
/// threads.
///
/// Each thread keeps one scope object and reuses it for its calls, so a call allocates nothing
/// for its scope (batch-1 calls allocate nothing at all; `make test-alloc`).
public final class CallScope: @unchecked Sendable {
    private var source: CancellationSource?
    private var generation: UInt64 = 0
    private let mutex = PosixMutex()
    private var failure: FlowError?

    private init() {}

    /// Starts the scope of a call on `source` that arrived at generation `start`.
    private func begin(_ source: CancellationSource?, since start: UInt64) {
        self.source = source
        generation = start
        mutex.withLock { failure = nil }
    }

    /// Whether the scope's ``CancellationSource`` was cancelled since the call arrived.
    public var isCancelled: Bool {
        guard let source else { return false }
        return source.current != generation
    }

    /// Whether work in this scope should stop: cancelled, or a failure was recorded.
    public var isStopped: Bool { isCancelled || mutex.withLock { failure != nil } }

    /// Records `error` (the first one recorded wins).
    public func record(_ error: FlowError) {
        mutex.withLock { if failure == nil { failure = error } }
    }

    /// Throws the recorded failure, else ``FlowError/cancelled(_:)`` if cancelled.
    public func check() throws {
        if let failure = mutex.withLock({ failure }) { throw failure }
        if isCancelled { throw FlowError.cancelled("the call was cancelled (sf_cancel)") }
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// The scope object each thread reuses (released when the thread exits).
    private static let cacheKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { pointer in pointer.map { Unmanaged<CallScope>.fromOpaque($0).release() } }
        return key
    }()

    /// The calling thread's scope, if it runs inside ``run(cancellation:since:_:)`` (or is a
    /// worker of one).
    public static var current: CallScope? {
        guard let p = pthread_getspecific(key) else { return nil }
        return Unmanaged<CallScope>.fromOpaque(p).takeUnretainedValue()
    }

    /// Runs `body` with `scope` as the calling thread's scope (restoring the previous one after).
    static func with<R>(_ scope: CallScope?, _ body: () throws -> R) rethrows -> R {
        let previous = pthread_getspecific(key)
        pthread_setspecific(key, scope.map { Unmanaged.passUnretained($0).toOpaque() })
        defer { pthread_setspecific(key, previous) }
        return try withExtendedLifetime(scope) { try body() }
    }

    /// Runs `body` in a scope that `source` cancels once its generation moves past `start` (take
    /// `start` from ``CancellationSource/current`` when the call arrives, before it waits for a
    /// lock, so a call still waiting is cancelled too): throws at once if it already has, and
    /// after `body` the scope's failure or cancellation (``check()``).
    public static func run<R>(cancellation source: CancellationSource?, since start: UInt64,
                              _ body: () throws -> R) throws -> R {
        let scope: CallScope
        if current == nil {
            if let cached = pthread_getspecific(cacheKey) {
                scope = Unmanaged<CallScope>.fromOpaque(cached).takeUnretainedValue()
            } else {
                scope = CallScope()
                pthread_setspecific(cacheKey, Unmanaged.passRetained(scope).toOpaque())
            }
        } else {
            scope = CallScope()  // a call inside a call (rare): its own scope
        }
        scope.begin(source, since: start)
        defer { scope.begin(nil, since: 0) }
        try scope.check()
        let result = try with(scope, body)
        try scope.check()
        return result
    }
}
