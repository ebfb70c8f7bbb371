import CFlowKernels

/// Glow's coupling network for image flows:
/// `conv3×3(in → hidden) → ReLU → conv1×1(hidden → hidden) → ReLU → conv3×3(hidden → out)`,
/// stride 1 with "same" zero padding, so every tensor keeps the `height × width` plane.
///
/// Tensors are NCHW: a sample is `channels × height × width`, row-major, samples one after the
/// other. Each convolution is PyTorch's `Conv2d` (weight `[out, in, k, k]`, bias `[out]`), so
/// weights exchange with PyTorch and numpy unchanged. The hidden convolutions start from
/// PyTorch's default `U(−1/√fan_in, 1/√fan_in)` with `fan_in = in·k²` (weights, then bias, per
/// convolution); the last one starts at zero (Glow's `conv2d_zeros`), so a new coupling is the
/// identity.
///
/// The interface mirrors ``MLP`` (a "row" is one sample; ``inFeatures``/``outFeatures`` are
/// per-sample element counts), so a coupling layer can swap one conditioner for the other. As
/// with ``MLP``, every change of the weights must be followed by ``repack()`` (coupling layers
/// call it from `parametersDidChange`).
///
/// Parameters, in file order: `weight_0 [hidden, in, 3, 3]`, `bias_0 [hidden]`,
/// `weight_1 [hidden, hidden, 1, 1]`, `bias_1 [hidden]`, `weight_2 [out, hidden, 3, 3]`,
/// `bias_2 [out]`.
///
/// - Complexity: per sample, `2·H·W·(9·in·hidden + hidden² + 9·hidden·out)` flops forward and
///   about twice that backward.
final class ConvNet<T: FlowScalar> {
    /// Channels of the input (`in`).
    let inChannels: Int
    /// Channels of both hidden activations.
    let hidden: Int
    /// Channels of the output (`out`).
    let outChannels: Int
    /// Plane height.
    let height: Int
    /// Plane width.
    let width: Int
    /// The three convolutions, in order.
    let layers: [Convolution]
    let weights: [Parameter<T>]
    let biases: [Parameter<T>]
    /// Each layer's packed weight (``Convolution/packWeight(_:into:)``) when its method uses
    /// one (``Convolution/packedWeightCount`` > 0, the output-fold layout of a convolution with
    /// fewer output than input channels), else nil; refreshed by ``repack()`` whenever the
    /// weights change.
    private let packed: [UnsafeMutablePointer<T>?]
    /// The last convolution's weight transformed for Winograd F(m×m, 3×3)
    /// (``fk_winograd3x3_pack_f32``) when its forward pass runs that way (``usesWinograd``), else
    /// nil; refreshed by ``repack()``.
    let winogradPack: UnsafeMutablePointer<Float>?

    /// - Parameters:
    ///   - channels: input channels (`in`).
    ///   - hidden: channels of the two hidden activations.
    ///   - outChannels: output channels (`out`).
    ///   - height/width: the plane every tensor shares.
    ///   - seed: where the initial weights come from (a ``PhiloxStream`` on row 0 of the
    ///     ``RandomStream/initialization`` stream, as ``MLP`` draws them).
    /// - Precondition: every size ≥ 1. Untrusted sizes go through
    ///   ``checked(channels:hidden:outChannels:height:width:seed:context:)``.
    /// - `winograd`: whether a float32 network runs its last convolution's forward pass by
    ///   Winograd F(m×m, 3×3) (``usesWinograd``); tests pass both.
    /// - Throws: ``FlowError/limitExceeded(_:)`` or ``FlowError/outOfMemory(_:)`` from the
    ///   ``MemoryBudget``.
    init(channels: Int, hidden: Int, outChannels: Int, height: Int, width: Int, seed: UInt64,
         winograd: Bool = FlowRuntime.configuration.winograd) throws {
        inChannels = channels
        self.hidden = hidden
        self.outChannels = outChannels
        self.height = height
        self.width = width
        layers = [
            Convolution(inChannels: channels, outChannels: hidden, kernel: 3, height: height, width: width),
            Convolution(inChannels: hidden, outChannels: hidden, kernel: 1, height: height, width: width),
            Convolution(inChannels: hidden, outChannels: outChannels, kernel: 3, height: height, width: width),
        ]
        var ws: [Parameter<T>] = [], bs: [Parameter<T>] = []
        var rng = PhiloxStream(seed: seed, row: 0, stream: RandomStream.initialization)
        for (l, conv) in layers.enumerated() {
            let w = try Parameter<T>(name: "weight_\(l)", shape: conv.weightShape)
            let b = try Parameter<T>(name: "bias_\(l)", shape: [conv.outChannels])
            if l < layers.count - 1 {
                let bound = 1 / Double(conv.patch).squareRoot()
                for i in 0..<w.count { w.values[i] = T(rng.nextUniform(in: -bound, bound)) }
                for i in 0..<b.count { b.values[i] = T(rng.nextUniform(in: -bound, bound)) }
            }
            ws.append(w)
            bs.append(b)
        }
        weights = ws
        biases = bs
        var buffers: [UnsafeMutablePointer<T>?] = []
        var winogradBuffer: UnsafeMutablePointer<Float>?
        do {
            for (l, conv) in layers.enumerated() {
                let count = conv.packedWeightCount
                buffers.append(count > 0 ? try MemoryBudget.allocate(T.self, count: count, "the packed copy of weight_\(l)") : nil)
            }
            if winograd && T.self == Float.self && layers[2].kernel == 3 {
                let count = fk_winograd3x3_packed_count(outChannels, hidden, height, width)
                winogradBuffer = try MemoryBudget.allocate(Float.self, count: count, "the Winograd weights")
            }
        } catch {
            for p in buffers { p.map { MemoryBudget.free($0) } }
            throw error
        }
        packed = buffers
        winogradPack = winogradBuffer
        repack()
    }

    deinit {
        for p in packed { p.map { MemoryBudget.free($0) } }
        winogradPack.map { MemoryBudget.free($0) }
    }

    /// Layer `l`'s packed weight, or nil when it reads the OIHW weight directly.
    @inline(__always) func packedWeight(_ l: Int) -> UnsafePointer<T>? { packed[l].map { UnsafePointer($0) } }

    /// Builds a conditioner after checking its sizes against ``Limits`` (before allocating):
    /// every size ≥ 1 (else ``FlowError/invalidSpec(_:)``); `hidden ≤ Limits.maxHiddenWidth`,
    /// each per-sample tensor (`in·H·W`, `hidden·H·W`, `out·H·W` elements) at most
    /// `Limits.maxEventSize`, and at most `Limits.maxParametersPerLayer` parameters (else
    /// ``FlowError/limitExceeded(_:)``). `context` prefixes the messages (e.g. the layer type).
    static func checked(channels: Int, hidden: Int, outChannels: Int, height: Int, width: Int,
                        seed: UInt64, context: String) throws -> ConvNet {
        for (name, value) in [("input channels", channels), ("hidden channels", hidden),
                              ("output channels", outChannels), ("height", height), ("width", width)] where value < 1 {
            throw FlowError.invalidSpec("\(context): conditioner \(name) \(value) must be at least 1")
        }
        guard hidden <= Limits.maxHiddenWidth else {
            throw FlowError.limitExceeded("\(context): hidden width \(hidden) exceeds the limit \(Limits.maxHiddenWidth)")
        }
        let (plane, o0) = height.multipliedReportingOverflow(by: width)
        for channelCount in [channels, hidden, outChannels] {
            let (elements, o1) = plane.multipliedReportingOverflow(by: channelCount)
            guard !o0, !o1, elements <= Limits.maxEventSize else {
                throw FlowError.limitExceeded("\(context): a \(channelCount) × \(height) × \(width) conditioner tensor exceeds \(Limits.maxEventSize) elements")
            }
        }
        // Weights and biases: 9·in·hidden + hidden + hidden·hidden + hidden + 9·hidden·out + out.
        var total = 0, overflow = false
        for (k, fanIn, fanOut) in [(9, channels, hidden), (1, hidden, hidden), (9, hidden, outChannels)] {
            let (taps, o1) = fanIn.multipliedReportingOverflow(by: k)
            let (w, o2) = taps.multipliedReportingOverflow(by: fanOut)
            let (t, o3) = total.addingReportingOverflow(w)
            let (t2, o4) = t.addingReportingOverflow(fanOut)
            overflow = overflow || o1 || o2 || o3 || o4
            total = t2
        }
        guard !overflow, total <= Limits.maxParametersPerLayer else {
            throw FlowError.limitExceeded("\(context): conditioner \(channels) → \(hidden) → \(outChannels) channels has more than \(Limits.maxParametersPerLayer) parameters")
        }
        // Parameters, their gradients and the packed copies of the weights.
        return try MemoryBudget.reserve(3 * total * MemoryLayout<T>.stride, "\(context): a conditioner of \(total) parameters") {
            try ConvNet(channels: channels, hidden: hidden, outChannels: outChannels, height: height, width: width,
                        seed: seed)
        }
    }

    /// Elements of one input sample: `in·H·W`.
    var inFeatures: Int { layers[0].inputCount }
    /// Elements of one output sample: `out·H·W`.
    var outFeatures: Int { layers[2].outputCount }
    /// Elements of one hidden activation sample: `hidden·H·W`.
    var hiddenFeatures: Int { layers[0].outputCount }
    var parameters: [Parameter<T>] { zip(weights, biases).flatMap { [$0, $1] } }

    /// Refreshes the packed weights from ``weights`` (call after any weight change; coupling
    /// layers do it in `parametersDidChange`, as for ``MLP``). Only convolutions with fewer output
    /// than input channels keep one (typically the last); the others read the OIHW weight as
    /// their GEMM operand. O(parameters).
    func repack() {
        for (l, conv) in layers.enumerated() {
            if let p = packed[l] { conv.packWeight(UnsafePointer(weights[l].pointer), into: p) }
        }
        if let u = winogradPack {
            fk_winograd3x3_pack_f32(UnsafeRawPointer(weights[2].pointer).assumingMemoryBound(to: Float.self),
                                    outChannels, hidden, height, width, u)
        }
    }

    /// Scratch of the convolution that needs the most, over `rows` samples.
    private func convolutionBytes(rows: Int, backward: Bool) -> Int {
        layers.map { backward ? $0.backwardWorkspaceBytes(T.self, rows: rows) : $0.workspaceBytes(T.self, rows: rows) }
            .max() ?? 0
    }

    /// Scratch for ``callAsFunction(_:ldx:rows:into:arena:)`` over `rows` samples: two hidden
    /// activations (`rows·hidden·H·W` each) and the largest convolution's scratch, or the block
    /// pass's blocks (``blockForwardBytes(rows:)``) if larger.
    func workspaceBytes(rows: Int) -> Int {
        let layered = 2 * Arena.bytes(T.self, rows * hiddenFeatures)
            + Swift.max(convolutionBytes(rows: rows, backward: false), winogradScratchBytes)
        return blockForwardApplies ? Swift.max(layered, blockForwardBytes(rows: rows)) : layered
    }

    /// `y = net(x)` for `rows` samples; `x` holds sample `n` (`in × H × W`) at `x + n·ldx`
    /// (`ldx ≥ in·H·W`, so a coupling can condition on a channel slice in place); `y` is
    /// `rows × out × H × W`, contiguous, and must not overlap `x`. Bias and ReLU are fused into
    /// each convolution's output pass. Small planes run block by block
    /// (``blockForward(_:ldx:rows:into:arena:)``), larger ones layer by layer
    /// (``layerForward(_:ldx:rows:into:arena:)``); both give the same bits.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func callAsFunction(_ x: UnsafePointer<T>, ldx: Int, rows: Int,
                        into y: UnsafeMutablePointer<T>, arena: inout Arena) {
        guard rows > 0 else { return }
        if usesBlockForward(rows: rows) {
            blockForward(x, ldx: ldx, rows: rows, into: y, arena: &arena)
            return
        }
        layerForward(x, ldx: ldx, rows: rows, into: y, arena: &arena)
    }

    /// ``callAsFunction(_:ldx:rows:into:arena:)`` one convolution at a time over all `rows`
    /// samples (BLAS layout), each reading and writing `rows × C × H × W` activations.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func layerForward(_ x: UnsafePointer<T>, ldx: Int, rows: Int, into y: UnsafeMutablePointer<T>,
                      arena: inout Arena) {
        let a = arena.take(T.self, rows * hiddenFeatures), b = arena.take(T.self, rows * hiddenFeatures)
        // Each convolution's scratch is dead once it returns: all three reuse the same region.
        var scratch = arena
        layers[0].forward(x, ldx: ldx, rows: rows, weight: weights[0].pointer,
                          packedWeight: packedWeight(0), bias: biases[0].pointer, into: a, relu: true,
                          arena: &scratch)
        scratch = arena
        layers[1].forward(a, ldx: hiddenFeatures, rows: rows, weight: weights[1].pointer,
                          packedWeight: packedWeight(1), bias: biases[1].pointer, into: b, relu: true,
                          arena: &scratch)
        scratch = arena
        lastLayerForward(b, rows: rows, into: y, arena: &scratch)
    }

    /// `y = net(x)` for `rows` contiguous samples (`x` is `rows × in × H × W`).
    @inline(__always)
    func callAsFunction(_ x: UnsafePointer<T>, rows: Int, into y: UnsafeMutablePointer<T>, arena: inout Arena) {
        callAsFunction(x, ldx: inFeatures, rows: rows, into: y, arena: &arena)
    }
}
