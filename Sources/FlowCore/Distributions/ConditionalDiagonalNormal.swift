/// A diagonal normal whose mean and log standard deviation come from the flow's encoded context
/// (nflows' `ConditionalDiagonalNormal`):
///
///     [loc | log_scale] = net(e)                  (2·D outputs: the first D means, the last D log σ)
///     z = loc + exp(log_scale) ⊙ ε
///     log p(z | e) = Σ_j [−½((z_j − loc_j)/σ_j)² − log σ_j] − (D/2)·log 2π
///
/// `net` is an ``MLP`` `E → hidden… → 2D` (`E` = ``contextFeatures``, the flow's
/// ``ContextEncoder/outputSize``); with `hidden` empty it is one linear map, nflows' usual
/// `context_encoder = nn.Linear(E, 2D)`. Its hidden layers start from PyTorch's default
/// initialisation (from the flow's seed, ``initializationRow``) and its last layer at zero, so a
/// new base is the standard normal at every context. Parameters, in file order: `weight_0,
/// bias_0, …, weight_L, bias_L`.
///
/// Spec: `{"type": "conditional_diagonal_normal", "hidden": [], "activation": "relu"}` (both
/// keys optional, defaults shown); the flow must have a context.
///
/// - Complexity: O(N·(P + D)) per call for N rows and a network of P weights; the backward pass
///   runs the network forward once more (recording) and back once.
public final class ConditionalDiagonalNormal<Scalar: FlowScalar>: ConditionalBaseDistribution {
    public static var typeName: String { "conditional_diagonal_normal" }
    public static var hyperParameters: [HyperParameter] {
        [.hidden(of: "base network", default: []), .activation(of: "base network")]
    }

    /// The initialisation stream row of the network's hidden layers (the context embedding's is
    /// 2⁴⁰, a layer conditioner's 0 under its own seed).
    static var initializationRow: UInt64 { 1 << 41 }

    public let eventSize: Int
    public let contextFeatures: Int
    /// `E → hidden… → 2D`.
    let network: MLP<Scalar>

    public init(config: [String: JSONValue], eventSize: Int, contextFeatures: Int, seed: UInt64) throws {
        let context = "base (\(Self.typeName))"
        guard contextFeatures > 0 else {
            throw FlowError.invalidSpec("\(context): the base reads the flow's context, but the flow has none (give the spec a \"context\")")
        }
        guard contextFeatures <= Limits.maxContextSize else {
            throw FlowError.invalidSpec("\(context): \(contextFeatures) context features exceed the limit \(Limits.maxContextSize)")
        }
        let (hidden, activation) = try MLP<Scalar>.settings(config, context: context, defaultHidden: [])
        let (outputs, overflow) = eventSize.multipliedReportingOverflow(by: 2)
        guard eventSize >= 1, !overflow, outputs <= Limits.maxParametersPerLayer else {
            throw FlowError.limitExceeded("\(context): \(eventSize) features need too many network outputs")
        }
        let widths = [contextFeatures] + hidden + [outputs]
        _ = try MLP<Scalar>.checkedSize(widths: widths, context: context)
        self.eventSize = eventSize
        self.contextFeatures = contextFeatures
        network = try MLP(widths: widths, activation: activation, seed: seed, row: Self.initializationRow)
    }

    public var config: [String: JSONValue] {
        [
            "type": .string(Self.typeName),
            "hidden": JSONValue(Array(network.widths.dropFirst().dropLast())),
            "activation": .string(network.activation.rawValue),
        ]
    }

    public var parameters: [Parameter<Scalar>] { network.parameters }

    /// Refreshes the network's packed weights.
    public func parametersDidChange() { network.repack() }

    // MARK: Scratch

    public func workspaceBytes(count: Int) -> Int {
        Arena.bytes(Scalar.self, count * contextFeatures) + Arena.bytes(Scalar.self, count * 2 * eventSize)
            + network.workspaceBytes(rows: count)
    }

    public func backwardWorkspaceBytes(count: Int) -> Int {
        2 * Arena.bytes(Scalar.self, count * contextFeatures) + 2 * Arena.bytes(Scalar.self, count * 2 * eventSize)
            + Arena.bytes(Scalar.self, network.tapeCount(rows: count)) + network.backwardWorkspaceBytes(rows: count)
    }

    /// The network's input: `context`, or `count` zero rows from the arena.
    @inline(__always)
    private func networkInput(_ context: UnsafePointer<Scalar>?, count: Int, arena: inout Arena) -> UnsafePointer<Scalar> {
        if let context { return context }
        let zeros = arena.take(Scalar.self, count * contextFeatures)
        zeros.update(repeating: 0, count: count * contextFeatures)
        return UnsafePointer(zeros)
    }

    /// `[loc | log_scale]` of `count` rows (`count × 2D`, from the arena).
    private func distributionParameters(_ context: UnsafePointer<Scalar>?, count: Int,
                                        arena: inout Arena) -> UnsafeMutablePointer<Scalar> {
        let input = networkInput(context, count: count, arena: &arena)
        let theta = arena.take(Scalar.self, count * 2 * eventSize)
        network(input, ldx: contextFeatures, rows: count, into: theta, arena: &arena)
        return theta
    }

    /// `out[r] = log N(z_r; loc_r, diag σ_r²)` with `[loc_r | log σ_r]` row `r` of `theta`, in
    /// Double (the arithmetic of ``DiagonalNormal``: at `loc = 0`, `log σ = 0` it gives the
    /// standard normal's bits).
    @inline(__always)
    private func logDensity(_ z: UnsafePointer<Scalar>, theta: UnsafePointer<Scalar>, count: Int,
                            into out: UnsafeMutablePointer<Double>) {
        let d = eventSize
        for r in 0..<count {
            let row = z + r * d, m = theta + r * 2 * d, ls = m + d
            var constant = -Double(d) * halfLogTwoPi
            var sq = 0.0
            for j in 0..<d {
                constant -= Double(ls[j])
                let u = (Double(row[j]) - Double(m[j])) * Double.exp(-Double(ls[j]))
                sq += u * u
            }
            out[r] = constant - 0.5 * sq
        }
    }

    // MARK: With a context

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func logProb(_ z: UnsafePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                        into out: UnsafeMutablePointer<Double>, arena: inout Arena) {
        guard count > 0 else { return }
        let theta = distributionParameters(context, count: count, arena: &arena)
        logDensity(z, theta: theta, count: count, into: out)
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func sample(into out: UnsafeMutablePointer<Scalar>, count: Int, seed: UInt64, firstRow: UInt64,
                       temperature: Scalar, context: UnsafePointer<Scalar>?, logProb: UnsafeMutablePointer<Double>?,
                       arena: inout Arena) {
        guard count > 0 else { return }
        let d = eventSize
        Philox4x32(seed: seed).fillNormalRows(out, rows: count, count: d, firstRow: firstRow,
                                              stream: RandomStream.baseSamples)
        let theta = distributionParameters(context, count: count, arena: &arena)
        for r in 0..<count {
            let row = out + r * d, m = theta + r * 2 * d, ls = m + d
            for j in 0..<d { row[j] = m[j] + Scalar.exp(ls[j]) * temperature * row[j] }
        }
        if let logProb { logDensity(out, theta: theta, count: count, into: logProb) }
    }

    /// With `u = (z − loc)·e^−ls` per feature: `∂/∂z = −u·e^−ls`, `∂/∂loc = u·e^−ls`,
    /// `∂/∂ls = u² − 1`; the last two, times `w`, are the network's output gradient, which its
    /// backward pass turns into parameter gradients and `∂/∂e`.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func backward(_ z: UnsafePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                         logProbGradient w: UnsafePointer<Scalar>, gradient g: UnsafeMutablePointer<Scalar>,
                         contextGradient: UnsafeMutablePointer<Scalar>?, arena: inout Arena) {
        guard count > 0 else { return }
        let d = eventSize, e = contextFeatures
        let input = networkInput(context, count: count, arena: &arena)
        let theta = arena.take(Scalar.self, count * 2 * d)
        let tape = arena.take(Scalar.self, network.tapeCount(rows: count))
        network.forwardRecording(input, ldx: e, rows: count, into: theta, tape: tape)
        let delta = arena.take(Scalar.self, count * 2 * d)
        for r in 0..<count {
            let m = theta + r * 2 * d, ls = m + d, dm = delta + r * 2 * d, dls = dm + d
            for j in 0..<d {
                let inv = Scalar.exp(-ls[j])
                let u = (z[r * d + j] - m[j]) * inv
                let dz = -u * inv
                g[r * d + j] = w[r] * dz
                dm[j] = -w[r] * dz
                dls[j] = w[r] * (u * u - 1)
            }
        }
        let inputGradient = contextGradient == nil ? nil : arena.take(Scalar.self, count * e)
        network.backward(input, ldx: e, rows: count, tape: UnsafePointer(tape), outputGradient: delta,
                         inputGradient: inputGradient, arena: &arena)
        if let contextGradient, let inputGradient {
            for i in 0..<count * e { contextGradient[i] += inputGradient[i] }
        }
    }

    // MARK: Without a context (at e = 0)

    /// Runs `body` with an arena of `bytes` bytes of fresh scratch (the context-free entry
    /// points, which have no caller's arena; flows never use them); false, without running it,
    /// when the scratch cannot be allocated.
    private func withScratch(_ bytes: Int, _ body: (inout Arena) -> Void) -> Bool {
        let workspace = Workspace()
        guard (try? workspace.reserve(bytes: bytes)) != nil else { return false }
        var arena = workspace.arena()
        body(&arena)
        return true
    }

    /// ``logProb(_:count:context:into:arena:)`` at `e = 0`.
    public func logProb(_ z: UnsafePointer<Scalar>, count: Int, into out: UnsafeMutablePointer<Double>) {
        let done = withScratch(workspaceBytes(count: count)) { logProb(z, count: count, context: nil, into: out, arena: &$0) }
        if !done { out.update(repeating: .nan, count: count) }
    }

    /// ``sample(into:count:seed:firstRow:temperature:context:logProb:arena:)`` at `e = 0`.
    public func sample(into out: UnsafeMutablePointer<Scalar>, count: Int, seed: UInt64, firstRow: UInt64,
                       temperature: Scalar) {
        let done = withScratch(workspaceBytes(count: count)) {
            sample(into: out, count: count, seed: seed, firstRow: firstRow, temperature: temperature, context: nil,
                   logProb: nil, arena: &$0)
        }
        if !done { out.update(repeating: .nan, count: count * eventSize) }
    }

    /// ``backward(_:count:context:logProbGradient:gradient:contextGradient:arena:)`` at `e = 0`.
    public func backward(_ z: UnsafePointer<Scalar>, count: Int, logProbGradient w: UnsafePointer<Scalar>,
                         gradient: UnsafeMutablePointer<Scalar>) {
        let done = withScratch(backwardWorkspaceBytes(count: count)) {
            backward(z, count: count, context: nil, logProbGradient: w, gradient: gradient, contextGradient: nil,
                     arena: &$0)
        }
        if !done { gradient.update(repeating: .nan, count: count * eventSize) }
    }
}
