import FlowCore
import FlowHDF5
/// Writes a tensor as CSV text: one line per sample, comma-separated, `\n` line ends.
///
/// A tensor of shape `[N]` becomes `N` lines of one value; `[N, d₁, d₂, …]` becomes `N` lines of
/// `d₁·d₂·…` values (each sample flattened row-major). Values are written in Swift's shortest
/// round-trip form (`0.1`, `-2.5`, `1e-05`), so ``CSVReader`` reads them back bit-exactly; NaN
/// and infinities are written as `nan`, `inf` and `-inf` (which ``CSVReader`` refuses to read).
public enum CSVWriter {
    /// Writes `tensor` to `path` atomically (temporary file, fsync, rename), with an optional
    /// first line of column names.
    ///
    /// - Throws: ``FlowError/shapeMismatch(_:)`` for a rank-0 tensor or one with no values per sample;
    ///   ``FlowError/invalidArgument(_:)`` for a header of the wrong length or with a name
    ///   containing a comma, quote or line break; ``FlowError/io(_:)`` if the file cannot be written.
    public static func write(_ tensor: Tensor<Float>, to path: String, header: [String]? = nil) throws {
        try DataFile.writeAtomically(encode(tensor, header: header), to: path)
    }

    /// The CSV text of `tensor` as UTF-8 bytes (same rules and errors as ``write(_:to:header:)``).
    public static func encode(_ tensor: Tensor<Float>, header: [String]? = nil) throws -> [UInt8] {
        guard !tensor.shape.isEmpty else {
            throw FlowError.shapeMismatch("a CSV file needs a tensor of rank 1 or more, got shape []")
        }
        let rows = tensor.shape[0]
        let columns = tensor.eventSize
        guard columns > 0 else {
            throw FlowError.shapeMismatch("a CSV file needs at least one value per sample, got shape \(tensor.shape)")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(tensor.scalars.count * 12 + 64)
        if let header {
            guard header.count == columns else {
                throw FlowError.invalidArgument("the CSV header has \(header.count) names for \(columns) columns")
            }
            for (i, name) in header.enumerated() {
                if name.utf8.contains(where: { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"")
                                               || $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) {
                    throw FlowError.invalidArgument(
                        "CSV column name \(name.debugDescription) contains a comma, quote or line break")
                }
                if i > 0 { bytes.append(UInt8(ascii: ",")) }
                bytes += name.utf8
            }
            bytes.append(UInt8(ascii: "\n"))
        }
        tensor.scalars.withUnsafeBufferPointer { values in
            for r in 0..<rows {
                for c in 0..<columns {
                    if c > 0 { bytes.append(UInt8(ascii: ",")) }
                    bytes += values[r * columns + c].description.utf8
                }
                bytes.append(UInt8(ascii: "\n"))
            }
        }
        return bytes
    }
}
