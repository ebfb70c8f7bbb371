import FlowCore
import FlowHDF5
/// The message checks of ``FileIntegrity/StructureWalker``: each object header message HDF5
/// 1.10.8 decodes while loading a model, parsed within the size its header declares (HDF5 file
/// format specification 3.0, section IV.A.2, "Header Message Types").
extension FileIntegrity.StructureWalker {
    /// A dataset's element count, element size and stored bytes, as its header declares them.
    struct DatasetFacts {
        var elements: Int?
        var elementSize: Int?
        /// Bytes of contiguous or compact storage (nil: chunked, or no layout message).
        var storedBytes: UInt64?
    }

    /// Refuses storage smaller than the dataspace times the datatype (HDF5 1.10.8 copies the
    /// dataspace's worth of bytes out of it).
    func checkStorage(_ facts: DatasetFacts, at origin: Int) throws {
        guard let elements = facts.elements, let elementSize = facts.elementSize, let stored = facts.storedBytes else { return }
        let (needed, overflow) = elements.multipliedReportingOverflow(by: elementSize)
        guard !overflow, UInt64(needed) <= stored else {
            throw damaged(origin, "a dataset of \(elements) × \(elementSize) bytes stored in \(stored) bytes")
        }
    }

    /// A link message; returns the link's name and the target of a hard link. An external link
    /// (type 64: an object in another file) is refused.
    func link(_ r: inout Cursor) throws -> (name: String, target: UInt64?) {
        guard try r.u8() == 1 else { throw r.fail("link message version") }
        let flags = try r.u8()
        let kind = try flags & 0x08 != 0 ? r.u8() : 0
        if flags & 0x04 != 0 { try r.skip(8) }
        if flags & 0x10 != 0 { try r.skip(1) }
        let nameLength = try r.uint(1 << Int(flags & 3))
        guard nameLength > 0, nameLength <= UInt64(r.remaining) else { throw r.fail("link name of \(nameLength) bytes") }
        let name = String(decoding: bytes[r.position..<r.position + Int(Swift.min(nameLength, 256))], as: UTF8.self)
        try r.skip(Int(nameLength))
        switch kind {
        case 0: return (name, try r.uint(sb.offsetSize))
        case 1:
            let length = try r.uint(2)
            try r.skip(Int(length))
            return (name, nil)
        case 64:
            throw outsideTheFile("\(Self.join(currentPath ?? "?", name)) is an external link (to an object in another file)")
        default: throw r.fail("link type \(kind)")
        }
    }

    /// An attribute message: name, datatype, dataspace and a value of the size they imply.
    func attribute(_ r: inout Cursor) throws {
        let version = try r.u8()
        guard (1...3).contains(version) else { throw r.fail("attribute message version \(version)") }
        let flags = try r.u8()
        guard version > 1 || flags == 0, flags & ~0x03 == 0 else { throw r.fail("attribute flags \(flags)") }
        let nameSize = Int(try r.uint(2)), typeSize = Int(try r.uint(2)), spaceSize = Int(try r.uint(2))
        if version == 3 { try r.skip(1) }  // name character set
        func padded(_ n: Int) -> Int { version == 1 ? (n + 7) / 8 * 8 : n }
        // The name: NUL-terminated within its declared size (HDF5 copies it with strdup).
        guard nameSize > 0, padded(nameSize) <= r.remaining,
              bytes[r.position..<r.position + nameSize].contains(0) else {
            throw r.fail("attribute name of \(nameSize) bytes is not terminated within the message")
        }
        try r.skip(padded(nameSize))
        guard padded(typeSize) <= r.remaining else { throw r.fail("attribute datatype of \(typeSize) bytes") }
        var typeReader = r.window(typeSize)
        let type = try flags & 0x01 != 0 ? nil : datatype(&typeReader, depth: 0)
        try r.skip(padded(typeSize))
        guard padded(spaceSize) <= r.remaining else { throw r.fail("attribute dataspace of \(spaceSize) bytes") }
        var spaceReader = r.window(spaceSize)
        let elements = try flags & 0x02 != 0 ? nil : dataspace(&spaceReader)
        try r.skip(padded(spaceSize))
        guard let type, let elements else { return }  // shared: HDF5 looks the message up elsewhere
        let (product, overflow) = elements.multipliedReportingOverflow(by: type.size)
        guard !overflow, product <= r.remaining else {
            throw r.fail("attribute value of \(elements) × \(type.size) bytes does not fit in the message")
        }
        if let base = type.variableLengthBase {
            for i in 0..<elements { try reference(at: r.position + i * type.size, baseSize: base) }
        }
    }

    /// A variable-length value `[length: 4][collection address][index: 4]`: the object exists
    /// and holds exactly `length` elements of `baseSize` bytes.
    func reference(at p: Int, baseSize: Int) throws {
        let length = FileIntegrity.readLE(bytes, p, 4)
        guard length > 0 else { return }  // empty or null: HDF5 reads nothing
        let address = FileIntegrity.readLE(bytes, p + 4, sb.offsetSize), index = FileIntegrity.readLE(bytes, p + 4 + sb.offsetSize, 4)
        guard let collection = collections[address] else {
            throw damaged(p, "variable-length value points to address \(address), where there is no global heap collection")
        }
        guard let size = collection.objects[index] else {
            throw damaged(p, "variable-length value refers to object \(index) of the global heap collection at byte "
                + "\(collection.fileOffset), which has no such object")
        }
        guard length * UInt64(baseSize) == size else {
            throw damaged(p, "variable-length value claims \(length) × \(baseSize) bytes, but its object in the "
                + "global heap collection at byte \(collection.fileOffset) holds \(size)")
        }
    }

    /// What the attribute check needs of a datatype.
    struct TypeInfo {
        var size: Int
        /// The base type's size of a variable-length type (sequence or string).
        var variableLengthBase: Int?
    }

    /// A datatype message (HDF5 file format, "Datatype"); nested types up to depth 16.
    func datatype(_ r: inout Cursor, depth: Int) throws -> TypeInfo {
        guard depth < 16 else { throw r.fail("datatype nested more than 16 deep") }
        let classAndVersion = try r.u8()
        let typeClass = classAndVersion & 0x0F, version = classAndVersion >> 4
        guard (1...5).contains(version) else { throw r.fail("datatype version \(version)") }
        let bits = try r.uint(3)
        let size64 = try r.uint(4)
        guard size64 > 0 || typeClass == 9, size64 <= 1 << 24 else { throw r.fail("datatype size \(size64)") }
        let size = Int(size64)
        switch typeClass {
        case 0, 4:                         // fixed point, bit field: offset, precision
            try bitRange(&r, size: size)
        case 1:                            // floating point: offset, precision, fields, bias
            let precision = try bitRange(&r, size: size)
            let exponentAt = try r.u8(), exponentBits = try r.u8(), mantissaAt = try r.u8(), mantissaBits = try r.u8()
            let signAt = bits >> 8 & 0xFF
            guard exponentBits > 0, mantissaBits > 0, exponentAt + exponentBits <= precision,
                  mantissaAt + mantissaBits <= precision, signAt < precision else {
                throw r.fail("floating-point fields outside its \(precision) bits")
            }
            try r.skip(4)
        case 2: try r.skip(2)              // time
        case 3, 7: break                   // string, reference
        case 5:                            // opaque: a NUL-padded tag
            let tag = Int(bits & 0xFF)
            guard tag <= r.remaining else { throw r.fail("opaque tag of \(tag) bytes") }
            try r.skip(tag)
        case 6:                            // compound
            let members = Int(bits & 0xFFFF)
            for _ in 0..<members {
                try name(&r, padded: version < 3)
                if version < 3 {
                    try r.skip(4)          // byte offset
                    if version == 1 { try r.skip(28) }  // dimensionality, permutation, dimensions
                } else {
                    var width = 1
                    while width < 4, size >= 1 << (8 * width) { width += 1 }  // HDF5: log2(size) / 8 + 1 bytes
                    try r.skip(width)
                }
                let member = try datatype(&r, depth: depth + 1)
                guard member.size <= size else { throw r.fail("compound member larger than its type") }
            }
        case 8:                            // enumeration: base type, names, values
            let members = Int(bits & 0xFFFF)
            let base = try datatype(&r, depth: depth + 1)
            for _ in 0..<members { try name(&r, padded: version < 3) }
            let (total, overflow) = members.multipliedReportingOverflow(by: base.size)
            guard !overflow, total <= r.remaining else { throw r.fail("enumeration values do not fit") }
            try r.skip(total)
        case 9:                            // variable length: base type
            let base = try datatype(&r, depth: depth + 1)
            return TypeInfo(size: 4 + sb.offsetSize + 4, variableLengthBase: base.size)
        case 10:                           // array
            let rank = Int(try r.u8())
            guard (1...32).contains(rank) else { throw r.fail("array rank \(rank)") }
            if version < 3 { try r.skip(3) }
            var count = 1
            for _ in 0..<rank {
                let (c, o) = count.multipliedReportingOverflow(by: Int(try r.uint(4)))
                guard !o else { throw r.fail("array size overflows") }
                count = c
            }
            if version < 3 { try r.skip(4 * rank) }
            let base = try datatype(&r, depth: depth + 1)
            let (total, overflow) = count.multipliedReportingOverflow(by: base.size)
            guard !overflow, total == size else { throw r.fail("array of \(count) × \(base.size) bytes in a \(size)-byte type") }
        default:
            throw r.fail("datatype class \(typeClass)")
        }
        return TypeInfo(size: size, variableLengthBase: nil)
    }

    /// The bit offset and precision of a number: inside the type's `size` bytes (HDF5 1.10.8
    /// converts bits outside them, reading past its buffer). Returns the precision.
    @discardableResult
    func bitRange(_ r: inout Cursor, size: Int) throws -> UInt64 {
        let offset = try r.uint(2), precision = try r.uint(2)
        guard precision > 0, offset + precision <= 8 * UInt64(size) else {
            throw r.fail("\(precision) bits at bit offset \(offset) of a \(size)-byte number")
        }
        return precision
    }

    /// A NUL-terminated name (padded to a multiple of 8 bytes in older datatype versions).
    func name(_ r: inout Cursor, padded: Bool) throws {
        guard let nul = bytes[r.position..<r.end].firstIndex(of: 0) else { throw r.fail("unterminated member name") }
        let length = nul - r.position + 1
        try r.skip(padded ? (length + 7) / 8 * 8 : length)
    }

    /// A dataspace message; returns its number of elements.
    func dataspace(_ r: inout Cursor) throws -> Int {
        let version = try r.u8()
        guard version == 1 || version == 2 else { throw r.fail("dataspace version \(version)") }
        let rank = Int(try r.u8()), flags = try r.u8()
        guard rank <= 32 else { throw r.fail("dataspace rank \(rank)") }
        var kind: UInt64 = rank == 0 ? 0 : 1
        if version == 1 { try r.skip(5) } else {
            kind = try r.u8()
            guard kind <= 2 else { throw r.fail("dataspace type \(kind)") }
        }
        var count = 1
        for _ in 0..<rank {
            let dimension = try r.uint(sb.lengthSize)
            guard dimension <= UInt64(Int.max) else { throw r.fail("dimension \(dimension)") }
            let (c, o) = count.multipliedReportingOverflow(by: Int(dimension))
            guard !o else { throw r.fail("dataspace size overflows") }
            count = c
        }
        if flags & 0x01 != 0 { try r.skip(rank * sb.lengthSize) }
        if version == 1, flags & 0x02 != 0 { try r.skip(rank * sb.lengthSize) }
        return kind == 2 ? 0 : count
    }

    /// A data layout message; returns the bytes of contiguous storage (when allocated) or of
    /// compact storage.
    func layout(_ r: inout Cursor) throws -> UInt64? {
        let version = try r.u8()
        switch version {
        case 1, 2:
            let rank = Int(try r.u8()), layoutClass = try r.u8()
            guard (1...33).contains(rank), layoutClass <= 2 else { throw r.fail("layout rank \(rank), class \(layoutClass)") }
            try r.skip(5)
            if layoutClass > 0 { try r.skip(sb.offsetSize) }
            for _ in 0..<rank {
                guard try r.uint(4) > 0 || layoutClass != 2 else { throw r.fail("chunk dimension 0") }
            }
            if layoutClass == 0 {
                let size = try r.uint(4)
                guard size <= UInt64(r.remaining) else { throw r.fail("compact data of \(size) bytes") }
                return size
            }
            return nil
        case 3, 4:
            let layoutClass = try r.u8()
            switch layoutClass {
            case 0:
                let size = try r.uint(2)
                guard size <= UInt64(r.remaining) else { throw r.fail("compact data of \(size) bytes") }
                return size
            case 1:
                let address = try r.uint(sb.offsetSize), size = try r.uint(sb.lengthSize)
                guard address != undefined else { return nil }  // not written yet: HDF5 reads fill values
                guard size <= UInt64(Int.max) else { throw r.fail("contiguous data of \(size) bytes") }
                _ = try offset(of: address, length: Int(size), "contiguous data", at: r.origin)
                return size
            case 2 where version == 3:
                let rank = Int(try r.u8())
                guard (2...33).contains(rank) else { throw r.fail("chunk rank \(rank)") }
                try r.skip(sb.offsetSize)
                for _ in 0..<rank {
                    guard try r.uint(4) > 0 else { throw r.fail("chunk dimension 0") }
                }
            case 2:
                break  // version-4 chunk indexes: checksummed structures
            case 3:
                throw outsideTheFile("dataset \(currentObject) is a virtual dataset (its values are mapped from other datasets, "
                    + "which may lie in other files)")
            default:
                throw r.fail("layout class \(layoutClass)")
            }
            return nil
        default:
            throw r.fail("layout message version \(version)")
        }
    }

    /// A filter pipeline message: each filter's name and client values inside the message.
    func pipeline(_ r: inout Cursor) throws {
        let version = try r.u8(), filters = Int(try r.u8())
        guard version == 1 || version == 2, filters <= 32 else { throw r.fail("filter pipeline version \(version), \(filters) filters") }
        if version == 1 { try r.skip(6) }
        for _ in 0..<filters {
            let id = try r.uint(2)
            let nameLength = version == 1 || id >= 256 ? Int(try r.uint(2)) : 0
            try r.skip(2)  // flags
            let values = Int(try r.uint(2))
            if nameLength > 0 {
                let stored = version == 1 ? (nameLength + 7) / 8 * 8 : nameLength
                guard stored <= r.remaining, bytes[r.position..<r.position + nameLength].contains(0) else {
                    throw r.fail("filter name of \(nameLength) bytes")
                }
                try r.skip(stored)
            }
            try r.skip(4 * values + (version == 1 && values % 2 == 1 ? 4 : 0))
        }
    }
}
