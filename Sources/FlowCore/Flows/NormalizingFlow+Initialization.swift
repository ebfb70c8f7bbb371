/// A layer whose parameters are initialised from data the first time it sees a batch (ActNorm).
public protocol DataDependentInitializable<Element>: AnyObject {
    associatedtype Element
    /// Whether data-dependent initialisation has run (persisted in model files).
    var isInitialized: Bool { get }
    /// Initialises from `count` rows that reach this layer.
    func initialize(from x: UnsafePointer<Element>, count: Int)
}

extension ActNorm: DataDependentInitializable {}

extension NormalizingFlow {
    /// Whether some layer (at any nesting depth) still waits for data-dependent initialisation.
    public var needsDataDependentInitialization: Bool { DataDependentInitialization.needed(layers) }

    /// Runs data-dependent initialisation (Glow's ActNorm init) on `count` rows of `x`: the rows
    /// go through the flow layer by layer, and each uninitialised layer is initialised from the
    /// rows that reach it, so its output has zero mean and unit variance per channel.
    /// Initialised layers are left alone. A conditional flow's layers see the rows' `context`.
    /// - Throws: ``FlowError/outOfMemory(_:)`` or ``FlowError/limitExceeded(_:)`` when the
    ///   scratch cannot be allocated (nothing is initialised then).
    public func initializeDataDependentLayers(_ x: UnsafePointer<Scalar>, count: Int, context: UnsafePointer<Scalar>? = nil) throws {
        guard count > 0, needsDataDependentInitialization else { return }
        guard let encoder = contextEncoder else { return try DataDependentInitialization.run(layers, x, count: count) }
        let workspace = Workspace()
        try workspace.reserve(bytes: Arena.bytes(Scalar.self, count * encoder.outputSize) + encoder.workspaceBytes(rows: count))
        var arena = workspace.arena()
        let encoded = arena.take(Scalar.self, count * encoder.outputSize)
        encoder.encode(context, rows: count, into: encoded, arena: &arena)
        try DataDependentInitialization.run(layers, x, count: count, context: UnsafePointer(encoded))
    }
}

/// Data-dependent initialisation over a list of layers, recursing into containers.
enum DataDependentInitialization {
    static func needed<T>(_ layers: [any FlowLayer<T>]) -> Bool {
        layers.contains { layer in
            if let d = layer as? any DataDependentInitializable<T>, !d.isInitialized { return true }
            if let c = layer as? any LayerContainer<T> { return needed(c.sublayers) }
            return false
        }
    }

    /// Pushes a copy of the rows through `layers`, initialising each layer that needs it first.
    static func run<T: FlowScalar>(_ layers: [any FlowLayer<T>], _ x: UnsafePointer<T>, count: Int,
                                   context: UnsafePointer<T>? = nil) throws {
        guard count > 0, needed(layers), let first = layers.first else { return }
        let d = first.eventSize
        var rows = [T](UnsafeBufferPointer(start: x, count: count * d))
        var logDet = [Double](repeating: 0, count: count)
        let bytes = layers.map { $0.workspaceBytes(count: count) }.max() ?? 0
        let workspace = Workspace()
        try workspace.reserve(bytes: bytes)
        try rows.withUnsafeMutableBufferPointer { r in
            try logDet.withUnsafeMutableBufferPointer { ld in
                for layer in layers {
                    if let layer = layer as? any DataDependentInitializable<T>, !layer.isInitialized {
                        layer.initialize(from: r.baseAddress!, count: count)
                    }
                    if let container = layer as? any LayerContainer<T> {
                        try container.initializeDataDependentSublayers(r.baseAddress!, count: count)
                    }
                    var arena = workspace.arena()
                    if let conditional = layer as? any ConditionalLayer<T>, conditional.contextFeatures > 0 {
                        conditional.forward(r.baseAddress!, count: count, context: context, logDet: ld.baseAddress!, arena: &arena)
                    } else {
                        layer.forward(r.baseAddress!, count: count, logDet: ld.baseAddress!, arena: &arena)
                    }
                }
            }
        }
    }
}
