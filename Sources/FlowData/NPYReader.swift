import FlowCore
import FlowHDF5
/// Reads NumPy `.npy` files (format versions 1.0, 2.0 and 3.0) into a `Tensor<Float>` of shape
/// `[rows, columns]`.
///
/// Accepted arrays: C order (`fortran_order: False`), 2-D `(rows, columns)` or 1-D `(n,)` (read
/// as `n` rows of one column), at least one element, of a little-endian float or integer dtype
/// (`<f4`, `<f8`, `|i1`, `|u1`, `<i2`, `<u2`, `<i4`, `<u4`, `<i8`, `<u8`), converted to `Float`.
///
/// ## Errors
/// Everything wrong with the contents is a ``FlowError/format(_:)`` naming the file: a missing
/// magic or unsupported version, a malformed header, a wrong dtype (big-endian, object,
/// structured, other: the message starts "wrong dtype"), Fortran order, a rank other than 1 or 2,
/// an empty array, a data section shorter or longer than the header's shape requires, NaN or
/// infinite elements (with their `[row, column]`). The file length is checked against the shape
/// before the data are read. A missing file is ``FlowError/io(_:)``; more than
/// ``Limits/maxDataElements`` elements is ``FlowError/limitExceeded(_:)``.
public enum NPYReader {
    /// Reads the `.npy` file at `path` as a `[rows, columns]` tensor.
    public static func read(path: String) throws -> Tensor<Float> {
        let file = try DataFile(path: path)
        let source = "'\(path)'"
        guard file.size >= NPYHeader.leadLength else {
            throw FlowError.format("\(source) is not a .npy file: it has only \(file.size) bytes")
        }
        let fieldSize = try NPYHeader.lengthFieldSize(lead: file.read(NPYHeader.leadLength), source: source)
        guard file.remaining >= fieldSize else { throw truncatedHeader(source) }
        let headerLength = NPYHeader.headerLength(field: try file.read(fieldSize))
        try checkHeaderLength(headerLength, available: file.remaining, source: source)
        let header = try NPYHeader.parse(file.read(headerLength), source: source)
        let layout = try Layout(header, source: source)
        try checkDataLength(layout, available: file.remaining, source: source)
        let data = try file.read(layout.byteCount)
        return try decode(data, layout, source: source)
    }

    /// Decodes the bytes of a whole `.npy` file held in memory (same rules and errors as
    /// ``read(path:)``); `source` names the bytes in messages.
    public static func decode(_ bytes: [UInt8], source: String = ".npy data") throws -> Tensor<Float> {
        guard bytes.count >= NPYHeader.leadLength else {
            throw FlowError.format("\(source) is not a .npy file: it has only \(bytes.count) bytes")
        }
        let fieldSize = try NPYHeader.lengthFieldSize(lead: Array(bytes[0..<NPYHeader.leadLength]), source: source)
        var offset = NPYHeader.leadLength
        guard bytes.count - offset >= fieldSize else { throw truncatedHeader(source) }
        let headerLength = NPYHeader.headerLength(field: Array(bytes[offset..<(offset + fieldSize)]))
        offset += fieldSize
        try checkHeaderLength(headerLength, available: bytes.count - offset, source: source)
        let header = try NPYHeader.parse(Array(bytes[offset..<(offset + headerLength)]), source: source)
        offset += headerLength
        let layout = try Layout(header, source: source)
        try checkDataLength(layout, available: bytes.count - offset, source: source)
        return try decode(Array(bytes[offset...]), layout, source: source)
    }

    // MARK: - Helpers

    /// The validated meaning of a header: element type and `[rows, columns]`.
    private struct Layout {
        let type: NPYElementType
        let rows: Int
        let columns: Int
        let header: NPYHeader
        var count: Int { rows * columns }
        var byteCount: Int { count * type.size }

        init(_ header: NPYHeader, source: String) throws {
            self.header = header
            type = try NPYElementType(descr: header.descr, source: source)
            if header.fortranOrder {
                throw FlowError.format(
                    "\(source): fortran_order is True; save a C-ordered array (np.ascontiguousarray(a)) instead")
            }
            switch header.shape.count {
            case 1: (rows, columns) = (header.shape[0], 1)
            case 2: (rows, columns) = (header.shape[0], header.shape[1])
            default:
                throw FlowError.format(
                    "\(source): the array has \(header.shape.count) dimensions (shape \(NPYReader.describe(header.shape))); only 1-D and 2-D arrays are read")
            }
            if rows == 0 || columns == 0 {
                throw FlowError.format("\(source): the array is empty (shape \(NPYReader.describe(header.shape)))")
            }
            let (count, overflow) = rows.multipliedReportingOverflow(by: columns)
            if overflow || count > Limits.maxDataElements {
                throw FlowError.limitExceeded(
                    "\(source): shape \(NPYReader.describe(header.shape)) has more than \(Limits.maxDataElements) elements")
            }
        }
    }

    /// Python's spelling of a shape: `(3, 2)`, `(5,)`, `()`.
    static func describe(_ shape: [Int]) -> String {
        shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    }

    private static func truncatedHeader(_ source: String) -> FlowError {
        FlowError.format("\(source): truncated .npy file: it ends inside the header")
    }

    private static func checkHeaderLength(_ length: Int, available: Int, source: String) throws {
        if length > NPYHeader.maxHeaderLength {
            throw FlowError.limitExceeded(
                "\(source): the .npy header claims \(length) bytes, more than the limit of \(NPYHeader.maxHeaderLength)")
        }
        if length > available { throw truncatedHeader(source) }
    }

    private static func checkDataLength(_ layout: Layout, available: Int, source: String) throws {
        let shape = describe(layout.header.shape)
        if available < layout.byteCount {
            throw FlowError.format(
                "\(source): truncated .npy file: shape \(shape) of '\(layout.header.descr)' needs \(layout.byteCount) data bytes, but only \(available) follow the header")
        }
        if available > layout.byteCount {
            throw FlowError.format(
                "\(source): \(available - layout.byteCount) unexpected bytes after the data of shape \(shape) of '\(layout.header.descr)' (\(layout.byteCount) bytes)")
        }
    }

    private static func decode(_ data: [UInt8], _ layout: Layout, source: String) throws -> Tensor<Float> {
        let values = try data.withUnsafeBytes {
            try layout.type.decode($0, count: layout.count, columns: layout.columns, source: source)
        }
        return try Tensor(shape: [layout.rows, layout.columns], scalars: values)
    }
}
