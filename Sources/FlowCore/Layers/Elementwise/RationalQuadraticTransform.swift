import RealModule

/// Monotonic rational-quadratic splines (Durkan et al., "Neural Spline Flows", NeurIPS 2019) with
/// linear tails, the semantics of nflows' `PiecewiseRationalQuadratic…Transform(tails="linear")`
/// except for the interior-derivative shift `c` below (nflows applies it to the boundary knots
/// only).
///
/// Each feature's spline has `K = bins` bins on `[−B, B]` (`B = bound`) and is the identity
/// outside (the boundary knots have derivative 1, so the map is C¹); see
/// ``RationalQuadraticSpline`` for the exact parameterisation. Parameters are feature-major:
/// columns `[j·(3K−1), (j+1)·(3K−1))` belong to feature `j` and hold, in this order, `K`
/// unnormalised bin widths, `K` unnormalised bin heights and `K − 1` unnormalised interior knot
/// derivatives:
///
///     widths  = m_w + (1 − m_w·K)·softmax(uw)      (fractions of 2B; likewise heights with m_h)
///     derivs  = m_d + softplus(ud + c),  c = log(e^{1−m_d} − 1)   (boundary knots: 1)
///
/// The shift `c` makes a zero input give derivative exactly 1: all-zero parameters give uniform
/// bins, every derivative 1, and the identity.
public struct RationalQuadraticTransform<Scalar: FlowScalar>: AutoregressiveTransform {
    public static var couplingTypeName: String { "spline_coupling" }
    public static var autoregressiveTypeName: String { "spline_autoregressive" }
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("bins", .int, "number of spline bins K (default 8)"),
            HyperParameter("bound", .double, "the spline acts on [−bound, bound], identity outside (default 3)"),
            HyperParameter("min_bin_width", .double, "minimum bin width as a fraction of 2·bound (default 1e-3)"),
            HyperParameter("min_bin_height", .double, "minimum bin height as a fraction of 2·bound (default 1e-3)"),
            HyperParameter("min_derivative", .double, "minimum knot derivative (default 1e-3)"),
        ]
    }

    /// Largest accepted `bins`.
    static var maxBins: Int { 4096 }

    let spline: RationalQuadraticSpline<Scalar>
    /// Spec values as given (kept in Double so the resolved spec round-trips exactly).
    let bound: Double
    let minBinWidth: Double
    let minBinHeight: Double
    let minDerivative: Double

    public init(config: [String: JSONValue], context: String) throws {
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
    }

    public var config: [String: JSONValue] {
        [
            "bins": .number(Double(spline.bins)),
            "bound": .number(bound),
            "min_bin_width": .number(minBinWidth),
            "min_bin_height": .number(minBinHeight),
            "min_derivative": .number(minDerivative),
        ]
    }

    public var parametersPerFeature: Int { spline.rawCount }
    public func outputFeature(_ column: Int, features: Int) -> Int { column / spline.rawCount }
    public var scratchBytes: Int { Arena.bytes(Scalar.self, spline.scratchCount) }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func apply(_ x: UnsafeMutablePointer<Scalar>, ldx: Int, features: FeatureIndices,
                      parameters raw: UnsafePointer<Scalar>, ldp: Int, rows: Int,
                      logDet: UnsafeMutablePointer<Double>, inverse: Bool, arena: inout Arena) {
        let nb = features.count, m = spline.rawCount
        let knots = spline.knots(in: arena.take(Scalar.self, spline.scratchCount))
        features.indices.withUnsafeBufferPointer { idx in
            for r in 0..<rows {
                let row = x + r * ldx, rr = raw + r * ldp
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

    /// Inside `[−B, B]` replaces `∂L/∂z` by `∂L/∂x` and the parameters by `∂L/∂u`
    /// (``RationalQuadraticSpline/backward(_:outputGradient:logDetGradient:raw:scratch:rawGradient:)``);
    /// outside, `∂L/∂x = ∂L/∂z` and `∂L/∂u = 0`.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func backward(input x: UnsafePointer<Scalar>, ldx: Int, features: FeatureIndices,
                         parameters h: UnsafeMutablePointer<Scalar>, ldp: Int,
                         gradient g: UnsafeMutablePointer<Scalar>, ldg: Int, rows: Int,
                         logDetGradient w: UnsafePointer<Scalar>, arena: inout Arena) {
        let nb = features.count, m = spline.rawCount
        let knots = spline.knots(in: arena.take(Scalar.self, spline.scratchCount))
        features.indices.withUnsafeBufferPointer { idx in
            for r in 0..<rows {
                let xr = x + r * ldx, gr = g + r * ldg, hr = h + r * ldp
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
    }
}
