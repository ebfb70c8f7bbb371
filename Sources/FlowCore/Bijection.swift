/// The contract every transform obeys, single layers and whole compositions alike.
///
/// A bijection maps a batch of `count` samples in place. Forward goes from data to latent:
/// `z = f(x)`, and adds `log|det ∂f/∂x|` of each sample to `logDet[i]`; inverse goes back,
/// `x = f⁻¹(z)`, and adds `log|det ∂f⁻¹/∂z| = −log|det ∂f/∂x|` at the corresponding point.
/// Log-determinants are accumulated in `Double`.
///
/// Memory layout: `count` contiguous rows of `eventSize` scalars (row-major, batch first), the
/// same before and after; a bijection changes at most the event *shape* (e.g. squeeze), never
/// the element count. Temporaries come from the caller's ``Arena`` — reserve
/// ``workspaceBytes(count:)`` — so steady-state calls allocate nothing.
///
/// Thread safety: `forward` and `inverse` only read the bijection's state; any number of threads
/// may call them at once with their own buffers and arenas.
public protocol Bijection<Scalar>: AnyObject {
    associatedtype Scalar: FlowScalar

    /// Event shape on the data side (the input of `forward`).
    var inputShape: [Int] { get }
    /// Event shape on the latent side (the output of `forward`).
    var outputShape: [Int] { get }

    /// Scratch bytes one call over `count` rows needs.
    func workspaceBytes(count: Int) -> Int

    /// `x ← f(x)` for `count` rows; `logDet[i] += log|det ∂f/∂x|(xᵢ)`.
    func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                 logDet: UnsafeMutablePointer<Double>, arena: inout Arena)

    /// `z ← f⁻¹(z)` for `count` rows; `logDet[i] += log|det ∂f⁻¹/∂z|(zᵢ)`.
    func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                 logDet: UnsafeMutablePointer<Double>, arena: inout Arena)

    /// Scratch bytes one ``backward(input:count:gradient:logDetGradient:arena:)`` call needs.
    func backwardWorkspaceBytes(count: Int) -> Int

    /// Back-propagation through `forward`, by hand-derived formulas.
    ///
    /// For a loss `L(z, logDet)` with `z = f(x)`: on entry `gradient` holds `∂L/∂z` (`count`
    /// rows); on return it holds `∂L/∂x`. `logDetGradient[i] = ∂L/∂logDet_i`. Adds `∂L/∂θ` to
    /// every parameter's ``Parameter/gradient``. `input` is the batch `x` the forward pass saw.
    /// Not thread-safe (it accumulates into the parameters' gradients).
    func backward(input x: UnsafePointer<Scalar>, count: Int, gradient: UnsafeMutablePointer<Scalar>,
                  logDetGradient: UnsafePointer<Scalar>, arena: inout Arena)

    /// Bytes a training pass keeps from ``forward(_:count:logDet:tape:arena:)`` for
    /// ``backward(input:count:gradient:logDetGradient:tape:arena:)`` over `count` rows, a
    /// multiple of 64; 0 (the default) when the backward pass recomputes what it needs from the
    /// input. (Image couplings keep their conditioner's output and hidden activations, so the
    /// backward pass does not run the network forward a second time.)
    func tapeBytes(count: Int) -> Int

    /// ``forward(_:count:logDet:arena:)`` (same results) that also fills `tape`
    /// (``tapeBytes(count:)`` bytes, 64-byte aligned) for
    /// ``backward(input:count:gradient:logDetGradient:tape:arena:)``. Scratch: at most
    /// ``backwardWorkspaceBytes(count:)``. The default ignores the tape.
    func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, logDet: UnsafeMutablePointer<Double>,
                 tape: UnsafeMutableRawPointer, arena: inout Arena)

    /// ``backward(input:count:gradient:logDetGradient:arena:)`` reading the tape that
    /// ``forward(_:count:logDet:tape:arena:)`` filled at the same input and parameters. The
    /// default ignores the tape.
    func backward(input x: UnsafePointer<Scalar>, count: Int, gradient: UnsafeMutablePointer<Scalar>,
                  logDetGradient: UnsafePointer<Scalar>, tape: UnsafeRawPointer, arena: inout Arena)

    /// Learnable arrays, in the order the model file stores them.
    var parameters: [Parameter<Scalar>] { get }

    /// Recomputes state derived from ``parameters`` (e.g. a dense weight from LU factors).
    /// Called after parameters were loaded or updated; a no-op for most layers.
    func parametersDidChange()
}

extension Bijection {
    /// Elements per sample.
    public var eventSize: Int { inputShape.reduce(1, *) }
    public func parametersDidChange() {}
    public func tapeBytes(count: Int) -> Int { 0 }
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, logDet: UnsafeMutablePointer<Double>,
                        tape: UnsafeMutableRawPointer, arena: inout Arena) {
        forward(x, count: count, logDet: logDet, arena: &arena)
    }
    public func backward(input x: UnsafePointer<Scalar>, count: Int, gradient: UnsafeMutablePointer<Scalar>,
                         logDetGradient: UnsafePointer<Scalar>, tape: UnsafeRawPointer, arena: inout Arena) {
        backward(input: x, count: count, gradient: gradient, logDetGradient: logDetGradient, arena: &arena)
    }
    /// Total number of learnable scalars.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }
}
