import FlowCore
import FlowHDF5
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `read(2)` (a free function, so the method ``DataFile/read(_:)`` does not shadow it).
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(fd, buffer, count)
}

/// Plain POSIX file access shared by the data readers and writers: an open, regular file
/// read in exact chunks, and atomic replacement of a file by new bytes.
///
/// Every failure is a ``FlowError/io(_:)`` naming the path and `strerror(errno)`, except sizes
/// above ``Limits/maxDataFileBytes`` (``FlowError/limitExceeded(_:)``).
final class DataFile {
    /// The path as given, for messages.
    let path: String
    /// The file's length in bytes (from `fstat` at open).
    let size: Int
    private var descriptor: Int32
    /// Bytes consumed by ``read(_:)`` so far.
    private(set) var offset = 0

    /// Opens the regular file at `path` read-only. The open does not block (`O_NONBLOCK`: a FIFO
    /// without a writer would block `open` itself); anything but a regular file is refused.
    init(path: String) throws {
        if path.isEmpty { throw FlowError.io("cannot open data file: empty path") }
        if path.utf8.contains(0) { throw FlowError.io("cannot open '\(path)': the path contains a NUL byte") }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        if fd < 0 { throw FlowError.io("cannot open '\(path)': \(String(cString: strerror(errno)))") }
        var st = stat()
        if fstat(fd, &st) != 0 {
            let message = String(cString: strerror(errno))
            _ = close(fd)
            throw FlowError.io("cannot open '\(path)': \(message)")
        }
        if (st.st_mode & S_IFMT) != S_IFREG {
            _ = close(fd)
            throw FlowError.io("cannot open '\(path)': not a regular file")
        }
        self.path = path
        self.descriptor = fd
        self.size = Int(st.st_size)
    }

    deinit {
        if descriptor >= 0 { _ = close(descriptor) }
    }

    /// Bytes after the current offset.
    var remaining: Int { size - offset }

    /// Reads exactly `count` bytes at the current offset (the caller has checked `count` against
    /// ``remaining``); a short read means the file changed while being read.
    func read(_ count: Int) throws -> [UInt8] {
        precondition(count >= 0)
        if count == 0 { return [] }
        var failure: String?
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var done = 0
            while done < count {
                let n = systemRead(descriptor, buffer.baseAddress! + done, count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = String(cString: strerror(errno))
                    break
                }
                if n == 0 {
                    failure = "the file ended after \(offset + done) bytes (was it truncated while being read?)"
                    break
                }
                done += n
            }
            initialized = failure == nil ? count : 0
        }
        if let failure { throw FlowError.io("cannot read '\(path)': \(failure)") }
        offset += count
        return bytes
    }

    /// The whole file (at most `maxBytes`, else ``FlowError/limitExceeded(_:)``).
    static func readAll(_ path: String, maxBytes: Int = Limits.maxDataFileBytes) throws -> [UInt8] {
        let file = try DataFile(path: path)
        if file.size > maxBytes {
            throw FlowError.limitExceeded("'\(path)' has \(file.size) bytes, more than the limit of \(maxBytes)")
        }
        return try file.read(file.size)
    }

    /// Replaces the file at `path` by `bytes` atomically (temporary file, fsync, rename; see
    /// `writeFileAtomically(_:to:)`), reporting failures as ``FlowError/io(_:)``.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        do {
            try writeFileAtomically(bytes, to: path)
        } catch let e as HDF5Error {
            throw FlowError.io(e.message)
        }
    }
}
