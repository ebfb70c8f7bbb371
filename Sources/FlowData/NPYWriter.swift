import FlowCore
import FlowHDF5
/// Writes a `Tensor<Float>` as a NumPy `.npy` file: dtype `<f4`, C order, the tensor's full
/// shape (`[N, D]` → `(N, D)`, `[N]` → `(N,)`, `[N, C, H, W]` → `(N, C, H, W)`), format
/// version 1.0 (2.0 if the header would exceed 65 535 bytes), data aligned to 64 bytes.
/// `np.load` reads the result; NaN and infinities are written as they are.
public enum NPYWriter {
    /// Writes `tensor` to `path` atomically (temporary file, fsync, rename).
    ///
    /// - Throws: ``FlowError/io(_:)`` if the file cannot be written.
    public static func write(_ tensor: Tensor<Float>, to path: String) throws {
        try DataFile.writeAtomically(encode(tensor), to: path)
    }

    /// The bytes of the `.npy` file for `tensor`.
    public static func encode(_ tensor: Tensor<Float>) -> [UInt8] {
        var bytes = NPYHeader(descr: NPYElementType.float32.rawValue, fortranOrder: false, shape: tensor.shape).encoded()
        bytes.reserveCapacity(bytes.count + 4 * tensor.scalars.count)
        for v in tensor.scalars {
            let bits = v.bitPattern.littleEndian
            withUnsafeBytes(of: bits) { bytes += $0 }
        }
        return bytes
    }
}
