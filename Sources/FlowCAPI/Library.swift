import FlowCore
import FlowEnvironment
import FlowModelFile
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Library information

@_cdecl("sf_version_string")
public func sf_version_string() -> UnsafePointer<CChar> { versionString }

let versionString: UnsafePointer<CChar> = UnsafePointer(strdup(ModelFile.libraryVersion)!)

@_cdecl("sf_version_number")
public func sf_version_number() -> Int32 {
    let parts = ModelFile.libraryVersion.split(separator: ".").compactMap { Int32($0) }
    guard parts.count == 3 else { return 0 }
    return parts[0] * 10000 + parts[1] * 100 + parts[2]
}

@_cdecl("sf_status_string")
public func sf_status_string(_ status: Int32) -> UnsafePointer<CChar> {
    guard status >= 0, Int(status) < statusStrings.count else { return unknownStatusString }
    return statusStrings[Int(status)]
}

@_cdecl("sf_last_error")
public func sf_last_error() -> UnsafePointer<CChar> {
    guard let p = pthread_getspecific(lastErrorKey) else { return emptyString }
    return UnsafePointer(p.assumingMemoryBound(to: CChar.self))
}

@_cdecl("sf_set_num_threads")
public func sf_set_num_threads(_ n: Int32) -> Int32 {
    FlowRuntime.configureFromProcessEnvironment()
    guard n >= 1, n <= 256 else { return fail(.invalidArgument, "num_threads must be in 1...256, got \(n)") }
    FlowRuntime.threadCount = Int(n)
    return Status.ok.rawValue
}

@_cdecl("sf_set_memory_limit")
public func sf_set_memory_limit(_ bytes: UInt64) -> Int32 {
    FlowRuntime.configureFromProcessEnvironment()
    guard bytes >= UInt64(MemoryBudget.minimumLimit), bytes <= UInt64(Int.max) else {
        return fail(.invalidArgument, "the memory limit must be between \(MemoryBudget.minimumLimit) and \(Int.max) bytes, got \(bytes)")
    }
    FlowRuntime.memoryLimit = Int(bytes)
    return Status.ok.rawValue
}

@_cdecl("sf_get_memory_limit")
public func sf_get_memory_limit() -> UInt64 {
    FlowRuntime.configureFromProcessEnvironment()
    return UInt64(FlowRuntime.memoryLimit)
}

@_cdecl("sf_get_num_threads")
public func sf_get_num_threads() -> Int32 {
    FlowRuntime.configureFromProcessEnvironment()
    return Int32(FlowRuntime.threadCount)
}

