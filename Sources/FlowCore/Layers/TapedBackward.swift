/// A layer whose backward pass either reads the tape its training forward pass kept
/// (``Bijection/forward(_:count:logDet:tape:arena:)``) or recomputes what it needs: both
/// ``Bijection`` backward entry points go to one implementation,
/// ``backward(input:count:gradient:logDetGradient:recorded:arena:)``.
protocol TapedBackward: Bijection {
    /// The backward pass (``Bijection/backward(input:count:gradient:logDetGradient:arena:)``);
    /// `recorded`: the tape of ``Bijection/forward(_:count:logDet:tape:arena:)`` at the same input
    /// and parameters (it may be overwritten), or nil to recompute it.
    func backward(input x: UnsafePointer<Scalar>, count: Int, gradient: UnsafeMutablePointer<Scalar>,
                  logDetGradient: UnsafePointer<Scalar>, recorded: UnsafeRawPointer?, arena: inout Arena)
}

extension TapedBackward {
    public func backward(input x: UnsafePointer<Scalar>, count: Int, gradient: UnsafeMutablePointer<Scalar>,
                         logDetGradient: UnsafePointer<Scalar>, arena: inout Arena) {
        backward(input: x, count: count, gradient: gradient, logDetGradient: logDetGradient, recorded: nil, arena: &arena)
    }

    public func backward(input x: UnsafePointer<Scalar>, count: Int, gradient: UnsafeMutablePointer<Scalar>,
                         logDetGradient: UnsafePointer<Scalar>, tape: UnsafeRawPointer, arena: inout Arena) {
        backward(input: x, count: count, gradient: gradient, logDetGradient: logDetGradient, recorded: tape, arena: &arena)
    }
}
