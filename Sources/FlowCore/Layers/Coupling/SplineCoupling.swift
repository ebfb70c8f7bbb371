import RealModule

/// Rational-quadratic spline coupling (Durkan et al., "Neural Spline Flows", NeurIPS 2019), with
/// the semantics of nflows' `PiecewiseRationalQuadraticCouplingTransform(tails="linear")` except
/// for the interior-derivative shift `c` below (nflows applies it to the boundary knots only).
///
/// With `a` the conditioning features (mask 1) and `b` the transformed ones (mask 0):
///
///     forward:  z_a = x_a,   z_b[j] = RQS_j(x_b[j]; u_j(x_a)),   log|det J| = Σ_j log RQS_j′(x_b[j])
///     inverse:  x_a = z_a,   x_b[j] = RQS_j⁻¹(z_b[j]; u_j(z_a))
///
/// Each `RQS_j` is a monotonic rational-quadratic spline with `K = bins` bins on `[−B, B]`
/// (`B = bound`) and the identity outside (linear tails; the boundary knots have derivative 1,
/// so the map is C¹). See ``RationalQuadraticSpline`` for the exact parameterisation.
///
/// The conditioner is an ``MLP`` `|a| → hidden… → |b|·(3K − 1)`. Output columns
/// `[j·(3K−1), (j+1)·(3K−1))` belong to transformed feature `j` (the `j`-th mask-0 index, in
/// ascending order) and hold, in this order, `K` unnormalised bin widths, `K` unnormalised bin
/// heights and `K − 1` unnormalised interior knot derivatives:
///
///     widths  = m_w + (1 − m_w·K)·softmax(uw)      (fractions of 2B; likewise heights with m_h)
///     derivs  = m_d + softplus(ud + c),  c = log(e^{1−m_d} − 1)   (boundary knots: 1)
///
/// The shift `c` makes a zero input give derivative exactly 1. The conditioner's last layer
/// starts at zero, so the bins start uniform, every derivative 1, and a new layer is exactly the
/// identity.
///
/// - Complexity: O(N · (Σ widths products + |b|·K)) per call, dominated by the conditioner.
public final class SplineCoupling<Scalar: FlowScalar>: FlowLayer, TapedBackward {
    public static var typeName: String { "spline_coupling" }
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("mask", .intArray, shorthand: true,
                           "0/1 per feature, 1 = conditioning; or \"half\" (default) or \"alternating\""),
            HyperParameter("invert_mask", .bool, "swap the mask's roles (default false)"),
            HyperParameter("hidden", .intList, "conditioner hidden widths (default [64, 64])"),
            HyperParameter("activation", .string, "conditioner activation (default \"relu\")"),
            HyperParameter("bins", .int, "number of spline bins K (default 8)"),
            HyperParameter("bound", .double, "the spline acts on [−bound, bound], identity outside (default 3)"),
            HyperParameter("min_bin_width", .double, "minimum bin width as a fraction of 2·bound (default 1e-3)"),
            HyperParameter("min_bin_height", .double, "minimum bin height as a fraction of 2·bound (default 1e-3)"),
            HyperParameter("min_derivative", .double, "minimum knot derivative (default 1e-3)"),
        ]
    }

    /// Largest accepted `bins`.
    static var maxBins: Int { 4096 }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    let split: CouplingMask
    let net: MLP<Scalar>
    let spline: RationalQuadraticSpline<Scalar>
    /// Spec values as given (kept in Double so the resolved spec round-trips exactly).
    let bound: Double
    let minBinWidth: Double
    let minBinHeight: Double
    let minDerivative: Double

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        let context = Self.typeName
        let d = eventShape.reduce(1, *)
        split = try CouplingMask(spec: config["mask"], invert: config.bool("invert_mask", default: false),
                                 dimension: d, context: context)
        let hidden = config.ints("hidden", default: [64, 64])
        try validateHidden(hidden, context: context)
        let act = config.string("activation", default: "relu")
        guard let activation = Activation(rawValue: act) else {
            throw FlowError.invalidSpec("\(context): unknown activation \"\(act)\" (known: \(Activation.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let bins = config.int("bins", default: 8)
        guard bins >= 1, bins <= Self.maxBins else {
            throw FlowError.invalidSpec("\(context): bins must be between 1 and \(Self.maxBins), got \(bins)")
        }
        bound = config.double("bound", default: 3)
        guard bound > 0, bound.isFinite, Scalar(bound).isFinite else {
            throw FlowError.invalidSpec("\(context): bound must be a positive finite number")
        }
        minBinWidth = config.double("min_bin_width", default: 1e-3)
        minBinHeight = config.double("min_bin_height", default: 1e-3)
        for (name, m) in [("min_bin_width", minBinWidth), ("min_bin_height", minBinHeight)] {
            guard m > 0, m * Double(bins) < 1 else {
                throw FlowError.invalidSpec("\(context): \(name) must be positive with \(name)·bins < 1, got \(m) with \(bins) bins")
            }
        }
        minDerivative = config.double("min_derivative", default: 1e-3)
        guard minDerivative > 0, minDerivative < 1 else {
            throw FlowError.invalidSpec("\(context): min_derivative must lie in (0, 1), got \(minDerivative)")
        }
        spline = RationalQuadraticSpline(bins: bins, bound: bound, minBinWidth: minBinWidth,
                                         minBinHeight: minBinHeight, minDerivative: minDerivative)
        let (outputs, overflow) = split.transformed.count.multipliedReportingOverflow(by: spline.rawCount)
        guard !overflow, outputs <= Limits.maxParametersPerLayer else {
            throw FlowError.limitExceeded("\(context): \(split.transformed.count) transformed features × \(spline.rawCount) spline inputs is too many conditioner outputs")
        }
        inputShape = eventShape
        net = try MLP.checked(widths: [split.identity.count] + hidden + [outputs],
                              activation: activation, seed: seed, context: context)
    }

    public var config: [String: JSONValue] {
        [
            "type": .string(Self.typeName),
            "mask": JSONValue(split.mask),
            "invert_mask": .bool(false),
            "hidden": JSONValue(Array(net.widths.dropFirst().dropLast())),
            "activation": .string(net.activation.rawValue),
            "bins": .number(Double(spline.bins)),
            "bound": .number(bound),
            "min_bin_width": .number(minBinWidth),
            "min_bin_height": .number(minBinHeight),
            "min_derivative": .number(minDerivative),
        ]
    }

    public var parameters: [Parameter<Scalar>] { net.parameters }

    /// Refreshes the conditioner's packed weights.
    public func parametersDidChange() { net.repack() }

    public func workspaceBytes(count: Int) -> Int {
        split.gatherBytes(Scalar.self, rows: count) + Arena.bytes(Scalar.self, count * net.outFeatures)
            + net.workspaceBytes(rows: count) + Arena.bytes(Scalar.self, spline.scratchCount)
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        apply(x, count: count, logDet: logDet, arena: &arena, inverse: false)
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        apply(z, count: count, logDet: logDet, arena: &arena, inverse: true)
    }

    @inline(__always)
    private func apply(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                       logDet: UnsafeMutablePointer<Double>, arena: inout Arena, inverse: Bool) {
        let (input, ld) = split.conditioningInput(UnsafePointer(x), rows: count, arena: &arena)
        let raw = arena.take(Scalar.self, count * net.outFeatures)
        net(input, ldx: ld, rows: count, into: raw, arena: &arena)
        couple(x, raw: raw, count: count, logDet: logDet, arena: &arena, inverse: inverse)
    }

    /// Tape of a training pass: the spline parameters (`count × |b|·(3K − 1)`), then the
    /// network's hidden activations (``MLP/tapeCount(rows:)``); the backward pass then skips the
    /// network's second forward pass.
    public func tapeBytes(count: Int) -> Int { net.couplingTapeBytes(rows: count) }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, logDet: UnsafeMutablePointer<Double>,
                        tape: UnsafeMutableRawPointer, arena: inout Arena) {
        let (input, ld) = split.conditioningInput(UnsafePointer(x), rows: count, arena: &arena)
        let raw = net.forwardRecording(input, ldx: ld, rows: count, couplingTape: tape)
        couple(x, raw: raw, count: count, logDet: logDet, arena: &arena, inverse: false)
    }

    /// The spline of every transformed feature, from the conditioner output `raw`.
    @inline(__always)
    private func couple(_ x: UnsafeMutablePointer<Scalar>, raw: UnsafePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena, inverse: Bool) {
        let d = split.dimension, nb = split.transformed.count, m = spline.rawCount
        let knots = spline.knots(in: arena.take(Scalar.self, spline.scratchCount))
        split.transformed.withUnsafeBufferPointer { idx in
            for r in 0..<count {
                let row = x + r * d, rr = raw + r * nb * m
                var sum = 0.0
                for j in 0..<nb {
                    let i = idx[j]
                    let v = row[i]
                    guard spline.contains(v) else { continue }   // linear tails: identity, log-det 0
                    let (out, logDerivative) = inverse
                        ? spline.inverse(v, raw: rr + j * m, scratch: knots)
                        : spline.forward(v, raw: rr + j * m, scratch: knots)
                    row[i] = out
                    sum += Double(logDerivative)
                }
                logDet[r] += sum
            }
        }
    }
}

extension SplineCoupling {
    public func backwardWorkspaceBytes(count: Int) -> Int {
        split.couplingBackwardBytes(net, rows: count) + Arena.bytes(Scalar.self, spline.scratchCount)
    }

    /// Per transformed feature inside `[−B, B]` replaces `∂L/∂z_b` by `∂L/∂x_b` and the
    /// conditioner output by `∂L/∂u`
    /// (``RationalQuadraticSpline/backward(_:outputGradient:logDetGradient:raw:scratch:rawGradient:)``);
    /// outside, `∂L/∂x_b = ∂L/∂z_b` and `∂L/∂u = 0`. Then through the conditioner into its
    /// parameters and `∂L/∂x_a` (added to `g_a`, since `z_a = x_a`). Without a tape it first
    /// recomputes the conditioner with its tape.
    /// `recorded`: a training tape, or nil to run the network's recording forward pass here.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                  logDetGradient w: UnsafePointer<Scalar>, recorded: UnsafeRawPointer?, arena: inout Arena) {
        let d = split.dimension, nb = split.transformed.count, m = spline.rawCount
        let (input, ld) = split.conditioningInput(x, rows: count, arena: &arena)
        let (h, tape) = net.couplingTape(recorded, input: input, ldx: ld, rows: count, arena: &arena)
        let knots = spline.knots(in: arena.take(Scalar.self, spline.scratchCount))
        split.transformed.withUnsafeBufferPointer { idx in
            for r in 0..<count {
                let xr = x + r * d, gr = g + r * d, hr = h + r * nb * m
                for j in 0..<nb {
                    let i = idx[j]
                    let v = xr[i], u = hr + j * m
                    if spline.contains(v) {
                        gr[i] = spline.backward(v, outputGradient: gr[i], logDetGradient: w[r],
                                                raw: UnsafePointer(u), scratch: knots, rawGradient: u)
                    } else {
                        u.update(repeating: 0, count: m)
                    }
                }
            }
        }
        let dxa = arena.take(Scalar.self, count * split.identity.count)
        net.backward(input, ldx: ld, rows: count, tape: tape, outputGradient: h, inputGradient: dxa, arena: &arena)
        split.addToConditioning(dxa, rows: count, gradient: g)
    }
}
