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
