#if canImport(Glibc)
import Glibc
#endif

/// The memory limit: how many bytes one call may allocate, checked before the memory is taken,
/// and allocations that report failure instead of stopping the process.
///
/// Sizes in spec JSON and model files are untrusted: a 70-byte spec or a 13 KB file can declare
/// layers of hundreds of millions of parameters. Everything a model holds in proportion to its
/// size (parameter values and gradients, packed copies of weights, masks, the sequential plans of
/// autoregressive layers, one chunk's scratch) is *charged* to the construction's ledger before
/// it is allocated, and a construction whose charges pass ``limit`` fails with
/// ``FlowError/limitExceeded(_:)`` before the memory is touched. Loading also charges the file's
/// bytes (three copies while HDF5 opens the image); training charges its optimiser state, gradient
/// copies and data copies. Large buffers come from ``allocate(_:count:_:)``, whose failure is
/// ``FlowError/outOfMemory(_:)``.
///
/// **Failing fast.** Builders that know their whole size up front (the conditioner networks)
/// ``reserve(_:_:_:)`` it before building, and ``LayerRegistry`` first runs a *sizing pass* over
/// all layers of a flow (``estimate(_:)``): every layer's construction stops at its first
/// reservation or allocation, after charging it. A spec or file whose layers together pass the
/// limit is refused before the first layer is built; the real construction then enforces the
/// limit exactly.
///
/// The limit is process-wide (``RuntimeConfiguration/memoryLimit``: `SWIFTFLOWS_MEMORY_LIMIT`,
/// `sf_set_memory_limit`); default ``defaultLimit``.
public enum MemoryBudget {
    /// 2 GiB: a model of about 170 million parameters with its gradients and packed weights.
    public static let defaultLimit = 2 << 30
    /// The smallest limit that can be installed (1 MiB).
    public static let minimumLimit = 1 << 20
    /// Allocations of at least ``largeAllocation`` bytes succeed only if this much more could be
    /// allocated too (512 MiB): the Swift arrays a construction builds after them (index arrays of
    /// up to 2²⁴ features, messages) must not be the allocation that fails, since a failed Swift
    /// allocation stops the process.
    public static let headroom = 512 << 20
    /// The size from which an allocation keeps ``headroom`` (64 MiB).
    public static let largeAllocation = 64 << 20

    /// The limit in force (``FlowRuntime/configuration``).
    public static var limit: Int { FlowRuntime.configuration.memoryLimit }

    /// The bytes charged by one construction (and the constructions nested in it).
    final class Ledger {
        let limit: Int
        var total = 0
        /// Bytes a ``reserve(_:_:_:)`` charged ahead and its body has not used yet.
        var prepaid = 0
        /// Whether this is a sizing pass (``estimate(_:)``): reservations and allocations stop
        /// the construction after charging.
        var sizing = false
        init(limit: Int) { self.limit = limit }
    }

    /// Ends a construction in a sizing pass once it charged its first reservation or allocation.
    private struct SizingStop: Error {}

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// The calling thread's innermost ledger, if any.
    private static var current: Ledger? {
        guard let p = pthread_getspecific(key) else { return nil }
        return Unmanaged<Ledger>.fromOpaque(p).takeUnretainedValue()
    }

    /// The bytes charged so far to the calling thread's ledger (0 outside one).
    public static var charged: Int { current?.total ?? 0 }

    /// Whether the calling thread runs inside ``measure(_:)``.
    public static var isMeasuring: Bool { current != nil }

    /// Whether the calling thread runs a sizing pass (``estimate(_:)``).
    public static var isSizing: Bool { current?.sizing ?? false }

    /// A sizing pass: runs each of `constructions` in sizing mode (every construction stops at its
    /// first reservation or allocation; any error it throws ends it too) and returns the bytes
    /// they charged together — a lower bound of what building them takes, found without
    /// allocating. Nothing is added to the enclosing ledger.
    public static func estimate(_ constructions: [() throws -> Void]) -> Int {
        let outer = current
        let ledger = Ledger(limit: Int.max)
        ledger.sizing = true
        let retained = Unmanaged.passRetained(ledger)
        pthread_setspecific(key, retained.toOpaque())
        defer {
            pthread_setspecific(key, outer.map { Unmanaged.passUnretained($0).toOpaque() })
            retained.release()
        }
        for construction in constructions {
            do { try construction() } catch {}
        }
        return ledger.total
    }

    /// The bytes still free in the calling thread's ledger (the limit outside one).
    public static var remaining: Int {
        guard let ledger = current else { return limit }
        return ledger.limit - ledger.total
    }

    /// Charges `bytes` for `what` up front, then runs `body`, whose own charges are taken from
    /// that prepayment first (so they are not counted twice). In a sizing pass the body does not
    /// run. For builders that know their whole size before building (a conditioner network:
    /// weights, gradients and packed copies).
    public static func reserve<R>(_ bytes: Int, _ what: @autoclosure () -> String, _ body: () throws -> R) throws -> R {
        try charge(bytes, what())
        guard let ledger = current else { return try body() }
        if ledger.sizing { throw SizingStop() }
        let saved = ledger.prepaid
        ledger.prepaid = bytes
        defer { ledger.prepaid = saved }
        return try body()
    }

    /// Runs `body` with a ledger: every ``charge(_:_:)`` on this thread inside it adds up, and
    /// the sum may not pass ``limit``. Nested ledgers add their total to the enclosing one.
    /// - Returns: `body`'s result and the bytes it charged.
    public static func measure<R>(_ body: () throws -> R) throws -> (result: R, bytes: Int) {
        let outer = current
        let ledger = Ledger(limit: outer.map { $0.limit - $0.total } ?? limit)
        ledger.sizing = outer?.sizing ?? false
        let retained = Unmanaged.passRetained(ledger)
        pthread_setspecific(key, retained.toOpaque())
        defer {
            pthread_setspecific(key, outer.map { Unmanaged.passUnretained($0).toOpaque() })
            retained.release()
        }
        let result = try body()
        outer?.total += ledger.total
        return (result, ledger.total)
    }

    /// Charges `bytes` for `what` (e.g. "parameter /layers/0003/weight_0") to the calling
    /// thread's ledger; outside a ledger, checks `bytes` alone against the limit.
    /// - Throws: ``FlowError/limitExceeded(_:)`` naming `what`, the bytes and the limit.
    public static func charge(_ bytes: Int, _ what: @autoclosure () -> String) throws {
        guard bytes >= 0 else { throw FlowError.limitExceeded("\(what()): a negative size") }
        guard let ledger = current else {
            guard bytes <= limit else { throw exceeded(bytes, what(), total: bytes, limit: limit) }
            return
        }
        let covered = Swift.min(ledger.prepaid, bytes)
        ledger.prepaid -= covered
        let (total, overflow) = ledger.total.addingReportingOverflow(bytes - covered)
        guard !overflow, total <= ledger.limit else {
            throw exceeded(bytes, what(), total: overflow ? Int.max : total, limit: ledger.limit)
        }
        ledger.total = total
    }

    /// `count` elements of `T` in bytes, or ``FlowError/limitExceeded(_:)`` on overflow.
    public static func bytes<T>(_: T.Type, _ count: Int, _ what: @autoclosure () -> String) throws -> Int {
        let (bytes, overflow) = Swift.max(count, 1).multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard count >= 0, !overflow else { throw FlowError.limitExceeded("\(what()): \(count) elements overflow the address space") }
        return bytes
    }

    /// Charges and allocates `count` zeroed elements of `T`, 64-byte aligned; release with
    /// ``free(_:)``.
    /// - Throws: ``FlowError/limitExceeded(_:)`` past the limit, ``FlowError/outOfMemory(_:)``
    ///   when the system has no memory for it.
    public static func allocate<T>(_ type: T.Type, count: Int, _ what: @autoclosure () -> String) throws
        -> UnsafeMutablePointer<T>
    {
        let size = try bytes(type, count, what())
        try charge(size, what())
        if isSizing { throw SizingStop() }
        return try allocateUncharged(type, count: count, what())
    }

    /// ``allocate(_:count:_:)`` without charging (for memory already charged, e.g. scratch a
    /// construction accounted for).
    public static func allocateUncharged<T>(_ type: T.Type, count: Int, _ what: @autoclosure () -> String) throws
        -> UnsafeMutablePointer<T>
    {
        if isSizing { throw SizingStop() }
        let size = try bytes(type, count, what())
        if size >= largeAllocation {
            let (probeSize, overflow) = size.addingReportingOverflow(headroom)
            guard !overflow, addressSpaceAvailable(probeSize) else {
                throw FlowError.outOfMemory("cannot allocate \(size) bytes for \(what()) and keep \(headroom) bytes free: out of memory")
            }
        }
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, size) == 0, let raw else {
            throw FlowError.outOfMemory("cannot allocate \(size) bytes for \(what()): out of memory")
        }
        memset(raw, 0, size)
        return raw.bindMemory(to: T.self, capacity: Swift.max(count, 1))
    }

    /// One buffer of `parameter.count` elements per parameter (``allocate(_:count:_:)``, named
    /// "the packed copy of …"): all of them, or none when one fails (those already allocated
    /// are released before the error propagates).
    static func allocatePackedCopies<T: FlowScalar>(of parameters: [Parameter<T>]) throws -> [UnsafeMutablePointer<T>] {
        var buffers: [UnsafeMutablePointer<T>] = []
        do {
            for p in parameters { buffers.append(try allocate(T.self, count: p.count, "the packed copy of \(p.name)")) }
        } catch {
            for b in buffers { free(b) }
            throw error
        }
        return buffers
    }

    /// Releases memory from ``allocate(_:count:_:)``.
    public static func free<T>(_ pointer: UnsafeMutablePointer<T>) {
        Glibc.free(UnsafeMutableRawPointer(pointer))
    }

    /// Releases memory from ``allocate(_:count:_:)`` held as a raw pointer.
    public static func free(_ pointer: UnsafeMutableRawPointer) {
        Glibc.free(pointer)
    }

    /// Checks that `bytes` can be allocated right now, with ``headroom`` to spare for large sizes
    /// (allocates and releases them), before a Swift array of that size is built (an array whose
    /// allocation fails stops the process).
    /// - Throws: ``FlowError/outOfMemory(_:)``.
    public static func requireAvailable(_ bytes: Int, _ what: @autoclosure () -> String) throws {
        guard bytes > 1 << 20, !isSizing else { return }
        let (probeSize, overflow) = bytes.addingReportingOverflow(bytes >= largeAllocation ? headroom : 0)
        guard !overflow, addressSpaceAvailable(probeSize) else {
            throw FlowError.outOfMemory("cannot allocate \(bytes) bytes for \(what()): out of memory")
        }
    }

    /// Whether `bytes` of address space can be mapped right now: maps them (inaccessible, no
    /// swap reserved) and unmaps them again. A system call, so the compiler cannot remove it as
    /// it may remove an unused `malloc`/`free` pair; it sees address-space caps (`RLIMIT_AS`)
    /// and a full address space, not how much physical memory is free (the limit covers that).
    static func addressSpaceAvailable(_ bytes: Int) -> Bool {
        guard let p = mmap(nil, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              p != UnsafeMutableRawPointer(bitPattern: -1) else { return false }
        munmap(p, bytes)
        return true
    }

    private static func exceeded(_ bytes: Int, _ what: String, total: Int, limit: Int) -> FlowError {
        FlowError.limitExceeded("\(what) needs \(bytes) bytes (\(total) in all), more than the memory limit of \(limit) bytes "
            + "(raise it with sf_set_memory_limit, swiftflows.set_memory_limit or SWIFTFLOWS_MEMORY_LIMIT)")
    }
}
