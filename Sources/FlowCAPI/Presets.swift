import FlowCore
import FlowModelFile
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Presets (their names and defaults come from FlowCore's `Presets` table)

/// Preset names in static storage, in the order of `Presets.all`.
let presetNameStrings: [UnsafePointer<CChar>] = Presets.names.map { UnsafePointer(strdup($0)!) }

@_cdecl("sf_preset_count")
public func sf_preset_count() -> UInt { UInt(presetNameStrings.count) }

@_cdecl("sf_preset_name")
public func sf_preset_name(_ index: UInt) -> UnsafePointer<CChar>? {
    index < UInt(presetNameStrings.count) ? presetNameStrings[Int(index)] : nil
}

@_cdecl("sf_preset_defaults")
public func sf_preset_defaults(_ preset: UnsafePointer<CChar>?,
                               _ outJSON: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guard let outJSON else { return fail(.invalidArgument, "out_json is NULL") }
    outJSON.pointee = nil
    return guarded {
        let table = try Presets.named(try string(preset, "preset", limit: 64))
        guard let s = strdup(table.json.description) else { return fail(.internal, "out of memory") }
        outJSON.pointee = s
        return Status.ok.rawValue
    }
}
