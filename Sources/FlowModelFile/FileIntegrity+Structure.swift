import FlowCore
import FlowHDF5
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
/// its global heap collection: the object exists and its length matches), datatypes (numbers'
/// bits inside their bytes), dataspaces, data layouts (contiguous and compact storage inside the
/// file and at least as large as the dataspace) and filter pipelines. Anything that does not parse is refused with
/// ``FlowError/corrupt(_:)`` naming the byte offset.
///
/// Storage that reaches outside the file is refused with ``FlowError/format(_:)`` naming the
/// object (its path, where the walk knows it): HDF5 external data files (message 0x07, the
/// "external" storage of h5py's `create_dataset`), virtual datasets (layout class 3) and external
/// links (link type 64). HDF5 would open the files they name — any file, FIFOs and devices
/// included — when the dataset is opened or read.
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
        if let root = try walker.rootHeaderAddress() { try walker.walk(from: root, path: "/") }
        try walker.nameVersion2Headers()
        try walker.scanVersion2Headers()
    }

    /// The bytes of a file being walked, its superblock, and what has been visited.
    struct StructureWalker {
        let bytes: UnsafeRawBufferPointer
        let sb: Superblock
        let collections: [UInt64: Collection]
        var visited = Set<Visit>()
        var pending: [(address: UInt64, kind: Kind, place: Place)] = []
        /// The path of each object header whose name the walk learnt (the first link to it).
        var paths: [UInt64: String] = [:]
        /// The path of the object whose header is being checked, if known.
        var currentPath: String?
        /// The file offset of the header being checked.
        var currentOffset = 0
        /// While ``nameVersion2Headers()`` runs: messages are only read for their hard links,
        /// collected here (nothing is checked).
        var namingOnly = false
        var collectedLinks: [(name: String, target: UInt64)] = []
        /// Symbols per symbol node and entries per B-tree node allowed by the superblock (2K).
        var leafCapacity = 8, nodeCapacity = 32
        /// What the messages of the header being checked declare about a dataset.
        var facts = DatasetFacts()

        typealias Cursor = FileIntegrity.Cursor

        enum Kind: Hashable { case header, groupTree, symbolNode }
        /// Where a pending object sits: its path (a header's own; a group's for B-tree and symbol
        /// nodes) and, for B-tree and symbol nodes, the group's local heap data (names).
        struct Place {
            var path: String
            var heap: Range<Int> = 0..<0
        }
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

        /// The object being checked, for messages: its path, else its header's byte offset.
        var currentObject: String { currentPath ?? "the object whose header is at byte \(currentOffset)" }

        /// Refuses a feature that makes HDF5 open another file (``FlowError/format(_:)``).
        func outsideTheFile(_ what: String) -> FlowError {
            FlowError.format("\(what): model files keep every value inside the file, and readers never open other files")
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
                                heap: readLE(bytes, scratch + sb.offsetSize, sb.offsetSize), at: entry, path: "/")
            }
            return readLE(bytes, entry + sb.offsetSize, sb.offsetSize)
        }

        /// Walks every object reachable from the header at `start` (the object at `path`).
        mutating func walk(from start: UInt64, path: String) throws {
            pending.append((start, .header, Place(path: path)))
            while let (address, kind, place) = pending.popLast() {
                guard visited.insert(Visit(address: address, kind: kind)).inserted else { continue }
                guard visited.count <= FileIntegrity.maxStructureObjects else {
                    throw damaged(sb.offset, "more than \(FileIntegrity.maxStructureObjects) HDF5 objects")
                }
                switch kind {
                case .header: try header(at: address, path: place.path)
                case .groupTree: try groupTree(at: address, place: place)
                case .symbolNode: try symbolNode(at: address, place: place)
                }
            }
        }

        /// `name` appended to the group path `parent`.
        static func join(_ parent: String, _ name: String) -> String {
            parent == "/" ? "/" + name : parent + "/" + name
        }

        /// Queues an object header reached by a link called `name` from the group at `parent`.
        mutating func queueHeader(_ address: UInt64, parent: String, name: String) {
            let path = Self.join(parent, name)
            if paths[address] == nil { paths[address] = path }
            pending.append((address, .header, Place(path: path)))
        }

        /// Queues the B-tree and local heap of a symbol table (message 0x11 or a cached entry) of
        /// the group at `path`.
        mutating func symbolTable(tree: UInt64, heap: UInt64, at origin: Int, path: String) throws {
            let h = try offset(of: heap, length: 8 + 2 * sb.lengthSize + sb.offsetSize, "local heap", at: origin)
            guard bytes[h..<h + 4].elementsEqual("HEAP".utf8), bytes[h + 4] == 0 else {
                throw damaged(h, "no local heap (\"HEAP\", version 0) where the symbol table points")
            }
            let size = readLE(bytes, h + 8, sb.lengthSize)
            let data = readLE(bytes, h + 8 + 2 * sb.lengthSize, sb.offsetSize)
            guard size <= UInt64(Int.max) else { throw damaged(h, "local heap size \(size)") }
            let start = try offset(of: data, length: Int(size), "local heap data", at: h)
            pending.append((tree, .groupTree, Place(path: path, heap: start..<start + Int(size))))
        }

        /// The NUL-terminated name at `offset` of a local heap's data (for paths in messages).
        func heapName(_ heap: Range<Int>, _ offset: UInt64) -> String {
            guard offset < UInt64(heap.count) else { return "?" }
            let start = heap.lowerBound + Int(offset)
            let end = bytes[start..<heap.upperBound].firstIndex(of: 0) ?? heap.upperBound
            return String(decoding: bytes[start..<Swift.min(end, start + 256)], as: UTF8.self)
        }

        /// A version-1 B-tree node of a group: children are nodes (level > 0) or symbol nodes.
        mutating func groupTree(at address: UInt64, place: Place) throws {
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
                pending.append((child, level > 0 ? .groupTree : .symbolNode, place))
            }
        }

        /// A symbol node: the entries of a group (name offset into the local heap, header address).
        mutating func symbolNode(at address: UInt64, place: Place) throws {
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
                let name = heapName(place.heap, readLE(bytes, e, sb.offsetSize))
                queueHeader(readLE(bytes, e + sb.offsetSize, sb.offsetSize), parent: place.path, name: name)
                if cache == 1 {  // cached symbol table of a group
                    let scratch = e + 2 * sb.offsetSize + 8
                    try symbolTable(tree: readLE(bytes, scratch, sb.offsetSize),
                                    heap: readLE(bytes, scratch + sb.offsetSize, sb.offsetSize), at: e,
                                    path: Self.join(place.path, name))
                }
            }
        }

        /// A version-1 object header (or a version-2 one, which the signature scan checks) of the
        /// object at `path`.
        mutating func header(at address: UInt64, path: String) throws {
            let p = try offset(of: address, length: 16, "object header", at: sb.offset)
            if bytes[p..<p + 4].elementsEqual("OHDR".utf8) { return }
            currentPath = path
            currentOffset = p
            guard bytes[p] == 1 else { throw damaged(p, "object header version \(bytes[p]) (expected 1)") }
            let size = Int(readLE(bytes, p + 8, 4))
            _ = try offset(of: address + 16, length: size, "object header", at: p)
            var chunks = [(p + 16, p + 16 + size)]
            var seenChunks = Set([p + 16])
            facts = DatasetFacts()
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
            try checkStorage(facts, at: p)
        }

        /// Learns the paths of version-2 object headers before they are checked, for messages:
        /// the hard links of every "OHDR" header, followed from the objects whose paths are known
        /// (the walk's, and the root group of a version-2 superblock). Damage of the version-2
        /// headers is left for ``scanVersion2Headers()`` to report. A version-1 object header a
        /// version-2 group links to (objects h5py copies into a later-format file keep their
        /// format) is walked like the root's objects, so it is checked and named too.
        mutating func nameVersion2Headers() throws {
            namingOnly = true
            var links: [UInt64: [(name: String, target: UInt64)]] = [:]
            var i = 0
            while i + 6 <= bytes.count {
                guard bytes[i] == 0x4F, bytes[i + 1] == 0x48, bytes[i + 2] == 0x44, bytes[i + 3] == 0x52, bytes[i + 4] == 2 else {
                    i += 1
                    continue
                }
                collectedLinks = []
                if (try? version2Header(at: i)) != nil, !collectedLinks.isEmpty { links[UInt64(i - sb.offset)] = collectedLinks }
                i += 4
            }
            collectedLinks = []
            namingOnly = false
            if sb.version >= 2, sb.offset + 12 + 4 * sb.offsetSize <= bytes.count {
                let root = readLE(bytes, sb.offset + 12 + 3 * sb.offsetSize, sb.offsetSize)
                if paths[root] == nil { paths[root] = "/" }
            }
            var queue = Array(paths.keys)
            while let address = queue.popLast() {
                guard let parent = paths[address], let children = links[address] else { continue }
                for (name, target) in children where paths[target] == nil {
                    let path = Self.join(parent, name)
                    paths[target] = path
                    queue.append(target)
                    if isVersion1Header(target) {
                        let known = Set(paths.keys)
                        try walk(from: target, path: path)
                        queue += paths.keys.filter { !known.contains($0) }
                    }
                }
            }
        }

        /// Whether a version-1 object header (version byte 1, no "OHDR" signature) lies at `address`.
        func isVersion1Header(_ address: UInt64) -> Bool {
            guard let p = try? offset(of: address, length: 16, "object header", at: sb.offset) else { return false }
            return bytes[p] == 1 && !bytes[p..<p + 4].elementsEqual("OHDR".utf8)
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
            currentPath = paths[UInt64(p - sb.offset)]
            currentOffset = p
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
            if !namingOnly { try checkStorage(facts, at: p) }
        }

        /// Validates one message body `[body, end)`; returns a continuation chunk `[start, end)`.
        mutating func message(type: Int, flags: UInt8, body: Int, end: Int) throws -> (Int, Int)? {
            var r = Cursor(bytes: bytes, position: body, end: end, origin: body)
            let shared = flags & 0x02 != 0
            if namingOnly, type != 0x10 {
                if type == 0x06, case let (name, target?) = try link(&r) { collectedLinks.append((name, target)) }
                return nil
            }
            switch type {
            case 0x10:  // continuation
                let address = try r.uint(sb.offsetSize), length = try r.uint(sb.lengthSize)
                guard length <= UInt64(Int.max) else { throw damaged(body, "continuation of \(length) bytes") }
                let start = try offset(of: address, length: Int(length), "object header continuation", at: body)
                return (start, start + Int(length))
            case 0x11:  // symbol table: B-tree and local heap
                let tree = try r.uint(sb.offsetSize), heap = try r.uint(sb.offsetSize)
                try symbolTable(tree: tree, heap: heap, at: body, path: currentPath ?? "?")
            case 0x06:  // link
                let (name, target) = try link(&r)
                if let target { queueHeader(target, parent: currentPath ?? "?", name: name) }
            case 0x07:  // external data files
                throw outsideTheFile("dataset \(currentObject) keeps its values in other files (HDF5 external storage)")
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
    }
}
