#if canImport(Glibc)
import Glibc
#endif

/// One call into the engine as the C API sees it: whether it was cancelled (``CancellationSource``)
/// and the first failure its worker threads hit (scratch that could not be allocated).
///
/// Batch methods such as ``NormalizingFlow/logProb(_:count:context:into:)`` cannot throw; inside
/// ``run(_:_:)`` they stop taking new chunks once the scope is cancelled or failed, long-running
/// layers (the ODE solves of ``ContinuousFlow``) check ``isStopped`` at every function
/// evaluation, and ``run(_:_:)`` then throws ``FlowError/cancelled(_:)`` or the failure.
/// ``FlowRuntime/forEachChunk(_:_:)`` hands the caller's scope to its worker threads.
public final class CallScope: @unchecked Sendable {
    private let source: CancellationSource?
    private let generation: UInt64
    private let mutex = PosixMutex()
    private var failure: FlowError?

    /// A scope cancelled by `source` (nil: never cancelled).
    public init(cancellation source: CancellationSource?) {
        self.source = source
        generation = source?.current ?? 0
    }

    /// Whether the scope's ``CancellationSource`` was cancelled since the scope began.
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

    /// The calling thread's scope, if it runs inside ``run(_:_:)`` (or is a worker of one).
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

    /// Runs `body` inside `scope`: throws at once if the scope is already cancelled, and after
    /// `body` the scope's failure or cancellation (``check()``).
    public static func run<R>(_ scope: CallScope, _ body: () throws -> R) throws -> R {
        try scope.check()
        let result = try with(scope, body)
        try scope.check()
        return result
    }
}
