#if canImport(Glibc)
import Glibc
#endif

/// Which gradient buffer of every ``Parameter`` the calling thread accumulates into.
///
/// Slot 0 is ``Parameter``'s own gradient. Parallel gradient passes give each chunk of a batch
/// its own slot (1, 2, …) so chunks never write the same memory, then add the slots into slot 0
/// in chunk order: the sum's order is fixed by the chunking alone, so gradients are
/// bit-identical for any thread count.
enum GradientSlot {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// The calling thread's slot (0 unless inside ``with(_:_:)``).
    @inline(__always) static var current: Int {
        Int(bitPattern: pthread_getspecific(key))
    }

    /// Runs `body` with the calling thread accumulating into `slot`.
    static func with<R>(_ slot: Int, _ body: () throws -> R) rethrows -> R {
        let previous = pthread_getspecific(key)
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: slot))
        defer { pthread_setspecific(key, previous) }
        return try body()
    }
}
