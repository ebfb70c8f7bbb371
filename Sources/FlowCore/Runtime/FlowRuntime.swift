import CBLAS
import Dispatch
import Glibc
import Synchronization

/// Process-wide execution: the installed ``RuntimeConfiguration`` and the worker threads.
///
/// The one thread knob: ``threadCount`` (initially ``RuntimeConfiguration/threads``, else the
/// number of active processors). Large batches are cut into fixed chunks of
/// ``NormalizingFlow/chunkRows`` rows, independent of the thread count, and chunks are spread
/// over threads; so results are bit-identical for any thread count. OpenBLAS's own threading is
/// switched off (its threads would multiply with ours), and its work buffers are warmed for as
/// many threads as ours (``warmUpBLAS(threads:)``, FlowRuntime+BLASWarmUp.swift).
public enum FlowRuntime {
    private static let lock = PosixMutex()
    nonisolated(unsafe) private static var _configuration = RuntimeConfiguration()
    nonisolated(unsafe) private static var _threadCount: Int = {
        _ = blasConfigured
        return defaultThreadCount
    }()

    /// The settings in force (initially the defaults; hosts install the process environment's).
    /// Setting it also sets ``threadCount`` when the new configuration names a thread count.
    public static var configuration: RuntimeConfiguration {
        get { lock.withLock { _configuration } }
        set {
            lock.withLock { _configuration = newValue }
            if let threads = newValue.threads { threadCount = threads }
        }
    }

    /// The number of active processors.
    private static var defaultThreadCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// OpenBLAS work buffers warmed so far (``warmUpBLAS(threads:)``); guarded by `warmLock`.
    nonisolated(unsafe) private static var warmedThreads = 0
    private static let warmLock = PosixMutex()

    private static let blasConfigured: Bool = {
        openblas_set_num_threads(1)
        warmUp(upTo: defaultThreadCount)
        return true
    }()

    /// Warms OpenBLAS's buffers for `threads` concurrent workers unless that many are warm.
    private static func warmUp(upTo threads: Int) {
        warmLock.withLock {
            let wanted = min(threads, warmUpSlotLimit)
            guard wanted > warmedThreads else { return }
            warmUpBLAS(threads: wanted)
            warmedThreads = wanted
        }
    }

    /// Switches OpenBLAS's threading off (once per process). Every flow calls it when built, so
    /// every matrix product (inference, training, initialisation) runs under the same setting
    /// and results never depend on which call came first.
    static func configureBLAS() { _ = blasConfigured }

    /// Worker threads for batch computations (1...256).
    public static var threadCount: Int {
        get { lock.withLock { _threadCount } }
        set {
            let count = min(max(newValue, 1), 256)
            _ = blasConfigured
            warmUp(upTo: count)
            lock.withLock { _threadCount = count }
        }
    }

    /// Most bytes one call may allocate (``MemoryBudget``; ``RuntimeConfiguration/memoryLimit``),
    /// at least ``MemoryBudget/minimumLimit``.
    public static var memoryLimit: Int {
        get { configuration.memoryLimit }
        set { lock.withLock { _configuration.memoryLimit = Swift.max(newValue, MemoryBudget.minimumLimit) } }
    }

    /// Runs `body(chunk)` for chunks `0..<chunks`, over up to ``threadCount`` threads. Each
    /// worker takes the next unclaimed chunk (one atomic counter), so a thread slowed by other
    /// load on its core does fewer chunks instead of holding up the call; what a chunk computes
    /// never depends on which thread runs it. The workers run in the caller's ``CallScope``.
    static func forEachChunk(_ chunks: Int, _ body: (Int) -> Void) {
        forEachChunk(chunks, workers: threadCount) { _, c in body(c) }
    }

    /// ``forEachChunk(_:_:)`` over at most `workers` threads, with the worker's index
    /// (`0..<min(workers, chunks)`; no two workers share an index at the same time) passed to
    /// `body(worker, chunk)`.
    static func forEachChunk(_ chunks: Int, workers limit: Int, _ body: (Int, Int) -> Void) {
        _ = blasConfigured
        let workers = min(limit, chunks)
        if workers <= 1 {
            for c in 0..<chunks { body(0, c) }
            return
        }
        let scope = CallScope.current
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            CallScope.with(scope) {
                while true {
                    let c = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard c < chunks else { return }
                    body(worker, c)
                }
            }
        }
    }
}
