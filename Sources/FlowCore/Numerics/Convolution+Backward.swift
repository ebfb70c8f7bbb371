extension Convolution {
    /// Scratch bytes of ``backward(_:ldx:rows:weight:outputGradient:weightGradient:biasGradient:inputGradient:arena:)``
    /// over `rows` samples: the unfolded block `C·k² × block·H·W` (reused for the unfolded input
    /// gradient; none for one-sample blocks of a 1×1 kernel) and the block's output gradient
    /// gathered as `O × block·H·W` (none for one-sample blocks).
    func backwardWorkspaceBytes<T>(_: T.Type, rows: Int) -> Int {
        let block = blockRows(rows), columns = block * plane
        let unfolded = kernel == 1 && block == 1 ? 0 : Arena.bytes(T.self, patch * columns)
        let gathered = block == 1 ? 0 : Arena.bytes(T.self, outChannels * columns)
        return unfolded + gathered
    }

    /// Gradients of ``forward(_:ldx:rows:weight:bias:into:relu:arena:)`` without ReLU (a caller
    /// that fused one masks `dy` first).
    ///
    /// With `dy = ∂L/∂y` (`rows × O × H × W`, contiguous), per block of samples with unfolded
    /// input `X̂` (`C·k² × block·H·W`) and `dy` gathered as `Ŷ` (`O × block·H·W`):
    /// - adds `Ŷ·X̂ᵀ` to `weightGradient` (`[O, C, k, k]`; beta = 1, like
    ///   ``MatrixProducts/linearBackward(_:ldx:rows:inFeatures:weight:outFeatures:outputGradient:weightGradient:biasGradient:inputGradient:)``);
    /// - adds the per-channel sums of `dy` to `biasGradient` (`[O]`) when given;
    /// - when `inputGradient` is given, writes `∂L/∂x` into it (`rows × C × H × W`, contiguous,
    ///   overwritten): `Wᵀ·Ŷ` folded back onto the planes (col2im, the adjoint of the unfolding).
    ///
    /// - Parameters:
    ///   - x: the forward input, sample `n` at `x + n·ldx`.
    ///   - weight: `[O, C, k, k]`.
    ///   - arena: scratch of ``backwardWorkspaceBytes(_:rows:)`` bytes.
    /// - Complexity: ``flops(rows:)`` flops for the weight gradient and as many again for the
    ///   input gradient, plus O(rows·C·k²·H·W) element copies.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func backward<T: FlowScalar>(_ x: UnsafePointer<T>, ldx: Int, rows: Int, weight: UnsafePointer<T>,
                                 outputGradient dy: UnsafePointer<T>, weightGradient: UnsafeMutablePointer<T>,
                                 biasGradient: UnsafeMutablePointer<T>?, inputGradient dx: UnsafeMutablePointer<T>?,
                                 arena: inout Arena) {
        guard rows > 0 else { return }
        FlowRuntime.configureBLAS()
        let hw = plane
        if let biasGradient {
            for n in 0..<rows {
                let g = dy + n * outputCount
                for o in 0..<outChannels {
                    let r = g + o * hw
                    var sum: T = 0
                    for i in 0..<hw { sum += r[i] }
                    biasGradient[o] += sum
                }
            }
        }
        let block = blockRows(rows), columns = block * hw
        let unfolded: UnsafeMutablePointer<T>? = kernel == 1 && block == 1 ? nil : arena.take(T.self, patch * columns)
        let gathered: UnsafeMutablePointer<T>? = block == 1 ? nil : arena.take(T.self, outChannels * columns)
        var first = 0
        while first < rows {
            let count = Swift.min(block, rows - first), width = count * hw
            // A: the output gradient as O × count·H·W.
            let a: UnsafePointer<T>, lda: Int
            if let gathered {
                for s in 0..<count {
                    let g = dy + (first + s) * outputCount
                    for o in 0..<outChannels { (gathered + o * columns + s * hw).update(from: g + o * hw, count: hw) }
                }
                (a, lda) = (UnsafePointer(gathered), columns)
            } else {
                (a, lda) = (dy + first * outputCount, hw)
            }
            // B: the unfolded input as C·k² × count·H·W.
            let b: UnsafePointer<T>, ldb: Int
            if let unfolded {
                for s in 0..<count { unfold(x + (first + s) * ldx, into: unfolded + s * hw, ld: columns) }
                (b, ldb) = (UnsafePointer(unfolded), columns)
            } else {
                (b, ldb) = (x + first * ldx, hw)
            }
            T.blasGemm(transA: false, transB: true, m: outChannels, n: patch, k: width,
                       alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: 1, c: weightGradient, ldc: patch)
            if let dx {
                if let unfolded {
                    // The unfolded input is consumed: reuse its memory for Wᵀ·Ŷ.
                    T.blasGemm(transA: true, transB: false, m: patch, n: width, k: outChannels,
                               alpha: 1, a: weight, lda: patch, b: a, ldb: lda, beta: 0, c: unfolded, ldc: columns)
                    for s in 0..<count { fold(unfolded + s * hw, ld: columns, into: dx + (first + s) * inputCount) }
                } else {
                    T.blasGemm(transA: true, transB: false, m: inChannels, n: hw, k: outChannels,
                               alpha: 1, a: weight, lda: patch, b: a, ldb: lda, beta: 0,
                               c: dx + first * inputCount, ldc: hw)
                }
            }
            first += count
        }
    }

    /// col2im of one sample, the adjoint of ``unfold(_:into:ld:)``: `dx` (`C × H × W`,
    /// overwritten) receives, for every row `c·k² + p·k + q` of `src` (row stride `ld`), that
    /// row shifted back by `(p − k/2, q − k/2)` and added into channel `c`; entries that came
    /// from the padding are dropped.
    ///
    /// Like the unfolding, each row is one contiguous add over the plane: the entries of `src`
    /// that correspond to padding (the wrapped columns) are zeroed first, so `src` is
    /// clobbered. - Complexity: O(C·k²·H·W).
    @inline(__always)
    func fold<T: FlowScalar>(_ src: UnsafeMutablePointer<T>, ld: Int, into dx: UnsafeMutablePointer<T>) {
        let h = height, w = width, hw = plane, k = kernel, pad = padding
        if k == 1 {
            for c in 0..<inChannels { (dx + c * hw).update(from: src + c * ld, count: hw) }
            return
        }
        dx.update(repeating: 0, count: inputCount)
        for c in 0..<inChannels {
            let channel = dx + c * hw
            for p in 0..<k {
                let di = p - pad
                let (i0, i1) = Convolution.inside(shift: di, length: h)
                for q in 0..<k {
                    let row = src + (c * k * k + p * k + q) * ld
                    let dj = q - pad
                    let (j0, j1) = Convolution.inside(shift: dj, length: w)
                    if j0 > 0 || j1 < w {
                        for i in i0..<i1 {
                            let s = row + i * w
                            for j in 0..<j0 { s[j] = 0 }
                            for j in j1..<w { s[j] = 0 }
                        }
                    }
                    let offset = di * w + dj
                    let t0 = Swift.max(i0 * w, -offset), t1 = Swift.min(i1 * w, hw - offset)
                    guard t0 < t1 else { continue }
                    let d = channel + (t0 + offset), r = row + t0
                    for t in 0..<(t1 - t0) { d[t] += r[t] }
                }
            }
        }
    }
}
