import RealModule

/// Affine coupling (Dinh et al., "Density estimation using Real NVP", ICLR 2017).
///
/// With `a` the conditioning features (mask 1) and `b` the transformed ones (mask 0):
///
///     forward:  z_a = x_a,   z_b = x_b ⊙ exp(s(x_a)) + t(x_a),   log|det J| = Σ s
///     inverse:  x_a = z_a,   x_b = (z_b − t(z_a)) ⊙ exp(−s(z_a))
///
/// The conditioner is an ``MLP`` `|a| → hidden… → 2|b|`; output columns `[0, |b|)` are the shift
/// `t`, columns `[|b|, 2|b|)` the unconstrained log-scale `ŝ`. The log-scale is soft-clamped,
/// `s = c·tanh(ŝ/c)` with `c = clamp` (default 5, so each layer scales by at most e^±5; `clamp = 0`
/// disables the clamp) — smooth, identity near zero, and bounded so early training cannot blow
/// up. The conditioner's last layer starts at zero: a new layer is the identity.
///
/// - Complexity: O(N · Σ widths products) per call, dominated by the conditioner.
public final class AffineCoupling<Scalar: FlowScalar>: FlowLayer, TapedBackward {
    public static var typeName: String { "affine_coupling" }
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("mask", .intArray, shorthand: true,
                           "0/1 per feature, 1 = conditioning; or \"half\" (default) or \"alternating\""),
            HyperParameter("invert_mask", .bool, "swap the mask's roles (default false)"),
            HyperParameter("hidden", .intList, "conditioner hidden widths (default [64, 64])"),
            HyperParameter("activation", .string, "conditioner activation (default \"relu\")"),
            HyperParameter("clamp", .double, "soft clamp c of the log-scale, s = c·tanh(ŝ/c); 0 = none (default 5)"),
        ]
    }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    let split: CouplingMask
    let net: MLP<Scalar>
    let clamp: Scalar

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        let d = eventShape.reduce(1, *)
        split = try CouplingMask(spec: config["mask"], invert: config.bool("invert_mask", default: false),
                                 dimension: d, context: "affine_coupling")
        let hidden = config.ints("hidden", default: [64, 64])
        try validateHidden(hidden, context: "affine_coupling")
        let act = config.string("activation", default: "relu")
        guard let activation = Activation(rawValue: act) else {
            throw FlowError.invalidSpec("affine_coupling: unknown activation \"\(act)\" (known: \(Activation.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let c = config.double("clamp", default: 5)
        guard c >= 0, c.isFinite else { throw FlowError.invalidSpec("affine_coupling: clamp must be ≥ 0") }
        clamp = Scalar(c)
        inputShape = eventShape
        net = try MLP.checked(widths: [split.identity.count] + hidden + [2 * split.transformed.count],
                              activation: activation, seed: seed, context: "affine_coupling")
    }

    public var config: [String: JSONValue] {
        [
            "type": .string(Self.typeName),
            "mask": JSONValue(split.mask),
            "invert_mask": .bool(false),
            "hidden": JSONValue(Array(net.widths.dropFirst().dropLast())),
            "activation": .string(net.activation.rawValue),
            "clamp": .number(Double(clamp)),
        ]
    }

    public var parameters: [Parameter<Scalar>] { net.parameters }

    /// Refreshes the conditioner's packed weights.
    public func parametersDidChange() { net.repack() }

    public func workspaceBytes(count: Int) -> Int {
        split.gatherBytes(Scalar.self, rows: count)
            + Arena.bytes(Scalar.self, count * net.outFeatures) + net.workspaceBytes(rows: count)
    }

    /// The clamped log-scale.
    @inline(__always) func clamped(_ raw: Scalar) -> Scalar {
        clamp > 0 ? clamp * Scalar.tanh(raw / clamp) : raw
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        apply(x, count: count, logDet: logDet, arena: &arena, inverse: false)
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        apply(z, count: count, logDet: logDet, arena: &arena, inverse: true)
    }

    @inline(__always)
    private func apply(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                       logDet: UnsafeMutablePointer<Double>, arena: inout Arena, inverse: Bool) {
        let (input, ld) = split.conditioningInput(UnsafePointer(x), rows: count, arena: &arena)
        let st = arena.take(Scalar.self, count * net.outFeatures)
        net(input, ldx: ld, rows: count, into: st, arena: &arena)
        couple(x, st: st, count: count, logDet: logDet, inverse: inverse)
    }

    /// Tape of a training pass: the conditioner output `[t, ŝ]` (`count × 2|b|`), then the
    /// network's hidden activations (``MLP/tapeCount(rows:)``); the backward pass then skips the
    /// network's second forward pass.
    public func tapeBytes(count: Int) -> Int { net.couplingTapeBytes(rows: count) }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, logDet: UnsafeMutablePointer<Double>,
                        tape: UnsafeMutableRawPointer, arena: inout Arena) {
        let (input, ld) = split.conditioningInput(UnsafePointer(x), rows: count, arena: &arena)
        let st = net.forwardRecording(input, ldx: ld, rows: count, couplingTape: tape)
        couple(x, st: st, count: count, logDet: logDet, inverse: false)
    }

    /// The affine step of every row, from the conditioner output `st` (`count × 2|b|`).
    @inline(__always)
    private func couple(_ x: UnsafeMutablePointer<Scalar>, st: UnsafePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, inverse: Bool) {
        let d = split.dimension, nb = split.transformed.count
        if let start = split.transformedRangeStart {
            Scalar.affineRows(x + start, ldx: d, st: st, ldst: 2 * nb, rows: count, count: nb, clamp: clamp,
                              inverse: inverse, logDet: logDet)
            return
        }
        split.transformed.withUnsafeBufferPointer { idx in
            for r in 0..<count {
                let row = x + r * d, shift = st + r * 2 * nb, rawScale = shift + nb
                // A scattered mask (e.g. alternating): gather-free loop over the indices.
                var sum: Scalar = 0
                for j in 0..<nb {
                    let s = clamped(rawScale[j]); sum += s
                    let i = idx[j]
                    row[i] = inverse ? (row[i] - shift[j]) * Scalar.exp(-s) : row[i] * Scalar.exp(s) + shift[j]
                }
                logDet[r] += inverse ? -Double(sum) : Double(sum)
            }
        }
    }
}

extension AffineCoupling {
    public func backwardWorkspaceBytes(count: Int) -> Int {
        split.couplingBackwardBytes(net, rows: count)
    }

    /// With `h = [t, ŝ]`, `s = c·tanh(ŝ/c)`, `z_b = x_b·eˢ + t`, `logDet = Σ s`:
    /// `∂L/∂x_b = g_b·eˢ`, `∂L/∂t = g_b`, `∂L/∂ŝ = (g_b·x_b·eˢ + w)·(1 − tanh²(ŝ/c))`, then
    /// through the conditioner into `∂L/∂x_a` (added to `g_a`, since `z_a = x_a`).
    /// `recorded`: a training tape, or nil to run the network's recording forward pass here.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                  logDetGradient w: UnsafePointer<Scalar>, recorded: UnsafeRawPointer?, arena: inout Arena) {
        let d = split.dimension, nb = split.transformed.count
        let (input, ld) = split.conditioningInput(x, rows: count, arena: &arena)
        let (h, tape) = net.couplingTape(recorded, input: input, ldx: ld, rows: count, arena: &arena)
        if let start = split.transformedRangeStart {
            // h = [t, ŝ] is overwritten by [∂L/∂t, ∂L/∂ŝ]; ŝ is read before it is written.
            Scalar.affineRowsBackward(x + start, ldx: d, st: h, ldst: 2 * nb, gradient: g + start, ldg: d, rows: count,
                                      count: nb, clamp: clamp, logDetGradient: w, inverse: false)
        } else {
            backwardGathered(x, count: count, gradient: g, h: h, logDetGradient: w)
        }
        let dxa = arena.take(Scalar.self, count * split.identity.count)
        net.backward(input, ldx: ld, rows: count, tape: tape, outputGradient: h, inputGradient: dxa, arena: &arena)
        split.addToConditioning(dxa, rows: count, gradient: g)
    }

    /// The affine step's backward pass for transformed features that are not one contiguous
    /// range: per row and feature through the split's index list; `h = [t, ŝ]` becomes
    /// `[∂L/∂t, ∂L/∂ŝ]`.
    @inline(__always)
    private func backwardGathered(_ x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                                  h: UnsafeMutablePointer<Scalar>, logDetGradient w: UnsafePointer<Scalar>) {
        let d = split.dimension, nb = split.transformed.count
        split.transformed.withUnsafeBufferPointer { idx in
            for r in 0..<count {
                let xr = x + r * d, gr = g + r * d, hr = h + r * 2 * nb
                for j in 0..<nb {
                    let i = idx[j]
                    let raw = hr[nb + j]
                    let s = clamped(raw), e = Scalar.exp(s)
                    let gz = gr[i]
                    let ds = gz * xr[i] * e + w[r]
                    var slope: Scalar = 1
                    if clamp > 0 { let th = Scalar.tanh(raw / clamp); slope = 1 - th * th }
                    hr[j] = gz
                    hr[nb + j] = ds * slope
                    gr[i] = gz * e
                }
            }
        }
    }
}

/// Checks conditioner hidden widths against ``Limits``.
func validateHidden(_ hidden: [Int], context: String) throws {
    guard hidden.count <= Limits.maxHiddenLayers else {
        throw FlowError.limitExceeded("\(context): \(hidden.count) hidden layers; the limit is \(Limits.maxHiddenLayers)")
    }
    for w in hidden where w < 1 {
        throw FlowError.invalidSpec("\(context): hidden width \(w) must be at least 1")
    }
    for w in hidden where w > Limits.maxHiddenWidth {
        throw FlowError.limitExceeded("\(context): hidden width \(w) exceeds the limit \(Limits.maxHiddenWidth)")
    }
}
