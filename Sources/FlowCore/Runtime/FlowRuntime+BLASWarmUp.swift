import CBLAS
import Glibc
import Synchronization

/// Warming OpenBLAS's work buffers before flows compute.
///
/// OpenBLAS 0.3.21 (Debian's pthread build) gives each call that is in progress one of a table
/// of work buffers, the first one free when the call starts, into which it packs panels of the
/// operands. A buffer is a lazily mapped region: its pages are faulted in only when packing
/// first writes them. The Haswell/Zen SGEMM kernel prefetches (`prefetcht1`) a little past the
/// panel it is working on; where that lands on a page nothing has written yet, each prefetch
/// costs a page-table walk that finds no page (and caches no translation), every iteration
/// (`perf annotate`: most of the kernel's samples sit right after that instruction). Small
/// products with a long inner dimension, such as the weight and input gradients of the image
/// conditioners' convolutions (`m = 64, n = 256, k = 216` with `Aᵀ`; `m = 108, n = 64, k = 256`
/// with `Bᵀ`), then run two to three times slower, until some larger product has written those
/// pages of the buffer *that call happens to get*.
///
/// So the library runs one 512 × 512 × 512 product on as many threads at once as it will
/// compute on (``FlowRuntime/threadCount``), which makes each of the first `threadCount`
/// buffers fault its pages in: those are the buffers its workers get (unless other code in
/// the process runs OpenBLAS products at the same time). A single smaller product on the
/// calling thread warms only the first buffer, and only part of it. (bench/README.md has the
/// measurements, from `swiftflows-bench --filter glow-3x16x16 --threads N`.)
extension FlowRuntime {
    /// Side of the square warm-up product (512³: 268 MFLOP, about 8 ms on one core here).
    static var warmUpSize: Int { 512 }

    /// Most buffers warmed (each costs one product and about 1 MiB of resident buffer pages);
    /// a ``threadCount`` above it leaves the extra workers' buffers cold.
    static var warmUpSlotLimit: Int { 16 }

    /// Runs the warm-up product on `threads` threads (`threads − 1` new ones and the calling
    /// thread) that first wait for each other, so their calls overlap and hold distinct
    /// buffers. Returns how many of them started their product after all had arrived (all of
    /// them unless thread creation failed or a thread waited longer than a second).
    @discardableResult
    static func warmUpBLAS(threads: Int) -> Int {
        let count = Swift.max(1, Swift.min(threads, warmUpSlotLimit))
        let run = BLASWarmUp(threads: count, size: warmUpSize)
        let context = Unmanaged.passRetained(run)
        var spawned: [pthread_t] = []
        for _ in 1..<count {
            var thread = pthread_t()
            let created = pthread_create(&thread, nil, { raw in
                let run = Unmanaged<BLASWarmUp>.fromOpaque(raw!).takeUnretainedValue()
                run.enter()
                return nil
            }, context.toOpaque())
            if created == 0 { spawned.append(thread) } else { run.giveUpOne() }
        }
        run.enter()
        for thread in spawned { pthread_join(thread, nil) }
        context.release()
        return run.together.load(ordering: .acquiring)
    }
}

/// One warm-up: a rendezvous of `threads` threads, then one SGEMM on each.
private final class BLASWarmUp: @unchecked Sendable {
    let threads: Int
    let size: Int
    /// The operands, shared by every thread (each has its own product).
    let a: [Float], b: [Float]
    /// Threads that arrived (or will never arrive: failed creations count as arrived).
    let arrived = Atomic<Int>(0)
    /// Threads that saw every other one arrive before starting their product.
    let together = Atomic<Int>(0)

    init(threads: Int, size: Int) {
        self.threads = threads
        self.size = size
        a = [Float](repeating: 0.5, count: size * size)
        b = [Float](repeating: 0.25, count: size * size)
    }

    func giveUpOne() { arrived.wrappingAdd(1, ordering: .acquiringAndReleasing) }

    /// Waits (yielding, at most one second) for every thread, then multiplies.
    func enter() {
        arrived.wrappingAdd(1, ordering: .acquiringAndReleasing)
        var start = timespec(), now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        while arrived.load(ordering: .acquiring) < threads {
            clock_gettime(CLOCK_MONOTONIC, &now)
            if (now.tv_sec - start.tv_sec) * 1_000_000_000 + (now.tv_nsec - start.tv_nsec) > 1_000_000_000 { break }
            sched_yield()
        }
        if arrived.load(ordering: .acquiring) >= threads { together.wrappingAdd(1, ordering: .relaxed) }
        let n = size
        var c = [Float](repeating: 0, count: n * n)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(n), blasint(n), blasint(n), 1, a, blasint(n),
                    b, blasint(n), 0, &c, blasint(n))
    }
}
