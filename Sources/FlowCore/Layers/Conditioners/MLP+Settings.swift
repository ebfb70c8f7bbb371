/// Reading a conditioner network's `hidden` widths and `activation` from a layer config, checked
/// against ``Limits`` before anything is allocated. Every layer with an ``MLP`` inside (couplings,
/// continuous flows) reads them here.
extension MLP {
    /// `hidden` and `activation` from `config` (`defaultHidden` / `defaultActivation` when absent);
    /// `allowed` restricts the activation (e.g. smooth ones for continuous flows).
    /// - Throws: ``FlowError/invalidSpec(_:)`` for a bad width or an unknown or disallowed
    ///   activation, ``FlowError/limitExceeded(_:)`` beyond ``Limits``.
    static func settings(_ config: [String: JSONValue], context: String, defaultHidden: [Int] = [64, 64],
                         defaultActivation: Activation = .relu, allowed: [Activation] = Activation.allCases)
        throws -> (hidden: [Int], activation: Activation)
    {
        let hidden = config.ints("hidden", default: defaultHidden)
        guard hidden.count <= Limits.maxHiddenLayers else {
            throw FlowError.limitExceeded("\(context): \(hidden.count) hidden layers; the limit is \(Limits.maxHiddenLayers)")
        }
        for w in hidden where w < 1 {
            throw FlowError.invalidSpec("\(context): hidden width \(w) must be at least 1")
        }
        for w in hidden where w > Limits.maxHiddenWidth {
            throw FlowError.limitExceeded("\(context): hidden width \(w) exceeds the limit \(Limits.maxHiddenWidth)")
        }
        let name = config.string("activation", default: defaultActivation.rawValue)
        let known = allowed.map(\.rawValue).joined(separator: ", ")
        guard let activation = Activation(rawValue: name) else {
            throw FlowError.invalidSpec("\(context): unknown activation \"\(name)\" (known: \(known))")
        }
        guard allowed.contains(activation) else {
            throw FlowError.invalidSpec("\(context): activation must be one of \(known), got \"\(name)\"")
        }
        return (hidden, activation)
    }
}

extension HyperParameter {
    /// `hidden`: the widths of a layer's `network` (e.g. "conditioner", "MADE"), read by ``MLP/settings``.
    static func hidden(of network: String, default widths: [Int] = [64, 64]) -> HyperParameter {
        HyperParameter("hidden", .intList, "\(network) hidden widths (default \(widths))")
    }

    /// `activation`: the activation of a layer's `network`, read by ``MLP/settings``.
    static func activation(of network: String) -> HyperParameter {
        HyperParameter("activation", .string, "\(network) activation (default \"relu\")")
    }
}
