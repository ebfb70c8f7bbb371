import RealModule

/// The time-dependent dynamics network `g(z, t; θ)` of a ``ContinuousFlow`` — an MLP of
/// FFJORD's concat-squash layers (Grathwohl et al. 2019, `ConcatSquashLinear`):
///
///     h_out = (W h + b) ⊙ σ(a·t + c) + d·t
///
/// i.e. PyTorch's `layer(x) * sigmoid(hyper_gate(t)) + hyper_bias(t)` with `hyper_gate` a
/// `Linear(1, out)` (weight `a`, bias `c`) and `hyper_bias` a `Linear(1, out, bias=False)`
/// (weight `d`). Widths `[D, h₁, …, h_L, D]`; the activation (tanh or softplus, both smooth)
/// follows every layer but the last.
///
/// ## Context
///
/// A conditional network (``contextFeatures`` `C > 0`, a ``ContinuousFlow`` in a flow `p(x | c)`)
/// computes `g(z, t, c)`: the context row `c` of each data row enters the first layer's input
/// after the state, `h_0 = [z, c]`, so `weight_0` is `[h₁, D + C]` (columns `0..<D` read `z`,
/// `D..<D+C` read `c`), as zuko's CNF feeds `[x, t-embedding, c]` to its MLP. Time keeps its
/// concat-squash gates (`gate_weight_l · t + gate_bias_l` through σ) and shifts
/// (`time_weight_l · t`) in every layer, which do not read the context: every later layer sees
/// `c` through `h_1`, so the network is a general function of
/// `(z, t, c)`, and the gates stay one vector per layer rather than one per row. Because `c` is
/// constant along a trajectory, a solve computes `b_0 + W_c c` once per row
/// (``contextBias(_:rows:into:)``) and every evaluation adds it in place of `b_0`; tangents have
/// no context component (`∂g/∂z` only), so the forward-mode passes read the first `D` columns.
///
/// Parameters, in file order, for each layer `l = 0 … L`: `weight_l [out, in]`, `bias_l [out]`,
/// `gate_weight_l [out]` (= `a`), `gate_bias_l [out]` (= `c`), `time_weight_l [out]` (= `d`).
/// All start from PyTorch's `Linear` defaults, `U(−1/√fan_in, 1/√fan_in)` (fan-in 1, i.e.
/// `U(−1, 1)`, for the three hyper-network vectors), drawn from Philox stream
/// ``RandomStream/initialization`` of the layer seed. Nothing is zero-initialised, so a new CNF is
/// a generic (non-identity) flow.
///
/// Besides `g`, one evaluation can push tangent directions through the network by forward-mode
/// differentiation: for `K` directions `vₖ` per row it returns `J vₖ` with `J = ∂g/∂z`, which is
/// what the exact trace (`K = D`, `vₖ = eₖ`) and Hutchinson's estimator (`K = 1`, `v = ε`) need.
final class ODENet<T: FlowScalar> {
    let widths: [Int]
    let activation: Activation
    /// Context scalars per row read by the first layer after the state (0: none).
    let contextFeatures: Int
    let weights: [Parameter<T>]
    let biases: [Parameter<T>]
    let gateWeights: [Parameter<T>]
    let gateBiases: [Parameter<T>]
    let timeWeights: [Parameter<T>]
    /// Each weight transposed (`in × out`), the layout of the dense kernel; see ``repack()``.
    private let packed: [UnsafeMutablePointer<T>]

    /// - Parameters:
    ///   - widths: `[D, h₁, …, h_L, D]`.
    ///   - contextFeatures: `C`, context scalars per row the first layer reads after `z`
    ///     (its fan-in is then `D + C`).
    ///   - seed: the layer seed (Philox key; row 0 of stream ``RandomStream/initialization``).
    /// - Throws: ``FlowError/limitExceeded(_:)`` or ``FlowError/outOfMemory(_:)`` from the
    ///   ``MemoryBudget``.
    init(widths: [Int], activation: Activation, contextFeatures: Int = 0, seed: UInt64) throws {
        self.widths = widths
        self.activation = activation
        self.contextFeatures = contextFeatures
        var rng = PhiloxStream(seed: seed, row: 0, stream: RandomStream.initialization)
        var ws: [Parameter<T>] = [], bs: [Parameter<T>] = [], gws: [Parameter<T>] = []
        var gbs: [Parameter<T>] = [], tws: [Parameter<T>] = []
        for l in 0..<(widths.count - 1) {
            let fanIn = widths[l] + (l == 0 ? contextFeatures : 0), fanOut = widths[l + 1]
            let w = try Parameter<T>(name: "weight_\(l)", shape: [fanOut, fanIn])
            let b = try Parameter<T>(name: "bias_\(l)", shape: [fanOut])
            let gw = try Parameter<T>(name: "gate_weight_\(l)", shape: [fanOut])
            let gb = try Parameter<T>(name: "gate_bias_\(l)", shape: [fanOut])
            let tw = try Parameter<T>(name: "time_weight_\(l)", shape: [fanOut])
            let bound = 1 / Double(Swift.max(fanIn, 1)).squareRoot()
            for i in 0..<w.count { w.values[i] = T(rng.nextUniform(in: -bound, bound)) }
            for i in 0..<b.count { b.values[i] = T(rng.nextUniform(in: -bound, bound)) }
            for p in [gw, gb, tw] {
                for i in 0..<p.count { p.values[i] = T(rng.nextUniform(in: -1, 1)) }
            }
            ws.append(w); bs.append(b); gws.append(gw); gbs.append(gb); tws.append(tw)
        }
        weights = ws
        biases = bs
        gateWeights = gws
        gateBiases = gbs
        timeWeights = tws
        packed = try MemoryBudget.allocatePackedCopies(of: ws)
        repack()
    }

    deinit { for p in packed { MemoryBudget.free(p) } }

    /// Builds a network after checking its size against ``Limits``.
    static func checked(widths: [Int], activation: Activation, contextFeatures: Int = 0, seed: UInt64,
                        context: String) throws -> ODENet {
        var total = 0
        for l in 0..<(widths.count - 1) {
            let (w, o1) = (widths[l] + (l == 0 ? contextFeatures : 0)).multipliedReportingOverflow(by: widths[l + 1])
            let (t, o2) = total.addingReportingOverflow(w + 4 * widths[l + 1])
            guard !o1, !o2, t <= Limits.maxParametersPerLayer else {
                throw FlowError.limitExceeded("\(context): dynamics network \(widths) has more than \(Limits.maxParametersPerLayer) parameters")
            }
            total = t
        }
        // Parameters, their gradients and the packed copies of the weights.
        return try MemoryBudget.reserve(3 * total * MemoryLayout<T>.stride, "\(context): a dynamics network \(widths) of \(total) parameters") {
            try ODENet(widths: widths, activation: activation, contextFeatures: contextFeatures, seed: seed)
        }
    }

    /// Refreshes the transposed weights (after loading or updating parameters).
    func repack() {
        for l in 0..<weights.count {
            MatrixProducts.transpose(weights[l].pointer, rows: widths[l + 1], columns: fanIn(l), into: packed[l])
        }
    }

    var dimension: Int { widths.first! }
    var layerCount: Int { weights.count }
    /// The first layer's fan-in `D + C`: the row stride of its input `[z, c]` and of the tangent
    /// directions (whose context columns are zero).
    var inputWidth: Int { widths[0] + contextFeatures }
    /// Layer `l`'s fan-in: ``inputWidth`` for the first, `widths[l]` for the others.
    func fanIn(_ l: Int) -> Int { l == 0 ? inputWidth : widths[l] }
    /// Widest layer (the first layer's input `[z, c]` included).
    var maxWidth: Int { Swift.max(widths.max() ?? 0, inputWidth) }

    /// File order: per layer `weight_l, bias_l, gate_weight_l, gate_bias_l, time_weight_l`.
    var parameters: [Parameter<T>] {
        (0..<layerCount).flatMap { [weights[$0], biases[$0], gateWeights[$0], gateBiases[$0], timeWeights[$0]] }
    }

    /// Scratch of one evaluation over `rows` rows with `directions` tangents per row.
    struct Scratch {
        var h0, h1, q0, q1, slope, gate, shift: UnsafeMutablePointer<T>
    }

    /// Bytes of a ``Scratch`` for `rows` rows and `directions` tangents per row.
    func scratchBytes(rows: Int, directions k: Int) -> Int {
        let w = maxWidth
        return 3 * Arena.bytes(T.self, rows * w) + 2 * Arena.bytes(T.self, rows * k * w) + 2 * Arena.bytes(T.self, w)
    }

    func takeScratch(rows: Int, directions k: Int, arena: inout Arena) -> Scratch {
        let w = maxWidth
        return Scratch(h0: arena.take(T.self, rows * w), h1: arena.take(T.self, rows * w),
                       q0: arena.take(T.self, rows * k * w), q1: arena.take(T.self, rows * k * w),
                       slope: arena.take(T.self, rows * w), gate: arena.take(T.self, w), shift: arena.take(T.self, w))
    }

    /// Bytes of a ``contextBias(_:rows:into:)`` output for `rows` rows (0 without a context).
    func contextBiasBytes(rows: Int) -> Int {
        contextFeatures > 0 ? Arena.bytes(T.self, rows * widths[1]) : 0
    }

    /// The first layer's bias with the context folded in, `b_0 + W_c c_r` for each of `rows`
    /// context rows (`rows × C`, contiguous; nil: zeros, i.e. `b_0`), into `out`
    /// (`rows × h₁`). Constant along a solve, so computed once per chunk. O(rows · C · h₁).
    func contextBias(_ context: UnsafePointer<T>?, rows: Int, into out: UnsafeMutablePointer<T>) {
        let c = contextFeatures, d = dimension, h = widths[1]
        guard let context else {
            for r in 0..<rows { (out + r * h).update(from: biases[0].pointer, count: h) }
            return
        }
        // Rows D..<D+C of the packed (transposed) weight are W_cᵀ, `C × h₁`.
        T.denseLayer(context, ldx: c, rows: rows, inFeatures: c, packedWeight: packed[0] + d * h,
                     bias: biases[0].pointer, outFeatures: h, into: out, ldy: h, relu: false)
    }

    /// `out = g(z, t)` for `rows` rows (row strides `ldz`, `ldo`) and, when `tangents` is given,
    /// `tangentOut = J·v` for the `k` directions per row in `tangents` (`rows·k ×` ``inputWidth``,
    /// contiguous, direction `i` of row `r` at row `r·k + i`; only the first `D` columns are
    /// read); `tangentOut` is `rows·k × D`, laid out alike. With a context, `contextBias`
    /// (``contextBias(_:rows:into:)``, `rows × h₁`) replaces the first layer's bias row by row;
    /// nil without one. Forward-mode: each concat-squash layer maps a tangent `u` to
    /// `(W u) ⊙ σ(a t + c)`, each activation to `f′(pre) ⊙ u`.
    /// Cost O((1 + k) · rows · Σ widthₗ·widthₗ₊₁).
    @_specialize(where T == Float) @_specialize(where T == Double)
    func evaluate(t: T, _ z: UnsafePointer<T>, ldz: Int, rows: Int, into out: UnsafeMutablePointer<T>, ldo: Int,
                  tangents: UnsafePointer<T>?, directions k: Int, tangentOut: UnsafeMutablePointer<T>?,
                  contextBias: UnsafePointer<T>? = nil, scratch s: Scratch) {
        var input = z, ld = ldz
        var tin: UnsafePointer<T>? = tangents
        var hBuf = (s.h0, s.h1), qBuf = (s.q0, s.q1)
        let trows = rows * k
        for l in 0..<layerCount {
            let last = l == layerCount - 1
            let fin = widths[l], fout = widths[l + 1]
            let gw = gateWeights[l].values, gb = gateBiases[l].values, tw = timeWeights[l].values
            for j in 0..<fout {
                s.gate[j] = 1 / (1 + T.exp(-(gw[j] * t + gb[j])))
                s.shift[j] = tw[j] * t
            }
            // Primal (the first layer reads z only; the context is in its per-row bias).
            let dst = last ? out : hBuf.0, ldd = last ? ldo : fout
            let rowBias = l == 0 ? contextBias : nil
            T.denseLayer(input, ldx: ld, rows: rows, inFeatures: fin, packedWeight: packed[l],
                         bias: rowBias == nil ? biases[l].pointer : nil, outFeatures: fout, into: dst, ldy: ldd,
                         relu: false)
            if let rowBias {
                for r in 0..<rows {
                    let p = dst + r * ldd, b = rowBias + r * fout
                    for j in 0..<fout { p[j] = (p[j] + b[j]) * s.gate[j] + s.shift[j] }
                }
            } else {
                for r in 0..<rows {
                    let p = dst + r * ldd
                    for j in 0..<fout { p[j] = p[j] * s.gate[j] + s.shift[j] }
                }
            }
            // Tangents.
            if let v = tin {
                let tdst = last ? tangentOut! : qBuf.0
                T.denseLayer(v, ldx: l == 0 ? inputWidth : fin, rows: trows, inFeatures: fin, packedWeight: packed[l],
                             bias: nil, outFeatures: fout, into: tdst, ldy: fout, relu: false)
                for r in 0..<trows {
                    let q = tdst + r * fout
                    for j in 0..<fout { q[j] *= s.gate[j] }
                }
                if !last {
                    for r in 0..<rows {
                        let p = dst + r * fout, d = s.slope + r * fout
                        for j in 0..<fout { d[j] = activation.derivative(p[j]) }
                        for i in 0..<k {
                            let q = tdst + (r * k + i) * fout
                            for j in 0..<fout { q[j] *= d[j] }
                        }
                    }
                    tin = UnsafePointer(tdst)
                    qBuf = (qBuf.1, qBuf.0)
                }
            }
            if !last {
                activation.apply(dst, count: rows * fout)
                input = UnsafePointer(dst)
                ld = fout
                hBuf = (hBuf.1, hBuf.0)
            }
        }
    }
}
