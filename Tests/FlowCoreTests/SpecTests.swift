@testable import FlowCore
@testable import FlowModelFile
import FlowTestSupport
import XCTest

final class SpecTests: XCTestCase {
    func testJSONRoundTripAndCanonicalPrinting() throws {
        let text = #"{"b": [1, 2.5, -3e2, true, null], "a": {"s": "q\"\\\n\u00e9\ud83d\ude00"}}"#
        let v = try JSONValue.parse(text)
        XCTAssertEqual(v["b"], .array([.number(1), .number(2.5), .number(-300), .bool(true), .null]))
        XCTAssertEqual(v["a"]?["s"], .string("q\"\\\né😀"))
        XCTAssertEqual(v.description, #"{"a":{"s":"q\"\\\né😀"},"b":[1,2.5,-300,true,null]}"#)
        XCTAssertEqual(try JSONValue.parse(v.description), v)
    }

    func testJSONErrors() {
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "01x", "\"\\x\"", "{\"a\":1,\"a\":2}", "[1] 2", "nul", "1e999"] {
            XCTAssertThrowsError(try JSONValue.parse(bad), bad) { error in
                guard case FlowError.invalidSpec = error else { return XCTFail("\(bad): \(error)") }
            }
        }
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        XCTAssertThrowsError(try JSONValue.parse(deep)) { error in
            guard case FlowError.limitExceeded = error else { return XCTFail("\(error)") }
        }
    }

    func testResolvedSpecRebuildsTheSameFlow() throws {
        let spec = #"""
        {"event_shape": [5], "base": {"type": "diagonal_normal"},
         "layers": [{"type": "affine_coupling", "mask": "alternating", "hidden": [7]},
                    {"type": "permutation", "kind": "random"},
                    {"type": "actnorm"}, {"type": "lu_linear"},
                    {"type": "additive_coupling", "invert_mask": true, "hidden": [3, 4]}]}
        """#
        let a = try NormalizingFlow<Float>(specJSON: spec, seed: 9)
        let b = try NormalizingFlow<Float>(spec: a.spec, seed: 9)
        XCTAssertEqual(a.spec, b.spec)
        XCTAssertEqual(a.parameters.map(\.array), b.parameters.map(\.array))
        // Another seed gives other initial weights (and another random permutation) in the same shapes.
        let c = try NormalizingFlow<Float>(specJSON: spec, seed: 10)
        XCTAssertEqual(a.parameters.map(\.shape), c.parameters.map(\.shape))
        XCTAssertNotEqual(a.parameters.map(\.array), c.parameters.map(\.array))
    }

    func testSpecErrorsNameTheProblem() {
        let cases: [(String, String)] = [
            (#"{"event_shape": [2], "layers": [{"type": "spline"}]}"#, "unknown layer type \"spline\""),
            (#"{"event_shape": [2], "layers": [{"type": "affine_coupling", "hiden": [3]}]}"#, "unknown key \"hiden\""),
            (#"{"event_shape": [2], "layers": [{"type": "affine_coupling", "mask": [1, 1]}]}"#, "transforms no feature"),
            (#"{"event_shape": [3], "layers": [{"type": "affine_coupling", "mask": [1, 0]}]}"#, "2 entries for 3 features"),
            (#"{"event_shape": [2], "layers": [{"type": "affine_coupling", "activation": "gelu2"}]}"#, "unknown activation"),
            (#"{"event_shape": [3], "layers": [{"type": "permutation", "indices": [0, 0, 1]}]}"#, "not a permutation"),
            (#"{"event_shape": [0]}"#, "event_shape"),
            (#"{"event_shape": [2], "base": {"type": "cauchy"}}"#, "unknown base distribution type \"cauchy\""),
            (#"{"preset": "glow2", "dim": 2}"#, "unknown preset \"glow2\""),
            (#"{"preset": "realnvp", "dim": -2}"#, "\"dim\""),
            (#"{"event_shape": [2], "layer": []}"#, "unknown top-level key \"layer\""),
            (#"{"event_shape": [4], "layers": [{"type": "affine_coupling", "hidden": [65536, 65536, 65536]}]}"#, "parameters"),
        ]
        for (spec, fragment) in cases {
            XCTAssertThrowsError(try NormalizingFlow<Float>(specJSON: spec, seed: 0), spec) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(spec): \(error)")
            }
        }
    }
}
