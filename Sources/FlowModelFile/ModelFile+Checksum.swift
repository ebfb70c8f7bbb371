import FlowCore
import FlowHDF5
/// The file checksum of docs/model-format.md ("File checksum and pre-checks") for callers outside
/// FlowCore: the C API's `sf_file_checksum_block`, `sf_file_reseal_memory` and `sf_file_reseal`,
/// which the Python package (`swiftflows.integrity`) and the fuzzer use instead of their own copies.
extension ModelFile {
    /// Size of the checksum block, the HDF5 user block at the start of every file SwiftFlows writes.
    public static var checksumBlockSize: Int { FileIntegrity.userBlockSize }

    /// The checksum block for the file bytes `bytes` (any bytes; their own first
    /// ``checksumBlockSize`` bytes are ignored): `SWIFTFLOWS-CHECKSUM 1\nsize <bytes>\ncrc32 <hex>\n`,
    /// zero-padded to ``checksumBlockSize`` bytes.
    public static func checksumBlock(for bytes: UnsafeRawBufferPointer) -> [UInt8] {
        FileIntegrity.block(for: bytes)
    }

    /// Rewrites, in place, the checksum block of `image`, an HDF5 file image with a
    /// ``checksumBlockSize``-byte user block. ``FlowError/format(_:)`` if it has none (files
    /// written by h5py need no checksum).
    public static func reseal(image: UnsafeMutableRawBufferPointer) throws {
        guard FileIntegrity.hasUserBlock(UnsafeRawBufferPointer(image)) else { throw noUserBlock("the image") }
        try FileIntegrity.seal(image)
    }

    /// Rewrites the checksum block of the file at `path` (see ``reseal(image:)``), atomically: the
    /// new bytes go to a temporary file beside it, which is renamed into place.
    public static func reseal(path: String) throws {
        var bytes = try readWholeFile(path)
        guard bytes.withUnsafeBytes({ FileIntegrity.hasUserBlock($0) }) else { throw noUserBlock("'\(path)'") }
        try FileIntegrity.seal(&bytes)
        do {
            try writeFileAtomically(bytes, to: path)
        } catch let e as HDF5Error {
            throw FlowError.io("cannot reseal '\(path)': \(e.message)")
        }
    }

    private static func noUserBlock(_ what: String) -> FlowError {
        FlowError.format("\(what) is not an HDF5 file with a \(FileIntegrity.userBlockSize)-byte user block: "
            + "there is no checksum to update")
    }
}
