import FlowCore
import FlowHDF5
import CZlib

/// An array read from an IDX file: its dimensions and its unsigned bytes in row-major order.
public struct IDXArray: Equatable, Sendable {
    /// The dimensions, outermost first (e.g. `[60000, 28, 28]` for images, `[60000]` for labels).
    public let shape: [Int]
    /// The elements, row-major; `bytes.count` is the product of `shape`.
    public let bytes: [UInt8]

    public init(shape: [Int], bytes: [UInt8]) {
        self.shape = shape
        self.bytes = bytes
    }
}

/// Reads IDX files — the format of MNIST and Fashion-MNIST — plain or gzip-compressed.
///
/// ## Format
/// A 4-byte magic number `00 00 TT RR` (big-endian), where `TT` is the element type and `RR` the
/// number of dimensions; then `RR` dimensions as big-endian `UInt32`; then the elements in
/// row-major order. This reader accepts unsigned bytes (`TT = 0x08`) and 1 to 4 dimensions:
/// images are magic ``imagesMagic`` (`0x00000803`, `[n, rows, columns]`) and labels magic
/// ``labelsMagic`` (`0x00000801`, `[n]`).
///
/// A file that starts with the gzip magic (`1f 8b`) is inflated with zlib while it is read,
/// without holding the compressed file in memory; concatenated gzip members are read as one
/// stream, and each member's CRC-32 and length are checked by zlib. The extension does not matter.
///
/// ## Sizes and limits
/// The element count from the header is checked before anything is allocated: at most
/// ``Limits/maxDataElements``, and for a plain file exactly the bytes that follow the header;
/// for a gzip file it must not exceed what the compressed size can possibly inflate to (deflate's
/// maximum ratio is 1032:1). A `limit` reads only the first `limit` items (images or labels);
/// then a gzip file is inflated only that far, so corruption after them goes unnoticed.
///
/// ## Errors
/// A missing or unreadable file is ``FlowError/io(_:)``. Everything wrong with the contents is a
/// ``FlowError/format(_:)`` naming the file: not an IDX file (wrong magic, with the magic found),
/// an element type other than unsigned bytes, a wrong number of dimensions for images or labels,
/// a zero dimension, a truncated header or data ("truncated ..."), bytes after the data, corrupt
/// gzip data ("corrupt gzip data", with zlib's message). A header whose element count exceeds
/// ``Limits/maxDataElements`` is ``FlowError/limitExceeded(_:)``; a `limit` below 1 is
/// ``FlowError/invalidArgument(_:)``.
public enum IDXReader {
    /// The magic of an image file: unsigned bytes, 3 dimensions `[n, rows, columns]`.
    public static let imagesMagic: UInt32 = 0x0000_0803
    /// The magic of a label file: unsigned bytes, 1 dimension `[n]`.
    public static let labelsMagic: UInt32 = 0x0000_0801

    /// Reads the IDX file at `path` (plain or gzip) as it is stored: unsigned bytes with 1 to 4
    /// dimensions. With `limit`, only the first `limit` items (entries of the first dimension).
    public static func read(path: String, limit: Int? = nil) throws -> IDXArray {
        let file = try DataFile(path: path)
        if file.size > Limits.maxDataFileBytes {
            throw FlowError.limitExceeded("'\(path)' has \(file.size) bytes, more than the limit of \(Limits.maxDataFileBytes)")
        }
        var input = try IDXInput(file: file, source: "'\(path)'")
        return try decode(&input, limit: limit)
    }

    /// Decodes a whole IDX file held in memory (plain or gzip; same rules and errors as
    /// ``read(path:limit:)``); `source` names the bytes in messages.
    public static func decode(_ bytes: [UInt8], source: String = "IDX data", limit: Int? = nil) throws -> IDXArray {
        var input = try IDXInput(bytes: bytes, source: source)
        return try decode(&input, limit: limit)
    }

    /// Reads an image file (magic `0x00000803`) as a `[n, 1, rows, columns]` tensor of the raw
    /// levels 0...255 as floats (not scaled; flows dequantise the levels themselves).
    public static func readImages(path: String, limit: Int? = nil) throws -> Tensor<Float> {
        try images(read(path: path, limit: limit), source: "'\(path)'")
    }

    /// Reads a label file (magic `0x00000801`) as an array of integers 0...255.
    public static func readLabels(path: String, limit: Int? = nil) throws -> [Int] {
        try labels(read(path: path, limit: limit), source: "'\(path)'")
    }

    /// An image array `[n, rows, columns]` as a `[n, 1, rows, columns]` tensor of levels.
    public static func images(_ array: IDXArray, source: String = "IDX data") throws -> Tensor<Float> {
        guard array.shape.count == 3 else {
            throw FlowError.format(
                "\(source): magic \(hex(magic(rank: array.shape.count))) (\(array.shape.count) dimension\(array.shape.count == 1 ? "" : "s"), shape \(array.shape)) is not an image file; expected magic \(hex(imagesMagic)) (unsigned bytes [n, rows, columns])"
                    + (array.shape.count == 1 ? " — is this a label file?" : ""))
        }
        let count = array.bytes.count
        let scalars = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            array.bytes.withUnsafeBufferPointer { bytes in
                guard let src = bytes.baseAddress, let dst = buffer.baseAddress else { return }
                for i in 0..<count { dst[i] = Float(src[i]) }
            }
            initialized = count
        }
        return try Tensor(shape: [array.shape[0], 1, array.shape[1], array.shape[2]], scalars: scalars)
    }

    /// A label array `[n]` as integers.
    public static func labels(_ array: IDXArray, source: String = "IDX data") throws -> [Int] {
        guard array.shape.count == 1 else {
            throw FlowError.format(
                "\(source): magic \(hex(magic(rank: array.shape.count))) (\(array.shape.count) dimensions, shape \(array.shape)) is not a label file; expected magic \(hex(labelsMagic)) (unsigned bytes [n])"
                    + (array.shape.count == 3 ? " — is this an image file?" : ""))
        }
        return array.bytes.map { Int($0) }
    }

    // MARK: - Decoding

    /// Bytes that no deflate stream can exceed per compressed byte (zlib's documented bound).
    static let maxInflateRatio = 1032
    /// Most dimensions accepted.
    static let maxRank = 4

    private static func magic(rank: Int) -> UInt32 { 0x0000_0800 | UInt32(truncatingIfNeeded: rank) }

    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }

    private static func typeName(_ code: UInt8) -> String {
        switch code {
        case 0x08: return "unsigned byte"
        case 0x09: return "signed byte"
        case 0x0B: return "16-bit integer"
        case 0x0C: return "32-bit integer"
        case 0x0D: return "32-bit float"
        case 0x0E: return "64-bit float"
        default: return "unknown type"
        }
    }

    private static func decode(_ input: inout IDXInput, limit: Int?) throws -> IDXArray {
        let source = input.source
        if let limit, limit < 1 {
            throw FlowError.invalidArgument("\(source): the item limit must be at least 1, got \(limit)")
        }
        let lead = try input.readHeader(4, what: "the magic number")
        let magic = lead.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard lead[0] == 0, lead[1] == 0 else {
            throw FlowError.format(
                "\(source) is not an IDX file: wrong magic \(hex(magic)) (an IDX file starts with 00 00, then the element type and the number of dimensions, e.g. \(hex(imagesMagic)) for images)")
        }
        guard lead[2] == 0x08 else {
            throw FlowError.format(
                "\(source): magic \(hex(magic)): IDX element type 0x\(String(lead[2], radix: 16, uppercase: true)) (\(typeName(lead[2]))) is not supported; only unsigned bytes (0x08) are read")
        }
        let rank = Int(lead[3])
        guard (1...maxRank).contains(rank) else {
            throw FlowError.format("\(source): magic \(hex(magic)): \(rank) dimensions; 1 to \(maxRank) are read")
        }
        let dimensionBytes = try input.readHeader(4 * rank, what: "the \(rank) dimensions")
        let shape = (0..<rank).map { k in dimensionBytes[(4 * k)..<(4 * k + 4)].reduce(0) { $0 << 8 | Int($1) } }
        if shape.contains(0) { throw FlowError.format("\(source): the array is empty (dimensions \(shape))") }
        var count = 1
        for extent in shape {
            let (p, overflow) = count.multipliedReportingOverflow(by: extent)
            if overflow || p > Limits.maxDataElements {
                throw FlowError.limitExceeded("\(source): dimensions \(shape) hold more than \(Limits.maxDataElements) elements")
            }
            count = p
        }
        try input.checkDataSize(count, shape: shape)

        let itemSize = count / shape[0]
        let items = min(shape[0], limit ?? shape[0])
        let wanted = items * itemSize
        var failure: Error?
        let bytes = [UInt8](unsafeUninitializedCapacity: wanted) { buffer, initialized in
            do {
                try input.readData(into: UnsafeMutableRawBufferPointer(buffer), total: count, shape: shape)
                initialized = wanted
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        if items == shape[0] { try input.finish(count: count, shape: shape) }
        var outShape = shape
        outShape[0] = items
        return IDXArray(shape: outShape, bytes: bytes)
    }
}

// MARK: - Input: plain or gzip, from a file or memory

/// Raw bytes of the input in chunks: from a ``DataFile`` read piecewise or from memory.
private struct RawChunks {
    static let chunkSize = 1 << 20
    let file: DataFile?
    /// The current chunk and how much of it is consumed.
    var chunk: [UInt8]
    var offset = 0
    /// Total raw length (file size or memory length).
    let totalSize: Int

    init(file: DataFile) throws {
        self.file = file
        totalSize = file.size
        chunk = try file.read(min(file.size, Self.chunkSize))
    }

    init(bytes: [UInt8]) {
        file = nil
        totalSize = bytes.count
        chunk = bytes
    }

    /// Unconsumed bytes in the current chunk.
    var available: Int { chunk.count - offset }
    /// Unconsumed bytes in total.
    var remaining: Int { available + (file?.remaining ?? 0) }

    /// Makes the next chunk current when the current one is used up; false at the end.
    mutating func refill() throws -> Bool {
        if available > 0 { return true }
        guard let file, file.remaining > 0 else { return false }
        chunk = try file.read(min(file.remaining, Self.chunkSize))
        offset = 0
        return true
    }

    /// The next byte without consuming it (nil at the end).
    mutating func peek() throws -> UInt8? {
        try refill() ? chunk[offset] : nil
    }
}

/// The decompressed byte stream of an IDX file.
private struct IDXInput {
    let source: String
    private var raw: RawChunks
    private let inflater: Inflater?
    /// Decompressed bytes delivered so far.
    private var delivered = 0

    init(file: DataFile, source: String) throws {
        self.source = source
        raw = try RawChunks(file: file)
        inflater = try Self.isGzip(raw.chunk) ? Inflater(source: source) : nil
    }

    init(bytes: [UInt8], source: String) throws {
        self.source = source
        raw = RawChunks(bytes: bytes)
        inflater = try Self.isGzip(bytes) ? Inflater(source: source) : nil
    }

    private static func isGzip(_ prefix: [UInt8]) -> Bool {
        prefix.count >= 2 && prefix[0] == 0x1F && prefix[1] == 0x8B
    }

    private var kind: String { inflater == nil ? "IDX file" : "gzip-compressed IDX file" }

    /// Exactly `count` header bytes.
    mutating func readHeader(_ count: Int, what: String) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let got = try bytes.withUnsafeMutableBytes { try fill($0) }
        if got < count {
            if raw.totalSize == 0 { throw FlowError.format("\(source) is not an IDX file: it is empty") }
            throw FlowError.format(
                "\(source): truncated \(kind): it ends inside the header (\(what): \(got) of \(count) bytes)")
        }
        return bytes
    }

    /// Checks that the data of `count` bytes can be in the input before they are allocated.
    func checkDataSize(_ count: Int, shape: [Int]) throws {
        if let _ = inflater {
            let (bound, overflow) = raw.totalSize.multipliedReportingOverflow(by: IDXReader.maxInflateRatio)
            if !overflow && count > bound {
                throw FlowError.format(
                    "\(source): corrupt or truncated gzip-compressed IDX file: dimensions \(shape) need \(count) bytes, more than \(raw.totalSize) compressed bytes can hold")
            }
        } else {
            let available = raw.remaining
            if available < count {
                throw FlowError.format(
                    "\(source): truncated IDX file: dimensions \(shape) need \(count) data bytes, but only \(available) follow the header")
            }
            if available > count {
                throw FlowError.format(
                    "\(source): \(available - count) unexpected bytes after the data of dimensions \(shape) (\(count) bytes)")
            }
        }
    }

    /// Fills `buffer` completely with data bytes (`total` is the size of all data, for messages).
    mutating func readData(into buffer: UnsafeMutableRawBufferPointer, total: Int, shape: [Int]) throws {
        let got = try fill(buffer)
        if got < buffer.count {
            throw FlowError.format(
                "\(source): truncated \(kind): dimensions \(shape) need \(total) data bytes, but the \(inflater == nil ? "file" : "compressed stream") ends after \(got)")
        }
    }

    /// After all data were read: nothing may follow them, and a gzip stream must end properly.
    mutating func finish(count: Int, shape: [Int]) throws {
        guard let inflater else { return }  // plain: checked by checkDataSize
        var extra = 0
        var scratch = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try scratch.withUnsafeMutableBytes { try inflater.inflate(into: $0, from: &raw) }
            if n == 0 { break }
            extra += n
        }
        if extra > 0 {
            throw FlowError.format(
                "\(source): \(extra) unexpected bytes after the data of dimensions \(shape) (\(count) bytes) in the decompressed stream")
        }
        if !inflater.atMemberEnd {
            throw FlowError.format(
                "\(source): truncated gzip-compressed IDX file: the compressed stream ends before its end marker and checksum")
        }
    }

    /// Reads up to `buffer.count` bytes; fewer only at the end of the input.
    private mutating func fill(_ buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        var done = 0
        while done < buffer.count {
            let rest = UnsafeMutableRawBufferPointer(rebasing: buffer[done...])
            let n: Int
            if let inflater {
                n = try inflater.inflate(into: rest, from: &raw)
            } else {
                guard try raw.refill() else { break }
                n = min(rest.count, raw.available)
                raw.chunk.withUnsafeBytes { rest.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[raw.offset..<(raw.offset + n)])) }
                raw.offset += n
            }
            if n == 0 { break }
            done += n
        }
        delivered += done
        return done
    }
}

/// A zlib inflate stream for gzip data (possibly several concatenated members).
private final class Inflater {
    private let stream: UnsafeMutablePointer<z_stream>
    private let source: String
    /// True between a member's end and the start of the next one (or the end of the input).
    private(set) var atMemberEnd = false

    init(source: String) throws {
        self.source = source
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let status = czlib_inflateInit2(stream, 15 + 16)  // 32 KiB window, gzip wrapper only
        if status != Z_OK {
            stream.deinitialize(count: 1)
            stream.deallocate()
            throw FlowError.io("\(source): cannot start zlib inflate (status \(status))")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Inflates into `buffer`, pulling input from `raw`; returns the bytes produced, 0 only at
    /// the end of the input (after a complete member or a truncated one).
    func inflate(into buffer: UnsafeMutableRawBufferPointer, from raw: inout RawChunks) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        let capacity = min(buffer.count, 1 << 30)
        while true {
            if atMemberEnd {
                // Another gzip member may follow; anything else is an error.
                guard let next = try raw.peek() else { return 0 }
                guard next == 0x1F else {
                    throw FlowError.format(
                        "\(source): corrupt gzip data: \(raw.remaining) bytes after the end of the gzip stream are not another gzip member")
                }
                if inflateReset(stream) != Z_OK { throw FlowError.format("\(source): corrupt gzip data: cannot restart inflate") }
                atMemberEnd = false
            }
            guard try raw.refill() else { return 0 }  // truncated inside a member: the caller reports it
            let inCount = min(raw.available, 1 << 30)
            let inOffset = raw.offset
            let s = stream
            let status: Int32 = raw.chunk.withUnsafeBytes { input in
                s.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: Bytef.self)) + inOffset
                s.pointee.avail_in = uInt(inCount)
                s.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
                s.pointee.avail_out = uInt(capacity)
                defer { s.pointee.next_in = nil; s.pointee.next_out = nil }
                return CZlib.inflate(s, Z_NO_FLUSH)
            }
            let consumed = inCount - Int(s.pointee.avail_in)
            let produced = capacity - Int(s.pointee.avail_out)
            raw.offset += consumed
            switch status {
            case Z_OK, Z_BUF_ERROR:
                if produced > 0 { return produced }
                if consumed == 0 {
                    throw FlowError.format("\(source): corrupt gzip data: inflate makes no progress (zlib status \(status))")
                }
            case Z_STREAM_END:
                atMemberEnd = true
                if produced > 0 { return produced }
            default:
                let message = stream.pointee.msg.map { String(cString: $0) } ?? "status \(status)"
                throw FlowError.format("\(source): corrupt gzip data (zlib: \(message))")
            }
        }
    }
}
