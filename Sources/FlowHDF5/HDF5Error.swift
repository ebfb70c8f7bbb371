/// An error from the HDF5 library or from validating an HDF5 file's contents.
///
/// `message` starts with what SwiftFlows was doing and, when HDF5 itself failed, ends with the
/// relevant descriptions from HDF5's error stack, e.g.
/// `"cannot open '/x/y.h5': unable to open file: file signature not found"`.
public struct HDF5Error: Error, CustomStringConvertible {
    /// A human-readable explanation of the failure.
    public let message: String

    /// The same text as ``message``.
    public var description: String { message }

    /// Creates an error with the given message.
    package init(_ message: String) {
        self.message = message
    }
}
