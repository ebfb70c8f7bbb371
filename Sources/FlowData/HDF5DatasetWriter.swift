import FlowCore
import FlowHDF5
/// Writes a `Tensor<Float>` as one float32 dataset of a new HDF5 file.
///
/// The dataset has the tensor's full shape (`[N, D]` for samples), little-endian IEEE float32,
/// contiguous; groups on the way to it are created. The file is built in memory and then written
/// atomically (temporary file, fsync, rename), so a reader never sees a partial file and an
/// existing file at the path is replaced only on success. h5py reads it as
/// `h5py.File(path)["samples"][...]`.
public enum HDF5DatasetWriter {
    /// The dataset ``DataSource/save(_:to:)`` writes samples to.
    public static let defaultDataset = "/samples"

    /// Writes `tensor` to a new HDF5 file at `path` as dataset `dataset` (e.g. "/samples" or
    /// "/run1/samples").
    ///
    /// - Throws: ``FlowError/invalidArgument(_:)`` for an empty dataset path or one with "." or
    ///   ".." components; ``FlowError/io(_:)`` if the file cannot be built or written.
    public static func write(_ tensor: Tensor<Float>, to path: String, dataset: String = defaultDataset) throws {
        let components = dataset.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard let last = components.last else {
            throw FlowError.invalidArgument("cannot write '\(path)': the dataset path '\(dataset)' is empty")
        }
        if components.contains(where: { $0 == "." || $0 == ".." }) {
            throw FlowError.invalidArgument("cannot write '\(path)': the dataset path '\(dataset)' contains '.' or '..'")
        }
        let image: [UInt8]
        do {
            let file = try HDF5File.createInMemory()
            defer { file.close() }
            var group = try file.root
            for component in components.dropLast() { group = try group.createGroup(component) }
            try tensor.scalars.withUnsafeBufferPointer {
                try group.writeDataset(last, floats: $0, shape: tensor.shape)
            }
            image = try file.fileImage()
        } catch let e as HDF5Error {
            throw FlowError.io("cannot write '\(path)': \(e.message)")
        }
        try DataFile.writeAtomically(image, to: path)
    }
}
