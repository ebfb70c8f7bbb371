import FlowCore
import FlowHDF5
/// What a model file says about itself, beyond the model (for `swiftflows inspect`).
public struct ModelFileInfo: Sendable {
    /// `format_version` as `[major, minor]`.
    public var formatVersion: [Int]
    /// The SwiftFlows version that wrote the file.
    public var libraryVersion: String
    /// Whether the file is a training checkpoint (has a `/training` group).
    public var isCheckpoint: Bool
    /// Checkpoints: epochs finished and optimiser steps taken.
    public var epochsCompleted: Int?
    public var steps: Int?
    /// Checkpoints: the best validation NLL so far (nil if none).
    public var bestValidationNLL: Double?

    init(formatVersion: [Int], libraryVersion: String, isCheckpoint: Bool) {
        self.formatVersion = formatVersion
        self.libraryVersion = libraryVersion
        self.isCheckpoint = isCheckpoint
    }
}

extension ModelFile {
    /// Loads the model at `path` together with the file's own metadata.
    public static func loadWithInfo(path: String) throws -> (NormalizingFlow<Float>, ModelFileInfo) {
        try withFile(path: path) { file, source in
            let flow = try read(file, source: source)
            do {
                let root = try file.root
                var info = ModelFileInfo(formatVersion: try root.intsAttribute("format_version", maxCount: 8).map { Int($0) },
                                         libraryVersion: try root.stringAttribute("library_version", maxLength: 256),
                                         isCheckpoint: root.isGroup("training"))
                if info.isCheckpoint {
                    let g = try root.openGroup("training")
                    info.epochsCompleted = Int(try g.intAttribute("epochs_completed"))
                    info.steps = Int(try g.intAttribute("step"))
                    let best = try g.doubleAttribute("best_validation_nll")
                    info.bestValidationNLL = best.isFinite ? best : nil
                }
                return (flow, info)
            } catch let e as HDF5Error {
                throw FlowError.format("\(source): \(e.message)")
            }
        }
    }
}
