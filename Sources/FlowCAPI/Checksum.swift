import FlowCore
import FlowModelFile
#if canImport(Glibc)
import Glibc
#endif

// MARK: - File checksum (docs/model-format.md, "File checksum and pre-checks")

@_cdecl("sf_file_checksum_block")
public func sf_file_checksum_block(_ data: UnsafeRawPointer?, _ size: UInt, _ outBlock: UnsafeMutableRawPointer?,
                                   _ outCapacity: UInt) -> Int32 {
    let blockSize = ModelFile.checksumBlockSize
    guard let outBlock else { return fail(.invalidArgument, "out_block is NULL") }
    guard outCapacity >= UInt(blockSize) else {
        return fail(.invalidArgument, "out_capacity \(outCapacity) is smaller than the checksum block (\(blockSize) bytes)")
    }
    guard data != nil || size == 0 else { return fail(.invalidArgument, "data is NULL") }
    guard size <= UInt(Int.max) else { return fail(.invalidArgument, "size \(size) is too large") }
    let block = ModelFile.checksumBlock(for: UnsafeRawBufferPointer(start: data, count: Int(size)))
    block.withUnsafeBytes { outBlock.copyMemory(from: $0.baseAddress!, byteCount: blockSize) }
    return Status.ok.rawValue
}

@_cdecl("sf_file_reseal_memory")
public func sf_file_reseal_memory(_ data: UnsafeMutableRawPointer?, _ size: UInt) -> Int32 {
    guard let data else { return fail(.invalidArgument, "data is NULL") }
    guard size <= UInt(Int.max) else { return fail(.invalidArgument, "size \(size) is too large") }
    return guarded {
        try ModelFile.reseal(image: UnsafeMutableRawBufferPointer(start: data, count: Int(size)))
        return Status.ok.rawValue
    }
}

@_cdecl("sf_file_reseal")
public func sf_file_reseal(_ path: UnsafePointer<CChar>?) -> Int32 {
    guarded {
        try ModelFile.reseal(path: try string(path, "path", limit: 4096))
        return Status.ok.rawValue
    }
}
