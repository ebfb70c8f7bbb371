extension NormalizingFlow {
    /// The continuous (``ContinuousFlow``) layers of the flow, including those nested in splits,
    /// data side first.
    public var continuousLayers: [ContinuousFlow<Scalar>] {
        func collect(_ layers: [any FlowLayer<Scalar>]) -> [ContinuousFlow<Scalar>] {
            layers.flatMap { layer -> [ContinuousFlow<Scalar>] in
                if let cnf = layer as? ContinuousFlow<Scalar> { return [cnf] }
                if let split = layer as? Split<Scalar> { return collect(split.sublayers) }
                return []
            }
        }
        return collect(layers)
    }

    /// The summed ``SolverWork`` of every continuous layer since the last call with `reset`;
    /// nil for a flow without continuous layers. Thread-safe.
    public func solverWork(reset: Bool = false) -> SolverWork? {
        let layers = continuousLayers
        guard !layers.isEmpty else { return nil }
        return layers.reduce(SolverWork()) { $0 + $1.solverWork(reset: reset) }
    }
}
