/// A base (latent) distribution `p_Z` over events of `eventSize` scalars.
///
/// Thread safety: `logProb` and `sample` only read state and are safe to call concurrently.
public protocol BaseDistribution<Scalar>: AnyObject {
    associatedtype Scalar: FlowScalar
    /// The `type` string in specs and files.
    static var typeName: String { get }
    var eventSize: Int { get }
    /// Resolved spec object (with `"type"`).
    var config: [String: JSONValue] { get }
    /// Learnable arrays, stored as datasets of the `base` group.
    var parameters: [Parameter<Scalar>] { get }

    /// `out[i] = log p_Z(zᵢ)` for `count` rows, in Double.
    func logProb(_ z: UnsafePointer<Scalar>, count: Int, into out: UnsafeMutablePointer<Double>)

    /// Draws rows `firstRow ..< firstRow + count` of the sample stream of `seed` into `out`,
    /// scaling the standard deviation by `temperature`. Row `r`'s values depend only on
    /// `(seed, r)`: any chunking or thread count gives the same samples.
    func sample(into out: UnsafeMutablePointer<Scalar>, count: Int, seed: UInt64, firstRow: UInt64,
                temperature: Scalar)

    /// Back-propagation through `logProb`: writes `gradient[i] = wᵢ·∂log p_Z(zᵢ)/∂z` and adds
    /// `Σᵢ wᵢ·∂log p_Z(zᵢ)/∂θ` to the parameters' gradients, `w` = `logProbGradient`.
    func backward(_ z: UnsafePointer<Scalar>, count: Int, logProbGradient w: UnsafePointer<Scalar>,
                  gradient: UnsafeMutablePointer<Scalar>)
}

/// `log(2π)/2`.
let halfLogTwoPi = 0.918_938_533_204_672_7

/// Builds a base distribution from its spec object.
package func makeBaseDistribution<T: FlowScalar>(_ config: [String: JSONValue], eventSize: Int) throws
    -> any BaseDistribution<T>
{
    let type = config["type"]?.stringValue ?? "standard_normal"
    for key in config.keys where key != "type" {
        throw FlowError.invalidSpec("base (\(type)): unknown key \"\(key)\"")
    }
    switch type {
    case StandardNormal<T>.typeName: return StandardNormal<T>(eventSize: eventSize)
    case DiagonalNormal<T>.typeName: return try DiagonalNormal<T>(eventSize: eventSize)
    default:
        throw FlowError.unknownType("unknown base distribution type \"\(type)\" (known: standard_normal, diagonal_normal)")
    }
}
