/// The global-heap pre-check of ``FileIntegrity``.
///
/// HDF5 stores variable-length data (the strings of SwiftFlows' attributes) in global heap
/// collections ("GCOL") and refers to an object by (collection address, index) from a
/// variable-length reference `[length: 4][address][index: 4]`. HDF5 1.10.8 trusts both sides:
/// it walks a collection's object list without bounds checks (a zero-sized free-space object
/// makes the walk loop forever), and it copies a referenced object without checking that the
/// index exists or that the object fits the length (a segmentation fault or a heap overflow).
/// Neither carries an HDF5 checksum, so these checks run on every file, sealed or not.
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

    /// For files in HDF5's later format (superblock version 2 or 3), whose attributes
    /// ``checkStructure(_:sb:collections:)`` reaches only partly: scans for variable-length references `[length: 4][address of a collection][index: 4]` with
    /// `0 < length <= the collection's size` and a non-zero index, and refuses one whose object is missing or holds more
    /// bytes than `length` (HDF5 would copy it into a buffer of `length` bytes: variable-length
    /// strings, the only variable-length data SwiftFlows reads).
    ///
    /// A reference is recognised by its bytes alone (finding the real ones would mean parsing
    /// every HDF5 object header format), so this is a heuristic with two known limits:
    /// - the length bound keeps unrelated bytes from passing for references (object headers are
    ///   full of small integers), but a crafted reference whose length exceeds its collection
    ///   and whose index is missing still reaches HDF5 (which then may crash). Damaged
    ///   SwiftFlows files never get here: their checksum fails first;
    /// - raw data with the same pattern (e.g. 32-bit integers `n, a, 0, k` with `a` a
    ///   collection's address and `k` none of its objects) is refused; SwiftFlows writes none
    ///   (its integers are 64-bit, whose high halves are zero).
    /// The user block and the collections themselves are not scanned.
    static func checkReferences(_ bytes: UnsafeRawBufferPointer, _ sb: Superblock,
                                _ collections: [UInt64: Collection]) throws {
        let width = 4 + sb.offsetSize + 4
        guard bytes.count >= width, let lowest = collections.keys.min(), let highest = collections.keys.max() else { return }
        let skipped = collections.values.map { $0.fileOffset..<($0.fileOffset + $0.size) }.sorted { $0.lowerBound < $1.lowerBound }
        var next = 0  // the first skipped range that does not end before i
        var i = sb.offset
        while i <= bytes.count - width {
            while next < skipped.count, skipped[next].upperBound <= i { next += 1 }
            if next < skipped.count, skipped[next].contains(i) {
                i = skipped[next].upperBound
                continue
            }
            defer { i += 1 }
            let address = sb.offsetSize == 8
                ? UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: i + 4, as: UInt64.self))
                : readLE(bytes, i + 4, sb.offsetSize)
            guard address >= lowest, address <= highest, let collection = collections[address] else { continue }
            // A string HDF5 wrote has exactly its object's length, which fits in the collection.
            let length = readLE(bytes, i, 4)
            let index = readLE(bytes, i + 4 + sb.offsetSize, 4)
            guard length > 0, index != 0 else { continue }  // HDF5 numbers objects from 1; 0 is common in other data
            if length > UInt64(collection.size) {
                // HDF5 would allocate and clear `length` bytes. Only 8-byte aligned references
                // (where HDF5's earliest-format object headers put attribute data) that name an
                // existing object are taken for one: elsewhere such bytes are too common.
                guard (i - sb.offset) % 8 == 0, collection.objects[index] != nil else { continue }
                throw FlowError.corrupt("variable-length data at byte \(i) claims \(length) bytes of the HDF5 global heap "
                    + "collection at byte \(collection.fileOffset), which holds \(collection.size)")
            }
            guard let size = collection.objects[index] else {
                throw FlowError.corrupt("variable-length data at byte \(i) refers to object \(index) of the HDF5 global heap "
                    + "collection at byte \(collection.fileOffset), which has no such object")
            }
            guard size <= length else {
                throw FlowError.corrupt("variable-length data at byte \(i) of length \(length) refers to a \(size)-byte object "
                    + "of the HDF5 global heap collection at byte \(collection.fileOffset)")
            }
        }
    }
}
