/// The inference pass of the BLAS layout run block by block: each block of samples goes
/// through all three convolutions in the GEMMs' channel-major layout before the next block
/// starts.
///
/// Layer by layer (``ConvNet/layerForward(_:ldx:rows:into:arena:)``), every convolution gathers
/// its input block into `C × columns` and scatters its product back to `rows × C × H × W`: four
/// copies of a `hidden × columns` block between the three products, and two `rows × hidden ×
/// H × W` activations that leave the cache between layers. Here the first product's ReLU output
/// is the second product's right-hand side as it stands, and the second's is the third's: only
/// the input is unfolded and only the output folded. The GEMMs see the same operands with the
/// same shapes as layer by layer, so the result is bitwise the same
/// (`ConvTests.testBlockForwardEqualsLayerByLayerForward`).
extension ConvNet {
    /// Whether ``callAsFunction(_:ldx:rows:into:arena:)`` takes ``blockForward(_:ldx:rows:into:arena:)``
    /// for `rows` samples: blocks of more than one sample (planes under
    /// ``Convolution/targetColumns`` pixels), the first layer unfolding its input
    /// (`C ≤ hidden`) and the last folding its output (`out < hidden`), as in every coupling
    /// and split conditioner of the presets.
    func usesBlockForward(rows: Int) -> Bool {
        blockForwardApplies && layers[0].forwardBlockRows(rows) > 1
    }

    /// The layer conditions of ``usesBlockForward(rows:)`` (independent of the row count).
    var blockForwardApplies: Bool {
        layers[0].method == .unfoldInput && layers[1].kernel == 1 && layers[2].method == .foldOutput
    }

    /// Scratch of ``blockForward(_:ldx:rows:into:arena:)`` over `rows` samples, with
    /// `columns = forwardBlockRows(rows)·H·W`: the unfolded input block (`C·9 × columns`), two
    /// hidden blocks (`hidden × columns` each) and the per-tap product (`out·9 × columns`), or
    /// with ``usesWinograd`` its scratch (``winogradScratchBytes``) instead of the product.
    func blockForwardBytes(rows: Int) -> Int {
        let columns = layers[0].forwardBlockRows(rows) * layers[0].plane
        let last = usesWinograd ? winogradScratchBytes : Arena.bytes(T.self, layers[2].taps * columns)
        return Arena.bytes(T.self, layers[0].patch * columns) + 2 * Arena.bytes(T.self, hidden * columns) + last
    }

    /// `y = net(x)` block by block (see the extension's comment); arguments as
    /// ``callAsFunction(_:ldx:rows:into:arena:)``.
    /// - Precondition: ``blockForwardApplies``.
    /// - Complexity: the three products (``Convolution/flops(rows:)`` each; the last by Winograd,
    ///   2.25–4× fewer multiplications, when ``usesWinograd``), one unfold of the input and one fold
    ///   of the output; no allocation.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func blockForward(_ x: UnsafePointer<T>, ldx: Int, rows: Int, into y: UnsafeMutablePointer<T>,
                      arena: inout Arena) {
        let (first, middle, last) = (layers[0], layers[1], layers[2])
        let hw = first.plane, block = first.forwardBlockRows(rows), columns = block * hw
        let unfolded = arena.take(T.self, first.patch * columns)
        let h0 = arena.take(T.self, hidden * columns), h1 = arena.take(T.self, hidden * columns)
        let winograd = usesWinograd
        let product = winograd ? nil : arena.take(T.self, last.taps * columns)
        guard let packed = packedWeight(2) else { preconditionFailure("ConvNet.blockForward: last layer not folding") }
        let b0 = biases[0].pointer, b1 = biases[1].pointer, b2 = biases[2].pointer
        var start = 0
        while start < rows {
            let count = Swift.min(block, rows - start), n = count * hw
            first.unfold(x + start * ldx, ldx: ldx, samples: count, channels: first.inChannels, into: unfolded,
                         ld: columns)
            // h0 = ReLU(b0 + W0·X̂), h1 = ReLU(b1 + W1·h0): bias rows first, the GEMMs add onto them.
            for o in 0..<hidden { (h0 + o * columns).update(repeating: b0[o], count: n) }
            T.blasGemm(transA: false, transB: false, m: hidden, n: n, k: first.patch, alpha: 1,
                       a: weights[0].pointer, lda: first.patch, b: unfolded, ldb: columns, beta: 1, c: h0, ldc: columns)
            for o in 0..<hidden { Convolution.finish(h0 + o * columns, count: n, bias: 0, relu: true) }
            for o in 0..<hidden { (h1 + o * columns).update(repeating: b1[o], count: n) }
            T.blasGemm(transA: false, transB: false, m: hidden, n: n, k: middle.patch, alpha: 1,
                       a: weights[1].pointer, lda: middle.patch, b: h0, ldb: columns, beta: 1, c: h1, ldc: columns)
            for o in 0..<hidden { Convolution.finish(h1 + o * columns, count: n, bias: 0, relu: true) }
            let out = y + start * last.outputCount
            if winograd {
                var scratch = arena
                lastLayerForward(h1, lds: hw, ldp: 1, ldc: columns, rows: count, into: out, arena: &scratch)
            } else if let product {
                // Per-tap products of the last layer, folded onto the output planes, then its bias.
                Convolution.zero(product, rows: last.taps, count: n, ld: columns)
                T.blasGemm(transA: false, transB: false, m: last.taps, n: n, k: hidden, alpha: 1,
                           a: packed, lda: hidden, b: h1, ldb: columns, beta: 1, c: product, ldc: columns)
                last.fold(product, ld: columns, samples: count, channels: last.outChannels, into: out,
                          lddst: last.outputCount)
                for s in 0..<count {
                    for o in 0..<last.outChannels {
                        Convolution.finish(out + s * last.outputCount + o * hw, count: hw, bias: b2[o], relu: false)
                    }
                }
            }
            start += count
        }
    }
}
