import FlowCore
import FlowHDF5
import CHDF5

/// Helpers of the data layer on top of the HDF5 wrapper: a dataset's element class, and
/// descriptions of a group's children for "not found" messages.
extension HDF5Group {
    /// The class of dataset `name`'s elements (float, integer, …), its size in bytes and a
    /// description such as "64-bit signed integer".
    func datasetElementType(_ name: String) throws -> (typeClass: H5T_class_t, size: Int, description: String) {
        let label = "dataset \(childPath(name))"
        try requireOpen("cannot read \(label)")
        try HDF5Library.validateName(name, what: "dataset")
        let dataset = try HDF5Library.check(H5Dopen2(id, name, hid_t(H5P_DEFAULT)), "cannot open \(label)")
        defer { H5Dclose(dataset) }
        let type = try HDF5Library.check(H5Dget_type(dataset), "cannot read the type of \(label)")
        defer { H5Tclose(type) }
        return (H5Tget_class(type), Int(H5Tget_size(type)), HDF5Library.describe(type: type))
    }

    /// "a, b, train/ (and 12 more)": up to `shown` child names of this group, groups marked with
    /// a trailing "/"; "nothing" for an empty group. Never throws (a listing failure gives "?").
    func childSummary(shown: Int = 20) -> String {
        guard let names = try? childNames(limit: 100_000) else { return "?" }
        if names.isEmpty { return "nothing" }
        var parts = names.prefix(shown).map { isGroup($0) ? $0 + "/" : $0 }
        if names.count > shown { parts.append("(and \(names.count - shown) more)") }
        return parts.joined(separator: ", ")
    }
}
