import FlowCore
import FlowHDF5
import CZlib

/// Checks on the raw bytes of a model file, made before HDF5 parses any of them
/// (docs/model-format.md, "File checksum and pre-checks").
///
/// - Files written by SwiftFlows start with a 512-byte HDF5 user block holding a text header
///   `SWIFTFLOWS-CHECKSUM 1\nsize <bytes>\ncrc32 <8 hex digits>\n` (zero-padded): the size of the
///   whole file and the CRC-32 (zlib's) of every byte after the user block. A file that starts with
///   this header is refused unless both match, so a damaged file never reaches HDF5.
/// - Every file, with or without the header (files written by h5py have none), is scanned for HDF5
///   global heap collections (where variable-length strings live; HDF5 keeps no checksum of them),
///   and each one's object list is walked as HDF5 1.10 does it: a collection whose walk would not
///   terminate or would leave the collection is refused. HDF5 1.10 loops forever or reads out of
///   bounds on such collections.
/// - The HDF5 metadata that HDF5 1.10 decodes without bounds checks (object headers and their
///   attribute, datatype, dataspace, layout and filter messages; group B-trees, symbol nodes and
///   local heaps; variable-length values against their collections) is walked and validated
///   first (`FileIntegrity+Structure.swift`).
enum FileIntegrity {
    /// Size of the user block SwiftFlows writes (HDF5's smallest).
    static let userBlockSize = 512
    /// The first line of the header, up to the version number.
    static let magicPrefix = Array("SWIFTFLOWS-CHECKSUM ".utf8)
    /// The checksum format version this library writes and reads.
    static let version = 1
    /// The HDF5 format signature.
    static let hdf5Signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]

    /// What the pre-checks found.
    enum Verdict: Equatable {
        /// The SwiftFlows checksum header is present and matches the bytes.
        case checksummed
        /// No SwiftFlows checksum (e.g. written by h5py): only the structural pre-checks apply.
        case unverified
    }

    /// CRC-32 (zlib, polynomial 0xEDB88320) of `bytes`.
    static func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc = CZlib.crc32(0, nil, 0)
        var offset = 0
        while offset < bytes.count {
            let n = min(bytes.count - offset, 1 << 30)
            crc = CZlib.crc32(crc, bytes.baseAddress!.advanced(by: offset).assumingMemoryBound(to: Bytef.self), uInt(n))
            offset += n
        }
        return UInt32(truncatingIfNeeded: crc)
    }

    /// `value` as 8 lower-case hex digits.
    static func hex8(_ value: UInt32) -> String {
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// The header for a file of `size` bytes whose bytes after the user block have CRC `crc`.
    static func header(size: Int, crc: UInt32) -> [UInt8] {
        let text = "SWIFTFLOWS-CHECKSUM \(version)\nsize \(size)\ncrc32 \(hex8(crc))\n"
        return Array(text.utf8)
    }

    /// The user block (header, zero-padded to ``userBlockSize`` bytes) for the file bytes `bytes`;
    /// their own first ``userBlockSize`` bytes are ignored.
    static func block(for bytes: UnsafeRawBufferPointer) -> [UInt8] {
        let body = bytes.count > userBlockSize ? UnsafeRawBufferPointer(rebasing: bytes[userBlockSize...]) : UnsafeRawBufferPointer(start: nil, count: 0)
        let text = header(size: bytes.count, crc: crc32(body))
        return text + [UInt8](repeating: 0, count: userBlockSize - text.count)
    }

    /// Whether `image` is an HDF5 file image with a ``userBlockSize``-byte user block (the HDF5
    /// signature at offset ``userBlockSize``), i.e. has room for the checksum header.
    static func hasUserBlock(_ image: UnsafeRawBufferPointer) -> Bool {
        image.count > userBlockSize + hdf5Signature.count
            && image[userBlockSize..<userBlockSize + hdf5Signature.count].elementsEqual(hdf5Signature)
    }

    /// Writes the checksum header into the user block of `image`, an HDF5 file image created with
    /// a 512-byte user block.
    static func seal(_ image: UnsafeMutableRawBufferPointer) throws {
        guard hasUserBlock(UnsafeRawBufferPointer(image)) else {
            throw HDF5Error("cannot write the file checksum: the image has no \(userBlockSize)-byte user block")
        }
        let block = block(for: UnsafeRawBufferPointer(image))
        image.copyBytes(from: block)
    }

    static func seal(_ image: inout [UInt8]) throws {
        try image.withUnsafeMutableBytes { try seal($0) }
    }

    /// The check made before a file is read whole: its first bytes must be able to start a model
    /// file — a SwiftFlows checksum block (intact, damaged or cut: ``hasHeader(_:)``, which the
    /// full checks then judge) or the HDF5 signature where HDF5 looks for it (byte 0, 512, 1024,
    /// 2048, …). `read(offset, count)` returns up to `count` bytes at `offset` of a file of `size`
    /// bytes. A large file of anything else is refused without being read.
    /// - Throws: ``FlowError/format(_:)``.
    static func precheck(size: Int, _ read: (Int, Int) throws -> [UInt8]) throws {
        guard size > 0 else { throw FlowError.format("the file is empty") }
        let head = try read(0, Swift.min(size, userBlockSize + hdf5Signature.count))
        if head.withUnsafeBytes({ hasHeader($0) }) { return }
        var offset = 0
        while offset + hdf5Signature.count <= size {
            if try read(offset, hdf5Signature.count) == hdf5Signature { return }
            offset = offset == 0 ? userBlockSize : offset * 2
        }
        throw FlowError.format("not an HDF5 file: no HDF5 signature at byte 0, \(userBlockSize), \(2 * userBlockSize), … "
            + "and no SwiftFlows checksum block")
    }

    /// Runs every pre-check on a whole file's bytes. Throws ``FlowError/corrupt(_:)`` (or
    /// ``FlowError/unsupportedVersion(_:)`` for a newer checksum header) naming what is wrong.
    static func check(_ bytes: UnsafeRawBufferPointer) throws -> Verdict {
        let verdict = try verifyChecksum(bytes)
        guard bytes.count >= 16, let sb = superblock(bytes) else { return verdict }  // HDF5 refuses it
        let collections = try walkCollections(bytes, sb)
        try checkStructure(bytes, sb: sb, collections: collections)
        return verdict
    }

    /// Whether the bytes carry a SwiftFlows checksum header, intact, damaged or cut: they start with
    /// the magic (or are 4 to 19 bytes of it), or an HDF5 superblock follows a 512-byte user block whose first 20 bytes differ
    /// from the magic in at most 5 places (a header with flipped bytes, which must not pass as a
    /// file without checksum).
    static func hasHeader(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let n = magicPrefix.count
        // A file cut inside the magic (at least 4 bytes of it) is a truncated SwiftFlows file.
        guard bytes.count >= n else { return bytes.count >= 4 && bytes.elementsEqual(magicPrefix.prefix(bytes.count)) }
        if bytes.prefix(n).elementsEqual(magicPrefix) { return true }
        guard bytes.count >= userBlockSize + hdf5Signature.count,
              bytes[userBlockSize..<userBlockSize + hdf5Signature.count].elementsEqual(hdf5Signature) else { return false }
        let differences = zip(bytes.prefix(n), magicPrefix).reduce(0) { $0 + ($1.0 == $1.1 ? 0 : 1) }
        return differences <= 5
    }

    /// Verifies the checksum header if the bytes carry one (``hasHeader(_:)``).
    static func verifyChecksum(_ bytes: UnsafeRawBufferPointer) throws -> Verdict {
        guard hasHeader(bytes) else { return .unverified }
        guard bytes.count >= userBlockSize else {
            throw FlowError.corrupt("the file is truncated: \(bytes.count) bytes, shorter than its \(userBlockSize)-byte checksum block")
        }
        // Three lines of printable ASCII, then zeros.
        let block = Array(bytes.prefix(userBlockSize))
        let textEnd = block.firstIndex(of: 0) ?? userBlockSize
        guard block[textEnd...].allSatisfy({ $0 == 0 }),
              block[..<textEnd].allSatisfy({ ($0 >= 0x20 && $0 < 0x7f) || $0 == 0x0a }),
              let text = String(validating: block[..<textEnd], as: UTF8.self) else {
            throw FlowError.corrupt("the checksum block (first \(userBlockSize) bytes) is damaged")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count == 4, lines[3].isEmpty, lines[0].hasPrefix("SWIFTFLOWS-CHECKSUM "),
              let v = decimal(lines[0].dropFirst(magicPrefix.count)), v >= 1 else {
            throw FlowError.corrupt("the checksum block (first \(userBlockSize) bytes) is damaged")
        }
        guard v == version else {
            throw FlowError.unsupportedVersion("checksum block version \(v) is newer than this library reads (\(version))")
        }
        guard lines[1].hasPrefix("size "), let size = decimal(lines[1].dropFirst(5)),
              lines[2].hasPrefix("crc32 "), lines[2].count == 14,
              lines[2].dropFirst(6).allSatisfy(\.isHexDigit), let crc = UInt32(lines[2].dropFirst(6), radix: 16) else {
            throw FlowError.corrupt("the checksum block (first \(userBlockSize) bytes) is damaged")
        }
        guard size == bytes.count else {
            throw FlowError.corrupt("the file is \(bytes.count) bytes but was written with \(size) bytes "
                + (bytes.count < size ? "(truncated)" : "(bytes were added)"))
        }
        let actual = crc32(UnsafeRawBufferPointer(rebasing: bytes[userBlockSize...]))
        guard actual == crc else {
            throw FlowError.corrupt("checksum mismatch (stored crc32 \(hex8(crc)), computed \(hex8(actual))): the file is "
                + "damaged, or was changed by another HDF5 program (after a deliberate edit, update the checksum: "
                + "swiftflows.reseal in Python, or zero the first \(userBlockSize) bytes)")
        }
        return .checksummed
    }

    /// A non-negative decimal number of at most 18 digits (no sign, no spaces), or nil.
    private static func decimal(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.count <= 18, text.allSatisfy({ $0 >= "0" && $0 <= "9" }) else { return nil }
        return Int(text)
    }
}
