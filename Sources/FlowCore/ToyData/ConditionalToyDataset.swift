import RealModule

/// Conditional 2-D toy data `(x, c)` with a known conditional entropy `H(x | c)`: the expected
/// test NLL of a perfect conditional model, so a conditional flow's quality reads off directly.
///
/// - `8gaussians-rotated`: `c ~ U(0, 2π)` (one context value); `x = R(c)·y` with `y` a point of
///   ``ToyDataset/eightGaussians`` and `R(c)` the rotation by `c`. A rotation keeps entropy:
///   `H(x | c) = 2.831` nats for every `c`.
/// - `checkerboard-scaled`: `c ~ U(−0.5, 0.5)`; `x = e^c·y` with `y` a point of
///   ``ToyDataset/checkerboard``. `H(x | c) = log 32 + 2c`, mean `log 32 ≈ 3.466`.
///
/// Point `i` is the base set's point `i` for the same seed; `c_i` is the first uniform of Philox
/// row `i` of stream `0x746F_C000 | code` (code 1 and 2). Bit-identical on every machine and
/// thread count, like ``ToyDataset``.
public enum ConditionalToyDataset: String, CaseIterable, Sendable {
    case rotatedEightGaussians = "8gaussians-rotated"
    case scaledCheckerboard = "checkerboard-scaled"

    /// Data values per point.
    public static let dimension = 2
    /// Context values per point.
    public static let contextSize = 1

    /// The mean conditional entropy `E_c[H(x | c)]` in nats: the best achievable expected test NLL.
    public var entropy: Double {
        switch self {
        case .rotatedEightGaussians: return 2.831
        case .scaledCheckerboard: return Double.log(32)
        }
    }

    /// `H(x | c)` at context value `c`.
    public func conditionalEntropy(_ c: Double) -> Double {
        switch self {
        case .rotatedEightGaussians: return 2.831
        case .scaledCheckerboard: return Double.log(32) + 2 * c
        }
    }

    /// The data set called `name`; ``FlowError/invalidArgument(_:)`` listing the known names otherwise.
    public static func named(_ name: String) throws -> ConditionalToyDataset {
        guard let set = ConditionalToyDataset(rawValue: name) else {
            let known = allCases.map(\.rawValue).joined(separator: ", ")
            throw FlowError.invalidArgument("unknown conditional toy data set '\(name)'; known: \(known)")
        }
        return set
    }

    private var base: ToyDataset { self == .rotatedEightGaussians ? .eightGaussians : .checkerboard }
    private var streamCode: UInt32 { self == .rotatedEightGaussians ? 1 : 2 }

    /// `n` points (`n × 2`, row-major) and their contexts (`n × 1`), drawn with `seed`.
    /// - Throws: as ``ToyDataset/generate(_:seed:)``.
    public func generate(_ n: Int, seed: UInt64) throws -> (x: [Float], context: [Float]) {
        var x = try base.generate(n, seed: seed)
        var context = [Float](repeating: 0, count: n)
        for i in 0..<n {
            var stream = PhiloxStream(seed: seed, row: UInt64(i), stream: 0x746F_C000 | streamCode)
            let u = stream.nextUniform()
            let y0 = Double(x[2 * i]), y1 = Double(x[2 * i + 1])
            switch self {
            case .rotatedEightGaussians:
                let c = 2 * Double.pi * u
                x[2 * i] = Float(Double.cos(c) * y0 - Double.sin(c) * y1)
                x[2 * i + 1] = Float(Double.sin(c) * y0 + Double.cos(c) * y1)
                context[i] = Float(c)
            case .scaledCheckerboard:
                let c = u - 0.5
                let s = Double.exp(c)
                x[2 * i] = Float(s * y0)
                x[2 * i + 1] = Float(s * y1)
                context[i] = Float(c)
            }
        }
        return (x, context)
    }
}
