/// The masked network of a ``MaskedAutoregressive`` layer: the plain MADE (a masked ``MLP``,
/// with its ``SequentialPlan``) or nflows' residual MADE (``ResidualMADE``, which holds its
/// own plan). Both read the network input `[x, e]` and give the `out` transform parameters;
/// the cases share one interface, so the layer's passes are written once.
enum MADENetwork<T: FlowScalar> {
    case plain(MLP<T>, SequentialPlan<T>)
    case residual(ResidualMADE<T>)

    /// The plain network (nil for a residual one).
    var mlp: MLP<T>? {
        if case .plain(let net, _) = self { return net }
        return nil
    }

    /// The residual network (nil for a plain one).
    var residualMADE: ResidualMADE<T>? {
        if case .residual(let net) = self { return net }
        return nil
    }

    var inFeatures: Int {
        switch self {
        case .plain(let net, _): return net.inFeatures
        case .residual(let net): return net.inFeatures
        }
    }

    var outFeatures: Int {
        switch self {
        case .plain(let net, _): return net.outFeatures
        case .residual(let net): return net.outFeatures
        }
    }

    /// The `hidden` hyper-parameter: the plain network's hidden widths, or `[H]`.
    var hidden: [Int] {
        switch self {
        case .plain(let net, _): return Array(net.widths.dropFirst().dropLast())
        case .residual(let net): return [net.width]
        }
    }

    var activation: Activation {
        switch self {
        case .plain(let net, _): return net.activation
        case .residual(let net): return net.activation
        }
    }

    /// Residual blocks (0 for the plain network).
    var residualBlocks: Int { residualMADE?.blocks ?? 0 }

    var parameters: [Parameter<T>] {
        switch self {
        case .plain(let net, _): return net.parameters
        case .residual(let net): return net.parameters
        }
    }

    /// Zeroes the masked weights; refreshes the packed weights and the sequential plan.
    func repack() {
        switch self {
        case .plain(let net, let plan):
            net.repack()
            plan.refresh(from: net)
        case .residual(let net):
            net.repack()
        }
    }

    /// Scratch of one network pass over `rows` rows.
    func workspaceBytes(rows: Int) -> Int {
        switch self {
        case .plain(let net, _): return net.workspaceBytes(rows: rows)
        case .residual(let net): return net.workspaceBytes(rows: rows)
        }
    }

    /// Scratch of the sequential pass's network part over `rows` rows (the residual plan works
    /// in blocks of at most `blockRows` rows).
    func sequentialWorkspaceBytes(rows: Int, blockRows: Int) -> Int {
        switch self {
        case .plain(_, let plan): return plan.workspaceBytes(rows: rows)
        case .residual(let net): return net.plan.workspaceBytes(rows: Swift.min(rows, blockRows))
        }
    }

    /// `y = net(x)` for `rows` rows of the network input (stride `ldx`); `y` is `rows × out`.
    @inline(__always)
    func callAsFunction(_ x: UnsafePointer<T>, ldx: Int, rows: Int, into y: UnsafeMutablePointer<T>, arena: inout Arena) {
        switch self {
        case .plain(let net, _): net(x, ldx: ldx, rows: rows, into: y, arena: &arena)
        case .residual(let net): net(x, ldx: ldx, rows: rows, into: y, arena: &arena)
        }
    }

    func tapeCount(rows: Int) -> Int {
        switch self {
        case .plain(let net, _): return net.tapeCount(rows: rows)
        case .residual(let net): return net.tapeCount(rows: rows)
        }
    }

    func couplingTapeBytes(rows: Int) -> Int {
        switch self {
        case .plain(let net, _): return net.couplingTapeBytes(rows: rows)
        case .residual(let net): return net.couplingTapeBytes(rows: rows)
        }
    }

    /// A training forward pass keeping its output and tape in `couplingTape`; returns the output.
    @inline(__always)
    func forwardRecording(_ x: UnsafePointer<T>, ldx: Int, rows: Int,
                          couplingTape: UnsafeMutableRawPointer) -> UnsafeMutablePointer<T> {
        switch self {
        case .plain(let net, _): return net.forwardRecording(x, ldx: ldx, rows: rows, couplingTape: couplingTape)
        case .residual(let net): return net.forwardRecording(x, ldx: ldx, rows: rows, couplingTape: couplingTape)
        }
    }

    /// The output and tape a backward pass reads: `recorded`'s, or a recording pass into the arena.
    @inline(__always)
    func couplingTape(_ recorded: UnsafeRawPointer?, input x: UnsafePointer<T>, ldx: Int, rows: Int,
                      arena: inout Arena) -> (output: UnsafeMutablePointer<T>, tape: UnsafeMutablePointer<T>) {
        switch self {
        case .plain(let net, _): return net.couplingTape(recorded, input: x, ldx: ldx, rows: rows, arena: &arena)
        case .residual(let net): return net.couplingTape(recorded, input: x, ldx: ldx, rows: rows, arena: &arena)
        }
    }

    func backwardWorkspaceBytes(rows: Int) -> Int {
        switch self {
        case .plain(let net, _): return net.backwardWorkspaceBytes(rows: rows)
        case .residual(let net): return net.backwardWorkspaceBytes(rows: rows)
        }
    }

    /// Back-propagates `outputGradient` (destroyed) through the recorded pass: parameter
    /// gradients (unless `parameterGradients` is false) and `∂L/∂[x, e]` into `inputGradient`
    /// (`rows × in`, contiguous).
    @inline(__always)
    func backward(_ x: UnsafePointer<T>, ldx: Int, rows: Int, tape: UnsafePointer<T>,
                  outputGradient: UnsafeMutablePointer<T>, inputGradient: UnsafeMutablePointer<T>?,
                  parameterGradients: Bool = true, arena: inout Arena) {
        switch self {
        case .plain(let net, _):
            net.backward(x, ldx: ldx, rows: rows, tape: tape, outputGradient: outputGradient, inputGradient: inputGradient,
                         parameterGradients: parameterGradients, arena: &arena)
        case .residual(let net):
            net.backward(x, ldx: ldx, rows: rows, tape: tape, outputGradient: outputGradient, inputGradient: inputGradient,
                         parameterGradients: parameterGradients, arena: &arena)
        }
    }
}
