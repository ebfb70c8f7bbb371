import FlowCore
import FlowHDF5
import Glibc

/// Reading and writing SwiftFlows model files: the HDF5 schema of docs/model-format.md.
///
/// Writers build the whole file in memory (HDF5's core driver), then either hand out the image
/// or write it beside the target and rename it into place, so an interrupted save never damages
/// an existing model. Readers validate every attribute, dataset shape and size before allocating.
public enum ModelFile {
    /// The `format` attribute of every model file.
    public static let formatName = "swiftflows-model"
    /// The format version this library writes; it reads any file of the same major version.
    public static let formatVersion = (major: 1, minor: 1)
    /// Library version written into files and reported by the C API.
    public static let libraryVersion = "0.1.0"

    // MARK: Writing

    /// The model as an HDF5 file image.
    public static func image(of flow: NormalizingFlow<Float>) throws -> [UInt8] {
        try image(of: flow, extra: nil)
    }

    /// The model as an HDF5 file image, with `extra` adding groups beside the model's (training
    /// checkpoints add `/training`).
    static func image(of flow: NormalizingFlow<Float>, extra: ((HDF5Group) throws -> Void)?) throws -> [UInt8] {
        // HDF5's in-memory file and the image copied out of it hold the parameters twice.
        try MemoryBudget.requireAvailable(2 * 4 * flow.parameterCount + (1 << 20), "the file image of the model")
        do {
            let file = try HDF5File.createInMemory(userBlock: FileIntegrity.userBlockSize)
            let root = try file.root
            try write(flow, into: root)
            try extra?(root)
            var bytes = try file.fileImage()
            file.close()
            try FileIntegrity.seal(&bytes)
            return bytes
        } catch let e as HDF5Error {
            throw FlowError.io("cannot serialise the model: \(e.message)")
        }
    }

    /// Saves the model to `path` atomically (temporary file, fsync, rename). `path` must name a
    /// regular file or nothing; a symbolic link is followed to the regular file it names
    /// (``checkSaveTarget(_:)``).
    public static func save(_ flow: NormalizingFlow<Float>, to path: String) throws {
        try save(flow, to: path, extra: nil)
    }

    /// Throws ``FlowError/io(_:)`` unless a save may replace `path`: a regular file, nothing yet,
    /// or a symbolic link to an existing regular file (FIFOs, devices, sockets and directories
    /// are refused).
    public static func checkSaveTarget(_ path: String) throws {
        do {
            try FlowHDF5.checkSaveTarget(path)
        } catch let e as HDF5Error {
            throw FlowError.io(e.message)
        }
    }

    /// Saves the model and `extra` groups atomically.
    static func save(_ flow: NormalizingFlow<Float>, to path: String, extra: ((HDF5Group) throws -> Void)?) throws {
        let bytes = try image(of: flow, extra: extra)
        do {
            try writeFileAtomically(bytes, to: path)
        } catch let e as HDF5Error {
            throw FlowError.io("cannot save '\(path)': \(e.message)")
        }
    }

    private static func write(_ flow: NormalizingFlow<Float>, into root: HDF5Group) throws {
        try root.setAttribute("format", string: formatName)
        try root.setAttribute("format_version", ints: [Int64(formatVersion.major), Int64(formatVersion.minor)])
        try root.setAttribute("library_version", string: libraryVersion)
        try root.setAttribute("event_shape", ints: flow.eventShape.map(Int64.init))
        try root.setAttribute("spec", string: flow.spec.description)

        let base = try root.createGroup("base")
        let baseType = Swift.type(of: flow.base)
        try base.setAttribute("type", string: baseType.typeName)
        let baseConfig = flow.base.config
        for hp in baseType.hyperParameters {
            guard let value = baseConfig[hp.name] else { continue }
            try writeHyperParameter(hp, value, to: base)
        }
        try writeParameters(flow.base.parameters, to: base)

        try writeLayers(flow.layers, into: try root.createGroup("layers"))
        if let encoder = flow.contextEncoder { try writeContext(encoder, into: root) }
    }

    /// The `/context` group of a conditional flow: its size, standardisation and embedding.
    private static func writeContext(_ encoder: ContextEncoder<Float>, into root: HDF5Group) throws {
        let g = try root.createGroup("context")
        try g.setAttribute("size", int: Int64(encoder.inputSize))
        if let mean = encoder.mean { try g.writeDataset("mean", doubles: mean, shape: [mean.count]) }
        if let scale = encoder.scale { try g.writeDataset("scale", doubles: scale, shape: [scale.count]) }
        guard let embedding = encoder.config["embedding"]?.objectValue else { return }
        let e = try g.createGroup("embedding")
        try e.setAttribute("hidden", ints: (embedding["hidden"]?.intArrayValue ?? []).map(Int64.init))
        try e.setAttribute("activation", string: embedding["activation"]?.stringValue ?? "")
        try e.setAttribute("features", int: Int64(embedding["features"]?.intValue ?? 0))
        try writeParameters(encoder.parameters, to: e)
    }

    /// The context encoder of `/context` (nil when the file has no such group: unconditional).
    private static func readContext(_ root: HDF5Group) throws -> ContextEncoder<Float>? {
        guard root.isGroup("context") else { return nil }
        let g = try root.openGroup("context")
        let size = try g.intAttribute("size")
        guard size >= 1, size <= Int64(Limits.maxContextSize) else {
            throw FlowError.format("/context: size \(size) is outside 1...\(Limits.maxContextSize)")
        }
        var config: [String: JSONValue] = ["size": .number(Double(size))]
        for name in ["mean", "scale"] where g.isDataset(name) {
            let values = try g.readDoubles(name, expectedShape: [Int(size)], maxElements: Int(size)).values
            config[name] = .array(values.map { .number($0) })
        }
        var embeddingGroup: HDF5Group?
        if g.isGroup("embedding") {
            let e = try g.openGroup("embedding")
            config["embedding"] = .object([
                "hidden": JSONValue(try e.intsAttribute("hidden", maxCount: Limits.maxHiddenLayers + 1).map { Int(clamping: $0) }),
                "activation": .string(try e.stringAttribute("activation", maxLength: 64)),
                "features": .number(Double(try e.intAttribute("features"))),
            ])
            embeddingGroup = e
        }
        let encoder: ContextEncoder<Float>
        do {
            encoder = try ContextEncoder(config: config, seed: 0)
        } catch let error as FlowError {
            throw FlowError.format("/context: \(error.message)")
        }
        if let embeddingGroup { try readParameters(encoder.parameters, from: embeddingGroup) }
        return encoder
    }

    /// Writes `layers` as groups `0000`, `0001`, … of `group` (with a `count` attribute);
    /// containers recurse into a `layers` subgroup of their own group.
    private static func writeLayers(_ layers: [any FlowLayer<Float>], into group: HDF5Group) throws {
        try group.setAttribute("count", int: Int64(layers.count))
        for (i, layer) in layers.enumerated() {
            let layerGroup = try group.createGroup(layerGroupName(i))
            let type = Swift.type(of: layer)
            try layerGroup.setAttribute("type", string: type.typeName)
            let config = layer.config
            for hp in type.hyperParameters where hp.kind != .layers {
                guard let value = config[hp.name] else { continue }
                try writeHyperParameter(hp, value, to: layerGroup)
            }
            if let container = layer as? any LayerContainer<Float> {
                try writeParameters(container.ownParameters, to: layerGroup)
                try writeLayers(container.sublayers, into: try layerGroup.createGroup("layers"))
            } else {
                try writeParameters(layer.parameters, to: layerGroup)
            }
        }
    }

    private static func writeHyperParameter(_ hp: HyperParameter, _ value: JSONValue, to group: HDF5Group) throws {
        switch hp.kind {
        case .int: try group.setAttribute(hp.name, int: Int64(value.intValue ?? 0))
        case .double: try group.setAttribute(hp.name, double: value.doubleValue ?? 0)
        case .string: try group.setAttribute(hp.name, string: value.stringValue ?? "")
        case .bool: try group.setAttribute(hp.name, int: value.boolValue == true ? 1 : 0)
        case .intList: try group.setAttribute(hp.name, ints: (value.intArrayValue ?? []).map(Int64.init))
        case .intArray:
            let values = (value.intArrayValue ?? []).map(Int64.init)
            try group.writeDataset(hp.name, int64s: values, shape: [values.count])
        case .layers:
            break  // written as the `layers` subgroup
        }
    }

    private static func writeParameters(_ parameters: [Parameter<Float>], to group: HDF5Group) throws {
        for p in parameters {
            try group.writeDataset(p.name, floats: UnsafeBufferPointer(p.values), shape: p.shape)
        }
    }

    /// `"0000"`, `"0001"`, … (at least four digits).
    static func layerGroupName(_ index: Int) -> String {
        let digits = String(index)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    // MARK: Reading

    /// Loads a model from the file at `path`.
    public static func load(path: String) throws -> NormalizingFlow<Float> {
        try withFile(path: path) { file, source in try read(file, source: source) }
    }

    /// Largest model file the loaders read (bytes).
    static let maxFileBytes = 1 << 34

    /// Reads the file at `path` (a readable regular file of at most ``maxFileBytes``), runs the
    /// pre-checks of ``FileIntegrity`` on its bytes and opens them as an HDF5 file image, which it
    /// passes with a description for messages to `body`. HDF5 parses exactly the bytes that were
    /// checked (the file may change on disk meanwhile). Everything the load allocates (the file's
    /// bytes, HDF5's copies, the model) is charged to one ``MemoryBudget`` ledger.
    static func withFile<T>(path: String, _ body: (HDF5File, String) throws -> T) throws -> T {
        try MemoryBudget.measure {
            let bytes = try readWholeFile(path)
            return try bytes.withUnsafeBytes { try withImage($0, source: "'\(path)'", body) }
        }.result
    }

    /// The pre-checks, then `body` with the bytes opened as an HDF5 file image (charging HDF5's
    /// two copies of the image to the ``MemoryBudget``).
    static func withImage<T>(_ image: UnsafeRawBufferPointer, source: String, _ body: (HDF5File, String) throws -> T) throws -> T {
        guard image.count > 0 else { throw FlowError.format("\(source) is empty") }
        guard image.count <= maxFileBytes else {
            throw FlowError.limitExceeded("\(source) is \(image.count) bytes, more than the limit of \(maxFileBytes)")
        }
        return try MemoryBudget.measure {
            do {
                try FileIntegrity.precheck(size: image.count) { offset, count in
                    Array(UnsafeRawBufferPointer(rebasing: image[offset..<Swift.min(offset + count, image.count)]))
                }
                _ = try FileIntegrity.check(image)
            } catch let e as FlowError {
                throw e.prefixed("\(source): ")
            }
            try MemoryBudget.charge(2 * image.count, "HDF5's copies of the \(image.count)-byte file image of \(source)")
            try MemoryBudget.requireAvailable(2 * image.count, "HDF5's copies of the file image of \(source)")
            let file: HDF5File
            do { file = try HDF5File.openImage(image) } catch let e as HDF5Error {
                throw FlowError.format("\(source) is not a readable HDF5 file: \(e.message)")
            }
            return try body(file, source)
        }.result
    }

    /// The bytes of the regular file at `path`; ``FlowError/io(_:)`` naming the path otherwise.
    ///
    /// The path is opened without blocking (`O_NONBLOCK`: a FIFO without a writer or a device
    /// that waits for a carrier would block `open` itself) and refused unless it is a regular
    /// file; its first bytes must then be able to start a model file (``FileIntegrity/precheck(size:_:)``)
    /// before the rest is read, and its size is charged to the ``MemoryBudget``.
    static func readWholeFile(_ path: String) throws -> [UInt8] {
        func failure(_ why: String) -> FlowError { FlowError.io("cannot open '\(path)': \(why)") }
        if path.isEmpty { throw failure("empty path") }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw failure(String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw failure(String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw failure("not a regular file (\(fileKind(st.st_mode)))") }
        guard st.st_size >= 0, Int(st.st_size) <= maxFileBytes else {
            throw FlowError.limitExceeded("'\(path)' is \(st.st_size) bytes, more than the limit of \(maxFileBytes)")
        }
        let size = Int(st.st_size)
        do {
            try FileIntegrity.precheck(size: size) { offset, count in try readAt(fd, offset: offset, count: count, path: path) }
        } catch let e as FlowError {
            throw e.prefixed("'\(path)': ")
        }
        try MemoryBudget.charge(size, "the \(size) bytes of '\(path)'")
        try MemoryBudget.requireAvailable(size, "the \(size) bytes of '\(path)'")
        var bytes = [UInt8](repeating: 0, count: size)
        var offset = 0
        try bytes.withUnsafeMutableBytes { buffer in
            while offset < buffer.count {
                let n = Glibc.read(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FlowError.io("cannot read '\(path)': \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }  // the file shrank meanwhile
                offset += n
            }
        }
        if offset < bytes.count { bytes.removeSubrange(offset...) }
        return bytes
    }

    /// Up to `count` bytes of the open file `fd` at `offset` (fewer at its end).
    private static func readAt(_ fd: Int32, offset: Int, count: Int, path: String) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        try bytes.withUnsafeMutableBytes { buffer in
            while done < count {
                let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(offset + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FlowError.io("cannot read '\(path)': \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                done += n
            }
        }
        return Array(bytes.prefix(done))
    }

    /// What kind of file `mode` describes, for messages ("a FIFO", "a character device", …).
    static func fileKind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFDIR: return "a directory"
        case S_IFLNK: return "a symbolic link"
        default: return "not a regular file"
        }
    }

    /// Loads a model from an HDF5 file image in memory.
    public static func load(image: UnsafeRawBufferPointer) throws -> NormalizingFlow<Float> {
        guard image.count > 0 else { throw FlowError.format("the model image is empty") }
        return try withImage(image, source: "the model image") { file, source in try read(file, source: source) }
    }

    static func read(_ file: HDF5File, source: String) throws -> NormalizingFlow<Float> {
        do {
            return try readModel(try file.root)
        } catch let e as HDF5Error {
            throw FlowError.format("\(source): \(e.message)")
        } catch let e as FlowError {
            switch e {
            case .unsupportedVersion, .unknownType, .limitExceeded, .format, .corrupt, .numerical, .outOfMemory:
                throw e.prefixed("\(source): ")
            default: throw FlowError.format("\(source): \(e.message)")
            }
        }
    }

    private static func readModel(_ root: HDF5Group) throws -> NormalizingFlow<Float> {
        guard root.hasAttribute("format") else {
            throw FlowError.format("not a SwiftFlows model (no 'format' attribute on the root group)")
        }
        let format = try root.stringAttribute("format", maxLength: 256)
        guard format == formatName else {
            throw FlowError.format("not a SwiftFlows model (format is \"\(format)\", expected \"\(formatName)\")")
        }
        let version = try root.intsAttribute("format_version", maxCount: 8)
        guard version.count == 2, version.allSatisfy({ $0 >= 0 }) else {
            throw FlowError.format("format_version must be [major, minor], found \(version)")
        }
        guard version[0] <= Int64(formatVersion.major) else {
            throw FlowError.unsupportedVersion(
                "format version \(version[0]).\(version[1]) is newer than this library reads (\(formatVersion.major).x); upgrade SwiftFlows")
        }
        guard version[0] == Int64(formatVersion.major) else {
            throw FlowError.unsupportedVersion("format version \(version[0]).\(version[1]) is not supported")
        }
        let shape64 = try root.intsAttribute("event_shape", maxCount: Limits.maxEventRank + 1)
        guard shape64.allSatisfy({ $0 > 0 && $0 <= Int64(Limits.maxEventSize) }) else {
            throw FlowError.format("event_shape \(shape64) must hold positive extents")
        }
        let eventShape = shape64.map { Int($0) }
        let eventSize = try NormalizingFlow<Float>.validatedEventSize(eventShape)

        // The parts, charged to the memory budget as they are built (before any allocation).
        let (parts, charged) = try MemoryBudget.measure { try readParts(root, eventShape: eventShape, eventSize: eventSize) }
        let flow = try NormalizingFlow(eventShape: eventShape, layers: parts.layers, base: parts.base, context: parts.context,
                                       charged: charged)
        flow.parametersDidChange()
        // Values the flow cannot invert (a singular plain 1x1 convolution) do not load.
        for (i, layer) in flow.allLayers.enumerated() {
            if let constrained = layer as? any InvertibilityConstrained, let problem = constrained.invertibilityProblem {
                throw FlowError.numerical("layer \(i) (\(Swift.type(of: layer).typeName)): \(problem)")
            }
        }
        return flow
    }

    /// The base distribution, the layers and the context encoder of a model file, with their
    /// parameters read.
    private static func readParts(_ root: HDF5Group, eventShape: [Int], eventSize: Int) throws
        -> (base: any BaseDistribution<Float>, layers: [any FlowLayer<Float>], context: ContextEncoder<Float>?)
    {
        // The context front end (a conditional base reads its encoded rows), then the base.
        let context = try readContext(root)
        guard root.isGroup("base") else { throw FlowError.format("missing group /base") }
        let baseGroup = try root.openGroup("base")
        let base = try readBase(baseGroup, eventSize: eventSize, contextFeatures: context?.outputSize ?? 0)
        try readParameters(base.parameters, from: baseGroup)
        base.parametersDidChange()

        // Layers: first every spec object (recursively), then the layers, then their parameters.
        guard root.isGroup("layers") else { throw FlowError.format("missing group /layers") }
        let layersGroup = try root.openGroup("layers")
        let configs = try readLayerConfigs(layersGroup, depth: 0)
        let layers: [any FlowLayer<Float>]
        do {
            (layers, _) = try LayerRegistry.makeLayers(configs, eventShape: eventShape, seed: 0, context: "", Float.self)
        } catch let e as FlowError {
            throw e.prefixed("/layers: ")
        }
        try readLayerParameters(layers, from: layersGroup)
        return (base, layers, context)
    }

    /// The base distribution of `/base`: its `type` and every hyper-parameter its type declares,
    /// each required (a file states every setting of its base; a missing one is named).
    private static func readBase(_ group: HDF5Group, eventSize: Int, contextFeatures: Int) throws -> any BaseDistribution<Float> {
        let typeName = try group.stringAttribute("type", maxLength: 256)
        guard let type = BaseRegistry.baseType(typeName, Float.self) else {
            throw FlowError.unknownType("/base: unknown base distribution type \"\(typeName)\" (known: \(BaseRegistry.typeNames.joined(separator: ", ")))")
        }
        var config: [String: JSONValue] = ["type": .string(typeName)]
        for hp in type.hyperParameters {
            let present = hp.kind == .intArray ? group.isDataset(hp.name) : group.hasAttribute(hp.name)
            guard present else {
                throw FlowError.format("/base (\(typeName)): missing \(hp.kind == .intArray ? "dataset" : "attribute") \(hp.name) (\(hp.summary))")
            }
            config[hp.name] = try readHyperParameter(hp, from: group)
        }
        if contextFeatures == 0, type is any ConditionalBaseDistribution<Float>.Type {
            throw FlowError.format("/base (\(typeName)) reads the model's context, but the file has no /context group")
        }
        do {
            return try BaseRegistry.make(config, eventSize: eventSize, contextFeatures: contextFeatures, Float.self)
        } catch let e as FlowError {
            throw e.prefixed("/base: ")
        }
    }

    /// The spec objects of the layer groups `0000`, `0001`, … of `group` (exactly `count` of them),
    /// recursing into containers' `layers` subgroups up to ``Limits/maxLayerNesting`` levels.
    private static func readLayerConfigs(_ group: HDF5Group, depth: Int) throws -> [JSONValue] {
        guard depth <= Limits.maxLayerNesting else {
            throw FlowError.limitExceeded("\(group.path): layers nested deeper than \(Limits.maxLayerNesting) levels")
        }
        let count = try group.intAttribute("count")
        guard count >= 0, count <= Int64(Limits.maxLayers) else {
            throw FlowError.limitExceeded("\(group.path): count \(count) is outside 0...\(Limits.maxLayers)")
        }
        let children = try group.childNames(limit: Limits.maxLayers + 1)
        let expected = (0..<Int(count)).map(layerGroupName)
        guard Set(children) == Set(expected) else {
            let extra = Set(children).subtracting(expected).sorted().prefix(3)
            let missing = Set(expected).subtracting(children).sorted().prefix(3)
            throw FlowError.format("\(group.path): groups must be exactly 0000...\(layerGroupName(max(Int(count) - 1, 0))) (count = \(count))"
                + (missing.isEmpty ? "" : "; missing \(missing.joined(separator: ", "))")
                + (extra.isEmpty ? "" : "; unexpected \(extra.joined(separator: ", "))"))
        }
        var configs: [JSONValue] = []
        for name in expected {
            guard group.isGroup(name) else { throw FlowError.format("\(group.path)/\(name) is not a group") }
            let layerGroup = try group.openGroup(name)
            let typeName = try layerGroup.stringAttribute("type", maxLength: 256)
            guard let type = LayerRegistry.layerType(typeName, Float.self) else {
                throw FlowError.unknownType("\(layerGroup.path): unknown layer type \"\(typeName)\" (known: \(LayerRegistry.typeNames.joined(separator: ", ")))")
            }
            var config: [String: JSONValue] = ["type": .string(typeName)]
            for hp in type.hyperParameters {
                switch hp.kind {
                case .layers:
                    guard layerGroup.isGroup("layers") else { throw FlowError.format("missing group \(layerGroup.path)/layers") }
                    config[hp.name] = .array(try readLayerConfigs(try layerGroup.openGroup("layers"), depth: depth + 1))
                case .intArray where layerGroup.isDataset(hp.name):
                    config[hp.name] = try readHyperParameter(hp, from: layerGroup)
                case .intArray:
                    break
                default:
                    if layerGroup.hasAttribute(hp.name) { config[hp.name] = try readHyperParameter(hp, from: layerGroup) }
                }
            }
            configs.append(.object(config))
        }
        return configs
    }

    /// Reads each layer's parameters from its group (containers: own parameters, then recursion).
    private static func readLayerParameters(_ layers: [any FlowLayer<Float>], from group: HDF5Group) throws {
        for (i, layer) in layers.enumerated() {
            let layerGroup = try group.openGroup(layerGroupName(i))
            if let container = layer as? any LayerContainer<Float> {
                try readParameters(container.ownParameters, from: layerGroup)
                try readLayerParameters(container.sublayers, from: try layerGroup.openGroup("layers"))
            } else {
                try readParameters(layer.parameters, from: layerGroup)
            }
            layer.parametersDidChange()
        }
    }

    private static func readHyperParameter(_ hp: HyperParameter, from group: HDF5Group) throws -> JSONValue {
        switch hp.kind {
        case .int: return .number(Double(try group.intAttribute(hp.name)))
        case .double: return .number(try group.doubleAttribute(hp.name))
        case .string: return .string(try group.stringAttribute(hp.name, maxLength: 4096))
        case .bool:
            let v = try group.intAttribute(hp.name)
            guard v == 0 || v == 1 else { throw FlowError.format("\(group.path)/@\(hp.name) must be 0 or 1, found \(v)") }
            return .bool(v == 1)
        case .intList:
            let v = try group.intsAttribute(hp.name, maxCount: Limits.maxHiddenLayers)
            return .array(v.map { .number(Double($0)) })
        case .intArray:
            let (v, shape) = try group.readInt64s(hp.name, maxElements: Limits.maxEventSize)
            guard shape.count == 1 else {
                throw FlowError.format("\(group.path)/\(hp.name) must be 1-D, found shape \(shape)")
            }
            let bound = Int64(Limits.maxEventSize)  // not abs(): abs(Int64.min) traps
            guard v.allSatisfy({ $0 >= -bound && $0 <= bound }) else {
                throw FlowError.format("\(group.path)/\(hp.name) holds out-of-range values")
            }
            return .array(v.map { .number(Double($0)) })
        case .layers:
            throw FlowError.format("\(group.path)/@\(hp.name): nested layers are read from the layers subgroup")
        }
    }

    /// Reads each parameter's dataset: the shape the layer declares, finite values
    /// (``FlowError/numerical(_:)``), inside the parameter's ``Parameter/bound``
    /// (``FlowError/format(_:)``).
    private static func readParameters(_ parameters: [Parameter<Float>], from group: HDF5Group) throws {
        for p in parameters {
            guard group.isDataset(p.name) else {
                throw FlowError.format("missing dataset \(group.path)/\(p.name) (float32, shape \(p.shape))")
            }
            try MemoryBudget.requireAvailable(p.count * MemoryLayout<Float>.stride, "reading dataset \(group.path)/\(p.name)")
            let (values, _) = try group.readFloats(p.name, expectedShape: p.shape, maxElements: p.count)
            guard values.allSatisfy({ $0.isFinite }) else {
                throw FlowError.numerical("dataset \(group.path)/\(p.name) contains NaN or infinite values")
            }
            if let bound = p.bound, let i = values.firstIndex(where: { $0.magnitude > bound }) {
                throw FlowError.format("dataset \(group.path)/\(p.name)[\(i)] = \(values[i]) is outside ±\(bound), the range of a log-scale")
            }
            p.assign(values)
        }
    }
}

extension NormalizingFlow where Scalar == Float {
    /// Loads a model file (docs/model-format.md).
    public static func load(path: String) throws -> NormalizingFlow<Float> { try ModelFile.load(path: path) }

    /// Loads a model from an HDF5 file image.
    public static func load(image: [UInt8]) throws -> NormalizingFlow<Float> {
        try image.withUnsafeBytes { try ModelFile.load(image: $0) }
    }

    /// Saves the model atomically to `path`.
    public func save(to path: String) throws { try ModelFile.save(self, to: path) }

    /// The model as an HDF5 file image.
    public func fileImage() throws -> [UInt8] { try ModelFile.image(of: self) }
}
