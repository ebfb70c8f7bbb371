extension NormalizingFlow {
    /// Every layer of the flow, depth first: each layer, then (for a ``LayerContainer``) its
    /// sublayers, data side first.
    public var allLayers: [any FlowLayer<Scalar>] {
        func walk(_ layers: [any FlowLayer<Scalar>]) -> [any FlowLayer<Scalar>] {
            layers.flatMap { layer -> [any FlowLayer<Scalar>] in
                guard let container = layer as? any LayerContainer<Scalar> else { return [layer] }
                return [layer] + walk(container.sublayers)
            }
        }
        return walk(layers)
    }

    /// The continuous (``ContinuousFlow``) layers of the flow, nested ones included, data side first.
    public var continuousLayers: [ContinuousFlow<Scalar>] {
        allLayers.compactMap { $0 as? ContinuousFlow<Scalar> }
    }

    /// The summed ``SolverWork`` of every continuous layer since the last call with `reset`;
    /// nil for a flow without continuous layers. Thread-safe.
    public func solverWork(reset: Bool = false) -> SolverWork? {
        let layers = continuousLayers
        guard !layers.isEmpty else { return nil }
        return layers.reduce(SolverWork()) { $0 + $1.solverWork(reset: reset) }
    }
}
