import CFlowKernels
@testable import FlowCore
@testable import FlowModelFile
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The C kernels against Double references, in both variants (AVX2+FMA where available, and
/// the portable one), over shapes that hit every tile and tail case.
final class KernelTests: XCTestCase {
    override func tearDown() { fk_force_portable(0) }

    private var variants: [(String, Int32)] {
        fk_simd_level() == 1 ? [("avx2", 0), ("portable", 1)] : [("portable", 1)]
    }

    private func values(_ n: Int, seed: UInt64, scale: Double = 1) -> [Float] {
        var s = PhiloxStream(seed: seed, row: 0, stream: 7)
        return (0..<n).map { _ in Float(s.nextNormal() * scale) }
    }

    func testDenseLayerMatchesDoubleReferenceForEveryTileShape() {
        for (name, portable) in variants {
            fk_force_portable(portable)
            for rows in [1, 2, 3, 5, 6, 7, 13] {
                for inF in [0, 1, 3, 8, 33, 70] {
                    for outF in [1, 5, 8, 9, 16, 17, 24, 40] {
                        let ldx = inF + 2, ldy = outF + 3
                        let x = values(rows * ldx, seed: 1), wt = values(inF * outF, seed: 2), b = values(outF, seed: 3)
                        for relu in [false, true] {
                            var y = [Float](repeating: .nan, count: rows * ldy)
                            fk_linear_f32(x, ldx, rows, inF, wt, b, outF, &y, ldy, nil, relu ? 1 : 0)
                            for r in 0..<rows {
                                for j in 0..<outF {
                                    var ref = Double(b[j])
                                    for k in 0..<inF { ref += Double(x[r * ldx + k]) * Double(wt[k * outF + j]) }
                                    if relu { ref = max(ref, 0) }
                                    XCTAssertEqual(Double(y[r * ldy + j]), ref, accuracy: 1e-5 * (1 + Double(inF)),
                                                   "\(name) rows \(rows) in \(inF) out \(outF) relu \(relu) [\(r), \(j)]")
                                }
                                // Padding between rows is untouched.
                                for j in outF..<ldy { XCTAssertTrue(y[r * ldy + j].isNaN, "\(name): wrote past the row") }
                                // The row alone (the single-row path) gives the same bits as inside the batch.
                                var alone = [Float](repeating: .nan, count: ldy)
                                fk_linear_f32(Array(x[(r * ldx)...]), ldx, 1, inF, wt, b, outF, &alone, ldy, nil, relu ? 1 : 0)
                                XCTAssertEqual(alone[..<outF].map(\.bitPattern), y[(r * ldy)..<(r * ldy + outF)].map(\.bitPattern),
                                               "\(name) rows \(rows) in \(inF) out \(outF): row \(r) alone differs")
                            }
                        }
                    }
                }
            }
        }
    }

    /// Copies `values` to the end of a region followed by an inaccessible page (any read past
    /// the copy crashes the test) and runs `body` on it.
    private func withGuardedCopy(_ values: [Float], _ body: (UnsafePointer<Float>) -> Void) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE))), count = values.count
        let bytes = (count * 4 + page - 1) / page * page
        guard let region = mmap(nil, bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              region != MAP_FAILED else { return XCTFail("mmap failed") }
        defer { munmap(region, bytes + page) }
        XCTAssertEqual(mprotect(region + bytes, page, PROT_NONE), 0)
        let copy = (region + bytes - count * 4).bindMemory(to: Float.self, capacity: count)
        copy.update(from: values, count: count)
        body(copy)
    }

    /// The dense, sparse and weight-gradient kernels read their matrices only inside the used
    /// floats: with the weights, the inputs and the output gradients each ending right at an
    /// inaccessible page, every column tail, narrow outputs and inputs (1–7, whose vectors reach
    /// past more than one row) and single rows give the results of ordinary copies, bit for bit.
    /// (Masked columns load plainly into the following rows and mask only near a buffer's end:
    /// VMASKMOVPS issues several times slower than a plain load on Zen 1.)
    func testKernelsReadNothingPastTheirMatrices() {
        for (name, portable) in variants {
            fk_force_portable(portable)
            for (inF, outF) in [(1, 1), (1, 3), (2, 2), (3, 5), (4, 6), (7, 7), (9, 9), (5, 12), (3, 17), (2, 23), (70, 3)] {
                let rows = 5, wt = values(inF * outF, seed: 31), x = values(rows * inF, seed: 32), b = values(outF, seed: 33)
                let label = "\(name) in \(inF) out \(outF)"
                var want = [Float](repeating: .nan, count: rows * outF), wantSparse = want
                fk_linear_f32(x, inF, rows, inF, wt, b, outF, &want, outF, nil, 1)
                fk_linear_sparse_f32(x, inF, rows, inF, wt, b, outF, &wantSparse, outF, nil, 0)
                withGuardedCopy(wt) { guarded in
                    var got = [Float](repeating: .nan, count: rows * outF), gotSparse = got
                    fk_linear_f32(x, inF, rows, inF, guarded, b, outF, &got, outF, nil, 1)
                    fk_linear_sparse_f32(x, inF, rows, inF, guarded, b, outF, &gotSparse, outF, nil, 0)
                    XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), label + " dense")
                    XCTAssertEqual(gotSparse.map(\.bitPattern), wantSparse.map(\.bitPattern), label + " sparse")
                }
                let dy = values(rows * outF, seed: 34), dw0 = values(outF * inF, seed: 35), db0 = values(outF, seed: 36)
                var dwWant = dw0, dbWant = db0
                fk_linear_wgrad_f32(dy, outF, rows, outF, x, inF, inF, &dwWant, &dbWant)
                withGuardedCopy(x) { gx in
                    withGuardedCopy(dy) { gdy in
                        var dw = dw0, db = db0
                        fk_linear_wgrad_f32(gdy, outF, rows, outF, gx, inF, inF, &dw, &db)
                        XCTAssertEqual(dw.map(\.bitPattern), dwWant.map(\.bitPattern), label + " weight gradient")
                        XCTAssertEqual(db.map(\.bitPattern), dbWant.map(\.bitPattern), label + " bias gradient")
                    }
                }
            }
        }
    }

    /// The gate zeroes exactly the outputs whose gate value is not > 0 (0, −0, negative, NaN),
    /// with and without ReLU, for every tile shape; other outputs are bitwise the ungated ones.
    func testDenseLayerGateZeroesWhereTheGateIsNotPositive() {
        for (name, portable) in variants {
            fk_force_portable(portable)
            for rows in [1, 2, 5, 7] {
                for (inF, outF) in [(3, 5), (8, 9), (16, 17), (33, 40)] {
                    let ldx = inF + 1, ldy = outF + 2
                    let x = values(rows * ldx, seed: 4), wt = values(inF * outF, seed: 5), b = values(outF, seed: 6)
                    var gate = values(rows * ldy, seed: 7)
                    for i in stride(from: 0, to: gate.count, by: 5) { gate[i] = [0, -0.0, .nan, 1e-30, -1e-30][(i / 5) % 5] }
                    for relu in [false, true] {
                        var plain = [Float](repeating: .nan, count: rows * ldy), gated = plain
                        fk_linear_f32(x, ldx, rows, inF, wt, b, outF, &plain, ldy, nil, relu ? 1 : 0)
                        fk_linear_f32(x, ldx, rows, inF, wt, b, outF, &gated, ldy, gate, relu ? 1 : 0)
                        for r in 0..<rows {
                            for j in 0..<outF {
                                let i = r * ldy + j
                                let want: Float = gate[i] > 0 ? plain[i] : 0
                                XCTAssertEqual(gated[i].bitPattern, want.bitPattern,
                                               "\(name) rows \(rows) in \(inF) out \(outF) relu \(relu) [\(r), \(j)] gate \(gate[i])")
                            }
                            for j in outF..<ldy { XCTAssertTrue(gated[r * ldy + j].isNaN, "\(name): wrote past the row") }
                        }
                    }
                }
            }
        }
    }

    /// The sparse-input kernel equals the dense one (up to the sign of zeros) on inputs with
    /// +0, −0 and nonzero entries in every pattern of a block of eight, for every column tail,
    /// with and without bias, ReLU and gate; a NaN input still reaches the output.
    /// `fk_linear_accumulate_f32` adds its terms into the running values in increasing k, one
    /// fused multiply-add each (the documented order, reproduced in Float with `addingProduct`),
    /// in both variants, in four-row tiles and single rows alike; rows are independent and the
    /// padding is untouched.
    func testAccumulateKernelFollowsItsSummationOrder() {
        for (name, portable) in variants {
            fk_force_portable(portable)
            for rows in [1, 2, 4, 5, 9] {
                for inF in [1, 3, 9, 40] {
                    for outF in [1, 7, 8, 9, 23, 64, 65, 130] {
                        let ldx = inF + 1, ldy = outF + 2
                        let x = values(rows * ldx, seed: 41), wt = values(inF * outF, seed: 42)
                        var y = values(rows * ldy, seed: 43)
                        for r in 0..<rows { for j in outF..<ldy { y[r * ldy + j] = .nan } }
                        let start = y
                        for relu in [false, true] {
                            y = start
                            fk_linear_accumulate_f32(x, ldx, rows, inF, wt, outF, &y, ldy, relu ? 1 : 0)
                            for r in 0..<rows {
                                for j in 0..<outF {
                                    var want = start[r * ldy + j]
                                    for k in 0..<inF {
                                        want = want.addingProduct(relu ? max(x[r * ldx + k], 0) : x[r * ldx + k], wt[k * outF + j])
                                    }
                                    XCTAssertEqual(y[r * ldy + j].bitPattern, want.bitPattern,
                                                   "\(name) rows \(rows) in \(inF) out \(outF) relu \(relu) [\(r), \(j)]")
                                }
                                for j in outF..<ldy { XCTAssertTrue(y[r * ldy + j].isNaN, "\(name): wrote past the row") }
                            }
                            withGuardedCopy(wt) { guarded in
                                var again = start
                                fk_linear_accumulate_f32(x, ldx, rows, inF, guarded, outF, &again, ldy, relu ? 1 : 0)
                                XCTAssertEqual(again.map(\.bitPattern), y.map(\.bitPattern), "\(name) guarded in \(inF) out \(outF)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testSparseInputKernelMatchesDenseKernel() {
        for (name, portable) in variants {
            fk_force_portable(portable)
            for rows in [1, 3, 7] {
                for (inF, outF) in [(8, 1), (13, 8), (16, 32), (64, 64), (67, 9), (40, 71), (128, 16), (300, 130)] {
                    let ldx = inF + 3, ldy = outF + 1
                    var x = values(rows * ldx, seed: 21)
                    for i in x.indices where i % 3 != 0 { x[i] = i % 2 == 0 ? 0 : -0.0 }   // ⅔ zeros, both signs
                    if rows > 1 { for k in 0..<inF { x[ldx + k] = 0 } }                       // an all-zero row
                    let wt = values(inF * outF, seed: 22), b = values(outF, seed: 23)
                    var gateValues = values(rows * ldy, seed: 24)
                    for i in stride(from: 0, to: gateValues.count, by: 4) { gateValues[i] = [0, -0.0, .nan][(i / 4) % 3] }
                    for (relu, bias, gated) in [(false, false, false), (true, true, false), (false, true, false),
                                                (false, true, true), (true, false, true)] {
                        let gate: [Float]? = gated ? gateValues : nil
                        var dense = [Float](repeating: .nan, count: rows * ldy), sparse = dense
                        fk_linear_f32(x, ldx, rows, inF, wt, bias ? b : nil, outF, &dense, ldy, gate, relu ? 1 : 0)
                        fk_linear_sparse_f32(x, ldx, rows, inF, wt, bias ? b : nil, outF, &sparse, ldy, gate, relu ? 1 : 0)
                        for r in 0..<rows {
                            for j in 0..<outF {
                                let a = dense[r * ldy + j], c = sparse[r * ldy + j]
                                XCTAssertTrue(a == c, "\(name) rows \(rows) in \(inF) out \(outF) relu \(relu) gate \(gated) [\(r), \(j)]: \(a) vs \(c)")
                            }
                            XCTAssertTrue(sparse[r * ldy + outF].isNaN, "\(name): wrote past the row")
                        }
                    }
                    var withNaN = x
                    withNaN[inF - 1] = .nan
                    var y = [Float](repeating: 0, count: rows * ldy)
                    fk_linear_sparse_f32(withNaN, ldx, rows, inF, wt, b, outF, &y, ldy, nil, 1)
                    XCTAssertTrue((0..<outF).allSatisfy { y[$0].isNaN }, "\(name) in \(inF): NaN input lost")
                }
            }
        }
    }

    /// The narrow-output kernel against a Double reference and against its documented
    /// summation order (eight lanes, k mod 8, added ((0+4)+(2+6))+((1+5)+(3+7)), then the bias),
    /// bit for bit in both variants, for every output count up to and past one group of four,
    /// input tails of every length mod 8, and ragged row tiles; each row alone gives the bits it
    /// gives inside the batch; NaN inputs reach the output through ReLU; nothing outside the
    /// rows' outputs is written.
    func testNarrowOutputKernelFollowsItsSummationOrder() {
        for (name, portable) in variants {
            fk_force_portable(portable)
            for rows in [1, 2, 3, 4, 5, 9] {
                for inF in [1, 7, 8, 9, 16, 23, 64] {
                    for outF in [1, 2, 3, 4, 5, 6, 9] {
                        let ldx = inF + 2, ldy = outF + 1
                        var x = values(rows * ldx, seed: 41)
                        if rows > 2 { x[2 * ldx + inF / 2] = .nan }
                        let w = values(outF * inF, seed: 42), b = values(outF, seed: 43)
                        for (relu, bias) in [(false, true), (true, true), (true, false)] {
                            var y = [Float](repeating: .nan, count: rows * ldy)
                            fk_linear_narrow_f32(x, ldx, rows, inF, w, bias ? b : nil, outF, &y, ldy, relu ? 1 : 0)
                            for r in 0..<rows {
                                for j in 0..<outF {
                                    var lane = [Float](repeating: 0, count: 8)
                                    var ref = bias ? Double(b[j]) : 0
                                    for k in 0..<inF {
                                        lane[k % 8] = lane[k % 8].addingProduct(x[r * ldx + k], w[j * inF + k])
                                        ref += Double(x[r * ldx + k]) * Double(w[j * inF + k])
                                    }
                                    var v = (bias ? b[j] : 0) + (((lane[0] + lane[4]) + (lane[2] + lane[6]))
                                                                 + ((lane[1] + lane[5]) + (lane[3] + lane[7])))
                                    if relu, v < 0 { v = 0 }
                                    if relu { ref = max(ref, 0) }
                                    let got = y[r * ldy + j], at = "\(name) rows \(rows) in \(inF) out \(outF) relu \(relu) [\(r), \(j)]"
                                    XCTAssertEqual(got.bitPattern, v.bitPattern, "\(at): \(got) vs documented order \(v)")
                                    if ref.isNaN {
                                        XCTAssertTrue(got.isNaN, "\(at): NaN lost")
                                    } else {
                                        XCTAssertEqual(Double(got), ref, accuracy: 1e-5 * (1 + Double(inF)), at)
                                    }
                                }
                                XCTAssertTrue(y[r * ldy + outF].isNaN, "\(name): wrote past the row")
                                var alone = [Float](repeating: .nan, count: ldy)
                                fk_linear_narrow_f32(Array(x[(r * ldx)...]), ldx, 1, inF, w, bias ? b : nil, outF, &alone,
                                                     ldy, relu ? 1 : 0)
                                XCTAssertEqual(alone[..<outF].map(\.bitPattern), y[(r * ldy)..<(r * ldy + outF)].map(\.bitPattern),
                                               "\(name) rows \(rows) in \(inF) out \(outF): row \(r) alone differs")
                            }
                        }
                    }
                }
            }
        }
    }

    /// The multi-row affine step equals row-by-row fk_affine_step_f32 calls bit for bit (outputs
    /// and log-determinants), for feature counts below, at and above eight, ragged row blocks,
    /// both directions, with and without clamp; it touches nothing outside the rows' features.
    func testAffineRowsMatchRowByRowSteps() {
        for (name, portable) in variants {
            fk_force_portable(portable)
            // n from 1 (packed rows) to 520 (one row in two segments of the AVX2 variant's
            // two-pass loop, the second with a partial vector); 70 rows cross its row blocks.
            for n in [1, 2, 3, 4, 5, 7, 8, 9, 13, 32, 67, 520] {
                for rows in [1, 5, 8, 21, 70] {
                    let ldx = n + 3, ldst = 2 * n + 1
                    let x0 = values(rows * ldx, seed: 31, scale: 2), st = values(rows * ldst, seed: 32, scale: 3)
                    for clamp: Float in [0, 5] {
                        for inverse: Int32 in [0, 1] {
                            var a = x0, b = x0
                            var ldA = [Double](repeating: 0.25, count: rows), ldB = ldA
                            fk_affine_rows_f32(&a, ldx, st, ldst, rows, n, clamp, inverse, &ldA)
                            for r in 0..<rows {
                                let sum = b.withUnsafeMutableBufferPointer {
                                    fk_affine_step_f32($0.baseAddress! + r * ldx, Array(st[(r * ldst)...]),
                                                       Array(st[(r * ldst + n)...]), n, clamp, inverse)
                                }
                                ldB[r] += inverse == 1 ? -sum : sum
                            }
                            let what = "\(name) n \(n) rows \(rows) clamp \(clamp) inverse \(inverse)"
                            XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), what)
                            XCTAssertEqual(ldA, ldB, what)
                            XCTAssertNotEqual(a, x0, what)
                        }
                    }
                }
            }
        }
    }

    /// Weight and bias gradients against a Double reference for every tile and tail shape, with
    /// row strides; they add to what dw/db held; both variants agree bitwise.
    func testWeightGradientMatchesDoubleReferenceAndVariantsAgree() {
        var results: [[Float]] = []
        for (name, portable) in variants {
            fk_force_portable(portable)
            var all: [Float] = []
            for rows in [0, 1, 3, 8, 13, 256] {
                for (outF, inF) in [(1, 1), (2, 7), (4, 8), (5, 9), (6, 16), (7, 17), (13, 24), (64, 32), (9, 0)] {
                    let lddy = outF + 3, ldx = inF + 1
                    let dy = values(max(rows * lddy, 1), seed: 11), x = values(max(rows * ldx, 1), seed: 12)
                    let dw0 = values(outF * inF, seed: 13), db0 = values(outF, seed: 14)
                    var dw = dw0, db = db0
                    fk_linear_wgrad_f32(dy, lddy, rows, outF, x, ldx, inF, &dw, &db)
                    for j in 0..<outF {
                        var refB = 0.0
                        for r in 0..<rows { refB += Double(dy[r * lddy + j]) }
                        XCTAssertEqual(Double(db[j]), Double(db0[j]) + refB, accuracy: 1e-5 * Double(1 + rows),
                                       "\(name) db rows \(rows) out \(outF) in \(inF) [\(j)]")
                        for k in 0..<inF {
                            var ref = Double(dw0[j * inF + k])
                            for r in 0..<rows { ref += Double(dy[r * lddy + j]) * Double(x[r * ldx + k]) }
                            XCTAssertEqual(Double(dw[j * inF + k]), ref, accuracy: 1e-5 * Double(1 + rows),
                                           "\(name) dw rows \(rows) out \(outF) in \(inF) [\(j), \(k)]")
                        }
                    }
                    // Without db, dw is the same and nothing else is touched.
                    var dw2 = dw0
                    fk_linear_wgrad_f32(dy, lddy, rows, outF, x, ldx, inF, &dw2, nil)
                    XCTAssertEqual(dw2.map(\.bitPattern), dw.map(\.bitPattern), "\(name): db changed dw")
                    all += dw + db
                }
            }
            results.append(all)
        }
        if results.count == 2 {
            XCTAssertEqual(results[0].map(\.bitPattern), results[1].map(\.bitPattern), "AVX2 and portable differ")
        }
    }

    func testNullBiasMeansZero() {
        for (_, portable) in variants {
            fk_force_portable(portable)
            let x: [Float] = [1, 2], wt: [Float] = [1, 10, 100, 1000]
            var y = [Float](repeating: 0, count: 2)
            fk_linear_f32(x, 2, 1, 2, wt, nil, 2, &y, 2, nil, 0)
            XCTAssertEqual(y, [201, 2010])
        }
    }

    /// exp and tanh within 2 ulp of the correctly rounded Double result.
    func testExpAndTanhAreWithinTwoULP() {
        for (name, portable) in variants {
            fk_force_portable(portable)
            var inputs: [Float] = stride(from: -87.0, through: 87.9, by: 0.0137).map { Float($0) }
            inputs += stride(from: -1.0, through: 1.0, by: 0.000731).map { Float($0) }
            inputs += [0, -0.0, 1e-30, -1e-30, 0.625, -0.625, 0.62499994]
            var e = inputs, t = inputs
            fk_exp_f32(&e, e.count)
            fk_tanh_f32(&t, t.count)
            var worstExp = 0.0, worstTanh = 0.0
            for (i, v) in inputs.enumerated() {
                let re = Double.exp(Double(v)), rt = Double.tanh(Double(v))
                worstExp = max(worstExp, abs(Double(e[i]) - re) / Double(Float(re).ulp))
                if rt != 0 { worstTanh = max(worstTanh, abs(Double(t[i]) - rt) / Double(Float(rt).ulp)) }
            }
            XCTAssertLessThanOrEqual(worstExp, 2, "\(name) exp")
            XCTAssertLessThanOrEqual(worstTanh, 2, "\(name) tanh")
            var big: [Float] = [-1000, 1000, .infinity]
            fk_tanh_f32(&big, 3)
            XCTAssertEqual(big, [-1, 1, 1], name)
            // A NaN among polynomial-range lanes takes the vector through both branches: it
            // stays NaN and the other lanes keep their values.
            let small: [Float] = [0.1, -0.2, 0.3, 0.5, -0.6, 0.01, 0.2, 0.4]
            var mixed = small
            mixed[3] = .nan
            var alone = small
            fk_tanh_f32(&mixed, 8)
            fk_tanh_f32(&alone, 8)
            XCTAssertTrue(mixed[3].isNaN, "\(name): tanh(NaN)")
            var nans: [Float] = [.nan, 1, .nan, -1, 100, .nan, 0, 2]
            fk_exp_f32(&nans, 8)
            XCTAssertTrue(nans[0].isNaN && nans[2].isNaN && nans[5].isNaN, "\(name): exp(NaN)")
            nans = [.nan, .nan, .nan, .nan, .nan, .nan, .nan, .nan]
            fk_tanh_f32(&nans, 8)
            XCTAssertTrue(nans.allSatisfy(\.isNaN), "\(name): tanh of an all-NaN vector")
            for i in 0..<8 where i != 3 { XCTAssertEqual(mixed[i].bitPattern, alone[i].bitPattern, "\(name) lane \(i)") }
        }
    }

    func testAffineStepRoundTripsAndSumsTheLogScale() {
        for (name, portable) in variants {
            fk_force_portable(portable)
            for n in [1, 7, 8, 9, 31] {
                for clamp: Float in [0, 5] {
                    let x0 = values(n, seed: 4), t = values(n, seed: 5), raw = values(n, seed: 6, scale: 3)
                    var x = x0
                    let sum = fk_affine_step_f32(&x, t, raw, n, clamp, 0)
                    var refSum = 0.0
                    for j in 0..<n {
                        let s = clamp > 0 ? Double(clamp) * Double.tanh(Double(raw[j]) / Double(clamp)) : Double(raw[j])
                        refSum += s
                        XCTAssertEqual(Double(x[j]), Double(x0[j]) * Double.exp(s) + Double(t[j]),
                                       accuracy: 1e-5 * max(1, abs(Double(x[j]))), "\(name) n \(n)")
                    }
                    XCTAssertEqual(sum, refSum, accuracy: 1e-5 * Double(n), name)
                    let back = fk_affine_step_f32(&x, t, raw, n, clamp, 1)
                    XCTAssertEqual(back, sum, name)
                    for j in 0..<n { XCTAssertEqual(x[j], x0[j], accuracy: 1e-5 * max(1, abs(x0[j])), "\(name) round trip") }
                }
            }
        }
    }

    func testAffineStepBackwardMatchesItsFormulaInBothForms() {
        for (name, portable) in variants {
            fk_force_portable(portable)
            for n in [1, 8, 13] {
                for clamp: Float in [0, 3] {
                    for inverse in [false, true] {
                        let x = values(n, seed: 11), shift = values(n, seed: 12), raw = values(n, seed: 13, scale: 2)
                        let g0 = values(n, seed: 14)
                        var g = g0, ds = [Float](repeating: 0, count: n), dr = ds
                        fk_affine_step_backward_f32(x, shift, raw, &g, &ds, &dr, n, clamp, 0.7, inverse ? 1 : 0)
                        for j in 0..<n {
                            let c = Double(clamp), u = Double(raw[j])
                            let th = c > 0 ? Double.tanh(u / c) : 0
                            let s = c > 0 ? c * th : u, slope = c > 0 ? 1 - th * th : 1
                            let e = Double.exp(inverse ? -s : s), gj = Double(g0[j])
                            let refShift = inverse ? -gj * e : gj
                            let refRaw = inverse ? -(gj * (Double(x[j]) - Double(shift[j])) * e + 0.7) * slope
                                                 : (gj * Double(x[j]) * e + 0.7) * slope
                            let tol = 1e-5 * max(1, abs(refRaw))
                            XCTAssertEqual(Double(ds[j]), refShift, accuracy: 1e-5 * max(1, abs(refShift)), "\(name) n \(n)")
                            XCTAssertEqual(Double(dr[j]), refRaw, accuracy: tol, "\(name) n \(n) inverse \(inverse)")
                            XCTAssertEqual(Double(g[j]), gj * e, accuracy: 1e-5 * max(1, abs(gj * e)), name)
                        }
                    }
                }
            }
        }
    }

    /// fk_affine_rows_backward_f32, in place on [shift, raw] rows, equals row-by-row
    /// fk_affine_step_backward_f32 calls into separate buffers bit for bit in each variant (the
    /// AVX2 one packs rows with fewer than eight features into shared vectors, each lane with its
    /// row's w; every value is read before its gradient overwrites it), for every feature
    /// count below, at and above one vector, ragged row counts, both forms, with and without a
    /// clamp; padding between rows is left alone.
    func testAffineRowsBackwardEqualsRowByRowCalls() {
        for (name, portable) in variants {
            fk_force_portable(portable)
            for n in [1, 2, 3, 4, 7, 8, 9] {
                for rows in [1, 2, 7, 17, 40] {
                    for (clamp, inverse) in [(Float(0), false), (2, false), (2, true)] {
                        let ldx = n + 1, ldst = 2 * n + 2, ldg = n + 3
                        let x = values(rows * ldx, seed: 41), st0 = values(rows * ldst, seed: 42, scale: 2)
                        let g0 = values(rows * ldg, seed: 43), w = values(rows, seed: 44)
                        var st = st0, g = g0
                        fk_affine_rows_backward_f32(x, ldx, &st, ldst, &g, ldg, rows, n, clamp, w, inverse ? 1 : 0)
                        // Reference: one call per row with separate output buffers (no aliasing).
                        var stRef = st0, gRef = g0
                        for r in 0..<rows {
                            let shift = Array(st0[(r * ldst)..<(r * ldst + n)]), raw = Array(st0[(r * ldst + n)..<(r * ldst + 2 * n)])
                            var gr = Array(g0[(r * ldg)..<(r * ldg + n)]), ds = [Float](repeating: .nan, count: n), dr = ds
                            fk_affine_step_backward_f32(Array(x[(r * ldx)...]), shift, raw, &gr, &ds, &dr, n, clamp, w[r],
                                                        inverse ? 1 : 0)
                            for j in 0..<n {
                                stRef[r * ldst + j] = ds[j]
                                stRef[r * ldst + n + j] = dr[j]
                                gRef[r * ldg + j] = gr[j]
                            }
                        }
                        let label = "\(name) n \(n) rows \(rows) clamp \(clamp) inverse \(inverse)"
                        XCTAssertEqual(st.map(\.bitPattern), stRef.map(\.bitPattern), label + ": [∂shift, ∂raw]")
                        XCTAssertEqual(g.map(\.bitPattern), gRef.map(\.bitPattern), label + ": ∂x")
                        for r in 0..<rows {
                            for j in (2 * n)..<ldst { XCTAssertEqual(st[r * ldst + j].bitPattern, st0[r * ldst + j].bitPattern, label) }
                            for j in n..<ldg { XCTAssertEqual(g[r * ldg + j].bitPattern, g0[r * ldg + j].bitPattern, label) }
                        }
                    }
                }
            }
        }
    }

    /// The documented sampling contract, recomputed in Double from Swift's Philox words.
    func testPhiloxNormalsFollowTheDocumentedBoxMuller() {
        // 37: one group of eight blocks and a partial one; 150: the AVX2 variant's two-group
        // steps (64 values each), a full group and a partial one.
        for count in [37, 150] {
            let seed: UInt64 = 0x1234_5678_9ABC_DEF0, row: UInt64 = 77
            let philox = Philox4x32(seed: seed)
            var reference = [Double]()
            for block in 0..<((count + 3) / 4) {
                let w = philox.block(UInt32(block), UInt32(truncatingIfNeeded: row), UInt32(truncatingIfNeeded: row >> 32), 0)
                for (wr, wa) in [(w.0, w.1), (w.2, w.3)] {
                    let u = (Double(wr >> 8) + 0.5) * 0x1p-24
                    let theta = 2 * Double.pi * (Double(wa >> 8) + 0.5) * 0x1p-24
                    let r = (-2 * Double.log(u)).squareRoot()
                    reference += [r * Double.cos(theta), r * Double.sin(theta)]
                }
            }
            for (name, portable) in variants {
                fk_force_portable(portable)
                var out = [Float](repeating: .nan, count: count + 3)
                fk_philox_normal_f32(seed, row, 0, &out, count)
                for i in 0..<count {
                    XCTAssertEqual(Double(out[i]), reference[i], accuracy: 2e-6 * max(1, abs(reference[i])),
                                   "\(name) count \(count) [\(i)]")
                }
                XCTAssertTrue(out[count...].allSatisfy(\.isNaN), "\(name) wrote past count")
            }
        }
    }

    func testPhiloxNormalsHaveStandardMoments() {
        var out = [Float](repeating: 0, count: 1 << 20)
        fk_philox_normal_f32(9, 0, 0, &out, out.count)
        var m1 = 0.0, m2 = 0.0, m4 = 0.0
        for v in out { let x = Double(v); m1 += x; m2 += x * x; m4 += x * x * x * x }
        let n = Double(out.count)
        XCTAssertEqual(m1 / n, 0, accuracy: 4 / n.squareRoot())
        XCTAssertEqual(m2 / n, 1, accuracy: 6 / n.squareRoot())
        XCTAssertEqual(m4 / n, 3, accuracy: 30 / n.squareRoot())
    }

    /// The many-row normal kernel writes, in each variant, the bits of one fk_philox_normal_f32
    /// call per row, row r at out + r·ldo and nothing between rows; rows cross a 2³² boundary
    /// (the counter's high word), and counts cover partial blocks and partial vectors of blocks.
    func testPhiloxNormalRowsEqualOneCallPerRow() {
        let seed: UInt64 = 0xFEED_0000_0000_BEEF, firstRow: UInt64 = (1 << 32) - 3
        for (name, portable) in variants {
            fk_force_portable(portable)
            for count in [1, 2, 3, 4, 5, 7, 8, 9, 16, 33] {
                for rows in [1, 3, 17] {
                    let ldo = count + 2
                    var many = [Float](repeating: .nan, count: rows * ldo)
                    fk_philox_normal_rows_f32(seed, firstRow, rows, 5, count, &many, ldo)
                    var mismatches = 0, touched = 0
                    for r in 0..<rows {
                        var one = [Float](repeating: .nan, count: count)
                        fk_philox_normal_f32(seed, firstRow + UInt64(r), 5, &one, count)
                        for j in 0..<count where many[r * ldo + j].bitPattern != one[j].bitPattern { mismatches += 1 }
                        for j in count..<ldo where !many[r * ldo + j].isNaN { touched += 1 }
                    }
                    XCTAssertEqual(mismatches, 0, "\(name) count \(count) rows \(rows)")
                    XCTAssertEqual(touched, 0, "\(name) count \(count) rows \(rows): wrote between rows")
                }
            }
            // Rows differ (the row is part of the counter).
            var two = [Float](repeating: 0, count: 8)
            fk_philox_normal_rows_f32(seed, firstRow, 2, 5, 4, &two, 4)
            XCTAssertNotEqual(Array(two[0..<4]), Array(two[4..<8]), name)
        }
    }

    /// fk_conv_f32 and fk_conv_wgrad_f32 against Double references, over output-channel
    /// blocks 4/2/1, position groups of 16 and 8, 1 and 9 taps, with bias, ReLU and both gate
    /// forms; the AVX2 and portable variants agree bitwise (documented).
    func testDirectConvolutionKernelsMatchReferenceAndAgreeAcrossVariants() {
        let rowStride = 6, t0 = 16
        let taps3: [Int] = (0..<9).map { ($0 / 3 - 1) * rowStride + ($0 % 3 - 1) }
        for (cin, out, kk) in [(1, 1, 9), (3, 5, 9), (2, 7, 1), (9, 4, 9), (4, 13, 1), (5, 2, 9), (1, 9, 1)] {
            let off = kk == 9 ? taps3 : [0]
            for n in [8, 16, 24, 40, 56] {
                let stride = t0 + n + 16
                let x = values(cin * stride, seed: UInt64(cin * 100 + n)), w = values(cin * kk * out, seed: 5)
                let bias = values(out, seed: 6), gate = values(out * stride, seed: 7)
                let dy = values(out * stride, seed: 8), dw0 = values(out * cin * kk, seed: 9)
                for (relu, gated, shared) in [(false, false, false), (true, false, false), (false, true, true),
                                              (true, true, false)] {
                    var results: [[Float]] = [], grads: [[Float]] = []
                    for (_, portable) in variants {
                        fk_force_portable(portable)
                        var y = [Float](repeating: .nan, count: out * stride)
                        gate.withUnsafeBufferPointer { g in
                            fk_conv_f32(x, stride, cin, off, kk, w, bias, out, &y, stride, t0, n,
                                        gated ? g.baseAddress! : nil, shared ? 0 : stride, relu ? 1 : 0)
                        }
                        results.append(y)
                        var dw = dw0, scratch = [Float](repeating: .nan, count: out * cin * kk * 8)
                        fk_conv_wgrad_f32(dy, stride, out, x, stride, cin, off, kk, t0, n, &dw, &scratch)
                        grads.append(dw)
                    }
                    let label = "cin \(cin) out \(out) taps \(kk) n \(n) relu \(relu) gate \(gated)"
                    if results.count == 2 {
                        XCTAssertEqual(results[0].map(\.bitPattern), results[1].map(\.bitPattern), "\(label): forward variants")
                        XCTAssertEqual(grads[0].map(\.bitPattern), grads[1].map(\.bitPattern), "\(label): wgrad variants")
                    }
                    let y = results[0], dw = grads[0]
                    for o in 0..<out {
                        for t in 0..<stride {
                            guard t >= t0 && t < t0 + n else {
                                XCTAssertTrue(y[o * stride + t].isNaN, "\(label): wrote outside the sweep")
                                continue
                            }
                            var ref = Double(bias[o])
                            for c in 0..<cin {
                                for j in 0..<kk { ref += Double(w[(c * kk + j) * out + o]) * Double(x[c * stride + t + off[j]]) }
                            }
                            if relu { ref = max(ref, 0) }
                            if gated && !(gate[(shared ? 0 : o * stride) + t] > 0) { ref = 0 }
                            XCTAssertEqual(Double(y[o * stride + t]), ref, accuracy: 1e-5 * Double(cin * kk + 1),
                                           "\(label): y[\(o), \(t)]")
                        }
                        for c in 0..<cin {
                            for j in 0..<kk {
                                var ref = Double(dw0[(o * cin + c) * kk + j])
                                for t in t0..<(t0 + n) { ref += Double(dy[o * stride + t]) * Double(x[c * stride + t + off[j]]) }
                                XCTAssertEqual(Double(dw[(o * cin + c) * kk + j]), ref, accuracy: 1e-5 * Double(n),
                                               "\(label): dw[\(o), \(c), \(j)]")
                            }
                        }
                    }
                }
            }
        }
    }

    /// fk_unfold_f32 and fk_fold_f32 against their index formulas (FlowKernels.h), over blocks of
    /// two samples with padded strides, planes whose size is and is not a multiple of 8, narrower
    /// and wider than a vector, and kernels 1, 3, 5 and 17 (above the AVX2 variants' limit); the
    /// variants agree bitwise, write nothing past the samples' columns of a row or between the
    /// samples' planes, and fold leaves its source as it was.
    func testIm2colAndCol2imFollowTheirFormulasAndAgreeAcrossVariants() {
        for (h, w) in [(1, 1), (2, 3), (4, 4), (3, 7), (8, 8), (5, 12), (7, 7), (16, 16)] {
            for k in [1, 3, 5, 17] {
                let channels = 3, samples = 2, kk = k * k, hw = h * w, pad = k / 2
                let ld = samples * hw + 5, ldx = channels * hw + 3, lddst = channels * hw + 2
                let x = values(samples * ldx, seed: UInt64(100 * h + w)), src = values(channels * kk * ld, seed: 11)
                var unfolded: [[Float]] = [], folded: [[Float]] = []
                for (_, portable) in variants {
                    fk_force_portable(portable)
                    var dst = [Float](repeating: .nan, count: channels * kk * ld)
                    fk_unfold_f32(x, ldx, samples, channels, h, w, k, &dst, ld)
                    unfolded.append(dst)
                    var source = src, planes = [Float](repeating: .nan, count: samples * lddst)
                    fk_fold_f32(&source, ld, samples, channels, h, w, k, &planes, lddst)
                    XCTAssertEqual(source.map(\.bitPattern), src.map(\.bitPattern), "fold modified its source")
                    folded.append(planes)
                }
                let label = "\(h)×\(w) k \(k)"
                if unfolded.count == 2 {
                    XCTAssertEqual(unfolded[0].map(\.bitPattern), unfolded[1].map(\.bitPattern), "\(label): unfold variants")
                    XCTAssertEqual(folded[0].map(\.bitPattern), folded[1].map(\.bitPattern), "\(label): fold variants")
                }
                let u = unfolded[0], f = folded[0]
                func inside(_ i: Int, _ j: Int) -> Bool { i >= 0 && i < h && j >= 0 && j < w }
                for c in 0..<channels {
                    for tap in 0..<kk {
                        let di = tap / k - pad, dj = tap % k - pad, row = (c * kk + tap) * ld
                        for column in 0..<ld {
                            guard column < samples * hw else {
                                XCTAssertTrue(u[row + column].isNaN, "\(label): unfold wrote past row \(c * kk + tap)")
                                continue
                            }
                            let (n, t) = (column / hw, column % hw), (i, j) = (t / w + di, t % w + dj)
                            XCTAssertEqual(u[row + column], inside(i, j) ? x[n * ldx + c * hw + i * w + j] : 0,
                                           "\(label): unfold")
                        }
                    }
                }
                let centre = pad * k + pad
                for n in 0..<samples {
                    XCTAssertTrue(f[n * lddst + channels * hw].isNaN, "\(label): fold wrote between samples")
                    for c in 0..<channels {
                        let rows = c * kk * ld + n * hw
                        for t in 0..<hw {
                            // The documented order: the centre tap, then the others in increasing index.
                            var acc = src[rows + centre * ld + t]
                            for tap in 0..<kk where tap != centre {
                                let (i, j) = (t / w - (tap / k - pad), t % w - (tap % k - pad))
                                acc += inside(i, j) ? src[rows + tap * ld + i * w + j] : 0
                            }
                            XCTAssertEqual(f[n * lddst + c * hw + t].bitPattern, acc.bitPattern,
                                           "\(label): fold [\(n), \(c), \(t)]")
                        }
                    }
                }
            }
        }
    }

    /// fk_winograd3x3_f32 against a Double direct convolution (FlowKernels.h's formula), over
    /// planes from 1×1 to 9×7 taking both tile sizes (F(2×2) on 1×1, 1×3, 2×2, 6×2, 2×5; F(4×4)
    /// on the others; odd sizes leave partial tiles), input channels below, at and past a
    /// vector of 8, output widths that take every product block (4 … 24 and their sums), sample
    /// counts that cross the kernel's chunks, channel-contiguous, planar (NCHW) and block inputs
    /// with padded strides, and no bias. The variants (AVX2 with 4-lane and 8-lane product blocks,
    /// portable) agree bitwise; a sample's output is the same bits when it is computed alone;
    /// nothing between the samples' outputs is written.
    func testWinogradMatchesTheDirectConvolution() {
        let cases: [(h: Int, w: Int, cin: Int, out: Int, samples: Int)] = [
            (1, 1, 1, 1, 1), (1, 3, 3, 5, 2), (2, 2, 8, 4, 3), (3, 5, 9, 12, 3), (4, 4, 12, 24, 11),
            (8, 8, 17, 13, 3), (7, 9, 5, 20, 2), (5, 3, 64, 44, 2), (8, 8, 64, 12, 5), (6, 2, 16, 30, 4),
            (4, 4, 64, 8, 9), (2, 5, 7, 16, 6),
        ]
        for (h, w, cin, out, samples) in cases {
            let hw = h * w
            let weight = values(out * cin * 9, seed: UInt64(7 * cin + out)), bias = values(out, seed: 3)
            var u = [Float](repeating: .nan, count: fk_winograd3x3_packed_count(out, cin, h, w))
            fk_winograd3x3_pack_f32(weight, out, cin, h, w, &u)
            // (lds, ldp, ldc): pixel-major with padding; planar (NCHW) with padding; planar with the
            // samples side by side in each channel's row (ConvNet's block layout).
            let ldpPixel = cin + 3, ldcPlanar = hw + 2, ldcBlock = samples * hw + 3
            for (lds, ldp, ldc) in [(hw * ldpPixel + 5, ldpPixel, 1), (cin * ldcPlanar + 7, 1, ldcPlanar),
                                    (hw, 1, ldcBlock)] {
                let x = values(max(samples * lds, cin * ldc), seed: UInt64(100 * h + w + ldc))
                func input(_ n: Int, _ c: Int, _ r: Int, _ q: Int) -> Double {
                    r < 0 || r >= h || q < 0 || q >= w ? 0 : Double(x[n * lds + (r * w + q) * ldp + c * ldc])
                }
                let ldy = out * hw + 3
                for withBias in [true, false] {
                    var results: [[Float]] = []
                    // AVX2 with each register-block shape of the products, then portable.
                    let runs: [(Int32, Int32)] = fk_simd_level() == 1 ? [(0, 1), (0, 0), (1, -1)] : [(1, -1)]
                    for (portable, blocks) in runs {
                        fk_force_portable(portable)
                        fk_winograd3x3_force_blocks(blocks)
                        defer { fk_winograd3x3_force_blocks(-1) }
                        var y = [Float](repeating: .nan, count: samples * ldy)
                        var scratch = [Float](repeating: .nan, count: fk_winograd3x3_scratch_count(cin, out, h, w))
                        bias.withUnsafeBufferPointer { b in
                            fk_winograd3x3_f32(x, lds, ldp, ldc, samples, cin, h, w, u, withBias ? b.baseAddress! : nil,
                                               out, &y, ldy, &scratch)
                        }
                        results.append(y)
                    }
                    fk_force_portable(0)
                    let label = "\(h)×\(w) cin \(cin) out \(out) samples \(samples) ldc \(ldc) bias \(withBias)"
                    for other in results.dropFirst() {
                        XCTAssertEqual(results[0].map(\.bitPattern), other.map(\.bitPattern), "\(label): variants")
                    }
                    let y = results[0]
                    var worst = 0.0
                    for n in 0..<samples {
                        for o in 0..<out {
                            for i in 0..<h {
                                for j in 0..<w {
                                    var ref = withBias ? Double(bias[o]) : 0, magnitude = abs(ref)
                                    for c in 0..<cin {
                                        for p in 0..<3 {
                                            for q in 0..<3 {
                                                let term = Double(weight[((o * cin + c) * 3 + p) * 3 + q]) * input(n, c, i + p - 1, j + q - 1)
                                                ref += term
                                                magnitude += abs(term)
                                            }
                                        }
                                    }
                                    worst = max(worst, abs(Double(y[n * ldy + o * hw + i * w + j]) - ref) / (magnitude + 1))
                                }
                            }
                        }
                        XCTAssertTrue(y[(n * ldy + out * hw)..<((n + 1) * ldy)].allSatisfy(\.isNaN), "\(label): wrote between samples")
                    }
                    // F(2×2) adds and subtracts: ~1e-7 of Σ|w·x|; F(4×4) scales by up to 8 (measured ≤ 5e-6).
                    let fourByFour = 36 * ((h + 3) / 4) * ((w + 3) / 4) < 16 * ((h + 1) / 2) * ((w + 1) / 2)
                    XCTAssertLessThan(worst, fourByFour ? 1e-5 : 5e-7, label)
                    // The last sample alone: the same bits.
                    var alone = [Float](repeating: .nan, count: ldy)
                    var scratch = [Float](repeating: .nan, count: fk_winograd3x3_scratch_count(cin, out, h, w))
                    x.withUnsafeBufferPointer { xp in
                        bias.withUnsafeBufferPointer { b in
                            fk_winograd3x3_f32(xp.baseAddress! + (samples - 1) * lds, lds, ldp, ldc, 1, cin, h, w, u,
                                               withBias ? b.baseAddress! : nil, out, &alone, ldy, &scratch)
                        }
                    }
                    XCTAssertEqual(alone[0..<(out * hw)].map(\.bitPattern),
                                   y[((samples - 1) * ldy)..<((samples - 1) * ldy + out * hw)].map(\.bitPattern),
                                   "\(label): sample alone")
                }
            }
        }
    }

    func testFlowResultsDoNotDependOnTheKernelVariantBeyondRounding() throws {
        guard fk_simd_level() == 1 else { throw XCTSkip("no AVX2 on this machine") }
        let flow = try NormalizingFlow<Float>.realNVP(dim: 8, layers: 4, hidden: [32, 32], seed: 1)
        for p in flow.parameters { for i in 0..<p.count { p.values[i] = Float(sin(Double(i) * 0.37 + Double(p.count))) * 0.2 } }
        flow.transform.parametersDidChange()
        let x = values(300 * 8, seed: 9)
        var fast = [Double](repeating: 0, count: 300), slow = fast
        x.withUnsafeBufferPointer { flow.logProb($0.baseAddress!, count: 300, into: &fast) }
        fk_force_portable(1)
        x.withUnsafeBufferPointer { flow.logProb($0.baseAddress!, count: 300, into: &slow) }
        for i in 0..<300 { XCTAssertEqual(fast[i], slow[i], accuracy: 1e-4 * max(1, abs(slow[i]))) }
    }
}
