import Synchronization

/// What `sf_cancel` signals: a generation counter that ``cancel()`` advances. A ``CallScope``
/// remembers the generation it started in and counts as cancelled once the counter moved on, so
/// cancelling stops the calls that are running (or waiting for their model) and leaves the calls
/// that start afterwards alone.
///
/// Thread-safe and lock-free: ``cancel()`` may be called from any thread at any time, also while
/// another thread holds the model's lock.
public final class CancellationSource: Sendable {
    private let generation = Atomic<UInt64>(0)

    public init() {}

    /// The current generation.
    public var current: UInt64 { generation.load(ordering: .acquiring) }

    /// Cancels every call that started before this one returns.
    public func cancel() { generation.wrappingAdd(1, ordering: .releasing) }
}
