/// A normal with learnable mean and per-feature log standard deviation:
/// `z = loc + exp(log_scale) ⊙ ε`, `log p(z) = Σ [−½((z − loc)/σ)² − log σ] − (D/2)·log 2π`.
/// Starts as the standard normal (loc = 0, log_scale = 0).
public final class DiagonalNormal<Scalar: FlowScalar>: BaseDistribution {
    public static var typeName: String { "diagonal_normal" }
    public let eventSize: Int
    public let loc: Parameter<Scalar>
    public let logScale: Parameter<Scalar>

    public init(eventSize: Int) throws {
        self.eventSize = eventSize
        loc = try Parameter(name: "loc", shape: [eventSize])
        logScale = try Parameter(name: "log_scale", shape: [eventSize], bound: Scalar(Limits.maxLogScale))
    }

    /// The spec has no keys besides `type`; the context (if any) is ignored.
    public convenience init(config: [String: JSONValue], eventSize: Int, contextFeatures: Int, seed: UInt64) throws {
        try self.init(eventSize: eventSize)
    }

    public var config: [String: JSONValue] { ["type": .string(Self.typeName)] }
    public var parameters: [Parameter<Scalar>] { [loc, logScale] }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func logProb(_ z: UnsafePointer<Scalar>, count: Int, into out: UnsafeMutablePointer<Double>) {
        let d = eventSize, m = loc.pointer, ls = logScale.pointer
        var constant = -Double(d) * halfLogTwoPi
        for j in 0..<d { constant -= Double(ls[j]) }
        for r in 0..<count {
            let row = z + r * d
            var sq = 0.0
            for j in 0..<d {
                let u = (Double(row[j]) - Double(m[j])) * Double.exp(-Double(ls[j]))
                sq += u * u
            }
            out[r] = constant - 0.5 * sq
        }
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func sample(into out: UnsafeMutablePointer<Scalar>, count: Int, seed: UInt64, firstRow: UInt64,
                       temperature: Scalar) {
        let d = eventSize, m = loc.pointer, ls = logScale.pointer
        Philox4x32(seed: seed).fillNormalRows(out, rows: count, count: d, firstRow: firstRow,
                                              stream: RandomStream.baseSamples)
        for r in 0..<count {
            let row = out + r * d
            for j in 0..<d { row[j] = m[j] + Scalar.exp(ls[j]) * temperature * row[j] }
        }
    }

    /// With `u = (z − loc)·e^−ls`: `∂/∂z = −u·e^−ls`, `∂/∂loc = u·e^−ls`, `∂/∂ls = u² − 1`.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func backward(_ z: UnsafePointer<Scalar>, count: Int, logProbGradient w: UnsafePointer<Scalar>,
                         gradient g: UnsafeMutablePointer<Scalar>) {
        let d = eventSize, m = loc.pointer, ls = logScale.pointer
        let gm = loc.gradient.baseAddress!, gls = logScale.gradient.baseAddress!
        for r in 0..<count {
            for j in 0..<d {
                let inv = Scalar.exp(-ls[j])
                let u = (z[r * d + j] - m[j]) * inv
                let dz = -u * inv
                g[r * d + j] = w[r] * dz
                gm[j] -= w[r] * dz
                gls[j] += w[r] * (u * u - 1)
            }
        }
    }
}
