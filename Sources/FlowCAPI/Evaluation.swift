import FlowCore
import FlowModelFile
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Evaluation

@_cdecl("sf_forward")
public func sf_forward(_ handle: OpaquePointer?, _ x: UnsafePointer<Float>?, _ n: UInt,
                       _ z: UnsafeMutablePointer<Float>?, _ logdet: UnsafeMutablePointer<Double>?) -> Int32 {
    guarded {
        try reading(handle) { flow in
            try requireUnconditional(flow, "sf_forward")
            let count = try sampleCount(n, flow)
            guard count > 0 else { return Status.ok.rawValue }
            guard let x, let z else { return fail(.invalidArgument, "x or z is NULL") }
            flow.forward(x, count: count, z: z, logDet: logdet)
            return Status.ok.rawValue
        }
    }
}

@_cdecl("sf_inverse")
public func sf_inverse(_ handle: OpaquePointer?, _ z: UnsafePointer<Float>?, _ n: UInt,
                       _ x: UnsafeMutablePointer<Float>?, _ logdet: UnsafeMutablePointer<Double>?) -> Int32 {
    guarded {
        try reading(handle) { flow in
            try requireUnconditional(flow, "sf_inverse")
            let count = try sampleCount(n, flow)
            guard count > 0 else { return Status.ok.rawValue }
            guard let x, let z else { return fail(.invalidArgument, "z or x is NULL") }
            flow.inverse(z, count: count, x: x, logDet: logdet)
            return Status.ok.rawValue
        }
    }
}

@_cdecl("sf_log_prob")
public func sf_log_prob(_ handle: OpaquePointer?, _ x: UnsafePointer<Float>?, _ n: UInt,
                        _ out: UnsafeMutablePointer<Double>?) -> Int32 {
    guarded {
        try reading(handle) { flow in
            try requireUnconditional(flow, "sf_log_prob")
            let count = try sampleCount(n, flow)
            guard count > 0 else { return Status.ok.rawValue }
            guard let x, let out else { return fail(.invalidArgument, "x or out is NULL") }
            flow.logProb(x, count: count, into: out)
            return Status.ok.rawValue
        }
    }
}

@_cdecl("sf_sample")
public func sf_sample(_ handle: OpaquePointer?, _ n: UInt, _ seed: UInt64, _ out: UnsafeMutablePointer<Float>?,
                      _ logProb: UnsafeMutablePointer<Double>?) -> Int32 {
    sf_sample_temperature(handle, n, seed, 1, out, logProb)
}

@_cdecl("sf_sample_temperature")
public func sf_sample_temperature(_ handle: OpaquePointer?, _ n: UInt, _ seed: UInt64, _ temperature: Float,
                                  _ out: UnsafeMutablePointer<Float>?, _ logProb: UnsafeMutablePointer<Double>?) -> Int32 {
    guarded {
        try reading(handle) { flow in
            try requireUnconditional(flow, "sf_sample")
            let count = try sampleCount(n, flow)
            guard temperature > 0, temperature.isFinite else {
                return fail(.invalidArgument, "temperature must be positive and finite, got \(temperature)")
            }
            guard count > 0 else { return Status.ok.rawValue }
            guard let out else { return fail(.invalidArgument, "out is NULL") }
            flow.sample(count: count, seed: seed, into: out, logProb: logProb, temperature: temperature)
            return Status.ok.rawValue
        }
    }
}

// MARK: - Conditional models

/// The context argument of a call on `flow`: the rows for a conditional flow (non-NULL when
/// `count > 0`), NULL for an unconditional one (a context given to it is refused).
func checkedContext(_ context: UnsafePointer<Float>?, _ flow: NormalizingFlow<Float>, count: Int) throws
    -> UnsafePointer<Float>?
{
    let c = flow.contextSize
    if c == 0 {
        guard context == nil else {
            throw FlowError.invalidArgument("the model is unconditional: pass context = NULL (or call the function without _context)")
        }
        return nil
    }
    guard count == 0 || context != nil else {
        throw FlowError.invalidArgument("the model is conditional (\(c) context values per row): context is NULL")
    }
    _ = try sampleCount(UInt(count), contextSize: c)
    return context
}

/// Refuses a conditional model in a call that takes no context.
func requireUnconditional(_ flow: NormalizingFlow<Float>, _ function: String) throws {
    guard flow.contextSize == 0 else {
        throw FlowError.invalidArgument("the model is conditional (\(flow.contextSize) context values per row): use \(function)_context")
    }
}

@_cdecl("sf_model_context_size")
public func sf_model_context_size(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<UInt>?) -> Int32 {
    guarded {
        try reading(handle) { flow in
            guard let out else { return fail(.invalidArgument, "out_size is NULL") }
            out.pointee = UInt(flow.contextSize)
            return Status.ok.rawValue
        }
    }
}

@_cdecl("sf_forward_context")
public func sf_forward_context(_ handle: OpaquePointer?, _ x: UnsafePointer<Float>?, _ context: UnsafePointer<Float>?,
                               _ n: UInt, _ z: UnsafeMutablePointer<Float>?,
                               _ logdet: UnsafeMutablePointer<Double>?) -> Int32 {
    transformWithContext(handle, x, context, n, z, logdet, inverse: false)
}

@_cdecl("sf_inverse_context")
public func sf_inverse_context(_ handle: OpaquePointer?, _ z: UnsafePointer<Float>?, _ context: UnsafePointer<Float>?,
                               _ n: UInt, _ x: UnsafeMutablePointer<Float>?,
                               _ logdet: UnsafeMutablePointer<Double>?) -> Int32 {
    transformWithContext(handle, z, context, n, x, logdet, inverse: true)
}

/// sf_forward_context and sf_inverse_context: `output = f(input; c)` or `f⁻¹(input; c)`.
private func transformWithContext(_ handle: OpaquePointer?, _ input: UnsafePointer<Float>?, _ context: UnsafePointer<Float>?,
                                  _ n: UInt, _ output: UnsafeMutablePointer<Float>?, _ logdet: UnsafeMutablePointer<Double>?,
                                  inverse: Bool) -> Int32 {
    guarded {
        try reading(handle) { flow in
            let count = try sampleCount(n, flow)
            let c = try checkedContext(context, flow, count: count)
            guard count > 0 else { return Status.ok.rawValue }
            guard let input, let output else { return fail(.invalidArgument, inverse ? "z or x is NULL" : "x or z is NULL") }
            if inverse {
                flow.inverse(input, count: count, context: c, x: output, logDet: logdet)
            } else {
                flow.forward(input, count: count, context: c, z: output, logDet: logdet)
            }
            return Status.ok.rawValue
        }
    }
}

@_cdecl("sf_log_prob_context")
public func sf_log_prob_context(_ handle: OpaquePointer?, _ x: UnsafePointer<Float>?, _ context: UnsafePointer<Float>?,
                                _ n: UInt, _ out: UnsafeMutablePointer<Double>?) -> Int32 {
    guarded {
        try reading(handle) { flow in
            let count = try sampleCount(n, flow)
            let c = try checkedContext(context, flow, count: count)
            guard count > 0 else { return Status.ok.rawValue }
            guard let x, let out else { return fail(.invalidArgument, "x or out is NULL") }
            flow.logProb(x, count: count, context: c, into: out)
            return Status.ok.rawValue
        }
    }
}

@_cdecl("sf_sample_context")
public func sf_sample_context(_ handle: OpaquePointer?, _ n: UInt, _ seed: UInt64, _ context: UnsafePointer<Float>?,
                              _ nContext: UInt, _ out: UnsafeMutablePointer<Float>?,
                              _ logProb: UnsafeMutablePointer<Double>?) -> Int32 {
    guarded {
        try reading(handle) { flow in
            let count = try sampleCount(n, flow)
            let c = flow.contextSize
            if c == 0 {
                guard context == nil, nContext == 0 else {
                    return fail(.invalidArgument, "the model is unconditional: pass context = NULL and n_context = 0")
                }
            } else {
                guard count == 0 || context != nil else { return fail(.invalidArgument, "the model is conditional (\(c) context values per row): context is NULL") }
                guard nContext >= 1, nContext <= n, count == 0 || n % nContext == 0 else {
                    return fail(.invalidArgument, "n_context = \(nContext) must be at least 1 and divide n = \(n)")
                }
                _ = try sampleCount(nContext, contextSize: c)
            }
            guard count > 0 else { return Status.ok.rawValue }
            guard let out else { return fail(.invalidArgument, "out is NULL") }
            guard c > 0, let context else {
                flow.sample(count: count, seed: seed, into: out, logProb: logProb)
                return Status.ok.rawValue
            }
            if Int(nContext) == count {
                flow.sample(count: count, seed: seed, context: context, into: out, logProb: logProb)
                return Status.ok.rawValue
            }
            // n / n_context samples for each context, in blocks: context j's rows are
            // j·(n / n_context) ..< (j + 1)·(n / n_context).
            let perContext = count / Int(nContext)
            let bytes = count * c * MemoryLayout<Float>.stride
            try MemoryBudget.charge(bytes, "the \(count) context rows of sf_sample_context")
            try MemoryBudget.requireAvailable(bytes, "the \(count) context rows of sf_sample_context")
            var expanded = [Float](repeating: 0, count: count * c)
            for j in 0..<Int(nContext) {
                for k in 0..<perContext {
                    for v in 0..<c { expanded[(j * perContext + k) * c + v] = context[j * c + v] }
                }
            }
            expanded.withUnsafeBufferPointer {
                flow.sample(count: count, seed: seed, context: $0.baseAddress, into: out, logProb: logProb)
            }
            return Status.ok.rawValue
        }
    }
}
