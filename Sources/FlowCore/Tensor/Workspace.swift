
/// Reusable scratch memory for one thread's batch computation.
///
/// A flow asks every layer for the bytes it needs at a given chunk size
/// (``Bijection/workspaceBytes(count:)``), reserves the maximum once, and hands the workspace to
/// each layer in turn. A layer carves its temporaries from an ``Arena`` over it, so a steady-state
/// call allocates nothing. A workspace is used by one thread at a time; flows keep a pool.
public final class Workspace {
    public private(set) var capacity = 0
    private var storage: UnsafeMutableRawPointer?

    public init() {}

    deinit { storage.map { MemoryBudget.free($0) } }

    /// Ensures at least `bytes` of scratch; earlier pointers are invalid after a growth.
    /// - Throws: ``FlowError/limitExceeded(_:)`` past ``MemoryBudget/limit`` (charged to the
    ///   calling thread's ledger, if any), ``FlowError/outOfMemory(_:)`` when the allocation
    ///   fails; the workspace is then empty.
    public func reserve(bytes: Int) throws {
        guard bytes > capacity else { return }
        storage.map { MemoryBudget.free($0) }
        storage = nil
        capacity = 0
        let (rounded, overflow) = bytes.addingReportingOverflow(4095)
        guard !overflow else { throw FlowError.limitExceeded("scratch of \(bytes) bytes overflows the address space") }
        let size = rounded & ~4095
        storage = UnsafeMutableRawPointer(try MemoryBudget.allocate(UInt8.self, count: size, "\(size) bytes of scratch"))
        capacity = size
    }

    /// A fresh bump allocator over the whole workspace.
    public func arena() -> Arena {
        Arena(base: storage ?? UnsafeMutableRawPointer(bitPattern: 64)!, capacity: capacity)
    }
}

/// A bump allocator over a ``Workspace``: `take` hands out 64-byte-aligned, uninitialised slices.
public struct Arena {
    let base: UnsafeMutableRawPointer
    let capacity: Int
    private(set) var offset = 0

    init(base: UnsafeMutableRawPointer, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    /// The bytes ``take(_:_:)`` consumes for `count` elements of `T`.
    @inlinable @inline(__always)
    public static func bytes<T>(_: T.Type, _ count: Int) -> Int {
        (count * MemoryLayout<T>.stride + 63) & ~63
    }

    /// `count` uninitialised elements of `T`. The workspace must have been reserved with the
    /// owning layer's ``Bijection/workspaceBytes(count:)``; exceeding it is a programming error.
    @inline(__always)
    public mutating func take<T>(_ type: T.Type, _ count: Int) -> UnsafeMutablePointer<T> {
        let size = Arena.bytes(type, count)
        assert(offset + size <= capacity, "workspace under-reserved")
        let p = (base + offset).bindMemory(to: T.self, capacity: Swift.max(count, 1))
        offset += size
        return p
    }
}
