import CFlowKernels
#if canImport(Glibc)
import Glibc
#endif

/// The padded channel planes of a batch of images: the layout in which ``ConvNet`` runs its
/// float32 convolutions (``fk_conv_f32`` / ``fk_conv_wgrad_f32``) on all images of a call at once.
///
/// Every channel of the batch is one plane of ``stride`` floats. Rows of ``rowStride`` = `W + 1`
/// floats follow each other: a zero row, then per image its `H` rows followed by one zero row (which
/// is also the next image's top padding); each row is the image row followed by one zero (which is
/// also the next row's left padding). So a 3×3 "same" convolution of the whole batch is one linear
/// sweep over positions ``start`` ..< ``start`` + ``count`` with 9 constant tap offsets
/// (``offsets3x3``): a tap that leaves its image lands on a zero. The sweep also computes the
/// padding positions between the images; their results are discarded (``mask``, ReLU′ gates).
/// Guards of zeros before and after the sweep keep every tap read inside the plane.
///
/// Invariant of every plane buffer: all positions that are not image pixels hold 0 (inputs are
/// written by ``scatter(_:ldx:channels:into:)``, convolution outputs are masked and then
/// ``zeroGuards(_:channels:)``).
struct ImagePlanes: Equatable {
    let images: Int, height: Int, width: Int
    /// Floats per row: `W + 1`.
    let rowStride: Int
    /// First position of the sweep (the first image's first pixel).
    let start: Int
    /// Positions of the sweep, a multiple of 8 (the last image's last row, rounded up).
    let count: Int
    /// Floats per channel plane: an odd multiple of 16.
    let stride: Int

    /// Zeros before the first row, so taps of the first row reading up and left stay inside.
    static let front = 8

    init(images: Int, height: Int, width: Int) {
        self.images = images
        self.height = height
        self.width = width
        rowStride = width + 1
        start = Self.front + rowStride
        let end = Self.front + images * (height + 1) * rowStride  // the last zero row
        count = (end - start + 7) / 8 * 8
        // Reads reach `rowStride + 1` past the sweep. An odd multiple of 16 floats (64 bytes):
        // consecutive planes then start in different L1 sets (64 sets of 64-byte lines), so the
        // kernels' sweeps over 64 channel planes at the same position do not evict each other.
        let needed = (start + count + rowStride + 1 + 15) / 16
        stride = (needed | 1) * 16
    }

    /// Position of pixel `(i, 0)` of image `n`.
    @inline(__always) func row(_ n: Int, _ i: Int) -> Int { Self.front + (1 + n * (height + 1) + i) * rowStride }

    /// Tap offsets of a 3×3 kernel, `(p − 1)·rowStride + (q − 1)` for tap `p·3 + q`; negated for
    /// the transposed convolution.
    func offsets3x3(negated: Bool) -> [Int] {
        var o: [Int] = []
        for p in 0..<3 { for q in 0..<3 { o.append((p - 1) * rowStride + (q - 1)) } }
        return negated ? o.map { -$0 } : o
    }

    /// `channels` planes from `images` samples of `channels × H × W` floats at `x + n·ldx`;
    /// every other position zero.
    func scatter(_ x: UnsafePointer<Float>, ldx: Int, channels: Int, into p: UnsafeMutablePointer<Float>) {
        p.update(repeating: 0, count: channels * stride)
        let hw = height * width
        for c in 0..<channels {
            let plane = p + c * stride
            for n in 0..<images {
                let src = x + n * ldx + c * hw
                for i in 0..<height { (plane + row(n, i)).update(from: src + i * width, count: width) }
            }
        }
    }

    /// The inverse of ``scatter(_:ldx:channels:into:)``: `images` contiguous samples of
    /// `channels × H × W` floats.
    func gather(_ p: UnsafePointer<Float>, channels: Int, into y: UnsafeMutablePointer<Float>) {
        let hw = height * width
        for n in 0..<images {
            for c in 0..<channels {
                let dst = y + (n * channels + c) * hw, plane = p + c * stride
                for i in 0..<height { (dst + i * width).update(from: plane + row(n, i), count: width) }
            }
        }
    }

    /// 1 at every pixel, 0 elsewhere (`stride` floats).
    func mask(into m: UnsafeMutablePointer<Float>) {
        m.update(repeating: 0, count: stride)
        for n in 0..<images { for i in 0..<height { (m + row(n, i)).update(repeating: 1, count: width) } }
    }

    /// Zeros the positions before and after the sweep of `channels` planes (the sweep itself is
    /// written by the convolutions, with zeros at its padding positions).
    func zeroGuards(_ p: UnsafeMutablePointer<Float>, channels: Int) {
        for c in 0..<channels {
            let plane = p + c * stride
            plane.update(repeating: 0, count: start)
            (plane + start + count).update(repeating: 0, count: stride - start - count)
        }
    }

    /// `Σ` of each of `channels` planes over the sweep (padding positions hold 0), added to
    /// `sums[c]`.
    func addSums(_ p: UnsafePointer<Float>, channels: Int, to sums: UnsafeMutablePointer<Float>) {
        for c in 0..<channels { sums[c] += Convolution.sum(p + c * stride + start, count: count) }
    }
}

/// The float32 convolution paths of ``ConvNet`` (its ``ConvNet/planeMode``).
enum PlaneMode: Sendable {
    /// im2col and BLAS per sample block (the generic path, as in Float64).
    case off
    /// Every convolution a direct ``fk_conv_f32`` kernel on ``ImagePlanes``.
    case direct
    /// ``ImagePlanes``; direct kernels, except wide 1×1 convolutions: one BLAS GEMM per call.
    case hybrid
}

let planeModeFromEnvironment: PlaneMode = {
    switch getenv("SWIFTFLOWS_CONV").map({ String(cString: $0) }) {
    case "direct": return .direct
    case "hybrid": return .hybrid
    default: return .off
    }
}()

/// The float32 path of ``ConvNet``: all images of a call in ``ImagePlanes``, every convolution
/// (and its input and weight gradients) a direct kernel over the whole batch with bias, ReLU and
/// ReLU′ fused; no BLAS, no im2col.
extension ConvNet {
    /// Whether this network runs on ``ImagePlanes`` (float32 with 3×3 and 1×1 kernels, which
    /// one padding row and column serve).
    var usesPlanes: Bool { planeMode != .off }

    /// How float32 networks run by default: ``PlaneMode/off`` (im2col + BLAS, as Float64)
    /// unless the environment variable `SWIFTFLOWS_CONV` says `hybrid` or `direct`; read once
    /// per process (for benchmarks). Measured on the 2-core AVX2 machine (bench/README.md), the
    /// plane paths ran within noise of OpenBLAS (±10 %, neither consistently ahead), so
    /// the default stays with BLAS.
    static var defaultPlaneMode: PlaneMode { planeModeFromEnvironment }

    /// Floats of the packed weights of layer `l` for ``fk_conv_f32``: forward
    /// `[(c·k² + j)·O + o]`, then transposed `[(o·k² + j)·C + c]` for the input gradient.
    static func planePackCount(_ conv: Convolution) -> Int { 2 * conv.weightCount }

    /// Repacks layer `l`'s OIHW weight into `p` (``planePackCount(_:)`` floats).
    static func planePack(_ conv: Convolution, weight: UnsafePointer<Float>, into p: UnsafeMutablePointer<Float>) {
        let o = conv.outChannels, c = conv.inChannels, kk = conv.kernel * conv.kernel
        let transposed = p + conv.weightCount
        for oi in 0..<o {
            for ci in 0..<c {
                for j in 0..<kk {
                    let w = weight[(oi * c + ci) * kk + j]
                    p[(ci * kk + j) * o + oi] = w
                    transposed[(oi * kk + j) * c + ci] = w
                }
            }
        }
    }

    func planes(rows: Int) -> ImagePlanes { ImagePlanes(images: rows, height: height, width: width) }

    /// Tape of the plane path: `h₀` and `h₁` as planes.
    func planeTapeCount(rows: Int) -> Int { 2 * hidden * planes(rows: rows).stride }

    /// Scratch of the plane path's forward pass: input, mask, two hidden and the output planes.
    func planeWorkspaceBytes(rows: Int) -> Int {
        let s = planes(rows: rows).stride
        return Arena.bytes(Float.self, inChannels * s) + Arena.bytes(Float.self, s)
            + 2 * Arena.bytes(Float.self, hidden * s) + Arena.bytes(Float.self, outChannels * s)
    }

    /// Scratch of the plane path's backward pass (also covers the recording forward pass): input,
    /// mask, output-gradient, two hidden-gradient and input-gradient planes, and the weight
    /// gradient kernel's partial sums.
    func planeBackwardWorkspaceBytes(rows: Int) -> Int {
        let s = planes(rows: rows).stride
        let partial = layers.map { $0.weightCount * 8 }.max() ?? 0
        return 2 * Arena.bytes(Float.self, inChannels * s) + Arena.bytes(Float.self, s)
            + Arena.bytes(Float.self, outChannels * s) + 2 * Arena.bytes(Float.self, hidden * s)
            + Arena.bytes(Float.self, partial)
    }

    @inline(__always) private func f(_ p: UnsafePointer<T>) -> UnsafePointer<Float> {
        UnsafeRawPointer(p).assumingMemoryBound(to: Float.self)
    }

    @inline(__always) private func f(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self)
    }

    /// Whether layer `l` of the plane path runs as one BLAS GEMM over the whole sweep instead of
    /// ``fk_conv_f32``: a 1×1 convolution is a plain matrix product on planes
    /// (`Y[O × sweep] = W[O × C]·X[C × sweep]`), which OpenBLAS runs well once it is wide
    /// (``PlaneMode/hybrid``, `C` and `O` at least 16); narrow ones and 3×3 kernels stay direct.
    @inline(__always) func planeLayerUsesBLAS(_ l: Int) -> Bool {
        let conv = layers[l]
        return planeMode == .hybrid && conv.kernel == 1 && conv.inChannels >= 16 && conv.outChannels >= 16
    }

    /// Tap offsets of layer `l` (`k²` entries of `o`), negated for the transposed convolution.
    @inline(__always)
    private func tapOffsets(_ l: Int, layout: ImagePlanes, negated: Bool, into o: UnsafeMutablePointer<Int>) {
        let k = layers[l].kernel, pad = k / 2
        for p in 0..<k {
            for q in 0..<k {
                let v = (p - pad) * layout.rowStride + (q - pad)
                o[p * k + q] = negated ? -v : v
            }
        }
    }

    /// `v = mask ? act(v + bias) : 0` over the sweep of `channels` planes (the BLAS layers' output
    /// pass); `gate` planes (stride `gateStride`, 0: one shared plane) decide the mask.
    @inline(__always)
    private func planeFinish(_ y: UnsafeMutablePointer<Float>, channels: Int, layout: ImagePlanes,
                             bias: UnsafePointer<Float>?, relu: Bool, gate: UnsafePointer<Float>, gateStride: Int) {
        let (start, count, s) = (layout.start, layout.count, layout.stride)
        for o in 0..<channels {
            let v = y + o * s + start, g = gate + o * gateStride + start, b = bias?[o] ?? 0
            if relu {
                for t in 0..<count { let r = Swift.max(v[t] + b, 0); v[t] = g[t] > 0 ? r : 0 }
            } else {
                for t in 0..<count { let r = v[t] + b; v[t] = g[t] > 0 ? r : 0 }
            }
        }
    }

    /// `y = conv(x)` of layer `l` over the sweep, fused bias/ReLU, masked to the pixels.
    @inline(__always)
    private func planeConv(_ l: Int, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                           layout: ImagePlanes, offsets: UnsafeMutablePointer<Int>, mask: UnsafePointer<Float>,
                           relu: Bool) {
        let conv = layers[l], s = layout.stride, start = layout.start
        let bias = f(UnsafePointer(biases[l].pointer))
        if planeLayerUsesBLAS(l) {
            Float.blasGemm(transA: false, transB: false, m: conv.outChannels, n: layout.count, k: conv.inChannels,
                           alpha: 1, a: f(UnsafePointer(weights[l].pointer)), lda: conv.inChannels, b: x + start, ldb: s,
                           beta: 0, c: y + start, ldc: s)
            planeFinish(y, channels: conv.outChannels, layout: layout, bias: bias, relu: relu, gate: mask, gateStride: 0)
            return
        }
        tapOffsets(l, layout: layout, negated: false, into: offsets)
        fk_conv_f32(x, s, conv.inChannels, offsets, conv.kernel * conv.kernel, planePack(l), bias, conv.outChannels,
                    y, s, start, layout.count, mask, 0, relu ? 1 : 0)
    }

    /// The forward pass on planes: `x` (samples at `x + n·ldx`) → `y` (contiguous samples);
    /// `h₀`, `h₁` planes of `hidden` channels (kept as the tape when recording).
    func planeForward(_ x: UnsafePointer<T>, ldx: Int, rows: Int, into y: UnsafeMutablePointer<T>,
                      h0: UnsafeMutablePointer<Float>, h1: UnsafeMutablePointer<Float>, arena: inout Arena) {
        FlowRuntime.configureBLAS()
        let layout = planes(rows: rows), s = layout.stride
        let input = arena.take(Float.self, inChannels * s), mask = arena.take(Float.self, s)
        let output = arena.take(Float.self, outChannels * s)
        layout.scatter(f(x), ldx: ldx, channels: inChannels, into: input)
        layout.mask(into: mask)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: maxTaps) { buffer in
            let offsets = buffer.baseAddress!
            planeConv(0, input, into: h0, layout: layout, offsets: offsets, mask: mask, relu: true)
            layout.zeroGuards(h0, channels: hidden)
            planeConv(1, h0, into: h1, layout: layout, offsets: offsets, mask: mask, relu: true)
            layout.zeroGuards(h1, channels: hidden)
            planeConv(2, h1, into: output, layout: layout, offsets: offsets, mask: mask, relu: false)
        }
        layout.gather(output, channels: outChannels, into: f(y))
    }

    /// Entries of the largest tap-offset list (`k²` of the largest kernel).
    private var maxTaps: Int { layers.map { $0.kernel * $0.kernel }.max() ?? 1 }

    /// The backward pass on planes, from the tape of ``planeForward(_:ldx:rows:into:h0:h1:arena:)``.
    func planeBackward(_ x: UnsafePointer<T>, ldx: Int, rows: Int, tape: UnsafePointer<T>,
                       outputGradient dy: UnsafePointer<T>, inputGradient: UnsafeMutablePointer<T>?,
                       arena: inout Arena) {
        FlowRuntime.configureBLAS()
        let layout = planes(rows: rows), s = layout.stride
        let h0 = f(tape), h1 = f(tape) + hidden * s
        let input = arena.take(Float.self, inChannels * s), mask = arena.take(Float.self, s)
        let dOut = arena.take(Float.self, outChannels * s)
        let dh1 = arena.take(Float.self, hidden * s), dh0 = arena.take(Float.self, hidden * s)
        let partial = arena.take(Float.self, layers.map { $0.weightCount * 8 }.max() ?? 0)
        layout.scatter(f(x), ldx: ldx, channels: inChannels, into: input)
        layout.mask(into: mask)
        layout.scatter(f(dy), ldx: outFeatures, channels: outChannels, into: dOut)
        let (start, count) = (layout.start, layout.count)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * maxTaps) { buffer in
            let forward = buffer.baseAddress!, backward = forward + maxTaps
            // Layer l: bias and weight gradients from its output gradient `g` and input `a`;
            // then the input gradient into `da` (when given), gated by `gate` (ReLU′ of the
            // input, or the pixel mask; stride 0: one shared plane).
            func layerBackward(_ l: Int, a: UnsafePointer<Float>, g: UnsafePointer<Float>,
                               da: UnsafeMutablePointer<Float>?, gate: UnsafePointer<Float>, gateStride: Int) {
                let conv = layers[l], kk = conv.kernel * conv.kernel
                let weightGradient = f(weights[l].gradient.baseAddress!)
                layout.addSums(g, channels: conv.outChannels, to: f(biases[l].gradient.baseAddress!))
                if planeLayerUsesBLAS(l) {
                    // ∂W[O × C] += G[O × sweep]·A[C × sweep]ᵀ; ∂A = Wᵀ·G, then gated.
                    Float.blasGemm(transA: false, transB: true, m: conv.outChannels, n: conv.inChannels, k: count,
                                   alpha: 1, a: g + start, lda: s, b: a + start, ldb: s,
                                   beta: 1, c: weightGradient, ldc: conv.inChannels)
                    guard let da else { return }
                    Float.blasGemm(transA: true, transB: false, m: conv.inChannels, n: count, k: conv.outChannels,
                                   alpha: 1, a: f(UnsafePointer(weights[l].pointer)), lda: conv.inChannels,
                                   b: g + start, ldb: s, beta: 0, c: da + start, ldc: s)
                    planeFinish(da, channels: conv.inChannels, layout: layout, bias: nil, relu: false, gate: gate,
                                gateStride: gateStride)
                    return
                }
                tapOffsets(l, layout: layout, negated: false, into: forward)
                fk_conv_wgrad_f32(g, s, conv.outChannels, a, s, conv.inChannels, forward, kk, start, count,
                                  weightGradient, partial)
                guard let da else { return }
                tapOffsets(l, layout: layout, negated: true, into: backward)
                fk_conv_f32(g, s, conv.outChannels, backward, kk, planePack(l) + conv.weightCount, nil,
                            conv.inChannels, da, s, start, count, gate, gateStride, 0)
            }
            layerBackward(2, a: h1, g: dOut, da: dh1, gate: h1, gateStride: s)
            layout.zeroGuards(dh1, channels: hidden)
            layerBackward(1, a: h0, g: dh1, da: dh0, gate: h0, gateStride: s)
            layout.zeroGuards(dh0, channels: hidden)
            // The input planes are consumed by the weight gradient before the input gradient
            // overwrites them.
            layerBackward(0, a: input, g: dh0, da: nil, gate: mask, gateStride: 0)
            guard let inputGradient else { return }
            let conv = layers[0]
            tapOffsets(0, layout: layout, negated: true, into: backward)
            fk_conv_f32(dh0, s, conv.outChannels, backward, conv.kernel * conv.kernel, planePack(0) + conv.weightCount,
                        nil, conv.inChannels, input, s, start, count, mask, 0, 0)
            layout.gather(input, channels: inChannels, into: f(inputGradient))
        }
    }
}
