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
