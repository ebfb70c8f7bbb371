import FlowCore
import FlowEnvironment
import FlowModelFile
#if canImport(Glibc)
import Glibc
#endif

/// `sf_status` codes (include/swiftflows.h).
enum Status: Int32, CaseIterable {
    case ok = 0
    case invalidArgument = 1
    case shape = 2
    case spec = 3
    case io = 4
    case format = 5
    case unsupportedVersion = 6
    case unknownType = 7
    case limit = 8
    case numeric = 9
    case cancelled = 10
    case `internal` = 11
    case corrupt = 12
    case memory = 13

    init(_ error: FlowError) {
        switch error {
        case .invalidArgument: self = .invalidArgument
        case .shapeMismatch: self = .shape
        case .invalidSpec: self = .spec
        case .io: self = .io
        case .format: self = .format
        case .corrupt: self = .corrupt
        case .unsupportedVersion: self = .unsupportedVersion
        case .unknownType: self = .unknownType
        case .limitExceeded: self = .limit
        case .numerical: self = .numeric
        case .cancelled: self = .cancelled
        case .outOfMemory: self = .memory
        }
    }

    var text: String {
        switch self {
        case .ok: return "success"
        case .invalidArgument: return "invalid argument"
        case .shape: return "shape mismatch"
        case .spec: return "invalid architecture spec"
        case .io: return "input/output error"
        case .format: return "invalid model file"
        case .unsupportedVersion: return "unsupported model format version"
        case .unknownType: return "unknown layer, distribution or preset type"
        case .limit: return "size limit exceeded"
        case .numeric: return "non-finite values (in a computation or in a model file)"
        case .cancelled: return "cancelled"
        case .internal: return "internal error"
        case .corrupt: return "damaged model file"
        case .memory: return "out of memory"
        }
    }
}

/// Status texts in static storage, indexed by code.
let statusStrings: [UnsafePointer<CChar>] = Status.allCases.map { UnsafePointer(strdup($0.text)!) }
let unknownStatusString: UnsafePointer<CChar> = UnsafePointer(strdup("unknown status")!)
let emptyString: UnsafePointer<CChar> = UnsafePointer(strdup("")!)

/// The calling thread's last error message (a malloc'ed C string, freed when replaced or when
/// the thread exits).
let lastErrorKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { free($0) }
    return key
}()

func setLastError(_ message: String) {
    let previous = pthread_getspecific(lastErrorKey)
    pthread_setspecific(lastErrorKey, strdup(message))
    free(previous)
}

/// Records `status` with `message` for `sf_last_error` and returns its code.
func fail(_ status: Status, _ message: String) -> Int32 {
    setLastError(message)
    return status.rawValue
}

/// Maps any error thrown by FlowCore to a status code and message.
func fail(_ error: Error) -> Int32 {
    if let e = error as? FlowError { return fail(Status(e), e.message) }
    return fail(.internal, "unexpected error: \(error)")
}

/// Runs `body`, converting thrown errors to status codes.
@inline(__always)
func guarded(_ body: () throws -> Int32) -> Int32 {
    FlowRuntime.configureFromProcessEnvironment()
    do { return try body() } catch { return fail(error) }
}
