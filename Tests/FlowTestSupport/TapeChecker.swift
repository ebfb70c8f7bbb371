@testable import FlowCore
@testable import FlowModelFile
import XCTest

/// Checks the training tapes of ``Bijection/tapeBytes(count:)``: a forward + backward pass that
/// keeps the layers' tapes must give bit-identical outputs, log-determinants, input gradients and
/// parameter gradients to one whose backward passes recompute what they need.
public enum TapeChecker {
    public static func assertTapedPassMatchesRecomputation<T: FlowScalar>(
        _ f: NormalizingFlow<T>, rows: Int = 5, _ name: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        let c = f.transform, d = f.eventSize
        let x = BijectionChecker.randomPoints(rows, d, seed: 8).map { T($0) }
        let r = BijectionChecker.randomPoints(rows, d, seed: 9).map { T($0) }
        func pass(taped: Bool) -> ([T], [Double], [T], [[T]]) {
            let saved = [T](repeating: 0, count: max(c.layers.count, 1) * rows * d)
            var z = x, g = r, logDet = [Double](repeating: 0, count: rows)
            let w = [T](repeating: T(0.3), count: rows)
            let tapeBytes = c.layerTapeBytes(count: rows)
            let tape = UnsafeMutableRawPointer.allocate(byteCount: max(tapeBytes, 64), alignment: 64)
            defer { tape.deallocate() }
            for p in c.parameters { p.zeroGradient() }
            let ws = Workspace()
            try! ws.reserve(bytes: c.trainingWorkspaceBytes(count: rows))
            saved.withUnsafeBufferPointer { sp in
                let s = UnsafeMutablePointer(mutating: sp.baseAddress!)
                var arena = ws.arena()
                c.forward(saving: s, tape: taped ? tape : nil, &z, count: rows, logDet: &logDet, arena: &arena)
                arena = ws.arena()
                c.backward(saved: s, tape: taped ? UnsafeRawPointer(tape) : nil, count: rows, gradient: &g,
                           logDetGradient: w, arena: &arena)
            }
            return (z, logDet, g, c.parameters.map { Array($0.gradient) })
        }
        XCTAssertGreaterThan(c.layerTapeBytes(count: rows), 0, "\(name): no layer keeps a tape", file: file, line: line)
        let (zA, ldA, gA, pA) = pass(taped: true), (zB, ldB, gB, pB) = pass(taped: false)
        XCTAssertEqual(zA, zB, "\(name): z", file: file, line: line)
        XCTAssertEqual(ldA, ldB, "\(name): logDet", file: file, line: line)
        XCTAssertEqual(gA, gB, "\(name): ∂x", file: file, line: line)
        XCTAssertEqual(pA, pB, "\(name): parameter gradients", file: file, line: line)
        XCTAssertTrue(gA.allSatisfy { $0.isFinite } && gA.contains { $0 != 0 }, name, file: file, line: line)
    }
}
