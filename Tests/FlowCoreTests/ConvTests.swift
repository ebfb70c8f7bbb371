@testable import FlowCore
@testable import FlowModelFile
import FlowTestSupport
import XCTest

/// The convolution primitive and Glow's convolutional conditioner against a naive reference and
/// central finite differences, in Double.
///
/// Tolerances: forward against the 7-loop reference 1e-12 relative to max(1, |ref|). The
/// convolution is linear in its weight, bias and input, so central differences of
/// `L = Σ y·r` (step 1e-3) are exact up to rounding: tolerance 1e-8·max(1, |fd|). Through the
/// network (ReLUs and products of weights) the step is 1e-5 and the tolerance
/// 1e-6·max(1, |fd|). Float against Double: 1e-4 relative for outputs, 1e-3 for gradients.
final class ConvTests: XCTestCase {
    // MARK: - Helpers

    /// max |a − b| over the scale of b (max |b|, at least 1): the measure for float32 outputs
    /// whose rounding error follows the size of the sums rather than of each result (Winograd
    /// convolutions, ``ConvNet/usesWinograd``).
    private func scaledError(_ a: [Float], _ b: [Double]) -> Double {
        let scale = max(1, b.map { abs($0) }.max() ?? 0)
        return zip(a, b).map { abs(Double($0) - $1) }.max().map { $0 / scale } ?? 0
    }

    private func normals(_ n: Int, seed: UInt64, scale: Double = 1) -> [Double] {
        var s = PhiloxStream(seed: seed, row: 3, stream: 11)
        return (0..<n).map { _ in scale * s.nextNormal() }
    }

    /// `y[n, o, i, j] = b[o] + Σ_c Σ_p Σ_q w[o, c, p, q] · x[n, c, i + p − k/2, j + q − k/2]`,
    /// seven nested loops, zero outside the plane; `x` has sample stride `ldx`.
    private func referenceConvolution(_ x: [Double], ldx: Int, rows: Int, _ conv: Convolution,
                                      weight: [Double], bias: [Double]?, relu: Bool = false) -> [Double] {
        let (c, o, k, h, w) = (conv.inChannels, conv.outChannels, conv.kernel, conv.height, conv.width)
        let pad = k / 2
        var y = [Double](repeating: 0, count: rows * o * h * w)
        for n in 0..<rows {
            for oc in 0..<o {
                for i in 0..<h {
                    for j in 0..<w {
                        var acc = bias?[oc] ?? 0
                        for ic in 0..<c {
                            for p in 0..<k {
                                for q in 0..<k {
                                    let si = i + p - pad, sj = j + q - pad
                                    guard si >= 0, si < h, sj >= 0, sj < w else { continue }
                                    acc += weight[((oc * c + ic) * k + p) * k + q] * x[n * ldx + (ic * h + si) * w + sj]
                                }
                            }
                        }
                        y[((n * o + oc) * h + i) * w + j] = relu ? max(acc, 0) : acc
                    }
                }
            }
        }
        return y
    }

    /// An arena over exactly `bytes` bytes (64-byte aligned), so under-reservation trips the
    /// arena's assertion in debug builds.
    private func withExactArena<R>(_ bytes: Int, _ body: (inout Arena) -> R) -> R {
        let storage = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
        defer { storage.deallocate() }
        var arena = Arena(base: storage, capacity: bytes)
        return body(&arena)
    }

    private func forward<T: FlowScalar>(_ conv: Convolution, _ x: [T], ldx: Int, rows: Int, weight: [T],
                                        bias: [T]?, relu: Bool = false) -> [T] {
        var y = [T](repeating: .nan, count: rows * conv.outputCount)
        withExactArena(conv.workspaceBytes(T.self, rows: rows)) { arena in
            x.withUnsafeBufferPointer { xp in
                weight.withUnsafeBufferPointer { wp in
                    y.withUnsafeMutableBufferPointer { yp in
                        if let bias {
                            bias.withUnsafeBufferPointer { bp in
                                conv.forward(xp.baseAddress!, ldx: ldx, rows: rows, weight: wp.baseAddress!,
                                             bias: bp.baseAddress!, into: yp.baseAddress!, relu: relu, arena: &arena)
                            }
                        } else {
                            conv.forward(xp.baseAddress!, ldx: ldx, rows: rows, weight: wp.baseAddress!, bias: nil,
                                         into: yp.baseAddress!, relu: relu, arena: &arena)
                        }
                    }
                }
            }
        }
        return y
    }

    /// Convolutions covering both methods (O < C folds the output, else the input is unfolded),
    /// kernels 1, 3 and 5, planes with H ≠ W, a single row or column, and a plane smaller than
    /// the kernel.
    private let geometries: [(c: Int, o: Int, k: Int, h: Int, w: Int)] = [
        (1, 1, 3, 4, 5), (2, 5, 3, 3, 7), (5, 2, 3, 6, 4), (3, 3, 3, 1, 6), (4, 3, 3, 7, 1),
        (6, 2, 3, 2, 2), (3, 4, 1, 5, 3), (7, 2, 1, 4, 6), (2, 3, 5, 6, 5), (5, 2, 5, 3, 4), (3, 2, 5, 1, 2),
    ]

    // MARK: - Convolution

    func testMethodSelection() {
        XCTAssertEqual(Convolution(inChannels: 12, outChannels: 64, kernel: 3, height: 8, width: 8).method, .unfoldInput)
        XCTAssertEqual(Convolution(inChannels: 64, outChannels: 64, kernel: 3, height: 8, width: 8).method, .unfoldInput)
        XCTAssertEqual(Convolution(inChannels: 64, outChannels: 24, kernel: 3, height: 8, width: 8).method, .foldOutput)
        XCTAssertEqual(Convolution(inChannels: 64, outChannels: 24, kernel: 1, height: 8, width: 8).method, .unfoldInput)
    }

    func testForwardMatchesNaiveReference() {
        for g in geometries {
            let conv = Convolution(inChannels: g.c, outChannels: g.o, kernel: g.k, height: g.h, width: g.w)
            for rows in [1, 3] {
                for ldx in [conv.inputCount, conv.inputCount + 5] {
                    let x = normals(rows * ldx, seed: 1), weight = normals(conv.weightCount, seed: 2)
                    let bias = normals(g.o, seed: 3)
                    for (b, relu) in [(Optional(bias), false), (nil, false), (Optional(bias), true)] {
                        let y = forward(conv, x, ldx: ldx, rows: rows, weight: weight, bias: b, relu: relu)
                        let ref = referenceConvolution(x, ldx: ldx, rows: rows, conv, weight: weight, bias: b, relu: relu)
                        XCTAssertLessThan(BijectionChecker.maxRelativeError(y, ref), 1e-12,
                                          "\(g) rows \(rows) ldx \(ldx) bias \(b != nil) relu \(relu)")
                    }
                }
            }
        }
    }

    /// Batches split into several GEMM blocks with a partial last one (5×7 planes: blocks of 8
    /// samples, 11 rows), and wide planes run one sample at a time (no gather/scatter), for
    /// both methods and both kernel sizes.
    private let blockedGeometries: [(c: Int, o: Int, k: Int, h: Int, w: Int, rows: Int)] = [
        (2, 3, 3, 5, 7, 11), (5, 2, 3, 5, 7, 11), (3, 4, 1, 5, 7, 11),
        (2, 3, 3, 16, 17, 2), (5, 2, 3, 16, 17, 2), (3, 4, 1, 16, 17, 2),
    ]

    func testForwardBlockingMatchesReference() {
        for g in blockedGeometries {
            let conv = Convolution(inChannels: g.c, outChannels: g.o, kernel: g.k, height: g.h, width: g.w)
            let block = conv.forwardBlockRows(g.rows)
            XCTAssertTrue(block == 1 || (block < g.rows && g.rows % block != 0), "\(g): blocking not exercised")
            let ldx = conv.inputCount + 3
            let x = normals(g.rows * ldx, seed: 4), weight = normals(conv.weightCount, seed: 5), bias = normals(g.o, seed: 6)
            let y = forward(conv, x, ldx: ldx, rows: g.rows, weight: weight, bias: bias, relu: true)
            let ref = referenceConvolution(x, ldx: ldx, rows: g.rows, conv, weight: weight, bias: bias, relu: true)
            XCTAssertLessThan(BijectionChecker.maxRelativeError(y, ref), 1e-12, "\(g)")
        }
    }

    /// `L = Σ y·r`: weight, bias and input gradients against central differences; gradients
    /// accumulate onto what the buffers held; the input gradient is optional.
    func testBackwardMatchesFiniteDifferences() {
        let h = 1e-3
        for g in geometries {
            let conv = Convolution(inChannels: g.c, outChannels: g.o, kernel: g.k, height: g.h, width: g.w)
            for rows in [1, 3] {
                let ldx = conv.inputCount + (rows == 3 ? 2 : 0)
                var x = normals(rows * ldx, seed: 7), weight = normals(conv.weightCount, seed: 8)
                var bias = normals(g.o, seed: 9)
                let r = normals(rows * conv.outputCount, seed: 10)
                func loss() -> Double {
                    zip(forward(conv, x, ldx: ldx, rows: rows, weight: weight, bias: bias), r).reduce(0) { $0 + $1.0 * $1.1 }
                }
                // Analytic, accumulated onto 0.5 (beta = 1).
                var dw = [Double](repeating: 0.5, count: conv.weightCount), db = [Double](repeating: 0.5, count: g.o)
                var dx = [Double](repeating: .nan, count: rows * conv.inputCount)
                var dwOnly = [Double](repeating: 0, count: conv.weightCount)
                withExactArena(conv.backwardWorkspaceBytes(Double.self, rows: rows)) { arena in
                    let saved = arena
                    conv.backward(x, ldx: ldx, rows: rows, weight: weight, outputGradient: r, weightGradient: &dw,
                                  biasGradient: &db, inputGradient: &dx, arena: &arena)
                    arena = saved
                    conv.backward(x, ldx: ldx, rows: rows, weight: weight, outputGradient: r, weightGradient: &dwOnly,
                                  biasGradient: nil, inputGradient: nil, arena: &arena)
                }
                let label = "\(g) rows \(rows)"
                for i in 0..<conv.weightCount {
                    let v = weight[i]
                    weight[i] = v + h; let up = loss()
                    weight[i] = v - h; let down = loss()
                    weight[i] = v
                    let fd = (up - down) / (2 * h)
                    XCTAssertEqual(dw[i] - 0.5, fd, accuracy: 1e-8 * max(1, abs(fd)), "\(label): ∂W[\(i)]")
                    XCTAssertEqual(dwOnly[i], dw[i] - 0.5, accuracy: 1e-12 * max(1, abs(fd)), "\(label): ∂W without ∂x")
                }
                for o in 0..<g.o {
                    let v = bias[o]
                    bias[o] = v + h; let up = loss()
                    bias[o] = v - h; let down = loss()
                    bias[o] = v
                    let fd = (up - down) / (2 * h)
                    XCTAssertEqual(db[o] - 0.5, fd, accuracy: 1e-8 * max(1, abs(fd)), "\(label): ∂b[\(o)]")
                }
                for n in 0..<rows {
                    for e in 0..<conv.inputCount {
                        let i = n * ldx + e, v = x[i]
                        x[i] = v + h; let up = loss()
                        x[i] = v - h; let down = loss()
                        x[i] = v
                        let fd = (up - down) / (2 * h)
                        XCTAssertEqual(dx[n * conv.inputCount + e], fd, accuracy: 1e-8 * max(1, abs(fd)),
                                       "\(label): ∂x[\(n), \(e)]")
                    }
                }
            }
        }
    }

    /// Multi-block backward passes (partial last block) against a one-sample-at-a-time
    /// reference: the sum over samples of single-sample backward passes.
    func testBackwardBlockingMatchesPerSample() {
        for g in blockedGeometries {
            let (c, o, rows) = (g.c, g.o, g.rows)
            let conv = Convolution(inChannels: c, outChannels: o, kernel: g.k, height: g.h, width: g.w)
            let ldx = conv.inputCount + 1
            let x = normals(rows * ldx, seed: 11), weight = normals(conv.weightCount, seed: 12)
            let dy = normals(rows * conv.outputCount, seed: 13)
            var dw = [Double](repeating: 0, count: conv.weightCount), db = [Double](repeating: 0, count: o)
            var dx = [Double](repeating: 0, count: rows * conv.inputCount)
            withExactArena(conv.backwardWorkspaceBytes(Double.self, rows: rows)) { arena in
                conv.backward(x, ldx: ldx, rows: rows, weight: weight, outputGradient: dy, weightGradient: &dw,
                              biasGradient: &db, inputGradient: &dx, arena: &arena)
            }
            var dwRef = [Double](repeating: 0, count: conv.weightCount), dbRef = [Double](repeating: 0, count: o)
            var dxRef = [Double](repeating: 0, count: rows * conv.inputCount)
            for n in 0..<rows {
                let xs = Array(x[(n * ldx)..<(n * ldx + conv.inputCount)])
                let dys = Array(dy[(n * conv.outputCount)..<((n + 1) * conv.outputCount)])
                var dxs = [Double](repeating: 0, count: conv.inputCount)
                withExactArena(conv.backwardWorkspaceBytes(Double.self, rows: 1)) { arena in
                    conv.backward(xs, ldx: conv.inputCount, rows: 1, weight: weight, outputGradient: dys,
                                  weightGradient: &dwRef, biasGradient: &dbRef, inputGradient: &dxs, arena: &arena)
                }
                dxRef.replaceSubrange((n * conv.inputCount)..<((n + 1) * conv.inputCount), with: dxs)
            }
            let label = "\(g)"
            XCTAssertLessThan(BijectionChecker.maxRelativeError(dw, dwRef), 1e-12, "\(label) ∂W")
            XCTAssertLessThan(BijectionChecker.maxRelativeError(db, dbRef), 1e-12, "\(label) ∂b")
            XCTAssertLessThan(BijectionChecker.maxRelativeError(dx, dxRef), 1e-12, "\(label) ∂x")
        }
    }

    /// A caller-kept packed weight (``Convolution/packWeight(_:into:)``) gives bit-identical
    /// results to packing into the arena on every call.
    func testPrepackedWeightMatchesArenaPacking() {
        let conv = Convolution(inChannels: 6, outChannels: 2, kernel: 3, height: 5, width: 4)
        XCTAssertEqual(conv.packedWeightCount, conv.weightCount)
        XCTAssertEqual(Convolution(inChannels: 2, outChannels: 6, kernel: 3, height: 5, width: 4).packedWeightCount, 0)
        let rows = 3
        let x = normals(rows * conv.inputCount, seed: 26), weight = normals(conv.weightCount, seed: 27)
        let bias = normals(2, seed: 28), dy = normals(rows * conv.outputCount, seed: 29)
        var packed = [Double](repeating: .nan, count: conv.packedWeightCount)
        conv.packWeight(weight, into: &packed)
        for t in 0..<9 {  // P[o·9 + t, c] = W[o, c, 8 − t]
            XCTAssertEqual(packed[(1 * 9 + t) * 6 + 4], weight[(1 * 6 + 4) * 9 + 8 - t])
        }
        var yArena = [Double](repeating: .nan, count: rows * conv.outputCount), yPacked = yArena
        var gArena = ([Double](repeating: 0, count: conv.weightCount), [Double](repeating: 0, count: 2),
                      [Double](repeating: .nan, count: rows * conv.inputCount))
        var gPacked = gArena
        let bytes = max(conv.workspaceBytes(Double.self, rows: rows), conv.backwardWorkspaceBytes(Double.self, rows: rows))
        withExactArena(bytes) { arena in
            let start = arena
            conv.forward(x, ldx: conv.inputCount, rows: rows, weight: weight, bias: bias, into: &yArena, arena: &arena)
            arena = start
            conv.forward(x, ldx: conv.inputCount, rows: rows, weight: weight, packedWeight: packed, bias: bias,
                         into: &yPacked, arena: &arena)
            arena = start
            conv.backward(x, ldx: conv.inputCount, rows: rows, weight: weight, outputGradient: dy,
                          weightGradient: &gArena.0, biasGradient: &gArena.1, inputGradient: &gArena.2, arena: &arena)
            arena = start
            conv.backward(x, ldx: conv.inputCount, rows: rows, weight: weight, packedWeight: packed, outputGradient: dy,
                          weightGradient: &gPacked.0, biasGradient: &gPacked.1, inputGradient: &gPacked.2, arena: &arena)
        }
        XCTAssertEqual(yPacked, yArena)
        XCTAssertEqual(gPacked.0, gArena.0)
        XCTAssertEqual(gPacked.1, gArena.1)
        XCTAssertEqual(gPacked.2, gArena.2)
    }

    func testFloatConvolutionAgreesWithDouble() {
        for (c, o, k) in [(12, 64, 3), (64, 24, 3), (16, 16, 1)] {
            let conv = Convolution(inChannels: c, outChannels: o, kernel: k, height: 8, width: 6)
            let rows = 3
            let x = normals(rows * conv.inputCount, seed: 14), weight = normals(conv.weightCount, seed: 15, scale: 0.1)
            let bias = normals(o, seed: 16), dy = normals(rows * conv.outputCount, seed: 17)
            let yD = forward(conv, x, ldx: conv.inputCount, rows: rows, weight: weight, bias: bias)
            let yF = forward(conv, x.map { Float($0) }, ldx: conv.inputCount, rows: rows, weight: weight.map { Float($0) },
                             bias: bias.map { Float($0) })
            XCTAssertLessThan(BijectionChecker.maxRelativeError(yF.map { Double($0) }, yD), 1e-4, "\(c)→\(o) forward")
            func grads<T: FlowScalar>(_: T.Type) -> ([T], [T], [T]) {
                var dw = [T](repeating: 0, count: conv.weightCount), db = [T](repeating: 0, count: o)
                var dx = [T](repeating: 0, count: rows * conv.inputCount)
                withExactArena(conv.backwardWorkspaceBytes(T.self, rows: rows)) { arena in
                    conv.backward(x.map { T($0) }, ldx: conv.inputCount, rows: rows, weight: weight.map { T($0) },
                                  outputGradient: dy.map { T($0) }, weightGradient: &dw, biasGradient: &db,
                                  inputGradient: &dx, arena: &arena)
                }
                return (dw, db, dx)
            }
            let (dwD, dbD, dxD) = grads(Double.self), (dwF, dbF, dxF) = grads(Float.self)
            XCTAssertLessThan(BijectionChecker.maxRelativeError(dwF.map { Double($0) }, dwD), 1e-3, "\(c)→\(o) ∂W")
            XCTAssertLessThan(BijectionChecker.maxRelativeError(dbF.map { Double($0) }, dbD), 1e-3, "\(c)→\(o) ∂b")
            XCTAssertLessThan(BijectionChecker.maxRelativeError(dxF.map { Double($0) }, dxD), 1e-3, "\(c)→\(o) ∂x")
        }
    }

    /// im2col and col2im over blocks of samples: Float runs the C kernels (`fk_unfold_f32`,
    /// `fk_fold_f32`), Double the Swift loops. The unfolding is copies and zeros, so both agree
    /// exactly; the folding sums the same taps in the same order (Float within 1e-5 of Double, k²
    /// float additions); the two are adjoint (⟨unfold x, u⟩ = ⟨x, fold u⟩ in Double). Planes from 1×1 to 8×8, thin ones
    /// included, kernels 1, 3 and 5 (shifts larger than the plane), two samples with padded
    /// strides; entries past the samples' columns and between the samples' planes are left alone.
    func testUnfoldAndFoldAgreeAcrossScalarTypesAndAreAdjoint() {
        for (h, w) in [(1, 1), (1, 5), (5, 1), (2, 2), (4, 4), (3, 7), (8, 8)] {
            for k in [1, 3, 5] {
                let channels = 3, samples = 2, conv = Convolution(inChannels: channels, outChannels: 2, kernel: k,
                                                                  height: h, width: w)
                let hw = h * w, ld = samples * hw + 3, rowsCount = channels * k * k
                let ldx = channels * hw + 2, lddst = channels * hw + 1
                let x = normals(samples * ldx, seed: 61), u = normals(rowsCount * ld, seed: 62)
                func unfolded<T: FlowScalar>(_: T.Type) -> [T] {
                    var dst = [T](repeating: 7, count: rowsCount * ld)
                    x.map { T($0) }.withUnsafeBufferPointer {
                        conv.unfold($0.baseAddress!, ldx: ldx, samples: samples, channels: channels, into: &dst, ld: ld)
                    }
                    return dst
                }
                func folded<T: FlowScalar>(_: T.Type) -> [T] {
                    let src = u.map { T($0) }
                    var dst = [T](repeating: 7, count: samples * lddst)
                    src.withUnsafeBufferPointer {
                        conv.fold($0.baseAddress!, ld: ld, samples: samples, channels: channels, into: &dst, lddst: lddst)
                    }
                    return dst
                }
                let label = "\(h)×\(w) k \(k)"
                let uD = unfolded(Double.self), uF = unfolded(Float.self)
                for i in 0..<uD.count {
                    if i % ld >= samples * hw {
                        XCTAssertEqual(uF[i], 7, "unfold (Float) wrote past a row: \(label) [\(i)]")
                        XCTAssertEqual(uD[i], 7, "unfold (Double) wrote past a row: \(label) [\(i)]")
                    } else {
                        XCTAssertEqual(Double(uF[i]), Double(Float(uD[i])), "unfold \(label) [\(i)]")
                    }
                }
                let fD = folded(Double.self), fF = folded(Float.self)
                for n in 0..<samples {
                    XCTAssertEqual(fF[n * lddst + channels * hw], 7, "fold (Float) wrote between samples: \(label)")
                    XCTAssertEqual(fD[n * lddst + channels * hw], 7, "fold (Double) wrote between samples: \(label)")
                }
                // k² float additions: a few ulps of the largest term.
                XCTAssertLessThan(BijectionChecker.maxRelativeError(fF.map { Double($0) }, fD), 1e-5, "fold \(label)")
                var left = 0.0, right = 0.0
                for r in 0..<rowsCount { for t in 0..<(samples * hw) { left += uD[r * ld + t] * u[r * ld + t] } }
                for n in 0..<samples {
                    for i in 0..<(channels * hw) { right += x[n * ldx + i] * fD[n * lddst + i] }
                }
                XCTAssertEqual(left, right, accuracy: 1e-10 * max(1, abs(left)), "adjoint \(label)")
            }
        }
    }

    // MARK: - ConvNet

    private func run<T: FlowScalar>(_ net: ConvNet<T>, _ x: [T], ldx: Int, rows: Int) -> [T] {
        var y = [T](repeating: .nan, count: rows * net.outFeatures)
        withExactArena(net.workspaceBytes(rows: rows)) { arena in
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    net(xp.baseAddress!, ldx: ldx, rows: rows, into: yp.baseAddress!, arena: &arena)
                }
            }
        }
        return y
    }

    /// Runs the recorded forward pass and the backward pass with one arena of
    /// `backwardWorkspaceBytes`, as a coupling layer does; returns (y, ∂x).
    private func recordAndBackward<T: FlowScalar>(_ net: ConvNet<T>, _ x: [T], ldx: Int, rows: Int,
                                                  outputGradient r: [T], inputGradient: Bool = true) -> ([T], [T]) {
        var y = [T](repeating: .nan, count: rows * net.outFeatures)
        var tape = [T](repeating: .nan, count: net.tapeCount(rows: rows))
        var dx = [T](repeating: .nan, count: rows * net.inFeatures)
        var g = r
        withExactArena(net.backwardWorkspaceBytes(rows: rows)) { arena in
            x.withUnsafeBufferPointer { xp in
                net.forwardRecording(xp.baseAddress!, ldx: ldx, rows: rows, into: &y, tape: &tape, arena: &arena)
                g.withUnsafeMutableBufferPointer { gp in
                    if inputGradient {
                        net.backward(xp.baseAddress!, ldx: ldx, rows: rows, tape: tape, outputGradient: gp.baseAddress!,
                                     inputGradient: &dx, arena: &arena)
                    } else {
                        net.backward(xp.baseAddress!, ldx: ldx, rows: rows, tape: tape, outputGradient: gp.baseAddress!,
                                     inputGradient: nil, arena: &arena)
                    }
                }
            }
        }
        XCTAssertEqual(g, r, "outputGradient must be left unchanged")
        return (y, dx)
    }

    func testParametersInFileOrderWithPyTorchShapesAndInitialisation() {
        let net = try! ConvNet<Double>(channels: 3, hidden: 8, outChannels: 6, height: 4, width: 5, seed: 42)
        XCTAssertEqual(net.parameters.map(\.name), ["weight_0", "bias_0", "weight_1", "bias_1", "weight_2", "bias_2"])
        XCTAssertEqual(net.parameters.map(\.shape), [[8, 3, 3, 3], [8], [8, 8, 1, 1], [8], [6, 8, 3, 3], [6]])
        XCTAssertEqual(net.inFeatures, 3 * 20)
        XCTAssertEqual(net.outFeatures, 6 * 20)
        XCTAssertEqual(net.tapeCount(rows: 2), 2 * 2 * 8 * 20)
        for (p, fanIn) in zip(net.parameters.prefix(4), [27, 27, 8, 8]) {
            let bound = 1 / Double(fanIn).squareRoot()
            XCTAssertTrue(p.array.allSatisfy { abs($0) <= bound }, "\(p.name) outside ±1/√\(fanIn)")
            XCTAssertGreaterThan(p.array.map(abs).max()!, 0.5 * bound, "\(p.name) not spread over its range")
        }
        XCTAssertTrue(net.parameters.suffix(2).allSatisfy { $0.array.allSatisfy { $0 == 0 } }, "last layer not zero")
        // Deterministic in the seed, and Float draws the same values.
        let again = try! ConvNet<Float>(channels: 3, hidden: 8, outChannels: 6, height: 4, width: 5, seed: 42)
        for (a, b) in zip(net.parameters, again.parameters) { XCTAssertEqual(a.array.map { Float($0) }, b.array, a.name) }
        let other = try! ConvNet<Double>(channels: 3, hidden: 8, outChannels: 6, height: 4, width: 5, seed: 43)
        XCTAssertNotEqual(net.parameters[0].array, other.parameters[0].array)
    }

    func testFreshNetworkOutputsExactlyZero() {
        let rows = 3
        let double = try! ConvNet<Double>(channels: 4, hidden: 16, outChannels: 8, height: 6, width: 5, seed: 1)
        let x = normals(rows * double.inFeatures, seed: 18, scale: 3)
        XCTAssertTrue(run(double, x, ldx: double.inFeatures, rows: rows).allSatisfy { $0 == 0 })
        let single = try! ConvNet<Float>(channels: 4, hidden: 16, outChannels: 8, height: 6, width: 5, seed: 1)
        XCTAssertTrue(run(single, x.map { Float($0) }, ldx: single.inFeatures, rows: rows).allSatisfy { $0 == 0 })
        // The contiguous convenience entry point, through a pooled-style workspace.
        let ws = Workspace()
        try! ws.reserve(bytes: single.workspaceBytes(rows: 2))
        var arena = ws.arena()
        var z = [Float](repeating: 1, count: 2 * single.outFeatures)
        let xf = [Float](repeating: 1, count: 2 * single.inFeatures)
        single(xf, rows: 2, into: &z, arena: &arena)
        XCTAssertEqual(z, [Float](repeating: 0, count: z.count))
    }

    func testForwardMatchesComposedReference() {
        for (c, hid, o, hgt, wid, rows) in [(3, 5, 4, 5, 7, 1), (4, 6, 2, 6, 3, 3), (2, 3, 6, 1, 4, 3)] {
            let net = try! ConvNet<Double>(channels: c, hidden: hid, outChannels: o, height: hgt, width: wid, seed: 2)
            BijectionChecker.perturb(net.parameters, scale: 0.5, seed: 3)
            net.repack()
            let ldx = net.inFeatures + 4
            let x = normals(rows * ldx, seed: 19)
            let p = net.parameters.map(\.array)
            let h0 = referenceConvolution(x, ldx: ldx, rows: rows, net.layers[0], weight: p[0], bias: p[1], relu: true)
            let h1 = referenceConvolution(h0, ldx: net.hiddenFeatures, rows: rows, net.layers[1], weight: p[2], bias: p[3],
                                          relu: true)
            let ref = referenceConvolution(h1, ldx: net.hiddenFeatures, rows: rows, net.layers[2], weight: p[4], bias: p[5])
            let y = run(net, x, ldx: ldx, rows: rows)
            XCTAssertLessThan(BijectionChecker.maxRelativeError(y, ref), 1e-12, "\(c)→\(hid)→\(o)")
            let (yRecorded, _) = recordAndBackward(net, x, ldx: ldx, rows: rows,
                                                   outputGradient: [Double](repeating: 0, count: y.count))
            XCTAssertEqual(yRecorded, y, "forwardRecording differs from callAsFunction")
        }
    }

    /// `L = Σ y·r` through the whole network: every parameter element and every input element
    /// against central differences.
    func testNetworkGradientMatchesFiniteDifferences() {
        let h = 1e-5
        for (c, hid, o, hgt, wid, rows, contiguous) in [(3, 5, 4, 5, 4, 2, false), (6, 4, 2, 3, 5, 3, true),
                                                       (2, 3, 3, 1, 3, 1, true)] {
            let net = try! ConvNet<Double>(channels: c, hidden: hid, outChannels: o, height: hgt, width: wid, seed: 4)
            BijectionChecker.perturb(net.parameters, scale: 0.5, seed: 5)
            net.repack()
            let ldx = contiguous ? net.inFeatures : net.inFeatures + 3
            var x = normals(rows * ldx, seed: 20)
            let r = normals(rows * net.outFeatures, seed: 21)
            func loss() -> Double { zip(run(net, x, ldx: ldx, rows: rows), r).reduce(0) { $0 + $1.0 * $1.1 } }
            for p in net.parameters { p.zeroGradient() }
            let (_, dx) = recordAndBackward(net, x, ldx: ldx, rows: rows, outputGradient: r)
            let label = "\(c)→\(hid)→\(o) \(hgt)×\(wid) rows \(rows)"
            for p in net.parameters {
                for i in 0..<p.count {
                    let v = p.values[i]
                    p.values[i] = v + h; net.repack(); let up = loss()
                    p.values[i] = v - h; net.repack(); let down = loss()
                    p.values[i] = v; net.repack()
                    let fd = (up - down) / (2 * h)
                    XCTAssertEqual(p.gradient[i], fd, accuracy: 1e-6 * max(1, abs(fd)), "\(label): ∂\(p.name)[\(i)]")
                }
            }
            for n in 0..<rows {
                for e in 0..<net.inFeatures {
                    let i = n * ldx + e, v = x[i]
                    x[i] = v + h; let up = loss()
                    x[i] = v - h; let down = loss()
                    x[i] = v
                    let fd = (up - down) / (2 * h)
                    XCTAssertEqual(dx[n * net.inFeatures + e], fd, accuracy: 1e-6 * max(1, abs(fd)), "\(label): ∂x[\(n), \(e)]")
                }
            }
            // Without an input gradient the parameter gradients are the same, and they accumulate.
            let first = net.parameters.map { Array($0.gradient) }
            _ = recordAndBackward(net, x, ldx: ldx, rows: rows, outputGradient: r, inputGradient: false)
            for (p, g) in zip(net.parameters, first) {
                for i in 0..<p.count {
                    XCTAssertEqual(p.gradient[i], 2 * g[i], accuracy: 1e-12 * max(1, abs(g[i])), "\(label): \(p.name) accumulation")
                }
            }
        }
    }

    func testGradientsGoToTheCallingThreadsSlot() {
        let net = try! ConvNet<Double>(channels: 2, hidden: 3, outChannels: 2, height: 3, width: 3, seed: 6)
        BijectionChecker.perturb(net.parameters, scale: 0.5, seed: 7)
        net.repack()
        for p in net.parameters { try! p.reserveGradientSlots(1); p.zeroGradient() }
        let x = normals(2 * net.inFeatures, seed: 22), r = normals(2 * net.outFeatures, seed: 23)
        GradientSlot.with(1) { _ = recordAndBackward(net, x, ldx: net.inFeatures, rows: 2, outputGradient: r) }
        for p in net.parameters {
            XCTAssertTrue(p.ownGradient.allSatisfy { $0 == 0 }, "\(p.name): slot 0 written")
            XCTAssertTrue(p.extraGradients[0].contains { $0 != 0 }, "\(p.name): slot 1 not written")
        }
    }

    /// The block-by-block inference pass gives the layer-by-layer pass's bits (same GEMM
    /// operands and shapes), for both scalar types, strided inputs, ragged last blocks, planes of
    /// 64, 16, 35 and 18 pixels; and it is the one taken where it applies.
    func testBlockForwardEqualsLayerByLayerForward() {
        func check<T: FlowScalar>(_: T.Type, _ c: Int, _ hid: Int, _ o: Int, _ hgt: Int, _ wid: Int, _ rows: Int) {
            let net = try! ConvNet<T>(channels: c, hidden: hid, outChannels: o, height: hgt, width: wid, seed: 5)
            BijectionChecker.perturb(net.parameters, scale: 0.5, seed: 6)
            net.repack()
            XCTAssertTrue(net.usesBlockForward(rows: rows), "\(c)→\(hid)→\(o) \(hgt)×\(wid) rows \(rows)")
            XCTAssertFalse(net.usesBlockForward(rows: 1))
            let ldx = net.inFeatures + 5
            let x = normals(rows * ldx, seed: 7).map { T($0) }
            var layered = [T](repeating: .nan, count: rows * net.outFeatures), blocked = layered
            withExactArena(net.workspaceBytes(rows: rows)) { arena in
                x.withUnsafeBufferPointer { xp in
                    var scratch = arena
                    net.layerForward(xp.baseAddress!, ldx: ldx, rows: rows, into: &layered, arena: &scratch)
                    scratch = arena
                    net.blockForward(xp.baseAddress!, ldx: ldx, rows: rows, into: &blocked, arena: &scratch)
                }
            }
            func differing(_ a: [T], _ b: [T]) -> Int {
                zip(a, b).filter { Double($0).bitPattern != Double($1).bitPattern }.count
            }
            XCTAssertEqual(differing(blocked, layered), 0, "\(T.self) \(c)→\(hid)→\(o) \(hgt)×\(wid) rows \(rows)")
            XCTAssertEqual(differing(run(net, x, ldx: ldx, rows: rows), blocked), 0, "callAsFunction")
            XCTAssertTrue(blocked.contains { $0 != 0 }, "a network that outputs zeros tests nothing")
        }
        for (c, hid, o, hgt, wid, rows) in [(6, 16, 12, 8, 8, 7), (12, 20, 8, 4, 4, 21), (3, 8, 4, 5, 7, 9),
                                            (4, 6, 2, 6, 3, 3)] {
            check(Float.self, c, hid, o, hgt, wid, rows)
            check(Double.self, c, hid, o, hgt, wid, rows)
        }
    }

    /// A float32 network runs its last convolution by Winograd (``ConvNet/usesWinograd``) unless
    /// told not to; its output matches the Double network with the same weights to within 2e-5
    /// of the output's scale (F(4×4, 3×3) on the 8×8, 4×4 and 5×7 planes,
    /// whose transforms scale by up to 8: measured 4–6e-6; the im2col network stays within
    /// 2e-6), in a batch and one sample at a time; the recorded pass of training gives
    /// inference's bits (with OpenBLAS on one thread, as the library runs it: its threaded
    /// products can round differently).
    func testWinogradLastLayerAgreesWithIm2col() {
        FlowRuntime.configureBLAS()
        XCTAssertFalse(try! ConvNet<Double>(channels: 2, hidden: 8, outChannels: 4, height: 4, width: 4, seed: 1).usesWinograd)
        for (c, hid, o, hgt, wid, rows) in [(6, 64, 12, 8, 8, 7), (12, 64, 24, 4, 4, 9), (3, 16, 6, 5, 7, 3),
                                            (2, 8, 4, 1, 3, 2)] {
            let reference = try! ConvNet<Double>(channels: c, hidden: hid, outChannels: o, height: hgt, width: wid, seed: 5)
            BijectionChecker.perturb(reference.parameters, scale: 0.5, seed: 6)
            reference.repack()
            let nets = [true, false].map { winograd in
                let net = try! ConvNet<Float>(channels: c, hidden: hid, outChannels: o, height: hgt, width: wid, seed: 5,
                                         winograd: winograd)
                for (pd, pf) in zip(reference.parameters, net.parameters) { pf.assign(pd.array.map { Float($0) }) }
                net.repack()
                return net
            }
            XCTAssertTrue(nets[0].usesWinograd)
            XCTAssertFalse(nets[1].usesWinograd)
            let label = "\(c)→\(hid)→\(o) \(hgt)×\(wid)"
            let x = normals(rows * reference.inFeatures, seed: 7)
            let yD = run(reference, x, ldx: reference.inFeatures, rows: rows)
            let xF = x.map { Float($0) }
            let winograd = run(nets[0], xF, ldx: nets[0].inFeatures, rows: rows)
            let im2col = run(nets[1], xF, ldx: nets[1].inFeatures, rows: rows)
            XCTAssertLessThan(scaledError(winograd, yD), 2e-5, label)
            XCTAssertLessThan(scaledError(im2col, yD), 2e-6, label)
            // One sample (the layer-by-layer path; its GEMMs are narrower, so not the same bits).
            let one = run(nets[0], Array(xF[0..<nets[0].inFeatures]), ldx: nets[0].inFeatures, rows: 1)
            XCTAssertLessThan(scaledError(one, Array(yD[0..<reference.outFeatures])), 2e-5, "\(label): one sample")
            let r = [Float](repeating: 1, count: rows * nets[0].outFeatures)
            let (recorded, _) = recordAndBackward(nets[0], xF, ldx: nets[0].inFeatures, rows: rows, outputGradient: r)
            XCTAssertEqual(recorded.map(\.bitPattern), winograd.map(\.bitPattern), "\(label): recorded pass")
        }
    }

    func testFloatNetworkAgreesWithDouble() {
        let rows = 4
        let double = try! ConvNet<Double>(channels: 6, hidden: 32, outChannels: 12, height: 8, width: 8, seed: 8)
        BijectionChecker.perturb(double.parameters, scale: 0.3, seed: 9)
        double.repack()
        let single = try! ConvNet<Float>(channels: 6, hidden: 32, outChannels: 12, height: 8, width: 8, seed: 8)
        for (pd, pf) in zip(double.parameters, single.parameters) { pf.assign(pd.array.map { Float($0) }) }
        single.repack()
        let x = normals(rows * double.inFeatures, seed: 24), r = normals(rows * double.outFeatures, seed: 25)
        for p in double.parameters { p.zeroGradient() }
        for p in single.parameters { p.zeroGradient() }
        let (yD, dxD) = recordAndBackward(double, x, ldx: double.inFeatures, rows: rows, outputGradient: r)
        let (yF, dxF) = recordAndBackward(single, x.map { Float($0) }, ldx: single.inFeatures, rows: rows,
                                          outputGradient: r.map { Float($0) })
        XCTAssertLessThan(BijectionChecker.maxRelativeError(yF.map { Double($0) }, yD), 1e-4, "output")
        XCTAssertLessThan(BijectionChecker.maxRelativeError(dxF.map { Double($0) }, dxD), 1e-3, "∂x")
        for (pd, pf) in zip(double.parameters, single.parameters) {
            XCTAssertLessThan(BijectionChecker.maxRelativeError(Array(pf.gradient).map { Double($0) }, Array(pd.gradient)),
                              1e-3, pd.name)
        }
    }

    /// The float32 network (im2col + BLAS, Winograd in the last layer's forward pass) against the
    /// Float64 network: forward, input gradient, weight and bias gradients, on odd sizes (rows
    /// 1…21, sample stride beyond the features, planes down to 1×1, channels 1…9 and 64, hidden
    /// widths from 3 to 64).
    func testFloatNetworkAgreesWithDoubleOnOddSizes() {
        let cases: [(c: Int, hid: Int, o: Int, h: Int, w: Int, rows: Int, pad: Int)] = [
            (1, 64, 2, 14, 14, 3, 0), (2, 64, 4, 7, 7, 5, 3), (3, 5, 9, 5, 7, 7, 2), (9, 7, 1, 1, 1, 3, 1),
            (4, 64, 8, 4, 4, 21, 5), (5, 3, 6, 2, 9, 1, 0), (7, 17, 3, 3, 1, 11, 4), (6, 16, 12, 8, 8, 2, 0),
            (8, 9, 64, 3, 5, 2, 1), (64, 8, 5, 2, 3, 3, 2),
        ]
        for (i, t) in cases.enumerated() {
            let double = try! ConvNet<Double>(channels: t.c, hidden: t.hid, outChannels: t.o, height: t.h, width: t.w,
                                         seed: 30 + UInt64(i))
            BijectionChecker.perturb(double.parameters, scale: 0.3, seed: 31 + UInt64(i))
            double.repack()
            let ldx = double.inFeatures + t.pad
            let x = normals(t.rows * ldx, seed: 32 + UInt64(i)), r = normals(t.rows * double.outFeatures, seed: 33)
            for p in double.parameters { p.zeroGradient() }
            let (yD, dxD) = recordAndBackward(double, x, ldx: ldx, rows: t.rows, outputGradient: r)
            let single = try! ConvNet<Float>(channels: t.c, hidden: t.hid, outChannels: t.o, height: t.h, width: t.w,
                                        seed: 30 + UInt64(i))
            for (pd, pf) in zip(double.parameters, single.parameters) { pf.assign(pd.array.map { Float($0) }) }
            single.repack()
            for p in single.parameters { p.zeroGradient() }
            let xf = x.map { Float($0) }
            let label = "\(t.c)→\(t.hid)→\(t.o) \(t.h)×\(t.w) rows \(t.rows)"
            let y = run(single, xf, ldx: ldx, rows: t.rows)
            let (yF, dxF) = recordAndBackward(single, xf, ldx: ldx, rows: t.rows, outputGradient: r.map { Float($0) })
            XCTAssertEqual(y, yF, "\(label): forwardRecording differs from callAsFunction")
            if single.usesWinograd { // F(4×4, 3×3) in the last layer: its error follows the sums (testWinogradLastLayerAgreesWithIm2col)
                XCTAssertLessThan(scaledError(yF, yD), 2e-5, "\(label): output")
            } else {
                XCTAssertLessThan(BijectionChecker.maxRelativeError(yF.map { Double($0) }, yD), 1e-4, "\(label): output")
            }
            XCTAssertLessThan(BijectionChecker.maxRelativeError(dxF.map { Double($0) }, dxD), 1e-3, "\(label): ∂x")
            for (pd, pf) in zip(double.parameters, single.parameters) {
                XCTAssertLessThan(BijectionChecker.maxRelativeError(Array(pf.gradient).map { Double($0) },
                                                                    Array(pd.gradient)), 1e-3, "\(label): \(pd.name)")
            }
            // Without the input gradient: the same parameter gradients, accumulated.
            let first = single.parameters.map { Array($0.gradient) }
            _ = recordAndBackward(single, xf, ldx: ldx, rows: t.rows, outputGradient: r.map { Float($0) },
                                  inputGradient: false)
            for (p, g) in zip(single.parameters, first) {
                XCTAssertLessThan(BijectionChecker.maxRelativeError(Array(p.gradient), g.map { $0 + $0 }), 1e-5,
                                  "\(label): \(p.name) accumulation")
            }
        }
    }

    func testCheckedEnforcesLimits() throws {
        func code(_ body: () throws -> Void) -> String {
            do { try body(); return "ok" } catch let e as FlowError {
                switch e {
                case .invalidSpec: return "invalidSpec"
                case .limitExceeded: return "limitExceeded"
                default: return "\(e)"
                }
            } catch { return "\(error)" }
        }
        func make(_ c: Int, _ hid: Int, _ o: Int, _ h: Int, _ w: Int) -> String {
            code { _ = try ConvNet<Float>.checked(channels: c, hidden: hid, outChannels: o, height: h, width: w, seed: 0,
                                                  context: "glow_coupling") }
        }
        XCTAssertEqual(make(3, 8, 6, 4, 4), "ok")
        XCTAssertEqual(make(0, 8, 6, 4, 4), "invalidSpec")
        XCTAssertEqual(make(3, 0, 6, 4, 4), "invalidSpec")
        XCTAssertEqual(make(3, 8, 0, 4, 4), "invalidSpec")
        XCTAssertEqual(make(3, 8, 6, 0, 4), "invalidSpec")
        XCTAssertEqual(make(3, 8, 6, 4, -1), "invalidSpec")
        XCTAssertEqual(make(3, Limits.maxHiddenWidth + 1, 6, 1, 1), "limitExceeded")
        XCTAssertEqual(make(3, 8, 6, 1 << 13, 1 << 12), "limitExceeded")           // 8·2^25 hidden elements
        XCTAssertEqual(make(3, 8, 6, Int.max / 2, 4), "limitExceeded")            // plane overflows
        XCTAssertEqual(make(1 << 20, 1 << 10, 6, 1, 1), "limitExceeded")          // 9·2^30 weights
        XCTAssertEqual(make(Int.max / 4, 8, 6, 1, 1), "limitExceeded")            // parameter count overflows
        do {
            _ = try ConvNet<Float>.checked(channels: 3, hidden: 0, outChannels: 6, height: 4, width: 4, seed: 0,
                                           context: "glow_coupling")
        } catch let e as FlowError {
            XCTAssertTrue(e.message.hasPrefix("glow_coupling: "), e.message)
        }
    }
}
