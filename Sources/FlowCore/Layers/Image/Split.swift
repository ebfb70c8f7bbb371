/// Multi-scale factor-out (RealNVP §3.6, Glow §3): half of the channels leave the flow here,
/// the other half continue through the nested ``sublayers``.
///
/// For input `[C, H, W]`, `x₁` = the first `C − ⌊C/2⌋` channels (kept), `x₂` = the last
/// `⌊C/2⌋` (factored out). The nested layers (spec key `layers`) transform `x₁`; `x₂` goes to the
/// base distribution, optionally through Glow's learned prior (`prior = "conditional"`): a
/// ``ConvNet`` reads `x₁` and gives a mean `μ` and raw log-scale `ŝ` per element of `x₂`, and
///
///     z₂ = (x₂ − μ(x₁))·e^{−s},   s = c·tanh(ŝ/c),   log|det J| = −Σ s
///
/// so a standard normal on `z₂` is `N(μ, e^{2s})` on `x₂` (zero-initialised: `N(0, I)` at
/// first). `prior = "standard"` passes `x₂` through unchanged.
///
/// Output: a flat vector of `C·H·W` values, `[f₁(x₁) flattened | z₂ flattened]` — the nested
/// flow's output first, in its own layout, then the factored channels in `[C/2, H, W]` order.
/// Nothing image-shaped follows a split at the same level; the next level lives inside it.
public final class Split<Scalar: FlowScalar>: LayerContainer, TapedBackward {
    public static var typeName: String { "split" }
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("prior", .string, "\"conditional\" (Glow's learned prior, default) or \"standard\""),
            HyperParameter("hidden", .int, "channels of the prior network's hidden convolutions (default 64)"),
            HyperParameter("clamp", .double, "soft clamp c of the prior's log-scale (default 5; 0 = none)"),
            HyperParameter("layers", .layers, "the layers applied to the kept channels"),
        ]
    }

    public let inputShape: [Int]
    public let outputShape: [Int]
    let channels: Int, plane: Int
    let keptChannels: Int, factoredChannels: Int
    let conditional: Bool
    let hidden: Int
    let clamp: Scalar
    /// The nested flow on the kept channels.
    let nested: Composition<Scalar>
    /// Glow's prior network (conditional prior only).
    let net: ConvNet<Scalar>?

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        guard eventShape.count == 3, eventShape[0] >= 2 else {
            throw FlowError.invalidSpec("split needs image events [C, H, W] with C ≥ 2, got \(eventShape)")
        }
        let (c, h, w) = (eventShape[0], eventShape[1], eventShape[2])
        let prior = config.string("prior", default: "conditional")
        guard prior == "conditional" || prior == "standard" else {
            throw FlowError.invalidSpec("split: prior must be \"conditional\" or \"standard\", got \"\(prior)\"")
        }
        let clampValue = config.double("clamp", default: 5)
        guard clampValue >= 0, clampValue.isFinite else { throw FlowError.invalidSpec("split: clamp must be ≥ 0") }
        channels = c
        plane = h * w
        factoredChannels = c / 2
        keptChannels = c - factoredChannels
        conditional = prior == "conditional"
        hidden = config.int("hidden", default: 64)
        clamp = Scalar(clampValue)
        inputShape = eventShape
        outputShape = [c * h * w]
        let keptShape = [keptChannels, h, w]
        let (layers, nestedOut) = try LayerRegistry.makeLayers(
            config["layers"]?.arrayValue ?? [], eventShape: keptShape, seed: LayerRegistry.layerSeed(seed, index: 1 << 20),
            context: "split: ", Scalar.self)
        guard nestedOut.reduce(1, *) == keptChannels * plane else {
            throw FlowError.invalidSpec("split: the nested layers change the size of the kept part")
        }
        nested = Composition(layers: layers, eventShape: keptShape)
        net = conditional
            ? try ConvNet.checked(channels: keptChannels, hidden: hidden, outChannels: 2 * factoredChannels,
                                  height: h, width: w, seed: seed, context: "split prior")
            : nil
    }

    public var config: [String: JSONValue] {
        ["type": .string(Self.typeName), "prior": .string(conditional ? "conditional" : "standard"),
         "hidden": .number(Double(hidden)), "clamp": .number(Double(clamp)),
         "layers": .array(nested.layers.map { .object($0.config) })]
    }

    public var sublayers: [any FlowLayer<Scalar>] { nested.layers }
    public var ownParameters: [Parameter<Scalar>] { net?.parameters ?? [] }
    public var parameters: [Parameter<Scalar>] { ownParameters + nested.parameters }

    public func parametersDidChange() {
        net?.repack()
        nested.parametersDidChange()
    }

    public func initializeDataDependentSublayers(_ x: UnsafePointer<Scalar>, count: Int) throws {
        var kept = [Scalar](repeating: 0, count: count * keptSize)
        kept.withUnsafeMutableBufferPointer { gather(x, count: count, into: $0.baseAddress!) }
        try kept.withUnsafeBufferPointer { try DataDependentInitialization.run(nested.layers, $0.baseAddress!, count: count) }
    }

    var keptSize: Int { keptChannels * plane }
    var factoredSize: Int { factoredChannels * plane }

    /// Copies the kept prefix of every sample into contiguous rows.
    @inline(__always)
    private func gather(_ x: UnsafePointer<Scalar>, count: Int, into k: UnsafeMutablePointer<Scalar>) {
        let size = channels * plane
        for r in 0..<count { (k + r * keptSize).update(from: x + r * size, count: keptSize) }
    }

    @inline(__always)
    private func scatter(_ k: UnsafePointer<Scalar>, count: Int, into x: UnsafeMutablePointer<Scalar>) {
        let size = channels * plane
        for r in 0..<count { (x + r * size).update(from: k + r * keptSize, count: keptSize) }
    }

    private var priorOut: Int { 2 * factoredSize }

    public func workspaceBytes(count: Int) -> Int {
        var bytes = Arena.bytes(Scalar.self, count * keptSize) + nested.workspaceBytes(count: count)
        if let net {
            bytes = Swift.max(bytes, Arena.bytes(Scalar.self, count * keptSize) + Arena.bytes(Scalar.self, count * priorOut)
                                  + net.workspaceBytes(rows: count))
        }
        return bytes
    }

    /// `z₂ = (x₂ − μ)·e^{−s}` (forward) or its inverse on every sample's factored suffix, given the
    /// kept prefix `x₁` in contiguous rows `k`; returns nothing, adds ∓Σ s to `logDet`.
    @inline(__always)
    private func prior(_ x: UnsafeMutablePointer<Scalar>, kept k: UnsafePointer<Scalar>, count: Int,
                       logDet: UnsafeMutablePointer<Double>, inverse: Bool, arena: inout Arena) {
        guard let net else { return }
        let size = channels * plane
        let st = arena.take(Scalar.self, count * priorOut)
        net(k, rows: count, into: st, arena: &arena)
        for r in 0..<count {
            let mean = st + r * priorOut
            // Forward is the affine step's inverse direction: (x − μ)·e^{−s}.
            let sum = Scalar.affineStep(x + r * size + keptSize, shift: mean, raw: mean + factoredSize,
                                        count: factoredSize, clamp: clamp, inverse: !inverse)
            logDet[r] += inverse ? sum : -sum
        }
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let k = arena.take(Scalar.self, count * keptSize)
        gather(x, count: count, into: k)
        var scratch = arena
        prior(x, kept: k, count: count, logDet: logDet, inverse: false, arena: &scratch)
        nested.forward(k, count: count, logDet: logDet, arena: &arena)
        scatter(k, count: count, into: x)
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let k = arena.take(Scalar.self, count * keptSize)
        gather(z, count: count, into: k)
        var scratch = arena
        nested.inverse(k, count: count, logDet: logDet, arena: &scratch)
        scatter(k, count: count, into: z)
        prior(z, kept: k, count: count, logDet: logDet, inverse: true, arena: &arena)
    }
}

extension Split {
    public func backwardWorkspaceBytes(count: Int) -> Int {
        var bytes = 3 * Arena.bytes(Scalar.self, count * keptSize)
            + Arena.bytes(Scalar.self, Swift.max(nested.layers.count, 1) * count * keptSize)
            + Arena.bytes(Double.self, count)
            + nested.trainingWorkspaceBytes(count: count)
        if let net {
            bytes += 2 * Arena.bytes(Scalar.self, count * priorOut) + Arena.bytes(Scalar.self, net.tapeCount(rows: count))
                + Arena.bytes(Scalar.self, count * keptSize) + net.backwardWorkspaceBytes(rows: count)
        }
        return bytes
    }

    /// Tape of a training pass: the nested flow's saved inputs and tapes, then the prior
    /// network's output and hidden activations.
    public func tapeBytes(count: Int) -> Int {
        nestedSavedBytes(count) + nested.layerTapeBytes(count: count) + priorTapeBytes(count)
    }

    private func nestedSavedBytes(_ count: Int) -> Int {
        Arena.bytes(Scalar.self, Swift.max(nested.layers.count, 1) * count * keptSize)
    }

    private func priorTapeBytes(_ count: Int) -> Int {
        guard let net else { return 0 }
        return Arena.bytes(Scalar.self, count * priorOut) + Arena.bytes(Scalar.self, net.tapeCount(rows: count))
    }

    /// The parts of a tape: nested saved inputs, nested tapes, prior output, prior network tape.
    @inline(__always)
    private func tapeParts(_ tape: UnsafeRawPointer, count: Int)
        -> (saved: UnsafeMutablePointer<Scalar>, nested: UnsafeMutableRawPointer,
            st: UnsafeMutablePointer<Scalar>, net: UnsafeMutablePointer<Scalar>) {
        let base = UnsafeMutableRawPointer(mutating: tape)
        let nestedTape = base + nestedSavedBytes(count)
        let prior = nestedTape + nested.layerTapeBytes(count: count)
        return (base.assumingMemoryBound(to: Scalar.self), nestedTape, prior.assumingMemoryBound(to: Scalar.self),
                (prior + Arena.bytes(Scalar.self, count * priorOut)).assumingMemoryBound(to: Scalar.self))
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, logDet: UnsafeMutablePointer<Double>,
                        tape: UnsafeMutableRawPointer, arena: inout Arena) {
        let parts = tapeParts(tape, count: count)
        let size = channels * plane
        let k = arena.take(Scalar.self, count * keptSize)
        gather(x, count: count, into: k)
        if let net {
            var scratch = arena
            net.forwardRecording(k, rows: count, into: parts.st, tape: parts.net, arena: &scratch)
            for r in 0..<count {
                let mean = parts.st + r * priorOut
                let sum = Scalar.affineStep(x + r * size + keptSize, shift: mean, raw: mean + factoredSize,
                                            count: factoredSize, clamp: clamp, inverse: true)
                logDet[r] -= sum
            }
        }
        nested.forward(saving: parts.saved, tape: parts.nested, k, count: count, logDet: logDet, arena: &arena)
        scatter(k, count: count, into: x)
    }

    /// Nested part: the nested flow's own backward pass on the kept rows. Prior part, with
    /// `z₂ = (x₂ − μ)·e^{−s}`, `logDet = −Σ s`: `∂L/∂x₂ = g₂·e^{−s}`, `∂L/∂μ = −g₂·e^{−s}`,
    /// `∂L/∂ŝ = −(g₂·z₂ + w)·(1 − tanh²(ŝ/c))`, then through the prior network into `∂L/∂x₁`.
    /// `recorded`: the tape of ``forward(_:count:logDet:tape:arena:)``, or nil to rerun the
    /// nested flow and the prior network forward here.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                  logDetGradient w: UnsafePointer<Scalar>, recorded: UnsafeRawPointer?, arena: inout Arena) {
        let size = channels * plane
        let k = arena.take(Scalar.self, count * keptSize)       // x₁ (conditioner input)
        let gk = arena.take(Scalar.self, count * keptSize)      // ∂L/∂(kept)
        gather(x, count: count, into: k)
        for r in 0..<count { (gk + r * keptSize).update(from: g + r * size, count: keptSize) }
        if let recorded {
            let parts = tapeParts(recorded, count: count)
            var scratch = arena
            nested.backward(saved: parts.saved, tape: parts.nested, count: count, gradient: gk, logDetGradient: w,
                            arena: &scratch)
        } else {
            let work = arena.take(Scalar.self, count * keptSize)    // x₁ pushed through the nested flow
            let saved = arena.take(Scalar.self, Swift.max(nested.layers.count, 1) * count * keptSize)
            let nestedLogDet = arena.take(Double.self, count)
            work.update(from: k, count: count * keptSize)
            nestedLogDet.update(repeating: 0, count: count)
            var scratch = arena
            nested.forward(saving: saved, work, count: count, logDet: nestedLogDet, arena: &scratch)
            scratch = arena
            nested.backward(saved: saved, count: count, gradient: gk, logDetGradient: w, arena: &scratch)
        }

        if let net {
            let dst = arena.take(Scalar.self, count * priorOut)
            let dk = arena.take(Scalar.self, count * keptSize)
            let st: UnsafeMutablePointer<Scalar>, tape: UnsafeMutablePointer<Scalar>
            if let recorded {
                let parts = tapeParts(recorded, count: count)
                (st, tape) = (parts.st, parts.net)
            } else {
                st = arena.take(Scalar.self, count * priorOut)
                tape = arena.take(Scalar.self, net.tapeCount(rows: count))
                net.forwardRecording(k, rows: count, into: st, tape: tape, arena: &arena)
            }
            for r in 0..<count {
                let x2 = x + r * size + keptSize, g2 = g + r * size + keptSize
                let mean = st + r * priorOut, raw = mean + factoredSize
                let dMean = dst + r * priorOut, dRaw = dMean + factoredSize
                Scalar.affineStepBackward(x2, shift: mean, raw: raw, gradient: g2, shiftGradient: dMean, rawGradient: dRaw,
                                          count: factoredSize, clamp: clamp, logDetGradient: w[r], inverse: true)
            }
            net.backward(k, rows: count, tape: tape, outputGradient: dst, inputGradient: dk, arena: &arena)
            for i in 0..<(count * keptSize) { gk[i] += dk[i] }
        }
        for r in 0..<count { (g + r * size).update(from: gk + r * keptSize, count: keptSize) }
    }
}
