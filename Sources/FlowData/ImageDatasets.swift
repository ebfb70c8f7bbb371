import FlowCore
import FlowHDF5
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CHDF5

/// Images with their class labels, as a data set delivers them.
public struct ImageData: Equatable {
    /// `[n, channels, height, width]`, the raw integer levels `0..<levels` as floats (not scaled:
    /// flows dequantise the levels themselves, e.g. `(x + u) / levels` with `u ~ U[0, 1)`).
    public var images: Tensor<Float>
    /// One class label per image (0...9 for Fashion-MNIST and digits).
    public var labels: [Int]
    /// Number of pixel levels: 256 for Fashion-MNIST, 17 for digits (levels 0...16).
    public var levels: Int

    public init(images: Tensor<Float>, labels: [Int], levels: Int) {
        self.images = images
        self.labels = labels
        self.levels = levels
    }

    /// Number of images.
    public var count: Int { images.batchCount }
}

/// The image data sets available offline (no downloads at run time), read as ``ImageData`` of
/// raw integer levels.
///
/// - ``fashionMNIST(split:)``: Zalando's Fashion-MNIST, 60 000 training and 10 000 test images of
///   28×28 with 256 levels, read from the IDX files of the Debian package `dataset-fashion-mnist`
///   (`make data` installs it) in ``defaultFashionMNISTDirectory``:
///   `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`. The environment variable
///   `SWIFTFLOWS_FASHION_MNIST_DIR` (``RuntimeConfiguration/fashionMNISTDirectory``) names another directory;
///   there uncompressed files (the same names without `.gz`) are also read.
/// - ``digits(split:)``: scikit-learn's 8×8 digits (1797 images, levels 0...16) split into
///   train/val/test of 1149/288/360 images, read from the HDF5 file `scripts/export_digits.py`
///   writes (`make data` runs it): ``defaultDigitsPath`` (`build/data/digits.h5`, relative to the
///   working directory) or the path in `SWIFTFLOWS_DIGITS_PATH` (``RuntimeConfiguration/digitsPath``).
///   The file holds `/train/images` (`[n, 1, 8, 8]`, integers 0...16, unsigned bytes or floats)
///   and `/train/labels` (`[n]`), the same for `val` and `test`, and a root attribute `levels`
///   (17).
///
/// Architectures that need another image size (e.g. a power of two for repeated squeezing)
/// use ``Tensor/padded(to:value:)`` or ``Tensor/cropped(to:)``: Fashion-MNIST padded to 32×32
/// with level 0 (its background) is the usual choice.
///
/// ## Errors
/// A missing Fashion-MNIST file or digits file is ``FlowError/io(_:)`` saying how to get it
/// (`make data`); the readers' errors otherwise (``IDXReader``, HDF5 as ``FlowError/format(_:)``).
/// Images and labels of different counts, levels outside `0..<levels`, labels outside 0...9 and a
/// wrong shape are ``FlowError/format(_:)``; a `limit` below 1 or above the split's size is
/// ``FlowError/invalidArgument(_:)``.
public enum ImageDataset: Hashable, Sendable {
    /// The splits of Fashion-MNIST as published.
    public enum FashionMNISTSplit: String, CaseIterable, Sendable {
        case train, test
    }

    /// The splits of the digits file (see `scripts/export_digits.py`).
    public enum DigitsSplit: String, CaseIterable, Sendable {
        case train, val, test
    }

    case fashionMNIST(split: FashionMNISTSplit)
    case digits(split: DigitsSplit)

    /// Where the Debian package `dataset-fashion-mnist` installs the IDX files.
    public static let defaultFashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"
    /// Where `make data` writes the digits file (relative to the working directory).
    public static let defaultDigitsPath = "build/data/digits.h5"

    /// The Fashion-MNIST directory in effect: ``RuntimeConfiguration/fashionMNISTDirectory``
    /// (`SWIFTFLOWS_FASHION_MNIST_DIR`) when set, else ``defaultFashionMNISTDirectory``.
    public static var fashionMNISTDirectory: String {
        FlowRuntime.configuration.fashionMNISTDirectory ?? defaultFashionMNISTDirectory
    }

    /// The digits file in effect: ``RuntimeConfiguration/digitsPath`` (`SWIFTFLOWS_DIGITS_PATH`)
    /// when set, else ``defaultDigitsPath``.
    public static var digitsPath: String {
        FlowRuntime.configuration.digitsPath ?? defaultDigitsPath
    }

    /// The description ``DataSource/load(_:)`` accepts for this data set, e.g. `fashion-mnist:train`.
    public var name: String {
        switch self {
        case .fashionMNIST(let split): return "fashion-mnist:\(split.rawValue)"
        case .digits(let split): return "digits:\(split.rawValue)"
        }
    }

    /// Number of pixel levels: 256 (Fashion-MNIST) or 17 (digits).
    public var levels: Int {
        switch self {
        case .fashionMNIST: return 256
        case .digits: return 17
        }
    }

    /// The shape of one image, `[channels, height, width]`: `[1, 28, 28]` or `[1, 8, 8]`.
    public var imageShape: [Int] {
        switch self {
        case .fashionMNIST: return [1, 28, 28]
        case .digits: return [1, 8, 8]
        }
    }

    /// Loads the split from the locations in effect (``fashionMNISTDirectory``, ``digitsPath``);
    /// with `limit`, only the first `limit` images.
    public func load(limit: Int? = nil) throws -> ImageData {
        switch self {
        case .fashionMNIST(let split): return try Self.loadFashionMNIST(split: split, limit: limit)
        case .digits(let split): return try Self.loadDigits(split: split, limit: limit)
        }
    }

    // MARK: - Fashion-MNIST

    /// The IDX file names of a Fashion-MNIST split (compressed), e.g. `train-images-idx3-ubyte.gz`.
    public static func fashionMNISTFileNames(split: FashionMNISTSplit) -> (images: String, labels: String) {
        let prefix = split == .train ? "train" : "t10k"
        return ("\(prefix)-images-idx3-ubyte.gz", "\(prefix)-labels-idx1-ubyte.gz")
    }

    /// Reads a Fashion-MNIST split from the IDX files in `directory` (each `NAME.gz`, or `NAME`
    /// uncompressed when only that exists).
    public static func loadFashionMNIST(split: FashionMNISTSplit, directory: String = fashionMNISTDirectory,
                                        limit: Int? = nil) throws -> ImageData {
        try checkLimit(limit, "fashion-mnist:\(split.rawValue)")
        let names = fashionMNISTFileNames(split: split)
        let imagesPath = try fashionMNISTFile(names.images, directory: directory)
        let labelsPath = try fashionMNISTFile(names.labels, directory: directory)
        let images = try IDXReader.readImages(path: imagesPath, limit: limit)
        let labels = try IDXReader.readLabels(path: labelsPath, limit: limit)
        let data = ImageData(images: images, labels: labels, levels: 256)
        try validate(data, name: "fashion-mnist:\(split.rawValue)", source: "'\(imagesPath)'", limit: limit)
        return data
    }

    /// The path of Fashion-MNIST file `name` (ending in `.gz`) in `directory`: compressed, or
    /// uncompressed when only that exists; a missing file is an error saying how to install it.
    private static func fashionMNISTFile(_ name: String, directory: String) throws -> String {
        let base = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        let compressed = base + "/" + name
        if exists(compressed) { return compressed }
        let plain = String(compressed.dropLast(3))
        if exists(plain) { return plain }
        let origin = FlowRuntime.configuration.fashionMNISTDirectory != nil
            ? " (the directory comes from SWIFTFLOWS_FASHION_MNIST_DIR)" : ""
        throw FlowError.io(
            "Fashion-MNIST is not available: '\(compressed)' does not exist\(origin). Install the Debian package "
                + "dataset-fashion-mnist (`make data`, or `sudo apt-get install dataset-fashion-mnist`), which puts "
                + "the IDX files in \(defaultFashionMNISTDirectory), or set SWIFTFLOWS_FASHION_MNIST_DIR to a "
                + "directory holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]")
    }

    // MARK: - Digits

    /// Reads a digits split from the HDF5 file at `path` (written by `scripts/export_digits.py`).
    public static func loadDigits(split: DigitsSplit, path: String = digitsPath, limit: Int? = nil) throws -> ImageData {
        let name = "digits:\(split.rawValue)"
        try checkLimit(limit, name)
        guard exists(path) else {
            let origin = FlowRuntime.configuration.digitsPath != nil ? " (the path comes from SWIFTFLOWS_DIGITS_PATH)" : ""
            throw FlowError.io(
                "the digits data set is not available: '\(path)' does not exist\(origin). Run `make data` in the "
                    + "repository (it exports scikit-learn's digits with scripts/export_digits.py to "
                    + "\(defaultDigitsPath), relative to the working directory) or set SWIFTFLOWS_DIGITS_PATH to the file")
        }
        _ = try DataFile(path: path)  // permissions, regular file: FlowError.io
        let source = "'\(path)'"
        let file: HDF5File
        do { file = try HDF5File.open(path: path) } catch let e as HDF5Error {
            throw FlowError.format("\(source) is not a readable HDF5 file: \(e.message)")
        }
        defer { file.close() }
        do {
            let root = try file.root
            var levels = 17
            if root.hasAttribute("levels") {
                let value = try root.intAttribute("levels")
                guard (2...256).contains(value) else {
                    throw FlowError.format("\(source): the attribute levels = \(value) is not in 2...256")
                }
                levels = Int(value)
            }
            guard root.hasChild(split.rawValue), root.isGroup(split.rawValue) else {
                throw FlowError.format("\(source) has no group /\(split.rawValue); the root group holds \(root.childSummary())")
            }
            let group = try root.openGroup(split.rawValue)
            for child in ["images", "labels"] where !(group.hasChild(child) && group.isDataset(child)) {
                throw FlowError.format("\(source) has no dataset /\(split.rawValue)/\(child); /\(split.rawValue) holds \(group.childSummary())")
            }
            let shape = try group.datasetShape("images")
            let label = "\(source) dataset /\(split.rawValue)/images"
            guard shape.count == 4, shape.allSatisfy({ $0 > 0 }) else {
                throw FlowError.format("\(label) has shape \(shape); expected [n, channels, height, width] with no empty dimension")
            }
            guard let count = Tensor<Float>.elementCount(shape), count <= Limits.maxDataElements else {
                throw FlowError.limitExceeded("\(label) has shape \(shape), more than \(Limits.maxDataElements) elements")
            }
            let type = try group.datasetElementType("images")
            var values: [Float]
            switch type.typeClass {
            case H5T_INTEGER:
                values = try group.readInt64s("images", maxElements: count).values.map {
                    guard (0..<Int64(levels)).contains($0) else {
                        throw FlowError.format("\(label) holds the value \($0), outside the levels 0...\(levels - 1)")
                    }
                    return Float($0)
                }
            case H5T_FLOAT:
                values = try group.readFloats("images", maxElements: count).values
                if let bad = values.first(where: { !($0 >= 0 && $0 < Float(levels) && $0.rounded() == $0) }) {
                    throw FlowError.format("\(label) holds the value \(bad), not an integer level in 0...\(levels - 1)")
                }
            default:
                throw FlowError.format("\(label) holds \(type.description) elements; expected integers or floats")
            }
            let labelValues = try group.readInt64s("labels", maxElements: Limits.maxDataElements)
            guard labelValues.shape.count == 1 else {
                throw FlowError.format("\(source) dataset /\(split.rawValue)/labels has shape \(labelValues.shape); expected [n]")
            }
            var data = ImageData(images: try Tensor(shape: shape, scalars: values),
                                 labels: labelValues.values.map { Int($0) }, levels: levels)
            try validate(data, name: name, source: source, limit: limit)
            if let limit, limit < shape[0] {
                let kept = limit * data.images.eventSize
                data.images = try Tensor(shape: [limit] + shape.dropFirst(), scalars: Array(values.prefix(kept)))
                data.labels = Array(data.labels.prefix(limit))
            }
            return data
        } catch let e as HDF5Error {
            throw FlowError.format("\(source): \(e.message)")
        }
    }

    // MARK: - Descriptions

    /// The images named by a ``DataSource`` description `fashion-mnist:SPLIT[:N]` or
    /// `digits:SPLIT[:N]` as `[n, 1, H, W]` levels; nil for any other description.
    static func images(described description: String) throws -> Tensor<Float>? {
        let prefixes = ["fashion-mnist:", "digits:"]
        guard prefixes.contains(where: description.hasPrefix) else { return nil }
        let (dataset, limit) = try parse(description)
        return try dataset.load(limit: limit).images
    }

    /// Parses `fashion-mnist:train|test[:N]` or `digits:train|val|test[:N]`.
    public static func parse(_ description: String) throws -> (dataset: ImageDataset, limit: Int?) {
        let fields = description.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let usage = "expected fashion-mnist:train|test[:N] or digits:train|val|test[:N]"
        guard (2...3).contains(fields.count) else {
            throw FlowError.invalidArgument("malformed data description '\(description)': \(usage)")
        }
        let dataset: ImageDataset
        switch fields[0] {
        case "fashion-mnist":
            guard let split = FashionMNISTSplit(rawValue: fields[1]) else {
                throw FlowError.invalidArgument("'\(description)': Fashion-MNIST has the splits train and test, not '\(fields[1])'")
            }
            dataset = .fashionMNIST(split: split)
        case "digits":
            guard let split = DigitsSplit(rawValue: fields[1]) else {
                throw FlowError.invalidArgument("'\(description)': the digits have the splits train, val and test, not '\(fields[1])'")
            }
            dataset = .digits(split: split)
        default:
            throw FlowError.invalidArgument("unknown image data set in '\(description)': \(usage)")
        }
        var limit: Int?
        if fields.count == 3, !fields[2].isEmpty {
            guard let n = Int(fields[2]) else {
                throw FlowError.invalidArgument("'\(description)': the image count '\(fields[2])' is not an integer; \(usage)")
            }
            limit = n
        }
        return (dataset, limit)
    }

    // MARK: - Helpers

    private static func exists(_ path: String) -> Bool {
        !path.isEmpty && !path.utf8.contains(0) && access(path, F_OK) == 0
    }

    private static func checkLimit(_ limit: Int?, _ name: String) throws {
        if let limit, limit < 1 {
            throw FlowError.invalidArgument("\(name): the image count must be at least 1, got \(limit)")
        }
    }

    /// Images and labels agree in count, labels are 0...9, and `limit` did not ask for more than there is.
    private static func validate(_ data: ImageData, name: String, source: String, limit: Int?) throws {
        if data.images.batchCount != data.labels.count {
            throw FlowError.format("\(name): \(data.images.batchCount) images but \(data.labels.count) labels (\(source))")
        }
        if let i = data.labels.firstIndex(where: { !(0...9).contains($0) }) {
            throw FlowError.format("\(name): label \(data.labels[i]) of image \(i) is not in 0...9 (\(source))")
        }
        if let limit, limit > data.count {
            throw FlowError.invalidArgument("\(name) has \(data.count) images; \(limit) were asked for")
        }
    }
}

// MARK: - Padding and cropping

/// The height and width of an image.
public struct ImageSize: Hashable, Sendable, CustomStringConvertible {
    public var height: Int
    public var width: Int

    public init(height: Int, width: Int) {
        self.height = height
        self.width = width
    }

    /// A square size.
    public init(_ side: Int) {
        self.init(height: side, width: side)
    }

    public var description: String { "\(height)x\(width)" }
}

extension Tensor {
    /// The images of this `[n, C, H, W]` tensor centred on a larger canvas of `size` (at least
    /// `H×W` in both directions), the new pixels set to `value` (default 0, e.g. the background
    /// level of Fashion-MNIST; use the level the data treat as background).
    ///
    /// Centring: the top and left margins are `(newHeight − H) / 2` and `(newWidth − W) / 2`
    /// rounded down, so an odd difference puts the extra row at the bottom and the extra column at
    /// the right. ``cropped(to:)`` undoes it exactly: `x.padded(to: s).cropped(to: x's size) == x`.
    ///
    /// Likelihoods: a flow on padded images also models the constant margins. Bits per dimension
    /// are then averaged over `newHeight·newWidth` pixels, not `H·W`; compare with published
    /// numbers for the original size by rescaling the total (`bpd · 32·32 / (28·28)` for
    /// Fashion-MNIST padded to 32×32), which still credits the margins the model's bits for them.
    ///
    /// - Throws: ``FlowError/shapeMismatch(_:)`` unless the tensor has rank 4;
    ///   ``FlowError/invalidArgument(_:)`` if `size` is smaller than `H×W` in either direction;
    ///   ``FlowError/limitExceeded(_:)`` beyond ``Limits/maxDataElements`` elements.
    public func padded(to size: ImageSize, value: Scalar = 0) throws -> Tensor {
        let (n, c, h, w) = try imageDimensions("pad")
        guard size.height >= h, size.width >= w else {
            throw FlowError.invalidArgument(
                "cannot pad \(h)x\(w) images to \(size): padding only enlarges (use cropped(to:) to shrink)")
        }
        if size.height == h && size.width == w { return self }
        let out = try imageShape(n, c, size)
        let top = (size.height - h) / 2, left = (size.width - w) / 2
        var result = Tensor(shape: out, repeating: value)
        scalars.withUnsafeBufferPointer { src in
            result.scalars.withUnsafeMutableBufferPointer { dst in
                for plane in 0..<(n * c) {
                    for y in 0..<h {
                        let from = (plane * h + y) * w
                        let to = (plane * size.height + y + top) * size.width + left
                        for x in 0..<w { dst[to + x] = src[from + x] }
                    }
                }
            }
        }
        return result
    }

    /// The central `size` region of each image of this `[n, C, H, W]` tensor (`size` at most
    /// `H×W` in both directions). The top and left offsets are `(H − newHeight) / 2` and
    /// `(W − newWidth) / 2` rounded down, so an odd difference drops the extra row at the bottom and
    /// the extra column at the right (the inverse of ``padded(to:value:)``).
    ///
    /// - Throws: ``FlowError/shapeMismatch(_:)`` unless the tensor has rank 4;
    ///   ``FlowError/invalidArgument(_:)`` if `size` is larger than `H×W` in either direction or
    ///   not positive.
    public func cropped(to size: ImageSize) throws -> Tensor {
        let (n, c, h, w) = try imageDimensions("crop")
        guard size.height <= h, size.width <= w else {
            throw FlowError.invalidArgument(
                "cannot crop \(h)x\(w) images to \(size): cropping only shrinks (use padded(to:value:) to enlarge)")
        }
        if size.height == h && size.width == w { return self }
        let out = try imageShape(n, c, size)
        let top = (h - size.height) / 2, left = (w - size.width) / 2
        var result = Tensor(shape: out)
        scalars.withUnsafeBufferPointer { src in
            result.scalars.withUnsafeMutableBufferPointer { dst in
                for plane in 0..<(n * c) {
                    for y in 0..<size.height {
                        let from = (plane * h + y + top) * w + left
                        let to = (plane * size.height + y) * size.width
                        for x in 0..<size.width { dst[to + x] = src[from + x] }
                    }
                }
            }
        }
        return result
    }

    /// Pads in place (see ``padded(to:value:)``).
    public mutating func pad(to size: ImageSize, value: Scalar = 0) throws {
        self = try padded(to: size, value: value)
    }

    /// Crops in place (see ``cropped(to:)``).
    public mutating func crop(to size: ImageSize) throws {
        self = try cropped(to: size)
    }

    private func imageDimensions(_ operation: String) throws -> (Int, Int, Int, Int) {
        guard shape.count == 4 else {
            throw FlowError.shapeMismatch("cannot \(operation) a tensor of shape \(shape): expected images [n, C, H, W]")
        }
        return (shape[0], shape[1], shape[2], shape[3])
    }

    private func imageShape(_ n: Int, _ c: Int, _ size: ImageSize) throws -> [Int] {
        guard size.height > 0, size.width > 0 else {
            throw FlowError.invalidArgument("the image size \(size) is not positive")
        }
        let shape = [n, c, size.height, size.width]
        guard let count = Tensor.elementCount(shape), count <= Limits.maxDataElements else {
            throw FlowError.limitExceeded("images of shape \(shape) would hold more than \(Limits.maxDataElements) elements")
        }
        return shape
    }
}
