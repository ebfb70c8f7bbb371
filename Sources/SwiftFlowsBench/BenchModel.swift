import FlowCore
import FlowModelFile
import FlowData

/// One benchmarked operation of a flow.
enum Operation: String, CaseIterable {
    /// `log p(x)` for a batch (``NormalizingFlow/logProb(_:count:into:)``).
    case logProb = "log_prob"
    /// Draws from the flow, without log-densities (``NormalizingFlow/sample(count:seed:into:logProb:temperature:)``).
    case sample
    /// `z = f(x)` with log-determinants.
    case forward
    /// `x = f⁻¹(z)` with log-determinants.
    case inverse
    /// One optimisation step: zero the gradients, forward + backward of the NLL
    /// (``NormalizingFlow/accumulateNLLGradient(_:count:normalizer:)``), one Adam update.
    case trainStep = "train_step"
}

/// Floating-point work of one flow, per data row, by operation. See ``BenchModel`` for how the
/// numbers are derived.
struct FlopModel {
    /// FLOPs per row of the transform in one direction (forward and inverse cost the same).
    var transform: Double
    /// FLOPs per row of the base log-density.
    var baseLogProb: Double
    /// FLOPs per row of drawing from the base (random-number generation is not counted).
    var baseSample: Double
    /// Learnable scalars (the Adam update is charged per parameter and step).
    var parameters: Int

    /// FLOPs of Adam per parameter and step: two moment updates (3 + 4), bias-corrected
    /// denominator (square root, division, addition) and the update (decay multiply, multiply,
    /// divide, subtract), rounded to 12.
    static let adamPerParameter = 12.0

    /// Per-row FLOPs of `operation` at `batch` rows per call.
    func perRow(_ operation: Operation, batch: Int) -> Double {
        switch operation {
        case .forward, .inverse: return transform
        case .logProb: return transform + baseLogProb + 1
        case .sample: return transform + baseSample
        case .trainStep:
            return 3 * (transform + baseLogProb + 1) + Self.adamPerParameter * Double(parameters) / Double(max(batch, 1))
        }
    }
}

/// A model of the benchmark table: how to build it, what its operations cost, and which
/// operations run at which batch sizes.
///
/// ## FLOP counts
///
/// Counts are per data row; a row's GFLOP/s is `FLOPs per row × rows/s / 10⁹`. Transcendental
/// functions (`exp`, `tanh`) count as one FLOP each, as do comparisons of ReLU, so the numbers
/// measure useful arithmetic, not instructions.
///
/// For an affine coupling on `D` features with `a = ⌊D/2⌋` conditioning and `b = D − a`
/// transformed features and a conditioner MLP of widths `w₀ = a, w₁ … w_L (hidden), w_{L+1} = 2b`:
///
///     dense   = Σ_{l=0…L} 2 · w_l · w_{l+1}      (multiply-add of y = x·Wᵀ)
///     bias    = Σ_{l=0…L} w_{l+1}                (bias add)
///     act     = Σ_{l=1…L} w_l                    (ReLU)
///     couple  = 7 · b                            (s/c, tanh, ·c, exp, multiply, add shift, Σ s)
///     coupling(D) = dense + bias + act + couple
///
/// A RealNVP with `K` couplings: `transform = K · coupling(D)` per row in either direction.
/// The standard-normal base costs `2·D + 2` per row for `log p_Z` (square, add; constant and
/// scale) and nothing for a draw (random numbers are integer work). Per operation:
///
///     forward = inverse = transform
///     log_prob          = transform + (2·D + 2) + 1      (the log-determinant add)
///     sample            = transform
///     train_step        = 3 · log_prob + 12 · P / B       (forward, conditioners again, backward;
///                                                         Adam on P parameters, B rows a step)
///
/// The factor 3 is the usual backward ≈ 2 × forward estimate; ``NormalizingFlow/accumulateNLLGradient(_:count:normalizer:)``
/// re-runs each conditioner in its backward pass, so it does about that much work.
///
/// For the default RealNVP (K = 8, hidden 64-64) this gives 70,728 FLOPs per row at D = 2,
/// 80,160 at D = 8 and 168,192 at D = 64 for `forward`.
struct BenchModel {
    /// Identifier used in row ids (`--filter`, `--only`), e.g. `realnvp-d8`.
    let id: String
    /// Short name for the table's model column, e.g. `RealNVP D=8`.
    let name: String
    /// A longer description (JSON output).
    let description: String
    /// Builds a fresh, untrained model.
    let build: () throws -> NormalizingFlow<Float>
    /// The model's FLOPs per row.
    let flops: FlopModel
    /// The rows to run: operations with their batch sizes, in table order.
    let rows: [(Operation, [Int])]

    /// The operations and batch sizes of the performance issue: inference at batch 1, 256 and
    /// 65,536, one training step at batch 512.
    static let standardRows: [(Operation, [Int])] = [
        (.logProb, [1, 256, 65536]),
        (.sample, [1, 256, 65536]),
        (.forward, [1, 256, 65536]),
        (.inverse, [1, 256, 65536]),
        (.trainStep, [512]),
    ]

    /// The benchmarked models, in table order. Adding a model is one line here (Glow and CNF
    /// rows come with the image-flow and continuous-flow issues).
    static let catalogue: [BenchModel] = [
        .realNVP(dim: 2),
        .realNVP(dim: 8),
        .realNVP(dim: 64),
        .glow(shape: [3, 16, 16], levels: 2, steps: 4, width: 64),
        .glow(shape: [1, 28, 28], levels: 2, steps: 8, width: 64),
        .cnf(dim: 2),
    ]

    /// A continuous flow (FFJORD) on 2-D data: one `cnf` layer with concat-squash dynamics
    /// 2 → 64 → 64 → 64 → 2 (tanh), dopri5 at rtol = atol = 1e-5, exact trace; log_prob at batch
    /// 1024 (the performance issue's row). No FLOP model: the work depends on the steps the
    /// adaptive solver takes.
    static func cnf(dim: Int) -> BenchModel {
        BenchModel(
            id: "cnf-d\(dim)",
            name: "CNF D=\(dim)",
            description: "FFJORD CNF, concat-squash MLP \(dim)-64-64-64-\(dim) tanh, dopri5 rtol=atol=1e-5, exact trace",
            build: {
                try NormalizingFlow<Float>(spec: .object([
                    "event_shape": JSONValue([dim]),
                    "layers": .array([.object(["type": .string("cnf"), "hidden": JSONValue([64, 64, 64])])]),
                ]), seed: 1)
            },
            flops: FlopModel(transform: .nan, baseLogProb: 2 * Double(dim) + 2, baseSample: 0, parameters: 0),
            rows: [(.logProb, [1024])])
    }

    /// The image rows of the performance issue: log_prob and sample at batch 1 and 256, one
    /// training step at batch 64.
    static let imageRows: [(Operation, [Int])] = [
        (.logProb, [1, 256]),
        (.sample, [1, 256]),
        (.trainStep, [64]),
    ]

    /// FLOPs per image of a Glow's transform: per level (after its squeeze, `C` channels on an
    /// `H×W` plane) and step, ActNorm `2·C·HW`, the 1×1 convolution `2·C²·HW`, the coupling
    /// network `2·HW·(9·⌊C/2⌋·F + F² + 9·F·2⌈C/2⌉)` plus `7·⌈C/2⌉·HW` for the affine step; each
    /// split's prior network `2·HW·(9·C₁·F + F² + 9·F·2C₂)` plus `7·C₂·HW`. Biases and ReLUs
    /// (`≈ HW·(2F + out)`) are included per network. Nominal: every convolution counted as a
    /// direct one, although the last of each network runs as Winograd (`ConvNet+Winograd.swift`).
    static func glowFlops(shape: [Int], levels: Int, steps: Int, width f: Int) -> Double {
        var c = shape[0], h = shape[1], w = shape[2]
        var total = 0.0
        func network(_ inC: Int, _ outC: Int, _ hw: Int) -> Double {
            2 * Double(hw) * Double(9 * inC * f + f * f + 9 * f * outC) + Double(hw) * Double(3 * f + outC)
        }
        for level in 1...levels {
            c *= 4; h /= 2; w /= 2
            let hw = h * w, a = c / 2, b = c - a
            total += Double(steps) * (2 * Double(c * hw) + 2 * Double(c * c * hw) + network(a, 2 * b, hw) + 7 * Double(b * hw))
            if level < levels {
                let factored = c / 2, kept = c - factored
                total += network(kept, 2 * factored, hw) + 7 * Double(factored * hw)
                c = kept
            }
        }
        return total
    }

    /// Glow for images of `shape` with `levels` levels of `steps` steps and coupling width `width`.
    static func glow(shape: [Int], levels: Int, steps: Int, width: Int) -> BenchModel {
        let build = { try NormalizingFlow<Float>.glow(shape: shape, levels: levels, steps: steps, hidden: width, seed: 1) }
        let parameters = (try? build().parameterCount) ?? 0
        let size = shape.reduce(1, *)
        return BenchModel(
            id: "glow-\(shape.map(String.init).joined(separator: "x"))",
            name: "Glow \(shape.map(String.init).joined(separator: "x"))",
            description: "Glow \(shape), \(levels) levels × \(steps) steps, coupling width \(width), LU 1×1 convolutions, conditional split prior, 8-bit dequantisation",
            build: build,
            flops: FlopModel(transform: glowFlops(shape: shape, levels: levels, steps: steps, width: width),
                             baseLogProb: 2 * Double(size) + 2, baseSample: 0, parameters: parameters),
            rows: imageRows)
    }

    /// FLOPs per row of one affine coupling on `dim` features with conditioner `hidden` widths
    /// (see the type's documentation).
    static func affineCouplingFlops(dim: Int, hidden: [Int]) -> Double {
        let a = dim / 2, b = dim - a
        let widths = [a] + hidden + [2 * b]
        var dense = 0.0, bias = 0.0
        for l in 0..<(widths.count - 1) {
            dense += 2 * Double(widths[l]) * Double(widths[l + 1])
            bias += Double(widths[l + 1])
        }
        let act = Double(hidden.reduce(0, +))
        return dense + bias + act + 7 * Double(b)
    }

    /// Learnable scalars of a RealNVP (weights and biases of every conditioner).
    static func realNVPParameters(dim: Int, layers: Int, hidden: [Int]) -> Int {
        let a = dim / 2, b = dim - a
        let widths = [a] + hidden + [2 * b]
        var perLayer = 0
        for l in 0..<(widths.count - 1) { perLayer += widths[l] * widths[l + 1] + widths[l + 1] }
        return layers * perLayer
    }

    /// RealNVP with `layers` affine couplings (half masks, alternating), conditioner MLP
    /// `D/2 → hidden… → D` with ReLU, soft clamp 5, standard-normal base.
    static func realNVP(dim: Int, layers: Int = 8, hidden: [Int] = [64, 64]) -> BenchModel {
        let widths = ([dim / 2] + hidden + [2 * (dim - dim / 2)]).map(String.init).joined(separator: "-")
        return BenchModel(
            id: "realnvp-d\(dim)",
            name: "RealNVP D=\(dim)",
            description: "RealNVP, \(layers) affine couplings (half masks, alternating), MLP \(widths) ReLU, clamp 5, standard normal base",
            build: { try NormalizingFlow<Float>.realNVP(dim: dim, layers: layers, hidden: hidden, activation: "relu", seed: 1) },
            flops: FlopModel(transform: Double(layers) * affineCouplingFlops(dim: dim, hidden: hidden),
                             baseLogProb: 2 * Double(dim) + 2, baseSample: 0,
                             parameters: realNVPParameters(dim: dim, layers: layers, hidden: hidden)),
            rows: standardRows)
    }
}

/// One row of the table: a model, an operation, a batch size.
struct RowSpec {
    let model: BenchModel
    let operation: Operation
    let batch: Int

    /// `MODEL/OPERATION/bBATCH`, e.g. `realnvp-d8/log_prob/b256`.
    var id: String { "\(model.id)/\(operation.rawValue)/b\(batch)" }

    /// FLOPs of one call (`batch` rows).
    var flopsPerRow: Double { model.flops.perRow(operation, batch: batch) }

    /// Every row of every catalogue model, in table order.
    static var all: [RowSpec] {
        BenchModel.catalogue.flatMap { model in
            model.rows.flatMap { op, batches in batches.map { RowSpec(model: model, operation: op, batch: $0) } }
        }
    }
}
