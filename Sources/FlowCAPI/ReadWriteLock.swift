#if canImport(Glibc)
import Glibc
#endif

/// A writer-preferring readers-writer lock: many concurrent readers (inference) or one writer
/// (training), and a waiting writer goes first.
///
/// glibc's `pthread_rwlock_t` prefers readers by default: with readers arriving back to back (a
/// server calling `sf_log_prob` from 8 threads), a writer waits for a moment when none is inside,
/// which may never come — `sf_train` waited more than 10 minutes. Here a reader that arrives
/// while a writer waits queues behind it, so the writer waits only for the readers already
/// inside; readers that queued behind the writer all go in together once it leaves. Readers are
/// not recursive: a thread holding the read lock must not take it again (the C API never does).
final class ReadWriteLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let readersMayEnter: UnsafeMutablePointer<pthread_cond_t>
    private let writerMayEnter: UnsafeMutablePointer<pthread_cond_t>
    /// Readers inside.
    private var readers = 0
    /// Whether a writer is inside.
    private var writing = false
    /// Writers waiting to enter.
    private var waitingWriters = 0

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        readersMayEnter = .allocate(capacity: 1)
        readersMayEnter.initialize(to: pthread_cond_t())
        pthread_cond_init(readersMayEnter, nil)
        writerMayEnter = .allocate(capacity: 1)
        writerMayEnter.initialize(to: pthread_cond_t())
        pthread_cond_init(writerMayEnter, nil)
    }

    deinit {
        pthread_cond_destroy(writerMayEnter)
        writerMayEnter.deallocate()
        pthread_cond_destroy(readersMayEnter)
        readersMayEnter.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always)
    func withReadLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        while writing || waitingWriters > 0 { pthread_cond_wait(readersMayEnter, mutex) }
        readers += 1
        pthread_mutex_unlock(mutex)
        defer {
            pthread_mutex_lock(mutex)
            readers -= 1
            if readers == 0, waitingWriters > 0 { pthread_cond_signal(writerMayEnter) }
            pthread_mutex_unlock(mutex)
        }
        return try body()
    }

    @inline(__always)
    func withWriteLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        waitingWriters += 1
        while writing || readers > 0 { pthread_cond_wait(writerMayEnter, mutex) }
        waitingWriters -= 1
        writing = true
        pthread_mutex_unlock(mutex)
        defer {
            pthread_mutex_lock(mutex)
            writing = false
            // Readers that queued behind this writer go in now, unless another writer waits.
            if waitingWriters > 0 { pthread_cond_signal(writerMayEnter) } else { pthread_cond_broadcast(readersMayEnter) }
            pthread_mutex_unlock(mutex)
        }
        return try body()
    }
}
