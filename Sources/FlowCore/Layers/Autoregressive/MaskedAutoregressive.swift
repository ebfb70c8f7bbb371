/// A masked autoregressive layer: a MADE network (Germain et al., ICML 2015; ``AutoregressiveOrder``)
/// computes each feature's transform parameters from the features before it in an order, and an
/// element-wise transform maps the feature (Papamakarios et al., "Masked Autoregressive Flow for
/// Density Estimation", NeurIPS 2017; Kingma et al., "Improved Variational Inference with
/// Inverse Autoregressive Flow", NeurIPS 2016; Durkan et al., "Neural Spline Flows", 2019).
///
/// With `P(u)_i = τ(u_i; θ_i(u_{<i}))` (one network pass; `log|det ∂P/∂u| = Σ log τ′`) and its
/// inverse `P⁻¹` (D passes, one feature each, in the order):
///
///     direction "maf":  forward (data → latent) = P,    inverse = P⁻¹   (density in one pass)
///     direction "iaf":  forward = P⁻¹,                  inverse = P     (sampling in one pass)
///
/// The network's last layer starts at zero and every transform is the identity at zero
/// parameters, so a new layer is the identity. The output columns follow the transform's layout
/// (``ElementwiseTransform/outputFeature(_:features:)``), as in a coupling over all features.
///
/// Training through `P⁻¹` (an IAF's forward map) uses the implicit-function gradient: with
/// `z = P⁻¹(x)`, `∂L/∂x = J_P(z)⁻ᵀ·(∂L/∂z − w·∇S(z))` (`S = log|det J_P|`, `w = ∂L/∂logDet`),
/// solved exactly by D Jacobi sweeps over the triangular `J_Pᵀ` (one vector-Jacobian product
/// through the network each), then one product for the parameters.
///
/// With ``contextFeatures`` `C > 0`, the network reads `[x, c]`; the context inputs have degree
/// 0, so every unit of the first hidden layer (every output, without hidden layers) sees them,
/// as in zuko's and nflows' MADE.
///
/// With `residual_blocks` N ≥ 1 the network is nflows' residual MADE (``ResidualMADE``): a
/// masked layer to the width `H` (every entry of `hidden` must be `H`), N residual blocks of
/// two masked `H → H` layers, and a masked output layer; the context, when there is one, is
/// added at the first layer (through the activation) and inside every block, as in nflows.
/// Every hidden unit has one degree (`hidden_degrees` holds `H` of them). N = 0 is the plain
/// masked MLP, unchanged.
///
/// - Complexity: `P`: one network pass; `P⁻¹`: D passes; `P⁻¹`'s backward pass: D + 2
///   vector-Jacobian products.
public final class MaskedAutoregressive<Transform: AutoregressiveTransform>: ConditionalLayer, TapedBackward {
    public typealias Scalar = Transform.Scalar

    /// Which map is the layer's forward (data → latent) pass.
    public enum Direction: String, CaseIterable, Sendable {
        /// Masked autoregressive flow: forward in one pass, inverse (sampling) in D passes.
        case maf
        /// Inverse autoregressive flow: inverse (sampling) in one pass, forward (density) in D.
        case iaf
    }

    public static var typeName: String { Transform.autoregressiveTypeName }
    public static var hyperParameters: [HyperParameter] {
        [
            HyperParameter("order", .intArray, shorthand: true,
                           "each feature's position in the autoregressive order (a permutation of 0..<D); "
                               + "or \"natural\" (default), \"reversed\" or \"random\""),
            .hidden(of: "MADE"),
            HyperParameter("hidden_degrees", .intArray,
                           "degree of every hidden unit, layer after layer, in 0..<D (default: k mod max(1, D−1) + min(1, D−1))"),
            .activation(of: "MADE"),
            HyperParameter("residual_blocks", .int,
                           "nflows' residual blocks (default 0: a plain masked MLP); with N ≥ 1, every hidden width must be the same H, "
                               + "and hidden_degrees gives H degrees"),
            HyperParameter("direction", .string, "\"maf\" (default: density in one pass) or \"iaf\" (sampling in one pass)"),
            .contextFeatures,
        ] + Transform.hyperParameters
    }

    public let inputShape: [Int]
    public var outputShape: [Int] { inputShape }
    let structure: AutoregressiveOrder
    let direction: Direction
    /// The masked network: plain, with its ``SequentialPlan``, or residual.
    let net: MADENetwork<Scalar>
    /// The push form of a plain MADE's sequential pass, when its shape favours it
    /// (``pushes(hidden:dimension:)``).
    let pushPlan: SequentialPushPlan<Scalar>?
    let transform: Transform
    /// All features, `0..<D`.
    let features: FeatureIndices
    /// Per feature, the network output columns that drive it (ascending): one feature's
    /// parameters in the transform's one-feature layout.
    let featureColumns: [[Int]]
    /// Features in the autoregressive order.
    let orderedFeatures: [Int]
    public let contextFeatures: Int
    /// One feature at index 0 (a pass of ``sequentialInverse``).
    let singleFeature = FeatureIndices(one: 0)

    public init(config: [String: JSONValue], eventShape: [Int], seed: UInt64) throws {
        let context = Self.typeName
        let d = eventShape.reduce(1, *)
        let (widths, activation) = try MLP<Scalar>.settings(config, context: context)
        let contextFeatures = try config.contextFeatures(context: context)
        self.contextFeatures = contextFeatures
        let blocks = try Self.residualBlocks(config, hidden: widths, context: context)
        // The residual MADE's units all have one width and one degree each: one hidden layer's worth.
        let hidden = blocks > 0 ? [widths[0]] : widths
        structure = try AutoregressiveOrder(order: config["order"], hiddenDegrees: config["hidden_degrees"]?.intArrayValue,
                                            hidden: hidden, dimension: d, contextFeatures: contextFeatures, seed: seed,
                                            context: context)
        let name = config.string("direction", default: Direction.maf.rawValue)
        guard let direction = Direction(rawValue: name) else {
            throw FlowError.invalidSpec("\(context): direction must be \"maf\" or \"iaf\", got \"\(name)\"")
        }
        self.direction = direction
        let transform = try Transform(config: config, context: context)
        self.transform = transform
        let (outputs, overflow) = d.multipliedReportingOverflow(by: transform.parametersPerFeature)
        guard !overflow, outputs <= Limits.maxParametersPerLayer else {
            throw FlowError.limitExceeded("\(context): \(d) features × \(transform.parametersPerFeature) parameters each is too many outputs")
        }
        // Checked and charged before the masks are built (they hold one value per weight).
        let weights = blocks > 0
            ? try ResidualMADE<Scalar>.checkedSize(features: d, contextFeatures: contextFeatures, width: hidden[0],
                                                   blocks: blocks, outputs: outputs, context: context)
            : try MLP<Scalar>.checkedSize(widths: [d + contextFeatures] + hidden + [outputs], context: context)
        try MemoryBudget.charge(try MemoryBudget.bytes(Scalar.self, weights, context), "\(context): the masks of its network")
        try MemoryBudget.requireAvailable(weights * MemoryLayout<Scalar>.stride, "\(context): the masks of its network")
        let structure = self.structure
        // The residual MADE's first layer reads the features only (its context layers are apart).
        let masks: [[Scalar]] = structure.masks(contextSize: blocks > 0 ? 0 : contextFeatures, outputs: outputs) {
            transform.outputFeature($0, features: d)
        }
        var columns = [[Int]](repeating: [], count: d)
        for c in 0..<outputs { columns[transform.outputFeature(c, features: d)].append(c) }
        if blocks > 0 {
            pushPlan = nil
            net = .residual(try ResidualMADE(features: d, contextFeatures: contextFeatures, width: hidden[0], blocks: blocks,
                                         outputs: outputs, activation: activation,
                                         masks: (masks[0], structure.residualMask(), masks[1]), structure: structure,
                                         featureColumns: columns, seed: seed))
        } else {
            let mlp = try MLP.checked(widths: [d + contextFeatures] + hidden + [outputs], activation: activation, seed: seed,
                                      context: context, masks: masks)
            net = .plain(mlp, try SequentialPlan(net: mlp, structure: structure, featureColumns: columns))
            pushPlan = Self.pushes(hidden: hidden, dimension: d)
                ? try SequentialPushPlan(net: mlp, structure: structure, featureColumns: columns) : nil
        }
        features = FeatureIndices(Array(0..<d))
        featureColumns = columns
        orderedFeatures = (0..<d).sorted { structure.order[$0] < structure.order[$1] }
        inputShape = eventShape
    }

    /// A validated `residual_blocks` (0 when absent); with N ≥ 1, `hidden` must hold one width,
    /// possibly repeated.
    /// - Throws: ``FlowError/invalidSpec(_:)``.
    private static func residualBlocks(_ config: [String: JSONValue], hidden: [Int], context: String) throws -> Int {
        guard let value = config["residual_blocks"] else { return 0 }
        guard let blocks = value.intValue, blocks >= 0, blocks <= Limits.maxResidualBlocks else {
            throw FlowError.invalidSpec("\(context): residual_blocks must be an integer in 0...\(Limits.maxResidualBlocks), got \(value)")
        }
        guard blocks > 0 else { return 0 }
        guard let width = hidden.first else {
            throw FlowError.invalidSpec("\(context): residual_blocks needs a hidden width (hidden = [H])")
        }
        guard hidden.allSatisfy({ $0 == width }) else {
            throw FlowError.invalidSpec("\(context): residual blocks need equal hidden widths (nflows' residual MADE has one width H), got \(hidden)")
        }
        return blocks
    }

    public var config: [String: JSONValue] {
        var c = transform.config
        c["type"] = .string(Self.typeName)
        c["order"] = JSONValue(structure.order)
        c["hidden"] = JSONValue(net.hidden)
        c["hidden_degrees"] = JSONValue(structure.hiddenDegrees.flatMap { $0 })
        c["activation"] = .string(net.activation.rawValue)
        // Only when present, so plain MADE layers keep their specs and files.
        if net.residualBlocks > 0 { c["residual_blocks"] = .number(Double(net.residualBlocks)) }
        c["direction"] = .string(direction.rawValue)
        c["context_features"] = .number(Double(contextFeatures))
        return c
    }

    public var parameters: [Parameter<Scalar>] { net.parameters }

    /// Zeroes the masked weights and refreshes the network's packed weights and sequential plan.
    public func parametersDidChange() {
        net.repack()
        if let pushPlan, let mlp = net.mlp { pushPlan.refresh(from: mlp) }
    }

    var dimension: Int { features.count }

    public func workspaceBytes(count: Int) -> Int {
        // P: the network input and output; P⁻¹: the dot plan's hidden activations or the push
        // plan's running sums, one feature's parameters and values (or the residual plan's work).
        inputBytes(rows: count) + Arena.bytes(Scalar.self, count * net.outFeatures) + net.workspaceBytes(rows: count)
            + transform.scratchBytes + Arena.bytes(Scalar.self, count * transform.parametersPerFeature)
            + Arena.bytes(Scalar.self, count) + net.sequentialWorkspaceBytes(rows: count, blockRows: Self.sequentialBlockRows)
            + (pushPlan?.workspaceBytes(rows: count) ?? 0)
    }

    /// Scratch of ``networkInput(_:context:rows:arena:)``.
    private func inputBytes(rows: Int) -> Int {
        contextFeatures > 0 ? Arena.bytes(Scalar.self, rows * net.inFeatures) : 0
    }

    /// The network's input rows `[u, c]` as (the gathered copy or nil, pointer, row stride): `u`
    /// itself without a context, else `u` and the context (zeros for nil) gathered into the arena.
    @inline(__always)
    func networkInput(_ u: UnsafePointer<Scalar>, context: UnsafePointer<Scalar>?, rows: Int,
                      arena: inout Arena) -> (UnsafeMutablePointer<Scalar>?, UnsafePointer<Scalar>, Int) {
        let c = contextFeatures, d = dimension
        guard c > 0 else { return (nil, u, d) }
        let w = d + c
        let buffer = arena.take(Scalar.self, rows * w)
        for r in 0..<rows {
            (buffer + r * w).update(from: u + r * d, count: d)
            if let context { (buffer + r * w + d).update(from: context + r * c, count: c) } else {
                (buffer + r * w + d).update(repeating: 0, count: c)
            }
        }
        return (buffer, UnsafePointer(buffer), w)
    }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        forward(x, count: count, context: nil, logDet: logDet, arena: &arena)
    }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        switch direction {
        case .maf: parallel(x, count: count, context: context, logDet: logDet, arena: &arena)
        case .iaf: sequentialInverse(x, count: count, context: context, logDet: logDet, arena: &arena)
        }
    }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        switch direction {
        case .maf: sequentialInverse(z, count: count, context: context, logDet: logDet, arena: &arena)
        case .iaf: parallel(z, count: count, context: context, logDet: logDet, arena: &arena)
        }
    }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func inverse(_ z: UnsafeMutablePointer<Scalar>, count: Int,
                        logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        inverse(z, count: count, context: nil, logDet: logDet, arena: &arena)
    }

    /// `u ← P(u)`, adding `log|det ∂P/∂u|`: one network pass over `u`, then the transform.
    @inline(__always)
    private func parallel(_ u: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                          logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let (_, input, ld) = networkInput(UnsafePointer(u), context: context, rows: count, arena: &arena)
        let theta = arena.take(Scalar.self, count * net.outFeatures)
        net(input, ldx: ld, rows: count, into: theta, arena: &arena)
        transform.apply(u, ldx: dimension, features: features, parameters: theta, ldp: net.outFeatures, rows: count,
                        logDet: logDet, inverse: false, arena: &arena)
    }

    /// `v ← P⁻¹(v)`, adding `−log|det ∂P/∂u|` at the result: D passes in the order, pass `k`
    /// computing the hidden units of degree `k` and then the feature at position `k` from the
    /// features before it — one network pass of work in all. A plain MADE with at least
    /// ``pushUnitsPerDegree`` hidden units per degree pushes (``SequentialPushPlan``: a few
    /// sources into many targets per product), a narrower one pulls by dot products
    /// (``SequentialPlan``, which keeps the products wide when each degree has one or two
    /// units, e.g. D = 64 with 64 hidden units); the choice depends on the shape only, so a row's
    /// result never depends on the row count. A residual MADE runs
    /// ``residualSequentialInverse(_:count:context:made:logDet:arena:)``.
    private func sequentialInverse(_ v: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                                   logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        switch self.net {
        case .plain(let mlp, let plan):
            if let pushPlan {
                pushSequentialInverse(v, count: count, context: context, net: mlp, plan: pushPlan, logDet: logDet, arena: &arena)
            } else {
                dotSequentialInverse(v, count: count, context: context, net: mlp, plan: plan, logDet: logDet, arena: &arena)
            }
        case .residual(let made):
            residualSequentialInverse(v, count: count, context: context, made: made, logDet: logDet, arena: &arena)
        }
    }

    /// Hidden units per degree (the narrowest hidden layer's width over `D − 1`) from which a
    /// plain MADE's sequential pass pushes.
    static var pushUnitsPerDegree: Int { 4 }

    /// Whether a plain MADE of hidden widths `hidden` over `d` features pushes.
    static func pushes(hidden: [Int], dimension d: Int) -> Bool {
        guard let narrowest = hidden.min() else { return true }
        return narrowest >= pushUnitsPerDegree * Swift.max(d - 1, 1)
    }

    /// ``sequentialInverse(_:count:context:logDet:arena:)`` by pushes (``SequentialPushPlan``).
    private func pushSequentialInverse(_ v: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                                       net: MLP<Scalar>, plan: SequentialPushPlan<Scalar>,
                                       logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let d = dimension, stride = plan.totalTargets
        let blockRows = Swift.min(Self.sequentialBlockRows, count)
        let sums = arena.take(Scalar.self, blockRows * stride)
        let column = arena.take(Scalar.self, blockRows)
        for first in Swift.stride(from: 0, to: count, by: blockRows) {
            let rows = Swift.min(blockRows, count - first)
            plan.begin(sums, rows: rows, context: context.map { $0 + first * contextFeatures })
            for (k, f) in orderedFeatures.enumerated() {
                plan.completeHidden(degree: k, sums, rows: rows, activation: net.activation)
                for r in 0..<rows { column[r] = v[(first + r) * d + f] }
                var scratch = arena  // the transform's scratch, released after every pass
                transform.apply(column, ldx: 1, features: singleFeature, parameters: plan.parameters(position: k, sums),
                                ldp: stride, rows: rows, logDet: logDet + first, inverse: true, arena: &scratch)
                for r in 0..<rows { v[(first + r) * d + f] = column[r] }
                plan.pushInput(position: k, column, ldv: 1, sums, rows: rows)
            }
        }
    }

    /// ``sequentialInverse(_:count:context:logDet:arena:)`` by dot products: pass `k` computes
    /// the hidden units of degree `k` from the layer below, then the feature's outputs
    /// (``SequentialPlan``).
    private func dotSequentialInverse(_ v: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                                      net: MLP<Scalar>, plan: SequentialPlan<Scalar>,
                                      logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let d = dimension, p = transform.parametersPerFeature
        // The network's input [u, c]: v itself, or a copy with the context; positions not yet
        // computed still hold v's values, which the masks keep from the outputs that need them.
        let (gathered, input, width) = networkInput(UnsafePointer(v), context: context, rows: count, arena: &arena)
        // Hidden layer l's activations (all rows, its units in sorted order) at hidden + count·offsets[l].
        let widths = plan.widths, offsets = plan.layerOffsets, layers = widths.count - 2
        let hidden = arena.take(Scalar.self, count * plan.hiddenUnits)
        hidden.update(repeating: 0, count: count * plan.hiddenUnits)
        let theta = arena.take(Scalar.self, count * p)
        let column = arena.take(Scalar.self, count)
        let relu = net.activation == .relu
        // Blocks of rows small enough that their activations stay in L1 across the D passes
        // (each pass reads every hidden activation of the block for only a few outputs).
        let blockRows = Self.sequentialBlockRows
        for first in stride(from: 0, to: count, by: blockRows) {
            let rows = Swift.min(blockRows, count - first)
            for (k, f) in orderedFeatures.enumerated() {
                for l in 0..<layers {
                    let n = plan.blockCounts[l * d + k]
                    guard n > 0 else { continue }
                    let (x, ldx): (UnsafePointer<Scalar>, Int) = l == 0 ? (UnsafePointer(input + first * width), width)
                        : (UnsafePointer(hidden + count * offsets[l - 1] + first * widths[l]), widths[l])
                    let out = hidden + count * offsets[l] + first * widths[l + 1] + plan.blockStarts[l * d + k]
                    let block = plan.hiddenBlock(l, k)
                    Scalar.denseLayer(x, ldx: ldx, rows: rows, inFeatures: widths[l], packedWeight: block.weights,
                                      bias: block.biases, outFeatures: n, into: out, ldy: widths[l + 1], relu: relu,
                                      weight: block.rows)
                    if !relu {
                        for r in 0..<rows { net.activation.apply(out + r * widths[l + 1], count: n) }
                    }
                }
                let (x, ldx): (UnsafePointer<Scalar>, Int) = layers == 0 ? (UnsafePointer(input + first * width), width)
                    : (UnsafePointer(hidden + count * offsets[layers - 1] + first * widths[layers]), widths[layers])
                let block = plan.outputBlock(f)
                let blockTheta = theta + first * p, blockColumn = column + first
                Scalar.denseLayer(x, ldx: ldx, rows: rows, inFeatures: widths[layers], packedWeight: block.weights,
                                  bias: block.biases, outFeatures: p, into: blockTheta, ldy: p, relu: false,
                                  weight: block.rows)
                for r in 0..<rows { blockColumn[r] = v[(first + r) * d + f] }
                var scratch = arena  // the transform's scratch, released after every pass
                transform.apply(blockColumn, ldx: 1, features: singleFeature, parameters: blockTheta, ldp: p, rows: rows,
                                logDet: logDet + first, inverse: true, arena: &scratch)
                for r in 0..<rows {
                    v[(first + r) * d + f] = blockColumn[r]
                    gathered?[(first + r) * width + f] = blockColumn[r]
                }
            }
        }
    }

    /// Rows per block of ``sequentialInverse(_:count:context:logDet:arena:)``.
    /// Rows per block of the sequential passes (plain and residual).
    static var sequentialBlockRows: Int { 32 }

    /// Tape of a training pass through `P` (direction "maf"): the network output, then its
    /// hidden activations; 0 for "iaf", whose backward pass recomputes.
    public func tapeBytes(count: Int) -> Int { direction == .maf ? net.couplingTapeBytes(rows: count) : 0 }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, logDet: UnsafeMutablePointer<Double>,
                        tape: UnsafeMutableRawPointer, arena: inout Arena) {
        forward(x, count: count, context: nil, logDet: logDet, tape: tape, arena: &arena)
    }

    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func forward(_ x: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                        logDet: UnsafeMutablePointer<Double>, tape: UnsafeMutableRawPointer, arena: inout Arena) {
        guard direction == .maf else { return forward(x, count: count, context: context, logDet: logDet, arena: &arena) }
        let (_, input, ld) = networkInput(UnsafePointer(x), context: context, rows: count, arena: &arena)
        let theta = net.forwardRecording(input, ldx: ld, rows: count, couplingTape: tape)
        transform.apply(x, ldx: dimension, features: features, parameters: theta, ldp: net.outFeatures, rows: count,
                        logDet: logDet, inverse: false, arena: &arena)
    }
}

extension MaskedAutoregressive {
    public func backwardWorkspaceBytes(count: Int) -> Int {
        let d = dimension, rowsD = Arena.bytes(Scalar.self, count * d)
        let rowsIn = Arena.bytes(Scalar.self, count * net.inFeatures)
        let outBytes = Arena.bytes(Scalar.self, count * net.outFeatures)
        let tapeBytes = Arena.bytes(Scalar.self, net.tapeCount(rows: count))
        let base = inputBytes(rows: count) + outBytes + tapeBytes + rowsIn + net.backwardWorkspaceBytes(rows: count)
            + transform.scratchBytes
        guard direction == .iaf else { return base }
        // z, the network's input, output and tape, w's negation, zeros, r, the diagonal, λ, the
        // sweep's product; then the largest of a vector-Jacobian product, the diagonal's θ copy
        // and the sequential pass.
        let vjp = outBytes + rowsIn + transform.scratchBytes + net.backwardWorkspaceBytes(rows: count)
        let sequential = Arena.bytes(Double.self, count) + workspaceBytes(count: count)
        return 5 * rowsD + inputBytes(rows: count) + outBytes + tapeBytes + 2 * Arena.bytes(Scalar.self, count)
            + Swift.max(vjp, outBytes + transform.scratchBytes, sequential)
    }

    /// `uᵀ·J_P(u₀) + v·∇S(u₀)` into `g` (and, with `parameterGradients`, `uᵀ∂P/∂φ + v·∂S/∂φ` added
    /// to the network's gradients and, with `contextGradient`, the same product's context
    /// columns added there), for `P` at the point `u₀` whose network input, output and tape are
    /// `input`, `theta`, `tape` (`theta` is left intact). `g` holds `u` on entry.
    private func vectorJacobianProduct(at u0: UnsafePointer<Scalar>, input: UnsafePointer<Scalar>, ldInput: Int,
                                       theta: UnsafePointer<Scalar>, tape: UnsafePointer<Scalar>, count: Int,
                                       gradient g: UnsafeMutablePointer<Scalar>, logDetGradient w: UnsafePointer<Scalar>,
                                       parameterGradients: Bool, contextGradient: UnsafeMutablePointer<Scalar>?,
                                       arena: inout Arena) {
        let d = dimension, out = net.outFeatures
        let dTheta = arena.take(Scalar.self, count * out)
        dTheta.update(from: theta, count: count * out)
        transform.backward(input: u0, ldx: d, features: features, parameters: dTheta, ldp: out, gradient: g, ldg: d,
                           rows: count, logDetGradient: w, arena: &arena)
        let dInput = arena.take(Scalar.self, count * net.inFeatures)
        net.backward(input, ldx: ldInput, rows: count, tape: tape, outputGradient: dTheta, inputGradient: dInput,
                     parameterGradients: parameterGradients, arena: &arena)
        addInputGradient(dInput, rows: count, gradient: g, contextGradient: contextGradient)
    }

    /// `g += ∂L/∂u` and `contextGradient += ∂L/∂c` from the network's input gradient `[∂u, ∂c]`.
    @inline(__always)
    private func addInputGradient(_ dInput: UnsafePointer<Scalar>, rows: Int, gradient g: UnsafeMutablePointer<Scalar>,
                                  contextGradient: UnsafeMutablePointer<Scalar>?) {
        let d = dimension, c = contextFeatures, w = d + c
        for r in 0..<rows {
            let src = dInput + r * w, gr = g + r * d
            for j in 0..<d { gr[j] += src[j] }
            if c > 0, let contextGradient {
                let dc = contextGradient + r * c
                for j in 0..<c { dc[j] += src[d + j] }
            }
        }
    }

    func backward(input x: UnsafePointer<Scalar>, count: Int, gradient g: UnsafeMutablePointer<Scalar>,
                  logDetGradient w: UnsafePointer<Scalar>, recorded: UnsafeRawPointer?, arena: inout Arena) {
        backward(input: x, count: count, context: nil, gradient: g, logDetGradient: w, contextGradient: nil,
                 recorded: recorded, arena: &arena)
    }

    /// "maf": through the transform, then the network (as a coupling over all features).
    /// "iaf": the implicit-function gradient of the type's documentation; the context's gradient
    /// is, like the parameters', `−λᵀ∂P/∂c − w·∂S/∂c`.
    @_specialize(where Transform == AffineTransform<Float>) @_specialize(where Transform == RationalQuadraticTransform<Float>)
    public func backward(input x: UnsafePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                         gradient g: UnsafeMutablePointer<Scalar>, logDetGradient w: UnsafePointer<Scalar>,
                         contextGradient: UnsafeMutablePointer<Scalar>?, recorded: UnsafeRawPointer?, arena: inout Arena) {
        let d = dimension, out = net.outFeatures
        guard direction == .iaf else {
            let (_, input, ld) = networkInput(x, context: context, rows: count, arena: &arena)
            let (theta, tape) = net.couplingTape(recorded, input: input, ldx: ld, rows: count, arena: &arena)
            transform.backward(input: x, ldx: d, features: features, parameters: theta, ldp: out, gradient: g, ldg: d,
                               rows: count, logDetGradient: w, arena: &arena)
            let dInput = arena.take(Scalar.self, count * net.inFeatures)
            net.backward(input, ldx: ld, rows: count, tape: tape, outputGradient: theta, inputGradient: dInput, arena: &arena)
            addInputGradient(dInput, rows: count, gradient: g, contextGradient: contextGradient)
            return
        }
        // z = P⁻¹(x) and the network at [z, c].
        let z = arena.take(Scalar.self, count * d)
        z.update(from: x, count: count * d)
        do {
            var scratch = arena
            let ignored = scratch.take(Double.self, count)
            ignored.update(repeating: 0, count: count)
            sequentialInverse(z, count: count, context: context, logDet: ignored, arena: &scratch)
        }
        let (_, input, ld) = networkInput(UnsafePointer(z), context: context, rows: count, arena: &arena)
        let (theta, tape) = net.couplingTape(nil, input: input, ldx: ld, rows: count, arena: &arena)
        let zero = arena.take(Scalar.self, count)
        zero.update(repeating: 0, count: count)
        let negW = arena.take(Scalar.self, count)
        for r in 0..<count { negW[r] = -w[r] }
        // r = ∂L/∂z − w·∇S(z).
        let rhs = arena.take(Scalar.self, count * d)
        rhs.update(repeating: 0, count: count * d)
        var mark = arena
        vectorJacobianProduct(at: z, input: input, ldInput: ld, theta: theta, tape: tape, count: count, gradient: rhs,
                              logDetGradient: negW, parameterGradients: false, contextGradient: nil, arena: &mark)
        for i in 0..<(count * d) { rhs[i] += g[i] }
        // The diagonal τ′(z_i; θ_i).
        let diagonal = arena.take(Scalar.self, count * d)
        diagonal.update(repeating: 1, count: count * d)
        do {
            var scratch = arena
            let thetaCopy = scratch.take(Scalar.self, count * out)
            thetaCopy.update(from: theta, count: count * out)
            transform.backward(input: z, ldx: d, features: features, parameters: thetaCopy, ldp: out, gradient: diagonal,
                               ldg: d, rows: count, logDetGradient: zero, arena: &scratch)
        }
        // Jacobi sweeps on J_Pᵀλ = r: λ ← λ + (r − J_Pᵀλ)/τ′. J_P is triangular in the order,
        // so after sweep k the k last features in the order are exact: D sweeps solve it.
        let lambda = arena.take(Scalar.self, count * d)
        for i in 0..<(count * d) { lambda[i] = rhs[i] / diagonal[i] }
        let product = arena.take(Scalar.self, count * d)
        for _ in 1..<Swift.max(d, 1) {
            product.update(from: lambda, count: count * d)
            mark = arena
            vectorJacobianProduct(at: z, input: input, ldInput: ld, theta: theta, tape: tape, count: count,
                                  gradient: product, logDetGradient: zero, parameterGradients: false, contextGradient: nil,
                                  arena: &mark)
            for i in 0..<(count * d) { lambda[i] += (rhs[i] - product[i]) / diagonal[i] }
        }
        // Parameters and context: −λᵀ∂P/∂(φ, c) − w·∂S/∂(φ, c).
        for i in 0..<(count * d) { product[i] = -lambda[i] }
        mark = arena
        vectorJacobianProduct(at: z, input: input, ldInput: ld, theta: theta, tape: tape, count: count, gradient: product,
                              logDetGradient: negW, parameterGradients: true, contextGradient: contextGradient, arena: &mark)
        g.update(from: lambda, count: count * d)
    }
}

/// MAF / IAF with affine transforms: type `"affine_autoregressive"`.
public typealias AffineAutoregressive<Scalar: FlowScalar> = MaskedAutoregressive<AffineTransform<Scalar>>
/// Autoregressive rational-quadratic splines: type `"spline_autoregressive"`.
public typealias SplineAutoregressive<Scalar: FlowScalar> = MaskedAutoregressive<RationalQuadraticTransform<Scalar>>
