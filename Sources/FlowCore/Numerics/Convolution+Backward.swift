extension Convolution {
    /// Scratch bytes of ``backward(_:ldx:rows:weight:packedWeight:outputGradient:weightGradient:biasGradient:inputGradient:arena:)``
    /// over `rows` samples. With `columns = backwardBlockRows(rows)·H·W`:
    /// - ``Method/unfoldInput``: the unfolded input block `C·k² × columns` (reused for the
    ///   unfolded input gradient; none for one-sample blocks of a 1×1 kernel) and the output
    ///   gradient gathered as `O × columns` (none for one-sample blocks);
    /// - ``Method/foldOutput``: the packed weight (reserved even when the caller passes its
    ///   own) and the packed weight's gradient (`O·k² × C` each), the
    ///   unfolded output gradient `O·k² × columns`, and the gathered input block `C × columns`
    ///   (reused for the input-gradient block; none for one-sample blocks).
    func backwardWorkspaceBytes<T>(_: T.Type, rows: Int) -> Int {
        let block = backwardBlockRows(rows), columns = block * plane
        switch method {
        case .unfoldInput:
            return (kernel == 1 && block == 1 ? 0 : Arena.bytes(T.self, patch * columns))
                + (block == 1 ? 0 : Arena.bytes(T.self, outChannels * columns))
        case .foldOutput:
            return 2 * Arena.bytes(T.self, weightCount) + Arena.bytes(T.self, taps * columns)
                + (block == 1 ? 0 : Arena.bytes(T.self, inChannels * columns))
        }
    }

    /// Gradients of ``forward(_:ldx:rows:weight:packedWeight:bias:into:relu:arena:)`` without ReLU (a caller
    /// that fused one masks `dy` first).
    ///
    /// With `dy = ∂L/∂y` (`rows × O × H × W`, contiguous; read only):
    /// - adds `∂L/∂W[o, c, p, q] = Σ_{n,i,j} dy[n, o, i, j] · x[n, c, i + p − k/2, j + q − k/2]`
    ///   to `weightGradient` (`[O, C, k, k]`; accumulates like
    ///   ``MatrixProducts/linearBackward(_:ldx:rows:inFeatures:weight:outFeatures:outputGradient:weightGradient:biasGradient:inputGradient:)``);
    /// - adds the per-channel sums `Σ_{n,i,j} dy[n, o, i, j]` to `biasGradient` (`[O]`) when given;
    /// - when `inputGradient` is given, writes `∂L/∂x` into it (`rows × C × H × W`, contiguous,
    ///   overwritten; must not overlap the other buffers); without it that product is skipped.
    ///
    /// - Parameters:
    ///   - x: the forward input, sample `n` at `x + n·ldx`.
    ///   - weight: `[O, C, k, k]`.
    ///   - packedWeight: ``packWeight(_:into:)`` of the current `weight`, or nil to pack it into
    ///     the arena when needed (only ``Method/foldOutput``'s input gradient reads it).
    ///   - arena: scratch of ``backwardWorkspaceBytes(_:rows:)`` bytes.
    /// - Complexity: ``flops(rows:)`` flops for the weight gradient and as many again for the
    ///   input gradient, plus O(rows·min(C, O)·k²·H·W) element moves.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func backward<T: FlowScalar>(_ x: UnsafePointer<T>, ldx: Int, rows: Int, weight: UnsafePointer<T>,
                                 packedWeight: UnsafePointer<T>? = nil, outputGradient dy: UnsafePointer<T>,
                                 weightGradient: UnsafeMutablePointer<T>, biasGradient: UnsafeMutablePointer<T>?,
                                 inputGradient dx: UnsafeMutablePointer<T>?, arena: inout Arena) {
        guard rows > 0 else { return }
        FlowRuntime.configureBLAS()
        if let biasGradient {
            for n in 0..<rows {
                let g = dy + n * outputCount
                for o in 0..<outChannels { biasGradient[o] += Convolution.sum(g + o * plane, count: plane) }
            }
        }
        switch method {
        case .unfoldInput:
            backwardUnfoldingInput(x, ldx: ldx, rows: rows, weight: weight, outputGradient: dy,
                                   weightGradient: weightGradient, inputGradient: dx, arena: &arena)
        case .foldOutput:
            // The packed weight only serves the input gradient.
            let packed = dx == nil ? nil : packedWeight ?? packWeight(weight, arena: &arena)
            backwardFoldingOutput(x, ldx: ldx, rows: rows, packedWeight: packed, outputGradient: dy,
                                  weightGradient: weightGradient, inputGradient: dx, arena: &arena)
        }
    }

    /// `Σ v[i]` over `count` values in eight interleaved partial sums (independent chains the
    /// compiler vectorises; a single running sum is one serial dependency chain).
    @inline(__always)
    static func sum<T: FlowScalar>(_ v: UnsafePointer<T>, count: Int) -> T {
        var s0: T = 0, s1: T = 0, s2: T = 0, s3: T = 0, s4: T = 0, s5: T = 0, s6: T = 0, s7: T = 0
        var i = 0
        while i + 8 <= count {
            s0 += v[i]; s1 += v[i + 1]; s2 += v[i + 2]; s3 += v[i + 3]
            s4 += v[i + 4]; s5 += v[i + 5]; s6 += v[i + 6]; s7 += v[i + 7]
            i += 8
        }
        while i < count { s0 += v[i]; i += 1 }
        return ((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7))
    }

    /// ``Method/unfoldInput``: per block, `∂W += Ŷ·X̂ᵀ` and `∂x = fold(Wᵀ·Ŷ)` with `Ŷ` the output
    /// gradient as `O × columns` and `X̂` the unfolded input.
    @_specialize(where T == Float) @_specialize(where T == Double)
    private func backwardUnfoldingInput<T: FlowScalar>(_ x: UnsafePointer<T>, ldx: Int, rows: Int,
                                                       weight: UnsafePointer<T>, outputGradient dy: UnsafePointer<T>,
                                                       weightGradient: UnsafeMutablePointer<T>,
                                                       inputGradient dx: UnsafeMutablePointer<T>?, arena: inout Arena) {
        let hw = plane, block = backwardBlockRows(rows), columns = block * hw
        let unfolded: UnsafeMutablePointer<T>? = kernel == 1 && block == 1 ? nil : arena.take(T.self, patch * columns)
        let gathered: UnsafeMutablePointer<T>? = block == 1 ? nil : arena.take(T.self, outChannels * columns)
        var first = 0
        while first < rows {
            let count = Swift.min(block, rows - first), width = count * hw
            // A: the output gradient as O × count·H·W.
            let a: UnsafePointer<T>, lda: Int
            if let gathered {
                for s in 0..<count {
                    Convolution.copyPlanes(dy + (first + s) * outputCount, stride: hw, into: gathered + s * hw,
                                           stride: columns, planes: outChannels, count: hw)
                }
                (a, lda) = (UnsafePointer(gathered), columns)
            } else {
                (a, lda) = (dy + first * outputCount, hw)
            }
            // B: the unfolded input as C·k² × count·H·W.
            let b: UnsafePointer<T>, ldb: Int
            if let unfolded {
                unfold(x + first * ldx, ldx: ldx, samples: count, channels: inChannels, into: unfolded, ld: columns)
                (b, ldb) = (UnsafePointer(unfolded), columns)
            } else {
                (b, ldb) = (x + first * ldx, hw)
            }
            T.blasGemm(transA: false, transB: true, m: outChannels, n: patch, k: width,
                       alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: 1, c: weightGradient, ldc: patch)
            if let dx {
                if let unfolded {
                    // The unfolded input is consumed: its memory takes Wᵀ·Ŷ.
                    Convolution.zero(unfolded, rows: patch, count: width, ld: columns)
                    T.blasGemm(transA: true, transB: false, m: patch, n: width, k: outChannels,
                               alpha: 1, a: weight, lda: patch, b: a, ldb: lda, beta: 1, c: unfolded, ldc: columns)
                    fold(unfolded, ld: columns, samples: count, channels: inChannels, into: dx + first * inputCount,
                         lddst: inputCount)
                } else {
                    Convolution.zero(dx + first * inputCount, rows: inChannels, count: hw, ld: hw)
                    T.blasGemm(transA: true, transB: false, m: inChannels, n: hw, k: outChannels,
                               alpha: 1, a: weight, lda: patch, b: a, ldb: lda, beta: 1,
                               c: dx + first * inputCount, ldc: hw)
                }
            }
            first += count
        }
    }

    /// ``Method/foldOutput``: per block, with `Û` the unfolded output gradient (`O·k² × columns`)
    /// and `X` the input block (`C × columns`): `G += Û·Xᵀ` and `∂x = Pᵀ·Û`; at the end
    /// `∂W[o, c, k² − 1 − t] += G[o·k² + t, c]` (the flip of ``packWeight(_:into:)``).
    /// `packed` is required when `dx` is given.
    @_specialize(where T == Float) @_specialize(where T == Double)
    private func backwardFoldingOutput<T: FlowScalar>(_ x: UnsafePointer<T>, ldx: Int, rows: Int,
                                                      packedWeight packed: UnsafePointer<T>?,
                                                      outputGradient dy: UnsafePointer<T>,
                                                      weightGradient: UnsafeMutablePointer<T>,
                                                      inputGradient dx: UnsafeMutablePointer<T>?, arena: inout Arena) {
        let hw = plane, block = backwardBlockRows(rows), columns = block * hw
        let tapGradient = arena.take(T.self, weightCount)
        tapGradient.update(repeating: 0, count: weightCount)
        let unfolded = arena.take(T.self, taps * columns)
        let planes: UnsafeMutablePointer<T>? = block == 1 ? nil : arena.take(T.self, inChannels * columns)
        var first = 0
        while first < rows {
            let count = Swift.min(block, rows - first), width = count * hw
            unfold(dy + first * outputCount, ldx: outputCount, samples: count, channels: outChannels, into: unfolded,
                   ld: columns)
            let (b, ldb) = inputBlock(x, ldx: ldx, first: first, count: count, scratch: planes, columns: columns)
            T.blasGemm(transA: false, transB: true, m: taps, n: inChannels, k: width,
                       alpha: 1, a: unfolded, lda: columns, b: b, ldb: ldb, beta: 1, c: tapGradient, ldc: inChannels)
            if let dx, let packed {
                if let planes {
                    // The input block is consumed: its memory takes Pᵀ·Û.
                    Convolution.zero(planes, rows: inChannels, count: width, ld: columns)
                    T.blasGemm(transA: true, transB: false, m: inChannels, n: width, k: taps,
                               alpha: 1, a: packed, lda: inChannels, b: unfolded, ldb: columns, beta: 1,
                               c: planes, ldc: columns)
                    for s in 0..<count {
                        Convolution.copyPlanes(planes + s * hw, stride: columns, into: dx + (first + s) * inputCount,
                                               stride: hw, planes: inChannels, count: hw)
                    }
                } else {
                    Convolution.zero(dx + first * inputCount, rows: inChannels, count: hw, ld: hw)
                    T.blasGemm(transA: true, transB: false, m: inChannels, n: hw, k: taps,
                               alpha: 1, a: packed, lda: inChannels, b: unfolded, ldb: columns, beta: 1,
                               c: dx + first * inputCount, ldc: hw)
                }
            }
            first += count
        }
        let kk = kernel * kernel, c = inChannels
        for o in 0..<outChannels {
            let w = weightGradient + o * patch, g = tapGradient + o * kk * c
            for t in 0..<kk {
                let row = g + t * c, tap = kk - 1 - t
                for i in 0..<c { w[i * kk + tap] += row[i] }
            }
        }
    }
}
