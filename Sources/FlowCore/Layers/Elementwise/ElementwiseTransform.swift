/// A monotone bijection applied feature by feature, each feature driven by its own parameters
/// (Papamakarios et al., "Normalizing Flows for Probabilistic Modeling and Inference", JMLR
/// 2021, §3.1: the "transformer" of a coupling or autoregressive layer).
///
/// A ``Coupling`` computes the parameters of its transformed features with a conditioner from the
/// features it keeps; an autoregressive layer computes them with a masked network. Both hand them
/// to the same transform, so the arithmetic of each transform lives in one place.
///
/// Parameters of one row are `features.count · parametersPerFeature` consecutive values; how
/// they are laid out among the features (blocked or feature-major) is the transform's own and
/// fixes the meaning of the conditioner's output columns in model files
/// (``outputFeature(_:features:)`` says which feature an output column belongs to).
public protocol ElementwiseTransform<Scalar> {
    associatedtype Scalar: FlowScalar

    /// The layer type name of the coupling built on this transform, e.g. `"affine_coupling"`.
    static var couplingTypeName: String { get }

    /// The transform's own hyper-parameters (a coupling adds its mask and conditioner settings).
    static var hyperParameters: [HyperParameter] { get }

    /// Builds the transform from a validated layer config; `context` prefixes error messages.
    init(config: [String: JSONValue], context: String) throws

    /// The transform's resolved hyper-parameters (every key of ``hyperParameters``).
    var config: [String: JSONValue] { get }

    /// Conditioner outputs per transformed feature.
    var parametersPerFeature: Int { get }

    /// The transformed feature (`0..<features`) that output column `column` of a row's
    /// parameters drives.
    func outputFeature(_ column: Int, features: Int) -> Int

    /// Scratch bytes of one ``apply(_:ldx:features:parameters:ldp:rows:logDet:inverse:arena:)`` or
    /// ``backward(input:ldx:features:parameters:ldp:gradient:ldg:rows:logDetGradient:arena:)`` call
    /// (independent of the row count).
    var scratchBytes: Int { get }

    /// `x_f ← τ(x_f; θ_f)` (or `τ⁻¹` with `inverse`) for the features `features` of `rows` rows
    /// (row `r` at `x + r·ldx`, its parameters at `parameters + r·ldp`); adds each row's
    /// `log|det|` of the map applied (negative for the inverse) to `logDet[r]`.
    func apply(_ x: UnsafeMutablePointer<Scalar>, ldx: Int, features: FeatureIndices,
               parameters: UnsafePointer<Scalar>, ldp: Int, rows: Int,
               logDet: UnsafeMutablePointer<Double>, inverse: Bool, arena: inout Arena)

    /// Back-propagation through the forward map at input `x`: on entry `gradient` holds `∂L/∂z`
    /// for the transformed features (row `r` at `gradient + r·ldg`), on return `∂L/∂x` there;
    /// `logDetGradient[r] = ∂L/∂logDet_r`. The parameters are replaced by `∂L/∂θ` in place.
    func backward(input x: UnsafePointer<Scalar>, ldx: Int, features: FeatureIndices,
                  parameters: UnsafeMutablePointer<Scalar>, ldp: Int,
                  gradient: UnsafeMutablePointer<Scalar>, ldg: Int, rows: Int,
                  logDetGradient: UnsafePointer<Scalar>, arena: inout Arena)
}

/// An element-wise transform that also drives autoregressive layers (``MaskedAutoregressive``).
public protocol AutoregressiveTransform<Scalar>: ElementwiseTransform {
    /// The layer type name of the autoregressive layer built on this transform, e.g.
    /// `"affine_autoregressive"`.
    static var autoregressiveTypeName: String { get }
}

/// The features a transform acts on within a row: ascending indices, with the start of the
/// range when they are contiguous (then kernels run over the range without an index list).
public struct FeatureIndices: Sendable {
    /// The feature indices, ascending.
    public let indices: [Int]
    /// `indices.first` when the indices form one contiguous range, nil otherwise.
    public let rangeStart: Int?

    public init(_ indices: [Int]) {
        self.indices = indices
        var start: Int? = indices.first ?? 0
        if let first = indices.first {
            for (k, i) in indices.enumerated() where i != first + k { start = nil; break }
        }
        rangeStart = start
    }

    /// The single feature `index` (no allocation: the index list is a constant).
    public init(one index: Int) {
        indices = index == 0 ? FeatureIndices.zero : [index]
        rangeStart = index
    }

    private static let zero = [0]

    /// Number of features.
    public var count: Int { indices.count }
}
