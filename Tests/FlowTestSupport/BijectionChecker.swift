@testable import FlowCore
@testable import FlowModelFile
import XCTest

/// The one reusable checker every layer, preset and flow goes through.
///
/// It evaluates a bijection in Double on random points and asserts the contract:
/// - round trip: `inverse(forward(x)) ≈ x` and `forward(inverse(z)) ≈ z`;
/// - log-determinant: forward `logDet` equals `log|det J|` of a central-difference Jacobian,
///   and the inverse's equals its negative at the corresponding point;
/// - finiteness of every output.
public enum BijectionChecker {
    /// Tolerances of a Double-precision check.
    public struct Tolerance {
        /// Max |inverse(forward(x)) − x| relative to max(1, |x|).
        public var roundTrip = 1e-9
        /// Max |logDet − log|det J_fd||.
        public var logDet = 1e-6
        /// Max |inverse logDet + forward logDet| relative to max(1, |forward logDet|) (exact for
        /// closed-form layers; the solver tolerance for continuous ones).
        public var inverseLogDet = 1e-9
        /// Central-difference step.
        public var step = 1e-5
        public init() {}
    }

    /// Applies `bijection` to `rows` (row-major, `count × D`) and returns outputs and log-dets.
    public static func apply<T: FlowScalar>(_ bijection: any Bijection<T>, _ rows: [T], count: Int,
                                            inverse: Bool) -> ([T], [Double]) {
        var out = rows
        var logDet = [Double](repeating: 0, count: count)
        let ws = Workspace()
        try! ws.reserve(bytes: bijection.workspaceBytes(count: count))
        out.withUnsafeMutableBufferPointer { o in
            logDet.withUnsafeMutableBufferPointer { l in
                var arena = ws.arena()
                if inverse {
                    bijection.inverse(o.baseAddress!, count: count, logDet: l.baseAddress!, arena: &arena)
                } else {
                    bijection.forward(o.baseAddress!, count: count, logDet: l.baseAddress!, arena: &arena)
                }
            }
        }
        return (out, logDet)
    }

    /// `log|det ∂f/∂x|` at `x` from a central-difference Jacobian (2·D evaluations in one batch).
    public static func finiteDifferenceLogDet(_ bijection: any Bijection<Double>, at x: [Double],
                                              step h: Double, inverse: Bool = false) -> Double {
        let d = x.count
        var batch = [Double]()
        batch.reserveCapacity(2 * d * d)
        for j in 0..<d {
            var plus = x, minus = x
            plus[j] += h
            minus[j] -= h
            batch += plus
            batch += minus
        }
        let (out, _) = apply(bijection, batch, count: 2 * d, inverse: inverse)
        var jacobian = [Double](repeating: 0, count: d * d)
        for j in 0..<d {
            for i in 0..<d {
                jacobian[i * d + j] = (out[(2 * j) * d + i] - out[(2 * j + 1) * d + i]) / (2 * h)
            }
        }
        return DenseLinearAlgebra.logAbsDeterminant(jacobian, d)?.logAbs ?? -.infinity
    }

    /// Standard normal points, `count × d`, times `scale`, from `seed`.
    public static func randomPoints(_ count: Int, _ d: Int, seed: UInt64, scale: Double = 1) -> [Double] {
        var rng = PhiloxStream(seed: seed, row: 99, stream: 7)
        return (0..<(count * d)).map { _ in scale * rng.nextNormal() }
    }

    /// Adds `N(0, σ²)` noise to every parameter, so zero-initialised last layers become
    /// non-trivial. `σ = scale` for vectors and `scale/√columns` for matrices, as trained weights
    /// scale with their fan-in (keeps D×D factors well conditioned at large D).
    public static func perturb<T: FlowScalar>(_ parameters: [Parameter<T>], scale: Double, seed: UInt64) {
        var rng = PhiloxStream(seed: seed, row: 5, stream: 9)
        for p in parameters {
            let sigma = p.shape.count == 2 ? scale / Double(max(p.shape[1], 1)).squareRoot() : scale
            for i in 0..<p.count { p.values[i] += T(sigma * rng.nextNormal()) }
        }
    }

    /// Runs every check of the contract on `count` random points.
    public static func check(_ bijection: any Bijection<Double>, points count: Int = 4, seed: UInt64 = 1,
                             tolerance: Tolerance = Tolerance(), _ label: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        let d = bijection.eventSize
        let x = randomPoints(count, d, seed: seed)
        let (z, forwardLogDet) = apply(bijection, x, count: count, inverse: false)
        XCTAssertTrue(z.allSatisfy(\.isFinite) && forwardLogDet.allSatisfy(\.isFinite),
                      "\(label): non-finite forward output", file: file, line: line)
        let (xBack, inverseLogDet) = apply(bijection, z, count: count, inverse: true)
        let err = maxRelativeError(xBack, x)
        XCTAssertLessThan(err, tolerance.roundTrip, "\(label): inverse(forward(x)) error \(err)", file: file, line: line)
        for i in 0..<count {
            XCTAssertEqual(inverseLogDet[i], -forwardLogDet[i], accuracy: tolerance.inverseLogDet * max(1, abs(forwardLogDet[i])),
                           "\(label): inverse logDet is not minus forward logDet", file: file, line: line)
            let row = Array(x[(i * d)..<((i + 1) * d)])
            let fd = finiteDifferenceLogDet(bijection, at: row, step: tolerance.step)
            XCTAssertEqual(forwardLogDet[i], fd, accuracy: tolerance.logDet,
                           "\(label): forward logDet \(forwardLogDet[i]) vs finite differences \(fd)", file: file, line: line)
            let zRow = Array(z[(i * d)..<((i + 1) * d)])
            let fdInverse = finiteDifferenceLogDet(bijection, at: zRow, step: tolerance.step, inverse: true)
            XCTAssertEqual(inverseLogDet[i], fdInverse, accuracy: tolerance.logDet,
                           "\(label): inverse logDet vs finite differences", file: file, line: line)
        }
        // forward(inverse(z)) ≈ z starting from latent points.
        let z0 = randomPoints(count, d, seed: seed &+ 17)
        let (x0, _) = apply(bijection, z0, count: count, inverse: true)
        let (z1, _) = apply(bijection, x0, count: count, inverse: false)
        let err2 = maxRelativeError(z1, z0)
        XCTAssertLessThan(err2, tolerance.roundTrip, "\(label): forward(inverse(z)) error \(err2)", file: file, line: line)
    }

    /// max_i |a_i − b_i| / max(1, |b_i|).
    public static func maxRelativeError<T: FlowScalar>(_ a: [T], _ b: [T]) -> Double {
        var worst = 0.0
        for (u, v) in zip(a, b) {
            let e = abs(Double(u) - Double(v)) / max(1, abs(Double(v)))
            if !(e <= worst) { worst = e.isNaN ? .infinity : e }
        }
        return worst
    }
}
