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
/// With ``contextFeatures`` `C > 0` (a conditional flow), the conditioner reads `[x_a, c]`:
/// `|a| + C → hidden… → |b|·P`.
///
/// - Complexity: O(N · (Σ widths products + |b|·P)) per call, dominated by the conditioner.
public final class Coupling<Transform: ElementwiseTransform>: ConditionalLayer, TapedBackward {
    public typealias Scalar = Transform.Scalar

    public static var typeName: String { Transform.couplingTypeName }
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("mask", .intArray, shorthand: true,
                           "0/1 per feature, 1 = conditioning; or \"half\" (default) or \"alternating\""),
            HyperParameter("invert_mask", .bool, "swap the mask's roles (default false)"),
            .hidden(of: "conditioner"),
            .activation(of: "conditioner"),
            .contextFeatures,
        ] + Transform.hyperParameters
    }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    let split: CouplingMask
    let net: MLP<Scalar>
    let transform: Transform
    public let contextFeatures: Int

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
        contextFeatures = try config.contextFeatures(context: context)
        net = try MLP.checked(widths: [split.identity.count + contextFeatures] + hidden + [outputs],
                              activation: activation, seed: seed, context: context)
    }

    public var config: [String: JSONValue] {
        var c = transform.config
        c["type"] = .string(Self.typeName)
        c["mask"] = JSONValue(split.mask)
        c["invert_mask"] = .bool(false)
        c["hidden"] = JSONValue(Array(net.widths.dropFirst().dropLast()))
        c["activation"] = .string(net.activation.rawValue)
        c["context_features"] = .number(Double(contextFeatures))
        return c
    }

    public var parameters: [Parameter<Scalar>] { net.parameters }

    /// Refreshes the conditioner's packed weights.
    public func parametersDidChange() { net.repack() }

    public func workspaceBytes(count: Int) -> Int {
        inputBytes(rows: count) + Arena.bytes(Scalar.self, count * net.outFeatures)
            + net.workspaceBytes(rows: count) + transform.scratchBytes
    }

    /// Scratch of ``conditionerInput(_:context:rows:arena:)``.
    private func inputBytes(rows: Int) -> Int {
        contextFeatures > 0 ? Arena.bytes(Scalar.self, rows * net.inFeatures) : split.gatherBytes(Scalar.self, rows: rows)
    }

    /// The conditioner's input rows as (pointer, row stride): `x_a` (in place when contiguous),
    /// or `[x_a, c]` gathered into the arena when the layer reads a context (zeros for nil).
    @inline(__always)
    private func conditionerInput(_ x: UnsafePointer<Scalar>, context: UnsafePointer<Scalar>?, rows: Int,
                                  arena: inout Arena) -> (UnsafePointer<Scalar>, Int) {
        let c = contextFeatures
        guard c > 0 else { return split.conditioningInput(x, rows: rows, arena: &arena) }
        let k = split.identity.count, w = k + c, d = split.dimension
        let buffer = arena.take(Scalar.self, rows * w)
        split.identity.withUnsafeBufferPointer { idx in
            for r in 0..<rows {
                let dst = buffer + r * w, src = x + r * d
                for j in 0..<k { dst[j] = src[idx[j]] }
                if let context { (dst + k).update(from: context + r * c, count: c) } else { (dst + k).update(repeating: 0, count: c) }
            }
        }
        return (UnsafePointer(buffer), w)
    }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == AffineTransform<Double>)
    @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        apply(x, count: count, context: nil, logDet: logDet, arena: &arena, inverse: false)
    }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        apply(x, count: count, context: context, logDet: logDet, arena: &arena, inverse: false)
    }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        apply(z, count: count, context: context, logDet: logDet, arena: &arena, inverse: true)
    }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == AffineTransform<Double>)
    @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        apply(z, count: count, context: nil, logDet: logDet, arena: &arena, inverse: true)
    }

    @inline(__always)
    private func apply(_ x: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                       logDet: UnsafeMutablePointer<Double>, arena: inout Arena, inverse: Bool) {
        let (input, ld) = conditionerInput(UnsafePointer(x), context: context, rows: count, arena: &arena)
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
        forward(x, count: count, context: nil, logDet: logDet, tape: tape, arena: &arena)
    }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                        logDet: UnsafeMutablePointer<Double>, tape: UnsafeMutableRawPointer, arena: inout Arena) {
        let (input, ld) = conditionerInput(UnsafePointer(x), context: context, rows: count, arena: &arena)
        let theta = net.forwardRecording(input, ldx: ld, rows: count, couplingTape: tape)
        transform.apply(x, ldx: split.dimension, features: split.transformedFeatures, parameters: theta,
                        ldp: net.outFeatures, rows: count, logDet: logDet, inverse: false, arena: &arena)
    }
}

extension Coupling {
    public func backwardWorkspaceBytes(count: Int) -> Int {
        split.couplingBackwardBytes(net, rows: count) + transform.scratchBytes
            + (contextFeatures > 0 ? 2 * Arena.bytes(Scalar.self, count * net.inFeatures) : 0)
    }

    /// Through the transform (``ElementwiseTransform/backward(input:ldx:features:parameters:ldp:gradient:ldg:rows:logDetGradient:arena:)``,
    /// which turns `∂L/∂z_b` into `∂L/∂x_b` and the conditioner output into `∂L/∂θ`), then through
    /// the conditioner into its parameters and `∂L/∂x_a` (added to `g_a`, since `z_a = x_a`).
    /// `recorded`: a training tape, or nil to run the network's recording forward pass here.
    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == AffineTransform<Double>)
    @_specialize(where Transform == RationalQuadraticTransform<Float>)
    func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                  logDetGradient w: UnsafePointer<Scalar>, recorded: UnsafeRawPointer?, arena: inout Arena) {
        backward(input: x, count: count, context: nil, gradient: g, logDetGradient: w, contextGradient: nil,
                 recorded: recorded, arena: &arena)
    }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == AffineTransform<Double>)
    @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func backward(input x: UnsafePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                         gradient g: UnsafeMutablePointer<Scalar>, logDetGradient w: UnsafePointer<Scalar>,
                         contextGradient: UnsafeMutablePointer<Scalar>?, recorded: UnsafeRawPointer?, arena: inout Arena) {
        let d = split.dimension
        let (input, ld) = conditionerInput(x, context: context, rows: count, arena: &arena)
        let (theta, tape) = net.couplingTape(recorded, input: input, ldx: ld, rows: count, arena: &arena)
        transform.backward(input: x, ldx: d, features: split.transformedFeatures, parameters: theta,
                           ldp: net.outFeatures, gradient: g, ldg: d, rows: count, logDetGradient: w, arena: &arena)
        let dInput = arena.take(Scalar.self, count * net.inFeatures)
        net.backward(input, ldx: ld, rows: count, tape: tape, outputGradient: theta, inputGradient: dInput, arena: &arena)
        let c = contextFeatures
        guard c > 0 else { return split.addToConditioning(dInput, rows: count, gradient: g) }
        let k = split.identity.count, width = k + c
        split.identity.withUnsafeBufferPointer { idx in
            for r in 0..<count {
                let src = dInput + r * width, gr = g + r * d
                for j in 0..<k { gr[idx[j]] += src[j] }
                if let contextGradient {
                    let dc = contextGradient + r * c
                    for j in 0..<c { dc[j] += src[k + j] }
                }
            }
        }
    }
}

/// Affine coupling (RealNVP): ``Coupling`` with ``AffineTransform``; type `"affine_coupling"`.
public typealias AffineCoupling<Scalar: FlowScalar> = Coupling<AffineTransform<Scalar>>
/// Additive coupling (NICE): ``Coupling`` with ``AdditiveTransform``; type `"additive_coupling"`.
public typealias AdditiveCoupling<Scalar: FlowScalar> = Coupling<AdditiveTransform<Scalar>>
/// Rational-quadratic spline coupling: ``Coupling`` with ``RationalQuadraticTransform``; type
/// `"spline_coupling"`.
public typealias SplineCoupling<Scalar: FlowScalar> = Coupling<RationalQuadraticTransform<Scalar>>
