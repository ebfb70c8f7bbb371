import CBLAS
import Dispatch
import Glibc
import Synchronization

/// Process-wide execution settings.
///
/// The one thread knob: ``threadCount`` (initially the `SWIFTFLOWS_NUM_THREADS` environment
/// variable, else the number of active processors). Large batches are cut into fixed chunks of
/// ``NormalizingFlow/chunkRows`` rows, independent of the thread count, and chunks are spread
/// over threads; so results are bit-identical for any thread count. OpenBLAS's own threading is
/// switched off (its threads would multiply with ours).
public enum FlowRuntime {
    private static let lock = PosixMutex()
    nonisolated(unsafe) private static var _threadCount: Int = {
        _ = blasConfigured
        if let p = getenv("SWIFTFLOWS_NUM_THREADS"), let n = Int(String(cString: p)), n > 0 {
            return min(n, 256)
        }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }()

    private static let blasConfigured: Bool = {
        openblas_set_num_threads(1)
        warmUpBLAS()
        return true
    }()

    /// Runs one 64 × 64 × 1024 single-precision product (8 MFLOP, well under a millisecond),
    /// once per process, before any flow computes.
    ///
    /// OpenBLAS 0.3.21 (Debian bookworm, Zen kernels) runs small products with a transposed
    /// operand, such as the weight and input gradients of the image conditioners' convolutions
    /// (e.g. `m = 108, n = 64, k = 256` with `Bᵀ`), about three times slower in a process that has
    /// not yet run a product whose packed panels exceed 256 in `k` or `n`; the state that
    /// changes is inside OpenBLAS and process-wide (one such product fixes every thread). Measured
    /// (`swiftflows-bench --filter glow-3x16x16/train --threads 1`, each row in its own process):
    /// the 3×16×16 Glow's training step at batch 64 took 142–149 ms without this product and
    /// 102–103 ms with it (74 → 63 ms on two threads).
    private static func warmUpBLAS() {
        let m = 64, n = 64, k = 1024
        let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(m), blasint(n), blasint(k), 1, a, blasint(k), b,
                    blasint(n), 0, &c, blasint(n))
    }

    /// Switches OpenBLAS's threading off (once per process). Every flow calls it when built, so
    /// every matrix product (inference, training, initialisation) runs under the same setting
    /// and results never depend on which call came first.
    static func configureBLAS() { _ = blasConfigured }

    /// Worker threads for batch computations (1...256).
    public static var threadCount: Int {
        get { lock.withLock { _threadCount } }
        set { lock.withLock { _threadCount = min(max(newValue, 1), 256) } }
    }

    /// Runs `body(chunk)` for chunks `0..<chunks`, over up to ``threadCount`` threads. Each
    /// worker takes the next unclaimed chunk (one atomic counter), so a thread slowed by other
    /// load on its core does fewer chunks instead of holding up the call; what a chunk computes
    /// never depends on which thread runs it.
    static func forEachChunk(_ chunks: Int, _ body: (Int) -> Void) {
        _ = blasConfigured
        let workers = min(threadCount, chunks)
        if workers <= 1 {
            for c in 0..<chunks { body(c) }
            return
        }
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                let c = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard c < chunks else { return }
                body(c)
            }
        }
    }
}

/// A thread-safe pool of ``Workspace``s, so concurrent calls on one flow never share scratch.
final class WorkspacePool: @unchecked Sendable {
    private let lock = PosixMutex()
    private var free: [Workspace] = []

    func withWorkspace<R>(bytes: Int, _ body: (Workspace) throws -> R) rethrows -> R {
        let ws = lock.withLock { free.popLast() } ?? Workspace()
        defer { lock.withLock { free.append(ws) } }
        ws.reserve(bytes: bytes)
        return try body(ws)
    }
}
