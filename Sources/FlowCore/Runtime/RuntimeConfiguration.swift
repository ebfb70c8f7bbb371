/// Every process-wide setting of SwiftFlows, with the environment variable that sets it.
///
/// The engine reads no environment: ``FlowRuntime/configuration`` starts from the defaults, and
/// the hosts (the C library, the command-line tool, the benchmark harness) install the process
/// environment's configuration once, through FlowEnvironment
/// (`FlowRuntime.configureFromProcessEnvironment()`), which reads the variables below with
/// ``init(environment:)``. Programs embedding the engine may install any configuration; the C
/// API's `sf_set_num_threads` changes ``threads``. No setting changes a result's bits except
/// ``winograd`` (the last bits of float32 image conditioners) — the thread count never does.
///
/// | variable | setting | default |
/// |---|---|---|
/// | `SWIFTFLOWS_NUM_THREADS` | ``threads`` (1...256) | the number of online processors |
/// | `SWIFTFLOWS_TAPE_BUDGET` | ``tapeBudget`` (bytes, ≥ 0) | 64 MiB |
/// | `SWIFTFLOWS_WINOGRAD` | ``winograd`` (`0` switches it off) | on |
/// | `SWIFTFLOWS_FASHION_MNIST_DIR` | ``fashionMNISTDirectory`` | none (the Debian package's directory) |
/// | `SWIFTFLOWS_DIGITS_PATH` | ``digitsPath`` | none (`build/data/digits.h5`) |
/// | `SWIFTFLOWS_MEMORY_LIMIT` | ``memoryLimit`` (bytes, ≥ 1 MiB) | 2 GiB (``MemoryBudget/defaultLimit``) |
///
/// Malformed or out-of-range values are ignored (the default applies).
public struct RuntimeConfiguration: Equatable, Sendable {
    /// Worker threads for batch computations (1...256); nil: one per online processor.
    public var threads: Int?
    /// Most bytes of layer tapes one chunk's gradient pass keeps between its forward and
    /// backward passes (``NormalizingFlow/tapeBudget``); beyond it, layers recompute in the
    /// backward pass what they need. 0 turns tapes off (for benchmarks).
    public var tapeBudget: Int = 64 << 20
    /// Whether float32 image conditioners run their last 3×3 convolution by Winograd
    /// F(m×m, 3×3) (``ConvNet/usesWinograd``); off only to compare the two in benchmarks.
    public var winograd: Bool = true
    /// Where FlowData's image readers find Fashion-MNIST (nil: their default).
    public var fashionMNISTDirectory: String?
    /// Where FlowData's image readers find the digits file (nil: their default).
    public var digitsPath: String?
    /// Most bytes one call may allocate (``MemoryBudget``): a model built or loaded, a training
    /// run's state, an evaluation's scratch.
    public var memoryLimit: Int = MemoryBudget.defaultLimit

    /// The built-in defaults.
    public init() {}

    /// The defaults, overridden by the variables of the table above that `environment` holds.
    public init(environment: [String: String]) {
        if let text = environment["SWIFTFLOWS_NUM_THREADS"], let n = Int(text), n > 0 { threads = Swift.min(n, 256) }
        if let text = environment["SWIFTFLOWS_TAPE_BUDGET"], let bytes = Int(text), bytes >= 0 { tapeBudget = bytes }
        if environment["SWIFTFLOWS_WINOGRAD"] == "0" { winograd = false }
        if let dir = environment["SWIFTFLOWS_FASHION_MNIST_DIR"], !dir.isEmpty { fashionMNISTDirectory = dir }
        if let path = environment["SWIFTFLOWS_DIGITS_PATH"], !path.isEmpty { digitsPath = path }
        if let text = environment["SWIFTFLOWS_MEMORY_LIMIT"], let bytes = Int(text), bytes >= MemoryBudget.minimumLimit {
            memoryLimit = bytes
        }
    }

    /// The names of the variables ``init(environment:)`` reads.
    public static let variables = [
        "SWIFTFLOWS_NUM_THREADS", "SWIFTFLOWS_TAPE_BUDGET", "SWIFTFLOWS_WINOGRAD", "SWIFTFLOWS_FASHION_MNIST_DIR",
        "SWIFTFLOWS_DIGITS_PATH", "SWIFTFLOWS_MEMORY_LIMIT",
    ]
}
