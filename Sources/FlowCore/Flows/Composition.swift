/// `f = f_K ∘ … ∘ f_1`: forward applies the layers in order and sums their log-determinants;
/// inverse applies their inverses in reverse order.
public final class Composition<Scalar: FlowScalar>: Bijection {
    public let layers: [any FlowLayer<Scalar>]
    public let inputShape: [Int]
    public let outputShape: [Int]

    /// - Precondition (checked by builders): consecutive shapes agree.
    public init(layers: [any FlowLayer<Scalar>], eventShape: [Int]) {
        self.layers = layers
        inputShape = layers.first?.inputShape ?? eventShape
        outputShape = layers.last?.outputShape ?? eventShape
    }

    public var parameters: [Parameter<Scalar>] { layers.flatMap { $0.parameters } }

    public func workspaceBytes(count: Int) -> Int { layers.map { $0.workspaceBytes(count: count) }.max() ?? 0 }

    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let start = arena
        for layer in layers {
            arena = start
            layer.forward(x, count: count, logDet: logDet, arena: &arena)
        }
    }

    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let start = arena
        for layer in layers.reversed() {
            arena = start
            layer.inverse(z, count: count, logDet: logDet, arena: &arena)
        }
    }

    public func parametersDidChange() { for layer in layers { layer.parametersDidChange() } }
}
