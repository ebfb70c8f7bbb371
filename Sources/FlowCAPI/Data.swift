import FlowCore
import FlowModelFile
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Data

@_cdecl("sf_toy_dataset")
public func sf_toy_dataset(_ name: UnsafePointer<CChar>?, _ n: UInt, _ seed: UInt64, _ out: UnsafeMutablePointer<Float>?) -> Int32 {
    guarded {
        let set = try ToyDataset.named(try string(name, "name", limit: 64))
        guard n > 0 else { return Status.ok.rawValue }
        guard let out else { return fail(.invalidArgument, "out is NULL") }
        guard n <= UInt(Int.max / 16) else { return fail(.invalidArgument, "n = \(n) is too large") }
        let points = try set.generate(Int(n), seed: seed)
        out.update(from: points, count: points.count)
        return Status.ok.rawValue
    }
}

@_cdecl("sf_toy_conditional_dataset")
public func sf_toy_conditional_dataset(_ name: UnsafePointer<CChar>?, _ n: UInt, _ seed: UInt64,
                                       _ outX: UnsafeMutablePointer<Float>?, _ outContext: UnsafeMutablePointer<Float>?,
                                       _ outEntropy: UnsafeMutablePointer<Double>?) -> Int32 {
    guarded {
        let set = try ConditionalToyDataset.named(try string(name, "name", limit: 64))
        outEntropy?.pointee = set.entropy
        guard n > 0 else { return Status.ok.rawValue }
        guard let outX, let outContext else { return fail(.invalidArgument, "out_x or out_context is NULL") }
        guard n <= UInt(Int.max / 16) else { return fail(.invalidArgument, "n = \(n) is too large") }
        let (x, context) = try set.generate(Int(n), seed: seed)
        outX.update(from: x, count: x.count)
        outContext.update(from: context, count: context.count)
        return Status.ok.rawValue
    }
}
