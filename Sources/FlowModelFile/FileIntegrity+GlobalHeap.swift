import FlowCore
import FlowHDF5
/// The global-heap pre-check of ``FileIntegrity``.
///
/// HDF5 stores variable-length data (the strings of SwiftFlows' attributes) in global heap
/// collections ("GCOL") and refers to an object by (collection address, index) from a
/// variable-length reference `[length: 4][address][index: 4]`. HDF5 1.10.8 trusts both sides:
/// it walks a collection's object list without bounds checks (a zero-sized free-space object
/// makes the walk loop forever), and it copies a referenced object without checking that the
/// index exists or that the object fits the length (a segmentation fault or a heap overflow).
/// Neither carries an HDF5 checksum. This file walks the collections of every file; the
/// references are checked against them where attribute messages are parsed
/// (`FileIntegrity+Structure.swift`).
extension FileIntegrity {
    /// Sizes and base of the superblock: where addresses start, and their widths.
    struct Superblock {
        /// File offset of the superblock (0, 512, 1024, …): HDF5 addresses are relative to it.
        var offset: Int
        /// Superblock version (0 to 3).
        var version: UInt8
        /// Width of addresses ("size of offsets": 2, 4 or 8).
        var offsetSize: Int
        /// Width of lengths ("size of lengths": 2, 4 or 8).
        var lengthSize: Int
    }

    /// One collection found by ``walkCollections(_:_:)``: its file offset, size and objects (index → size).
    struct Collection {
        var fileOffset: Int
        var size: Int
        var objects: [UInt64: UInt64] = [:]
    }

    /// The offset of the HDF5 superblock (0, 512, 1024, … as HDF5 searches), or nil.
    static func superblockOffset(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var offset = 0
        while offset + hdf5Signature.count <= bytes.count {
            if bytes[offset..<offset + hdf5Signature.count].elementsEqual(hdf5Signature) { return offset }
            offset = offset == 0 ? userBlockSize : offset * 2
        }
        return nil
    }

    /// The superblock's offset and field widths, or nil for an unknown version or width.
    static func superblock(_ bytes: UnsafeRawBufferPointer) -> Superblock? {
        guard let sb = superblockOffset(bytes), sb + 16 <= bytes.count else { return nil }
        let fields: (Int, Int)
        switch bytes[sb + 8] {
        case 0, 1: fields = (sb + 13, sb + 14)
        case 2, 3: fields = (sb + 9, sb + 10)
        default: return nil
        }
        let offsetSize = Int(bytes[fields.0]), lengthSize = Int(bytes[fields.1])
        guard [2, 4, 8].contains(offsetSize), [2, 4, 8].contains(lengthSize) else { return nil }
        return Superblock(offset: sb, version: bytes[sb + 8], offsetSize: offsetSize, lengthSize: lengthSize)
    }

    /// Little-endian unsigned integer of `width` bytes at `offset` (the caller checked the range).
    static func readLE(_ bytes: UnsafeRawBufferPointer, _ offset: Int, _ width: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in stride(from: width - 1, through: 0, by: -1) { v = v << 8 | UInt64(bytes[offset + i]) }
        return v
    }

    /// Every version-1 collection, keyed by its HDF5 address (file offset minus the superblock's).
    /// Refuses a collection whose object list HDF5 1.10 cannot walk safely.
    static func walkCollections(_ bytes: UnsafeRawBufferPointer, _ sb: Superblock) throws -> [UInt64: Collection] {
        let headerSize = 8 + sb.lengthSize        // signature, version, reserved, collection size
        let objectHeaderSize = 8 + sb.lengthSize  // index, reference count, reserved, object size
        var found: [UInt64: Collection] = [:]
        var offset = 0
        while offset + 4 <= bytes.count {
            guard bytes[offset] == 0x47, bytes[offset + 1] == 0x43, bytes[offset + 2] == 0x4F, bytes[offset + 3] == 0x4C
            else {  // "GCOL"
                offset += 1
                continue
            }
            defer { offset += 4 }
            guard offset + headerSize <= bytes.count, bytes[offset + 4] == 1 else { continue }
            func damaged(_ why: String) -> FlowError {
                FlowError.corrupt("damaged HDF5 global heap collection at byte \(offset): \(why)")
            }
            let size64 = readLE(bytes, offset + 8, sb.lengthSize)
            guard size64 >= UInt64(headerSize), size64 <= UInt64(bytes.count - offset) else {
                throw damaged("collection size \(size64) does not fit in the file")
            }
            let size = Int(size64)
            var collection = Collection(fileOffset: offset, size: size)
            var p = headerSize
            while p < size {
                if p + objectHeaderSize > size { break }  // trailing free space too small for a header
                let index = readLE(bytes, offset + p, 2)
                let objectSize = readLE(bytes, offset + p + 8, sb.lengthSize)
                guard objectSize <= UInt64(size) else {
                    throw damaged("object \(index) has size \(objectSize), larger than the collection (\(size) bytes)")
                }
                let need = index > 0 ? objectHeaderSize + (Int(objectSize) + 7) / 8 * 8 : Int(objectSize)
                guard need > 0 else {  // HDF5 1.10 would parse the same object forever
                    throw damaged("empty free-space object at offset \(p)")
                }
                guard need <= size - p else {
                    throw damaged("object \(index) (\(need) bytes at offset \(p)) extends past the collection end (\(size))")
                }
                if index > 0 { collection.objects[index] = objectSize }
                p += need
            }
            if offset >= sb.offset { found[UInt64(offset - sb.offset)] = collection }
        }
        return found
    }
}
