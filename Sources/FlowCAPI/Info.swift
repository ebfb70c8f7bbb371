import FlowCore
import FlowModelFile
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Toy data set names and entropies (from FlowCore's `ToyDataset`)

/// Toy data set names in static storage, in the order of `ToyDataset.allCases`.
let toyNameStrings: [UnsafePointer<CChar>] = ToyDataset.allCases.map { UnsafePointer(strdup($0.rawValue)!) }

@_cdecl("sf_toy_dataset_count")
public func sf_toy_dataset_count() -> UInt { UInt(toyNameStrings.count) }

@_cdecl("sf_toy_dataset_name")
public func sf_toy_dataset_name(_ index: UInt) -> UnsafePointer<CChar>? {
    index < UInt(toyNameStrings.count) ? toyNameStrings[Int(index)] : nil
}

@_cdecl("sf_toy_dataset_entropy")
public func sf_toy_dataset_entropy(_ name: UnsafePointer<CChar>?, _ outEntropy: UnsafeMutablePointer<Double>?,
                                   _ outKnown: UnsafeMutablePointer<Int32>?) -> Int32 {
    guard let outEntropy, let outKnown else { return fail(.invalidArgument, "out_entropy or out_known is NULL") }
    outEntropy.pointee = .nan
    outKnown.pointee = 0
    return guarded {
        let set = try ToyDataset.named(try string(name, "name", limit: 64))
        if let h = set.entropy {
            outEntropy.pointee = h
            outKnown.pointee = 1
        }
        return Status.ok.rawValue
    }
}
