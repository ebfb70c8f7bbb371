/// `f = f_K ∘ … ∘ f_1`: forward applies the layers in order and sums their log-determinants;
/// inverse applies their inverses in reverse order. Every entry point takes an optional context
/// (rows of the flow's encoded context), which goes to the ``ConditionalLayer``s; the
/// ``Bijection`` entry points pass none.
public final class Composition<Scalar: FlowScalar>: Bijection {
    public let layers: [any FlowLayer<Scalar>]
    public let inputShape: [Int]
    public let outputShape: [Int]
    /// Per layer, the layer as a ``ConditionalLayer`` when it reads a context (found once here),
    /// and whether any does (unconditional flows then skip the lookups).
    private let conditional: [(any ConditionalLayer<Scalar>)?]
    private let hasConditionalLayers: Bool

    /// - Precondition (checked by builders): consecutive shapes agree.
    public init(layers: [any FlowLayer<Scalar>], eventShape: [Int]) {
        self.layers = layers
        inputShape = layers.first?.inputShape ?? eventShape
        outputShape = layers.last?.outputShape ?? eventShape
        conditional = layers.map { layer in
            guard let c = layer as? any ConditionalLayer<Scalar>, c.contextFeatures > 0 else { return nil }
            return c
        }
        hasConditionalLayers = conditional.contains { $0 != nil }
    }


    public var parameters: [Parameter<Scalar>] { layers.flatMap { $0.parameters } }

    public func workspaceBytes(count: Int) -> Int { layers.map { $0.workspaceBytes(count: count) }.max() ?? 0 }

    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        forward(x, count: count, context: nil, logDet: logDet, arena: &arena)
    }

    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        inverse(z, count: count, context: nil, logDet: logDet, arena: &arena)
    }

    /// ``Bijection/forward(_:count:logDet:arena:)`` with `context` rows for the conditional layers.
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let start = arena
        for k in 0..<layers.count {
            arena = start
            if hasConditionalLayers, let c = conditional[k] {
                c.forward(x, count: count, context: context, logDet: logDet, arena: &arena)
            } else {
                layers[k].forward(x, count: count, logDet: logDet, arena: &arena)
            }
        }
    }

    /// ``Bijection/inverse(_:count:logDet:arena:)`` with `context` rows for the conditional layers.
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let start = arena
        for k in stride(from: layers.count - 1, through: 0, by: -1) {
            arena = start
            if hasConditionalLayers, let c = conditional[k] {
                c.inverse(z, count: count, context: context, logDet: logDet, arena: &arena)
            } else {
                layers[k].inverse(z, count: count, logDet: logDet, arena: &arena)
            }
        }
    }

    public func parametersDidChange() { for layer in layers { layer.parametersDidChange() } }

    /// Scratch for ``forward(saving:_:count:logDet:arena:)`` / ``backward(saved:count:gradient:logDetGradient:arena:)``:
    /// one saved input per layer plus the largest layer's own needs.
    public func trainingWorkspaceBytes(count: Int) -> Int {
        Arena.bytes(Scalar.self, max(layers.count, 1) * count * eventSize)
            + max(workspaceBytes(count: count), layers.map { $0.backwardWorkspaceBytes(count: count) }.max() ?? 0)
    }

    public func backwardWorkspaceBytes(count: Int) -> Int { trainingWorkspaceBytes(count: count) }

    /// Forward that copies each layer's input into `saved` (`layers.count × count × D`) and,
    /// with a `tape` of ``layerTapeBytes(count:)`` bytes, keeps each layer's tape
    /// (``Bijection/tapeBytes(count:)``, laid out in layer order) for
    /// ``backward(saved:tape:count:gradient:logDetGradient:arena:)``. Scratch:
    /// ``trainingWorkspaceBytes(count:)`` minus the saved inputs.
    public func forward(saving saved: UnsafeMutablePointer<Scalar>, tape: UnsafeMutableRawPointer? = nil,
                        _ x: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>? = nil,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let start = arena
        let block = count * eventSize
        var offset = 0
        for (k, layer) in layers.enumerated() {
            (saved + k * block).update(from: x, count: block)
            arena = start
            let bytes = tape == nil ? 0 : layer.tapeBytes(count: count)
            if let tape, bytes > 0 {
                if let c = conditional[k] {
                    c.forward(x, count: count, context: context, logDet: logDet, tape: tape + offset, arena: &arena)
                } else {
                    layer.forward(x, count: count, logDet: logDet, tape: tape + offset, arena: &arena)
                }
                offset += bytes
            } else if let c = conditional[k] {
                c.forward(x, count: count, context: context, logDet: logDet, arena: &arena)
            } else {
                layer.forward(x, count: count, logDet: logDet, arena: &arena)
            }
        }
    }

    /// Σ of the layers' ``Bijection/tapeBytes(count:)``: the `tape` of
    /// ``forward(saving:tape:_:count:logDet:arena:)``. (The composition's own
    /// ``Bijection/tapeBytes(count:)`` stays 0: as a layer, it recomputes.)
    public func layerTapeBytes(count: Int) -> Int { layers.reduce(0) { $0 + $1.tapeBytes(count: count) } }

    /// Back-propagates through all layers given the inputs ``forward(saving:_:count:logDet:arena:)``
    /// saved. The log-det gradient is the same for every layer (the log-dets add up).
    /// With `tape`: the tapes the same forward pass kept. With `contextGradient`, the
    /// conditional layers add `∂L/∂context` there.
    public func backward(saved: UnsafePointer<Scalar>, tape: UnsafeRawPointer? = nil, count: Int,
                         context: UnsafePointer<Scalar>? = nil, gradient: UnsafeMutablePointer<Scalar>,
                         logDetGradient: UnsafePointer<Scalar>, contextGradient: UnsafeMutablePointer<Scalar>? = nil,
                         arena: inout Arena) {
        let start = arena
        let block = count * eventSize
        var end = tape == nil ? 0 : layerTapeBytes(count: count)
        for k in stride(from: layers.count - 1, through: 0, by: -1) {
            arena = start
            let bytes = tape == nil ? 0 : layers[k].tapeBytes(count: count)
            if let c = conditional[k] {
                var recorded: UnsafeRawPointer?
                if let tape, bytes > 0 {
                    end -= bytes
                    recorded = tape + end
                }
                c.backward(input: saved + k * block, count: count, context: context, gradient: gradient,
                           logDetGradient: logDetGradient, contextGradient: contextGradient, recorded: recorded,
                           arena: &arena)
            } else if let tape, bytes > 0 {
                end -= bytes
                layers[k].backward(input: saved + k * block, count: count, gradient: gradient,
                                   logDetGradient: logDetGradient, tape: tape + end, arena: &arena)
            } else {
                layers[k].backward(input: saved + k * block, count: count, gradient: gradient,
                                   logDetGradient: logDetGradient, arena: &arena)
            }
        }
    }

    public func backward(input x: UnsafePointer<Scalar>, count: Int, gradient: UnsafeMutablePointer<Scalar>,
                         logDetGradient: UnsafePointer<Scalar>, arena: inout Arena) {
        let block = count * eventSize
        let saved = arena.take(Scalar.self, max(layers.count, 1) * block)
        let work = arena.take(Scalar.self, block)
        let logDet = arena.take(Double.self, count)
        work.update(from: x, count: block)
        let afterSaves = arena
        forward(saving: saved, work, count: count, logDet: logDet, arena: &arena)
        arena = afterSaves
        backward(saved: saved, count: count, gradient: gradient, logDetGradient: logDetGradient, arena: &arena)
    }
}
