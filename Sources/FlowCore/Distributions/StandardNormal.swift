/// The standard normal `N(0, I)`: `log p(z) = −½‖z‖² − (D/2)·log 2π`.
public final class StandardNormal<Scalar: FlowScalar>: BaseDistribution {
    public static var typeName: String { "standard_normal" }
    public let eventSize: Int
    public init(eventSize: Int) { self.eventSize = eventSize }
    /// The spec has no keys besides `type`; the context (if any) is ignored.
    public convenience init(config: [String: JSONValue], eventSize: Int, contextFeatures: Int, seed: UInt64) {
        self.init(eventSize: eventSize)
    }
    public var config: [String: JSONValue] { ["type": .string(Self.typeName)] }
    public var parameters: [Parameter<Scalar>] { [] }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func logProb(_ z: UnsafePointer<Scalar>, count: Int, into out: UnsafeMutablePointer<Double>) {
        let d = eventSize
        let constant = -Double(d) * halfLogTwoPi
        for r in 0..<count {
            let row = z + r * d
            var sq = 0.0
            for j in 0..<d { let v = Double(row[j]); sq += v * v }
            out[r] = constant - 0.5 * sq
        }
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func sample(into out: UnsafeMutablePointer<Scalar>, count: Int, seed: UInt64, firstRow: UInt64,
                       temperature: Scalar) {
        let d = eventSize
        Philox4x32(seed: seed).fillNormalRows(out, rows: count, count: d, firstRow: firstRow,
                                              stream: RandomStream.baseSamples)
        if temperature != 1 { for i in 0..<count * d { out[i] *= temperature } }
    }

    /// `∂/∂z log N(z; 0, I) = −z`.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func backward(_ z: UnsafePointer<Scalar>, count: Int, logProbGradient w: UnsafePointer<Scalar>,
                         gradient g: UnsafeMutablePointer<Scalar>) {
        let d = eventSize
        for r in 0..<count { for j in 0..<d { g[r * d + j] = -w[r] * z[r * d + j] } }
    }
}
