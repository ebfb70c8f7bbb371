/// A coupling layer: a mask splits the features, a conditioner reads the kept ones, and an
/// element-wise transform maps the others with the parameters it computes (Dinh et al., "NICE",
/// 2015; "Density estimation using Real NVP", ICLR 2017; Durkan et al., "Neural Spline Flows",
/// NeurIPS 2019).
///
/// With `a` the conditioning features (mask 1) and `b` the transformed ones (mask 0):
///
///     forward:  z_a = x_a,   z_b = τ(x_b; θ(x_a)),    log|det J| = log|det ∂τ/∂x_b|
///     inverse:  x_a = z_a,   x_b = τ⁻¹(z_b; θ(z_a))
///
/// The conditioner `θ` is an ``MLP`` `|a| → hidden… → |b|·P` (`P` =
/// ``ElementwiseTransform/parametersPerFeature``) whose last layer starts at zero; every
/// transform is the identity at zero parameters, so a new layer is the identity. The transform
/// fixes the layer type: ``AffineCoupling`` (RealNVP), ``AdditiveCoupling`` (NICE),
/// ``SplineCoupling`` (neural spline flows).
///
/// - Complexity: O(N · (Σ widths products + |b|·P)) per call, dominated by the conditioner.
public final class Coupling<Transform: ElementwiseTransform>: FlowLayer, TapedBackward {
    public typealias Scalar = Transform.Scalar

    public static var typeName: String { Transform.couplingTypeName }
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("mask", .intArray, shorthand: true,
                           "0/1 per feature, 1 = conditioning; or \"half\" (default) or \"alternating\""),
            HyperParameter("invert_mask", .bool, "swap the mask's roles (default false)"),
            HyperParameter("hidden", .intList, "conditioner hidden widths (default [64, 64])"),
            HyperParameter("activation", .string, "conditioner activation (default \"relu\")"),
        ] + Transform.hyperParameters
    }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    let split: CouplingMask
    let net: MLP<Scalar>
    let transform: Transform

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        let context = Self.typeName
        split = try CouplingMask(spec: config["mask"], invert: config.bool("invert_mask", default: false),
                                 dimension: eventShape.reduce(1, *), context: context)
        let (hidden, activation) = try MLP<Scalar>.settings(config, context: context)
        transform = try Transform(config: config, context: context)
        let (outputs, overflow) = split.transformed.count.multipliedReportingOverflow(by: transform.parametersPerFeature)
        guard !overflow, outputs <= Limits.maxParametersPerLayer else {
            throw FlowError.limitExceeded("\(context): \(split.transformed.count) transformed features × "
                + "\(transform.parametersPerFeature) parameters each is too many conditioner outputs")
        }
        inputShape = eventShape
        net = try MLP.checked(widths: [split.identity.count] + hidden + [outputs],
                              activation: activation, seed: seed, context: context)
    }

    public var config: [String: JSONValue] {
        var c = transform.config
        c["type"] = .string(Self.typeName)
        c["mask"] = JSONValue(split.mask)
        c["invert_mask"] = .bool(false)
        c["hidden"] = JSONValue(Array(net.widths.dropFirst().dropLast()))
        c["activation"] = .string(net.activation.rawValue)
        return c
    }

    public var parameters: [Parameter<Scalar>] { net.parameters }

    /// Refreshes the conditioner's packed weights.
    public func parametersDidChange() { net.repack() }

    public func workspaceBytes(count: Int) -> Int {
        split.gatherBytes(Scalar.self, rows: count) + Arena.bytes(Scalar.self, count * net.outFeatures)
            + net.workspaceBytes(rows: count) + transform.scratchBytes
    }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == AffineTransform<Double>)
    @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        apply(x, count: count, logDet: logDet, arena: &arena, inverse: false)
    }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == AffineTransform<Double>)
    @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        apply(z, count: count, logDet: logDet, arena: &arena, inverse: true)
    }

    @inline(__always)
    private func apply(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                       logDet: UnsafeMutablePointer<Double>, arena: inout Arena, inverse: Bool) {
        let (input, ld) = split.conditioningInput(UnsafePointer(x), rows: count, arena: &arena)
        let theta = arena.take(Scalar.self, count * net.outFeatures)
        net(input, ldx: ld, rows: count, into: theta, arena: &arena)
        transform.apply(x, ldx: split.dimension, features: split.transformedFeatures, parameters: theta,
                        ldp: net.outFeatures, rows: count, logDet: logDet, inverse: inverse, arena: &arena)
    }

    /// Tape of a training pass: the conditioner output (`count × |b|·P`), then the network's
    /// hidden activations (``MLP/tapeCount(rows:)``); the backward pass then skips the network's
    /// second forward pass.
    public func tapeBytes(count: Int) -> Int { net.couplingTapeBytes(rows: count) }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == AffineTransform<Double>)
    @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, logDet: UnsafeMutablePointer<Double>,
                        tape: UnsafeMutableRawPointer, arena: inout Arena) {
        let (input, ld) = split.conditioningInput(UnsafePointer(x), rows: count, arena: &arena)
        let theta = net.forwardRecording(input, ldx: ld, rows: count, couplingTape: tape)
        transform.apply(x, ldx: split.dimension, features: split.transformedFeatures, parameters: theta,
                        ldp: net.outFeatures, rows: count, logDet: logDet, inverse: false, arena: &arena)
    }
}

extension Coupling {
    public func backwardWorkspaceBytes(count: Int) -> Int {
        split.couplingBackwardBytes(net, rows: count) + transform.scratchBytes
    }

    /// Through the transform (``ElementwiseTransform/backward(input:ldx:features:parameters:ldp:gradient:ldg:rows:logDetGradient:arena:)``,
    /// which turns `∂L/∂z_b` into `∂L/∂x_b` and the conditioner output into `∂L/∂θ`), then through
    /// the conditioner into its parameters and `∂L/∂x_a` (added to `g_a`, since `z_a = x_a`).
    /// `recorded`: a training tape, or nil to run the network's recording forward pass here.
    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == AffineTransform<Double>)
    @_specialize(where Transform == RationalQuadraticTransform<Float>)
    func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                  logDetGradient w: UnsafePointer<Scalar>, recorded: UnsafeRawPointer?, arena: inout Arena) {
        let d = split.dimension
        let (input, ld) = split.conditioningInput(x, rows: count, arena: &arena)
        let (theta, tape) = net.couplingTape(recorded, input: input, ldx: ld, rows: count, arena: &arena)
        transform.backward(input: x, ldx: d, features: split.transformedFeatures, parameters: theta,
                           ldp: net.outFeatures, gradient: g, ldg: d, rows: count, logDetGradient: w, arena: &arena)
        let dxa = arena.take(Scalar.self, count * split.identity.count)
        net.backward(input, ldx: ld, rows: count, tape: tape, outputGradient: theta, inputGradient: dxa, arena: &arena)
        split.addToConditioning(dxa, rows: count, gradient: g)
    }
}

/// Affine coupling (RealNVP): ``Coupling`` with ``AffineTransform``; type `"affine_coupling"`.
public typealias AffineCoupling<Scalar: FlowScalar> = Coupling<AffineTransform<Scalar>>
/// Additive coupling (NICE): ``Coupling`` with ``AdditiveTransform``; type `"additive_coupling"`.
public typealias AdditiveCoupling<Scalar: FlowScalar> = Coupling<AdditiveTransform<Scalar>>
/// Rational-quadratic spline coupling: ``Coupling`` with ``RationalQuadraticTransform``; type
/// `"spline_coupling"`.
public typealias SplineCoupling<Scalar: FlowScalar> = Coupling<RationalQuadraticTransform<Scalar>>
