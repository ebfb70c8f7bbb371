/// What a model file reader checks of a flow's parameters beyond their shapes, in one place for
/// the reader and for ``Trainer``: every value finite and inside its ``Parameter/bound``, and every
/// ``InvertibilityConstrained`` layer invertible.
extension NormalizingFlow {
    /// The layers whose invertibility depends on their values, nested ones included.
    public var invertibilityConstrainedLayers: [any InvertibilityConstrained] {
        allLayers.compactMap { $0 as? any InvertibilityConstrained }
    }

    /// Why the current parameters would not load, or nil: the first non-finite or out-of-range
    /// value (naming the parameter and index), else the first layer without a usable inverse.
    /// Call after `parametersDidChange()`.
    public var parameterProblem: String? {
        for p in parameters {
            if let i = p.firstInvalidIndex {
                let range = p.bound.map { " (allowed: |value| ≤ \($0))" } ?? ""
                return "parameter \(p.name)[\(i)] = \(p.values[i]) is not finite or out of range\(range)"
            }
        }
        for (i, layer) in allLayers.enumerated() {
            if let constrained = layer as? any InvertibilityConstrained, let problem = constrained.invertibilityProblem {
                return "layer \(i) (\(Swift.type(of: layer).typeName)): \(problem)"
            }
        }
        return nil
    }
}
