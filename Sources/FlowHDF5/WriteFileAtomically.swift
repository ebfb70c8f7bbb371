#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes `bytes` to `path` atomically.
///
/// **Target.** `path` must name a regular file or nothing: a FIFO, device, socket or directory is
/// refused (a save must never replace `/dev/full` with a regular file, nor block on a FIFO). A
/// symbolic link is followed (every level): the file it points to is replaced and the link stays;
/// a link whose target does not exist, or a loop, is refused.
///
/// **Temporary file.** The bytes go to a new file in the target's directory, which is fsync'ed and
/// renamed over the target with rename(2); then the directory is fsync'ed so the rename itself is
/// durable. Readers see either the old file or the complete new one. Where the file system
/// supports it (Linux `O_TMPFILE`: ext4, xfs, btrfs, tmpfs), the file has no name while it is
/// written and is linked under an unpredictable name (`.<name>.tmp.<16 random hex digits>`, created
/// exclusively) only for the rename, so a writer killed mid-save leaves nothing behind. Elsewhere the
/// file is created under such a name from the start (`O_CREAT | O_EXCL | O_NOFOLLOW`, retried
/// with a new name if it exists), and a killed writer can leave it. Either way the function only
/// ever removes the temporary file it created itself: a planted file or link under a temporary
/// name makes it pick another name, and nothing else in the directory is touched.
///
/// If anything fails before the rename, the temporary file is removed and the file at `path` is
/// untouched. (If only the final directory fsync fails, the new file is already in place; the
/// error says so.)
///
/// Plain POSIX, no HDF5. Errors are reported as ``HDF5Error`` (the error type of model file I/O),
/// with the failing step, the path and `strerror(errno)`.
package func writeFileAtomically(_ bytes: [UInt8], to path: String) throws {
    let context = "cannot write '\(path)'"
    if path.isEmpty { throw HDF5Error("\(context): empty path") }
    if path.utf8.contains(0) { throw HDF5Error("\(context): path contains a NUL byte") }
    if path.hasSuffix("/") { throw HDF5Error("\(context): path names a directory") }

    func systemError(_ step: String) -> HDF5Error {
        let code = errno
        return HDF5Error("\(context): \(step): \(String(cString: strerror(code)))")
    }

    let target = try saveTarget(path, context: context)
    let (directory, base) = split(target)
    if base == "." || base == ".." { throw HDF5Error("\(context): path names a directory") }
    let prefix = (directory == "/" ? "/" : directory + "/") + ".\(base).tmp."

    var file = try TemporaryFile.create(directory: directory, prefix: prefix, context: context)
    do {
        try bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(file.descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw systemError("cannot write the temporary file")
                }
                if n == 0 { throw HDF5Error("\(context): a write to the temporary file made no progress") }
                offset += n
            }
        }
        while fsync(file.descriptor) != 0 {
            if errno != EINTR { throw systemError("cannot fsync the temporary file") }
        }
        try file.name(prefix: prefix, context: context)
        if rename(file.path!, target) != 0 { throw systemError("cannot rename '\(file.path!)' to '\(target)'") }
        file.renamed()
    } catch {
        file.discard()
        throw error
    }
    // On Linux the descriptor is released even when close fails; never retry close.
    if !file.closeDescriptor() { throw systemError("the file was replaced, but closing it failed") }

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

/// Throws unless ``writeFileAtomically(_:to:)`` may replace `path`: a regular file, nothing, or a
/// symbolic link to an existing regular file (for checks before long work, such as a training
/// run that writes checkpoints).
package func checkSaveTarget(_ path: String) throws {
    _ = try saveTarget(path, context: "cannot write '\(path)'")
}

/// The file a save to `path` replaces: `path` itself, or the file a symbolic link at `path` points
/// to (resolved with realpath). Throws unless it is a regular file or does not exist yet.
private func saveTarget(_ path: String, context: String) throws -> String {
    var st = stat()
    guard lstat(path, &st) == 0 else {
        if errno == ENOENT { return path }  // a new file (a missing directory fails when the temporary is made)
        throw HDF5Error("\(context): \(String(cString: strerror(errno)))")
    }
    var target = path
    if (st.st_mode & S_IFMT) == S_IFLNK {
        guard let resolved = realpath(path, nil) else {
            throw HDF5Error("\(context): it is a symbolic link whose target cannot be resolved "
                + "(\(String(cString: strerror(errno)))); a save follows a link only to an existing regular file")
        }
        target = String(cString: resolved)
        free(resolved)
        guard stat(target, &st) == 0 else { throw HDF5Error("\(context): \(String(cString: strerror(errno)))") }
    }
    guard (st.st_mode & S_IFMT) == S_IFREG else {
        throw HDF5Error("\(context): \(target == path ? "it" : "its target '\(target)'") is not a regular file "
            + "(\(kind(st.st_mode))); a save only replaces regular files")
    }
    return target
}

/// The directory and the last component of `path`.
private func split(_ path: String) -> (directory: String, base: String) {
    guard let slash = path.lastIndex(of: "/") else { return (".", path) }
    let head = path[..<slash]
    return (head.isEmpty ? "/" : String(head), String(path[path.index(after: slash)...]))
}

/// What kind of file `mode` describes, for messages.
private func kind(_ mode: mode_t) -> String {
    switch mode & S_IFMT {
    case S_IFIFO: return "a FIFO"
    case S_IFCHR: return "a character device"
    case S_IFBLK: return "a block device"
    case S_IFSOCK: return "a socket"
    case S_IFDIR: return "a directory"
    default: return "a special file"
    }
}
