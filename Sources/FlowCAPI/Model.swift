import FlowCore
#if canImport(Glibc)
import Glibc
#endif

/// The object behind an `sf_model*`: a flow in Float32. Retained by `passRetained` in the
/// creating call and released by `sf_model_free`.
final class ModelHandle {
    let flow: NormalizingFlow<Float>
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

/// The model behind a handle argument, or an error for NULL.
func model(_ p: OpaquePointer?) throws -> NormalizingFlow<Float> {
    guard let p else { throw FlowError.invalidArgument("model is NULL") }
    return ModelHandle.from(p).flow
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

/// Stores a new handle in `out` (which must not be NULL).
func publish(_ flow: NormalizingFlow<Float>, _ out: UnsafeMutablePointer<OpaquePointer?>) -> Int32 {
    out.pointee = ModelHandle(flow).opaque
    return Status.ok.rawValue
}

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
    guard n >= 1, n <= 256 else { return fail(.invalidArgument, "num_threads must be in 1...256, got \(n)") }
    FlowRuntime.threadCount = Int(n)
    return Status.ok.rawValue
}

@_cdecl("sf_get_num_threads")
public func sf_get_num_threads() -> Int32 { Int32(FlowRuntime.threadCount) }

// MARK: - Creating, loading, saving

@_cdecl("sf_model_create")
public func sf_model_create(_ spec: UnsafePointer<CChar>?, _ seed: UInt64,
                            _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let out else { return fail(.invalidArgument, "out_model is NULL") }
    out.pointee = nil
    return guarded {
        let json = try string(spec, "spec_json")
        return publish(try NormalizingFlow<Float>(specJSON: json, seed: seed), out)
    }
}

@_cdecl("sf_model_load")
public func sf_model_load(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let out else { return fail(.invalidArgument, "out_model is NULL") }
    out.pointee = nil
    return guarded {
        let p = try string(path, "path", limit: 4096)
        return publish(try NormalizingFlow<Float>.load(path: p), out)
    }
}

@_cdecl("sf_model_load_memory")
public func sf_model_load_memory(_ data: UnsafeRawPointer?, _ size: UInt,
                                 _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let out else { return fail(.invalidArgument, "out_model is NULL") }
    out.pointee = nil
    guard let data else { return fail(.invalidArgument, "data is NULL") }
    guard size > 0 else { return fail(.format, "the model image is empty (size 0)") }
    guard size <= UInt(Int.max) else { return fail(.invalidArgument, "size \(size) is too large") }
    return guarded {
        publish(try ModelFile.load(image: UnsafeRawBufferPointer(start: data, count: Int(size))), out)
    }
}

@_cdecl("sf_model_save")
public func sf_model_save(_ handle: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> Int32 {
    guarded {
        let flow = try model(handle)
        try flow.save(to: try string(path, "path", limit: 4096))
        return Status.ok.rawValue
    }
}

@_cdecl("sf_model_save_memory")
public func sf_model_save_memory(_ handle: OpaquePointer?, _ outData: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
                                 _ outSize: UnsafeMutablePointer<UInt>?) -> Int32 {
    outData?.pointee = nil
    outSize?.pointee = 0
    guard let outData, let outSize else { return fail(.invalidArgument, "out_data or out_size is NULL") }
    return guarded {
        let bytes = try model(handle).fileImage()
        guard let buffer = malloc(max(bytes.count, 1)) else { return fail(.internal, "out of memory (\(bytes.count) bytes)") }
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        outData.pointee = buffer
        outSize.pointee = UInt(bytes.count)
        return Status.ok.rawValue
    }
}

@_cdecl("sf_model_spec")
public func sf_model_spec(_ handle: OpaquePointer?, _ outJSON: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guard let outJSON else { return fail(.invalidArgument, "out_json is NULL") }
    outJSON.pointee = nil
    return guarded {
        guard let s = strdup(try model(handle).spec.description) else { return fail(.internal, "out of memory") }
        outJSON.pointee = s
        return Status.ok.rawValue
    }
}

@_cdecl("sf_buffer_free")
public func sf_buffer_free(_ buffer: UnsafeMutableRawPointer?) { free(buffer) }

@_cdecl("sf_model_free")
public func sf_model_free(_ handle: OpaquePointer?) {
    guard let handle else { return }
    Unmanaged<ModelHandle>.fromOpaque(UnsafeRawPointer(handle)).release()
}

// MARK: - Shape

@_cdecl("sf_model_event_size")
public func sf_model_event_size(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<UInt>?) -> Int32 {
    guard let out else { return fail(.invalidArgument, "out_size is NULL") }
    return guarded {
        out.pointee = UInt(try model(handle).eventSize)
        return Status.ok.rawValue
    }
}

@_cdecl("sf_model_event_shape")
public func sf_model_event_shape(_ handle: OpaquePointer?, _ shape: UnsafeMutablePointer<UInt>?, _ capacity: UInt,
                                 _ outNdim: UnsafeMutablePointer<UInt>?) -> Int32 {
    guard let outNdim else { return fail(.invalidArgument, "out_ndim is NULL") }
    return guarded {
        let dims = try model(handle).eventShape
        outNdim.pointee = UInt(dims.count)
        guard let shape else { return Status.ok.rawValue }
        for (i, d) in dims.enumerated() where UInt(i) < capacity { shape[i] = UInt(d) }
        guard capacity >= UInt(dims.count) else {
            return fail(.invalidArgument, "shape capacity \(capacity) is smaller than the rank \(dims.count)")
        }
        return Status.ok.rawValue
    }
}

@_cdecl("sf_model_num_parameters")
public func sf_model_num_parameters(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<UInt>?) -> Int32 {
    guard let out else { return fail(.invalidArgument, "out_count is NULL") }
    return guarded {
        out.pointee = UInt(try model(handle).parameterCount)
        return Status.ok.rawValue
    }
}

// MARK: - Evaluation

@_cdecl("sf_forward")
public func sf_forward(_ handle: OpaquePointer?, _ x: UnsafePointer<Float>?, _ n: UInt,
                       _ z: UnsafeMutablePointer<Float>?, _ logdet: UnsafeMutablePointer<Double>?) -> Int32 {
    guarded {
        let flow = try model(handle)
        let count = try sampleCount(n, flow)
        guard count > 0 else { return Status.ok.rawValue }
        guard let x, let z else { return fail(.invalidArgument, "x or z is NULL") }
        flow.forward(x, count: count, z: z, logDet: logdet)
        return Status.ok.rawValue
    }
}

@_cdecl("sf_inverse")
public func sf_inverse(_ handle: OpaquePointer?, _ z: UnsafePointer<Float>?, _ n: UInt,
                       _ x: UnsafeMutablePointer<Float>?, _ logdet: UnsafeMutablePointer<Double>?) -> Int32 {
    guarded {
        let flow = try model(handle)
        let count = try sampleCount(n, flow)
        guard count > 0 else { return Status.ok.rawValue }
        guard let x, let z else { return fail(.invalidArgument, "z or x is NULL") }
        flow.inverse(z, count: count, x: x, logDet: logdet)
        return Status.ok.rawValue
    }
}

@_cdecl("sf_log_prob")
public func sf_log_prob(_ handle: OpaquePointer?, _ x: UnsafePointer<Float>?, _ n: UInt,
                        _ out: UnsafeMutablePointer<Double>?) -> Int32 {
    guarded {
        let flow = try model(handle)
        let count = try sampleCount(n, flow)
        guard count > 0 else { return Status.ok.rawValue }
        guard let x, let out else { return fail(.invalidArgument, "x or out is NULL") }
        flow.logProb(x, count: count, into: out)
        return Status.ok.rawValue
    }
}

@_cdecl("sf_sample")
public func sf_sample(_ handle: OpaquePointer?, _ n: UInt, _ seed: UInt64, _ out: UnsafeMutablePointer<Float>?,
                      _ logProb: UnsafeMutablePointer<Double>?) -> Int32 {
    sf_sample_temperature(handle, n, seed, 1, out, logProb)
}

@_cdecl("sf_sample_temperature")
public func sf_sample_temperature(_ handle: OpaquePointer?, _ n: UInt, _ seed: UInt64, _ temperature: Float,
                                  _ out: UnsafeMutablePointer<Float>?, _ logProb: UnsafeMutablePointer<Double>?) -> Int32 {
    guarded {
        let flow = try model(handle)
        let count = try sampleCount(n, flow)
        guard temperature > 0, temperature.isFinite else {
            return fail(.invalidArgument, "temperature must be positive and finite, got \(temperature)")
        }
        guard count > 0 else { return Status.ok.rawValue }
        guard let out else { return fail(.invalidArgument, "out is NULL") }
        flow.sample(count: count, seed: seed, into: out, logProb: logProb, temperature: temperature)
        return Status.ok.rawValue
    }
}
