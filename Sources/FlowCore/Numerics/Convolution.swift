import CFlowKernels

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
/// The products run as GEMMs through BLAS (`T.blasGemm`), in one of two layouts (``method``),
/// whichever moves less data besides the GEMM:
/// - ``Method/unfoldInput`` (im2col; used when `C ≤ O` or `k = 1`): the input patches are
///   unfolded into `X̂ = [C·k² × columns]` and `y = W·X̂`. Backward unfolds the input again for
///   `∂W = ∂y·X̂ᵀ` and folds `Wᵀ·∂y` back onto the planes (col2im) for `∂x`.
/// - ``Method/foldOutput`` (used when `O < C` and `k > 1`, e.g. a conditioner's last layer):
///   every tap's contribution is computed from the raw input, `T = P·x` with
///   `P = [O·k² × C]` the weight regrouped by tap with the taps flipped
///   (``packWeight(_:into:)``; a caller that keeps `P` up to date passes it in, otherwise it is
///   packed into the arena on every call), and folded onto the output planes (col2im).
///   Backward unfolds `∂y` once (`Û = [O·k² × columns]`) and gets both `∂W` (from `Û·xᵀ`) and
///   `∂x = Pᵀ·Û` straight from it. Data moved per sample scales with `O·k²` instead of `C·k²`.
///
/// Samples go in blocks (``forwardBlockRows(_:)``, ``backwardBlockRows(_:)``) so that small
/// planes still give BLAS wide matrices; a one-sample block needs no gather or scatter (the
/// GEMM reads `x` and writes `y` or `∂x` in place) and, for `k = 1`, no unfolding at all.
///
/// The kernel size may be any odd `k ≥ 1`; the conditioners use 1 and 3.
///
/// Scratch comes from the caller's ``Arena`` (sizes from ``workspaceBytes(_:rows:)`` and
/// ``backwardWorkspaceBytes(_:rows:)``, computable up front); no call allocates.
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

    /// How the convolution is laid out as GEMMs (see ``Convolution``).
    enum Method: Equatable, Sendable {
        /// im2col of the input, `y = W·X̂`.
        case unfoldInput
        /// Per-tap products `T = P·x` folded onto the output (col2im).
        case foldOutput
    }

    /// ``Method/foldOutput`` when `k > 1` and `O < C`, else ``Method/unfoldInput``.
    var method: Method { kernel > 1 && outChannels < inChannels ? .foldOutput : .unfoldInput }

    /// Zero padding on each side of the plane: `k / 2`.
    var padding: Int { kernel / 2 }
    /// Pixels of a plane: `H·W`.
    var plane: Int { height * width }
    /// Length of one unfolded input patch: `C·k²`.
    var patch: Int { inChannels * kernel * kernel }
    /// Rows of the per-tap output matrix of ``Method/foldOutput``: `O·k²`.
    var taps: Int { outChannels * kernel * kernel }
    /// Elements of one input sample: `C·H·W`.
    var inputCount: Int { inChannels * plane }
    /// Elements of one output sample: `O·H·W`.
    var outputCount: Int { outChannels * plane }
    /// The weight's shape, `[O, C, k, k]`.
    var weightShape: [Int] { [outChannels, inChannels, kernel, kernel] }
    /// Elements of the weight: `O·C·k²`.
    var weightCount: Int { outChannels * patch }
    /// Elements of the packed weight a caller may keep for ``Method/foldOutput`` (`O·k²·C`), 0
    /// for ``Method/unfoldInput`` (which reads the OIHW weight as it is).
    var packedWeightCount: Int { method == .foldOutput ? weightCount : 0 }

    /// Floating-point operations of a forward pass over `rows` samples (multiply-adds count
    /// two): `2·rows·O·C·k²·H·W`. The backward pass costs as much again for the weight gradient
    /// and once more for the input gradient.
    func flops(rows: Int) -> Int { 2 * rows * outChannels * patch * plane }

    /// GEMM width (`block·H·W` columns) a block of samples aims for: small planes are batched
    /// into wider GEMMs, which single-threaded OpenBLAS runs faster; from 16×16 on, one-sample
    /// GEMMs are already at least this wide and need no gathers (figures in bench/README.md).
    static let targetColumns = 256

    /// Samples per GEMM block of a forward pass over `rows` samples:
    /// `⌈targetColumns / (H·W)⌉`, clamped to `1...rows`.
    func forwardBlockRows(_ rows: Int) -> Int {
        let perBlock = (Convolution.targetColumns + plane - 1) / plane
        return Swift.max(1, Swift.min(rows, perBlock))
    }

    /// Samples per GEMM block of a backward pass over `rows` samples: as
    /// ``forwardBlockRows(_:)``, except one sample for 1×1 kernels, whose one-sample GEMMs read
    /// `x` and `∂y` and write `∂x` in place, and gathering blocks would cost more than the wider
    /// GEMMs gain.
    func backwardBlockRows(_ rows: Int) -> Int {
        kernel == 1 ? 1 : forwardBlockRows(rows)
    }

    /// Scratch bytes of ``forward(_:ldx:rows:weight:packedWeight:bias:into:relu:arena:)`` over
    /// `rows` samples. With `columns = forwardBlockRows(rows)·H·W`:
    /// - ``Method/unfoldInput``: the unfolded block `C·k² × columns` (none for one-sample blocks
    ///   of a 1×1 kernel) and the block's product `O × columns` (none for one-sample blocks);
    /// - ``Method/foldOutput``: the packed weight `O·k² × C` (reserved even when the caller
    ///   passes its own), the gathered input block `C × columns` (none for one-sample blocks)
    ///   and the per-tap product `O·k² × columns`.
    func workspaceBytes<T>(_: T.Type, rows: Int) -> Int {
        let block = forwardBlockRows(rows), columns = block * plane
        switch method {
        case .unfoldInput:
            return (kernel == 1 && block == 1 ? 0 : Arena.bytes(T.self, patch * columns))
                + (block == 1 ? 0 : Arena.bytes(T.self, outChannels * columns))
        case .foldOutput:
            return Arena.bytes(T.self, weightCount) + (block == 1 ? 0 : Arena.bytes(T.self, inChannels * columns))
                + Arena.bytes(T.self, taps * columns)
        }
    }

    /// `y = conv(x) + bias`, optionally followed by ReLU, for `rows` samples.
    ///
    /// - Parameters:
    ///   - x: `rows` samples of `C × H × W`, sample `n` at `x + n·ldx` (`ldx ≥ C·H·W`; lets a
    ///     coupling read a channel slice of its input in place).
    ///   - weight: `[O, C, k, k]`.
    ///   - packedWeight: ``packWeight(_:into:)`` of the current `weight` (``packedWeightCount``
    ///     elements), or nil to pack it into the arena.
    ///   - bias: `[O]`, or nil for none.
    ///   - y: `rows × O × H × W`, contiguous; overwritten. Must not overlap `x`.
    ///   - relu: applies `max(0, ·)` after the bias.
    ///   - arena: scratch of ``workspaceBytes(_:rows:)`` bytes.
    /// - Complexity: ``flops(rows:)`` flops in BLAS plus O(rows·min(C, O)·k²·H·W) element moves.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func forward<T: FlowScalar>(_ x: UnsafePointer<T>, ldx: Int, rows: Int, weight: UnsafePointer<T>,
                                packedWeight: UnsafePointer<T>? = nil, bias: UnsafePointer<T>?,
                                into y: UnsafeMutablePointer<T>, relu: Bool = false, arena: inout Arena) {
        guard rows > 0 else { return }
        FlowRuntime.configureBLAS()
        switch method {
        case .unfoldInput:
            forwardUnfoldingInput(x, ldx: ldx, rows: rows, weight: weight, bias: bias, into: y, relu: relu, arena: &arena)
        case .foldOutput:
            let packed = packedWeight ?? packWeight(weight, arena: &arena)
            forwardFoldingOutput(x, ldx: ldx, rows: rows, packedWeight: packed, bias: bias, into: y, relu: relu,
                                 arena: &arena)
        }
    }

    /// ``Method/unfoldInput``: per block, `product = bias + W·X̂` then ReLU into `y`.
    @_specialize(where T == Float) @_specialize(where T == Double)
    private func forwardUnfoldingInput<T: FlowScalar>(_ x: UnsafePointer<T>, ldx: Int, rows: Int,
                                                      weight: UnsafePointer<T>, bias: UnsafePointer<T>?,
                                                      into y: UnsafeMutablePointer<T>, relu: Bool, arena: inout Arena) {
        let hw = plane, block = forwardBlockRows(rows), columns = block * hw
        let unfolded: UnsafeMutablePointer<T>? = kernel == 1 && block == 1 ? nil : arena.take(T.self, patch * columns)
        let product: UnsafeMutablePointer<T>? = block == 1 ? nil : arena.take(T.self, outChannels * columns)
        var first = 0
        while first < rows {
            let count = Swift.min(block, rows - first)
            // B: the unfolded patches [C·k² × count·H·W], or the input sample itself.
            let b: UnsafePointer<T>, ldb: Int
            if let unfolded {
                unfold(x + first * ldx, ldx: ldx, samples: count, channels: inChannels, into: unfolded, ld: columns)
                (b, ldb) = (UnsafePointer(unfolded), columns)
            } else {
                (b, ldb) = (x + first * ldx, hw)
            }
            // The GEMM adds onto C already holding the bias (β = 1): no zeroing pass (``zero``)
            // and no bias pass over the result.
            if let product {
                for o in 0..<outChannels {
                    (product + o * columns).update(repeating: bias?[o] ?? 0, count: count * hw)
                }
                T.blasGemm(transA: false, transB: false, m: outChannels, n: count * hw, k: patch,
                           alpha: 1, a: weight, lda: patch, b: b, ldb: ldb, beta: 1, c: product, ldc: columns)
                for s in 0..<count {
                    let ys = y + (first + s) * outputCount
                    for o in 0..<outChannels {
                        Convolution.activate(product + o * columns + s * hw, into: ys + o * hw, count: hw, relu: relu)
                    }
                }
            } else {
                let ys = y + first * outputCount
                for o in 0..<outChannels { (ys + o * hw).update(repeating: bias?[o] ?? 0, count: hw) }
                T.blasGemm(transA: false, transB: false, m: outChannels, n: hw, k: patch,
                           alpha: 1, a: weight, lda: patch, b: b, ldb: ldb, beta: 1, c: ys, ldc: hw)
                if relu { Convolution.finish(ys, count: outputCount, bias: 0, relu: true) }
            }
            first += count
        }
    }

    /// ``Method/foldOutput``: per block, `T = P·x` then fold, bias and ReLU into `y`.
    @_specialize(where T == Float) @_specialize(where T == Double)
    private func forwardFoldingOutput<T: FlowScalar>(_ x: UnsafePointer<T>, ldx: Int, rows: Int,
                                                     packedWeight packed: UnsafePointer<T>, bias: UnsafePointer<T>?,
                                                     into y: UnsafeMutablePointer<T>, relu: Bool, arena: inout Arena) {
        let hw = plane, block = forwardBlockRows(rows), columns = block * hw
        let gathered: UnsafeMutablePointer<T>? = block == 1 ? nil : arena.take(T.self, inChannels * columns)
        let product = arena.take(T.self, taps * columns)
        var first = 0
        while first < rows {
            let count = Swift.min(block, rows - first)
            let (b, ldb) = inputBlock(x, ldx: ldx, first: first, count: count, scratch: gathered, columns: columns)
            Convolution.zero(product, rows: taps, count: count * hw, ld: columns)
            T.blasGemm(transA: false, transB: false, m: taps, n: count * hw, k: inChannels,
                       alpha: 1, a: packed, lda: inChannels, b: b, ldb: ldb, beta: 1, c: product, ldc: columns)
            fold(product, ld: columns, samples: count, channels: outChannels, into: y + first * outputCount,
                 lddst: outputCount)
            if bias != nil || relu {
                for s in 0..<count {
                    let ys = y + (first + s) * outputCount
                    for o in 0..<outChannels {
                        Convolution.finish(ys + o * hw, count: hw, bias: bias?[o] ?? 0, relu: relu)
                    }
                }
            }
            first += count
        }
    }

    /// Packs the weight for ``Method/foldOutput``: `P[o·k² + t, c] = weight[o, c, k² − 1 − t]`
    /// (`P` is `O·k² × C`, row-major, ``packedWeightCount`` elements): the weight regrouped by
    /// tap with the taps flipped, so that folding `P·x` (shifting tap `t` by its own offset)
    /// applies tap `k² − 1 − t` at the opposite offset — the convolution. Does nothing for
    /// ``Method/unfoldInput``. - Complexity: O(O·C·k²).
    @_specialize(where T == Float) @_specialize(where T == Double)
    func packWeight<T: FlowScalar>(_ weight: UnsafePointer<T>, into packed: UnsafeMutablePointer<T>) {
        guard method == .foldOutput else { return }
        let kk = kernel * kernel, c = inChannels
        for o in 0..<outChannels {
            let w = weight + o * patch, p = packed + o * kk * c
            for t in 0..<kk {
                let row = p + t * c, tap = kk - 1 - t
                for i in 0..<c { row[i] = w[i * kk + tap] }
            }
        }
    }

    /// ``packWeight(_:into:)`` into `weightCount` elements taken from `arena`.
    @inline(__always)
    func packWeight<T: FlowScalar>(_ weight: UnsafePointer<T>, arena: inout Arena) -> UnsafePointer<T> {
        let packed = arena.take(T.self, weightCount)
        packWeight(weight, into: packed)
        return UnsafePointer(packed)
    }

    /// Zeroes `rows` runs of `count` elements, `ld` apart: the C operand of a product then run
    /// with β = 1, so OpenBLAS skips its own separate pass over C for β = 0 (`sgemm_beta`), a
    /// visible share of an image flow's profile (bench/README.md).
    @inline(__always)
    static func zero<T: FlowScalar>(_ c: UnsafeMutablePointer<T>, rows: Int, count: Int, ld: Int) {
        for r in 0..<rows { (c + r * ld).update(repeating: 0, count: count) }
    }

    /// `dst[i] = act(src[i])` (`act` ReLU or identity); `dst` must not overlap `src` (in place,
    /// use ``finish(_:count:bias:relu:)``: an aliased pair fails the vectoriser's overlap check
    /// and runs scalar).
    @inline(__always)
    static func activate<T: FlowScalar>(_ src: UnsafePointer<T>, into dst: UnsafeMutablePointer<T>, count: Int,
                                        relu: Bool) {
        if relu {
            for i in 0..<count { dst[i] = Swift.max(src[i], 0) }
        } else {
            dst.update(from: src, count: count)
        }
    }

    /// `v[i] = act(v[i] + bias)` in place (`act` ReLU or identity).
    @inline(__always)
    static func finish<T: FlowScalar>(_ v: UnsafeMutablePointer<T>, count: Int, bias: T, relu: Bool) {
        if relu {
            for i in 0..<count { v[i] = Swift.max(v[i] + bias, 0) }
        } else {
            for i in 0..<count { v[i] += bias }
        }
    }

    /// Copies `planes` runs of `count` elements from `src` (runs `srcStride` apart) to `dst`
    /// (runs `dstStride` apart): gathers samples into a block matrix and scatters them back.
    @inline(__always)
    static func copyPlanes<T>(_ src: UnsafePointer<T>, stride srcStride: Int, into dst: UnsafeMutablePointer<T>,
                              stride dstStride: Int, planes: Int, count: Int) {
        for c in 0..<planes { (dst + c * dstStride).update(from: src + c * srcStride, count: count) }
    }

    /// The input block of samples `first ..< first + count` as a GEMM operand `C × (count·H·W)`:
    /// gathered into `scratch` (row stride `columns`) when blocks hold several samples, else the
    /// sample's own `C × H·W` planes in place (scratch nil).
    @inline(__always)
    func inputBlock<T>(_ x: UnsafePointer<T>, ldx: Int, first: Int, count: Int,
                       scratch: UnsafeMutablePointer<T>?, columns: Int) -> (UnsafePointer<T>, ld: Int) {
        let hw = plane
        guard let scratch else { return (x + first * ldx, hw) }
        for s in 0..<count {
            Convolution.copyPlanes(x + (first + s) * ldx, stride: hw, into: scratch + s * hw, stride: columns,
                                   planes: inChannels, count: hw)
        }
        return (UnsafePointer(scratch), columns)
    }

    /// The output positions `i0..<i1` of an axis of `length` whose source `i + shift` lies
    /// inside `0..<length` (empty, with `i0 == i1`, when the shift exceeds the axis).
    @inline(__always)
    static func inside(shift: Int, length: Int) -> (Int, Int) {
        let lower = Swift.min(Swift.max(0, -shift), length)
        return (lower, Swift.max(lower, Swift.min(length, length - shift)))
    }

    /// im2col of `samples` samples of `channels` planes (sample `n` at `x + n·ldx`): row
    /// `c·k² + p·k + q` of `dst` (row stride `ld ≥ samples·H·W`) holds in columns
    /// `n·H·W ..< (n + 1)·H·W` sample `n`'s plane `c` shifted by `(p − k/2, q − k/2)`:
    /// `dst[c·k² + p·k + q][n·H·W + i·W + j] = x[n][c][(i + p − k/2)·W + j + q − k/2]`, zero where
    /// that leaves the plane.
    ///
    /// A shift by `(di, dj)` moves a whole row-major plane by `di·W + dj` elements, so each row
    /// of `dst` is one contiguous copy, after which the `|dj|` columns that wrapped around from
    /// the neighbouring image row are zeroed (and the `|di|` image rows shifted in from outside
    /// the plane). Float runs in C (`fk_unfold_f32`: the same copies, or eight positions per
    /// load and store, with the tap masks computed once for the whole block).
    /// - Complexity: O(samples·channels·k²·H·W) at memcpy speed.
    @inline(__always)
    func unfold<T: FlowScalar>(_ x: UnsafePointer<T>, ldx: Int, samples: Int, channels: Int,
                               into dst: UnsafeMutablePointer<T>, ld: Int) {
        let h = height, w = width, hw = plane, k = kernel, pad = padding
        if k == 1 {
            for n in 0..<samples {
                Convolution.copyPlanes(x + n * ldx, stride: hw, into: dst + n * hw, stride: ld, planes: channels,
                                       count: hw)
            }
            return
        }
        if T.self == Float.self {
            fk_unfold_f32(UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), ldx, samples, channels, h, w, k,
                          UnsafeMutableRawPointer(dst).assumingMemoryBound(to: Float.self), ld)
            return
        }
        for n in 0..<samples {
            for c in 0..<channels {
                let src = x + n * ldx + c * hw
                for p in 0..<k {
                    let di = p - pad
                    let (i0, i1) = Convolution.inside(shift: di, length: h)
                    for q in 0..<k {
                        let row = dst + (c * k * k + p * k + q) * ld + n * hw
                        let dj = q - pad
                        let (j0, j1) = Convolution.inside(shift: dj, length: w)
                        // Entries t ∈ [i0·W, i1·W) read source entry t + offset, clamped to the plane.
                        let offset = di * w + dj
                        let t0 = Swift.min(Swift.max(i0 * w, -offset), hw)
                        let t1 = Swift.max(t0, Swift.min(i1 * w, hw - offset))
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

    /// col2im, the adjoint of ``unfold(_:ldx:samples:channels:into:ld:)``: sample `n`'s planes
    /// at `dst + n·lddst` (`channels × H × W`, overwritten) receive, for every row
    /// `c·k² + p·k + q` of `src` (row stride `ld`; sample `n` in columns `n·H·W ..< (n + 1)·H·W`),
    /// that row shifted by `(p − k/2, q − k/2)` and added into plane `c`:
    /// `dst[n][c][(i + p − k/2)·W + j + q − k/2] += src[c·k² + p·k + q][n·H·W + i·W + j]` for both
    /// positions inside the plane.
    ///
    /// Gather form: every output position starts from the centre tap and adds the other taps in
    /// increasing `p·k + q` (a tap whose source leaves the plane adds +0), so each output is written
    /// once and `src` is left as it is. Float runs the same sums in C (`fk_fold_f32`, eight
    /// positions of four channels at a time). - Complexity: O(samples·channels·k²·H·W).
    @inline(__always)
    func fold<T: FlowScalar>(_ src: UnsafePointer<T>, ld: Int, samples: Int, channels: Int,
                             into dst: UnsafeMutablePointer<T>, lddst: Int) {
        let h = height, w = width, hw = plane, k = kernel, kk = k * k, pad = padding, centre = pad * k + pad
        if T.self == Float.self {
            fk_fold_f32(UnsafeRawPointer(src).assumingMemoryBound(to: Float.self), ld, samples, channels, h, w, k,
                        UnsafeMutableRawPointer(dst).assumingMemoryBound(to: Float.self), lddst)
            return
        }
        for n in 0..<samples {
            for c in 0..<channels {
                let rows = src + c * kk * ld + n * hw, out = dst + n * lddst + c * hw
                for i in 0..<h {
                    for j in 0..<w {
                        var acc = rows[centre * ld + i * w + j]
                        for tap in 0..<kk where tap != centre {
                            let si = i - (tap / k - pad), sj = j - (tap % k - pad)
                            acc += si >= 0 && si < h && sj >= 0 && sj < w ? rows[tap * ld + si * w + sj] : 0
                        }
                        out[i * w + j] = acc
                    }
                }
            }
        }
    }
}
