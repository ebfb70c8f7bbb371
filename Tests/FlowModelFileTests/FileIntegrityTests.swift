@testable import FlowCore
@testable import FlowHDF5
@testable import FlowModelFile
import FlowTestSupport
import XCTest

/// The checksum block and the global-heap pre-check of ``FileIntegrity`` (the C tests drive the
/// same cases through `sf_model_load`/`sf_model_load_memory`).
final class FileIntegrityTests: XCTestCase {
    func image() throws -> [UInt8] {
        try NormalizingFlow<Float>.realNVP(dim: 3, layers: 2, hidden: [4], seed: 1).fileImage()
    }

    func testSavedImagesCarryAMatchingHeader() throws {
        let bytes = try image()
        let crc = bytes.withUnsafeBytes { FileIntegrity.crc32(UnsafeRawBufferPointer(rebasing: $0[512...])) }
        let text = "SWIFTFLOWS-CHECKSUM 1\nsize \(bytes.count)\ncrc32 \(FileIntegrity.hex8(crc))\n"
        XCTAssertEqual(Array(bytes.prefix(text.utf8.count)), Array(text.utf8))
        XCTAssertTrue(bytes[text.utf8.count..<512].allSatisfy { $0 == 0 })
        XCTAssertEqual(Array(bytes[512..<520]), FileIntegrity.hdf5Signature)
        XCTAssertEqual(try bytes.withUnsafeBytes { try FileIntegrity.check($0) }, .checksummed)
        // zlib's CRC-32 of "123456789" is the standard check value.
        XCTAssertEqual(Array("123456789".utf8).withUnsafeBytes { FileIntegrity.crc32($0) }, 0xCBF4_3926)
    }

    func testCheckpointsAreSealedAndCheckedOnResume() throws {
        let temporary = try TemporaryDirectory(prefix: "swiftflows-integrity")
        defer { temporary.remove() }
        let path = temporary.path + "/checkpoint.h5"
        let data = try ToyDataset.named("moons").generate(256, seed: 1)
        var o = TrainingOptions()
        o.epochs = 1
        o.batchSize = 64
        let flow = try NormalizingFlow<Float>.realNVP(dim: 2, layers: 1, hidden: [4], seed: 2)
        let trainer = try data.withUnsafeBufferPointer { try Trainer(flow: flow, data: $0, rows: 256, options: o) }
        trainer.saveCheckpoints(to: path)
        try trainer.run()
        var bytes = try ModelFile.readWholeFile(path)
        XCTAssertEqual(try bytes.withUnsafeBytes { try FileIntegrity.check($0) }, .checksummed)
        bytes[bytes.count / 2] ^= 1
        try writeFileAtomically(bytes, to: path)
        ErrorAssertions.assertThrows(["checkpoint.h5", "checksum mismatch"], ErrorAssertions.isCorrupt) {
            _ = try data.withUnsafeBufferPointer { try Trainer<Float>.resume(checkpoint: path, data: $0, rows: 256) }
        }
    }

    func testHeaderDamageAndVersions() throws {
        let good = try image()
        func verdict(_ bytes: [UInt8]) throws -> FileIntegrity.Verdict { try bytes.withUnsafeBytes { try FileIntegrity.check($0) } }
        var bytes = good
        bytes.replaceSubrange(0..<22, with: Array("SWIFTFLOWS-CHECKSUM 7\n".utf8))
        ErrorAssertions.assertThrows(["version 7"], ErrorAssertions.isUnsupportedVersion) { _ = try verdict(bytes) }
        // Up to 5 of the first 20 bytes changed: still recognised, and refused as damaged.
        bytes = good
        for i in [0, 4, 8, 12, 16] { bytes[i] = UInt8(ascii: "#") }
        ErrorAssertions.assertThrows(["checksum block"], ErrorAssertions.isCorrupt) { _ = try verdict(bytes) }
        // A user block that does not resemble the header (another program's): no checksum.
        bytes = good
        for i in 0..<512 { bytes[i] = i < 40 ? UInt8(ascii: "u") : 0 }
        XCTAssertEqual(try verdict(bytes), .unverified)
        XCTAssertNoThrow(try NormalizingFlow<Float>.load(image: bytes))
        // Signs, spaces and overlong numbers are not numbers here.
        for size in ["+\(good.count)", " \(good.count)", String(repeating: "9", count: 19)] {
            bytes = good
            let text = Array("SWIFTFLOWS-CHECKSUM 1\nsize \(size)\ncrc32 00000000\n".utf8)
            for i in 0..<512 { bytes[i] = i < text.count ? text[i] : 0 }
            ErrorAssertions.assertThrows(["checksum block"], ErrorAssertions.isCorrupt) { _ = try verdict(bytes) }
        }
    }

    /// A synthetic file: a v0 superblock (8-byte lengths) and one global heap collection of
    /// `collectionSize` bytes holding `objects` (index, size) headers laid out as HDF5 does.
    func heapFile(collectionSize: UInt64, objects: [(index: UInt16, size: UInt64)], padTo: Int = 4096) -> [UInt8] {
        var b = FileIntegrity.hdf5Signature + [0, 0, 0, 0, 0, 8, 8, 0]  // versions, offsets 8, lengths 8
        b += [UInt8](repeating: 0, count: 64 - b.count)
        let start = b.count
        b += Array("GCOL".utf8) + [1, 0, 0, 0] + le(collectionSize)
        for o in objects {
            b += le(UInt64(o.index)).prefix(2) + [1, 0, 0, 0, 0, 0] + le(o.size)
            let body = o.index > 0 && o.size < 1 << 20 ? Int((o.size + 7) / 8 * 8) : 0
            b += [UInt8](repeating: 0x41, count: min(body, 1 << 16))
        }
        if b.count < start + Int(min(collectionSize, 1 << 20)) { b += [UInt8](repeating: 0, count: start + Int(min(collectionSize, 1 << 20)) - b.count) }
        if b.count < padTo { b += [UInt8](repeating: 0, count: padTo - b.count) }
        return b
    }

    func le(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    func testGlobalHeapWalk() throws {
        func check(_ bytes: [UInt8]) throws {
            try bytes.withUnsafeBytes { _ = try FileIntegrity.walkCollections($0, XCTUnwrap(FileIntegrity.superblock($0))) }
        }
        // Two 5-byte objects (padded to 8), then free space (index 0) filling the rest.
        let size: UInt64 = 4096
        let used = 16 + 2 * (16 + 8)
        XCTAssertNoThrow(try check(heapFile(collectionSize: size, objects: [(1, 5), (2, 5), (0, size - UInt64(used))])))
        // Trailing space too small for an object header counts as free space.
        XCTAssertNoThrow(try check(heapFile(collectionSize: UInt64(used + 10), objects: [(1, 5), (2, 5)])))
        let refused: [(String, [UInt8])] = [
            ("empty free-space object", heapFile(collectionSize: size, objects: [(1, 5), (0, 0)])),
            ("larger than the collection", heapFile(collectionSize: size, objects: [(1, UInt64.max)])),
            ("extends past the collection end", heapFile(collectionSize: size, objects: [(1, 5), (3, size - 40)])),
            ("does not fit in the file", heapFile(collectionSize: 1 << 40, objects: [(1, 5)])),
            ("does not fit in the file", heapFile(collectionSize: 8, objects: [])),
        ]
        for (fragment, bytes) in refused {
            ErrorAssertions.assertThrows(["global heap collection at byte 64", fragment], ErrorAssertions.isCorrupt) {
                try check(bytes)
            }
        }
        // Only version-1 collections are walked; "GCOL" elsewhere with another version is data.
        var other = heapFile(collectionSize: size, objects: [(1, 5), (0, 0)])
        other[68] = 2
        XCTAssertNoThrow(try check(other))
    }

    // MARK: - Structure

    /// `body` edits a sealed model image, which is then resealed (a crafted file with a valid
    /// checksum); the load must fail with every fragment in the message.
    func assertRefusedAfter(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                            _ body: (inout [UInt8]) throws -> Void) throws {
        var bytes = try image()
        try body(&bytes)
        try FileIntegrity.seal(&bytes)
        ErrorAssertions.assertThrows(fragments, ErrorAssertions.isCorrupt, file: file, line: line) {
            _ = try bytes.withUnsafeBytes { try ModelFile.load(image: $0) }
        }
    }

    /// The offset of the version-1 attribute message named `name` (`[1, 0, name size: 2, datatype
    /// size: 2, dataspace size: 2]` then the name).
    func attributeMessage(_ name: String, in bytes: [UInt8]) throws -> Int {
        let pattern = [1, 0, UInt8(name.utf8.count + 1), 0] as [UInt8]
        let nameBytes = Array(name.utf8) + [0]
        let found = (0..<(bytes.count - 16)).first {
            bytes[$0..<$0 + 4].elementsEqual(pattern) && bytes[$0 + 8..<$0 + 8 + nameBytes.count].elementsEqual(nameBytes)
        }
        return try XCTUnwrap(found, "attribute message '\(name)'")
    }

    func testStructureOfSavedFilesPassesAndCraftedMessagesAreRefused() throws {
        let bytes = try image()
        XCTAssertEqual(try bytes.withUnsafeBytes { try FileIntegrity.check($0) }, .checksummed)
        // "format" is a variable-length string of 16 bytes: name (7, padded to 8), datatype, dataspace, reference.
        let m = try attributeMessage("format", in: bytes)
        let typeSize = Int(bytes[m + 4]) | Int(bytes[m + 5]) << 8, spaceSize = Int(bytes[m + 6]) | Int(bytes[m + 7]) << 8
        let reference = m + 8 + 8 + (typeSize + 7) / 8 * 8 + (spaceSize + 7) / 8 * 8
        XCTAssertEqual(Array(bytes[reference..<reference + 4]), [16, 0, 0, 0])
        // Sizes that run past the message: HDF5 1.10.8 decodes past them (a crash in H5Aexists).
        try assertRefusedAfter(["damaged HDF5 object header message at byte \(m)", "attribute datatype of 65520 bytes"]) {
            $0[m + 4] = 0xF0
            $0[m + 5] = 0xFF
        }
        try assertRefusedAfter(["attribute dataspace of 65528 bytes"]) {
            $0[m + 6] = 0xF8
            $0[m + 7] = 0xFF
        }
        try assertRefusedAfter(["attribute name of 7 bytes is not terminated"]) { $0[m + 8 + 6] = 0x73 }
        try assertRefusedAfter(["dataspace rank 200"]) { $0[m + 16 + (typeSize + 7) / 8 * 8 + 1] = 200 }
        // Variable-length values: a forged length (HDF5 would allocate and clear it) or object index.
        try assertRefusedAfter(["variable-length value claims 2147483632 × 1 bytes", "holds 16"]) {
            $0[reference] = 0xF0
            $0[reference + 1] = 0xFF
            $0[reference + 2] = 0xFF
            $0[reference + 3] = 0x7F
        }
        try assertRefusedAfter(["variable-length value refers to object 999", "no such object"]) {
            $0[reference + 12] = 0xE7
            $0[reference + 13] = 0x03
        }
        // A number whose bits lie outside its bytes (HDF5 would convert bits past its buffer).
        let shape = try attributeMessage("event_shape", in: bytes)
        try assertRefusedAfter(["64 bits at bit offset 4096 of a 8-byte number"]) { $0[shape + 8 + 16 + 9] = 0x10 }
        // A contiguous dataset's storage: inside the file, and as large as its dataspace × datatype.
        let layout = try XCTUnwrap((0..<bytes.count - 10).first {
            bytes[$0..<$0 + 4].elementsEqual([8, 0, 24, 0]) && bytes[$0 + 8] == 3 && bytes[$0 + 9] == 1
        }, "a version-3 contiguous layout message")
        try assertRefusedAfter(["damaged HDF5 metadata at byte", "a dataset of 3 × 8 bytes stored in 1 bytes"]) {
            for k in 0..<8 { $0[layout + 18 + k] = k == 0 ? 1 : 0 }
        }
        try assertRefusedAfter(["contiguous data at address", "lies outside the file"]) { $0[layout + 16] = 0x7F }
        // Groups: a symbol node with more entries than the superblock allows, a B-tree child outside the file.
        let snod = try XCTUnwrap((0..<bytes.count - 4).first { bytes[$0..<$0 + 4].elementsEqual("SNOD".utf8) })
        try assertRefusedAfter(["damaged HDF5 metadata at byte \(snod)", "a symbol node with 1000 entries (at most 8)"]) {
            $0[snod + 6] = 0xE8
            $0[snod + 7] = 0x03
        }
        let tree = try XCTUnwrap((0..<bytes.count - 4).first { bytes[$0..<$0 + 4].elementsEqual("TREE".utf8) })
        try assertRefusedAfter(["symbol node at address", "lies outside the file"]) {
            for k in 0..<8 { $0[tree + 24 + 8 + k] = 0x7F }  // the first child, after the 8-byte first key
        }
    }
}
