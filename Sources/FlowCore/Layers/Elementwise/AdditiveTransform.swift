/// The additive (volume-preserving) transform of NICE (Dinh et al., "NICE: Non-linear
/// Independent Components Estimation", 2015).
///
///     forward:  z = x + t,      inverse:  x = z − t,      log|det| = 0
///
/// One parameter per feature, the shift; zero gives the identity. Pair it with a scaling layer
/// (``ActNorm``) or a diagonal-normal base, as NICE does.
public struct AdditiveTransform<Scalar: FlowScalar>: ElementwiseTransform {
    public static var couplingTypeName: String { "additive_coupling" }
    public static var hyperParameters: [HyperParameter] { [] }

    public init(config: [String: JSONValue], context: String) throws {}

    public var config: [String: JSONValue] { [:] }
    public var parametersPerFeature: Int { 1 }
    public func outputFeature(_ column: Int, features: Int) -> Int { column }
    public var scratchBytes: Int { 0 }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func apply(_ x: UnsafeMutablePointer<Scalar>, ldx: Int, features: FeatureIndices,
                      parameters shift: UnsafePointer<Scalar>, ldp: Int, rows: Int,
                      logDet: UnsafeMutablePointer<Double>, inverse: Bool, arena: inout Arena) {
        let nb = features.count
        let sign: Scalar = inverse ? -1 : 1
        features.indices.withUnsafeBufferPointer { idx in
            for r in 0..<rows {
                let row = x + r * ldx, t = shift + r * ldp
                if let start = features.rangeStart {
                    let xb = row + start
                    for j in 0..<nb { xb[j] += sign * t[j] }
                } else {
                    for j in 0..<nb { row[idx[j]] += sign * t[j] }
                }
            }
        }
    }

    /// `z = x + t`: `∂L/∂x = ∂L/∂t = g`; the log-determinant is constant.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func backward(input x: UnsafePointer<Scalar>, ldx: Int, features: FeatureIndices,
                         parameters dt: UnsafeMutablePointer<Scalar>, ldp: Int,
                         gradient g: UnsafeMutablePointer<Scalar>, ldg: Int, rows: Int,
                         logDetGradient w: UnsafePointer<Scalar>, arena: inout Arena) {
        let nb = features.count
        features.indices.withUnsafeBufferPointer { idx in
            for r in 0..<rows {
                for j in 0..<nb { dt[r * ldp + j] = g[r * ldg + idx[j]] }
            }
        }
    }
}
