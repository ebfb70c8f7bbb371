/// Additive coupling (Dinh et al., "NICE: Non-linear Independent Components Estimation", 2015).
///
///     forward:  z_a = x_a,   z_b = x_b + t(x_a),   log|det J| = 0
///     inverse:  x_b = z_b − t(z_a)
///
/// The conditioner is an ``MLP`` `|a| → hidden… → |b|` whose last layer starts at zero.
/// Volume-preserving: pair it with a scaling layer (``ActNorm``) or a diagonal-normal base, as
/// NICE does.
public final class AdditiveCoupling<Scalar: FlowScalar>: FlowLayer, TapedBackward {
    public static var typeName: String { "additive_coupling" }
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("mask", .intArray, shorthand: true,
                           "0/1 per feature, 1 = conditioning; or \"half\" (default) or \"alternating\""),
            HyperParameter("invert_mask", .bool, "swap the mask's roles (default false)"),
            HyperParameter("hidden", .intList, "conditioner hidden widths (default [64, 64])"),
            HyperParameter("activation", .string, "conditioner activation (default \"relu\")"),
        ]
    }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    let split: CouplingMask
    let net: MLP<Scalar>

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        let d = eventShape.reduce(1, *)
        split = try CouplingMask(spec: config["mask"], invert: config.bool("invert_mask", default: false),
                                 dimension: d, context: "additive_coupling")
        let hidden = config.ints("hidden", default: [64, 64])
        try validateHidden(hidden, context: "additive_coupling")
        let act = config.string("activation", default: "relu")
        guard let activation = Activation(rawValue: act) else {
            throw FlowError.invalidSpec("additive_coupling: unknown activation \"\(act)\" (known: \(Activation.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        inputShape = eventShape
        net = try MLP.checked(widths: [split.identity.count] + hidden + [split.transformed.count],
                              activation: activation, seed: seed, context: "additive_coupling")
    }

    public var config: [String: JSONValue] {
        [
            "type": .string(Self.typeName),
            "mask": JSONValue(split.mask),
            "invert_mask": .bool(false),
            "hidden": JSONValue(Array(net.widths.dropFirst().dropLast())),
            "activation": .string(net.activation.rawValue),
        ]
    }

    public var parameters: [Parameter<Scalar>] { net.parameters }

    /// Refreshes the conditioner's packed weights.
    public func parametersDidChange() { net.repack() }

    public func workspaceBytes(count: Int) -> Int {
        split.gatherBytes(Scalar.self, rows: count)
            + Arena.bytes(Scalar.self, count * net.outFeatures) + net.workspaceBytes(rows: count)
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        apply(x, count: count, arena: &arena, sign: 1)
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        apply(z, count: count, arena: &arena, sign: -1)
    }

    @inline(__always)
    private func apply(_ x: UnsafeMutablePointer<Scalar>, count: Int, arena: inout Arena, sign: Scalar) {
        let (input, ld) = split.conditioningInput(UnsafePointer(x), rows: count, arena: &arena)
        let shift = arena.take(Scalar.self, count * split.transformed.count)
        net(input, ldx: ld, rows: count, into: shift, arena: &arena)
        couple(x, shift: shift, count: count, sign: sign)
    }

    /// Tape of a training pass: the shift (`count × |b|`), then the network's hidden
    /// activations (``MLP/tapeCount(rows:)``); the backward pass then skips the network's second
    /// forward pass.
    public func tapeBytes(count: Int) -> Int { net.couplingTapeBytes(rows: count) }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, logDet: UnsafeMutablePointer<Double>,
                        tape: UnsafeMutableRawPointer, arena: inout Arena) {
        let (input, ld) = split.conditioningInput(UnsafePointer(x), rows: count, arena: &arena)
        let shift = net.forwardRecording(input, ldx: ld, rows: count, couplingTape: tape)
        couple(x, shift: shift, count: count, sign: 1)
    }

    /// `x_b += sign·t` for every row, from the shift `t` (`count × |b|`).
    @inline(__always)
    private func couple(_ x: UnsafeMutablePointer<Scalar>, shift: UnsafePointer<Scalar>, count: Int, sign: Scalar) {
        let d = split.dimension, nb = split.transformed.count
        split.transformed.withUnsafeBufferPointer { idx in
            for r in 0..<count {
                let row = x + r * d, t = shift + r * nb
                if let start = split.transformedRangeStart {
                    let xb = row + start
                    for j in 0..<nb { xb[j] += sign * t[j] }
                } else {
                    for j in 0..<nb { row[idx[j]] += sign * t[j] }
                }
            }
        }
    }
}

extension AdditiveCoupling {
    public func backwardWorkspaceBytes(count: Int) -> Int {
        split.couplingBackwardBytes(net, rows: count)
    }

    /// `z_b = x_b + t(x_a)`: `∂L/∂x_b = g_b`, `∂L/∂t = g_b`, then through the conditioner into
    /// `∂L/∂x_a`. The log-determinant is constant, so `logDetGradient` does not enter.
    /// `recorded`: a training tape, or nil to run the network's recording forward pass here.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                  logDetGradient w: UnsafePointer<Scalar>, recorded: UnsafeRawPointer?, arena: inout Arena) {
        let d = split.dimension, nb = split.transformed.count
        let (input, ld) = split.conditioningInput(x, rows: count, arena: &arena)
        let (dt, tape) = net.couplingTape(recorded, input: input, ldx: ld, rows: count, arena: &arena)
        split.transformed.withUnsafeBufferPointer { idx in
            for r in 0..<count {
                for j in 0..<nb { dt[r * nb + j] = g[r * d + idx[j]] }
            }
        }
        let dxa = arena.take(Scalar.self, count * split.identity.count)
        net.backward(input, ldx: ld, rows: count, tape: tape, outputGradient: dt, inputGradient: dxa, arena: &arena)
        split.addToConditioning(dxa, rows: count, gradient: g)
    }
}
