/// A base distribution whose parameters depend on the flow's context: `p_Z(z | e)`, with one
/// encoded context row `e` of ``contextFeatures`` scalars per data row (the caller's context
/// after the flow's ``ContextEncoder``, the same rows every ``ConditionalLayer`` reads).
///
///     log p(x | c) = log p_Z(f(x; e) | e) + log|det ∂f/∂x|,   e = encode(c)
///
/// ``NormalizingFlow`` calls the context-taking entry points below whenever its base conforms;
/// the ``BaseDistribution`` entry points without a context evaluate at `e = 0` (the convention
/// of ``ConditionalLayer``: a missing context is zeros). Context rows are contiguous
/// (`count × contextFeatures`); `context` nil means zeros.
///
/// Thread safety: `logProb` and `sample` only read state (scratch comes from the caller's
/// arena); `backward` accumulates gradients and is not thread-safe.
public protocol ConditionalBaseDistribution<Scalar>: BaseDistribution {
    /// Encoded context scalars per row the base reads (≥ 1).
    var contextFeatures: Int { get }

    /// Scratch bytes of ``logProb(_:count:context:into:arena:)`` and
    /// ``sample(into:count:seed:firstRow:temperature:context:logProb:arena:)`` over `count` rows.
    func workspaceBytes(count: Int) -> Int

    /// Scratch bytes of ``backward(_:count:context:logProbGradient:gradient:contextGradient:arena:)``
    /// over `count` rows.
    func backwardWorkspaceBytes(count: Int) -> Int

    /// `out[i] = log p_Z(zᵢ | eᵢ)` for `count` rows, in Double.
    func logProb(_ z: UnsafePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                 into out: UnsafeMutablePointer<Double>, arena: inout Arena)

    /// Draws rows `firstRow ..< firstRow + count` of the sample stream of `seed` from
    /// `p_Z(· | eᵢ)` with the standard deviation scaled by `temperature`; the standard normal
    /// draws are those of every other base (row `r` depends only on `(seed, r)`). With `logProb`,
    /// also writes `log p_Z(zᵢ | eᵢ)` of each drawn row at temperature 1 (the density
    /// ``logProb(_:count:context:into:arena:)`` gives for it).
    func sample(into out: UnsafeMutablePointer<Scalar>, count: Int, seed: UInt64, firstRow: UInt64,
                temperature: Scalar, context: UnsafePointer<Scalar>?, logProb: UnsafeMutablePointer<Double>?,
                arena: inout Arena)

    /// Back-propagation through ``logProb(_:count:context:into:arena:)``: writes
    /// `gradient[i] = wᵢ·∂log p_Z(zᵢ | eᵢ)/∂zᵢ`, adds `Σᵢ wᵢ·∂log p_Z/∂θ` to the parameters'
    /// gradients and, with `contextGradient` (`count × contextFeatures`), adds
    /// `wᵢ·∂log p_Z(zᵢ | eᵢ)/∂eᵢ` there (for the flow's context embedding).
    func backward(_ z: UnsafePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                  logProbGradient w: UnsafePointer<Scalar>, gradient: UnsafeMutablePointer<Scalar>,
                  contextGradient: UnsafeMutablePointer<Scalar>?, arena: inout Arena)
}
