@testable import FlowCore
@testable import FlowModelFile
import FlowTestSupport
import XCTest

final class SamplingTests: XCTestCase {
    func trainedLookingFlow() throws -> NormalizingFlow<Float> {
        let flow = try NormalizingFlow<Float>.realNVP(dim: 3, layers: 4, hidden: [16], mixing: "lu", seed: 1)
        BijectionChecker.perturb(flow.parameters, scale: 0.2, seed: 2)
        flow.transform.parametersDidChange()
        return flow
    }

    func testSameSeedSameSamplesDifferentSeedDifferentSamples() throws {
        let flow = try trainedLookingFlow()
        XCTAssertEqual(flow.sample(1000, seed: 42), flow.sample(1000, seed: 42))
        XCTAssertNotEqual(flow.sample(1000, seed: 42), flow.sample(1000, seed: 43))
        // Seed 0 is a valid seed.
        XCTAssertTrue(flow.sample(10, seed: 0).scalars.allSatisfy(\.isFinite))
    }

    func testSamplesDoNotDependOnBatchSizeOrThreadCount() throws {
        let flow = try trainedLookingFlow()
        let saved = FlowRuntime.threadCount
        defer { FlowRuntime.threadCount = saved }
        FlowRuntime.threadCount = 1
        let one = flow.sample(3000, seed: 7)
        let lpOne = try flow.logProb(one)
        FlowRuntime.threadCount = 2
        let two = flow.sample(3000, seed: 7)
        FlowRuntime.threadCount = 5
        let five = flow.sample(3000, seed: 7)
        let lpFive = try flow.logProb(five)
        XCTAssertEqual(one, two)
        XCTAssertEqual(one, five)
        XCTAssertEqual(lpOne, lpFive)
        // The first 10 samples of a large draw are the 10 samples of a small one: the same base
        // draws, mapped by kernels that may round differently at another batch size.
        let small = flow.sample(10, seed: 7).scalars
        XCTAssertLessThan(BijectionChecker.maxRelativeError(Array(one.scalars.prefix(30)), small), 1e-5)
    }

    func testSampleLogProbMatchesLogProbOfTheSamples() throws {
        let flow = try trainedLookingFlow()
        let (x, lp) = flow.sampleAndLogProb(500, seed: 3)
        let direct = try flow.logProb(x)
        for i in 0..<500 { XCTAssertEqual(lp[i], direct[i], accuracy: 1e-3 * max(1, abs(direct[i]))) }
    }

    func testStandardNormalSamplesHaveTheRightMoments() throws {
        let flow = try NormalizingFlow<Double>(spec: .object(["event_shape": JSONValue([4])]), seed: 0)
        let x = flow.sample(50_000, seed: 11).scalars
        let mean = x.reduce(0, +) / Double(x.count)
        let variance = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(x.count)
        let fourth = x.map { pow($0 - mean, 4) }.reduce(0, +) / Double(x.count)
        XCTAssertEqual(mean, 0, accuracy: 0.01)
        XCTAssertEqual(variance, 1, accuracy: 0.01)
        XCTAssertEqual(fourth, 3, accuracy: 0.06)
    }

    /// Known-answer vectors of Philox4x32-10 from the Random123 distribution (kat_vectors).
    func testPhiloxKnownAnswers() {
        let zero = Philox4x32(seed: 0).block(0, 0, 0, 0)
        XCTAssertEqual([zero.0, zero.1, zero.2, zero.3], [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8])
        let ones = Philox4x32(seed: UInt64.max).block(.max, .max, .max, .max)
        XCTAssertEqual([ones.0, ones.1, ones.2, ones.3], [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd])
        let pi = Philox4x32(seed: 0x299f_31d0 << 32 | 0xa409_3822).block(0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344)
        XCTAssertEqual([pi.0, pi.1, pi.2, pi.3], [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1])
    }

    func testTemperatureScalesTheBase() throws {
        let flow = try NormalizingFlow<Float>(spec: .object(["event_shape": JSONValue([2])]), seed: 0)
        let cold = flow.sample(100, seed: 5, temperature: 0.5)
        let warm = flow.sample(100, seed: 5)
        for (c, w) in zip(cold.scalars, warm.scalars) { XCTAssertEqual(c, 0.5 * w, accuracy: 1e-6) }
    }
}
