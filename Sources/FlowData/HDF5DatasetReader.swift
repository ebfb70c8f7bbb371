import FlowCore
import FlowHDF5
import CHDF5

/// Reads one named dataset of an HDF5 file into a `Tensor<Float>` of shape `[rows, columns]`.
///
/// Accepted datasets: 2-D `(rows, columns)` or 1-D `(n,)` (read as `n` rows of one column), at
/// least one element, of any floating-point class (float16/32/64; float64 values must fit the
/// float32 range) or integer class (up to 64 bits; converted to the nearest `Float`). Any storage
/// layout HDF5 reads (contiguous, chunked, compressed) is fine.
///
/// ## Errors
/// A missing or unreadable file is ``FlowError/io(_:)``; a file that is not HDF5, an
/// unsupported element type or rank, an empty dataset or a NaN/infinite element (with its
/// `[row, column]`) is ``FlowError/format(_:)``; a dataset path that does not exist is
/// ``FlowError/invalidArgument(_:)`` naming it and listing what the deepest existing group
/// holds; more than ``Limits/maxDataElements`` elements is ``FlowError/limitExceeded(_:)``.
public enum HDF5DatasetReader {
    /// Reads the dataset at `dataset` (an absolute or relative path such as "/train/x" or "x")
    /// of the HDF5 file at `path`. With `dataset == nil` the root group must hold exactly one
    /// dataset, which is read.
    public static func read(path: String, dataset: String? = nil) throws -> Tensor<Float> {
        _ = try DataFile(path: path)  // existence, permissions, regular file: FlowError.io
        let source = "'\(path)'"
        let file: HDF5File
        do { file = try HDF5File.open(path: path) } catch let e as HDF5Error {
            throw FlowError.format("\(source) is not a readable HDF5 file: \(e.message)")
        }
        defer { file.close() }
        do {
            let (group, name) = try locate(dataset, in: file, source: source)
            return try readDataset(name, of: group, source: source)
        } catch let e as HDF5Error {
            throw FlowError.format("\(source): \(e.message)")
        }
    }

    /// The group holding the dataset and the dataset's name in it.
    private static func locate(_ dataset: String?, in file: HDF5File, source: String) throws -> (HDF5Group, String) {
        let root = try file.root
        guard let dataset else {
            let names = try root.childNames(limit: 100_000).filter { root.isDataset($0) }
            guard names.count == 1 else {
                throw FlowError.invalidArgument(
                    "\(source): name the dataset to read (as in \(source.dropFirst().dropLast()):/name); the root group holds \(root.childSummary())")
            }
            return (root, names[0])
        }
        let components = dataset.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard let last = components.last else {
            throw FlowError.invalidArgument("\(source): the dataset path '\(dataset)' is empty")
        }
        var group = root
        for component in components.dropLast() {
            let target = group.childPath(component)
            guard group.hasChild(component) else {
                throw FlowError.invalidArgument(
                    "\(source) has no group \(target); \(group.path) holds \(group.childSummary())")
            }
            guard group.isGroup(component) else {
                throw FlowError.invalidArgument("\(source): \(target) is not a group")
            }
            group = try group.openGroup(component)
        }
        let target = group.childPath(last)
        guard group.hasChild(last) else {
            throw FlowError.invalidArgument(
                "\(source) has no dataset \(target); \(group.path) holds \(group.childSummary())")
        }
        guard group.isDataset(last) else {
            let holds = group.isGroup(last) ? (try? group.openGroup(last).childSummary()) ?? "?" : "?"
            throw FlowError.invalidArgument("\(source): \(target) is a group, not a dataset; it holds \(holds)")
        }
        return (group, last)
    }

    private static func readDataset(_ name: String, of group: HDF5Group, source: String) throws -> Tensor<Float> {
        let label = "\(source) dataset \(group.childPath(name))"
        let shape = try group.datasetShape(name)
        let rows: Int, columns: Int
        switch shape.count {
        case 1: (rows, columns) = (shape[0], 1)
        case 2: (rows, columns) = (shape[0], shape[1])
        default:
            throw FlowError.format("\(label) has rank \(shape.count) (shape \(shape)); only 1-D and 2-D datasets are read")
        }
        if rows == 0 || columns == 0 { throw FlowError.format("\(label) is empty (shape \(shape))") }
        let (count, overflow) = rows.multipliedReportingOverflow(by: columns)
        if overflow || count > Limits.maxDataElements {
            throw FlowError.limitExceeded("\(label) has shape \(shape), more than \(Limits.maxDataElements) elements")
        }

        let type = try group.datasetElementType(name)
        var values: [Float]
        switch type.typeClass {
        case H5T_FLOAT where type.size > 4:
            let doubles = try group.readDoubles(name, maxElements: count).values
            values = [Float](repeating: 0, count: doubles.count)
            for (i, d) in doubles.enumerated() {
                let v = Float(d)
                if d.isFinite && !v.isFinite {
                    throw FlowError.format("\(label): element [\(i / columns), \(i % columns)] = \(d) is outside the float32 range")
                }
                values[i] = v
            }
        case H5T_FLOAT:
            values = try group.readFloats(name, maxElements: count).values
        case H5T_INTEGER:
            values = try group.readInt64s(name, maxElements: count).values.map { Float($0) }
        default:
            throw FlowError.format("\(label) holds \(type.description) elements; expected floats or integers")
        }
        if let i = values.firstIndex(where: { !$0.isFinite }) {
            let what = values[i].isNaN ? "NaN" : "infinite"
            throw FlowError.format("\(label): element [\(i / columns), \(i % columns)] is \(what) (NaN and infinity are not allowed)")
        }
        return try Tensor(shape: [rows, columns], scalars: values)
    }
}
