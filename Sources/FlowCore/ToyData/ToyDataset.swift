import RealModule

/// The 2-D toy distributions of FFJORD (Grathwohl et al., 2019) and its successors, generated
/// in Swift from a seed.
///
/// Each case follows the recipe of FFJORD's `lib/toy_data.py` (and, for `moons`, `circles` and
/// `swissroll`, scikit-learn's `make_moons`, `make_circles` and `make_swiss_roll` with FFJORD's
/// arguments); see the case comments. Points are computed in `Double` and rounded to `Float`
/// once, at the end.
///
/// ## Shape
/// ``generate(_:seed:)`` returns `n × 2` values, row-major (`[x₀, y₀, x₁, y₁, …]`);
/// ``tensor(_:seed:)`` wraps them in a `Tensor<Float>` of shape `[n, 2]`.
///
/// ## Reproducibility (a stable contract)
/// The same `(data set, n, seed)` gives bit-identical values on every run, machine and thread
/// count. All randomness comes from ``Philox4x32`` keyed by `seed`, through ``PhiloxStream``s
/// whose counter word `stream` is
///
///     stream = 0x746F_0000 | (code << 8) | purpose
///
/// where `0x746F` is ASCII "to" (far from the small ids of ``RandomStream``), `code` is the data
/// set's ``streamCode`` (1 … 8) and `purpose` is
/// - `0`: the draws that make point `i` (Philox row `i`, the point's index before shuffling),
/// - `1`: the additive Gaussian noise of output row `r` (Philox row `r`),
/// - `2`: the shuffle, one Fisher–Yates permutation from Philox row 0 (``PhiloxStream/permutation(_:)``).
///
/// Within a row, values are drawn in the order the case comments list them, with
/// ``PhiloxStream/nextUniform()`` (53-bit uniforms in (0, 1)), ``PhiloxStream/nextNormal()``
/// (Box–Muller) and ``PhiloxStream/nextInt(below:)``.
///
/// Sets made of deterministic grids (`rings`, `moons`, `circles`) and `pinwheel`/`2spirals` are
/// shuffled, so every prefix of the rows is a fair sample (FFJORD does not shuffle `2spirals`;
/// shuffling changes the row order only, not the distribution).
public enum ToyDataset: String, CaseIterable, Sendable {
    /// Eight Gaussians on a circle. Draws per point: two normals `z`, then `k = randint(8)`;
    /// point = `(4·c_k + 0.5·z) / 1.414` with centres `c` = (1,0), (−1,0), (0,1), (0,−1),
    /// (±1/√2, ±1/√2) in FFJORD's order.
    case eightGaussians = "8gaussians"
    /// A 4 × 4 checkerboard on [−4, 4]², uniform on its 8 black squares. Draws: `u₁`, `u₂`,
    /// `b = randint(2)`; `x₁ = 4u₁ − 2`, `x₂ = u₂ − 2b + (⌊x₁⌋ mod 2)`; point = `2·(x₁, x₂)`.
    case checkerboard
    /// Four concentric rings of radii 3, 2.25, 1.5, 0.75 with `⌊n/4⌋` points each on the three
    /// outer rings and the rest on the inner one, at evenly spaced angles `2πj/count`
    /// (no random draws), shuffled, plus noise `N(0, 0.08²)` per coordinate.
    case rings
    /// scikit-learn's `make_moons(n, noise=0.1)` times 2 plus (−1, −0.2): `⌊n/2⌋` points
    /// `(cos t, sin t)`, t = linspace(0, π), then `n − ⌊n/2⌋` points `(1 − cos t, 0.5 − sin t)`,
    /// shuffled, plus noise `N(0, 0.1²)` per coordinate.
    case moons
    /// scikit-learn's `make_circles(n, factor=0.5, noise=0.08)` times 3: `⌊n/2⌋` points on the
    /// unit circle and `n − ⌊n/2⌋` on the circle of radius 0.5, at angles `2πj/count`, shuffled,
    /// plus noise `N(0, 0.08²)` per coordinate.
    case circles
    /// scikit-learn's `make_swiss_roll(n, noise=1.0)`, columns (0, 2), divided by 5. Draws per
    /// point: `u`, then two normals `e₁, e₂`; `t = 1.5π(1 + 2u)`,
    /// point = `(t cos t + e₁, t sin t + e₂) / 5`. (The discarded middle coordinate is not drawn.)
    case swissroll
    /// Five pinwheel arms. Point `i` is on arm `i mod 5`; draws: two normals `z`;
    /// `f = (1 + 0.3z₀, 0.1z₁)`, `a = 2π·arm/5 + 0.25·exp(f₀)`,
    /// point = `2·(f₀ cos a + f₁ sin a, −f₀ sin a + f₁ cos a)` (FFJORD's `einsum`), shuffled.
    /// (FFJORD returns `5⌊n/5⌋` points; here arms differ in size by at most one so there are `n`.)
    case pinwheel
    /// Two interleaved spirals. For the `⌈n/2⌉` points `i` of the first spiral, draws `u, a, b`;
    /// `t = √u · 3π` (540°), `d = (−t cos t + 0.5a, t sin t + 0.5b)`; the second spiral is `−d`.
    /// The first `n` of the stacked points, divided by 3, shuffled, plus noise `N(0, 0.1²)` per coordinate.
    case twoSpirals = "2spirals"

    /// Every toy point has two coordinates.
    public static let dimension = 2

    /// The fixed per-data-set code in the Philox stream word (see the type's documentation).
    public var streamCode: UInt32 {
        switch self {
        case .eightGaussians: return 1
        case .checkerboard: return 2
        case .rings: return 3
        case .moons: return 4
        case .circles: return 5
        case .swissroll: return 6
        case .pinwheel: return 7
        case .twoSpirals: return 8
        }
    }

    /// The differential entropy of the data distribution in nats, where it is known: the best
    /// achievable expected test negative log-likelihood. `8gaussians` ≈ 2.831, `checkerboard`
    /// = log 32 ≈ 3.466 (uniform on area 32), `rings` ≈ 2.624; `nil` for the others.
    public var entropy: Double? {
        switch self {
        case .eightGaussians: return 2.831
        case .checkerboard: return Double.log(32)
        case .rings: return 2.624
        case .moons, .circles, .swissroll, .pinwheel, .twoSpirals: return nil
        }
    }

    /// The data set called `name` (a raw value such as "8gaussians" or "2spirals").
    /// Throws ``FlowError/invalidArgument(_:)`` listing the known names otherwise.
    public static func named(_ name: String) throws -> ToyDataset {
        guard let set = ToyDataset(rawValue: name) else {
            let known = allCases.map(\.rawValue).joined(separator: ", ")
            throw FlowError.invalidArgument("unknown toy data set '\(name)'; known: \(known)")
        }
        return set
    }

    /// `n` points drawn with `seed`, as `n × 2` row-major values.
    ///
    /// - Throws: ``FlowError/invalidArgument(_:)`` if `n < 1`, ``FlowError/limitExceeded(_:)``
    ///   if `n` exceeds ``Limits/maxToySamples``.
    public func generate(_ n: Int, seed: UInt64) throws -> [Float] {
        if n < 1 {
            throw FlowError.invalidArgument("toy data set \(rawValue): the number of points must be at least 1, got \(n)")
        }
        if n > Limits.maxToySamples {
            throw FlowError.limitExceeded(
                "toy data set \(rawValue): \(n) points requested, more than the limit of \(Limits.maxToySamples)")
        }
        var points = ToyRecipes(dataset: self, seed: seed)
        return points.generate(n)
    }

    /// `n` points drawn with `seed` as a `Tensor<Float>` of shape `[n, 2]` (same values and
    /// errors as ``generate(_:seed:)``).
    public func tensor(_ n: Int, seed: UInt64) throws -> Tensor<Float> {
        try Tensor(shape: [n, Self.dimension], scalars: generate(n, seed: seed))
    }
}
