import FlowCore
import FlowHDF5
/// Loads training data and saves samples by a short textual description — what a command line
/// or configuration file names.
///
/// ## Descriptions ``load(_:)`` accepts
/// - `toy:NAME[:N[:SEED]]`: `N` points of the ``ToyDataset`` called `NAME` (e.g. `8gaussians`,
///   `2spirals`) drawn with `SEED`; `N` defaults to ``defaultToyCount`` and `SEED` to
///   ``defaultToySeed`` (an empty field means the default, as in `toy:moons::7`).
/// - `PATH.csv`: ``CSVReader``.
/// - `PATH.npy`: ``NPYReader``.
/// - `PATH.h5:/group/dataset` or `PATH.hdf5:/group/dataset`: ``HDF5DatasetReader``; a bare
///   `PATH.h5` reads the root group's only dataset.
/// - `fashion-mnist:train|test[:N]`: the first `N` (default: all 60 000 / 10 000) Fashion-MNIST
///   images as `[N, 1, 28, 28]`, levels 0...255 (``ImageDataset/fashionMNIST(split:)``; the
///   Debian package `dataset-fashion-mnist`, installed by `make data`).
/// - `digits:train|val|test[:N]`: scikit-learn's 8×8 digits (1149 / 288 / 360 images) as
///   `[N, 1, 8, 8]`, levels 0...16 (``ImageDataset/digits(split:)``; the file `make data` writes).
///
/// Extensions are matched case-insensitively. Every load returns a `Tensor<Float>` of shape
/// `[rows, columns]` with finite values, except the image data sets: `[N, 1, H, W]` of raw integer
/// levels as floats (not scaled or dequantised; `eventSize` is `H·W`, and
/// ``Tensor/reshaped(_:)`` to `[N, H·W]` gives rows).
public enum DataSource {
    /// Points drawn for `toy:NAME` without a count.
    public static let defaultToyCount = 10_000
    /// Seed for `toy:NAME[:N]` without a seed.
    public static let defaultToySeed: UInt64 = 0

    /// The data named by `description` as a `[rows, columns]` tensor (`[N, 1, H, W]` for images).
    ///
    /// - Throws: ``FlowError/invalidArgument(_:)`` for a malformed `toy:`, `fashion-mnist:` or
    ///   `digits:` description, an unknown toy name or an unknown file extension; otherwise the
    ///   errors of the reader used.
    public static func load(_ description: String) throws -> Tensor<Float> {
        if description.hasPrefix("toy:") { return try loadToy(description) }
        if let images = try ImageDataset.images(described: description) { return images }
        switch try Target(description, purpose: "read") {
        case .csv(let path): return try CSVReader.read(path: path)
        case .npy(let path): return try NPYReader.read(path: path)
        case .hdf5(let path, let dataset): return try HDF5DatasetReader.read(path: path, dataset: dataset)
        }
    }

    /// Writes `tensor` (e.g. samples of shape `[N, D]`) to `path` in the format its extension
    /// names: `.csv` (``CSVWriter``, one sample per line), `.npy` (``NPYWriter``), `.h5` or
    /// `.hdf5` (``HDF5DatasetWriter``, dataset ``HDF5DatasetWriter/defaultDataset`` unless
    /// given as `PATH.h5:/dataset`). Every format is written atomically.
    ///
    /// - Throws: ``FlowError/invalidArgument(_:)`` for an unknown extension; otherwise the
    ///   errors of the writer used.
    public static func save(_ tensor: Tensor<Float>, to path: String) throws {
        switch try Target(path, purpose: "write") {
        case .csv(let path): try CSVWriter.write(tensor, to: path)
        case .npy(let path): try NPYWriter.write(tensor, to: path)
        case .hdf5(let path, let dataset):
            try HDF5DatasetWriter.write(tensor, to: path, dataset: dataset ?? HDF5DatasetWriter.defaultDataset)
        }
    }

    // MARK: - Parsing descriptions

    /// A file description resolved to a format.
    private enum Target {
        case csv(String)
        case npy(String)
        case hdf5(String, dataset: String?)

        init(_ description: String, purpose: String) throws {
            // ASCII-only lowering keeps byte offsets valid in `description`.
            let bytes = Array(description.utf8)
            let lower = bytes.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }
            func hasSuffix(_ ext: String) -> Bool { lower.reversed().starts(with: ext.utf8.reversed()) }
            // "file.h5:/dataset": split at the colon after the last ".h5:" / ".hdf5:".
            for ext in [".h5:", ".hdf5:"] {
                if let colon = Self.lastEnd(of: Array(ext.utf8), in: lower).map({ $0 - 1 }) {
                    let path = String(decoding: bytes[..<colon], as: UTF8.self)
                    let dataset = String(decoding: bytes[(colon + 1)...], as: UTF8.self)
                    self = .hdf5(path, dataset: dataset.isEmpty ? nil : dataset)
                    return
                }
            }
            if hasSuffix(".csv") { self = .csv(description); return }
            if hasSuffix(".npy") { self = .npy(description); return }
            if hasSuffix(".h5") || hasSuffix(".hdf5") { self = .hdf5(description, dataset: nil); return }
            let forms = purpose == "read"
                ? "toy:NAME[:N[:SEED]], fashion-mnist:SPLIT[:N], digits:SPLIT[:N], PATH.csv, PATH.npy or PATH.h5[:/dataset]"
                : "PATH.csv, PATH.npy or PATH.h5[:/dataset]"
            throw FlowError.invalidArgument(
                "cannot tell which format to \(purpose) for '\(description)': expected \(forms) (.hdf5 also works)")
        }

        /// The end offset of the last occurrence of `needle` in `hay`.
        private static func lastEnd(of needle: [UInt8], in hay: [UInt8]) -> Int? {
            guard hay.count >= needle.count else { return nil }
            for start in stride(from: hay.count - needle.count, through: 0, by: -1)
            where hay[start..<(start + needle.count)].elementsEqual(needle) {
                return start + needle.count
            }
            return nil
        }
    }

    /// `toy:NAME[:N[:SEED]]`.
    private static func loadToy(_ description: String) throws -> Tensor<Float> {
        let fields = description.dropFirst(4).split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let usage = "expected toy:NAME[:N[:SEED]], e.g. toy:8gaussians:10000:0"
        guard (1...3).contains(fields.count), !fields[0].isEmpty else {
            throw FlowError.invalidArgument("malformed data description '\(description)': \(usage)")
        }
        let dataset = try ToyDataset.named(fields[0])
        var count = defaultToyCount
        if fields.count > 1, !fields[1].isEmpty {
            guard let n = Int(fields[1]) else {
                throw FlowError.invalidArgument("'\(description)': the point count '\(fields[1])' is not an integer; \(usage)")
            }
            count = n
        }
        var seed = defaultToySeed
        if fields.count > 2, !fields[2].isEmpty {
            guard let s = UInt64(fields[2]) else {
                throw FlowError.invalidArgument(
                    "'\(description)': the seed '\(fields[2])' is not an integer in 0...\(UInt64.max); \(usage)")
            }
            seed = s
        }
        return try dataset.tensor(count, seed: seed)
    }
}
