import CHDF5

/// Reads the elements of an attribute or dataset into Swift arrays, letting HDF5 convert them
/// to the native memory type. Shared by the attribute and dataset readers of ``HDF5Group``.
///
/// Each `read` closure performs the actual `H5Aread`/`H5Dread` with the given memory type into the
/// given buffer (which holds exactly `count` elements) and returns its status.
package enum HDF5ElementReader {
    package typealias Read = (_ memoryType: hid_t, _ buffer: UnsafeMutableRawPointer) -> herr_t

    /// Reads `count` elements converted to native `Float`.
    package static func floats(count: Int, context: String, _ read: Read) throws -> [Float] {
        try elements(count: count, memoryType: chdf5_H5T_NATIVE_FLOAT(), context: context, read)
    }

    /// Reads `count` elements converted to native `Double`.
    package static func doubles(count: Int, context: String, _ read: Read) throws -> [Double] {
        try elements(count: count, memoryType: chdf5_H5T_NATIVE_DOUBLE(), context: context, read)
    }

    /// Reads `count` integers of any size and signedness as `Int64`. Unsigned 64-bit values above
    /// `Int64.max` are rejected (HDF5's own conversion would silently clamp them).
    package static func int64s(count: Int, fileType: hid_t, context: String, _ read: Read) throws -> [Int64] {
        let size = H5Tget_size(fileType)
        if size == 0 || size > 8 {
            HDF5Library.clearErrors()
            throw HDF5Error("\(context): unsupported integer size of \(size) bytes")
        }
        if H5Tget_sign(fileType) == H5T_SGN_NONE && size == 8 {
            let raw: [UInt64] = try elements(count: count, memoryType: chdf5_H5T_NATIVE_UINT64(), context: context, read)
            var result: [Int64] = []
            result.reserveCapacity(raw.count)
            for v in raw {
                guard let value = Int64(exactly: v) else {
                    throw HDF5Error("\(context): unsigned value \(v) does not fit in Int64")
                }
                result.append(value)
            }
            return result
        }
        return try elements(count: count, memoryType: chdf5_H5T_NATIVE_INT64(), context: context, read)
    }

    /// Allocates `count` elements of `T` (after checking the byte size) and fills them with `read`.
    private static func elements<T>(count: Int, memoryType: hid_t, context: String, _ read: Read) throws -> [T] {
        if count < 0 { throw HDF5Error("\(context): negative element count \(count)") }
        if count == 0 { return [] }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        if overflow || bytes > Int.max / 2 {
            throw HDF5Error("\(context): \(count) elements are too many to allocate")
        }
        var status: herr_t = -1
        let values = [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            status = read(memoryType, UnsafeMutableRawPointer(buffer.baseAddress!))
            initialized = status >= 0 ? count : 0
        }
        if status < 0 { throw HDF5Library.failure(context) }
        return values
    }
}
