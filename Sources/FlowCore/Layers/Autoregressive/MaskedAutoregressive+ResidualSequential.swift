extension MaskedAutoregressive {
    /// ``sequentialInverse(_:count:context:logDet:arena:)`` with a residual MADE: `v ← P⁻¹(v)`,
    /// adding `−log|det ∂P/∂u|` at the result, in blocks of rows; per block the context terms
    /// once, then `D` passes in the order, pass `k` computing the units of degree `k` and the
    /// feature at position `k` (``ResidualSequentialPlan``: at most one network pass of work).
    func residualSequentialInverse(_ v: UnsafeMutablePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>?,
                                   made: ResidualMADE<Scalar>, logDet: UnsafeMutablePointer<Double>, arena: inout Arena) {
        let d = dimension, p = transform.parametersPerFeature, plan = made.plan
        // The network's input [u, c]: v itself, or a copy with the context; positions not yet
        // computed still hold v's values, which the masks keep from the outputs that need them.
        let (gathered, input, width) = networkInput(UnsafePointer(v), context: context, rows: count, arena: &arena)
        let blockRows = Swift.min(count, Self.sequentialBlockRows)
        let state = plan.state(rows: blockRows, arena: &arena)
        let theta = arena.take(Scalar.self, blockRows * p)
        let column = arena.take(Scalar.self, blockRows)
        for first in stride(from: 0, to: count, by: Swift.max(blockRows, 1)) {
            let rows = Swift.min(blockRows, count - first), x = input + first * width
            plan.begin(x, ldx: width, rows: rows, state: state)
            for (k, f) in orderedFeatures.enumerated() {
                plan.pass(k, feature: f, input: x, ldx: width, rows: rows, state: state, into: theta)
                for r in 0..<rows { column[r] = v[(first + r) * d + f] }
                var scratch = arena  // the transform's scratch, released after every pass
                transform.apply(column, ldx: 1, features: singleFeature, parameters: theta, ldp: p, rows: rows,
                                logDet: logDet + first, inverse: true, arena: &scratch)
                for r in 0..<rows {
                    v[(first + r) * d + f] = column[r]
                    gathered?[(first + r) * width + f] = column[r]
                }
            }
        }
    }
}
