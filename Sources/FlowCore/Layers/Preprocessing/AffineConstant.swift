/// A fixed element-wise affine map `y = scale·x + shift` (e.g. levels to `[0, 1)` or to
/// `[−0.5, 0.5)`), `log|det J| = D·log|scale|`. No learnable parameters.
public final class AffineConstant<Scalar: FlowScalar>: FlowLayer {
    public static var typeName: String { "scale" }
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("scale", .double, required: true, "the factor (non-zero, finite)"),
            HyperParameter("shift", .double, "added after scaling (default 0)"),
        ]
    }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    public let scale: Double
    public let shift: Double

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        scale = config.double("scale", default: 1)
        shift = config.double("shift", default: 0)
        guard scale != 0, scale.isFinite, shift.isFinite else {
            throw FlowError.invalidSpec("scale: scale must be finite and non-zero and shift finite")
        }
        inputShape = eventShape
    }

    public var config: [String: JSONValue] {
        ["type": .string(Self.typeName), "scale": .number(scale), "shift": .number(shift)]
    }
    public var parameters: [Parameter<Scalar>] { [] }
    public func workspaceBytes(count: Int) -> Int { 0 }
    public func backwardWorkspaceBytes(count: Int) -> Int { 0 }
    var logDetPerSample: Double { Double(eventSize) * Double.log(abs(scale)) }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let a = Scalar(scale), b = Scalar(shift)
        for i in 0..<(count * eventSize) { x[i] = x[i] * a + b }
        for r in 0..<count { logDet[r] += logDetPerSample }
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let a = Scalar(1 / scale), b = Scalar(shift)
        for i in 0..<(count * eventSize) { z[i] = (z[i] - b) * a }
        for r in 0..<count { logDet[r] -= logDetPerSample }
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                         logDetGradient w: UnsafePointer<Scalar>, arena: inout Arena) {
        let a = Scalar(scale)
        for i in 0..<(count * eventSize) { g[i] *= a }
    }
}
