/// The structural pre-check of ``FileIntegrity``: the HDF5 metadata HDF5 1.10.8 decodes without
/// bounds checks, validated in Swift before the library sees it.
///
/// HDF5 checks that each object header message fits in its header chunk, but decodes the inside
/// of a message trusting its fields: an attribute's name is copied with `strdup`, its datatype and
/// dataspace are decoded past the sizes the message declares, and its value is copied with the
/// size the datatype and dataspace imply (a segmentation fault in `H5Aexists` on a crafted file).
/// Variable-length values are read from the global heap with the length their reference claims
/// (gigabytes allocated and cleared for one forged length field). Version-1 object headers, symbol
/// tables, B-tree nodes and local heaps carry no checksum, so a file with a valid SwiftFlows
/// checksum can still hold any of these (a hostile file is written that way on purpose).
///
/// The check therefore walks what HDF5 would decode:
/// - for files with a version 0 or 1 superblock (HDF5's earliest format: SwiftFlows and h5py
///   by default), every object reachable from the root group: version-1 object headers and their
///   continuation chunks, symbol-table groups (version-1 B-tree nodes "TREE", symbol nodes "SNOD",
///   local heaps "HEAP") and hard links of link messages;
/// - in every file, each version-2 object header ("OHDR", HDF5's later format) found by its
///   signature, with its continuation chunks ("OCHK").
/// In each header it validates the messages that HDF5 decodes while loading a model: attributes
/// (name, datatype, dataspace and the value's size, and each variable-length reference against
/// its global heap collection: the object exists and its length matches), datatypes, dataspaces,
/// data layouts and filter pipelines. Anything that does not parse is refused with
/// ``FlowError/corrupt(_:)`` naming the byte offset.
///
/// Not covered (documented in docs/model-format.md): attributes and links in "dense" storage
/// (fractal heaps, version-2 B-trees; HDF5 uses them only in the later format and beyond 8
/// attributes or links of one object), and chunk-index B-trees of datasets (read by HDF5 only when
/// a dataset's values are read, with their own bounds checks).
extension FileIntegrity {
    /// Most objects (headers, B-tree nodes, symbol nodes) one file may hold.
    static let maxStructureObjects = 1 << 20

    /// Runs the structural pre-check (see the extension's description).
    static func checkStructure(_ bytes: UnsafeRawBufferPointer, sb: Superblock, collections: [UInt64: Collection]) throws {
        var walker = StructureWalker(bytes: bytes, sb: sb, collections: collections)
        if let root = try walker.rootHeaderAddress() { try walker.walk(from: root) }
        try walker.scanVersion2Headers()
    }

    /// The bytes of a file being walked, its superblock, and what has been visited.
    struct StructureWalker {
        let bytes: UnsafeRawBufferPointer
        let sb: Superblock
        let collections: [UInt64: Collection]
        var visited = Set<Visit>()
        var pending: [(address: UInt64, kind: Kind)] = []
        /// Symbols per symbol node and entries per B-tree node allowed by the superblock (2K).
        var leafCapacity = 8, nodeCapacity = 32
        /// What the messages of the header being checked declare about a dataset.
        var facts = DatasetFacts()

        /// A dataset's element count, element size and stored bytes, as its header declares them.
        struct DatasetFacts {
            var elements: Int?
            var elementSize: Int?
            /// Bytes of contiguous or compact storage (nil: chunked, or no layout message).
            var storedBytes: UInt64?

            /// Refuses storage smaller than the dataspace times the datatype (HDF5 1.10.8 copies
            /// the dataspace's worth of bytes out of it).
            func check(_ origin: Int) throws {
                guard let elements, let elementSize, let storedBytes else { return }
                let (needed, overflow) = elements.multipliedReportingOverflow(by: elementSize)
                guard !overflow, UInt64(needed) <= storedBytes else {
                    throw FlowError.corrupt("damaged HDF5 metadata at byte \(origin): a dataset of \(elements) × "
                        + "\(elementSize) bytes stored in \(storedBytes) bytes")
                }
            }
        }

        enum Kind: Hashable { case header, groupTree, symbolNode }
        /// An address and how it was reached: the same bytes are checked once per interpretation.
        struct Visit: Hashable {
            var address: UInt64
            var kind: Kind
        }

        init(bytes: UnsafeRawBufferPointer, sb: Superblock, collections: [UInt64: Collection]) {
            self.bytes = bytes
            self.sb = sb
            self.collections = collections
        }

        func damaged(_ offset: Int, _ why: String) -> FlowError {
            FlowError.corrupt("damaged HDF5 metadata at byte \(offset): \(why)")
        }

        /// The all-ones "undefined address" of this file's address width.
        var undefined: UInt64 { sb.offsetSize == 8 ? .max : (1 << UInt64(8 * sb.offsetSize)) - 1 }

        /// The file offset of `length` bytes at HDF5 address `address`, or a `corrupt` error.
        func offset(of address: UInt64, length: Int, _ what: String, at origin: Int) throws -> Int {
            let room = UInt64(bytes.count - sb.offset)
            guard address != undefined, address < room, UInt64(length) <= room - address else {
                throw damaged(origin, "\(what) at address \(address) (\(length) bytes) lies outside the file")
            }
            return sb.offset + Int(address)
        }

        /// Reads the superblock's node capacities and root group entry; nil for superblocks of
        /// version 2 or later (whose headers the signature scan covers).
        mutating func rootHeaderAddress() throws -> UInt64? {
            let base = sb.offset
            guard sb.version <= 1 else { return nil }
            let version = sb.version
            let fixed = version == 0 ? 24 : 28
            let entry = base + fixed + 4 * sb.offsetSize  // base, free space, EOF, driver info
            guard entry + 2 * sb.offsetSize + 24 <= bytes.count else { throw damaged(base, "the superblock is truncated") }
            let leafK = Int(readLE(bytes, base + 16, 2)), internalK = Int(readLE(bytes, base + 18, 2))
            guard leafK > 0, internalK > 0 else { throw damaged(base, "a B-tree node size of the superblock is zero") }
            leafCapacity = 2 * leafK
            nodeCapacity = 2 * internalK
            if readLE(bytes, entry + 2 * sb.offsetSize, 4) == 1 {  // cached symbol table of the root group
                let scratch = entry + 2 * sb.offsetSize + 8
                try symbolTable(tree: readLE(bytes, scratch, sb.offsetSize),
                                heap: readLE(bytes, scratch + sb.offsetSize, sb.offsetSize), at: entry)
            }
            return readLE(bytes, entry + sb.offsetSize, sb.offsetSize)
        }

        /// Walks every object reachable from the root header.
        mutating func walk(from root: UInt64) throws {
            pending.append((root, .header))
            while let (address, kind) = pending.popLast() {
                guard visited.insert(Visit(address: address, kind: kind)).inserted else { continue }
                guard visited.count <= FileIntegrity.maxStructureObjects else {
                    throw damaged(sb.offset, "more than \(FileIntegrity.maxStructureObjects) HDF5 objects")
                }
                switch kind {
                case .header: try header(at: address)
                case .groupTree: try groupTree(at: address)
                case .symbolNode: try symbolNode(at: address)
                }
            }
        }

        /// Queues the B-tree and local heap of a symbol table (message 0x11 or a cached entry).
        mutating func symbolTable(tree: UInt64, heap: UInt64, at origin: Int) throws {
            let h = try offset(of: heap, length: 8 + 2 * sb.lengthSize + sb.offsetSize, "local heap", at: origin)
            guard bytes[h..<h + 4].elementsEqual("HEAP".utf8), bytes[h + 4] == 0 else {
                throw damaged(h, "no local heap (\"HEAP\", version 0) where the symbol table points")
            }
            let size = readLE(bytes, h + 8, sb.lengthSize)
            let data = readLE(bytes, h + 8 + 2 * sb.lengthSize, sb.offsetSize)
            guard size <= UInt64(Int.max) else { throw damaged(h, "local heap size \(size)") }
            _ = try offset(of: data, length: Int(size), "local heap data", at: h)
            pending.append((tree, .groupTree))
        }

        /// A version-1 B-tree node of a group: children are nodes (level > 0) or symbol nodes.
        mutating func groupTree(at address: UInt64) throws {
            let header = 8 + 2 * sb.offsetSize
            let p = try offset(of: address, length: header, "group B-tree node", at: sb.offset)
            guard bytes[p..<p + 4].elementsEqual("TREE".utf8), bytes[p + 4] == 0 else {
                throw damaged(p, "no group B-tree node (\"TREE\", type 0) where a group points")
            }
            let level = bytes[p + 5], entries = Int(readLE(bytes, p + 6, 2))
            guard entries <= nodeCapacity else {
                throw damaged(p, "a B-tree node with \(entries) entries (at most \(nodeCapacity))")
            }
            let size = header + entries * (sb.lengthSize + sb.offsetSize) + sb.lengthSize
            _ = try offset(of: address, length: size, "group B-tree node", at: sb.offset)
            for i in 0..<entries {
                let child = readLE(bytes, p + header + sb.lengthSize + i * (sb.lengthSize + sb.offsetSize), sb.offsetSize)
                pending.append((child, level > 0 ? .groupTree : .symbolNode))
            }
        }

        /// A symbol node: the entries of a group (name offset into the local heap, header address).
        mutating func symbolNode(at address: UInt64) throws {
            let p = try offset(of: address, length: 8, "symbol node", at: sb.offset)
            guard bytes[p..<p + 4].elementsEqual("SNOD".utf8), bytes[p + 4] == 1 else {
                throw damaged(p, "no symbol node (\"SNOD\", version 1) where a group B-tree points")
            }
            let count = Int(readLE(bytes, p + 6, 2))
            guard count <= leafCapacity else { throw damaged(p, "a symbol node with \(count) entries (at most \(leafCapacity))") }
            let entrySize = 2 * sb.offsetSize + 24
            _ = try offset(of: address, length: 8 + count * entrySize, "symbol node", at: sb.offset)
            for i in 0..<count {
                let e = p + 8 + i * entrySize
                let cache = readLE(bytes, e + 2 * sb.offsetSize, 4)
                if cache == 2 { continue }  // a soft link: no object header (the loader refuses it by name)
                pending.append((readLE(bytes, e + sb.offsetSize, sb.offsetSize), .header))
                if cache == 1 {  // cached symbol table of a group
                    let scratch = e + 2 * sb.offsetSize + 8
                    try symbolTable(tree: readLE(bytes, scratch, sb.offsetSize),
                                    heap: readLE(bytes, scratch + sb.offsetSize, sb.offsetSize), at: e)
                }
            }
        }

        /// A version-1 object header (or a version-2 one, which the signature scan checks).
        mutating func header(at address: UInt64) throws {
            let p = try offset(of: address, length: 16, "object header", at: sb.offset)
            if bytes[p..<p + 4].elementsEqual("OHDR".utf8) { return }
            guard bytes[p] == 1 else { throw damaged(p, "object header version \(bytes[p]) (expected 1)") }
            let size = Int(readLE(bytes, p + 8, 4))
            _ = try offset(of: address + 16, length: size, "object header", at: p)
            var chunks = [(p + 16, p + 16 + size)]
            var seenChunks = Set([p + 16])
            facts = DatasetFacts()
            defer { facts = DatasetFacts() }
            while let (start, end) = chunks.popLast() {
                var m = start
                while m + 8 <= end {
                    let type = Int(readLE(bytes, m, 2)), length = Int(readLE(bytes, m + 2, 2)), flags = bytes[m + 4]
                    guard length % 8 == 0, length <= end - m - 8 else {
                        throw damaged(m, "object header message of \(length) bytes does not fit its chunk")
                    }
                    if let next = try message(type: type, flags: flags, body: m + 8, end: m + 8 + length) {
                        guard seenChunks.insert(next.0).inserted else { throw damaged(m, "object header continuation loop") }
                        guard seenChunks.count <= 4096 else { throw damaged(p, "more than 4096 object header chunks") }
                        chunks.append(next)
                    }
                    m += 8 + length
                }
            }
            try facts.check(p)
        }

        /// Every "OHDR" version-2 header in the file (they carry a signature, so no walk is needed).
        mutating func scanVersion2Headers() throws {
            var i = 0
            while i + 6 <= bytes.count {
                guard bytes[i] == 0x4F, bytes[i + 1] == 0x48, bytes[i + 2] == 0x44, bytes[i + 3] == 0x52, bytes[i + 4] == 2 else {
                    i += 1
                    continue
                }
                try version2Header(at: i)
                i += 4
            }
        }

        /// A version-2 object header at file offset `p` and its "OCHK" continuation chunks.
        mutating func version2Header(at p: Int) throws {
            let flags = bytes[p + 5]
            var q = p + 6 + (flags & 0x20 != 0 ? 16 : 0) + (flags & 0x10 != 0 ? 4 : 0)
            let width = 1 << Int(flags & 3)
            guard q + width <= bytes.count else { throw damaged(p, "the object header is truncated") }
            let size = readLE(bytes, q, width)
            q += width
            guard size <= UInt64(bytes.count - q), size + 4 <= UInt64(bytes.count - q) else {
                throw damaged(p, "object header chunk of \(size) bytes does not fit in the file")
            }
            var chunks = [(q, q + Int(size))]
            var seenChunks = Set([q])
            facts = DatasetFacts()
            defer { facts = DatasetFacts() }
            let messageHeader = flags & 0x04 != 0 ? 6 : 4
            while let (start, end) = chunks.popLast() {
                var m = start
                while m + messageHeader <= end {
                    let type = Int(bytes[m]), length = Int(readLE(bytes, m + 1, 2)), messageFlags = bytes[m + 3]
                    guard length <= end - m - messageHeader else {
                        throw damaged(m, "object header message of \(length) bytes does not fit its chunk")
                    }
                    if let (c, e) = try message(type: type, flags: messageFlags, body: m + messageHeader, end: m + messageHeader + length) {
                        // A continuation chunk: "OCHK", messages, checksum.
                        guard e - c >= 8, bytes[c..<c + 4].elementsEqual("OCHK".utf8) else {
                            throw damaged(m, "no continuation chunk (\"OCHK\") where the object header points")
                        }
                        guard seenChunks.insert(c).inserted else { throw damaged(m, "object header continuation loop") }
                        guard seenChunks.count <= 4096 else { throw damaged(p, "more than 4096 object header chunks") }
                        chunks.append((c + 4, e - 4))
                    }
                    m += messageHeader + length
                }
            }
            try facts.check(p)
        }

        /// Validates one message body `[body, end)`; returns a continuation chunk `[start, end)`.
        mutating func message(type: Int, flags: UInt8, body: Int, end: Int) throws -> (Int, Int)? {
            var r = Cursor(bytes: bytes, position: body, end: end, origin: body)
            let shared = flags & 0x02 != 0
            switch type {
            case 0x10:  // continuation
                let address = try r.uint(sb.offsetSize), length = try r.uint(sb.lengthSize)
                guard length <= UInt64(Int.max) else { throw damaged(body, "continuation of \(length) bytes") }
                let start = try offset(of: address, length: Int(length), "object header continuation", at: body)
                return (start, start + Int(length))
            case 0x11:  // symbol table: B-tree and local heap
                let tree = try r.uint(sb.offsetSize), heap = try r.uint(sb.offsetSize)
                try symbolTable(tree: tree, heap: heap, at: body)
            case 0x06:  // link
                if let target = try link(&r) { pending.append((target, .header)) }
            case 0x0C:  // attribute
                if !shared { try attribute(&r) }
            case 0x03:  // datatype
                if !shared { facts.elementSize = try datatype(&r, depth: 0).size }
            case 0x01:  // dataspace
                if !shared { facts.elements = try dataspace(&r) }
            case 0x08:  // data layout
                facts.storedBytes = try layout(&r)
            case 0x0B:  // filter pipeline
                if !shared { try pipeline(&r) }
            default:
                break
            }
            return nil
        }

        // MARK: Messages

        /// A link message; returns the target of a hard link.
        func link(_ r: inout Cursor) throws -> UInt64? {
            guard try r.u8() == 1 else { throw r.fail("link message version") }
            let flags = try r.u8()
            let kind = try flags & 0x08 != 0 ? r.u8() : 0
            if flags & 0x04 != 0 { try r.skip(8) }
            if flags & 0x10 != 0 { try r.skip(1) }
            let nameLength = try r.uint(1 << Int(flags & 3))
            guard nameLength > 0, nameLength <= UInt64(r.remaining) else { throw r.fail("link name of \(nameLength) bytes") }
            try r.skip(Int(nameLength))
            switch kind {
            case 0: return try r.uint(sb.offsetSize)
            case 1, 64:
                let length = try r.uint(2)
                try r.skip(Int(length))
                return nil
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
            let length = readLE(bytes, p, 4)
            guard length > 0 else { return }  // empty or null: HDF5 reads nothing
            let address = readLE(bytes, p + 4, sb.offsetSize), index = readLE(bytes, p + 4 + sb.offsetSize, 4)
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
                case 2, 3:
                    break  // version-4 chunk indexes and virtual datasets: checksummed structures
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

    /// A bounds-checked little-endian reader over `[position, end)` of the file.
    struct Cursor {
        let bytes: UnsafeRawBufferPointer
        var position: Int
        let end: Int
        /// Where the enclosing message starts (for error messages).
        let origin: Int

        var remaining: Int { end - position }

        func fail(_ why: String) -> FlowError {
            FlowError.corrupt("damaged HDF5 object header message at byte \(origin): \(why)")
        }

        mutating func skip(_ n: Int) throws {
            guard n >= 0, n <= remaining else { throw fail("a field runs past the end of the message") }
            position += n
        }

        mutating func uint(_ width: Int) throws -> UInt64 {
            guard width <= remaining else { throw fail("a field runs past the end of the message") }
            defer { position += width }
            return readLE(bytes, position, width)
        }

        mutating func u8() throws -> UInt64 { try uint(1) }

        /// The next `n` bytes (n ≤ remaining) as a reader of their own.
        func window(_ n: Int) -> Cursor { Cursor(bytes: bytes, position: position, end: position + n, origin: origin) }
    }
}
