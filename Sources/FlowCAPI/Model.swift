import FlowCore
import FlowModelFile
#if canImport(Glibc)
import Glibc
#endif

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
        try reading(handle) { flow in
            try flow.save(to: try string(path, "path", limit: 4096))
            return Status.ok.rawValue
        }
    }
}

@_cdecl("sf_model_save_memory")
public func sf_model_save_memory(_ handle: OpaquePointer?, _ outData: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
                                 _ outSize: UnsafeMutablePointer<UInt>?) -> Int32 {
    outData?.pointee = nil
    outSize?.pointee = 0
    guard let outData, let outSize else { return fail(.invalidArgument, "out_data or out_size is NULL") }
    return guarded {
        let bytes = try reading(handle) { try $0.fileImage() }
        guard let buffer = malloc(max(bytes.count, 1)) else {
            return fail(.memory, "cannot allocate the \(bytes.count)-byte model image: out of memory")
        }
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
        guard let s = strdup(try reading(handle) { $0.spec.description }) else { return fail(.internal, "out of memory") }
        outJSON.pointee = s
        return Status.ok.rawValue
    }
}

@_cdecl("sf_buffer_free")
public func sf_buffer_free(_ buffer: UnsafeMutableRawPointer?) { free(buffer) }

@_cdecl("sf_cancel")
public func sf_cancel(_ handle: OpaquePointer?) -> Int32 {
    guard let handle else { return fail(.invalidArgument, "model is NULL") }
    ModelHandle.from(handle).cancellation.cancel()
    return Status.ok.rawValue
}

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
        out.pointee = UInt(try reading(handle) { $0.eventSize })
        return Status.ok.rawValue
    }
}

@_cdecl("sf_model_event_shape")
public func sf_model_event_shape(_ handle: OpaquePointer?, _ shape: UnsafeMutablePointer<UInt>?, _ capacity: UInt,
                                 _ outNdim: UnsafeMutablePointer<UInt>?) -> Int32 {
    guard let outNdim else { return fail(.invalidArgument, "out_ndim is NULL") }
    return guarded {
        let dims = try reading(handle) { $0.eventShape }
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
        out.pointee = UInt(try reading(handle) { $0.parameterCount })
        return Status.ok.rawValue
    }
}

