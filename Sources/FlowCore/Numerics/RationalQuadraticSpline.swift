import RealModule

/// Scalar math of the monotonic rational-quadratic spline of Durkan et al., "Neural Spline
/// Flows" (NeurIPS 2019), with linear tails — nflows' `unconstrained_rational_quadratic_spline`
/// with `tails="linear"`, with the interior-derivative shift described below.
///
/// The spline maps `[−B, B]` onto itself through `K` bins and is the identity outside. One
/// feature's `3K − 1` unconstrained inputs `u` are laid out `[uw (K) | uh (K) | ud (K − 1)]`:
///
///     widths:      pw = softmax(uw),  w_i = m_w + (1 − m_w·K)·pw_i          (Σ w_i = 1)
///     knots:       x_0 = −B,  x_k = −B + 2B·Σ_{i<k} w_i,  x_K = B           (same for y_k from uh, m_h)
///     derivatives: d_0 = d_K = 1,  d_k = m_d + softplus(ud_{k−1} + c),  c = log(e^{1−m_d} − 1)
///
/// `c` makes `softplus(c) = 1 − m_d`, so a zero input gives derivative exactly 1 (nflows uses
/// `c = 0` inside and this `c` only for the boundary knots). With all inputs zero the bins are
/// uniform, every derivative is 1 and the spline is the identity.
///
/// In bin `k` (`x_k ≤ x < x_{k+1}`) with `w = x_{k+1} − x_k`, `h = y_{k+1} − y_k`, `s = h/w`,
/// `θ = (x − x_k)/w`:
///
///     y = y_k + h·[s·θ² + d_k·θ(1−θ)] / [s + (d_k + d_{k+1} − 2s)·θ(1−θ)]
///     dy/dx = s²·[d_{k+1}·θ² + 2s·θ(1−θ) + d_k·(1−θ)²] / [s + (d_k + d_{k+1} − 2s)·θ(1−θ)]²
///
/// The code evaluates the same expressions in arrangements (`y = x + …`, ratios to `s` inside the
/// logarithm) that are exact at the identity — zero inputs give `y == x` and `log dy/dx == 0`
/// bit for bit — and accurate near it. The derivative is computed as
/// `1 + softplus(u + c) − softplus(c)`, which equals `m_d + softplus(u + c)` in real arithmetic
/// and is exactly 1 at `u = 0` in floating point; the convex combination of the widths is
/// evaluated as `pw_i − m_w·K·(pw_i − 1/K)` for the same reason.
///
/// The inverse solves the quadratic `a·θ² + b·θ + c = 0` for the root in `[0, 1]` in the
/// numerically stable form `θ = 2c / (−b − √(b² − 4ac))` (paper, eq. 29; nflows).
struct RationalQuadraticSpline<T: FlowScalar> {
    let bins: Int
    let bound: T
    let minBinWidth: T
    let minBinHeight: T
    let minDerivative: T
    /// `c = log(e^{1−m_d} − 1)`, so that `softplus(c) = 1 − m_d`.
    let derivativeShift: T
    /// `softplus(c)` as computed in `T` (subtracted so that `u = 0` gives exactly 1).
    let softplusOfShift: T

    init(bins: Int, bound: Double, minBinWidth: Double, minBinHeight: Double, minDerivative: Double) {
        self.bins = bins
        self.bound = T(bound)
        self.minBinWidth = T(minBinWidth)
        self.minBinHeight = T(minBinHeight)
        self.minDerivative = T(minDerivative)
        let c = T(Double.log(Double.expMinusOne(1 - minDerivative)))
        derivativeShift = c
        softplusOfShift = Self.softplus(c)
    }

    /// Unconstrained inputs per transformed feature: `3K − 1`.
    var rawCount: Int { 3 * bins - 1 }

    /// Scalars of scratch ``Knots`` needs.
    var scratchCount: Int { 4 * bins + 2 }

    /// Per-feature scratch: knot positions and the softmax probabilities behind them.
    struct Knots {
        /// `x_0 … x_K`
        let xs: UnsafeMutablePointer<T>
        /// `y_0 … y_K`
        let ys: UnsafeMutablePointer<T>
        /// `softmax(uw)`, `softmax(uh)`
        let pw: UnsafeMutablePointer<T>
        let ph: UnsafeMutablePointer<T>
    }

    /// Carves ``Knots`` out of `scratch` (``scratchCount`` scalars).
    func knots(in scratch: UnsafeMutablePointer<T>) -> Knots {
        Knots(xs: scratch, ys: scratch + (bins + 1), pw: scratch + 2 * (bins + 1), ph: scratch + 2 * (bins + 1) + bins)
    }

    /// Whether `v` lies in the spline's interval `[−B, B]` (NaN does not).
    @inline(__always) func contains(_ v: T) -> Bool { v >= -bound && v <= bound }

    @inline(__always) static func softplus(_ x: T) -> T {
        Swift.max(x, 0) + T.log(onePlus: T.exp(-Swift.abs(x)))
    }

    @inline(__always) static func sigmoid(_ x: T) -> T {
        if x >= 0 { return 1 / (1 + T.exp(-x)) }
        let e = T.exp(x)
        return e / (1 + e)
    }

    /// Softmax of `raw[0..<K]` into `p`, then knots `−B … B` into `knots` (K + 1 entries).
    @inline(__always)
    private func makeKnots(_ raw: UnsafePointer<T>, minimum: T, probabilities p: UnsafeMutablePointer<T>,
                           knots: UnsafeMutablePointer<T>) {
        let k = bins
        var top = raw[0]
        for i in 1..<k { top = Swift.max(top, raw[i]) }
        var total: T = 0
        for i in 0..<k { let e = T.exp(raw[i] - top); p[i] = e; total += e }
        let inverseTotal = 1 / total
        let uniform = 1 / T(k), mk = minimum * T(k)
        let span = 2 * bound
        var cumulative: T = 0
        knots[0] = -bound
        for i in 0..<k {
            let pi = p[i] * inverseTotal
            p[i] = pi
            cumulative += pi - mk * (pi - uniform)
            knots[i + 1] = -bound + span * cumulative
        }
        knots[k] = bound
    }

    /// Knots of both axes from one feature's inputs.
    @inline(__always)
    func prepare(_ raw: UnsafePointer<T>, _ s: Knots) {
        makeKnots(raw, minimum: minBinWidth, probabilities: s.pw, knots: s.xs)
        makeKnots(raw + bins, minimum: minBinHeight, probabilities: s.ph, knots: s.ys)
    }

    /// Derivative at knot `j` (0 … K).
    @inline(__always)
    func derivative(_ raw: UnsafePointer<T>, knot j: Int) -> T {
        if j == 0 || j == bins { return 1 }
        let v = 1 + (Self.softplus(raw[2 * bins + j - 1] + derivativeShift) - softplusOfShift)
        return Swift.max(v, minDerivative)   // a rounding guard only: v > m_d in real arithmetic
    }

    /// The bin `k ∈ [0, K)` with `knots[k] ≤ v < knots[k+1]` (the last bin includes `B`).
    @inline(__always)
    func bin(of v: T, in knots: UnsafePointer<T>) -> Int {
        var lo = 0, hi = bins
        while hi - lo > 1 {
            let mid = (lo + hi) >> 1
            if knots[mid] <= v { lo = mid } else { hi = mid }
        }
        return lo
    }

    /// `(y, log dy/dx)` for `x` in `[−B, B]`.
    @inline(__always)
    func forward(_ x: T, raw: UnsafePointer<T>, scratch s: Knots) -> (T, T) {
        prepare(raw, s)
        let k = bin(of: x, in: s.xs)
        let xk = s.xs[k], wk = s.xs[k + 1] - xk
        let yk = s.ys[k], hk = s.ys[k + 1] - yk
        let dk = derivative(raw, knot: k), dk1 = derivative(raw, knot: k + 1)
        let slope = hk / wk
        let theta = (x - xk) / wk, rest = 1 - theta, t = theta * rest
        let alpha = dk - slope, beta = dk1 - slope
        let denominator = slope + (alpha + beta) * t
        // y_k + h·R with R = θ + θ(1−θ)(α(1−θ) − βθ)/Den, and y_k + hθ = x + (y_k − x_k) + (h − w)θ.
        let y = x + ((yk - xk) + (hk - wk) * theta + hk * t * (alpha * rest - beta * theta) / denominator)
        return (y, logDerivative(slope: slope, alpha: alpha, beta: beta, theta: theta))
    }

    /// `(x, log dx/dy)` for `y` in `[−B, B]`.
    @inline(__always)
    func inverse(_ y: T, raw: UnsafePointer<T>, scratch s: Knots) -> (T, T) {
        prepare(raw, s)
        let k = bin(of: y, in: s.ys)
        let xk = s.xs[k], wk = s.xs[k + 1] - xk
        let yk = s.ys[k], hk = s.ys[k + 1] - yk
        let dk = derivative(raw, knot: k), dk1 = derivative(raw, knot: k + 1)
        let slope = hk / wk
        let alpha = dk - slope, beta = dk1 - slope
        let dy = y - yk
        let a = hk * -alpha + dy * (alpha + beta)
        let b = hk * dk - dy * (alpha + beta)
        let c = -slope * dy
        let discriminant = Swift.max(b * b - 4 * a * c, 0)
        // θ = 2c / (−b − √disc) = (dy/h)·q with q = 2sh / (b + √disc) (q = 1 at the identity).
        let q = 2 * slope * hk / (b + discriminant.squareRoot())
        let theta = dy * q / hk
        let x = y + ((xk - yk) + dy * (wk * q - hk) / hk)
        return (x, -logDerivative(slope: slope, alpha: alpha, beta: beta, theta: theta))
    }

    /// `log dy/dx = log(s²P/Den²)` with `P = s + βθ² + α(1−θ)²` and `Den = s + (α+β)θ(1−θ)`
    /// (`α = d_k − s`, `β = d_{k+1} − s`), evaluated as `log(s·(P/s)/(Den/s)²)`: exactly 0 when
    /// `α = β = 0` and `s = 1`.
    @inline(__always)
    func logDerivative(slope: T, alpha: T, beta: T, theta: T) -> T {
        let rest = 1 - theta
        let p = 1 + (beta * theta * theta + alpha * rest * rest) / slope
        let den = 1 + (alpha + beta) * (theta * rest) / slope
        return T.log(slope * p / (den * den))
    }

    /// Back-propagation through ``forward(_:raw:scratch:)`` for `x` in `[−B, B]`.
    ///
    /// With `G = ∂L/∂y` and `W = ∂L/∂log(dy/dx)`, returns `∂L/∂x` and writes `∂L/∂u` (all `3K − 1`
    /// entries) into `rawGradient`, which may alias `raw`.
    ///
    /// Derivation (variables `θ, s, d_k, d_{k+1}` and the bin's `x_k, w, y_k, h`):
    /// `R = N/Den`, `N = sθ² + d_k t`, `Den = s + (d_k + d_{k+1} − 2s)t`, `t = θ(1−θ)`,
    /// `P = d_{k+1}θ² + 2st + d_k(1−θ)²`, `y = y_k + hR`, `ℓ = 2 log s + log P − 2 log Den`:
    ///
    ///     ∂R/∂θ = sP/Den²            ∂R/∂s = (θ² − R(1−2t))/Den
    ///     ∂R/∂d_k = t(1−R)/Den        ∂R/∂d_{k+1} = −Rt/Den
    ///     ∂ℓ/∂θ = 2(βθ − α(1−θ))/P − 2(α+β)(1−2θ)/Den      (α = d_k − s, β = d_{k+1} − s)
    ///     ∂ℓ/∂s = 2/s + 2t/P − 2(1−2t)/Den
    ///     ∂ℓ/∂d_k = (1−θ)²/P − 2t/Den   ∂ℓ/∂d_{k+1} = θ²/P − 2t/Den
    ///
    /// then `θ = (x − x_k)/w`, `s = h/w` give `∂/∂x = g_θ/w`, `∂/∂x_k = −g_θ/w`,
    /// `∂/∂w = −(g_θ θ + g_s s)/w`, `∂/∂y_k = G`, `∂/∂h = G R + g_s/w`; knots to bin sizes
    /// (`x_k = −B + 2B Σ_{i<k} w_i`, `w = 2B w_k`), through `(1 − m·K)·softmax` and
    /// `softplus' = sigmoid` into `u`. The bin index is piecewise constant in `x` and `u`; the
    /// spline is C¹ across knots, so the one-sided formulas are the gradient.
    @inline(__always)
    func backward(_ x: T, outputGradient g: T, logDetGradient w: T, raw: UnsafePointer<T>,
                  scratch s: Knots, rawGradient out: UnsafeMutablePointer<T>) -> T {
        prepare(raw, s)
        let k = bin(of: x, in: s.xs)
        let xk = s.xs[k], wk = s.xs[k + 1] - xk
        let hk = s.ys[k + 1] - s.ys[k]
        let dk = derivative(raw, knot: k), dk1 = derivative(raw, knot: k + 1)
        // Derivative slopes of the two knot derivatives w.r.t. their inputs (0 at the boundary).
        let sk: T = k == 0 ? 0 : Self.sigmoid(raw[2 * bins + k - 1] + derivativeShift)
        let sk1: T = k + 1 == bins ? 0 : Self.sigmoid(raw[2 * bins + k] + derivativeShift)

        let slope = hk / wk
        let theta = (x - xk) / wk, rest = 1 - theta, t = theta * rest
        let alpha = dk - slope, beta = dk1 - slope
        let den = slope + (alpha + beta) * t
        let p = slope + beta * theta * theta + alpha * rest * rest
        let r = theta + t * (alpha * rest - beta * theta) / den
        let oneMinus2t = 1 - 2 * t

        let dRdTheta = slope * p / (den * den)
        let dRdS = (theta * theta - r * oneMinus2t) / den
        let dRdDk = t * (1 - r) / den
        let dRdDk1 = -r * t / den
        let dLdTheta = 2 * (beta * theta - alpha * rest) / p - 2 * (alpha + beta) * (1 - 2 * theta) / den
        let dLdS = 2 / slope + 2 * t / p - 2 * oneMinus2t / den
        let dLdDk = rest * rest / p - 2 * t / den
        let dLdDk1 = theta * theta / p - 2 * t / den

        let gh = g * hk
        let gTheta = gh * dRdTheta + w * dLdTheta
        let gS = gh * dRdS + w * dLdS
        let gDk = gh * dRdDk + w * dLdDk
        let gDk1 = gh * dRdDk1 + w * dLdDk1
        let gx = gTheta / wk
        let gXk = -gx
        let gWk = -(gTheta * theta + gS * slope) / wk
        let gYk = g
        let gHk = g * r + gS / wk

        // Everything read from `raw` is read; now overwrite it with the gradient.
        let span = 2 * bound
        softmaxBackward(s.pw, before: span * gXk, at: span * gWk, bin: k,
                        scale: 1 - minBinWidth * T(bins), into: out)
        softmaxBackward(s.ph, before: span * gYk, at: span * gHk, bin: k,
                        scale: 1 - minBinHeight * T(bins), into: out + bins)
        let gd = out + 2 * bins
        for i in 0..<(bins - 1) { gd[i] = 0 }
        if k > 0 { gd[k - 1] = gDk * sk }
        if k + 1 < bins { gd[k] = gDk1 * sk1 }
        return gx
    }

    /// `∂L/∂u` of `u → p = softmax(u) → v = m + (1 − mK)p` given `∂L/∂v_i = before` for `i < k`,
    /// `at` for `i = k` and 0 after.
    @inline(__always)
    private func softmaxBackward(_ p: UnsafePointer<T>, before: T, at: T, bin k: Int, scale: T,
                                 into out: UnsafeMutablePointer<T>) {
        var below: T = 0
        for i in 0..<k { below += p[i] }
        let gBefore = scale * before, gAt = scale * at
        let mean = gBefore * below + gAt * p[k]
        for i in 0..<bins {
            let gi: T = i < k ? gBefore : (i == k ? gAt : 0)
            out[i] = p[i] * (gi - mean)
        }
    }
}
