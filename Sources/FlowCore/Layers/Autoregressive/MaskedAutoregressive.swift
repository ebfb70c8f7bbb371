/// A masked autoregressive layer: a MADE network (Germain et al., ICML 2015; ``AutoregressiveOrder``)
/// computes each feature's transform parameters from the features before it in an order, and an
/// element-wise transform maps the feature (Papamakarios et al., "Masked Autoregressive Flow for
/// Density Estimation", NeurIPS 2017; Kingma et al., "Improved Variational Inference with
/// Inverse Autoregressive Flow", NeurIPS 2016; Durkan et al., "Neural Spline Flows", 2019).
///
/// With `P(u)_i = τ(u_i; θ_i(u_{<i}))` (one network pass; `log|det ∂P/∂u| = Σ log τ′`) and its
/// inverse `P⁻¹` (D passes, one feature each, in the order):
///
///     direction "maf":  forward (data → latent) = P,    inverse = P⁻¹   (density in one pass)
///     direction "iaf":  forward = P⁻¹,                  inverse = P     (sampling in one pass)
///
/// The network's last layer starts at zero and every transform is the identity at zero
/// parameters, so a new layer is the identity. The output columns follow the transform's layout
/// (``ElementwiseTransform/outputFeature(_:features:)``), as in a coupling over all features.
///
/// Training through `P⁻¹` (an IAF's forward map) uses the implicit-function gradient: with
/// `z = P⁻¹(x)`, `∂L/∂x = J_P(z)⁻ᵀ·(∂L/∂z − w·∇S(z))` (`S = log|det J_P|`, `w = ∂L/∂logDet`),
/// solved exactly by D Jacobi sweeps over the triangular `J_Pᵀ` (one vector-Jacobian product
/// through the network each), then one product for the parameters.
///
/// - Complexity: `P`: one network pass; `P⁻¹`: D passes; `P⁻¹`'s backward pass: D + 2
///   vector-Jacobian products.
public final class MaskedAutoregressive<Transform: AutoregressiveTransform>: FlowLayer, TapedBackward {
    public typealias Scalar = Transform.Scalar

    /// Which map is the layer's forward (data → latent) pass.
    public enum Direction: String, CaseIterable, Sendable {
        /// Masked autoregressive flow: forward in one pass, inverse (sampling) in D passes.
        case maf
        /// Inverse autoregressive flow: inverse (sampling) in one pass, forward (density) in D.
        case iaf
    }

    public static var typeName: String { Transform.autoregressiveTypeName }
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("order", .intArray, shorthand: true,
                           "each feature's position in the autoregressive order (a permutation of 0..<D); "
                               + "or \"natural\" (default), \"reversed\" or \"random\""),
            HyperParameter("hidden", .intList, "MADE hidden widths (default [64, 64])"),
            HyperParameter("hidden_degrees", .intArray,
                           "degree of every hidden unit, layer after layer, in 0..<D (default: k mod max(1, D−1) + min(1, D−1))"),
            HyperParameter("activation", .string, "MADE activation (default \"relu\")"),
            HyperParameter("direction", .string, "\"maf\" (default: density in one pass) or \"iaf\" (sampling in one pass)"),
        ] + Transform.hyperParameters
    }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    let structure: AutoregressiveOrder
    let direction: Direction
    let net: MLP<Scalar>
    let transform: Transform
    /// All features, `0..<D`.
    let features: FeatureIndices
    /// Per feature, the network output columns that drive it (ascending): one feature's
    /// parameters in the transform's one-feature layout.
    let featureColumns: [[Int]]
    /// Features in the autoregressive order.
    let orderedFeatures: [Int]
    /// One feature at index 0 (a pass of ``sequentialInverse``).
    private static var singleFeature: FeatureIndices { FeatureIndices(one: 0) }

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        let context = Self.typeName
        let d = eventShape.reduce(1, *)
        let (hidden, activation) = try MLP<Scalar>.settings(config, context: context)
        structure = try AutoregressiveOrder(order: config["order"], hiddenDegrees: config["hidden_degrees"]?.intArrayValue,
                                            hidden: hidden, dimension: d, seed: seed, context: context)
        let name = config.string("direction", default: Direction.maf.rawValue)
        guard let direction = Direction(rawValue: name) else {
            throw FlowError.invalidSpec("\(context): direction must be \"maf\" or \"iaf\", got \"\(name)\"")
        }
        self.direction = direction
        let transform = try Transform(config: config, context: context)
        self.transform = transform
        let (outputs, overflow) = d.multipliedReportingOverflow(by: transform.parametersPerFeature)
        guard !overflow, outputs <= Limits.maxParametersPerLayer else {
            throw FlowError.limitExceeded("\(context): \(d) features × \(transform.parametersPerFeature) parameters each is too many outputs")
        }
        let widths = [d] + hidden + [outputs]
        // Checked before the masks are built (they hold one value per weight).
        _ = try MLP<Scalar>.checkedSize(widths: widths, context: context)
        let structure = self.structure
        let masks: [[Scalar]] = structure.masks(contextSize: 0, outputs: outputs) { transform.outputFeature($0, features: d) }
        net = try MLP.checked(widths: widths, activation: activation, seed: seed, context: context, masks: masks)
        features = FeatureIndices(Array(0..<d))
        var columns = [[Int]](repeating: [], count: d)
        for c in 0..<outputs { columns[transform.outputFeature(c, features: d)].append(c) }
        featureColumns = columns
        orderedFeatures = (0..<d).sorted { structure.order[$0] < structure.order[$1] }
        inputShape = eventShape
    }

    public var config: [String: JSONValue] {
        var c = transform.config
        c["type"] = .string(Self.typeName)
        c["order"] = JSONValue(structure.order)
        c["hidden"] = JSONValue(Array(net.widths.dropFirst().dropLast()))
        c["hidden_degrees"] = JSONValue(structure.hiddenDegrees.flatMap { $0 })
        c["activation"] = .string(net.activation.rawValue)
        c["direction"] = .string(direction.rawValue)
        return c
    }

    public var parameters: [Parameter<Scalar>] { net.parameters }

    /// Zeroes the masked weights and refreshes the network's packed weights.
    public func parametersDidChange() { net.repack() }

    var dimension: Int { features.count }

    public func workspaceBytes(count: Int) -> Int {
        let d = dimension, p = transform.parametersPerFeature
        return Arena.bytes(Scalar.self, count * net.outFeatures) + net.workspaceBytes(rows: count) + transform.scratchBytes
            + Arena.bytes(Scalar.self, count * d) + Arena.bytes(Scalar.self, count * p) + Arena.bytes(Scalar.self, count)
    }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        switch direction {
        case .maf: parallel(x, count: count, logDet: logDet, arena: &arena)
        case .iaf: sequentialInverse(x, count: count, logDet: logDet, arena: &arena)
        }
    }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        switch direction {
        case .maf: sequentialInverse(z, count: count, logDet: logDet, arena: &arena)
        case .iaf: parallel(z, count: count, logDet: logDet, arena: &arena)
        }
    }

    /// `u ← P(u)`, adding `log|det ∂P/∂u|`: one network pass over `u`, then the transform.
    @inline(__always)
    private func parallel(_ u: UnsafeMutablePointer<Scalar>, count: Int, logDet: UnsafeMutablePointer<Double>,
                          arena: inout Arena) {
        let theta = arena.take(Scalar.self, count * net.outFeatures)
        net(UnsafePointer(u), ldx: dimension, rows: count, into: theta, arena: &arena)
        transform.apply(u, ldx: dimension, features: features, parameters: theta, ldp: net.outFeatures, rows: count,
                        logDet: logDet, inverse: false, arena: &arena)
    }

    /// `v ← P⁻¹(v)`, adding `−log|det ∂P/∂u|` at the result: D passes in the order, pass `k`
    /// computing feature `orderedFeatures[k]` from the features before it (which the masks let
    /// the network see; the others still hold `v`'s values and do not reach that output).
    private func sequentialInverse(_ v: UnsafeMutablePointer<Scalar>, count: Int, logDet: UnsafeMutablePointer<Double>,
                                   arena: inout Arena) {
        let d = dimension, p = transform.parametersPerFeature, out = net.outFeatures
        let target = arena.take(Scalar.self, count * d)
        target.update(from: v, count: count * d)
        let theta = arena.take(Scalar.self, count * out)
        let one = arena.take(Scalar.self, count * p)
        let column = arena.take(Scalar.self, count)
        let afterScratch = arena
        for f in orderedFeatures {
            arena = afterScratch
            net(UnsafePointer(v), ldx: d, rows: count, into: theta, arena: &arena)
            let columns = featureColumns[f]
            for r in 0..<count {
                for (k, c) in columns.enumerated() { one[r * p + k] = theta[r * out + c] }
                column[r] = target[r * d + f]
            }
            transform.apply(column, ldx: 1, features: Self.singleFeature, parameters: one, ldp: p, rows: count, logDet: logDet,
                            inverse: true, arena: &arena)
            for r in 0..<count { v[r * d + f] = column[r] }
        }
    }

    /// Tape of a training pass through `P` (direction "maf"): the network output, then its
    /// hidden activations; 0 for "iaf", whose backward pass recomputes.
    public func tapeBytes(count: Int) -> Int { direction == .maf ? net.couplingTapeBytes(rows: count) : 0 }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, logDet: UnsafeMutablePointer<Double>,
                        tape: UnsafeMutableRawPointer, arena: inout Arena) {
        guard direction == .maf else { return forward(x, count: count, logDet: logDet, arena: &arena) }
        let theta = net.forwardRecording(UnsafePointer(x), ldx: dimension, rows: count, couplingTape: tape)
        transform.apply(x, ldx: dimension, features: features, parameters: theta, ldp: net.outFeatures, rows: count,
                        logDet: logDet, inverse: false, arena: &arena)
    }
}

extension MaskedAutoregressive {
    public func backwardWorkspaceBytes(count: Int) -> Int {
        let d = dimension, rowsD = Arena.bytes(Scalar.self, count * d)
        let base = Arena.bytes(Scalar.self, count * net.outFeatures) + Arena.bytes(Scalar.self, net.tapeCount(rows: count))
            + rowsD + net.backwardWorkspaceBytes(rows: count) + transform.scratchBytes
        guard direction == .iaf else { return base }
        // z, the network's output and tape, w's negation, zeros, r, the diagonal, λ, the sweep's
        // product; then the largest of a vector-Jacobian product, the diagonal's θ copy and the
        // sequential pass.
        let outBytes = Arena.bytes(Scalar.self, count * net.outFeatures)
        let vjp = outBytes + rowsD + transform.scratchBytes + net.backwardWorkspaceBytes(rows: count)
        let sequential = Arena.bytes(Double.self, count) + workspaceBytes(count: count)
        return 5 * rowsD + outBytes + Arena.bytes(Scalar.self, net.tapeCount(rows: count))
            + 2 * Arena.bytes(Scalar.self, count) + Swift.max(vjp, outBytes + transform.scratchBytes, sequential) + rowsD
    }

    /// `uᵀ·J_P(u₀) + v·∇S(u₀)` into `g` (and, with `parameterGradients`, `uᵀ∂P/∂φ + v·∂S/∂φ` added
    /// to the network's gradients), for `P` at the point `u₀` whose network output and tape are
    /// `theta`/`tape` (`theta` is left intact). `g` holds `u` on entry.
    private func vectorJacobianProduct(at u0: UnsafePointer<Scalar>, theta: UnsafePointer<Scalar>,
                                       tape: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                                       logDetGradient w: UnsafePointer<Scalar>, parameterGradients: Bool,
                                       arena: inout Arena) {
        let d = dimension, out = net.outFeatures
        let dTheta = arena.take(Scalar.self, count * out)
        dTheta.update(from: theta, count: count * out)
        transform.backward(input: u0, ldx: d, features: features, parameters: dTheta, ldp: out, gradient: g, ldg: d,
                           rows: count, logDetGradient: w, arena: &arena)
        let dx = arena.take(Scalar.self, count * d)
        net.backward(u0, ldx: d, rows: count, tape: tape, outputGradient: dTheta, inputGradient: dx,
                     parameterGradients: parameterGradients, arena: &arena)
        for i in 0..<(count * d) { g[i] += dx[i] }
    }

    /// "maf": through the transform, then the network (as a coupling over all features).
    /// "iaf": the implicit-function gradient of the type's documentation.
    func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                  logDetGradient w: UnsafePointer<Scalar>, recorded: UnsafeRawPointer?, arena: inout Arena) {
        let d = dimension, out = net.outFeatures
        guard direction == .iaf else {
            let (theta, tape) = net.couplingTape(recorded, input: x, ldx: d, rows: count, arena: &arena)
            transform.backward(input: x, ldx: d, features: features, parameters: theta, ldp: out, gradient: g, ldg: d,
                               rows: count, logDetGradient: w, arena: &arena)
            let dx = arena.take(Scalar.self, count * d)
            net.backward(x, ldx: d, rows: count, tape: tape, outputGradient: theta, inputGradient: dx, arena: &arena)
            for i in 0..<(count * d) { g[i] += dx[i] }
            return
        }
        // z = P⁻¹(x) and the network at z.
        let z = arena.take(Scalar.self, count * d)
        z.update(from: x, count: count * d)
        do {
            var scratch = arena
            let ignored = scratch.take(Double.self, count)
            ignored.update(repeating: 0, count: count)
            sequentialInverse(z, count: count, logDet: ignored, arena: &scratch)
        }
        let (theta, tape) = net.couplingTape(nil, input: UnsafePointer(z), ldx: d, rows: count, arena: &arena)
        let zero = arena.take(Scalar.self, count)
        zero.update(repeating: 0, count: count)
        let negW = arena.take(Scalar.self, count)
        for r in 0..<count { negW[r] = -w[r] }
        // r = ∂L/∂z − w·∇S(z).
        let rhs = arena.take(Scalar.self, count * d)
        rhs.update(repeating: 0, count: count * d)
        var mark = arena
        vectorJacobianProduct(at: z, theta: theta, tape: tape, count: count, gradient: rhs, logDetGradient: negW,
                              parameterGradients: false, arena: &mark)
        for i in 0..<(count * d) { rhs[i] += g[i] }
        // The diagonal τ′(z_i; θ_i).
        let diagonal = arena.take(Scalar.self, count * d)
        diagonal.update(repeating: 1, count: count * d)
        do {
            var scratch = arena
            let thetaCopy = scratch.take(Scalar.self, count * out)
            thetaCopy.update(from: theta, count: count * out)
            transform.backward(input: z, ldx: d, features: features, parameters: thetaCopy, ldp: out, gradient: diagonal,
                               ldg: d, rows: count, logDetGradient: zero, arena: &scratch)
        }
        // Jacobi sweeps on J_Pᵀλ = r: λ ← λ + (r − J_Pᵀλ)/τ′. J_P is triangular in the order,
        // so after sweep k the k last features in the order are exact: D sweeps solve it.
        let lambda = arena.take(Scalar.self, count * d)
        for i in 0..<(count * d) { lambda[i] = rhs[i] / diagonal[i] }
        let product = arena.take(Scalar.self, count * d)
        for _ in 1..<Swift.max(d, 1) {
            product.update(from: lambda, count: count * d)
            mark = arena
            vectorJacobianProduct(at: z, theta: theta, tape: tape, count: count, gradient: product, logDetGradient: zero,
                                  parameterGradients: false, arena: &mark)
            for i in 0..<(count * d) { lambda[i] += (rhs[i] - product[i]) / diagonal[i] }
        }
        // Parameters: −λᵀ∂P/∂φ − w·∂S/∂φ.
        for i in 0..<(count * d) { product[i] = -lambda[i] }
        mark = arena
        vectorJacobianProduct(at: z, theta: theta, tape: tape, count: count, gradient: product, logDetGradient: negW,
                              parameterGradients: true, arena: &mark)
        g.update(from: lambda, count: count * d)
    }
}

/// MAF / IAF with affine transforms: type `"affine_autoregressive"`.
public typealias AffineAutoregressive<Scalar: FlowScalar> = MaskedAutoregressive<AffineTransform<Scalar>>
/// Autoregressive rational-quadratic splines: type `"spline_autoregressive"`.
public typealias SplineAutoregressive<Scalar: FlowScalar> = MaskedAutoregressive<RationalQuadraticTransform<Scalar>>
