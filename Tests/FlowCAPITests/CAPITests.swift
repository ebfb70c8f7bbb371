@testable import FlowCAPI
import FlowCore
import FlowModelFile
import XCTest

/// The exported `sf_*` functions called from Swift: status codes, messages and buffer contracts.
/// (The C test program `tests/c/test_capi.c` repeats the essentials through the real shared library.)
final class CAPITests: XCTestCase {
    private let spec = #"{"preset": "realnvp", "dim": 3, "layers": 4, "hidden": [16]}"#

    private func makeModel() throws -> OpaquePointer {
        var handle: OpaquePointer?
        XCTAssertEqual(sf_model_create(spec, 7, &handle), 0, String(cString: sf_last_error()))
        return try XCTUnwrap(handle)
    }

    private var lastError: String { String(cString: sf_last_error()) }

    func testStatusStringsAreDistinctAndUnknownCodesAreNamed() {
        let texts = (0...11).map { String(cString: sf_status_string(Int32($0))) }
        XCTAssertEqual(Set(texts).count, 12)
        XCTAssertEqual(String(cString: sf_status_string(99)), "unknown status")
        XCTAssertEqual(String(cString: sf_status_string(-1)), "unknown status")
    }

    func testNullArgumentsReturnInvalidArgumentWithAMessage() throws {
        let m = try makeModel()
        defer { sf_model_free(m) }
        var x = [Float](repeating: 0, count: 6), z = x
        var ld = [Double](repeating: 0, count: 2)
        var size: UInt = 0
        XCTAssertEqual(sf_model_create(nil, 0, nil), 1)
        var out: OpaquePointer?
        XCTAssertEqual(sf_model_create(nil, 0, &out), 1)
        XCTAssertNil(out)
        XCTAssertTrue(lastError.contains("spec_json"), lastError)
        XCTAssertEqual(sf_model_load(nil, &out), 1)
        XCTAssertEqual(sf_model_load_memory(nil, 10, &out), 1)
        XCTAssertEqual(sf_model_event_size(nil, &size), 1)
        XCTAssertTrue(lastError.contains("model"), lastError)
        XCTAssertEqual(sf_model_event_size(m, nil), 1)
        XCTAssertEqual(sf_forward(m, nil, 2, &z, &ld), 1)
        XCTAssertEqual(sf_forward(m, &x, 2, nil, &ld), 1)
        XCTAssertEqual(sf_inverse(m, &z, 2, nil, nil), 1)
        XCTAssertEqual(sf_log_prob(m, &x, 2, nil), 1)
        XCTAssertEqual(sf_sample(m, 2, 1, nil, nil), 1)
        XCTAssertEqual(sf_model_save(m, nil), 1)
        XCTAssertEqual(sf_model_save_memory(m, nil, &size), 1)
        // Freeing NULL is a no-op.
        sf_model_free(nil)
        sf_buffer_free(nil)
    }

    func testZeroSamplesIsANoOpAndOverflowingCountsAreRefused() throws {
        let m = try makeModel()
        defer { sf_model_free(m) }
        XCTAssertEqual(sf_log_prob(m, nil, 0, nil), 0, "n = 0 touches no buffer")
        XCTAssertEqual(sf_forward(m, nil, 0, nil, nil), 0)
        XCTAssertEqual(sf_inverse(m, nil, 0, nil, nil), 0)
        XCTAssertEqual(sf_sample(m, 0, 1, nil, nil), 0)
        var x = [Float](repeating: 0, count: 3)
        var lp = [Double](repeating: 0, count: 1)
        let huge = UInt.max / 2
        let status = sf_log_prob(m, &x, huge, &lp)
        XCTAssertEqual(status, 1, lastError)
        XCTAssertFalse(lastError.isEmpty)
    }

    func testForwardInverseLogProbAndSampleAgree() throws {
        let m = try makeModel()
        defer { sf_model_free(m) }
        let n: UInt = 50
        var x = [Float](repeating: 0, count: 150)
        var lpSample = [Double](repeating: 0, count: 50)
        XCTAssertEqual(sf_sample(m, n, 11, &x, &lpSample), 0)
        var z = x, back = x
        var ldF = lpSample, ldI = lpSample, lp = lpSample
        XCTAssertEqual(sf_forward(m, x, n, &z, &ldF), 0)
        XCTAssertEqual(sf_inverse(m, z, n, &back, &ldI), 0)
        XCTAssertEqual(sf_log_prob(m, x, n, &lp), 0)
        for i in 0..<150 { XCTAssertEqual(back[i], x[i], accuracy: 1e-4) }
        for i in 0..<50 {
            XCTAssertEqual(ldF[i], -ldI[i], accuracy: 1e-4)
            XCTAssertEqual(lp[i], lpSample[i], accuracy: 1e-3)
        }
    }

    func testSaveMemoryLoadMemoryIsBitExact() throws {
        let m = try makeModel()
        defer { sf_model_free(m) }
        var data: UnsafeMutableRawPointer?
        var size: UInt = 0
        XCTAssertEqual(sf_model_save_memory(m, &data, &size), 0)
        defer { sf_buffer_free(data) }
        var loaded: OpaquePointer?
        XCTAssertEqual(sf_model_load_memory(data, size, &loaded), 0, lastError)
        defer { sf_model_free(loaded) }
        var a = [Float](repeating: 0, count: 30), b = a
        XCTAssertEqual(sf_sample(m, 10, 3, &a, nil), 0)
        XCTAssertEqual(sf_sample(loaded, 10, 3, &b, nil), 0)
        XCTAssertEqual(a, b)
    }

    func testGarbageImagesAreRefusedWithFormatStatus() {
        var out: OpaquePointer?
        var junk = [UInt8](repeating: 0x41, count: 512)
        XCTAssertEqual(sf_model_load_memory(&junk, 512, &out), 5, lastError)
        XCTAssertNil(out)
        XCTAssertEqual(sf_model_load_memory(&junk, 0, &out), 5)
        XCTAssertEqual(sf_model_load("/nonexistent/dir/model.h5", &out), 4, lastError)
    }

    func testBadSpecNamesTheProblem() {
        var out: OpaquePointer?
        XCTAssertEqual(sf_model_create(#"{"preset": "no_such_flow", "dim": 2}"#, 0, &out), 7, lastError)
        XCTAssertTrue(lastError.contains("no_such_flow"), lastError)
        XCTAssertEqual(sf_model_create("{not json", 0, &out), 3, lastError)
    }
}
