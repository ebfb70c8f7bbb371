import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Distinguishes temporary files of concurrent ``writeFileAtomically(_:to:)`` calls in one process.
private let atomicWriteCounter = Atomic<Int>(0)

/// Writes `bytes` to `path` atomically.
///
/// The bytes go to a new temporary file in the same directory (".<name>.tmp.<pid>.<counter>",
/// created exclusively), which is fsync'ed, closed and then renamed over `path` with rename(2);
/// finally the directory is fsync'ed so the rename itself is durable. Readers therefore see either
/// the old file or the complete new one. If anything fails before the rename, the temporary file is
/// removed and the file at `path` is untouched. (If only the final directory fsync fails, the new
/// file is already in place; the error says so.) A symbolic link at `path` is replaced, not followed.
///
/// Plain POSIX, no HDF5. Errors are reported as ``HDF5Error`` (the error type of model file I/O),
/// with the failing step, the path and `strerror(errno)`.
package func writeFileAtomically(_ bytes: [UInt8], to path: String) throws {
    let context = "cannot write '\(path)'"
    if path.isEmpty { throw HDF5Error("\(context): empty path") }
    if path.utf8.contains(0) { throw HDF5Error("\(context): path contains a NUL byte") }
    if path.hasSuffix("/") { throw HDF5Error("\(context): path names a directory") }

    let directory: String
    let base: String
    if let slash = path.lastIndex(of: "/") {
        let head = path[..<slash]
        directory = head.isEmpty ? "/" : String(head)
        base = String(path[path.index(after: slash)...])
    } else {
        directory = "."
        base = path
    }
    if base == "." || base == ".." { throw HDF5Error("\(context): path names a directory") }

    func systemError(_ step: String) -> HDF5Error {
        let code = errno
        return HDF5Error("\(context): \(step): \(String(cString: strerror(code)))")
    }

    removeStaleTemporaries(directory: directory, base: base)
    let counter = atomicWriteCounter.wrappingAdd(1, ordering: .relaxed).oldValue
    let temporary = (directory == "/" ? "/" : directory + "/") + ".\(base).tmp.\(getpid()).\(counter)"

    let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
    if fd < 0 { throw systemError("cannot create temporary file '\(temporary)'") }

    var descriptor: Int32 = fd
    do {
        try bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw systemError("cannot write temporary file '\(temporary)'")
                }
                if n == 0 { throw HDF5Error("\(context): write to '\(temporary)' made no progress") }
                offset += n
            }
        }
        while fsync(fd) != 0 {
            if errno != EINTR { throw systemError("cannot fsync temporary file '\(temporary)'") }
        }
        descriptor = -1
        // On Linux the descriptor is released even when close fails; never retry close.
        if close(fd) != 0 { throw systemError("cannot close temporary file '\(temporary)'") }
        if rename(temporary, path) != 0 { throw systemError("cannot rename '\(temporary)' to '\(path)'") }
    } catch {
        if descriptor >= 0 { _ = close(descriptor) }
        _ = unlink(temporary)
        throw error
    }

    // Make the rename durable. Some file systems cannot fsync directories (EINVAL): nothing to do there.
    let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if directoryFD < 0 {
        throw systemError("the file was replaced, but its directory '\(directory)' cannot be opened for fsync")
    }
    defer { _ = close(directoryFD) }
    while fsync(directoryFD) != 0 {
        let code = errno
        if code == EINTR { continue }
        if code == EINVAL || code == ENOTSUP { break }
        throw systemError("the file was replaced, but fsync of directory '\(directory)' failed")
    }
}

/// Removes temporary files `.<base>.tmp.<pid>.<n>` left in `directory` by writers that were killed
/// mid-save (their process no longer exists: `kill(pid, 0)` fails with ESRCH). Temporary files of
/// live processes, including this one, are left alone. Best effort: errors are ignored.
private func removeStaleTemporaries(directory: String, base: String) {
    let prefix = ".\(base).tmp."
    guard let dir = opendir(directory) else { return }
    defer { closedir(dir) }
    var stale: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        guard name.hasPrefix(prefix) else { continue }
        let rest = name.dropFirst(prefix.count).split(separator: ".", omittingEmptySubsequences: false)
        guard rest.count == 2, let pid = Int32(rest[0]), pid > 0, UInt(rest[1]) != nil else { continue }
        if kill(pid, 0) != 0, errno == ESRCH { stale.append(name) }
    }
    for name in stale { _ = unlink((directory == "/" ? "/" : directory + "/") + name) }
}
