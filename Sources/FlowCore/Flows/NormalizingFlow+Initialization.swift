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
    /// Whether some layer still waits for data-dependent initialisation.
    public var needsDataDependentInitialization: Bool {
        layers.contains { ($0 as? any DataDependentInitializable)?.isInitialized == false }
    }

    /// Runs data-dependent initialisation (Glow's ActNorm init) on `count` rows of `x`: the rows
    /// go through the flow layer by layer, and each uninitialised layer is initialised from the
    /// rows that reach it, so its output has zero mean and unit variance per channel.
    /// Initialised layers are left alone.
    public func initializeDataDependentLayers(_ x: UnsafePointer<Scalar>, count: Int) {
        guard count > 0, needsDataDependentInitialization else { return }
        let d = eventSize
        var rows = [Scalar](UnsafeBufferPointer(start: x, count: count * d))
        var logDet = [Double](repeating: 0, count: count)
        let bytes = layers.map { $0.workspaceBytes(count: count) }.max() ?? 0
        let workspace = Workspace()
        workspace.reserve(bytes: bytes)
        rows.withUnsafeMutableBufferPointer { r in
            logDet.withUnsafeMutableBufferPointer { ld in
                for layer in layers {
                    if let layer = layer as? any DataDependentInitializable<Scalar>, !layer.isInitialized {
                        layer.initialize(from: r.baseAddress!, count: count)
                    }
                    var arena = workspace.arena()
                    layer.forward(r.baseAddress!, count: count, logDet: ld.baseAddress!, arena: &arena)
                }
            }
        }
    }
}
