/// Every failure the engine reports. The C API maps each case to one `sf_status` code
/// (see include/swiftflows.h), and the message to `sf_last_error()`.
public enum FlowError: Error, Equatable, CustomStringConvertible {
    /// An argument is out of range or inconsistent (sizes, counts, options).
    case invalidArgument(String)
    /// A buffer, tensor or dataset has the wrong shape.
    case shapeMismatch(String)
    /// The JSON architecture spec is malformed or describes an impossible flow.
    case invalidSpec(String)
    /// A file could not be read or written (missing, permissions, disk full).
    case io(String)
    /// A model file is not a valid SwiftFlows model (missing groups, wrong types, bad values).
    case format(String)
    /// A model file is damaged: its SwiftFlows checksum does not match (flipped, missing or added
    /// bytes), or its HDF5 structures are inconsistent (docs/model-format.md, "File checksum").
    case corrupt(String)
    /// A model file's format major version is newer than this library reads.
    case unsupportedVersion(String)
    /// A model file or spec names a layer or distribution type this library does not know.
    case unknownType(String)
    /// A size limit was exceeded (dimensions, parameter counts, string lengths, nesting).
    case limitExceeded(String)
    /// A computation produced non-finite values where finite ones are required.
    case numerical(String)
    /// A long operation was cancelled by the caller (a progress callback or `sf_cancel`).
    case cancelled(String)
    /// Memory could not be allocated (the system refused it; see ``MemoryBudget``).
    case outOfMemory(String)

    public var message: String {
        switch self {
        case .invalidArgument(let m), .shapeMismatch(let m), .invalidSpec(let m), .io(let m),
             .format(let m), .corrupt(let m), .unsupportedVersion(let m), .unknownType(let m), .limitExceeded(let m),
             .numerical(let m), .cancelled(let m), .outOfMemory(let m):
            return m
        }
    }

    public var description: String { message }
}

/// Hard limits checked before anything is allocated from untrusted sizes (spec JSON, model files,
/// C callers). Generous for real models, small enough that a hostile file cannot exhaust memory.
public enum Limits {
    /// Most rows one toy data set generates: 2²⁴ ≈ 16.8 million (128 MiB of float32 pairs).
    public static let maxToySamples = 1 << 24
    /// Largest event size (elements per sample).
    public static let maxEventSize = 1 << 24
    /// Most context scalars per row of a conditional flow.
    public static let maxContextSize = 1 << 16
    /// Largest rank of an event shape.
    public static let maxEventRank = 4
    /// Most layers in one flow.
    public static let maxLayers = 4096
    /// Deepest nesting of container layers (multi-scale levels).
    public static let maxLayerNesting = 8
    /// Widest hidden layer of a conditioner.
    public static let maxHiddenWidth = 1 << 16
    /// Most hidden layers in one conditioner.
    public static let maxHiddenLayers = 64
    /// Most residual blocks in one residual MADE (two hidden layers each).
    public static let maxResidualBlocks = 32
    /// Most learnable parameters in one layer / one model (``MemoryBudget/limit`` usually binds
    /// first: a model's bytes are limited too).
    public static let maxParametersPerLayer = 1 << 28
    public static let maxParameters = 1 << 30
    /// Longest spec JSON text (bytes) and deepest nesting.
    public static let maxSpecBytes = 64 << 20
    public static let maxSpecDepth = 32
    /// Largest magnitude of a log-scale parameter (`log_scale` of `diagonal_normal`, `actnorm`,
    /// `lu_linear` and the LU `invertible_conv1x1`): e^±30 keeps every scale and its inverse well
    /// inside the float32 range.
    public static let maxLogScale = 30.0
    /// Largest condition number ‖W‖₁·‖W⁻¹‖₁ of an `lu_linear` or `invertible_conv1x1` weight
    /// (plain or LU): beyond it the float32 inverse no longer undoes the forward map.
    public static let maxConditionNumber = 1e6
    /// Most steps one ODE solve of a `cnf` layer may take (its `max_steps`).
    public static let maxSolverSteps = 100_000
}
