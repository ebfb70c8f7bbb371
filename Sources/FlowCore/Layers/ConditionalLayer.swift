/// A layer whose map depends on a context: `z = f(x; c)` with one context row `c` (of
/// ``contextFeatures`` scalars) per data row — conditional flows `p(x | c)` (for example
/// posteriors `p(θ | x_obs)` in simulation-based inference).
///
/// The context enters through the layer's conditioner only, so the log-determinant is still
/// that of `x ↦ z` at fixed `c`. The ``Bijection`` entry points without a context run the layer at
/// a zero context (an unconditional layer, ``contextFeatures`` = 0, ignores it).
///
/// Context rows are contiguous (`count × contextFeatures`). The flow hands every conditional
/// layer the same rows: the caller's context after the flow's context front end
/// (``ContextEncoder``).
public protocol ConditionalLayer<Scalar>: FlowLayer {
    /// Context scalars per row the layer reads (0: none).
    var contextFeatures: Int { get }

    /// ``Bijection/forward(_:count:logDet:arena:)`` at the context rows `context` (nil: zeros).
    func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                 logDet: UnsafeMutablePointer<Double>, arena: inout Arena)

    /// ``Bijection/inverse(_:count:logDet:arena:)`` at the context rows `context` (nil: zeros).
    func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                 logDet: UnsafeMutablePointer<Double>, arena: inout Arena)

    /// The training forward pass (``Bijection/forward(_:count:logDet:tape:arena:)``) at `context`.
    func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                 logDet: UnsafeMutablePointer<Double>, tape: UnsafeMutableRawPointer, arena: inout Arena)

    /// The backward pass at `context`; with `contextGradient`, also adds `∂L/∂c`
    /// (`count × contextFeatures`) there. `recorded`: the tape of the training forward pass, or
    /// nil to recompute it.
    func backward(input x: UnsafePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                  gradient: UnsafeMutablePointer<Scalar>, logDetGradient: UnsafePointer<Scalar>,
                  contextGradient: UnsafeMutablePointer<Scalar>?, recorded: UnsafeRawPointer?, arena: inout Arena)
}

/// The `context_features` hyper-parameter every conditional layer declares.
extension HyperParameter {
    static var contextFeatures: HyperParameter {
        HyperParameter("context_features", .int, "context scalars per row the conditioner reads after the data (default 0)")
    }
}

extension Dictionary where Key == String, Value == JSONValue {
    /// A validated `context_features` (0 when absent).
    func contextFeatures(context: String) throws -> Int {
        let c = int("context_features", default: 0)
        guard c >= 0, c <= Limits.maxContextSize else {
            throw FlowError.invalidSpec("\(context): context_features must lie in 0...\(Limits.maxContextSize), got \(c)")
        }
        return c
    }
}
