@testable import FlowCore
@testable import FlowHDF5
@testable import FlowData
import FlowTestSupport
import Foundation
import Glibc
import XCTest

/// Toy data sets, the CSV/NPY/HDF5 readers and writers, and `DataSource` descriptions.
final class DataTests: XCTestCase {
    var temporary: TemporaryDirectory!
    var directory: String { temporary.path }

    override func setUpWithError() throws { temporary = try TemporaryDirectory(prefix: "swiftflows-data-tests") }

    override func tearDown() { temporary?.remove() }

    // MARK: - Helpers

    func path(_ name: String) -> String { directory + "/" + name }

    func writeBytes(_ bytes: [UInt8], _ name: String) throws -> String {
        let p = path(name)
        let f = try XCTUnwrap(fopen(p, "wb"))
        defer { fclose(f) }
        XCTAssertEqual(bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }, bytes.count)
        return p
    }

    func writeText(_ text: String, _ name: String) throws -> String { try writeBytes(Array(text.utf8), name) }

    func assertThrows(_ fragments: [String], _ matches: (FlowError) -> Bool, file: StaticString = #filePath,
                      line: UInt = #line, _ body: () throws -> Void) {
        ErrorAssertions.assertThrows(fragments, matches, file: file, line: line, body)
    }

    let isFormat = ErrorAssertions.isFormat
    let isIO = ErrorAssertions.isIO
    let isInvalid = ErrorAssertions.isInvalid
    let isLimit = ErrorAssertions.isLimit
    let isShape = ErrorAssertions.isShape

    /// Points as (x, y) pairs in Double.
    func points(_ set: ToyDataset, _ n: Int, seed: UInt64 = 1) throws -> [(Double, Double)] {
        let v = try set.generate(n, seed: seed)
        XCTAssertEqual(v.count, 2 * n)
        return (0..<n).map { (Double(v[2 * $0]), Double(v[2 * $0 + 1])) }
    }

    func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(xs.count) }

    func tensor(_ shape: [Int], _ f: (Int) -> Float) throws -> Tensor<Float> {
        let count = shape.reduce(1, *)
        return try Tensor(shape: shape, scalars: (0..<count).map(f))
    }

    /// Assorted values including ones that need all digits to round-trip.
    func awkwardValues(_ shape: [Int]) throws -> Tensor<Float> {
        let specials: [Float] = [0.1, -2.5, 1e-5, .greatestFiniteMagnitude, -.leastNormalMagnitude, .leastNonzeroMagnitude,
                                 Float(16_777_215).nextUp, -0.0, 1 / 3, Float(0.7).nextDown]
        return try tensor(shape) { i in i < specials.count ? specials[i] : Float(i) * 0.7310586 - 3.3 }
    }

    func assertBitEqual(_ a: Tensor<Float>, _ b: Tensor<Float>, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.shape, b.shape, file: file, line: line)
        XCTAssertEqual(a.scalars.map(\.bitPattern), b.scalars.map(\.bitPattern), file: file, line: line)
    }

    // MARK: - Toy data: common properties

    func testToyNamesAndEntropies() throws {
        XCTAssertEqual(ToyDataset.allCases.map(\.rawValue),
                       ["8gaussians", "checkerboard", "rings", "moons", "circles", "swissroll", "pinwheel", "2spirals"])
        XCTAssertEqual(try XCTUnwrap(ToyDataset.eightGaussians.entropy), 2.831, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(ToyDataset.checkerboard.entropy), 3.4657359, accuracy: 1e-6)
        XCTAssertEqual(try XCTUnwrap(ToyDataset.rings.entropy), 2.624, accuracy: 1e-9)
        for set in [ToyDataset.moons, .circles, .swissroll, .pinwheel, .twoSpirals] { XCTAssertNil(set.entropy) }
        XCTAssertEqual(Set(ToyDataset.allCases.map(\.streamCode)).count, ToyDataset.allCases.count)
        XCTAssertEqual(try ToyDataset.named("2spirals"), .twoSpirals)
        assertThrows(["'spiral'", "8gaussians", "2spirals"], isInvalid) { _ = try ToyDataset.named("spiral") }
    }

    func testToyDeterministicFiniteAndSeedDependent() throws {
        for set in ToyDataset.allCases {
            for n in [1, 2, 7, 1001] {
                let a = try set.generate(n, seed: 42)
                let b = try set.generate(n, seed: 42)
                XCTAssertEqual(a.count, 2 * n, "\(set) n=\(n)")
                XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "\(set) n=\(n) is not deterministic")
                XCTAssertTrue(a.allSatisfy(\.isFinite), "\(set) n=\(n)")
            }
            let a = try set.generate(500, seed: 1), b = try set.generate(500, seed: 2)
            XCTAssertNotEqual(a, b, "\(set): seeds 1 and 2 give the same data")
            let high = try set.generate(500, seed: 1 | (1 << 40))
            XCTAssertNotEqual(a, high, "\(set): the high half of the seed is ignored")
            let t = try set.tensor(300, seed: 5)
            XCTAssertEqual(t.shape, [300, 2])
            XCTAssertEqual(t.scalars, try set.generate(300, seed: 5))
        }
    }

    func testToyDataSetsDifferFromEachOther() throws {
        let all = try ToyDataset.allCases.map { try $0.generate(64, seed: 3) }
        for i in all.indices { for j in all.indices where i < j { XCTAssertNotEqual(all[i], all[j]) } }
    }

    /// Pins the stream layout: a change of the documented contract changes these bits.
    func testToyValuesArePinned() throws {
        var stream = PhiloxStream(seed: 9, row: 0, stream: 0x746F_0000 | (1 << 8))
        let z0 = stream.nextNormal(), z1 = stream.nextNormal()
        let h = 1 / 2.0.squareRoot()
        let centres: [(Double, Double)] = [(1, 0), (-1, 0), (0, 1), (0, -1), (h, h), (h, -h), (-h, h), (-h, -h)]
        let c = centres[stream.nextInt(below: 8)]
        let expected = [Float((0.5 * z0 + 4 * c.0) / 1.414), Float((0.5 * z1 + 4 * c.1) / 1.414)]
        XCTAssertEqual(Array(try ToyDataset.eightGaussians.generate(3, seed: 9).prefix(2)), expected)
    }

    func testToyPrefixStabilityForPerPointSets() throws {
        // Unshuffled per-point recipes: the first rows do not depend on n.
        for set in [ToyDataset.eightGaussians, .checkerboard, .swissroll] {
            let small = try set.generate(10, seed: 8), large = try set.generate(1000, seed: 8)
            XCTAssertEqual(small, Array(large.prefix(20)), "\(set)")
        }
    }

    func testToyRejectsBadCounts() throws {
        for set in ToyDataset.allCases {
            assertThrows(["at least 1", "0"], isInvalid) { _ = try set.generate(0, seed: 0) }
            assertThrows(["-3"], isInvalid) { _ = try set.tensor(-3, seed: 0) }
            assertThrows(["limit"], isLimit) { _ = try set.generate(Limits.maxToySamples + 1, seed: 0) }
        }
    }

    // MARK: - Toy data: distribution checks

    struct Reference {
        var mean: (Double, Double)
        var cov: (Double, Double, Double)
        var meanRadius: Double
        var radiusStd: Double
    }

    /// Moments of FFJORD's own recipes (numpy + scikit-learn formulas, 2 000 000 points).
    let references: [String: Reference] = [
        "8gaussians": Reference(mean: (-0.0027, -0.0005), cov: (4.1332, 0.0017, 4.1204), meanRadius: 2.8513, radiusStd: 0.3520),
        "checkerboard": Reference(mean: (-0.0010, 0.0008), cov: (5.3300, 0.9990, 5.3328), meanRadius: 3.0602, radiusStd: 1.1392),
        "rings": Reference(mean: (0.0000, -0.0000), cov: (2.1157, 0.0000, 2.1161), meanRadius: 1.8773, radiusStd: 0.8412),
        "moons": Reference(mean: (0.0000, 0.2999), cov: (3.0396, -0.7725, 1.0170), meanRadius: 1.8754, radiusStd: 0.7933),
        "circles": Reference(mean: (-0.0002, 0.0001), cov: (2.8696, 0.0003, 2.8699), meanRadius: 2.2643, radiusStd: 0.7827),
        "swissroll": Reference(mean: (0.3998, 0.0407), cov: (1.7945, 0.1735, 1.9735), meanRadius: 1.8968, radiusStd: 0.5759),
        "pinwheel": Reference(mean: (-0.0000, 0.0002), cov: (2.2012, -0.0010, 2.2002), meanRadius: 2.0117, radiusStd: 0.5953),
        "2spirals": Reference(mean: (-0.0001, -0.0001), cov: (2.5891, 0.5852, 2.5101), meanRadius: 2.1209, radiusStd: 0.7753),
    ]

    func testToyMomentsMatchFFJORDRecipes() throws {
        let n = 40_000
        for set in ToyDataset.allCases {
            let ref = try XCTUnwrap(references[set.rawValue])
            let p = try points(set, n, seed: 11)
            let mx = mean(p.map(\.0)), my = mean(p.map(\.1))
            let cxx = mean(p.map { ($0.0 - mx) * ($0.0 - mx) }), cyy = mean(p.map { ($0.1 - my) * ($0.1 - my) })
            let cxy = mean(p.map { ($0.0 - mx) * ($0.1 - my) })
            let radii = p.map { ($0.0 * $0.0 + $0.1 * $0.1).squareRoot() }
            let mr = mean(radii)
            let sr = mean(radii.map { ($0 - mr) * ($0 - mr) }).squareRoot()
            let name = set.rawValue
            XCTAssertEqual(mx, ref.mean.0, accuracy: 0.05, "\(name) mean x")
            XCTAssertEqual(my, ref.mean.1, accuracy: 0.05, "\(name) mean y")
            XCTAssertEqual(cxx, ref.cov.0, accuracy: 0.04 * ref.cov.0 + 0.02, "\(name) var x")
            XCTAssertEqual(cyy, ref.cov.2, accuracy: 0.04 * ref.cov.2 + 0.02, "\(name) var y")
            XCTAssertEqual(cxy, ref.cov.1, accuracy: 0.08, "\(name) cov xy")
            XCTAssertEqual(mr, ref.meanRadius, accuracy: 0.03, "\(name) mean radius")
            XCTAssertEqual(sr, ref.radiusStd, accuracy: 0.03, "\(name) radius std")
        }
    }

    func testEightGaussiansClusters() throws {
        let p = try points(.eightGaussians, 16_000)
        XCTAssertEqual(mean(p.map(\.0)), 0, accuracy: 0.06)
        XCTAssertEqual(mean(p.map(\.1)), 0, accuracy: 0.06)
        let h = 1 / 2.0.squareRoot()
        let centres: [(Double, Double)] = [(1, 0), (-1, 0), (0, 1), (0, -1), (h, h), (h, -h), (-h, h), (-h, -h)]
            .map { (4 * $0.0 / 1.414, 4 * $0.1 / 1.414) }
        var counts = [Int](repeating: 0, count: 8)
        var offsets: [Double] = []
        for q in p {
            let d = centres.map { (q.0 - $0.0) * (q.0 - $0.0) + (q.1 - $0.1) * (q.1 - $0.1) }
            let k = d.indices.min { d[$0] < d[$1] }!
            counts[k] += 1
            offsets.append(q.0 - centres[k].0)
            let r = (q.0 * q.0 + q.1 * q.1).squareRoot()
            XCTAssertEqual(r, 4 / 1.414, accuracy: 2.0)
        }
        for c in counts { XCTAssertEqual(Double(c) / Double(p.count), 0.125, accuracy: 0.015) }
        // Per-coordinate spread around the centre: 0.5 / 1.414.
        let sd = mean(offsets.map { $0 * $0 }).squareRoot()
        XCTAssertEqual(sd, 0.5 / 1.414, accuracy: 0.02)
        let radii = p.map { ($0.0 * $0.0 + $0.1 * $0.1).squareRoot() }
        XCTAssertEqual(mean(radii), 4 / 1.414, accuracy: 0.06)
    }

    func testCheckerboardLiesOnBlackSquares() throws {
        let p = try points(.checkerboard, 16_000)
        var counts: [Int: Int] = [:]
        for (x, y) in p {
            XCTAssertTrue(x >= -4 && x < 4 && y >= -4 && y < 4, "(\(x), \(y)) is outside [-4, 4)²")
            let i = Int((x / 2).rounded(.down)), j = Int((y / 2).rounded(.down))
            XCTAssertEqual((i + j) & 1, 0, "(\(x), \(y)) is on a white square")
            counts[(i + 2) * 4 + (j + 2), default: 0] += 1
        }
        XCTAssertEqual(counts.count, 8)
        for c in counts.values { XCTAssertEqual(Double(c) / Double(p.count), 0.125, accuracy: 0.015) }
        XCTAssertEqual(mean(p.map(\.0)), 0, accuracy: 0.08)
        XCTAssertEqual(mean(p.map(\.1)), 0, accuracy: 0.08)
    }

    func testRingsRadii() throws {
        let n = 8_003
        let p = try points(.rings, n)
        let radii: [Double] = [3, 2.25, 1.5, 0.75]
        var counts = [Int](repeating: 0, count: 4)
        var deviations: [Double] = []
        for q in p {
            let r = (q.0 * q.0 + q.1 * q.1).squareRoot()
            let k = radii.indices.min { abs(radii[$0] - r) < abs(radii[$1] - r) }!
            XCTAssertEqual(r, radii[k], accuracy: 0.4)
            counts[k] += 1
            deviations.append(r - radii[k])
        }
        // Thirds of n/4 on the outer rings, the rest inside (a point leaving its ring is a 4.7σ event).
        XCTAssertEqual(counts, [n / 4, n / 4, n / 4, n - 3 * (n / 4)])
        XCTAssertEqual(mean(deviations), 0, accuracy: 0.01)
        XCTAssertEqual(mean(deviations.map { $0 * $0 }).squareRoot(), 0.08, accuracy: 0.01)
        // Shuffled: the first quarter is not just the outer ring.
        XCTAssertLessThan(p.prefix(n / 4).filter { ($0.0 * $0.0 + $0.1 * $0.1).squareRoot() > 2.6 }.count, n / 8)
    }

    func testMoonsLieNearTheirHalfCircles() throws {
        let p = try points(.moons, 10_000)
        var near = 0
        for (x, y) in p {
            // Undo `2·X + (−1, −0.2)`, then measure the distance to the two unit half circles.
            let u = (x + 1) / 2, v = (y + 0.2) / 2
            let outer = v >= 0 ? abs((u * u + v * v).squareRoot() - 1) : ((abs(u) - 1) * (abs(u) - 1) + v * v).squareRoot()
            let (iu, iv) = (u - 1, v - 0.5)
            let inner = iv <= 0 ? abs((iu * iu + iv * iv).squareRoot() - 1) : ((abs(iu) - 1) * (abs(iu) - 1) + iv * iv).squareRoot()
            if min(outer, inner) < 0.25 { near += 1 }
        }
        XCTAssertGreaterThan(Double(near) / Double(p.count), 0.95)
        XCTAssertEqual(mean(p.map(\.0)), 0, accuracy: 0.05)
        XCTAssertEqual(mean(p.map(\.1)), 0.3, accuracy: 0.05)
        // Shuffled: both halves of the rows hold both moons.
        XCTAssertEqual(mean(p.prefix(5_000).map(\.1)), mean(p.suffix(5_000).map(\.1)), accuracy: 0.06)
    }

    func testCirclesRadii() throws {
        let p = try points(.circles, 10_001)
        let r = p.map { ($0.0 * $0.0 + $0.1 * $0.1).squareRoot() / 3 }
        // ⌊n/2⌋ on the unit circle, the rest on radius 0.5; the midpoint 0.75 is 3σ from both.
        let outer = r.filter { $0 > 0.75 }.count
        XCTAssertEqual(outer, 5_000, accuracy: 30)
        XCTAssertTrue(r.allSatisfy { $0 > 0.1 && $0 < 1.45 })
        let inner = r.filter { $0 <= 0.75 }
        XCTAssertEqual(mean(inner), 0.5, accuracy: 0.02)
        XCTAssertEqual(mean(p.map(\.0)), 0, accuracy: 0.05)
        XCTAssertEqual(mean(p.map(\.1)), 0, accuracy: 0.05)
    }

    func testSwissRollSupport() throws {
        let p = try points(.swissroll, 10_000)
        // 5·|point| ≈ t ∈ [1.5π, 4.5π] blurred by N(0, I): mean ≈ 3π (+ a small bias from the noise).
        let r = p.map { 5 * ($0.0 * $0.0 + $0.1 * $0.1).squareRoot() }
        XCTAssertTrue(r.allSatisfy { $0 > 1.5 * Double.pi - 6 && $0 < 4.5 * Double.pi + 6 })
        XCTAssertEqual(mean(r), 3 * Double.pi, accuracy: 0.3)
        XCTAssertLessThan(r.filter { $0 < 1.5 * Double.pi - 2 }.count, 20)
    }

    func testPinwheelArms() throws {
        let p = try points(.pinwheel, 10_000)
        var counts = [Int](repeating: 0, count: 5)
        var close = 0
        for (x, y) in p {
            // point = 2·R(−a)·f with f ≈ (|point|/2, 0), a = 2πk/5 + 0.25·exp(f₀): recover k.
            let f0 = (x * x + y * y).squareRoot() / 2
            var a = -atan2(y, x) - 0.25 * exp(f0)
            a = a - 2 * Double.pi * (a / (2 * Double.pi)).rounded(.down)
            let k = Int((a / (2 * Double.pi / 5)).rounded()) % 5
            let residual = abs(a - 2 * Double.pi * Double(k) / 5)
            if min(residual, 2 * Double.pi - residual) < 0.4 { close += 1 }
            counts[k] += 1
        }
        XCTAssertGreaterThan(Double(close) / Double(p.count), 0.97)
        for c in counts { XCTAssertEqual(Double(c) / Double(p.count), 0.2, accuracy: 0.03) }
    }

    func testTwoSpiralsAreSymmetric() throws {
        let p = try points(.twoSpirals, 10_001)
        XCTAssertEqual(p.count, 10_001)
        let r = p.map { ($0.0 * $0.0 + $0.1 * $0.1).squareRoot() }
        // |d| ≤ 3π + 0.5·√2, divided by 3, plus noise of σ = 0.1.
        XCTAssertTrue(r.allSatisfy { $0 < (3 * Double.pi + 0.71) / 3 + 0.6 })
        XCTAssertEqual(mean(p.map(\.0)), 0, accuracy: 0.06)
        XCTAssertEqual(mean(p.map(\.1)), 0, accuracy: 0.06)
        // Shuffled: the first half is not one spiral (that would put its mean far from 0).
        XCTAssertEqual(mean(p.prefix(5_000).map(\.0)), 0, accuracy: 0.1)
    }

    // MARK: - CSV

    func testCSVRoundTripIsBitExact() throws {
        let t = try awkwardValues([7, 3])
        let p = path("a.csv")
        try CSVWriter.write(t, to: p)
        assertBitEqual(try CSVReader.read(path: p), t)
        try CSVWriter.write(t, to: p, header: ["x", "y", "z"])
        assertBitEqual(try CSVReader.read(path: p), t)
        // [N] → N × 1, [N, 2, 2] → N × 4.
        let v = try tensor([4]) { Float($0) - 1.5 }
        try CSVWriter.write(v, to: p)
        XCTAssertEqual(try CSVReader.read(path: p), try v.reshaped([4, 1]))
        let image = try tensor([3, 2, 2]) { Float($0) }
        try CSVWriter.write(image, to: p)
        XCTAssertEqual(try CSVReader.read(path: p), try image.reshaped([3, 4]))
        XCTAssertEqual(String(decoding: try CSVWriter.encode(try tensor([2, 2]) { Float($0) / 2 }), as: UTF8.self),
                       "0.0,0.5\n1.0,1.5\n")
    }

    func testCSVWriterErrors() throws {
        let t = try tensor([2, 2]) { Float($0) }
        assertThrows(["3 names", "2 columns"], isInvalid) { _ = try CSVWriter.encode(t, header: ["a", "b", "c"]) }
        assertThrows(["comma"], isInvalid) { _ = try CSVWriter.encode(t, header: ["a,b", "c"]) }
        assertThrows(["rank"], isShape) { _ = try CSVWriter.encode(try Tensor(shape: [], scalars: [1])) }
        assertThrows(["cannot write"], isIO) { try CSVWriter.write(t, to: self.path("missing-dir/a.csv")) }
    }

    func testCSVParsingDetails() throws {
        func parse(_ text: String) throws -> Tensor<Float> { try CSVReader.parse(Array(text.utf8)) }
        let expected = try Tensor<Float>(rows: [[1, 2], [3, -4.5]])
        XCTAssertEqual(try parse("1,2\n3,-4.5\n"), expected)
        XCTAssertEqual(try parse("1,2\n3,-4.5"), expected)
        XCTAssertEqual(try parse("x,y\n1,2\n3,-4.5\n"), expected)
        XCTAssertEqual(try parse("\u{FEFF}\"x\", \"y\"\r\n 1 ,\t2\r\n\r\n# comment\n  \n3,-4.5e0\r\n"), expected)
        XCTAssertEqual(try parse("# numpy header\n1,2\n\"3\",-4.5\n"), expected)
        XCTAssertEqual(try parse("0x1p-1\n.5\n"), try Tensor<Float>(rows: [[0.5], [0.5]]))
        // A header with some numeric names is still a header.
        XCTAssertEqual(try parse("x,2\n1,2\n3,-4.5\n"), expected)
    }

    func testCSVErrorsNameLineAndColumn() throws {
        func parse(_ text: String) throws { _ = try CSVReader.parse(Array(text.utf8), source: "'d.csv'") }
        assertThrows(["'d.csv' line 4", "1 column,", "expected 2", "as on line 1"], isFormat) { try parse("a,b\n1,2\n\n5\n") }
        assertThrows(["line 2 has 3 columns"], isFormat) { try parse("1,2\n1,2,3\n") }
        assertThrows(["line 3, column 2", "'abc' is not a number"], isFormat) { try parse("1,2\n3,4\n5,abc\n") }
        assertThrows(["line 2, column 1", "NaN"], isFormat) { try parse("1,2\nnan,4\n") }
        assertThrows(["line 1, column 2", "infinity"], isFormat) { try parse("1,-inf\n") }
        assertThrows(["line 2, column 2", "outside the float32 range"], isFormat) { try parse("1,2\n3,1e39\n") }
        assertThrows(["line 2, column 2", "empty cell"], isFormat) { try parse("1,2\n3,\n") }
        assertThrows(["no data rows"], isFormat) { try parse("") }
        assertThrows(["no data rows", "header"], isFormat) { try parse("x,y\n") }
        assertThrows(["no data rows"], isFormat) { try parse("\n# only comments\n\n") }
        let empty = try writeText("", "empty.csv")
        assertThrows([empty, "no data rows"], isFormat) { _ = try CSVReader.read(path: empty) }
        assertThrows(["nope.csv", "No such file"], isIO) { _ = try CSVReader.read(path: self.path("nope.csv")) }
        assertThrows(["not a regular file"], isIO) { _ = try CSVReader.read(path: self.directory) }
    }

    // MARK: - NPY

    /// A `.npy` file with a hand-written header (version `major`) and raw payload.
    func npy(_ dictionary: String, _ payload: [UInt8], major: UInt8 = 1, pad: Bool = true) -> [UInt8] {
        var header = Array(dictionary.utf8)
        let field = major == 1 ? 2 : 4
        if pad { while (10 + field - 2 + header.count + 1) % 64 != 0 { header.append(UInt8(ascii: " ")) } }
        header.append(UInt8(ascii: "\n"))
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [major, 0]
        for k in 0..<field { bytes.append(UInt8(truncatingIfNeeded: header.count >> (8 * k))) }
        return bytes + header + payload
    }

    func littleEndian<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
        values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    }

    func testNPYWriterFormat() throws {
        let t = try tensor([3, 2]) { Float($0) }
        let bytes = NPYWriter.encode(t)
        XCTAssertEqual(Array(bytes[0..<8]), [0x93] + Array("NUMPY".utf8) + [1, 0])
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        XCTAssertEqual((10 + headerLength) % 64, 0)
        let header = String(decoding: bytes[10..<(10 + headerLength)], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }"), header)
        XCTAssertTrue(header.hasSuffix(" \n"))
        XCTAssertEqual(bytes.count, 10 + headerLength + 24)
        XCTAssertTrue(String(decoding: NPYWriter.encode(try tensor([5]) { Float($0) }), as: UTF8.self).contains("'shape': (5,), }"))
    }

    func testNPYRoundTrip() throws {
        let t = try awkwardValues([9, 4])
        let p = path("a.npy")
        try NPYWriter.write(t, to: p)
        assertBitEqual(try NPYReader.read(path: p), t)
        assertBitEqual(try NPYReader.decode(NPYWriter.encode(t)), t)
        let v = try tensor([6]) { Float($0) * 0.25 }
        try NPYWriter.write(v, to: p)
        XCTAssertEqual(try NPYReader.read(path: p), try v.reshaped([6, 1]))
    }

    func testNPYConvertsDtypesAndVersions() throws {
        let expected = try Tensor<Float>(rows: [[1, -2], [3, 250]])
        let f8 = littleEndian([1.0, -2.0, 3.0, 250.0].map { ($0 as Double).bitPattern })
        let cases: [(String, [UInt8])] = [
            ("<f8", f8),
            ("<i4", littleEndian([Int32(1), -2, 3, 250])),
            ("<i8", littleEndian([Int64(1), -2, 3, 250])),
            ("<i2", littleEndian([Int16(1), -2, 3, 250])),
            ("<u4", littleEndian([UInt32(1), 2, 3, 250])),
        ]
        for (descr, payload) in cases {
            let expected = descr == "<u4" ? try Tensor<Float>(rows: [[1, 2], [3, 250]]) : expected
            let bytes = npy("{'descr': '\(descr)', 'fortran_order': False, 'shape': (2, 2), }", payload)
            XCTAssertEqual(try NPYReader.decode(bytes), expected, descr)
        }
        let i1 = npy("{'descr': '|i1', 'fortran_order': False, 'shape': (3,), }", littleEndian([Int8(-128), -1, 127]))
        XCTAssertEqual(try NPYReader.decode(i1), try Tensor<Float>(rows: [[-128], [-1], [127]]))
        let u1 = npy("{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", [0, 7, 128, 255])
        XCTAssertEqual(try NPYReader.decode(u1), try Tensor<Float>(rows: [[0], [7], [128], [255]]))
        let u8 = npy("{'descr': '<u8', 'fortran_order': False, 'shape': (1, 1), }", littleEndian([UInt64.max]))
        XCTAssertEqual(try NPYReader.decode(u8).scalars, [Float(UInt64.max)])
        // Versions 2.0 and 3.0, key order, spacing and Python 2 long suffixes.
        for major: UInt8 in [2, 3] {
            let bytes = npy("{'shape': (2L, 2L), 'fortran_order': False, \"descr\": '<f8'}", f8, major: major)
            XCTAssertEqual(try NPYReader.decode(bytes), expected)
        }
        let p = try writeBytes(npy("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }",
                                   littleEndian([Int64(1), -2, 3, 250])), "i8.npy")
        XCTAssertEqual(try NPYReader.read(path: p), expected)
    }

    func testNPYRefusesWrongDtypes() throws {
        let payload = [UInt8](repeating: 0, count: 16)
        func decode(_ descr: String) throws {
            _ = try NPYReader.decode(npy("{'descr': \(descr), 'fortran_order': False, 'shape': (2, 2), }", payload))
        }
        assertThrows(["wrong dtype '>f4'", "big-endian", "astype('<f4')"], isFormat) { try decode("'>f4'") }
        assertThrows(["wrong dtype '>i8'", "big-endian"], isFormat) { try decode("'>i8'") }
        assertThrows(["wrong dtype '|O'", "object"], isFormat) { try decode("'|O'") }
        assertThrows(["wrong dtype '<c8'", "<f4, <f8"], isFormat) { try decode("'<c8'") }
        assertThrows(["wrong dtype '<U1'"], isFormat) { try decode("'<U1'") }
        assertThrows(["wrong dtype", "structured"], isFormat) { try decode("[('a', '<f4'), ('b', '<f4')]") }
        // The same through a file.
        let p = try writeBytes(npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", payload), "be.npy")
        assertThrows([p, "wrong dtype '>f4'"], isFormat) { _ = try NPYReader.read(path: p) }
    }

    func testNPYRefusesBadLayoutsAndContents() throws {
        func header(_ shape: String, fortran: String = "False", descr: String = "<f4") -> String {
            "{'descr': '\(descr)', 'fortran_order': \(fortran), 'shape': \(shape), }"
        }
        let f4 = littleEndian([Float(1), 2, 3, 4].map(\.bitPattern))
        assertThrows(["fortran_order is True"], isFormat) { _ = try NPYReader.decode(self.npy(header("(2, 2)", fortran: "True"), f4)) }
        assertThrows(["3 dimensions", "(1, 2, 2)"], isFormat) { _ = try NPYReader.decode(self.npy(header("(1, 2, 2)"), f4)) }
        assertThrows(["0 dimensions"], isFormat) { _ = try NPYReader.decode(self.npy(header("()"), Array(f4.prefix(4)))) }
        assertThrows(["empty", "(0, 2)"], isFormat) { _ = try NPYReader.decode(self.npy(header("(0, 2)"), [])) }
        assertThrows(["truncated", "16 data bytes", "only 12"], isFormat) {
            _ = try NPYReader.decode(self.npy(header("(2, 2)"), Array(f4.dropLast(4))))
        }
        assertThrows(["4 unexpected bytes"], isFormat) { _ = try NPYReader.decode(self.npy(header("(2, 2)"), f4 + [0, 0, 0, 0])) }
        var nan = f4
        nan.replaceSubrange(8..<12, with: littleEndian([Float.nan.bitPattern]))
        assertThrows(["element [1, 0] is NaN"], isFormat) { _ = try NPYReader.decode(self.npy(header("(2, 2)"), nan)) }
        let inf = littleEndian([1.0, Double.infinity].map(\.bitPattern))
        assertThrows(["element [1, 0] is infinite"], isFormat) { _ = try NPYReader.decode(self.npy(header("(2,)", descr: "<f8"), inf)) }
        let big = littleEndian([1.0, 1e300].map(\.bitPattern))
        assertThrows(["element [0, 1]", "outside the float32 range"], isFormat) {
            _ = try NPYReader.decode(self.npy(header("(1, 2)", descr: "<f8"), big))
        }
        assertThrows(["not a .npy file"], isFormat) { _ = try NPYReader.decode(Array("1,2\n3,4\n".utf8)) }
        assertThrows(["unsupported .npy format version 4.0"], isFormat) { _ = try NPYReader.decode(self.npy(header("(2, 2)"), f4, major: 4)) }
        assertThrows(["invalid .npy header"], isFormat) { _ = try NPYReader.decode(self.npy("{'descr': '<f4', 'shape': (2, 2)}", f4)) }
        assertThrows(["invalid .npy header", "expected ':'"], isFormat) { _ = try NPYReader.decode(self.npy("{'descr' '<f4'}", f4)) }
        assertThrows(["ends inside the header"], isFormat) { _ = try NPYReader.decode(Array(self.npy(header("(2, 2)"), f4).prefix(40))) }
        // A huge shape is refused from the header, before any allocation.
        assertThrows(["more than"], isLimit) { _ = try NPYReader.decode(self.npy(header("(100000000000, 2)"), f4)) }
    }

    func testNPYTruncatedFileIsRefusedBeforeReadingData() throws {
        let bytes = NPYWriter.encode(try tensor([1000, 2]) { Float($0) })
        let p = try writeBytes(Array(bytes.dropLast(6)), "short.npy")
        assertThrows([p, "truncated", "8000 data bytes", "only 7994"], isFormat) { _ = try NPYReader.read(path: p) }
        let tiny = try writeBytes([0x93, 0x4E], "tiny.npy")
        assertThrows(["not a .npy file"], isFormat) { _ = try NPYReader.read(path: tiny) }
        assertThrows(["No such file"], isIO) { _ = try NPYReader.read(path: self.path("nope.npy")) }
    }

    // MARK: - HDF5

    func testHDF5RoundTripAndDatasetPaths() throws {
        let t = try awkwardValues([5, 3])
        let p = path("s.h5")
        try HDF5DatasetWriter.write(t, to: p)
        assertBitEqual(try HDF5DatasetReader.read(path: p, dataset: "/samples"), t)
        assertBitEqual(try HDF5DatasetReader.read(path: p, dataset: "samples"), t)
        assertBitEqual(try HDF5DatasetReader.read(path: p), t)  // the only dataset at the root
        try HDF5DatasetWriter.write(t, to: p, dataset: "/run/1/x")
        assertBitEqual(try HDF5DatasetReader.read(path: p, dataset: "/run/1/x"), t)
        let v = try tensor([4]) { Float($0) }
        try HDF5DatasetWriter.write(v, to: p, dataset: "v")
        XCTAssertEqual(try HDF5DatasetReader.read(path: p, dataset: "/v"), try v.reshaped([4, 1]))
        assertThrows(["empty"], isInvalid) { try HDF5DatasetWriter.write(t, to: p, dataset: "/") }
        assertThrows(["'..'"], isInvalid) { try HDF5DatasetWriter.write(t, to: p, dataset: "/a/../b") }
    }

    /// Writes a file with datasets made by `body` (through the internal HDF5 wrapper).
    func makeHDF5(_ name: String, _ body: (HDF5Group) throws -> Void) throws -> String {
        let file = try HDF5File.createInMemory()
        try body(try file.root)
        let image = try file.fileImage()
        file.close()
        return try writeBytes(image, name)
    }

    func testHDF5ConvertsIntegersAndDoubles() throws {
        let p = try makeHDF5("types.h5") { root in
            try root.writeDataset("ints", int64s: [1, -2, 3, 4_000_000], shape: [2, 2])
            try root.writeDataset("doubles", doubles: [0.5, -1.25, 3], shape: [3])
            try root.writeDataset("cube", doubles: [Double](repeating: 1, count: 8), shape: [2, 2, 2])
            try root.writeDataset("nan", doubles: [1, .nan, 3, 4], shape: [2, 2])
            try root.writeDataset("huge", doubles: [1, 2, 1e300, 4], shape: [2, 2])
            try root.writeDataset("empty", doubles: [], shape: [0, 3])
            try root.setAttribute("note", string: "not a dataset")
            _ = try root.createGroup("group")
        }
        XCTAssertEqual(try HDF5DatasetReader.read(path: p, dataset: "/ints"), try Tensor<Float>(rows: [[1, -2], [3, 4_000_000]]))
        XCTAssertEqual(try HDF5DatasetReader.read(path: p, dataset: "/doubles"), try Tensor<Float>(rows: [[0.5], [-1.25], [3]]))
        assertThrows(["/cube", "rank 3"], isFormat) { _ = try HDF5DatasetReader.read(path: p, dataset: "/cube") }
        assertThrows(["/nan", "element [0, 1] is NaN"], isFormat) { _ = try HDF5DatasetReader.read(path: p, dataset: "/nan") }
        assertThrows(["/huge", "element [1, 0]", "float32 range"], isFormat) { _ = try HDF5DatasetReader.read(path: p, dataset: "/huge") }
        assertThrows(["/empty", "empty"], isFormat) { _ = try HDF5DatasetReader.read(path: p, dataset: "/empty") }
        assertThrows(["/group is a group, not a dataset"], isInvalid) { _ = try HDF5DatasetReader.read(path: p, dataset: "/group") }
        assertThrows(["name the dataset", "cube", "doubles", "group/"], isInvalid) { _ = try HDF5DatasetReader.read(path: p) }
    }

    func testHDF5MissingDatasetListsWhatExists() throws {
        let p = path("m.h5")
        try HDF5DatasetWriter.write(try tensor([2, 2]) { Float($0) }, to: p, dataset: "/train/x")
        assertThrows(["no dataset /train/y", "/train holds x"], isInvalid) { _ = try HDF5DatasetReader.read(path: p, dataset: "/train/y") }
        assertThrows(["no group /test", "/ holds train/"], isInvalid) { _ = try HDF5DatasetReader.read(path: p, dataset: "/test/x") }
        assertThrows(["no dataset /samples", "train/"], isInvalid) { _ = try DataSource.load(p + ":/samples") }
        assertThrows(["/train/x is not a group"], isInvalid) { _ = try HDF5DatasetReader.read(path: p, dataset: "/train/x/z/w") }
    }

    func testHDF5FileErrors() throws {
        let text = try writeText("1,2\n", "fake.h5")
        assertThrows([text, "not a readable HDF5 file"], isFormat) { _ = try HDF5DatasetReader.read(path: text, dataset: "/x") }
        assertThrows(["No such file"], isIO) { _ = try HDF5DatasetReader.read(path: self.path("none.h5"), dataset: "/x") }
        assertThrows(["cannot write"], isIO) {
            try HDF5DatasetWriter.write(try self.tensor([1, 1]) { _ in 1 }, to: self.path("no/dir.h5"))
        }
    }

    /// The Python interpreter with h5py (`SWIFTFLOWS_PYTHON`, else the repository's `.venv`), or nil.
    func pythonWithH5py() -> String? {
        var candidates: [String] = []
        if let configured = getenv("SWIFTFLOWS_PYTHON").map({ String(cString: $0) }), !configured.isEmpty {
            candidates.append(configured)
        }
        let root = String(#filePath.split(separator: "/").dropLast(3).joined(separator: "/"))
        candidates.append("/" + root + "/.venv/bin/python")
        return candidates.first { access($0, X_OK) == 0 && (try? runPython($0, "import h5py", []).status) == 0 }
    }

    func runPython(_ python: String, _ script: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
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

    /// A data file whose dataset keeps its values in another file (HDF5 external storage) or maps
    /// them from one (a virtual dataset) is refused naming the dataset, before a value is read:
    /// HDF5 would open whatever file it names, a FIFO (a hang) or a file the user never meant to
    /// train on included (issue 25; docs/reliability.md).
    func testHDF5DataInOtherFilesIsRefused() throws {
        guard let python = pythonWithH5py() else { throw XCTSkip("no Python with h5py") }
        let script = """
        import os, sys, h5py, numpy as np
        d = sys.argv[1]
        np.arange(8, dtype=np.float32).tofile(os.path.join(d, "raw.bin"))
        os.mkfifo(os.path.join(d, "fifo"))
        with h5py.File(os.path.join(d, "source.h5"), "w") as f:
            f.create_dataset("x", data=np.arange(8, dtype=np.float32).reshape(4, 2))
        with h5py.File(os.path.join(d, "external.h5"), "w") as f:
            f.create_dataset("x", shape=(4, 2), dtype=np.float32, external=[(os.path.join(d, "raw.bin"), 0, 32)])
        with h5py.File(os.path.join(d, "fifo.h5"), "w") as f:
            f.create_dataset("x", shape=(4, 2), dtype=np.float32, external=[(os.path.join(d, "fifo"), 0, 32)])
        with h5py.File(os.path.join(d, "virtual.h5"), "w") as f:
            layout = h5py.VirtualLayout(shape=(4, 2), dtype=np.float32)
            layout[...] = h5py.VirtualSource(os.path.join(d, "source.h5"), "x", shape=(4, 2))
            f.create_virtual_dataset("x", layout)
        """
        let result = try runPython(python, script, [directory])
        XCTAssertEqual(result.status, 0, result.output)
        assertThrows(["/x", "external storage"], isFormat) { _ = try HDF5DatasetReader.read(path: self.path("external.h5"), dataset: "/x") }
        assertThrows(["/x", "external storage"], isFormat) { _ = try HDF5DatasetReader.read(path: self.path("fifo.h5"), dataset: "/x") }
        assertThrows(["/x", "virtual dataset"], isFormat) { _ = try HDF5DatasetReader.read(path: self.path("virtual.h5"), dataset: "/x") }
        XCTAssertEqual(try HDF5DatasetReader.read(path: path("source.h5"), dataset: "/x").shape, [4, 2])
    }

    /// Data paths that are FIFOs or devices are refused at once (open without O_NONBLOCK blocked
    /// on a FIFO without a writer).
    func testSpecialFilesAreRefusedWithoutBlocking() throws {
        let fifo = path("data.csv")
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        assertThrows(["not a regular file"], isIO) { _ = try DataSource.load(fifo) }
        assertThrows(["not a regular file"], isIO) { _ = try HDF5DatasetReader.read(path: fifo, dataset: "/x") }
        assertThrows(["not a regular file"], isIO) { _ = try HDF5DatasetReader.read(path: "/dev/zero", dataset: "/x") }
    }

    // MARK: - DataSource

    func testDataSourceToyDescriptions() throws {
        XCTAssertEqual(try DataSource.load("toy:moons"), try ToyDataset.moons.tensor(10_000, seed: 0))
        XCTAssertEqual(try DataSource.load("toy:8gaussians:123"), try ToyDataset.eightGaussians.tensor(123, seed: 0))
        XCTAssertEqual(try DataSource.load("toy:2spirals:50:7"), try ToyDataset.twoSpirals.tensor(50, seed: 7))
        XCTAssertEqual(try DataSource.load("toy:rings::7"), try ToyDataset.rings.tensor(10_000, seed: 7))
        XCTAssertEqual(try DataSource.load("toy:rings:5:18446744073709551615"), try ToyDataset.rings.tensor(5, seed: .max))
        assertThrows(["unknown toy data set 'moon'", "moons"], isInvalid) { _ = try DataSource.load("toy:moon") }
        assertThrows(["malformed", "toy:NAME[:N[:SEED]]"], isInvalid) { _ = try DataSource.load("toy:") }
        assertThrows(["malformed"], isInvalid) { _ = try DataSource.load("toy:moons:1:2:3") }
        assertThrows(["'ten' is not an integer"], isInvalid) { _ = try DataSource.load("toy:moons:ten") }
        assertThrows(["seed '-1'"], isInvalid) { _ = try DataSource.load("toy:moons:10:-1") }
        assertThrows(["at least 1"], isInvalid) { _ = try DataSource.load("toy:moons:0") }
        assertThrows(["limit"], isLimit) { _ = try DataSource.load("toy:moons:\(Limits.maxToySamples + 1)") }
    }

    func testDataSourceSaveLoadRoundTrips() throws {
        let t = try awkwardValues([6, 2])
        for name in ["s.csv", "s.npy", "s.h5", "S.HDF5", "s.CSV", "nested.h5:/a/b"] {
            let target = path(name)
            try DataSource.save(t, to: target)
            assertBitEqual(try DataSource.load(target), t)
        }
        XCTAssertEqual(try HDF5DatasetReader.read(path: path("s.h5"), dataset: "/samples").shape, [6, 2])
        assertBitEqual(try DataSource.load(path("s.h5") + ":/samples"), t)
        assertBitEqual(try DataSource.load(path("nested.h5") + ":a/b"), t)
    }

    func testDataSourceUnknownExtensions() throws {
        let t = try tensor([1, 2]) { Float($0) }
        assertThrows(["'data.txt'", ".csv", ".npy", ".h5", "toy:NAME"], isInvalid) { _ = try DataSource.load("data.txt") }
        assertThrows(["'out.json'", ".csv"], isInvalid) { try DataSource.save(t, to: "out.json") }
        assertThrows(["'noextension'"], isInvalid) { _ = try DataSource.load("noextension") }
    }
}
