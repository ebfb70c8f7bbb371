/// A stride-1 2-D convolution with "same" zero padding over NCHW batches: the building block of
/// the image coupling conditioner (``ConvNet``).
///
/// `y[n, o, i, j] = bias[o] + Σ_c Σ_{p,q < k} w[o, c, p, q] · x[n, c, i + p − k/2, j + q − k/2]`
/// with `x` read as zero outside the `height × width` plane, so `y` has the plane of `x`.
///
/// Layouts (row-major, batch first, the layouts of PyTorch's `Conv2d`):
/// - input `x`: `rows × inChannels × height × width`, samples `ldx` elements apart;
/// - weight: `[outChannels, inChannels, k, k]` (OIHW), i.e. an `outChannels × (inChannels·k²)`
///   matrix whose column `c·k² + p·k + q` multiplies tap `(p, q)` of channel `c`;
/// - bias: `[outChannels]`;
/// - output `y`: `rows × outChannels × height × width`, contiguous.
///
/// The product runs as GEMMs through BLAS (`T.blasGemm`). Samples go in blocks of
/// ``blockRows(_:)``: the block's patches are unfolded (im2col) into an arena matrix
/// `[inChannels·k² × block·H·W]`, multiplied by the weight matrix into an arena matrix
/// `[outChannels × block·H·W]`, and scattered into `y` with the bias (and an optional ReLU)
/// added on the way. Small planes use blocks of several samples, which gives BLAS wide
/// matrices (one packing of the weight per block, long inner loops); large planes go one sample
/// at a time, and a one-sample block needs no scatter (the GEMM writes `y` directly) and, for
/// `k = 1`, no unfolding (the input plane is already the GEMM operand).
///
/// The kernel size may be any odd `k ≥ 1`; the conditioners use 1 and 3.
///
/// Scratch comes from the caller's ``Arena`` (size from ``workspaceBytes(_:rows:)`` and
/// ``backwardWorkspaceBytes(_:rows:)``); no call allocates.
struct Convolution: Equatable, Sendable {
    /// Channels of the input (`C`).
    let inChannels: Int
    /// Channels of the output (`O`).
    let outChannels: Int
    /// Kernel side `k` (odd).
    let kernel: Int
    /// Plane height `H`.
    let height: Int
    /// Plane width `W`.
    let width: Int

    /// - Precondition: every size ≥ 1 and `kernel` odd. Callers building from untrusted sizes
    ///   check them first (see ``ConvNet/checked(channels:hidden:outChannels:height:width:seed:context:)``).
    init(inChannels: Int, outChannels: Int, kernel: Int, height: Int, width: Int) {
        precondition(inChannels > 0 && outChannels > 0 && height > 0 && width > 0, "Convolution: sizes must be positive")
        precondition(kernel > 0 && kernel % 2 == 1, "Convolution: kernel size must be odd")
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernel = kernel
        self.height = height
        self.width = width
    }

    /// Zero padding on each side of the plane: `k / 2`.
    var padding: Int { kernel / 2 }
    /// Pixels of a plane: `H·W`.
    var plane: Int { height * width }
    /// Length of one unfolded patch, the GEMM inner dimension: `C·k²`.
    var patch: Int { inChannels * kernel * kernel }
    /// Elements of one input sample: `C·H·W`.
    var inputCount: Int { inChannels * plane }
    /// Elements of one output sample: `O·H·W`.
    var outputCount: Int { outChannels * plane }
    /// The weight's shape, `[O, C, k, k]`.
    var weightShape: [Int] { [outChannels, inChannels, kernel, kernel] }
    /// Elements of the weight: `O·C·k²`.
    var weightCount: Int { outChannels * patch }

    /// Floating-point operations of a forward pass over `rows` samples (multiply-adds count
    /// two): `2·rows·O·C·k²·H·W`. The backward pass costs the same for the weight gradient and
    /// the same again for the input gradient.
    func flops(rows: Int) -> Int { 2 * rows * outChannels * patch * plane }

    /// GEMM width (`block·H·W` columns) a block of samples aims for. Measured on a Zen 4 core
    /// with OpenBLAS 0.3.21 (single-threaded, as ``FlowRuntime`` runs it): for 8×8 planes,
    /// blocks of 8–16 samples beat one-sample GEMMs by 1.3–2× at 12–64 channels; past ~1k
    /// columns the unfolded block outgrows L2 and gains stop.
    nonisolated(unsafe) static var targetColumns = 1024

    /// Samples per GEMM block for a batch of `rows`: `⌈targetColumns / (H·W)⌉`, at most `rows`,
    /// at least 1.
    func blockRows(_ rows: Int) -> Int {
        let perBlock = Swift.max(1, (Convolution.targetColumns + plane - 1) / plane)
        return Swift.max(1, Swift.min(rows, perBlock))
    }

    /// Scratch bytes of ``forward(_:ldx:rows:weight:bias:into:relu:arena:)`` over `rows` samples:
    /// the unfolded block `C·k² × block·H·W` (none for one-sample blocks of a 1×1 kernel) and
    /// the block's GEMM output `O × block·H·W` (none for one-sample blocks).
    func workspaceBytes<T>(_: T.Type, rows: Int) -> Int {
        let block = blockRows(rows), columns = block * plane
        let unfolded = kernel == 1 && block == 1 ? 0 : Arena.bytes(T.self, patch * columns)
        let product = block == 1 ? 0 : Arena.bytes(T.self, outChannels * columns)
        return unfolded + product
    }

    /// `y = conv(x) + bias`, optionally followed by ReLU, for `rows` samples.
    ///
    /// - Parameters:
    ///   - x: `rows` samples of `C × H × W`, sample `n` at `x + n·ldx` (`ldx ≥ C·H·W`; lets a
    ///     coupling read a channel slice of its input in place).
    ///   - weight: `[O, C, k, k]`.
    ///   - bias: `[O]`, or nil for none.
    ///   - y: `rows × O × H × W`, contiguous; overwritten. Must not overlap `x`.
    ///   - relu: applies `max(0, ·)` after the bias.
    ///   - arena: scratch of ``workspaceBytes(_:rows:)`` bytes.
    /// - Complexity: ``flops(rows:)`` flops in BLAS plus O(rows·C·k²·H·W) element copies.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func forward<T: FlowScalar>(_ x: UnsafePointer<T>, ldx: Int, rows: Int, weight: UnsafePointer<T>,
                                bias: UnsafePointer<T>?, into y: UnsafeMutablePointer<T>, relu: Bool = false,
                                arena: inout Arena) {
        guard rows > 0 else { return }
        FlowRuntime.configureBLAS()
        let hw = plane, block = blockRows(rows), columns = block * hw
        let unfolded: UnsafeMutablePointer<T>? = kernel == 1 && block == 1 ? nil : arena.take(T.self, patch * columns)
        let product: UnsafeMutablePointer<T>? = block == 1 ? nil : arena.take(T.self, outChannels * columns)
        var first = 0
        while first < rows {
            let count = Swift.min(block, rows - first)
            // B: the unfolded patches [C·k² × count·H·W], or the input plane itself.
            let b: UnsafePointer<T>, ldb: Int
            if let unfolded {
                for s in 0..<count { unfold(x + (first + s) * ldx, into: unfolded + s * hw, ld: columns) }
                (b, ldb) = (UnsafePointer(unfolded), columns)
            } else {
                (b, ldb) = (x + first * ldx, hw)
            }
            if let product {
                T.blasGemm(transA: false, transB: false, m: outChannels, n: count * hw, k: patch,
                           alpha: 1, a: weight, lda: patch, b: b, ldb: ldb, beta: 0, c: product, ldc: columns)
                for s in 0..<count {
                    let ys = y + (first + s) * outputCount
                    for o in 0..<outChannels {
                        Convolution.finish(product + o * columns + s * hw, into: ys + o * hw, count: hw,
                                           bias: bias?[o] ?? 0, relu: relu)
                    }
                }
            } else {
                let ys = y + first * outputCount
                T.blasGemm(transA: false, transB: false, m: outChannels, n: hw, k: patch,
                           alpha: 1, a: weight, lda: patch, b: b, ldb: ldb, beta: 0, c: ys, ldc: hw)
                if bias != nil || relu {
                    for o in 0..<outChannels {
                        Convolution.finish(ys + o * hw, into: ys + o * hw, count: hw, bias: bias?[o] ?? 0, relu: relu)
                    }
                }
            }
            first += count
        }
    }

    /// `dst[i] = act(src[i] + bias)` (`act` ReLU or identity); `src` may equal `dst`.
    @inline(__always)
    static func finish<T: FlowScalar>(_ src: UnsafePointer<T>, into dst: UnsafeMutablePointer<T>, count: Int,
                                      bias: T, relu: Bool) {
        if relu {
            for i in 0..<count { dst[i] = Swift.max(src[i] + bias, 0) }
        } else {
            for i in 0..<count { dst[i] = src[i] + bias }
        }
    }

    /// The output positions `i0..<i1` of an axis of `length` whose source `i + shift` lies
    /// inside `0..<length` (empty, with `i0 == i1`, when the shift exceeds the axis).
    @inline(__always)
    static func inside(shift: Int, length: Int) -> (Int, Int) {
        let lower = Swift.min(Swift.max(0, -shift), length)
        return (lower, Swift.max(lower, Swift.min(length, length - shift)))
    }

    /// im2col of one sample: row `c·k² + p·k + q` of `dst` (row stride `ld`, `H·W` entries used)
    /// is channel `c` of `x` shifted by `(p − k/2, q − k/2)`, zero where the shift leaves the
    /// plane.
    ///
    /// A shift by `(di, dj)` moves a whole row-major plane by `di·W + dj` elements, so each row
    /// of `dst` is one contiguous copy of the plane, after which the `|dj|` columns that wrapped
    /// around from the neighbouring image row are zeroed (and the `|di|` image rows shifted in
    /// from outside the plane). - Complexity: O(C·k²·H·W), memcpy-speed.
    @inline(__always)
    func unfold<T: FlowScalar>(_ x: UnsafePointer<T>, into dst: UnsafeMutablePointer<T>, ld: Int) {
        let h = height, w = width, hw = plane, k = kernel, pad = padding
        if k == 1 {
            for c in 0..<inChannels { (dst + c * ld).update(from: x + c * hw, count: hw) }
            return
        }
        for c in 0..<inChannels {
            let src = x + c * hw
            for p in 0..<k {
                let di = p - pad
                let (i0, i1) = Convolution.inside(shift: di, length: h)
                for q in 0..<k {
                    let row = dst + (c * k * k + p * k + q) * ld
                    let dj = q - pad
                    let (j0, j1) = Convolution.inside(shift: dj, length: w)
                    // Output entries t ∈ [i0·W, i1·W) read source entry t + offset, clamped to the plane.
                    let offset = di * w + dj
                    let t0 = Swift.max(i0 * w, -offset), t1 = Swift.max(t0, Swift.min(i1 * w, hw - offset))
                    if t0 > 0 { row.update(repeating: 0, count: t0) }
                    if t1 > t0 { (row + t0).update(from: src + (t0 + offset), count: t1 - t0) }
                    if t1 < hw { (row + t1).update(repeating: 0, count: hw - t1) }
                    if j0 > 0 || j1 < w {
                        for i in i0..<i1 {
                            let d = row + i * w
                            for j in 0..<j0 { d[j] = 0 }
                            for j in j1..<w { d[j] = 0 }
                        }
                    }
                }
            }
        }
    }
}
