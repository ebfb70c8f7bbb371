import CBLAS
import FlowCore
import FlowModelFile
import FlowData
#if canImport(Glibc)
import Glibc
#endif

/// The machine's matrix-multiply rate, the yardstick of the "% of SGEMM" column.
///
/// Times `cblas_sgemm` (OpenBLAS, row-major, no transposes) on 1024 × 1024 × 1024 float32
/// matrices, `2·1024³` FLOPs per call, with OpenBLAS running ``FlowRuntime/threadCount``
/// threads — the thread count the flow operations of the same run use — and restores OpenBLAS's
/// previous thread setting afterwards (the library keeps OpenBLAS single-threaded). The run
/// measures it at its start and at its end (at least 0.5 s each) and reports the median of all
/// calls.
struct SGEMMReference {
    static let size = 1024
    static var flopsPerCall: Double { 2 * Double(size) * Double(size) * Double(size) }

    let threads: Int
    /// GFLOP/s of every timed call.
    private(set) var rates: [Double] = []

    init(threads: Int) { self.threads = threads }

    /// Appends rates measured elsewhere (an SGEMM child process).
    mutating func append(_ more: [Double]) { rates += more }

    var summary: Summary? { rates.isEmpty ? nil : Summary(rates) }

    /// Times at least `calls` calls, and more until `seconds` have passed, after one warm-up
    /// call, and appends their rates.
    mutating func measure(calls: Int, seconds: Double) {
        let n = Self.size
        let a = AlignedBuffer<Float>(count: n * n, repeating: 0)
        let b = AlignedBuffer<Float>(count: n * n, repeating: 0)
        let c = AlignedBuffer<Float>(count: n * n, repeating: 0)
        defer { a.free(); b.free(); c.free() }
        var rng = BenchRandom(seed: 42)
        for i in 0..<(n * n) {
            a.pointer[i] = Float(rng.uniform(-1, 1))
            b.pointer[i] = Float(rng.uniform(-1, 1))
        }
        _ = FlowRuntime.threadCount  // the library configures OpenBLAS on first use
        let previous = openblas_get_num_threads()
        openblas_set_num_threads(Int32(threads))
        defer { openblas_set_num_threads(previous) }
        func call() {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(n), blasint(n), blasint(n),
                        1, a.pointer, blasint(n), b.pointer, blasint(n), 0, c.pointer, blasint(n))
        }
        call()
        let start = monotonicSeconds()
        var done = 0
        while done < calls || monotonicSeconds() - start < seconds {
            let t0 = monotonicSeconds()
            call()
            let t = monotonicSeconds() - t0
            rates.append(Self.flopsPerCall / t / 1e9)
            done += 1
        }
    }
}
