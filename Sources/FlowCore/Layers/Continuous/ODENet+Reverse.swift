import RealModule

/// Reverse-mode building blocks of the adjoint method for ``ODENet``: vector–Jacobian products
/// of the dynamics `g(z, t; θ)` and the gradient of the divergence term `tr(∂g/∂z)`.
///
/// ## Notation
///
/// Layer `l = 0 … L` with input `h_l` (`h_0 = z`), pre-gate `p_l = W_l h_l + b_l`, gate
/// `s_l = σ(a_l t + c_l)`, output `y_l = p_l ⊙ s_l + d_l t`; `h_{l+1} = f(y_l)` for `l < L`
/// and `g = y_L`. `σ′ = s(1 − s)`.
///
/// Forward-mode tangents of a fixed direction `v` (per row, `K` of them): `q_0 = v`,
/// `P_l = W_l q_l`, `Y_l = P_l ⊙ s_l`, `q_{l+1} = f′(y_l) ⊙ Y_l`, and `J v = Y_L`.
///
/// ## The combined objective
///
/// One reverse pass (``reverse(t:_:ldz:rows:outputCotangent:ldu:probes:directions:traceWeights:kineticWeights:jacobianWeights:primalOut:ldp:inputGradient:ldg:accumulateInput:timeGradient:context:contextGradient:arena:)``)
/// differentiates, per row `r`,
///
///     L_r = u_rᵀ g(z_r, t) + w_r · Σ_k v_{r,k}ᵀ J(z_r, t) v_{r,k}
///
/// with respect to `z_r`, `θ` (summed over rows into the parameter gradients) and `t`. The
/// divergence is the second term with `v_{r,k} = e_k, k = 1 … D` (exact trace) or the single
/// fixed Hutchinson probe `v_r = ε_r` (estimate `εᵀ J ε`).
///
/// ## Formulas (reverse through primal and tangent passes)
///
/// Seeds: `ȳ_L = u`, `Ȳ_L^{(k)} = w · v_k`. For `l = L … 0`:
///
///     s̄_l   = ȳ_l ⊙ p_l + Σ_k Ȳ_l^{(k)} ⊙ P_l^{(k)}          (per row)
///     d̄_l  += t · ȳ_l                      ā_l += t · σ′ ⊙ s̄_l      c̄_l += σ′ ⊙ s̄_l
///     t̄    += Σ_j s̄_l σ′ a_l + ȳ_l · d_l   (per row)
///     p̄_l   = ȳ_l ⊙ s_l                    P̄_l^{(k)} = Ȳ_l^{(k)} ⊙ s_l
///     W̄_l  += p̄_l h_lᵀ + Σ_k P̄_l^{(k)} q_l^{(k)ᵀ}            b̄_l += p̄_l
///     h̄_l   = W_lᵀ p̄_l                     q̄_l^{(k)} = W_lᵀ P̄_l^{(k)}
///
/// and, for `l ≥ 1`, through `h_l = f(y_{l−1})`, `q_l = f′(y_{l−1}) ⊙ Y_{l−1}`:
///
///     ȳ_{l−1}       = f′(y_{l−1}) ⊙ h̄_l + f″(y_{l−1}) ⊙ Σ_k q̄_l^{(k)} ⊙ Y_{l−1}^{(k)}
///     Ȳ_{l−1}^{(k)} = f′(y_{l−1}) ⊙ q̄_l^{(k)}
///
/// ending with `z̄ = h̄_0` (`q_0 = v` is constant).
///
/// ## RNODE regularisers
///
/// Finlay et al., "How to train your neural ODE" (ICML 2020) penalise the kinetic energy
/// `‖g‖²` and the Jacobian's Frobenius norm `‖J‖_F² = E‖J ε‖²` along the trajectory. Both fit
/// the same pass: with per-row weights `κ_r` and `ι_r` the objective gains
/// `κ_r ‖g(z_r, t)‖² + ι_r Σ_k ‖J v_{r,k}‖²` (exact `‖J‖_F²` with the unit directions; the
/// unbiased Hutchinson estimate with one probe), whose seeds are `ȳ_L += 2 κ_r g` and
/// `Ȳ_L^{(k)} += 2 ι_r J v_k` — both read off the forward pass just recorded. The second-order term uses
/// `tanh″(x) = −2 tanh(x)(1 − tanh²(x))` and `softplus″(x) = σ(x)(1 − σ(x))`. With `w = 0`
/// (no probes) this is the plain VJP `uᵀ ∂g/∂(z, θ, t)`; with `u = 0` it is
/// `w · ∂tr/∂(z, θ, t)`.
///
/// ## Context
///
/// With a context (``ODENet/contextFeatures`` `C > 0`) the first layer's input is `h_0 = [z, c]`
/// and the tangents `q_0 = [v, 0]` (``ODENet/inputWidth`` columns, the context ones zero). The
/// formulas above then run unchanged over the `D + C` columns of layer 0: `W̄_0` covers the
/// context columns, and `h̄_0 = [z̄, c̄]` splits into the state gradient and `c̄ = ∂L_r/∂c_r`,
/// which is added to the caller's context gradient (like the parameter gradients: the context
/// is constant along a trajectory, so its gradient is integrated over time).
///
/// Cost: one primal-plus-tangent forward pass and a reverse pass of the same size, i.e. about
/// `3 (1 + K)` times an evaluation of `g`.
extension ODENet {
    /// Bytes of the scratch ``reverse(t:_:ldz:rows:outputCotangent:ldu:probes:directions:traceWeights:kineticWeights:jacobianWeights:primalOut:ldp:inputGradient:ldg:accumulateInput:timeGradient:context:contextGradient:arena:)``
    /// takes from its arena for `rows` rows and `k` tangent directions per row (`k = 0`: VJP only).
    func reverseWorkspaceBytes(rows: Int, directions k: Int) -> Int {
        var bytes = contextFeatures > 0 ? Arena.bytes(T.self, rows * inputWidth) : 0  // [z, c]
        for l in 0..<layerCount {
            let fin = widths[l], fout = widths[l + 1]
            if l > 0 {
                bytes += Arena.bytes(T.self, rows * fin)  // h_l
                if k > 0 { bytes += Arena.bytes(T.self, rows * k * fin) }  // q_l
            }
            bytes += Arena.bytes(T.self, rows * fout)  // p_l
            if k > 0 { bytes += Arena.bytes(T.self, rows * k * fout) }  // P_l
            bytes += Arena.bytes(T.self, fout)  // s_l
        }
        let w = maxWidth
        bytes += 2 * Arena.bytes(T.self, rows * w)  // primal cotangents (ping-pong)
        if k > 0 { bytes += 2 * Arena.bytes(T.self, rows * k * w) }  // tangent cotangents
        bytes += Arena.bytes(T.self, w)  // Σ_r s̄
        return bytes
    }

    /// `inputGradient = uᵀ ∂g/∂z` (`rows × D`, row stride `ldg`; overwritten), adds
    /// `Σ_r u_rᵀ ∂g/∂θ` into every parameter's ``Parameter/gradient`` (the calling thread's
    /// ``GradientSlot``), and when `timeGradient` is given adds `u_rᵀ ∂g/∂t` to its entry `r`.
    /// With a context, `context` holds its rows (`rows × C`; nil: zeros) and `contextGradient`,
    /// when given, gets `u_rᵀ ∂g/∂c_r` added (`rows × C`).
    /// Scratch: ``reverseWorkspaceBytes(rows:directions:)`` with `directions: 0`.
    func vjp(t: T, _ z: UnsafePointer<T>, ldz: Int, rows: Int, cotangent u: UnsafePointer<T>, ldu: Int,
             inputGradient: UnsafeMutablePointer<T>, ldg: Int, timeGradient: UnsafeMutablePointer<T>?,
             context: UnsafePointer<T>? = nil, contextGradient: UnsafeMutablePointer<T>? = nil, arena: inout Arena) {
        reverse(t: t, z, ldz: ldz, rows: rows, outputCotangent: u, ldu: ldu, probes: nil, directions: 0,
                traceWeights: nil, inputGradient: inputGradient, ldg: ldg, accumulateInput: false,
                timeGradient: timeGradient, context: context, contextGradient: contextGradient, arena: &arena)
    }

    /// The adjoint dynamics of one evaluation: `primalOut = g(z, t)` (stride `ldp`) and
    /// `inputGradient = ∂L_r/∂z_r` (overwritten, stride `ldg`) of
    /// `L_r = u_rᵀ g + w_r Σ_k v_kᵀ J v_k + κ_r ‖g‖² + ι_r Σ_k ‖J v_k‖²`, adding `Σ_r ∂L_r/∂θ` into
    /// the parameter gradients. Any of `traceWeights`, `kineticWeights`, `jacobianWeights` may be
    /// nil (that term is absent); `probes` are needed when the trace or Jacobian term is present.
    /// With a context: `context` (`rows × C`; nil: zeros), and `contextGradient` (when given)
    /// gets `∂L_r/∂c_r` added. Scratch: ``reverseWorkspaceBytes(rows:directions:)``.
    func adjointStep(t: T, _ z: UnsafePointer<T>, ldz: Int, rows: Int, cotangent u: UnsafePointer<T>, ldu: Int,
                     probes: UnsafePointer<T>?, directions k: Int, traceWeights: UnsafePointer<T>?,
                     kineticWeights: UnsafePointer<T>?, jacobianWeights: UnsafePointer<T>?,
                     primalOut: UnsafeMutablePointer<T>, ldp: Int,
                     inputGradient: UnsafeMutablePointer<T>, ldg: Int, context: UnsafePointer<T>? = nil,
                     contextGradient: UnsafeMutablePointer<T>? = nil, arena: inout Arena) {
        reverse(t: t, z, ldz: ldz, rows: rows, outputCotangent: u, ldu: ldu, probes: probes, directions: k,
                traceWeights: traceWeights, kineticWeights: kineticWeights, jacobianWeights: jacobianWeights,
                primalOut: primalOut, ldp: ldp, inputGradient: inputGradient, ldg: ldg, accumulateInput: false,
                timeGradient: nil, context: context, contextGradient: contextGradient, arena: &arena)
    }

    /// The gradient of `w_r Σ_k v_{r,k}ᵀ J v_{r,k}` (the divergence: exact with `v = e_k`,
    /// Hutchinson with `v = ε`): ADDS `w_r ∂/∂z` into `inputGradient` (`rows × D`, stride `ldg`),
    /// `Σ_r w_r ∂/∂θ` into the parameter gradients and, when given, `w_r ∂/∂t` into
    /// `timeGradient[r]`. `probes`: `rows·k ×` ``inputWidth``, contiguous, direction `i` of row
    /// `r` at row `r·k + i`, context columns zero (the layout of
    /// ``evaluate(t:_:ldz:rows:into:ldo:tangents:directions:tangentOut:contextBias:scratch:)``).
    /// With a context: `context` (`rows × C`; nil: zeros), and `contextGradient` (when given)
    /// gets `w_r ∂/∂c_r` added.
    func traceGradient(t: T, _ z: UnsafePointer<T>, ldz: Int, rows: Int, probes: UnsafePointer<T>, directions k: Int,
                       weights w: UnsafePointer<T>, addingInto inputGradient: UnsafeMutablePointer<T>, ldg: Int,
                       timeGradient: UnsafeMutablePointer<T>?, context: UnsafePointer<T>? = nil,
                       contextGradient: UnsafeMutablePointer<T>? = nil, arena: inout Arena) {
        reverse(t: t, z, ldz: ldz, rows: rows, outputCotangent: nil, ldu: 0, probes: probes, directions: k,
                traceWeights: w, inputGradient: inputGradient, ldg: ldg, accumulateInput: true,
                timeGradient: timeGradient, context: context, contextGradient: contextGradient, arena: &arena)
    }

    /// The combined reverse pass of `L_r = u_rᵀ g + w_r Σ_k v_kᵀ J v_k` (see the extension's
    /// documentation); either term may be absent (`outputCotangent` nil, or `probes`/`traceWeights`
    /// nil with `k = 0`). `inputGradient` (`rows × D`, stride `ldg`) gets `∂L_r/∂z_r`, added when
    /// `accumulateInput`, else overwritten; parameter gradients, `timeGradient` and
    /// `contextGradient` (`rows × C`, contiguous: `∂L_r/∂c_r` at the `context` rows, nil: zeros)
    /// are always added to. `probes`: `rows·k ×` ``inputWidth`` with zero context columns.
    /// No allocation: scratch ``reverseWorkspaceBytes(rows:directions:)`` from `arena`.
    @_specialize(where T == Float) @_specialize(where T == Double)
    func reverse(t: T, _ z: UnsafePointer<T>, ldz: Int, rows: Int,
                 outputCotangent u: UnsafePointer<T>?, ldu: Int,
                 probes v: UnsafePointer<T>?, directions kIn: Int, traceWeights tw: UnsafePointer<T>?,
                 kineticWeights kw: UnsafePointer<T>? = nil, jacobianWeights jw: UnsafePointer<T>? = nil,
                 primalOut: UnsafeMutablePointer<T>? = nil, ldp: Int = 0,
                 inputGradient: UnsafeMutablePointer<T>?, ldg: Int, accumulateInput: Bool,
                 timeGradient: UnsafeMutablePointer<T>?, context: UnsafePointer<T>? = nil,
                 contextGradient: UnsafeMutablePointer<T>? = nil, arena: inout Arena) {
        guard rows > 0 else { return }
        let k = (v != nil && (tw != nil || jw != nil)) ? kIn : 0
        let nl = layerCount, d0 = dimension, tr = rows * k, mw = maxWidth
        let cf = contextFeatures, p0 = inputWidth
        let act = activation
        // The first layer's input: z in place, or [z, c] gathered (row stride p0 = D + C).
        var input0 = z, ld0 = ldz
        if cf > 0 {
            let gathered = arena.take(T.self, rows * p0)
            for r in 0..<rows {
                let dst = gathered + r * p0
                dst.update(from: z + r * ldz, count: d0)
                if let context { (dst + d0).update(from: context + r * cf, count: cf) } else { (dst + d0).update(repeating: 0, count: cf) }
            }
            input0 = UnsafePointer(gathered)
            ld0 = p0
        }
        let tape = arena.take(T.self, tapeScalars(rows: rows, directions: k))
        let ybar0 = arena.take(T.self, rows * mw), ybar1 = arena.take(T.self, rows * mw)
        let qbar0: UnsafeMutablePointer<T>? = k > 0 ? arena.take(T.self, tr * mw) : nil
        let qbar1: UnsafeMutablePointer<T>? = k > 0 ? arena.take(T.self, tr * mw) : nil
        let sbarSum = arena.take(T.self, mw)

        // ---- Forward: primal and tangent passes, recorded.
        for l in 0..<nl {
            let fin = fanIn(l), fout = widths[l + 1]
            let lt = layerTape(tape, l, rows: rows, directions: k)
            let gw = gateWeights[l].values, gb = gateBiases[l].values
            for j in 0..<fout { lt.s[j] = 1 / (1 + T.exp(-(gw[j] * t + gb[j]))) }
            let input: UnsafePointer<T> = l == 0 ? input0 : UnsafePointer(lt.h!)
            MatrixProducts.linear(input, ldx: l == 0 ? ld0 : fin, rows: rows, inFeatures: fin,
                                  weight: weights[l].pointer, bias: biases[l].pointer, outFeatures: fout, into: lt.p)
            if k > 0 {
                let qin: UnsafePointer<T> = l == 0 ? v! : UnsafePointer(lt.q!)
                MatrixProducts.linear(qin, ldx: fin, rows: tr, inFeatures: fin, weight: weights[l].pointer,
                                      bias: nil, outFeatures: fout, into: lt.P!)
            }
            if l < nl - 1 {
                let next = layerTape(tape, l + 1, rows: rows, directions: k)
                let dt = timeWeights[l].values
                for r in 0..<rows {
                    let p = lt.p + r * fout, h = next.h! + r * fout
                    for j in 0..<fout {
                        let y = p[j] * lt.s[j] + dt[j] * t
                        h[j] = y
                        if k > 0 {
                            let fp = act.derivative(y) * lt.s[j]
                            for i in 0..<k {
                                next.q![(r * k + i) * fout + j] = fp * lt.P![(r * k + i) * fout + j]
                            }
                        }
                    }
                }
                act.apply(next.h!, count: rows * fout)
            }
        }

        // ---- Seeds (and g itself when asked for).
        var ybar = ybar0, ybarNext = ybar1
        var qbar = qbar0, qbarNext = qbar1
        let dL = widths[nl]
        let last = layerTape(tape, nl - 1, rows: rows, directions: k)
        let lastShift = timeWeights[nl - 1].values
        for r in 0..<rows {
            let kinetic: T = 2 * (kw?[r] ?? 0)
            for j in 0..<dL {
                var seed = u?[r * ldu + j] ?? 0
                if primalOut != nil || kw != nil {
                    let g = last.p[r * dL + j] * last.s[j] + lastShift[j] * t
                    primalOut?[r * ldp + j] = g
                    seed += kinetic * g
                }
                ybar[r * dL + j] = seed
            }
            if k > 0 {
                let wr = tw?[r] ?? 0, jac: T = 2 * (jw?[r] ?? 0)
                for i in 0..<k {
                    let src = v! + (r * k + i) * p0, dst = qbar! + (r * k + i) * dL
                    let jv = last.P! + (r * k + i) * dL
                    for j in 0..<dL { dst[j] = wr * src[j] + jac * jv[j] * last.s[j] }
                }
            }
        }
        for l in stride(from: nl - 1, through: 0, by: -1) {
            let fin = fanIn(l), fout = widths[l + 1]
            let lt = layerTape(tape, l, rows: rows, directions: k)
            let a = gateWeights[l].values, dt = timeWeights[l].values
            let aGrad = gateWeights[l].gradient, cGrad = gateBiases[l].gradient, dGrad = timeWeights[l].gradient
            // Gate and time-shift terms; then ȳ → p̄ and Ȳ → P̄ in place.
            for j in 0..<fout { sbarSum[j] = 0 }
            for r in 0..<rows {
                let yb = ybar + r * fout, p = lt.p + r * fout
                var tbar: T = 0
                for j in 0..<fout {
                    var sb = yb[j] * p[j]
                    for i in 0..<k {
                        let o = (r * k + i) * fout + j
                        sb += qbar![o] * lt.P![o]
                        qbar![o] *= lt.s[j]
                    }
                    sbarSum[j] += sb
                    dGrad[j] += t * yb[j]
                    tbar += sb * lt.s[j] * (1 - lt.s[j]) * a[j] + yb[j] * dt[j]
                    yb[j] *= lt.s[j]
                }
                if let timeGradient { timeGradient[r] += tbar }
            }
            for j in 0..<fout {
                let sp = lt.s[j] * (1 - lt.s[j]) * sbarSum[j]
                aGrad[j] += t * sp
                cGrad[j] += sp
            }
            // Through the dense maps.
            let input: UnsafePointer<T> = l == 0 ? input0 : UnsafePointer(lt.h!)
            let wGrad = weights[l].gradient.baseAddress!
            MatrixProducts.linearBackward(input, ldx: l == 0 ? ld0 : fin, rows: rows, inFeatures: fin,
                                          weight: weights[l].pointer, outFeatures: fout, outputGradient: ybar,
                                          weightGradient: wGrad, biasGradient: biases[l].gradient.baseAddress!,
                                          inputGradient: ybarNext)
            if k > 0 {
                let qin: UnsafePointer<T> = l == 0 ? v! : UnsafePointer(lt.q!)
                MatrixProducts.linearBackward(qin, ldx: fin, rows: tr, inFeatures: fin, weight: weights[l].pointer,
                                              outFeatures: fout, outputGradient: qbar!, weightGradient: wGrad,
                                              biasGradient: nil, inputGradient: l == 0 ? nil : qbarNext)
            }
            if l > 0 {
                // Through h_l = f(y_{l−1}) and q_l = f′(y_{l−1}) ⊙ Y_{l−1}.
                let prev = layerTape(tape, l - 1, rows: rows, directions: k)
                let pdt = timeWeights[l - 1].values
                for r in 0..<rows {
                    let hb = ybarNext + r * fin, pp = prev.p + r * fin
                    for j in 0..<fin {
                        let y = pp[j] * prev.s[j] + pdt[j] * t
                        let (f1, f2) = Self.derivatives(act, y)
                        var acc = f1 * hb[j]
                        for i in 0..<k {
                            let o = (r * k + i) * fin + j
                            let qb = qbarNext![o]
                            acc += f2 * qb * prev.P![o] * prev.s[j]
                            qbarNext![o] = f1 * qb
                        }
                        hb[j] = acc
                    }
                }
                swap(&ybar, &ybarNext)
                swap(&qbar, &qbarNext)
            }
        }
        if let inputGradient {
            for r in 0..<rows {
                let src = ybarNext + r * p0, dst = inputGradient + r * ldg
                if accumulateInput {
                    for j in 0..<d0 { dst[j] += src[j] }
                } else {
                    for j in 0..<d0 { dst[j] = src[j] }
                }
            }
        }
        if cf > 0, let contextGradient {
            for r in 0..<rows {
                let src = ybarNext + r * p0 + d0, dst = contextGradient + r * cf
                for j in 0..<cf { dst[j] += src[j] }
            }
        }
    }

    /// `(f′(x), f″(x))` of the (smooth) activation.
    @inline(__always)
    static func derivatives(_ f: Activation, _ x: T) -> (T, T) {
        switch f {
        case .softplus:
            let s = 1 / (1 + T.exp(-x))
            return (s, s * (1 - s))
        case .tanh:
            let th = T.tanh(x), d = 1 - th * th
            return (d, -2 * th * d)
        default:
            // Not used by continuous flows (only tanh and softplus are accepted).
            return (f.derivative(x), 0)
        }
    }

    /// Scalars of the forward tape: per layer `l`, `h_l` and `q_l` (`l ≥ 1`), `p_l`, `P_l`, `s_l`,
    /// each slice padded to the arena's 64-byte alignment.
    private func tapeScalars(rows: Int, directions k: Int) -> Int {
        layerTapeOffset(layerCount, rows: rows, directions: k)
    }

    private func layerTapeBytes(_ l: Int, rows: Int, directions k: Int) -> Int {
        let fin = widths[l], fout = widths[l + 1]
        var bytes = Arena.bytes(T.self, rows * fout) + Arena.bytes(T.self, fout)
        if k > 0 { bytes += Arena.bytes(T.self, rows * k * fout) }
        if l > 0 {
            bytes += Arena.bytes(T.self, rows * fin)
            if k > 0 { bytes += Arena.bytes(T.self, rows * k * fin) }
        }
        return bytes
    }

    /// Offset (in scalars) of layer `l`'s slices in the tape.
    private func layerTapeOffset(_ l: Int, rows: Int, directions k: Int) -> Int {
        var bytes = 0
        for i in 0..<l { bytes += layerTapeBytes(i, rows: rows, directions: k) }
        return bytes / MemoryLayout<T>.stride
    }

    private struct LayerTape {
        var h, q: UnsafeMutablePointer<T>?
        var p: UnsafeMutablePointer<T>
        var P: UnsafeMutablePointer<T>?
        var s: UnsafeMutablePointer<T>
    }

    private func layerTape(_ tape: UnsafeMutablePointer<T>, _ l: Int, rows: Int, directions k: Int) -> LayerTape {
        let fin = widths[l], fout = widths[l + 1], stride = MemoryLayout<T>.stride
        var cursor = tape + layerTapeOffset(l, rows: rows, directions: k)
        var h: UnsafeMutablePointer<T>?, q: UnsafeMutablePointer<T>?, P: UnsafeMutablePointer<T>?
        if l > 0 {
            h = cursor
            cursor += Arena.bytes(T.self, rows * fin) / stride
            if k > 0 {
                q = cursor
                cursor += Arena.bytes(T.self, rows * k * fin) / stride
            }
        }
        let p = cursor
        cursor += Arena.bytes(T.self, rows * fout) / stride
        if k > 0 {
            P = cursor
            cursor += Arena.bytes(T.self, rows * k * fout) / stride
        }
        let s = cursor
        return LayerTape(h: h, q: q, p: p, P: P, s: s)
    }
}

/// The adjoint building blocks at the layer level: the same probes as the forward solve.
extension ContinuousFlow {
    /// Scratch of ``dynamicsVJP(t:_:ldz:rows:cotangent:ldu:into:ldg:timeGradient:context:contextGradient:arena:)`` and
    /// ``divergenceGradient(t:_:ldz:rows:rowOffset:weights:addingInto:ldg:timeGradient:context:contextGradient:arena:)``
    /// over `rows` rows (the probes of this layer's trace mode plus the network's tape).
    func reverseWorkspaceBytes(rows: Int) -> Int {
        let d = dimension, k = directions
        return Arena.bytes(Scalar.self, rows * k * net.inputWidth) + Arena.bytes(Double.self, d)
            + net.reverseWorkspaceBytes(rows: rows, directions: k)
    }

    /// Writes the trace directions of `rows` rows into `v` (`rows·k × (D + C)`, the layout of
    /// ``ODENet/inputWidth``, context columns zero): the unit vectors (exact) or the fixed
    /// Hutchinson probe `ε` of probe row `rowOffset + r` (plus ``probeDraw``·2⁴⁰) — Philox stream
    /// ``RandomStream/probes`` keyed by `probe_seed`. The forward solve (`makeDynamics`) and the
    /// reverse pass both draw their probes here, so they always agree. `uniforms`:
    /// `D` doubles of scratch (Rademacher).
    func fillProbes(_ v: UnsafeMutablePointer<Scalar>, rows: Int, rowOffset: Int,
                    uniforms: UnsafeMutablePointer<Double>) {
        let d = dimension, width = net.inputWidth
        switch traceMode {
        case .exact:
            v.initialize(repeating: 0, count: rows * d * width)
            for r in 0..<rows { for i in 0..<d { v[(r * d + i) * width + i] = 1 } }
        case .hutchinson:
            let philox = Philox4x32(seed: UInt64(bitPattern: Int64(probeSeed)))
            for r in 0..<rows {
                let row = UInt64(rowOffset + r) &+ probeDraw << 40
                let vr = v + r * width
                switch probe {
                case .gaussian:
                    philox.fillNormal(vr, count: d, row: row, stream: RandomStream.probes)
                case .rademacher:
                    philox.fillUniform(uniforms, count: d, row: row, stream: RandomStream.probes)
                    for j in 0..<d { vr[j] = uniforms[j] < 0.5 ? -1 : 1 }
                }
                (vr + d).initialize(repeating: 0, count: width - d)
            }
        }
    }

    /// `out = uᵀ ∂g/∂z` (overwritten, stride `ldg`); adds `Σ_r u_rᵀ ∂g/∂θ` to the parameter
    /// gradients and, when given, `u_rᵀ ∂g/∂t` to `timeGradient[r]` and `u_rᵀ ∂g/∂c_r` to
    /// `contextGradient` (`rows × C`) at the `context` rows (nil: zeros). See
    /// ``ODENet/vjp(t:_:ldz:rows:cotangent:ldu:inputGradient:ldg:timeGradient:context:contextGradient:arena:)``.
    func dynamicsVJP(t: Scalar, _ z: UnsafePointer<Scalar>, ldz: Int, rows: Int, cotangent u: UnsafePointer<Scalar>,
                     ldu: Int, into out: UnsafeMutablePointer<Scalar>, ldg: Int,
                     timeGradient: UnsafeMutablePointer<Scalar>?, context: UnsafePointer<Scalar>? = nil,
                     contextGradient: UnsafeMutablePointer<Scalar>? = nil, arena: inout Arena) {
        net.vjp(t: t, z, ldz: ldz, rows: rows, cotangent: u, ldu: ldu, inputGradient: out, ldg: ldg,
                timeGradient: timeGradient, context: context, contextGradient: contextGradient, arena: &arena)
    }

    /// The gradient of this layer's divergence term `w_r · tr_r(z, t)` (exact trace, or the
    /// Hutchinson estimate `ε_rᵀ J ε_r` with the forward solve's fixed probe of row
    /// `rowOffset + r`): ADDS `w_r ∂tr_r/∂z_r` into `out` (stride `ldg`), `Σ_r w_r ∂tr_r/∂θ` into
    /// the parameter gradients and, when given, `w_r ∂tr_r/∂t` into `timeGradient[r]` and
    /// `w_r ∂tr_r/∂c_r` into `contextGradient` (`rows × C`) at the `context` rows (nil: zeros).
    func divergenceGradient(t: Scalar, _ z: UnsafePointer<Scalar>, ldz: Int, rows: Int, rowOffset: Int,
                            weights w: UnsafePointer<Scalar>, addingInto out: UnsafeMutablePointer<Scalar>, ldg: Int,
                            timeGradient: UnsafeMutablePointer<Scalar>?, context: UnsafePointer<Scalar>? = nil,
                            contextGradient: UnsafeMutablePointer<Scalar>? = nil, arena: inout Arena) {
        let d = dimension, k = directions
        var local = arena
        let v = local.take(Scalar.self, rows * k * net.inputWidth)
        let uniforms = local.take(Double.self, d)
        fillProbes(v, rows: rows, rowOffset: rowOffset, uniforms: uniforms)
        net.traceGradient(t: t, z, ldz: ldz, rows: rows, probes: v, directions: k, weights: w, addingInto: out,
                          ldg: ldg, timeGradient: timeGradient, context: context, contextGradient: contextGradient,
                          arena: &local)
    }
}
