/// A base (latent) distribution `p_Z` over events of `eventSize` scalars.
///
/// The entry points here take no context. A base whose parameters depend on the flow's context
/// also conforms to ``ConditionalBaseDistribution``, and the flow calls its context-taking
/// variants instead; unconditional bases implement only this protocol and run exactly as before.
///
/// Thread safety: `logProb` and `sample` only read state and are safe to call concurrently.
public protocol BaseDistribution<Scalar>: AnyObject {
    associatedtype Scalar: FlowScalar
    /// The `type` string in specs and files.
    static var typeName: String { get }
    /// The spec keys besides `type`, stored as attributes of the file's `/base` group (the
    /// model-file writer and reader follow this declaration, as they do ``FlowLayer``'s).
    static var hyperParameters: [HyperParameter] { get }
    var eventSize: Int { get }
    /// Resolved spec object (with `"type"` and every hyper-parameter explicit).
    var config: [String: JSONValue] { get }
    /// Learnable arrays, stored as datasets of the `base` group.
    var parameters: [Parameter<Scalar>] { get }

    /// Builds the base from its (validated) spec object for events of `eventSize` scalars in a
    /// flow whose encoded context has `contextFeatures` scalars per row (0: unconditional);
    /// learnable arrays are initialised from `seed`.
    /// - Throws: ``FlowError/invalidSpec(_:)`` or ``FlowError/limitExceeded(_:)``.
    init(config: [String: JSONValue], eventSize: Int, contextFeatures: Int, seed: UInt64) throws

    /// Recomputes state derived from the parameters after they changed (e.g. packed weights).
    func parametersDidChange()

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

extension BaseDistribution {
    /// No hyper-parameters (the standard and diagonal normals).
    public static var hyperParameters: [HyperParameter] { [] }
    /// Nothing derived from the parameters.
    public func parametersDidChange() {}
}

/// `log(2π)/2`.
let halfLogTwoPi = 0.918_938_533_204_672_7
