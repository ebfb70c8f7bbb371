/// Affine coupling for images (RealNVP §3.4, Glow §3.3) with a convolutional conditioner.
///
/// The input `x` (`[C, H, W]`) splits into an identity part `x_a` and a transformed part `x_b`;
/// a ``ConvNet`` (`conv3×3 → ReLU → conv1×1 → ReLU → zero-initialised conv3×3`, width
/// `hidden`) reads `x_a` and outputs a shift `t` and a raw log-scale `ŝ` for every transformed
/// element:
///
///     s = c·tanh(ŝ/c),   z_b = x_b·eˢ + t,   z_a = x_a,   log|det J| = Σ s
///
/// Masks:
/// - `"channel"`: `x_a` = the first ⌊C/2⌋ channels, `x_b` the rest (`invert_mask` swaps: `x_a`
///   = the last ⌊C/2⌋). The network maps ⌊C/2⌋ channels to `2·(C − ⌊C/2⌋)`: channels
///   `[0, n_b)` are `t`, `[n_b, 2n_b)` are `ŝ`.
/// - `"checkerboard"`: `x_a` = pixels with `(h + w)` even in every channel (`invert_mask`:
///   odd). The network reads `x ⊙ mask` (all `C` channels) and outputs `2C` channels (`t`, then
///   `ŝ`), used at the transformed pixels only.
///
/// `clamp` c (default 5; 0 = none) bounds each layer's scaling to e^±c. A new layer is the
/// identity (the network's last convolution starts at zero).
public final class ConvAffineCoupling<Scalar: FlowScalar>: FlowLayer, TapedBackward {
    public static var typeName: String { "conv_affine_coupling" }
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("mask", .string, "\"channel\" (default) or \"checkerboard\""),
            HyperParameter("invert_mask", .bool, "swap the identity and transformed parts (default false)"),
            HyperParameter("hidden", .int, "channels of the conditioner's hidden convolutions (default 64)"),
            HyperParameter("clamp", .double, "soft clamp c of the log-scale, s = c·tanh(ŝ/c); 0 = none (default 5)"),
        ]
    }

    enum Mask: String { case channel, checkerboard }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    let mask: Mask
    let invertMask: Bool
    let hidden: Int
    let clamp: Scalar
    let channels: Int, plane: Int
    /// Channel mask: identity channels start at `identityStart` (count `identityCount`), transformed at
    /// `transformedStart` (count `transformedCount`).
    let identityStart: Int, identityCount: Int, transformedStart: Int, transformedCount: Int
    /// Checkerboard mask over one plane: 1 at identity pixels.
    let pixelMask: [Scalar]
    let net: ConvNet<Scalar>

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        guard eventShape.count == 3 else {
            throw FlowError.invalidSpec("conv_affine_coupling needs image events [C, H, W], got \(eventShape)")
        }
        let (c, h, w) = (eventShape[0], eventShape[1], eventShape[2])
        guard let m = Mask(rawValue: config.string("mask", default: "channel")) else {
            throw FlowError.invalidSpec("conv_affine_coupling: mask must be \"channel\" or \"checkerboard\"")
        }
        let clampValue = config.double("clamp", default: 5)
        guard clampValue >= 0, clampValue.isFinite else { throw FlowError.invalidSpec("conv_affine_coupling: clamp must be ≥ 0") }
        mask = m
        invertMask = config.bool("invert_mask", default: false)
        hidden = config.int("hidden", default: 64)
        clamp = Scalar(clampValue)
        channels = c
        plane = h * w
        inputShape = eventShape
        switch m {
        case .channel:
            guard c >= 2 else { throw FlowError.invalidSpec("conv_affine_coupling: a channel mask needs at least 2 channels, got \(c)") }
            identityCount = c / 2
            transformedCount = c - identityCount
            identityStart = invertMask ? transformedCount : 0
            transformedStart = invertMask ? 0 : identityCount
            pixelMask = []
            net = try ConvNet.checked(channels: identityCount, hidden: hidden, outChannels: 2 * transformedCount,
                                      height: h, width: w, seed: seed, context: "conv_affine_coupling")
        case .checkerboard:
            guard h * w >= 2 else { throw FlowError.invalidSpec("conv_affine_coupling: a checkerboard mask needs at least 2 pixels") }
            (identityStart, identityCount, transformedStart, transformedCount) = (0, c, 0, c)
            var pm = [Scalar](repeating: 0, count: h * w)
            for i in 0..<h { for j in 0..<w where ((i + j) % 2 == 0) != invertMask { pm[i * w + j] = 1 } }
            pixelMask = pm
            net = try ConvNet.checked(channels: c, hidden: hidden, outChannels: 2 * c, height: h, width: w,
                                      seed: seed, context: "conv_affine_coupling")
        }
    }

    public var config: [String: JSONValue] {
        ["type": .string(Self.typeName), "mask": .string(mask.rawValue), "invert_mask": .bool(invertMask),
         "hidden": .number(Double(hidden)), "clamp": .number(Double(clamp))]
    }

    public var parameters: [Parameter<Scalar>] { net.parameters }
    public func parametersDidChange() { net.repack() }

    /// Elements of one conditioner input / output sample.
    private var conditionerIn: Int { net.inFeatures }
    private var conditionerOut: Int { net.outFeatures }

    public func workspaceBytes(count: Int) -> Int {
        Arena.bytes(Scalar.self, count * conditionerIn) + Arena.bytes(Scalar.self, count * conditionerOut)
            + net.workspaceBytes(rows: count)
    }

    @inline(__always) func clamped(_ raw: Scalar) -> Scalar { clamp > 0 ? clamp * Scalar.tanh(raw / clamp) : raw }

    /// The conditioner input of `count` samples: the identity channels, or `x ⊙ mask`.
    @inline(__always)
    private func conditioningInput(_ x: UnsafePointer<Scalar>, count: Int, into a: UnsafeMutablePointer<Scalar>) {
        let size = channels * plane
        for r in 0..<count {
            let row = x + r * size, dst = a + r * conditionerIn
            switch mask {
            case .channel:
                dst.update(from: row + identityStart * plane, count: identityCount * plane)
            case .checkerboard:
                pixelMask.withUnsafeBufferPointer { m in
                    for ch in 0..<channels {
                        for p in 0..<plane { dst[ch * plane + p] = row[ch * plane + p] * m[p] }
                    }
                }
            }
        }
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
        let a = arena.take(Scalar.self, count * conditionerIn)
        let st = arena.take(Scalar.self, count * conditionerOut)
        conditioningInput(x, count: count, into: a)
        net(a, rows: count, into: st, arena: &arena)
        couple(x, st: st, count: count, logDet: logDet, inverse: inverse)
    }

    /// Tape of a training pass: the conditioner output (`count × out`), then the network's
    /// hidden activations (``ConvNet/tapeCount(rows:)``).
    public func tapeBytes(count: Int) -> Int {
        Arena.bytes(Scalar.self, count * conditionerOut) + Arena.bytes(Scalar.self, net.tapeCount(rows: count))
    }

    @inline(__always)
    private func tapeParts(_ tape: UnsafeRawPointer, count: Int) -> (st: UnsafeMutablePointer<Scalar>,
                                                                      net: UnsafeMutablePointer<Scalar>) {
        let st = UnsafeMutableRawPointer(mutating: tape).assumingMemoryBound(to: Scalar.self)
        let net = UnsafeMutableRawPointer(mutating: tape + Arena.bytes(Scalar.self, count * conditionerOut))
            .assumingMemoryBound(to: Scalar.self)
        return (st, net)
    }

    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, logDet: UnsafeMutablePointer<Double>,
                        tape: UnsafeMutableRawPointer, arena: inout Arena) {
        let (st, netTape) = tapeParts(tape, count: count)
        let a = arena.take(Scalar.self, count * conditionerIn)
        conditioningInput(x, count: count, into: a)
        net.forwardRecording(a, rows: count, into: st, tape: netTape, arena: &arena)
        couple(x, st: st, count: count, logDet: logDet, inverse: false)
    }

    /// The affine step of every sample, from the conditioner output `st`.
    @inline(__always)
    private func couple(_ x: UnsafeMutablePointer<Scalar>, st: UnsafePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, inverse: Bool) {
        let size = channels * plane
        let nb = transformedCount * plane
        for r in 0..<count {
            let row = x + r * size, shift = st + r * conditionerOut, raw = shift + nb
            switch mask {
            case .channel:
                let sum = Scalar.affineStep(row + transformedStart * plane, shift: shift, raw: raw, count: nb,
                                            clamp: clamp, inverse: inverse)
                logDet[r] += inverse ? -sum : sum
            case .checkerboard:
                var sum = 0.0
                pixelMask.withUnsafeBufferPointer { m in
                    for ch in 0..<channels {
                        for p in 0..<plane where m[p] == 0 {
                            let i = ch * plane + p
                            let s = clamped(raw[i])
                            sum += Double(s)
                            row[i] = inverse ? (row[i] - shift[i]) * Scalar.exp(-s) : row[i] * Scalar.exp(s) + shift[i]
                        }
                    }
                }
                logDet[r] += inverse ? -sum : sum
            }
        }
    }
}

extension ConvAffineCoupling {
    public func backwardWorkspaceBytes(count: Int) -> Int {
        2 * Arena.bytes(Scalar.self, count * conditionerIn) + 2 * Arena.bytes(Scalar.self, count * conditionerOut)
            + Arena.bytes(Scalar.self, net.tapeCount(rows: count)) + net.backwardWorkspaceBytes(rows: count)
    }

    /// With `z_b = x_b·eˢ + t`, `s = c·tanh(ŝ/c)`, `logDet = Σ s`: `∂L/∂x_b = g_b·eˢ`,
    /// `∂L/∂t = g_b`, `∂L/∂ŝ = (g_b·x_b·eˢ + w)·(1 − tanh²(ŝ/c))`, zero at identity elements;
    /// then back through the network into `∂L/∂x_a` (added to `g_a`, since `z_a = x_a`).
    /// `recorded`: the tape of ``forward(_:count:logDet:tape:arena:)``, or nil
    /// to run the network's recording forward pass here.
    @_specialize(where Scalar == Float) @_specialize(where Scalar == Double)
    func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                  logDetGradient w: UnsafePointer<Scalar>, recorded: UnsafeRawPointer?, arena: inout Arena) {
        let size = channels * plane, nb = transformedCount * plane
        let a = arena.take(Scalar.self, count * conditionerIn)
        let dst = arena.take(Scalar.self, count * conditionerOut)
        let da = arena.take(Scalar.self, count * conditionerIn)
        conditioningInput(x, count: count, into: a)
        let st: UnsafeMutablePointer<Scalar>, tape: UnsafeMutablePointer<Scalar>
        if let recorded {
            (st, tape) = tapeParts(recorded, count: count)
        } else {
            st = arena.take(Scalar.self, count * conditionerOut)
            tape = arena.take(Scalar.self, net.tapeCount(rows: count))
            net.forwardRecording(a, rows: count, into: st, tape: tape, arena: &arena)
        }
        for r in 0..<count {
            let row = x + r * size, gr = g + r * size, raw = st + r * conditionerOut + nb
            let dShift = dst + r * conditionerOut, dRaw = dShift + nb
            let wr = w[r]
            @inline(__always) func element(_ j: Int, _ i: Int) {
                // j indexes the network output, i the sample.
                let u = raw[j]
                let s = clamped(u)
                let e = Scalar.exp(s)
                let gi = gr[i]
                dShift[j] = gi
                var ds = gi * row[i] * e + wr
                if clamp > 0 { let t = Scalar.tanh(u / clamp); ds *= 1 - t * t }
                dRaw[j] = ds
                gr[i] = gi * e
            }
            switch mask {
            case .channel:
                let start = transformedStart * plane
                Scalar.affineStepBackward(row + start, shift: nil, raw: raw, gradient: gr + start, shiftGradient: dShift,
                                          rawGradient: dRaw, count: nb, clamp: clamp, logDetGradient: wr, inverse: false)
            case .checkerboard:
                pixelMask.withUnsafeBufferPointer { m in
                    for ch in 0..<channels {
                        for p in 0..<plane {
                            let i = ch * plane + p
                            if m[p] == 0 {
                                element(i, i)
                            } else {
                                dShift[i] = 0
                                dRaw[i] = 0
                            }
                        }
                    }
                }
            }
        }
        net.backward(a, rows: count, tape: tape, outputGradient: dst, inputGradient: da, arena: &arena)
        for r in 0..<count {
            let gr = g + r * size, dar = da + r * conditionerIn
            switch mask {
            case .channel:
                let ga = gr + identityStart * plane
                for i in 0..<(identityCount * plane) { ga[i] += dar[i] }
            case .checkerboard:
                pixelMask.withUnsafeBufferPointer { m in
                    for ch in 0..<channels {
                        for p in 0..<plane where m[p] != 0 { gr[ch * plane + p] += dar[ch * plane + p] }
                    }
                }
            }
        }
    }
}
