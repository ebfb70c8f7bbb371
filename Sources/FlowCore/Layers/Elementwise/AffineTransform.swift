/// The affine transform of RealNVP (Dinh et al., "Density estimation using Real NVP", ICLR 2017)
/// with a bounded log-scale.
///
///     forward:  z = x·eˢ + t,      inverse:  x = (z − t)·e⁻ˢ,      log|det| = Σ s
///
/// The log-scale `s` comes from the raw parameter `ŝ` by one of three parameterisations
/// (``ScaleKind``; `c = clamp`):
///
///     "tanh" (default):  s = c·tanh(ŝ/c)              (c = 0: s = ŝ)
///     "soft":            s = ŝ / (1 + |ŝ/c|)          (zuko's MonotonicAffineTransform, c = −log slope)
///     "sigmoid":         s = log(sigmoid(ŝ + 2) + 10⁻³)   (nflows' MaskedAffineAutoregressiveTransform)
///
/// "tanh" and "soft" are smooth, the identity near zero and bound each feature's scale by e^±c,
/// so early training cannot blow up; "sigmoid" runs models converted from nflows exactly.
/// Parameters of a row with `n` features are blocked: the shifts `t₁…tₙ`, then the raw
/// log-scales `ŝ₁…ŝₙ`; all zero gives the identity ("tanh", "soft").
public struct AffineTransform<Scalar: FlowScalar>: AutoregressiveTransform {
    public static var couplingTypeName: String { "affine_coupling" }
    public static var autoregressiveTypeName: String { "affine_autoregressive" }
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("clamp", .double, "bound c of the log-scale (\"tanh\", \"soft\"); 0 = none (default 5)"),
            HyperParameter("scale", .string, "log-scale parameterisation: \"tanh\" (default), \"soft\" or \"sigmoid\""),
        ]
    }

    /// How the raw parameter `ŝ` becomes the log-scale `s`.
    public enum ScaleKind: String, CaseIterable, Sendable {
        /// `s = c·tanh(ŝ/c)` (`c = 0`: `s = ŝ`).
        case tanh
        /// `s = ŝ / (1 + |ŝ/c|)` (`c = 0`: `s = ŝ`), zuko's soft bound.
        case soft
        /// `s = log(sigmoid(ŝ + 2) + 10⁻³)`, nflows' scale.
        case sigmoid
    }

    /// The clamp c (0: none).
    let clamp: Scalar
    let scaleKind: ScaleKind

    public init(config: [String: JSONValue], context: String) throws {
        let c = config.double("clamp", default: 5)
        guard c >= 0, c.isFinite else { throw FlowError.invalidSpec("\(context): clamp must be ≥ 0") }
        clamp = Scalar(c)
        let kind = config.string("scale", default: ScaleKind.tanh.rawValue)
        guard let scaleKind = ScaleKind(rawValue: kind) else {
            throw FlowError.invalidSpec("\(context): scale must be \"tanh\", \"soft\" or \"sigmoid\", got \"\(kind)\"")
        }
        self.scaleKind = scaleKind
    }

    public var config: [String: JSONValue] { ["clamp": .number(Double(clamp)), "scale": .string(scaleKind.rawValue)] }
    public var parametersPerFeature: Int { 2 }
    public func outputFeature(_ column: Int, features: Int) -> Int { column % features }
    public var scratchBytes: Int { 0 }

    /// `(s, ds/dŝ)` of the parameterisation.
    @inline(__always) func logScale(_ raw: Scalar) -> (Scalar, Scalar) {
        switch scaleKind {
        case .tanh:
            guard clamp > 0 else { return (raw, 1) }
            let th = Scalar.tanh(raw / clamp)
            return (clamp * th, 1 - th * th)
        case .soft:
            guard clamp > 0 else { return (raw, 1) }
            let q = 1 + abs(raw) / clamp
            return (raw / q, 1 / (q * q))
        case .sigmoid:
            let sig = 1 / (1 + Scalar.exp(-(raw + 2)))
            let v = sig + Scalar(1e-3)
            return (Scalar.log(v), sig * (1 - sig) / v)
        }
    }

    /// Rows of contiguous features with the "tanh" scale run the AVX2 kernels (`affineRows`);
    /// any other rows run feature by feature through the index list.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func apply(_ x: UnsafeMutablePointer<Scalar>, ldx: Int, features: FeatureIndices,
                      parameters st: UnsafePointer<Scalar>, ldp: Int, rows: Int,
                      logDet: UnsafeMutablePointer<Double>, inverse: Bool, arena: inout Arena) {
        let nb = features.count
        if scaleKind == .tanh, let start = features.rangeStart {
            Scalar.affineRows(x + start, ldx: ldx, st: st, ldst: ldp, rows: rows, count: nb, clamp: clamp,
                              inverse: inverse, logDet: logDet)
            return
        }
        features.indices.withUnsafeBufferPointer { idx in
            for r in 0..<rows {
                let row = x + r * ldx, shift = st + r * ldp, rawScale = shift + nb
                var sum: Scalar = 0
                for j in 0..<nb {
                    let s = logScale(rawScale[j]).0
                    sum += s
                    let i = idx[j]
                    row[i] = inverse ? (row[i] - shift[j]) * Scalar.exp(-s) : row[i] * Scalar.exp(s) + shift[j]
                }
                logDet[r] += inverse ? -Double(sum) : Double(sum)
            }
        }
    }

    /// With `s = f(ŝ)`, `z = x·eˢ + t`, `logDet = Σ s`: `∂L/∂x = g·eˢ`, `∂L/∂t = g`,
    /// `∂L/∂ŝ = (g·x·eˢ + w)·f′(ŝ)`.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func backward(input x: UnsafePointer<Scalar>, ldx: Int, features: FeatureIndices,
                         parameters h: UnsafeMutablePointer<Scalar>, ldp: Int,
                         gradient g: UnsafeMutablePointer<Scalar>, ldg: Int, rows: Int,
                         logDetGradient w: UnsafePointer<Scalar>, arena: inout Arena) {
        let nb = features.count
        if scaleKind == .tanh, let start = features.rangeStart {
            // h = [t, ŝ] is overwritten by [∂L/∂t, ∂L/∂ŝ]; ŝ is read before it is written.
            Scalar.affineRowsBackward(x + start, ldx: ldx, st: h, ldst: ldp, gradient: g + start, ldg: ldg, rows: rows,
                                      count: nb, clamp: clamp, logDetGradient: w, inverse: false)
            return
        }
        features.indices.withUnsafeBufferPointer { idx in
            for r in 0..<rows {
                let xr = x + r * ldx, gr = g + r * ldg, hr = h + r * ldp
                for j in 0..<nb {
                    let i = idx[j]
                    let (s, slope) = logScale(hr[nb + j])
                    let e = Scalar.exp(s), gz = gr[i]
                    hr[j] = gz
                    hr[nb + j] = (gz * xr[i] * e + w[r]) * slope
                    gr[i] = gz * e
                }
            }
        }
    }
}
