import CHDF5
import Foundation
import XCTest

@testable import FlowCore
@testable import FlowHDF5
@testable import FlowModelFile

/// Tests of the HDF5 wrapper (`Sources/FlowCore/IO/HDF5`) and of `writeFileAtomically`.
///
/// The h5py interoperability tests run the Python named by `SWIFTFLOWS_PYTHON`, else
/// `<package root>/.venv/bin/python`; they are skipped when neither exists or it lacks h5py.
final class HDF5Tests: XCTestCase {
    // MARK: - Fixtures

    /// Float32 values whose bit patterns must survive a round trip.
    static let specialFloats: [Float] = [
        Float.leastNonzeroMagnitude, -0.0, 0.0, Float(bitPattern: 0x7FC1_2345), Float(bitPattern: 0xFFA0_0001),
        Float.greatestFiniteMagnitude, -Float.greatestFiniteMagnitude, Float.infinity, -Float.infinity,
        Float.leastNormalMagnitude, Float(bitPattern: 0x0001_16C2), 3.14159274, -1.5e30, Float(1).nextUp,
    ]

    /// Float64 values whose bit patterns must survive a round trip.
    static let specialDoubles: [Double] = [
        Double.leastNonzeroMagnitude, -0.0, Double(bitPattern: 0x7FF8_0000_DEAD_BEEF), Double.greatestFiniteMagnitude,
        -Double.infinity, Double.pi, Double(bitPattern: 0x0000_1268_8B70_E62B), -2.5,
    ]

    /// A fresh empty directory, removed after the test.
    func makeTemporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "swiftflows-hdf5-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// Writes one file containing every attribute and dataset kind the wrapper supports.
    func makeSampleImage() throws -> [UInt8] {
        let file = try HDF5File.createInMemory()
        let root = try file.root
        try root.setAttribute("format", string: "swiftflows")
        try root.setAttribute("unicode", string: "héllo ✓ 流")
        try root.setAttribute("empty", string: "")
        try root.setAttribute("version", int: 3)
        try root.setAttribute("min", int: Int64.min)
        try root.setAttribute("max", int: Int64.max)
        try root.setAttribute("nan", double: Double(bitPattern: 0x7FF8_0000_DEAD_BEEF))
        try root.setAttribute("negzero", double: -0.0)
        try root.setAttribute("dims", ints: [2, -3, Int64.max, Int64.min])
        try root.setAttribute("noints", ints: [])
        try root.setAttribute("scales", doubles: Self.specialDoubles)
        try root.setAttribute("nodoubles", doubles: [])
        // Replacing an attribute keeps only the new value (and may change its type).
        try root.setAttribute("replaced", int: 1)
        try root.setAttribute("replaced", string: "second")

        let layers = try root.createGroup("layers")
        let layer = try layers.createGroup("0001")
        XCTAssertEqual(layer.path, "/layers/0001")
        try layer.setAttribute("kind", string: "affine_coupling")
        try Self.specialFloats.withUnsafeBufferPointer {
            try layer.writeDataset("special", floats: $0, shape: [Self.specialFloats.count])
        }
        let matrix: [Float] = (0..<12).map { Float($0) * 0.25 - 1 }
        try matrix.withUnsafeBufferPointer { try layer.writeDataset("weight_0", floats: $0, shape: [3, 4]) }
        try [Float(7.5)].withUnsafeBufferPointer { try layer.writeDataset("scalar", floats: $0, shape: []) }
        try [Float]().withUnsafeBufferPointer { try layer.writeDataset("empty", floats: $0, shape: [0, 4]) }
        try layer.writeDataset("counts", int64s: [Int64.min, -1, 0, 1, Int64.max, 42], shape: [2, 3])
        try layer.writeDataset("doubles", doubles: Self.specialDoubles, shape: [2, 2, 2])
        let image = try file.fileImage()
        file.close()
        return image
    }

    /// Checks everything `makeSampleImage` wrote, bit for bit.
    func checkSample(_ file: HDF5File) throws {
        let root = try file.root
        XCTAssertEqual(root.path, "/")
        XCTAssertEqual(try root.stringAttribute("format"), "swiftflows")
        XCTAssertEqual(try root.stringAttribute("unicode"), "héllo ✓ 流")
        XCTAssertEqual(try root.stringAttribute("empty"), "")
        XCTAssertEqual(try root.intAttribute("version"), 3)
        XCTAssertEqual(try root.intAttribute("min"), Int64.min)
        XCTAssertEqual(try root.intAttribute("max"), Int64.max)
        XCTAssertEqual(try root.doubleAttribute("version"), 3.0)
        XCTAssertEqual(try root.doubleAttribute("nan").bitPattern, 0x7FF8_0000_DEAD_BEEF)
        XCTAssertEqual(try root.doubleAttribute("negzero").bitPattern, (-0.0 as Double).bitPattern)
        XCTAssertEqual(try root.intsAttribute("dims"), [2, -3, Int64.max, Int64.min])
        XCTAssertEqual(try root.intsAttribute("version"), [3])
        XCTAssertEqual(try root.intsAttribute("noints"), [])
        XCTAssertEqual(try root.doublesAttribute("scales").map(\.bitPattern), Self.specialDoubles.map(\.bitPattern))
        XCTAssertEqual(try root.doublesAttribute("nodoubles"), [])
        XCTAssertEqual(try root.doublesAttribute("dims").count, 4)
        XCTAssertEqual(try root.stringAttribute("replaced"), "second")
        XCTAssertThrowsError(try root.intsAttribute("dims", maxCount: 3))
        XCTAssertTrue(root.hasAttribute("format"))
        XCTAssertFalse(root.hasAttribute("missing"))
        XCTAssertFalse(root.hasAttribute(""))
        XCTAssertEqual(try root.attributeNames(), [
            "dims", "empty", "format", "max", "min", "nan", "negzero", "nodoubles", "noints", "replaced", "scales",
            "unicode", "version",
        ])
        XCTAssertEqual(try root.childNames(), ["layers"])
        XCTAssertTrue(root.isGroup("layers"))
        XCTAssertFalse(root.isDataset("layers"))

        let layer = try root.openGroup("layers").openGroup("0001")
        XCTAssertEqual(layer.path, "/layers/0001")
        XCTAssertEqual(try root.openGroup("layers/0001").path, "/layers/0001")
        XCTAssertEqual(try layer.stringAttribute("kind"), "affine_coupling")
        XCTAssertEqual(try layer.childNames(), ["counts", "doubles", "empty", "scalar", "special", "weight_0"])
        XCTAssertTrue(layer.isDataset("special"))
        XCTAssertFalse(layer.isGroup("special"))
        XCTAssertTrue(layer.hasChild("special"))
        XCTAssertFalse(layer.hasChild("nothing"))
        XCTAssertFalse(layer.isDataset("nothing"))

        let special = try layer.readFloats("special", expectedShape: [Self.specialFloats.count])
        XCTAssertEqual(special.shape, [Self.specialFloats.count])
        XCTAssertEqual(special.values.map(\.bitPattern), Self.specialFloats.map(\.bitPattern))
        let weight = try layer.readFloats("weight_0")
        XCTAssertEqual(weight.shape, [3, 4])
        XCTAssertEqual(weight.values, (0..<12).map { Float($0) * 0.25 - 1 })
        XCTAssertEqual(try layer.datasetShape("weight_0"), [3, 4])
        let scalar = try layer.readFloats("scalar", expectedShape: [])
        XCTAssertEqual(scalar.shape, [])
        XCTAssertEqual(scalar.values, [7.5])
        let empty = try layer.readFloats("empty")
        XCTAssertEqual(empty.shape, [0, 4])
        XCTAssertEqual(empty.values, [])
        let counts = try layer.readInt64s("counts")
        XCTAssertEqual(counts.shape, [2, 3])
        XCTAssertEqual(counts.values, [Int64.min, -1, 0, 1, Int64.max, 42])
        let doubles = try layer.readDoubles("doubles")
        XCTAssertEqual(doubles.shape, [2, 2, 2])
        XCTAssertEqual(doubles.values.map(\.bitPattern), Self.specialDoubles.map(\.bitPattern))
        // float32 data read as doubles (converted by HDF5), float64 read as floats.
        XCTAssertEqual(try layer.readDoubles("weight_0").values, weight.values.map(Double.init))
        XCTAssertEqual(try layer.readFloats("doubles").values[7], -2.5)
    }

    // MARK: - Round trips

    func testEveryKindRoundTripsBitExactThroughFileImage() throws {
        let image = try makeSampleImage()
        XCTAssertEqual(Array(image.prefix(8)), [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A])
        let file = try image.withUnsafeBytes { try HDF5File.openImage($0) }
        try checkSample(file)
        // The image of a file opened from an image is the same file again.
        let again = try file.fileImage()
        try checkSample(try again.withUnsafeBytes { try HDF5File.openImage($0) })
    }

    /// Files carry no modification times: the same model saved in different seconds gives the
    /// same bytes (HDF5 stamps object headers by default).
    func testSavingTheSameModelTwiceGivesTheSameBytes() throws {
        let flow = try NormalizingFlow<Float>.glow(shape: [1, 4, 4], levels: 2, steps: 1, hidden: 4, seed: 3)
        let first = try flow.fileImage()
        Thread.sleep(forTimeInterval: 1.1)
        XCTAssertEqual(try flow.fileImage(), first)
    }

    func testStoredFileTypesAreLittleEndianFixedWidth() throws {
        let file = try makeSampleImage().withUnsafeBytes { try HDF5File.openImage($0) }
        let layer = try file.root.openGroup("layers/0001")
        func datasetType(_ name: String) throws -> (H5T_class_t, Int, H5T_order_t) {
            let dataset = H5Dopen2(layer.id, name, hid_t(H5P_DEFAULT))
            XCTAssertGreaterThanOrEqual(dataset, 0)
            defer { H5Dclose(dataset) }
            let type = H5Dget_type(dataset)
            defer { H5Tclose(type) }
            return (H5Tget_class(type), H5Tget_size(type), H5Tget_order(type))
        }
        let f = try datasetType("special")
        XCTAssertTrue(f.0 == H5T_FLOAT && f.1 == 4 && f.2 == H5T_ORDER_LE)
        let d = try datasetType("doubles")
        XCTAssertTrue(d.0 == H5T_FLOAT && d.1 == 8 && d.2 == H5T_ORDER_LE)
        let i = try datasetType("counts")
        XCTAssertTrue(i.0 == H5T_INTEGER && i.1 == 8 && i.2 == H5T_ORDER_LE)
    }

    func testAtomicWriteThenOpenPathReadsTheSameAndHoldsNoLock() throws {
        let directory = try makeTemporaryDirectory()
        let path = directory + "/model.h5"
        try writeFileAtomically(try makeSampleImage(), to: path)
        let file = try HDF5File.open(path: path)
        let second = try HDF5File.open(path: path)  // a concurrent reader must not fail
        try checkSample(file)
        try checkSample(second)
        // No flock is held while open (locking disabled) nor after close.
        let fd = open(path, O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0, "file is locked while open read-only")
        _ = flock(fd, LOCK_UN)
        file.close()
        second.close()
        XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0, "file is locked after close")
    }

    func testReadOnlyFileRefusesWrites() throws {
        let file = try makeSampleImage().withUnsafeBytes { try HDF5File.openImage($0) }
        let root = try file.root
        XCTAssertThrowsError(try root.setAttribute("x", int: 1)) { XCTAssertTrue($0 is HDF5Error) }
        XCTAssertThrowsError(try root.createGroup("new"))
        XCTAssertThrowsError(try root.writeDataset("d", int64s: [1], shape: [1]))
    }

    // MARK: - Atomic writes

    func testAtomicWriteIntoMissingDirectoryThrowsAndCreatesNothing() throws {
        let directory = try makeTemporaryDirectory()
        let missing = directory + "/missing"
        XCTAssertThrowsError(try writeFileAtomically([1, 2, 3], to: missing + "/model.h5")) { error in
            XCTAssertTrue(error is HDF5Error)
            XCTAssertTrue("\(error)".contains(missing + "/model.h5"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), [])
    }

    func testAtomicWriteReplacesExistingFileAndLeavesNoTemporaryFiles() throws {
        let directory = try makeTemporaryDirectory()
        let path = directory + "/model.h5"
        try writeFileAtomically(Array(repeating: 7, count: 100_000), to: path)
        let image = try makeSampleImage()
        try writeFileAtomically(image, to: path)
        XCTAssertEqual(FileManager.default.contents(atPath: path).map { [UInt8]($0) }, image)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["model.h5"])
        try writeFileAtomically([], to: path)
        XCTAssertEqual(FileManager.default.contents(atPath: path)?.count, 0)
        // A relative path (no slash) lands in the current directory.
        let previous = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(directory))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
        try writeFileAtomically([1, 2], to: "relative.bin")
        XCTAssertEqual(FileManager.default.contents(atPath: directory + "/relative.bin").map { [UInt8]($0) }, [1, 2])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory).sorted(), ["model.h5", "relative.bin"])
    }

    func testFailedAtomicWriteRemovesTemporaryFileAndKeepsTarget() throws {
        let directory = try makeTemporaryDirectory()
        // A target that is not a regular file (here a non-empty directory) is refused before
        // anything is written; nothing is left beside it.
        let target = directory + "/target"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
        try Data([9]).write(to: URL(fileURLWithPath: target + "/keep"))
        XCTAssertThrowsError(try writeFileAtomically([1, 2, 3], to: target)) { error in
            XCTAssertTrue("\(error)".contains("not a regular file (a directory)"), "\(error)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["target"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: target), ["keep"])
        XCTAssertThrowsError(try writeFileAtomically([1], to: ""))
        XCTAssertThrowsError(try writeFileAtomically([1], to: directory + "/"))
    }

    // MARK: - Hostile input

    func testGarbageEmptyAndTruncatedImagesThrow() throws {
        func assertRejected(_ bytes: [UInt8], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try bytes.withUnsafeBytes { try HDF5File.openImage($0) }, what, file: file, line: line) {
                XCTAssertTrue($0 is HDF5Error, what, file: file, line: line)
            }
        }
        assertRejected([], "empty")
        XCTAssertThrowsError(try HDF5File.openImage(UnsafeRawBufferPointer(start: nil, count: 0)))
        var generator = HDF5GarbageGenerator(seed: 12345)
        for size in [1, 7, 8, 100, 512, 4096, 100_000] {
            assertRejected((0..<size).map { _ in UInt8(truncatingIfNeeded: generator.next()) }, "garbage \(size)")
        }
        let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]
        for size in [0, 1, 16, 200, 5000] {
            assertRejected(signature + (0..<size).map { _ in UInt8(truncatingIfNeeded: generator.next()) },
                           "signature + garbage \(size)")
        }
        let image = try makeSampleImage()
        var lengths = Set([1, 8, 9, 50, 95, 96, 97, 200, image.count - 1, image.count - 8])
        for k in 1..<64 { lengths.insert(image.count * k / 64) }
        for length in lengths.sorted() where length < image.count {
            assertRejected(Array(image.prefix(length)), "truncated to \(length) of \(image.count)")
        }
        XCTAssertThrowsError(try "not hdf5 at all".data(using: .utf8)!.withUnsafeBytes { try HDF5File.openImage($0) }) {
            XCTAssertTrue("\($0)".contains("cannot open HDF5 file image"), "\($0)")
        }
    }

    func testOpenPathErrorsNameThePathAndHDF5Reason() throws {
        let directory = try makeTemporaryDirectory()
        XCTAssertThrowsError(try HDF5File.open(path: directory + "/absent.h5")) {
            XCTAssertTrue("\($0)".hasPrefix("cannot open '\(directory)/absent.h5': unable to open file"), "\($0)")
        }
        try writeFileAtomically(Array("plain text, not HDF5".utf8), to: directory + "/text.h5")
        XCTAssertThrowsError(try HDF5File.open(path: directory + "/text.h5")) {
            XCTAssertTrue("\($0)".contains("text.h5"), "\($0)")
            XCTAssertTrue("\($0)".contains("signature"), "\($0)")
        }
    }

    func testExpectedShapeMismatchNamesBothShapes() throws {
        let file = try HDF5File.createInMemory()
        let layer = try file.root.createGroup("layers").createGroup("0001")
        try [Float](repeating: 1, count: 12).withUnsafeBufferPointer {
            try layer.writeDataset("weight_0", floats: $0, shape: [3, 4])
        }
        XCTAssertThrowsError(try layer.readFloats("weight_0", expectedShape: [4, 4])) {
            XCTAssertEqual("\($0)", "dataset /layers/0001/weight_0 has shape [3, 4], expected [4, 4]")
        }
        XCTAssertThrowsError(try layer.readFloats("weight_0", expectedShape: [12]))
        XCTAssertThrowsError(try layer.readDoubles("weight_0", expectedShape: []))
        XCTAssertEqual(try layer.readFloats("weight_0", expectedShape: [3, 4]).values.count, 12)
        XCTAssertThrowsError(try layer.readFloats("missing")) {
            XCTAssertTrue("\($0)".contains("/layers/0001/missing"), "\($0)")
        }
        XCTAssertThrowsError(try file.root.openGroup("layers/0003")) {
            XCTAssertTrue("\($0)".contains("/layers/0003"), "\($0)")
        }
        XCTAssertThrowsError(try layer.openGroup("weight_0")) {
            XCTAssertTrue("\($0)".contains("not a group"), "\($0)")
        }
    }

    func testWrongClassesAreRefusedWithNamedMessages() throws {
        let file = try HDF5File.createInMemory()
        let root = try file.root
        try root.writeDataset("ints", int64s: [1, 2, 3], shape: [3])
        try [Float(1)].withUnsafeBufferPointer { try root.writeDataset("floats", floats: $0, shape: [1]) }
        XCTAssertThrowsError(try root.readFloats("ints")) {
            XCTAssertTrue("\($0)".contains("dataset /ints"), "\($0)")
            XCTAssertTrue("\($0)".contains("64-bit signed integer"), "\($0)")
        }
        XCTAssertThrowsError(try root.readDoubles("ints"))
        XCTAssertThrowsError(try root.readInt64s("floats")) {
            XCTAssertTrue("\($0)".contains("32-bit float"), "\($0)")
        }
        XCTAssertThrowsError(try root.readFloats("")) { XCTAssertTrue($0 is HDF5Error) }
        try root.setAttribute("f", double: 1.5)
        try root.setAttribute("s", string: "x")
        try root.setAttribute("v", ints: [1, 2])
        XCTAssertThrowsError(try root.intAttribute("f")) {
            XCTAssertTrue("\($0)".contains("'f'") && "\($0)".contains("float"), "\($0)")
        }
        XCTAssertThrowsError(try root.intAttribute("s")) {
            XCTAssertTrue("\($0)".contains("'s'") && "\($0)".contains("string"), "\($0)")
        }
        XCTAssertThrowsError(try root.intAttribute("v")) { XCTAssertTrue("\($0)".contains("[2]"), "\($0)") }
        XCTAssertThrowsError(try root.doubleAttribute("s"))
        XCTAssertThrowsError(try root.stringAttribute("f"))
        XCTAssertThrowsError(try root.intAttribute("absent")) { XCTAssertTrue("\($0)".contains("'absent'"), "\($0)") }
        XCTAssertThrowsError(try root.stringAttribute("s", maxLength: 0))
        XCTAssertThrowsError(try root.setAttribute("nul", string: "a\0b"))
        XCTAssertFalse(root.hasAttribute("nul"))
        // Count/shape mismatches and invalid shapes are refused before HDF5 sees them.
        XCTAssertThrowsError(try root.writeDataset("bad", int64s: [1, 2, 3], shape: [2, 2]))
        XCTAssertThrowsError(try root.writeDataset("neg", int64s: [], shape: [-1, 0]))
        XCTAssertThrowsError(try root.writeDataset("deep", int64s: [1], shape: Array(repeating: 1, count: 9)))
        XCTAssertThrowsError(try root.writeDataset("huge", doubles: [], shape: [Int.max, 2, 0]))
        XCTAssertFalse(root.hasChild("bad") || root.hasChild("neg") || root.hasChild("deep") || root.hasChild("huge"))
        // Existing datasets are not overwritten.
        XCTAssertThrowsError(try root.writeDataset("ints", int64s: [4], shape: [1]))
        XCTAssertEqual(try root.readInt64s("ints").values, [1, 2, 3])
    }

    func testMaxElementsIsCheckedFromTheDataspaceBeforeAllocating() throws {
        let file = try HDF5File.createInMemory()
        let root = try file.root
        try [Float](repeating: 0, count: 100).withUnsafeBufferPointer {
            try root.writeDataset("hundred", floats: $0, shape: [10, 10])
        }
        XCTAssertEqual(try root.readFloats("hundred", maxElements: 100).values.count, 100)
        XCTAssertThrowsError(try root.readFloats("hundred", maxElements: 99)) {
            XCTAssertTrue("\($0)".contains("100 elements"), "\($0)")
        }
        XCTAssertThrowsError(try root.readInt64s("hundred", maxElements: 99))
        // Datasets with enormous (never allocated) chunked extents: reading must throw, not allocate
        // petabytes or trap on overflow.
        func makeSparse(_ name: String, _ dims: [hsize_t]) {
            let space = H5Screate_simple(Int32(dims.count), dims, nil)
            let dcpl = H5Pcreate(chdf5_H5P_DATASET_CREATE())
            let chunk = [hsize_t](repeating: 1, count: dims.count)
            XCTAssertGreaterThanOrEqual(H5Pset_chunk(dcpl, Int32(dims.count), chunk), 0)
            let dataset = H5Dcreate2(root.id, name, chdf5_H5T_IEEE_F32LE(), space, hid_t(H5P_DEFAULT), dcpl,
                                     hid_t(H5P_DEFAULT))
            XCTAssertGreaterThanOrEqual(dataset, 0)
            H5Dclose(dataset)
            H5Pclose(dcpl)
            H5Sclose(space)
        }
        makeSparse("big", [1 << 31, 1 << 31])
        makeSparse("overflowing", [1 << 32, 1 << 32, 1 << 32])
        XCTAssertEqual(try root.datasetShape("big"), [1 << 31, 1 << 31])
        XCTAssertThrowsError(try root.readFloats("big")) { XCTAssertTrue("\($0)".contains("limit"), "\($0)") }
        XCTAssertThrowsError(try root.readFloats("big", maxElements: Int.max)) {
            XCTAssertTrue("\($0)".contains("too many"), "\($0)")
        }
        XCTAssertThrowsError(try root.readDoubles("overflowing", maxElements: Int.max)) {
            XCTAssertTrue("\($0)".contains("too many"), "\($0)")
        }
    }

    func testChildNamesAreInNameOrderAndLimited() throws {
        let file = try HDF5File.createInMemory()
        let root = try file.root
        for name in ["b", "a", "c10", "c2", "0003", "0001"] { _ = try root.createGroup(name) }
        try root.writeDataset("B", doubles: [1], shape: [1])
        XCTAssertEqual(try root.childNames(), ["0001", "0003", "B", "a", "b", "c10", "c2"])
        XCTAssertEqual(try root.childNames(limit: 7).count, 7)
        XCTAssertThrowsError(try root.childNames(limit: 6)) { XCTAssertTrue("\($0)".contains("limit"), "\($0)") }
        XCTAssertEqual(try root.openGroup("a").childNames(), [])
        XCTAssertThrowsError(try root.createGroup("a"))
        XCTAssertThrowsError(try root.createGroup("x/y"))  // intermediate groups are not created
    }

    func testClosedFileMakesGroupsThrowInsteadOfCrashing() throws {
        let file = try HDF5File.createInMemory()
        let group = try file.root.createGroup("g")
        try group.setAttribute("a", int: 1)
        file.close()
        file.close()
        XCTAssertFalse(file.isOpen)
        XCTAssertThrowsError(try group.intAttribute("a")) { XCTAssertTrue("\($0)".contains("closed"), "\($0)") }
        XCTAssertThrowsError(try file.root)
        XCTAssertThrowsError(try file.fileImage())
        XCTAssertFalse(group.hasAttribute("a"))
        XCTAssertFalse(group.hasChild("x"))
    }

    func testWorksFromOtherThreads() throws {
        let image = try makeSampleImage()
        let lock = NSLock()
        var failures: [String] = []
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            do {
                let file = try image.withUnsafeBytes { try HDF5File.openImage($0) }
                try checkSample(file)
                XCTAssertThrowsError(try [UInt8](repeating: 0, count: 64).withUnsafeBytes { try HDF5File.openImage($0) })
            } catch {
                lock.withLock { failures.append("\(error)") }
            }
        }
        XCTAssertEqual(failures, [])
    }

    // MARK: - h5py interoperability

    /// The Python interpreter with h5py, or `nil` (then the test is skipped).
    static func pythonWithH5py() -> String? {
        var candidates: [String] = []
        if let configured = ProcessInfo.processInfo.environment["SWIFTFLOWS_PYTHON"], !configured.isEmpty {
            candidates.append(configured)
        }
        let packageRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(packageRoot.appendingPathComponent(".venv/bin/python").path)
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
            if let result = try? runPython(candidate, "import h5py, numpy", []), result.status == 0 {
                return candidate
            }
        }
        return nil
    }

    /// Runs `python -c script args...`, returning exit status and combined output.
    static func runPython(_ python: String, _ script: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testReadsFileWrittenByH5py() throws {
        guard let python = Self.pythonWithH5py() else { throw XCTSkip("no Python with h5py") }
        let path = try makeTemporaryDirectory() + "/from_h5py.h5"
        let script = """
        import sys, h5py, numpy as np
        with h5py.File(sys.argv[1], "w") as f:
            f.attrs["name"] = "RealNVP ✓"
            f.attrs["ascii"] = np.bytes_(b"fixed-ascii")
            f.attrs["i32"] = np.int32(-7)
            f.attrs["u8"] = np.uint8(200)
            f.attrs["u64"] = np.uint64(2**63 + 5)
            f.attrs["one"] = np.array([5], dtype=np.int16)
            f.attrs["shape"] = np.array([3, 4], dtype=np.int64)
            f.attrs["lr"] = 1e-3
            f.attrs["f32"] = np.float32(0.1)
            g = f.create_group("layers/0001")
            g.attrs["kind"] = "affine"
            g.create_dataset("w64", data=np.arange(12, dtype=np.float64).reshape(3, 4) / 8)
            bits = np.array([1, 0x80000000, 0x7fc12345, 0x7f7fffff, 0xff800000, 0x40490fdb], dtype=np.uint32)
            g.create_dataset("w32", data=bits.view(np.float32))
            g.create_dataset("gz", data=np.arange(1000, dtype=np.float32).reshape(10, 100),
                             chunks=(3, 7), compression="gzip", compression_opts=4, shuffle=True)
            g.create_dataset("half", data=np.array([0.5, -2.0, 65504.0, np.inf], dtype=np.float16))
            g.create_dataset("i32", data=np.array([[-1, 2], [3, -4]], dtype=np.int32))
            g.create_dataset("u16", data=np.array([65535], dtype=np.uint16))
            g.create_dataset("big", data=np.array([2**63], dtype=np.uint64))
            g.create_dataset("names", data=np.array([b"a", b"b"]))
        """
        let result = try Self.runPython(python, script, [path])
        XCTAssertEqual(result.status, 0, result.output)
        let file = try HDF5File.open(path: path)
        let root = try file.root
        XCTAssertEqual(try root.stringAttribute("name"), "RealNVP ✓")
        XCTAssertEqual(try root.stringAttribute("ascii"), "fixed-ascii")
        XCTAssertEqual(try root.intAttribute("i32"), -7)
        XCTAssertEqual(try root.intAttribute("u8"), 200)
        XCTAssertThrowsError(try root.intAttribute("u64")) { XCTAssertTrue("\($0)".contains("Int64"), "\($0)") }
        XCTAssertEqual(try root.doubleAttribute("u64"), 9223372036854775813.0)
        XCTAssertEqual(try root.intAttribute("one"), 5)
        XCTAssertEqual(try root.intsAttribute("shape"), [3, 4])
        XCTAssertEqual(try root.intsAttribute("i32"), [-7])
        XCTAssertEqual(try root.doubleAttribute("lr"), 1e-3)
        XCTAssertEqual(try root.doubleAttribute("f32"), Double(Float(0.1)))
        XCTAssertEqual(try root.doublesAttribute("shape"), [3, 4])
        XCTAssertThrowsError(try root.intAttribute("lr")) {
            XCTAssertTrue("\($0)".contains("'lr'") && "\($0)".contains("64-bit float"), "\($0)")
        }
        let layer = try root.openGroup("layers/0001")
        XCTAssertEqual(try layer.stringAttribute("kind"), "affine")
        let w64 = try layer.readDoubles("w64", expectedShape: [3, 4])
        XCTAssertEqual(w64.values, (0..<12).map { Double($0) / 8 })
        XCTAssertEqual(try layer.readFloats("w64").values, (0..<12).map { Float($0) / 8 })
        let w32 = try layer.readFloats("w32")
        XCTAssertEqual(w32.values.map(\.bitPattern), [1, 0x8000_0000, 0x7FC1_2345, 0x7F7F_FFFF, 0xFF80_0000, 0x4049_0FDB])
        let gz = try layer.readFloats("gz", expectedShape: [10, 100])
        XCTAssertEqual(gz.values, (0..<1000).map(Float.init))
        XCTAssertEqual(try layer.readFloats("half").values, [0.5, -2.0, 65504.0, .infinity])
        XCTAssertEqual(try layer.readInt64s("i32").values, [-1, 2, 3, -4])
        XCTAssertEqual(try layer.readInt64s("u16").values, [65535])
        XCTAssertThrowsError(try layer.readInt64s("big"))
        XCTAssertThrowsError(try layer.readFloats("names")) {
            XCTAssertTrue("\($0)".contains("/layers/0001/names") && "\($0)".contains("string"), "\($0)")
        }
    }

    func testH5pyReadsFileWrittenByWrapper() throws {
        guard let python = Self.pythonWithH5py() else { throw XCTSkip("no Python with h5py") }
        let path = try makeTemporaryDirectory() + "/from_swift.h5"
        try writeFileAtomically(try makeSampleImage(), to: path)
        let script = """
        import sys, h5py, numpy as np
        def check(cond, what):
            if not cond:
                print("FAILED:", what); sys.exit(1)
        with h5py.File(sys.argv[1], "r") as f:
            for key in ("format", "unicode", "empty", "replaced"):
                check(isinstance(f.attrs[key], str), key + " is " + repr(type(f.attrs[key])))
            check(f.attrs["unicode"] == "héllo ✓ 流", "unicode")
            check(f.attrs["replaced"] == "second", "replaced")
            check(f.attrs["version"] == 3 and f.attrs["version"].dtype == np.int64, "version")
            check(f.attrs["min"] == -2**63 and f.attrs["max"] == 2**63 - 1, "min/max")
            check(np.float64(f.attrs["nan"]).view(np.uint64) == 0x7FF80000DEADBEEF, "nan payload")
            check(list(f.attrs["dims"]) == [2, -3, 2**63 - 1, -2**63], "dims")
            check(f.attrs["noints"].shape == (0,), "noints")
            check(f.attrs["scales"].shape == (8,) and f.attrs["scales"][5] == np.pi, "scales")
            g = f["layers/0001"]
            check(sorted(g.keys()) == ["counts", "doubles", "empty", "scalar", "special", "weight_0"], "keys")
            check(g.attrs["kind"] == "affine_coupling", "kind")
            w = g["weight_0"]
            check(w.dtype == np.dtype("<f4") and w.shape == (3, 4), "weight dtype/shape")
            check(np.array_equal(w[()], (np.arange(12, dtype=np.float32) * 0.25 - 1).reshape(3, 4)), "weight values")
            s = g["special"][()].view(np.uint32)
            check(s[0] == 1 and s[1] == 0x80000000 and s[3] == 0x7FC12345, "special bits")
            check(g["scalar"].shape == () and g["scalar"][()] == 7.5, "scalar")
            check(g["empty"].shape == (0, 4), "empty")
            check(g["counts"].dtype == np.dtype("<i8") and g["counts"][1, 1] == 2**63 - 1, "counts")
            check(g["doubles"].dtype == np.dtype("<f8") and g["doubles"].shape == (2, 2, 2), "doubles")
        print("OK")
        """
        let result = try Self.runPython(python, script, [path])
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertEqual(result.output.trimmingCharacters(in: .whitespacesAndNewlines), "OK")
    }
}

/// A small deterministic random generator (SplitMix64) for garbage inputs.
private struct HDF5GarbageGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
