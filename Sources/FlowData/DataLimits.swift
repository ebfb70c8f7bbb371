import FlowCore
import FlowHDF5
/// Size limits of the data layer, checked before anything is allocated from a user-supplied
/// size (a file length, an `.npy` header or an HDF5 dataspace).
extension Limits {
    /// Most elements (rows × columns) one data file may hold: 2²⁸ (1 GiB of float32).
    public static let maxDataElements = 1 << 28
    /// Largest data file read in full (CSV text, `.npy`): 4 GiB.
    public static let maxDataFileBytes = 1 << 32
}
