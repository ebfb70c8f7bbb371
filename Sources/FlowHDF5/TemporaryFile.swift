#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The temporary file of one ``writeFileAtomically(_:to:)``: unnamed while it is written where the
/// file system allows (`O_TMPFILE`), else created exclusively under an unpredictable name.
///
/// It only ever removes the name it created itself (``discard()``), never another file.
struct TemporaryFile {
    /// The open descriptor (-1 once closed).
    private(set) var descriptor: Int32
    /// The name it has in its directory (nil while it has none).
    private(set) var path: String?

    /// `O_TMPFILE` (`__O_TMPFILE | O_DIRECTORY`), which the Swift Glibc module does not export.
    private static var unnamedFlag: Int32? {
        // __O_TMPFILE is 0o20000000 on these architectures (it differs on alpha, parisc, sparc).
        #if os(Linux) && (arch(x86_64) || arch(i386) || arch(arm64) || arch(arm) || arch(riscv64) || arch(s390x) || arch(powerpc64le))
        return 0o20_000_000 | O_DIRECTORY
        #else
        return nil
        #endif
    }

    /// A fresh name `<prefix><16 random hex digits>` (the system's random generator).
    static func randomName(_ prefix: String) -> String {
        let value = UInt64.random(in: 0...UInt64.max)
        let hex = String(value, radix: 16)
        return prefix + String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// A new temporary file in `directory`: unnamed if `unnamed` and the file system supports
    /// `O_TMPFILE`, else named `<prefix><random>` and created exclusively (not following links),
    /// with a new name on a collision.
    static func create(directory: String, prefix: String, context: String, unnamed: Bool = true) throws -> TemporaryFile {
        if unnamed, let flag = unnamedFlag {
            let fd = open(directory, flag | O_WRONLY | O_CLOEXEC, 0o666)
            if fd >= 0 { return TemporaryFile(descriptor: fd, path: nil) }
            // EOPNOTSUPP / EISDIR / EINVAL: the file system (or kernel) has no unnamed files.
            let code = errno
            if code != EOPNOTSUPP && code != EISDIR && code != EINVAL && code != ENOTSUP {
                throw HDF5Error("\(context): cannot create a temporary file in '\(directory)': \(String(cString: strerror(code)))")
            }
        }
        for _ in 0..<16 {
            let name = randomName(prefix)
            let fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o666)
            if fd >= 0 { return TemporaryFile(descriptor: fd, path: name) }
            if errno != EEXIST {
                throw HDF5Error("\(context): cannot create temporary file '\(name)': \(String(cString: strerror(errno)))")
            }
        }
        throw HDF5Error("\(context): cannot create a temporary file in '\(directory)': 16 random names were taken")
    }

    /// Gives an unnamed file a name for the rename: linked (via `/proc/self/fd`) under a fresh
    /// `<prefix><random>` name, exclusively. Where `/proc` is missing the bytes are copied into a
    /// named temporary file instead.
    mutating func name(prefix: String, context: String) throws {
        guard path == nil else { return }
        for _ in 0..<16 {
            let name = Self.randomName(prefix)
            if linkat(AT_FDCWD, "/proc/self/fd/\(descriptor)", AT_FDCWD, name, AT_SYMLINK_FOLLOW) == 0 {
                path = name
                return
            }
            if errno == EEXIST { continue }
            if errno == ENOENT || errno == EPERM || errno == EXDEV { return try copyIntoNamedFile(prefix: prefix, context: context) }
            throw HDF5Error("\(context): cannot link the temporary file as '\(name)': \(String(cString: strerror(errno)))")
        }
        throw HDF5Error("\(context): cannot name the temporary file: 16 random names were taken")
    }

    /// Copies the unnamed file's bytes into a new named temporary file, which replaces it.
    private mutating func copyIntoNamedFile(prefix: String, context: String) throws {
        var named = try Self.create(directory: "", prefix: prefix, context: context, unnamed: false)
        do {
            var offset: off_t = 0
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, $0.count, offset) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw HDF5Error("\(context): cannot read back the temporary file: \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                var done = 0
                while done < n {
                    let w = buffer.withUnsafeBytes { write(named.descriptor, $0.baseAddress! + done, n - done) }
                    if w < 0 {
                        if errno == EINTR { continue }
                        throw HDF5Error("\(context): cannot write the temporary file: \(String(cString: strerror(errno)))")
                    }
                    done += w
                }
                offset += off_t(n)
            }
            while fsync(named.descriptor) != 0 {
                if errno != EINTR { throw HDF5Error("\(context): cannot fsync the temporary file: \(String(cString: strerror(errno)))") }
            }
        } catch {
            named.discard()
            throw error
        }
        _ = closeDescriptor()
        self = named
    }

    /// After the rename: the name now belongs to the target.
    mutating func renamed() { path = nil }

    /// Closes the descriptor; false if close failed.
    mutating func closeDescriptor() -> Bool {
        guard descriptor >= 0 else { return true }
        let ok = close(descriptor) == 0
        descriptor = -1
        return ok
    }

    /// Closes and removes the temporary file this value created (only that name).
    mutating func discard() {
        _ = closeDescriptor()
        if let path { _ = unlink(path) }
        path = nil
    }
}
