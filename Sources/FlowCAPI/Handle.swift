import FlowCore
import FlowModelFile
#if canImport(Glibc)
import Glibc
#endif

/// The object behind an `sf_model*`: a flow in Float32, the readers-writer lock that lets
/// inference calls run concurrently while training takes the model exclusively, and the
/// ``CancellationSource`` that `sf_cancel` signals. Retained by `passRetained` in the creating
/// call and released by `sf_model_free`.
final class ModelHandle {
    let flow: NormalizingFlow<Float>
    let lock = ReadWriteLock()
    let cancellation = CancellationSource()
    init(_ flow: NormalizingFlow<Float>) { self.flow = flow }

    var opaque: OpaquePointer { OpaquePointer(Unmanaged.passRetained(self).toOpaque()) }

    static func from(_ pointer: OpaquePointer) -> ModelHandle {
        Unmanaged<ModelHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }
}

/// Longest C string (spec JSON, path) the API reads.
let maxCStringBytes = Limits.maxSpecBytes

/// A C string argument as a Swift string, or an error for NULL / too long / invalid UTF-8.
func string(_ p: UnsafePointer<CChar>?, _ name: String, limit: Int = maxCStringBytes) throws -> String {
    guard let p else { throw FlowError.invalidArgument("\(name) is NULL") }
    let length = strnlen(p, limit + 1)
    guard length <= limit else { throw FlowError.limitExceeded("\(name) is longer than \(limit) bytes") }
    let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), count: length)
    guard let s = String(validating: bytes, as: UTF8.self) else {
        throw FlowError.invalidArgument("\(name) is not valid UTF-8")
    }
    return s
}

/// Runs `body` with the model behind a handle argument under its shared (read) lock, inside a
/// ``CallScope`` that `sf_cancel` on the handle cancels (the scope starts before the lock is
/// taken, so a call still waiting for the lock is cancelled too); an error for NULL.
func reading<R>(_ p: OpaquePointer?, _ body: (NormalizingFlow<Float>) throws -> R) throws -> R {
    guard let p else { throw FlowError.invalidArgument("model is NULL") }
    let handle = ModelHandle.from(p)
    let start = handle.cancellation.current
    return try handle.lock.withReadLock {
        try CallScope.run(cancellation: handle.cancellation, since: start) { try body(handle.flow) }
    }
}

/// Runs `body` with the model behind a handle argument under its exclusive (write) lock, inside
/// a `CallScope` as for ``reading(_:_:)``.
func writing<R>(_ p: OpaquePointer?, _ body: (NormalizingFlow<Float>) throws -> R) throws -> R {
    guard let p else { throw FlowError.invalidArgument("model is NULL") }
    let handle = ModelHandle.from(p)
    let start = handle.cancellation.current
    return try handle.lock.withWriteLock {
        try CallScope.run(cancellation: handle.cancellation, since: start) { try body(handle.flow) }
    }
}

/// Checks `n` samples of the model's event size against address-space limits and returns the
/// sample count as Int.
func sampleCount(_ n: UInt, _ flow: NormalizingFlow<Float>) throws -> Int {
    guard n <= UInt(Int.max) else { throw FlowError.invalidArgument("n = \(n) is too large") }
    let count = Int(n)
    let (elements, o1) = count.multipliedReportingOverflow(by: flow.eventSize)
    let (_, o2) = elements.multipliedReportingOverflow(by: MemoryLayout<Double>.stride)
    guard !o1, !o2 else {
        throw FlowError.invalidArgument("n = \(n) samples of \(flow.eventSize) values overflow the address space")
    }
    return count
}

/// Checks `n` context rows of `contextSize` values against address-space limits.
func sampleCount(_ n: UInt, contextSize: Int) throws -> Int {
    guard n <= UInt(Int.max) else { throw FlowError.invalidArgument("n = \(n) is too large") }
    let (elements, o1) = Int(n).multipliedReportingOverflow(by: contextSize)
    let (_, o2) = elements.multipliedReportingOverflow(by: MemoryLayout<Double>.stride)
    guard !o1, !o2 else {
        throw FlowError.invalidArgument("\(n) context rows of \(contextSize) values overflow the address space")
    }
    return Int(n)
}

/// Stores a new handle in `out` (which must not be NULL).
func publish(_ flow: NormalizingFlow<Float>, _ out: UnsafeMutablePointer<OpaquePointer?>) -> Int32 {
    out.pointee = ModelHandle(flow).opaque
    return Status.ok.rawValue
}

