/// Size limits of the data layer, checked before anything is allocated from a user-supplied
/// size (a toy-set row count, a file length, an `.npy` header or an HDF5 dataspace).
extension Limits {
    /// Most rows one toy data set generates: 2²⁴ ≈ 16.8 million (128 MiB of float32 pairs).
    public static let maxToySamples = 1 << 24
    /// Most elements (rows × columns) one data file may hold: 2²⁸ (1 GiB of float32).
    public static let maxDataElements = 1 << 28
    /// Largest data file read in full (CSV text, `.npy`): 4 GiB.
    public static let maxDataFileBytes = 1 << 32
}
