import CZlib
@testable import FlowCore
@testable import FlowHDF5
@testable import FlowData
import FlowTestSupport
import Glibc
import XCTest

/// The IDX reader (plain and gzip), padding and cropping of image tensors, and the image data
/// sets (Fashion-MNIST from the Debian package, digits from `make data`; skipped when absent).
final class ImageDataTests: XCTestCase {
    var temporary: TemporaryDirectory!
    var directory: String { temporary.path }

    override func setUpWithError() throws { temporary = try TemporaryDirectory(prefix: "swiftflows-image-tests") }

    override func tearDown() { temporary?.remove() }

    // MARK: - Helpers

    func path(_ name: String) -> String { directory + "/" + name }

    @discardableResult
    func writeBytes(_ bytes: [UInt8], _ name: String) throws -> String {
        let p = path(name)
        let f = try XCTUnwrap(fopen(p, "wb"))
        defer { fclose(f) }
        XCTAssertEqual(bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }, bytes.count)
        return p
    }

    func readBytes(_ p: String) throws -> [UInt8] {
        let f = try XCTUnwrap(fopen(p, "rb"))
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { fread($0.baseAddress, 1, 4096, f) }
            if n == 0 { break }
            bytes += buffer[0..<n]
        }
        return bytes
    }

    /// `bytes` gzip-compressed with zlib's gzopen/gzwrite, as `members` concatenated gzip members.
    @discardableResult
    func writeGzip(_ bytes: [UInt8], _ name: String, members: Int = 1) throws -> String {
        let p = path(name)
        unlink(p)
        let cut = bytes.count / members
        for m in 0..<members {
            let part = Array(bytes[(m * cut)..<(m == members - 1 ? bytes.count : (m + 1) * cut)])
            let gz = try XCTUnwrap(gzopen(p, m == 0 ? "wb9" : "ab9"))
            if !part.isEmpty {
                let written = part.withUnsafeBytes { gzwrite(gz, $0.baseAddress, UInt32($0.count)) }
                XCTAssertEqual(Int(written), part.count)
            }
            XCTAssertEqual(gzclose(gz), Z_OK)
        }
        return p
    }

    /// An IDX file: magic `00 00 type rank`, big-endian dimensions, then `data`.
    func idx(_ shape: [Int], _ data: [UInt8], type: UInt8 = 0x08, rank: Int? = nil) -> [UInt8] {
        var bytes: [UInt8] = [0, 0, type, UInt8(rank ?? shape.count)]
        for d in shape { bytes += [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: UInt32(d) >> $0) } }
        return bytes + data
    }

    /// Deterministic, barely compressible bytes.
    func noise(_ count: Int) -> [UInt8] {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
    }

    /// Deterministic pixel values covering 0...255.
    func pixels(_ count: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ $0 / 7) } }

    func assertThrows(_ fragments: [String], _ matches: (FlowError) -> Bool, file: StaticString = #filePath,
                      line: UInt = #line, _ body: () throws -> Void) {
        ErrorAssertions.assertThrows(fragments, matches, file: file, line: line, body)
    }

    let isFormat = ErrorAssertions.isFormat
    let isIO = ErrorAssertions.isIO
    let isInvalid = ErrorAssertions.isInvalid
    let isLimit = ErrorAssertions.isLimit
    let isShape = ErrorAssertions.isShape

    // MARK: - IDX round trips

    func testIDXImagesAndLabelsRoundTripPlainAndGzip() throws {
        let (n, rows, cols) = (5, 3, 4)
        var data = pixels(n * rows * cols)
        (data[7], data[8]) = (255, 0)
        let labels: [UInt8] = [3, 0, 9, 1, 255]
        let imageFile = idx([n, rows, cols], data)
        let labelFile = idx([n], labels)
        let files = [
            (try writeBytes(imageFile, "img-ubyte"), try writeBytes(labelFile, "lab-ubyte")),
            (try writeGzip(imageFile, "img-ubyte.gz"), try writeGzip(labelFile, "lab-ubyte.gz")),
            (try writeGzip(imageFile, "img.multi.gz", members: 3), try writeGzip(labelFile, "lab.multi.gz", members: 2)),
        ]
        XCTAssertEqual(Array(try readBytes(files[1].0).prefix(2)), [0x1F, 0x8B])
        for (imagesPath, labelsPath) in files {
            let images = try IDXReader.readImages(path: imagesPath)
            XCTAssertEqual(images.shape, [n, 1, rows, cols], imagesPath)
            XCTAssertEqual(images.scalars, data.map(Float.init), imagesPath)
            XCTAssertEqual(try IDXReader.readLabels(path: labelsPath), labels.map(Int.init), labelsPath)
            XCTAssertEqual(try IDXReader.read(path: imagesPath), IDXArray(shape: [n, rows, cols], bytes: data))
            // The first items only.
            let two = try IDXReader.readImages(path: imagesPath, limit: 2)
            XCTAssertEqual(two.shape, [2, 1, rows, cols])
            XCTAssertEqual(two.scalars, data.prefix(2 * rows * cols).map(Float.init))
            XCTAssertEqual(try IDXReader.readLabels(path: labelsPath, limit: 4), [3, 0, 9, 1])
            XCTAssertEqual(try IDXReader.readLabels(path: labelsPath, limit: 99), labels.map(Int.init))
        }
        // Raw levels, not scaled.
        XCTAssertEqual(try IDXReader.readImages(path: files[0].0).scalars.max(), 255)
        XCTAssertEqual(try IDXReader.readImages(path: files[0].0).scalars.min(), 0)
        // From memory, plain and gzip.
        XCTAssertEqual(try IDXReader.decode(imageFile), IDXArray(shape: [n, rows, cols], bytes: data))
        XCTAssertEqual(try IDXReader.decode(try readBytes(files[1].0)), IDXArray(shape: [n, rows, cols], bytes: data))
        // Other ranks of unsigned bytes are read as stored.
        XCTAssertEqual(try IDXReader.decode(idx([2, 2, 2, 2], pixels(16))).shape, [2, 2, 2, 2])
    }

    func testIDXGzipLargerThanOneChunk() throws {
        // More than the 1 MiB raw chunk and incompressible enough to span several input chunks.
        let data = noise(300 * 64 * 64)
        let p = try writeGzip(idx([300, 64, 64], data), "big.gz")
        let images = try IDXReader.readImages(path: p)
        XCTAssertEqual(images.shape, [300, 1, 64, 64])
        XCTAssertEqual(images.scalars, data.map(Float.init))
        XCTAssertEqual(try IDXReader.readImages(path: p, limit: 7).scalars, data.prefix(7 * 64 * 64).map(Float.init))
    }

    // MARK: - IDX errors

    func testIDXWrongMagicAndType() throws {
        let images = try writeBytes(idx([2, 2, 2], pixels(8)), "images")
        let labels = try writeBytes(idx([2], [1, 2]), "labels")
        assertThrows(["'\(labels)'", "0x00000801", "not an image file", "0x00000803", "label file?"], isFormat) {
            _ = try IDXReader.readImages(path: labels)
        }
        assertThrows(["'\(images)'", "0x00000803", "not a label file", "0x00000801", "image file?"], isFormat) {
            _ = try IDXReader.readLabels(path: images)
        }
        let zip = try writeBytes([0x50, 0x4B, 0x03, 0x04, 1, 2, 3, 4], "a.zip")
        assertThrows(["'\(zip)' is not an IDX file", "wrong magic 0x504B0304"], isFormat) { _ = try IDXReader.read(path: zip) }
        let floats = try writeBytes(idx([1], [0, 0, 0, 0], type: 0x0D), "floats")
        assertThrows(["0x00000D01", "element type 0xD (32-bit float) is not supported", "unsigned bytes (0x08)"], isFormat) {
            _ = try IDXReader.read(path: floats)
        }
        assertThrows(["0 dimensions"], isFormat) { _ = try IDXReader.decode([0, 0, 8, 0]) }
        assertThrows(["5 dimensions", "1 to 4"], isFormat) { _ = try IDXReader.decode(idx([1, 1, 1, 1, 1], [7])) }
        assertThrows(["is empty", "[3, 0, 2]"], isFormat) { _ = try IDXReader.decode(idx([3, 0, 2], [])) }
        let empty = try writeBytes([], "empty")
        assertThrows(["is not an IDX file: it is empty"], isFormat) { _ = try IDXReader.read(path: empty) }
        assertThrows(["cannot open", "No such file"], isIO) { _ = try IDXReader.read(path: path("missing.gz")) }
        assertThrows(["at least 1", "0"], isInvalid) { _ = try IDXReader.read(path: images, limit: 0) }
        // Same checks through gzip.
        let gzLabels = try writeGzip(idx([2], [1, 2]), "labels.gz")
        assertThrows(["not an image file", "label file?"], isFormat) { _ = try IDXReader.readImages(path: gzLabels) }
    }

    func testIDXTruncatedAndTrailingPlain() throws {
        let file = idx([4, 3, 3], pixels(36))
        let header = try writeBytes(Array(file.prefix(10)), "header")
        assertThrows(["truncated IDX file", "ends inside the header", "the 3 dimensions: 6 of 12 bytes"], isFormat) {
            _ = try IDXReader.read(path: header)
        }
        assertThrows(["ends inside the header"], isFormat) { _ = try IDXReader.decode([0, 0]) }
        let data = try writeBytes(Array(file.dropLast(5)), "short")
        assertThrows(["'\(data)'", "truncated IDX file", "[4, 3, 3] need 36 data bytes, but only 31 follow"], isFormat) {
            _ = try IDXReader.read(path: data)
        }
        // The size check comes before any allocation: a header claiming 2^28 elements in a tiny file.
        let huge = try writeBytes(idx([1 << 12, 1 << 8, 1 << 8], [1, 2, 3]), "huge")
        assertThrows(["truncated IDX file", "need 268435456 data bytes, but only 3 follow"], isFormat) {
            _ = try IDXReader.read(path: huge)
        }
        let tooMany = try writeBytes(idx([1 << 20, 1 << 10, 1 << 10], []), "toomany")
        assertThrows(["more than \(Limits.maxDataElements) elements"], isLimit) { _ = try IDXReader.read(path: tooMany) }
        let trailing = try writeBytes(file + [0, 0], "trailing")
        assertThrows(["2 unexpected bytes after the data", "(36 bytes)"], isFormat) { _ = try IDXReader.read(path: trailing) }
    }

    func testIDXTruncatedCorruptAndTrailingGzip() throws {
        let file = idx([20, 8, 8], noise(20 * 64))
        let good = try readBytes(try writeGzip(file, "good.gz"))
        XCTAssertGreaterThan(good.count, 40)

        // Cut inside the compressed data: the decompressed data end early.
        let cut = try writeBytes(Array(good.prefix(good.count / 2)), "cut.gz")
        assertThrows(["'\(cut)'", "truncated gzip-compressed IDX file", "need 1280 data bytes"], isFormat) {
            _ = try IDXReader.read(path: cut)
        }
        // Only the 8-byte trailer (CRC-32, length) missing: all data arrive, the end does not.
        let noTrailer = try writeBytes(Array(good.dropLast(8)), "notrailer.gz")
        assertThrows(["truncated gzip-compressed IDX file", "end marker and checksum"], isFormat) {
            _ = try IDXReader.read(path: noTrailer)
        }
        // A few gzip header bytes only.
        let stub = try writeBytes(Array(good.prefix(5)), "stub.gz")
        assertThrows(["truncated gzip-compressed IDX file", "ends inside the header", "the magic number: 0 of 4 bytes"], isFormat) {
            _ = try IDXReader.read(path: stub)
        }
        // A wrong CRC-32 in the trailer.
        var badCRC = good
        badCRC[good.count - 8] ^= 0xFF
        let crc = try writeBytes(badCRC, "crc.gz")
        assertThrows(["'\(crc)'", "corrupt gzip data", "incorrect data check"], isFormat) { _ = try IDXReader.read(path: crc) }
        // An unknown compression method in the gzip header.
        var badMethod = good
        badMethod[2] = 7
        let method = try writeBytes(badMethod, "method.gz")
        assertThrows(["corrupt gzip data", "unknown compression method"], isFormat) { _ = try IDXReader.read(path: method) }
        // Garbage inside the deflate data (a reserved block type).
        var garbage = good
        for i in 10..<min(good.count - 8, 30) { garbage[i] = 0xFF }
        let broken = try writeBytes(garbage, "broken.gz")
        assertThrows(["corrupt gzip data"], isFormat) { _ = try IDXReader.read(path: broken) }
        // Non-gzip bytes after the gzip stream.
        let after = try writeBytes(good + [1, 2, 3], "after.gz")
        assertThrows(["corrupt gzip data", "3 bytes after the end of the gzip stream"], isFormat) {
            _ = try IDXReader.read(path: after)
        }
        // More decompressed data than the header's dimensions need.
        let extra = try writeGzip(file + [9, 9, 9, 9], "extra.gz")
        assertThrows(["4 unexpected bytes after the data of dimensions [20, 8, 8]"], isFormat) {
            _ = try IDXReader.read(path: extra)
        }
        // A header claiming far more than the compressed size can hold, refused before allocating.
        let claim = try writeGzip(idx([1 << 12, 1 << 8, 1 << 8], [1, 2, 3]), "claim.gz")
        assertThrows(["'\(claim)'", "need 268435456 bytes", "compressed bytes can hold"], isFormat) {
            _ = try IDXReader.read(path: claim)
        }
    }

    // MARK: - Padding and cropping

    func testPadAndCropShapesAndValues() throws {
        let (n, c, h, w) = (2, 3, 4, 5)
        let x = try Tensor<Float>(shape: [n, c, h, w], scalars: (0..<(n * c * h * w)).map { Float($0 + 1) })
        // 4x5 -> 7x8: top 1, bottom 2, left 1, right 2.
        let p = try x.padded(to: ImageSize(height: 7, width: 8), value: -1)
        XCTAssertEqual(p.shape, [n, c, 7, 8])
        for i in 0..<n {
            for k in 0..<c {
                for y in 0..<7 {
                    for xx in 0..<8 {
                        let inside = (1..<5).contains(y) && (1..<6).contains(xx)
                        XCTAssertEqual(p[i, k, y, xx], inside ? x[i, k, y - 1, xx - 1] : -1, "[\(i), \(k), \(y), \(xx)]")
                    }
                }
            }
        }
        XCTAssertEqual(try p.cropped(to: ImageSize(height: h, width: w)), x)
        // Even differences pad symmetrically; default value 0.
        let q = try x.padded(to: ImageSize(8))
        XCTAssertEqual(q.shape, [n, c, 8, 8])
        XCTAssertEqual(q[1, 2, 2, 1], x[1, 2, 0, 0])
        XCTAssertEqual(q[1, 2, 1, 1], 0)
        XCTAssertEqual(q[1, 2, 6, 1], 0)
        XCTAssertEqual(q[1, 2, 5, 5], x[1, 2, 3, 4])
        XCTAssertEqual(q.scalars.reduce(0, +), x.scalars.reduce(0, +))
        // Central crop: 4x5 -> 2x2 takes rows 1...2 and columns 1...2 (odd difference: extra column dropped on the right).
        let r = try x.cropped(to: ImageSize(2))
        XCTAssertEqual(r.shape, [n, c, 2, 2])
        XCTAssertEqual([r[0, 1, 0, 0], r[0, 1, 0, 1], r[0, 1, 1, 0], r[0, 1, 1, 1]],
                       [x[0, 1, 1, 1], x[0, 1, 1, 2], x[0, 1, 2, 1], x[0, 1, 2, 2]])
        // Fashion-MNIST sizes: 28 -> 32 -> 28.
        var m = try Tensor<Float>(shape: [1, 1, 28, 28], scalars: (0..<784).map { Float($0 % 256) })
        let original = m
        try m.pad(to: ImageSize(32))
        XCTAssertEqual(m.shape, [1, 1, 32, 32])
        XCTAssertEqual(m[0, 0, 2, 2], original[0, 0, 0, 0])
        XCTAssertEqual(m[0, 0, 1, 2], 0)
        try m.crop(to: ImageSize(28))
        XCTAssertEqual(m, original)
        // Same size is the identity.
        XCTAssertEqual(try x.padded(to: ImageSize(height: h, width: w)), x)
        XCTAssertEqual(try x.cropped(to: ImageSize(height: h, width: w)), x)
        // Errors.
        assertThrows(["padding only enlarges", "4x5", "3x8"], isInvalid) { _ = try x.padded(to: ImageSize(height: 3, width: 8)) }
        assertThrows(["cropping only shrinks", "4x6"], isInvalid) { _ = try x.cropped(to: ImageSize(height: 4, width: 6)) }
        assertThrows(["not positive"], isInvalid) { _ = try x.cropped(to: ImageSize(height: 0, width: 2)) }
        assertThrows(["expected images [n, C, H, W]", "[3, 4]"], isShape) {
            _ = try Tensor<Float>(shape: [3, 4]).padded(to: ImageSize(8))
        }
        assertThrows(["more than"], isLimit) { _ = try x.padded(to: ImageSize(1 << 15)) }
    }

    // MARK: - Fashion-MNIST

    func testFashionMNISTFromDirectoryAndOverride() throws {
        // A tiny stand-in with the package's file names: compressed train, uncompressed test.
        let train = pixels(3 * 28 * 28)
        try writeGzip(idx([3, 28, 28], train), "train-images-idx3-ubyte.gz")
        try writeGzip(idx([3], [0, 9, 4]), "train-labels-idx1-ubyte.gz")
        try writeBytes(idx([2, 28, 28], pixels(2 * 28 * 28)), "t10k-images-idx3-ubyte")
        try writeBytes(idx([2], [5, 5]), "t10k-labels-idx1-ubyte")
        let data = try ImageDataset.loadFashionMNIST(split: .train, directory: directory)
        XCTAssertEqual(data.images.shape, [3, 1, 28, 28])
        XCTAssertEqual(data.images.scalars, train.map(Float.init))
        XCTAssertEqual(data.labels, [0, 9, 4])
        XCTAssertEqual(data.levels, 256)
        XCTAssertEqual(try ImageDataset.loadFashionMNIST(split: .test, directory: directory + "/").labels, [5, 5])
        XCTAssertEqual(try ImageDataset.loadFashionMNIST(split: .train, directory: directory, limit: 2).labels, [0, 9])
        assertThrows(["fashion-mnist:train has 3 images; 4 were asked for"], isInvalid) {
            _ = try ImageDataset.loadFashionMNIST(split: .train, directory: directory, limit: 4)
        }

        // The runtime configuration (SWIFTFLOWS_FASHION_MNIST_DIR) redirects the default directory.
        let saved = FlowRuntime.configuration
        defer { FlowRuntime.configuration = saved }
        FlowRuntime.configuration.fashionMNISTDirectory = directory
        XCTAssertEqual(ImageDataset.fashionMNISTDirectory, directory)
        XCTAssertEqual(try ImageDataset.fashionMNIST(split: .test).load().count, 2)
        let loaded = try DataSource.load("fashion-mnist:train:2")
        XCTAssertEqual(loaded.shape, [2, 1, 28, 28])
        XCTAssertEqual(loaded.scalars, train.prefix(2 * 784).map(Float.init))
        XCTAssertEqual(try DataSource.load("fashion-mnist:test").shape, [2, 1, 28, 28])

        // Missing files: the message says how to install the package.
        unlink(path("train-labels-idx1-ubyte.gz"))
        assertThrows(["Fashion-MNIST is not available", "train-labels-idx1-ubyte.gz' does not exist",
                      "SWIFTFLOWS_FASHION_MNIST_DIR", "dataset-fashion-mnist", "make data"], isIO) {
            _ = try DataSource.load("fashion-mnist:train")
        }
        // Images and labels that disagree.
        try writeGzip(idx([2], [1, 2]), "train-labels-idx1-ubyte.gz")
        assertThrows(["3 images but 2 labels"], isFormat) { _ = try ImageDataset.fashionMNIST(split: .train).load() }
        FlowRuntime.configuration.fashionMNISTDirectory = nil
        XCTAssertEqual(ImageDataset.fashionMNISTDirectory, ImageDataset.defaultFashionMNISTDirectory)
    }

    func testFashionMNISTFromDebianPackage() throws {
        let files = ImageDataset.fashionMNISTFileNames(split: .train)
        let installed = ImageDataset.defaultFashionMNISTDirectory + "/" + files.images
        try XCTSkipUnless(access(installed, R_OK) == 0,
                          "Fashion-MNIST is not installed (Debian package dataset-fashion-mnist; `make data`)")
        for (split, count) in [(ImageDataset.FashionMNISTSplit.train, 60_000), (.test, 10_000)] {
            let data = try ImageDataset.loadFashionMNIST(split: split, directory: ImageDataset.defaultFashionMNISTDirectory)
            XCTAssertEqual(data.images.shape, [count, 1, 28, 28], "\(split)")
            XCTAssertEqual(data.labels.count, count)
            XCTAssertEqual(data.levels, 256)
            // Every value an integer level; both extremes occur (one pass: debug builds are slow).
            var histogram = [Int](repeating: 0, count: 256), others = 0
            data.images.scalars.withUnsafeBufferPointer { values in
                for v in values {
                    if let level = Int(exactly: v), (0...255).contains(level) { histogram[level] += 1 } else { others += 1 }
                }
            }
            XCTAssertEqual(others, 0, "\(split): values that are not levels 0...255")
            XCTAssertGreaterThan(histogram[0], 0)
            XCTAssertGreaterThan(histogram[255], 0)
            var perClass = [Int](repeating: 0, count: 10)
            for l in data.labels { perClass[l] += 1 }
            XCTAssertEqual(perClass, [Int](repeating: count / 10, count: 10), "\(split): balanced classes")
            // The first images through a description with a count.
            let first = try ImageDataset.loadFashionMNIST(split: split, directory: ImageDataset.defaultFashionMNISTDirectory,
                                                         limit: 100)
            XCTAssertEqual(first.images.scalars, Array(data.images.scalars.prefix(100 * 784)))
            XCTAssertEqual(first.labels, Array(data.labels.prefix(100)))
        }
    }

    // MARK: - Digits

    /// Writes a digits-like HDF5 file (float images [n, 1, 8, 8], integer labels) with the test's HDF5 wrapper.
    func writeDigitsFile(_ name: String, splits: [String: Int], levels: Int64 = 17, badValue: Float? = nil) throws -> String {
        let file = try HDF5File.createInMemory()
        defer { file.close() }
        let root = try file.root
        try root.setAttribute("levels", int: levels)
        for (split, n) in splits {
            let group = try root.createGroup(split)
            var values = (0..<(n * 64)).map { Float(($0 * 7) % 17) }
            if let badValue { values[3] = badValue }
            try values.withUnsafeBufferPointer { try group.writeDataset("images", floats: $0, shape: [n, 1, 8, 8]) }
            try group.writeDataset("labels", int64s: (0..<n).map { Int64($0 % 10) }, shape: [n])
        }
        let p = path(name)
        try DataFile.writeAtomically(try file.fileImage(), to: p)
        return p
    }

    func testDigitsFromAFileAndErrors() throws {
        let p = try writeDigitsFile("digits.h5", splits: ["train": 12, "val": 3, "test": 4])
        let train = try ImageDataset.loadDigits(split: .train, path: p)
        XCTAssertEqual(train.images.shape, [12, 1, 8, 8])
        XCTAssertEqual(train.levels, 17)
        XCTAssertEqual(train.labels, (0..<12).map { $0 % 10 })
        XCTAssertEqual(train.images.scalars, (0..<(12 * 64)).map { Float(($0 * 7) % 17) })
        XCTAssertEqual(try ImageDataset.loadDigits(split: .val, path: p).count, 3)
        let limited = try ImageDataset.loadDigits(split: .test, path: p, limit: 2)
        XCTAssertEqual(limited.images.shape, [2, 1, 8, 8])
        XCTAssertEqual(limited.labels, [0, 1])

        let saved = FlowRuntime.configuration
        defer { FlowRuntime.configuration = saved }
        FlowRuntime.configuration.digitsPath = p
        XCTAssertEqual(try DataSource.load("digits:val").shape, [3, 1, 8, 8])
        XCTAssertEqual(try DataSource.load("digits:train:5").shape, [5, 1, 8, 8])
        assertThrows(["digits:test has 4 images; 5 were asked for"], isInvalid) { _ = try DataSource.load("digits:test:5") }
        assertThrows(["splits train, val and test, not 'validation'"], isInvalid) { _ = try DataSource.load("digits:validation") }
        assertThrows(["splits train and test, not 'val'"], isInvalid) { _ = try DataSource.load("fashion-mnist:val") }
        assertThrows(["'x' is not an integer"], isInvalid) { _ = try DataSource.load("digits:train:x") }
        assertThrows(["malformed"], isInvalid) { _ = try DataSource.load("digits:train:1:2") }
        assertThrows(["not ''"], isInvalid) { _ = try DataSource.load("digits:") }
        assertThrows(["at least 1"], isInvalid) { _ = try DataSource.load("digits:train:0") }

        let missing = path("nothing.h5")
        FlowRuntime.configuration.digitsPath = missing
        assertThrows(["digits data set is not available", "'\(missing)' does not exist", "SWIFTFLOWS_DIGITS_PATH",
                      "make data", "export_digits.py"], isIO) { _ = try DataSource.load("digits:train") }
        FlowRuntime.configuration.digitsPath = nil
        XCTAssertEqual(ImageDataset.digitsPath, ImageDataset.defaultDigitsPath)

        let noVal = try writeDigitsFile("noval.h5", splits: ["train": 2])
        assertThrows(["has no group /val", "train/"], isFormat) { _ = try ImageDataset.loadDigits(split: .val, path: noVal) }
        let fractional = try writeDigitsFile("frac.h5", splits: ["train": 2], badValue: 2.5)
        assertThrows(["value 2.5", "not an integer level in 0...16"], isFormat) {
            _ = try ImageDataset.loadDigits(split: .train, path: fractional)
        }
        let high = try writeDigitsFile("high.h5", splits: ["train": 2], badValue: 17)
        assertThrows(["value 17.0"], isFormat) { _ = try ImageDataset.loadDigits(split: .train, path: high) }
        let notHDF5 = try writeBytes([1, 2, 3, 4], "text.h5")
        assertThrows(["is not a readable HDF5 file"], isFormat) { _ = try ImageDataset.loadDigits(split: .train, path: notHDF5) }
    }

    func testDigitsExportedByMakeData() throws {
        let p = ImageDataset.digitsPath
        try XCTSkipUnless(access(p, R_OK) == 0, "\(p) does not exist (`make data` writes it)")
        var total = 0
        for (split, count) in [(ImageDataset.DigitsSplit.train, 1149), (.val, 288), (.test, 360)] {
            let data = try ImageDataset.digits(split: split).load()
            XCTAssertEqual(data.images.shape, [count, 1, 8, 8], "\(split)")
            XCTAssertEqual(data.labels.count, count)
            XCTAssertEqual(data.levels, 17)
            XCTAssertEqual(data.images.scalars.min(), 0)
            XCTAssertEqual(data.images.scalars.max(), 16)
            XCTAssertTrue(data.images.scalars.allSatisfy { $0 == $0.rounded() })
            XCTAssertEqual(Set(data.labels), Set(0...9))
            XCTAssertEqual(try DataSource.load("digits:\(split.rawValue)"), data.images)
            total += count
        }
        XCTAssertEqual(total, 1797)
    }
}
