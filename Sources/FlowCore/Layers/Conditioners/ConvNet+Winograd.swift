import CFlowKernels


/// The last convolution (`hidden → out`, 3×3) of a float32 network by Winograd F(m×m, 3×3)
/// (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016;
/// ``fk_winograd3x3_f32``): an m×m output tile costs `(m + 2)²·hidden·out` multiply-adds
/// instead of `9m²·hidden·out` — m = 4 (4× fewer) on planes from 4×4 on, m = 2 (2.25×) on
/// smaller ones. In the Glow presets this convolution is half of a conditioner's forward flops.
///
/// Every forward pass of such a network takes it — inference block by block or layer by layer
/// and the recorded pass of training (which keeps giving inference's bits). The result differs
/// from the im2col product by rounding: F(2×2) only adds, within ~1e-7 of the sum of |terms|;
/// F(4×4)'s transforms scale by up to 8, within ~5e-6 of it (`KernelTests.testWinogradMatchesTheDirectConvolution`,
/// `ConvTests.testWinogradLastLayerAgreesWithIm2col`). On the Glow benchmark model that moved
/// the largest log-density difference from PyTorch's float32 model from 5.7e-4 to 7.6e-4 nats on
/// values up to 4521 (`bench/compare_torch.py`). `SWIFTFLOWS_WINOGRAD=0` turns it off. The backward
/// pass stays the direct convolution's exact adjoint (its error against the Winograd forward
/// is that rounding).
extension ConvNet {
    /// Whether the last convolution's forward pass runs by Winograd: float32, a 3×3 last layer,
    /// and not switched off (``RuntimeConfiguration/winograd``).
    var usesWinograd: Bool { winogradPack != nil }

    /// Scratch of one ``lastLayerForward(_:lds:ldp:ldc:rows:into:arena:)`` call by Winograd
    /// (independent of the row count: a few samples' tiles at a time), 0 otherwise.
    var winogradScratchBytes: Int {
        guard usesWinograd else { return 0 }
        return Arena.bytes(Float.self, fk_winograd3x3_scratch_count(hidden, outChannels, height, width))
    }

    /// `y = conv₂(h) + b₂` for `rows` samples of the last layer's input `h`: sample `n`,
    /// channel `c`, pixel `p` at `h[n·lds + p·ldp + c·ldc]`; `y` is `rows × out × H × W`,
    /// contiguous. Winograd when ``usesWinograd`` (any layout: the kernel copies a few samples
    /// at a time into its scratch), else the im2col convolution (which needs NCHW samples:
    /// `ldp = 1`, `ldc = H·W`). Scratch from `arena`: ``winogradScratchBytes``, or the
    /// convolution's own. The transformed weight adds `(m + 2)²·hidden·⌈out/4⌉·4` floats per
    /// network (110 KiB for the Glow benchmark's 8 × 8 conditioners).
    @_specialize(where T == Float) @_specialize(where T == Double)
    func lastLayerForward(_ h: UnsafePointer<T>, lds: Int, ldp: Int, ldc: Int, rows: Int,
                          into y: UnsafeMutablePointer<T>, arena: inout Arena) {
        guard let u = winogradPack else {
            precondition(ldp == 1 && ldc == layers[2].plane, "ConvNet.lastLayerForward: im2col needs NCHW samples")
            layers[2].forward(h, ldx: lds, rows: rows, weight: weights[2].pointer, packedWeight: packedWeight(2),
                              bias: biases[2].pointer, into: y, relu: false, arena: &arena)
            return
        }
        let scratch = arena.take(Float.self, fk_winograd3x3_scratch_count(hidden, outChannels, height, width))
        fk_winograd3x3_f32(UnsafeRawPointer(h).assumingMemoryBound(to: Float.self), lds, ldp, ldc, rows, hidden,
                           height, width, u, UnsafeRawPointer(biases[2].pointer).assumingMemoryBound(to: Float.self),
                           outChannels, UnsafeMutableRawPointer(y).assumingMemoryBound(to: Float.self),
                           layers[2].outputCount, scratch)
    }

    /// ``lastLayerForward(_:lds:ldp:ldc:rows:into:arena:)`` on `rows` contiguous NCHW samples.
    @inline(__always)
    func lastLayerForward(_ h: UnsafePointer<T>, rows: Int, into y: UnsafeMutablePointer<T>, arena: inout Arena) {
        lastLayerForward(h, lds: hiddenFeatures, ldp: 1, ldc: layers[2].plane, rows: rows, into: y, arena: &arena)
    }
}
