@testable import FlowCore
@testable import FlowModelFile
import FlowTestSupport
import XCTest

/// Reverse-mode building blocks of the adjoint method (ODENet+Reverse.swift): the VJP of the
/// dynamics and the gradient of the divergence (exact trace and Hutchinson estimate), with and
/// without a context, checked against central finite differences of
/// ``ContinuousFlow/augmentedDynamics(t:_:rows:rowOffset:context:)``.
final class ODENetReverseTests: XCTestCase {
    private func cnf<T: FlowScalar>(_ d: Int, hidden: [Int], activation: String, trace: String = "exact",
                                    probe: String = "gaussian", contextFeatures: Int = 0,
                                    _: T.Type = T.self) throws -> ContinuousFlow<T> {
        var config: [String: JSONValue] = ["type": .string("cnf"), "hidden": JSONValue(hidden),
                                           "activation": .string(activation), "trace": .string(trace),
                                           "probe": .string(probe), "probe_seed": .number(11)]
        if contextFeatures > 0 { config["context_features"] = .number(Double(contextFeatures)) }
        try ContinuousFlow<T>.validate(config, context: "test")
        return try ContinuousFlow<T>(config: config, eventShape: [d], seed: 5)
    }

    private func random(_ n: Int, seed: UInt64) -> [Double] {
        var rng = PhiloxStream(seed: seed, row: 0, stream: 0)
        return (0..<n).map { _ in rng.nextUniform(in: -1, 1) }
    }

    /// Results of one reverse call: input gradient, per-row time gradient, parameter gradients,
    /// context gradient (`rows × C`).
    private struct Grads<T: FlowScalar> {
        var z: [T], t: [T], params: [[T]], c: [T]
    }

    /// Runs `vjp` (`u` given) or `divergenceGradient` (`w` given) from zeroed gradients, `calls`
    /// times, at the context rows `context` (a conditional layer).
    private func reverse<T: FlowScalar>(_ layer: ContinuousFlow<T>, t: T, z: [T], rows: Int, u: [T]?, w: [T]?,
                                        rowOffset: Int = 0, calls: Int = 1, zero: Bool = true,
                                        context: [T]? = nil) -> Grads<T> {
        let d = layer.dimension
        if zero { for p in layer.parameters { p.zeroGradient() } }
        var gz = [T](repeating: 0, count: rows * d), gt = [T](repeating: 0, count: rows)
        var gc = [T](repeating: 0, count: rows * layer.contextFeatures)
        let ws = Workspace()
        try! ws.reserve(bytes: layer.reverseWorkspaceBytes(rows: rows))
        for _ in 0..<calls {
            var arena = ws.arena()
            z.withUnsafeBufferPointer { zp in
                gz.withUnsafeMutableBufferPointer { gp in
                    gt.withUnsafeMutableBufferPointer { tp in
                        (context ?? []).withUnsafeBufferPointer { cp in
                            gc.withUnsafeMutableBufferPointer { gcp in
                                let c = context == nil ? nil : cp.baseAddress, dc = context == nil ? nil : gcp.baseAddress
                                if let u {
                                    u.withUnsafeBufferPointer { up in
                                        layer.dynamicsVJP(t: t, zp.baseAddress!, ldz: d, rows: rows, cotangent: up.baseAddress!,
                                                          ldu: d, into: gp.baseAddress!, ldg: d, timeGradient: tp.baseAddress!,
                                                          context: c, contextGradient: dc, arena: &arena)
                                    }
                                } else {
                                    w!.withUnsafeBufferPointer { wp in
                                        layer.divergenceGradient(t: t, zp.baseAddress!, ldz: d, rows: rows, rowOffset: rowOffset,
                                                                 weights: wp.baseAddress!, addingInto: gp.baseAddress!, ldg: d,
                                                                 timeGradient: tp.baseAddress!, context: c, contextGradient: dc,
                                                                 arena: &arena)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Grads(z: gz, t: gt, params: layer.parameters.map { Array($0.gradient) }, c: gc)
    }

    /// Per-row objective: `u_rᵀ g_r` (u given) or `w_r tr_r` (w given), at the context rows `context`.
    private func objective(_ layer: ContinuousFlow<Double>, t: Double, z: [Double], rows: Int, u: [Double]?,
                           w: [Double]?, rowOffset: Int, context: [Double]? = nil) -> [Double] {
        let d = layer.dimension
        let out = layer.augmentedDynamics(t: t, z, rows: rows, rowOffset: rowOffset, context: context)
        return (0..<rows).map { r in
            if let u { return (0..<d).reduce(0) { $0 + u[r * d + $1] * out[r * (d + 1) + $1] } }
            return w![r] * out[r * (d + 1) + d]
        }
    }

    private func assertClose(_ a: Double, _ b: Double, _ tol: Double, _ what: @autoclosure () -> String,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertLessThanOrEqual(abs(a - b), tol * max(1, abs(b)), "\(what()): analytic \(a) vs FD \(b)",
                                 file: file, line: line)
    }

    /// Every output of one reverse call against central differences (the context gradient too
    /// for a conditional layer).
    private func checkFD(_ layer: ContinuousFlow<Double>, useU: Bool, rowOffset: Int = 0, context: String) {
        let d = layer.dimension, rows = 3, t = 0.37, h = 1e-5, tol = 2e-6, cf = layer.contextFeatures
        let z = random(rows * d, seed: 1).map { 1.5 * $0 }
        let u = useU ? random(rows * d, seed: 2) : nil
        let w = useU ? nil : random(rows, seed: 3).map { $0 + 1.5 }
        let c = cf > 0 ? random(rows * cf, seed: 4).map { 2 * $0 } : nil
        let g = reverse(layer, t: t, z: z, rows: rows, u: u, w: w, rowOffset: rowOffset, context: c)
        let f = { (zz: [Double], tt: Double) in
            self.objective(layer, t: tt, z: zz, rows: rows, u: u, w: w, rowOffset: rowOffset, context: c)
        }
        // c: rows are independent, so perturbing entry j of every row at once is exact.
        for j in 0..<cf {
            var cp = c!, cm = c!
            for r in 0..<rows { cp[r * cf + j] += h; cm[r * cf + j] -= h }
            let fp = objective(layer, t: t, z: z, rows: rows, u: u, w: w, rowOffset: rowOffset, context: cp)
            let fm = objective(layer, t: t, z: z, rows: rows, u: u, w: w, rowOffset: rowOffset, context: cm)
            for r in 0..<rows { assertClose(g.c[r * cf + j], (fp[r] - fm[r]) / (2 * h), tol, "\(context) ∂c[\(r),\(j)]") }
        }
        // z: rows are independent, so perturbing feature j of every row at once is exact.
        for j in 0..<d {
            var zp = z, zm = z
            for r in 0..<rows { zp[r * d + j] += h; zm[r * d + j] -= h }
            let fp = f(zp, t), fm = f(zm, t)
            for r in 0..<rows { assertClose(g.z[r * d + j], (fp[r] - fm[r]) / (2 * h), tol, "\(context) ∂z[\(r),\(j)]") }
        }
        // t, per row.
        let tp = f(z, t + h), tm = f(z, t - h)
        for r in 0..<rows { assertClose(g.t[r], (tp[r] - tm[r]) / (2 * h), tol, "\(context) ∂t[\(r)]") }
        // θ, summed over rows.
        for (pi, p) in layer.parameters.enumerated() {
            for i in 0..<p.count {
                let v0 = p.values[i]
                p.values[i] = v0 + h; layer.parametersDidChange()
                let fp = f(z, t).reduce(0, +)
                p.values[i] = v0 - h; layer.parametersDidChange()
                let fm = f(z, t).reduce(0, +)
                p.values[i] = v0; layer.parametersDidChange()
                assertClose(g.params[pi][i], (fp - fm) / (2 * h), tol, "\(context) ∂\(p.name)[\(i)]")
            }
        }
    }

    func testVJPMatchesFiniteDifferences() throws {
        for act in ["tanh", "softplus"] {
            for d in [1, 2, 3] {
                for hidden in [[], [5, 4]] {
                    let layer = try cnf(d, hidden: hidden, activation: act, Double.self)
                    checkFD(layer, useU: true, context: "vjp \(act) D=\(d) hidden=\(hidden)")
                }
            }
        }
    }

    func testExactTraceGradientMatchesFiniteDifferences() throws {
        for act in ["tanh", "softplus"] {
            for d in [1, 2, 3] {
                for hidden in [[], [5, 4]] {
                    let layer = try cnf(d, hidden: hidden, activation: act, Double.self)
                    checkFD(layer, useU: false, context: "exact trace \(act) D=\(d) hidden=\(hidden)")
                }
            }
        }
    }

    /// The gradient of the Hutchinson estimate `εᵀJε` with the forward solve's fixed probe (FD of
    /// `augmentedDynamics`, which draws ε itself: a probe mismatch would fail this test).
    func testHutchinsonGradientMatchesFiniteDifferences() throws {
        for probe in ["gaussian", "rademacher"] {
            for act in ["tanh", "softplus"] {
                for d in [1, 2, 3] {
                    for hidden in [[], [5, 4]] {
                        let layer = try cnf(d, hidden: hidden, activation: act, trace: "hutchinson", probe: probe,
                                            Double.self)
                        checkFD(layer, useU: false, rowOffset: 5,
                                context: "hutchinson \(probe) \(act) D=\(d) hidden=\(hidden)")
                    }
                }
            }
        }
    }

    /// A conditional network: the context's own gradient, and every other one (the first
    /// layer's context columns included) with the context in the first layer's input.
    func testContextGradientsMatchFiniteDifferences() throws {
        for trace in ["exact", "hutchinson"] {
            for (d, hidden, cf) in [(1, [5, 4], 2), (3, [Int](), 1), (2, [6], 3)] {
                let layer = try cnf(d, hidden: hidden, activation: "tanh", trace: trace, contextFeatures: cf, Double.self)
                XCTAssertEqual(layer.parameters[0].shape, [hidden.first ?? d, d + cf])
                for useU in [true, false] {
                    checkFD(layer, useU: useU, rowOffset: 2,
                            context: "\(trace) \(useU ? "vjp" : "trace") D=\(d) C=\(cf) hidden=\(hidden)")
                }
            }
        }
    }

    func testFloatAgreesWithDouble() throws {
        for trace in ["exact", "hutchinson"] {
            for act in ["tanh", "softplus"] {
                let d = 3, rows = 4, t = 0.6
                let ld = try cnf(d, hidden: [5, 4], activation: act, trace: trace, Double.self)
                let lf = try cnf(d, hidden: [5, 4], activation: act, trace: trace, Float.self)
                // Same values in both precisions (the Float layer's are the rounded Double draws).
                for (pd, pf) in zip(ld.parameters, lf.parameters) {
                    for i in 0..<pd.count { pd.values[i] = Double(pf.values[i]) }
                }
                ld.parametersDidChange()
                let z = random(rows * d, seed: 4), u = random(rows * d, seed: 5), w = random(rows, seed: 6)
                for useU in [true, false] {
                    let gd = reverse(ld, t: t, z: z, rows: rows, u: useU ? u : nil, w: useU ? nil : w)
                    let gf = reverse(lf, t: Float(t), z: z.map { Float($0) }, rows: rows,
                                     u: useU ? u.map { Float($0) } : nil, w: useU ? nil : w.map { Float($0) })
                    let what = "\(trace) \(act) \(useU ? "vjp" : "trace")"
                    for i in 0..<gd.z.count { assertClose(Double(gf.z[i]), gd.z[i], 1e-4, "\(what) z[\(i)]") }
                    for i in 0..<gd.t.count { assertClose(Double(gf.t[i]), gd.t[i], 1e-4, "\(what) t[\(i)]") }
                    for (a, b) in zip(gf.params, gd.params) {
                        for i in 0..<a.count { assertClose(Double(a[i]), b[i], 1e-4, "\(what) θ[\(i)]") }
                    }
                }
            }
        }
    }

    /// Parameter gradients, the divergence's input gradient and time gradients accumulate.
    func testGradientsAccumulate() throws {
        for trace in ["exact", "hutchinson"] {
            let layer = try cnf(2, hidden: [5, 4], activation: "tanh", trace: trace, Double.self)
            let rows = 3, z = random(6, seed: 7), u = random(6, seed: 8), w = random(3, seed: 9)
            for useU in [true, false] {
                let once = reverse(layer, t: 0.2, z: z, rows: rows, u: useU ? u : nil, w: useU ? nil : w)
                let twice = reverse(layer, t: 0.2, z: z, rows: rows, u: useU ? u : nil, w: useU ? nil : w, calls: 2)
                for (a, b) in zip(once.params, twice.params) {
                    for i in 0..<a.count { XCTAssertEqual(b[i], 2 * a[i], accuracy: 1e-12 * max(1, abs(a[i]))) }
                }
                for i in 0..<rows { XCTAssertEqual(twice.t[i], 2 * once.t[i], accuracy: 1e-12) }
                for i in 0..<6 {
                    // The VJP overwrites its input gradient; the divergence gradient adds.
                    XCTAssertEqual(twice.z[i], (useU ? 1 : 2) * once.z[i], accuracy: 1e-12)
                }
            }
        }
    }

    /// A large batch (the BLAS path of the dense products) equals row-by-row calls (direct loops).
    func testBatchMatchesRowByRow() throws {
        for trace in ["exact", "hutchinson"] {
            let layer = try cnf(3, hidden: [32, 32], activation: "tanh", trace: trace, Double.self)
            let rows = 40, d = 3
            let z = random(rows * d, seed: 12), u = random(rows * d, seed: 13), w = random(rows, seed: 14)
            for useU in [true, false] {
                let batch = reverse(layer, t: 0.8, z: z, rows: rows, u: useU ? u : nil, w: useU ? nil : w)
                var sum = layer.parameters.map { [Double](repeating: 0, count: $0.count) }
                for r in 0..<rows {
                    let one = reverse(layer, t: 0.8, z: Array(z[r * d..<(r + 1) * d]), rows: 1,
                                      u: useU ? Array(u[r * d..<(r + 1) * d]) : nil, w: useU ? nil : [w[r]],
                                      rowOffset: r)
                    for j in 0..<d { XCTAssertEqual(batch.z[r * d + j], one.z[j], accuracy: 1e-12) }
                    XCTAssertEqual(batch.t[r], one.t[0], accuracy: 1e-12)
                    for (pi, g) in one.params.enumerated() { for i in 0..<g.count { sum[pi][i] += g[i] } }
                }
                for (a, b) in zip(batch.params, sum) {
                    for i in 0..<a.count { XCTAssertEqual(a[i], b[i], accuracy: 1e-10 * max(1, abs(b[i]))) }
                }
            }
        }
    }

    /// Parallel passes accumulate into the calling thread's gradient slot.
    func testHonoursGradientSlot() throws {
        let layer = try cnf(2, hidden: [4], activation: "softplus", Double.self)
        for p in layer.parameters { try! p.reserveGradientSlots(1) }
        let z = random(4, seed: 10), w: [Double] = [0.5, -1]
        let reference = reverse(layer, t: 0.3, z: z, rows: 2, u: nil, w: w)
        let slotted = GradientSlot.with(1) { reverse(layer, t: 0.3, z: z, rows: 2, u: nil, w: w, zero: false) }
        for (p, (a, b)) in zip(layer.parameters, zip(reference.params, slotted.params)) {
            XCTAssertEqual(a, b)
            XCTAssertEqual(Array(p.ownGradient), a, "slot 0 untouched by the slot-1 pass")
        }
    }
}
