import CHDF5

/// An open HDF5 file: in memory (core driver), from an in-memory file image, or read-only from disk.
///
/// The file identifier is closed by ``close()`` or on deinit. Files are opened with the "strong" close
/// degree: closing the file also closes every group still open in it, so no file descriptor or lock
/// outlives ``close()``. Groups keep their file alive; after an explicit ``close()`` their operations
/// throw instead of touching stale identifiers.
package final class HDF5File {
    /// The HDF5 file identifier, or -1 once closed.
    private(set) var id: hid_t
    /// The path on disk, or a description such as "in-memory file", for messages.
    package let name: String
    /// Bytes of the HDF5 user block before the superblock (0: none). HDF5 leaves the user block
    /// out of file images; ``fileImage()`` puts it back (zeroed).
    package let userBlockSize: Int

    private init(id: hid_t, name: String, userBlockSize: Int = 0) {
        self.id = id
        self.name = name
        self.userBlockSize = userBlockSize
    }

    deinit {
        close()
    }

    /// Whether the file is still open.
    package var isOpen: Bool { id >= 0 }

    /// Closes the file (and any group still open in it). Calling it again does nothing.
    package func close() {
        guard id >= 0 else { return }
        chdf5_silence_errors_on_this_thread()
        if H5Fclose(id) < 0 { HDF5Library.clearErrors() }
        id = -1
    }

    /// Throws unless the file is open.
    package func requireOpen(_ context: @autoclosure () -> String) throws {
        if id < 0 { throw HDF5Error("\(context()): file \(name) is closed") }
        try HDF5Library.prepare()
    }

    /// A file access property list with the strong close degree; the caller closes it.
    private static func makeAccessList(_ context: String) throws -> hid_t {
        let fapl = try HDF5Library.check(H5Pcreate(chdf5_H5P_FILE_ACCESS()), "\(context): cannot create property list")
        do {
            try HDF5Library.check(status: H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), "\(context): cannot set close degree")
        } catch {
            H5Pclose(fapl)
            throw error
        }
        return fapl
    }

    /// Creates an empty, writable file that lives only in memory (core driver, no backing store).
    /// Use ``fileImage()`` to obtain its bytes.
    ///
    /// With a `userBlock` of `n > 0` bytes (a power of two, at least 512), the file starts with
    /// `n` bytes that HDF5 skips, zeroed in ``fileImage()``; the model file keeps its checksum
    /// header there. (The file keeps HDF5's default, earliest object formats: HDF5 1.10.8 writes a
    /// stale superblock checksum into images of files in the 1.8 formats.)
    package static func createInMemory(userBlock: Int = 0) throws -> HDF5File {
        try HDF5Library.prepare()
        let context = "cannot create in-memory HDF5 file"
        let fapl = try makeAccessList(context)
        defer { H5Pclose(fapl) }
        try HDF5Library.check(status: H5Pset_fapl_core(fapl, 1 << 20, false), "\(context): cannot select core driver")
        let fcpl = try HDF5Library.check(H5Pcreate(chdf5_H5P_FILE_CREATE()), "\(context): cannot create property list")
        defer { H5Pclose(fcpl) }
        if userBlock > 0 {
            try HDF5Library.check(status: H5Pset_userblock(fcpl, hsize_t(userBlock)),
                                  "\(context): cannot reserve the user block")
        }
        let name = HDF5Library.uniqueMemoryFileName("memory")
        let id = try HDF5Library.check(H5Fcreate(name, chdf5_H5F_ACC_TRUNC(), fcpl, fapl), context)
        return HDF5File(id: id, name: "in-memory file", userBlockSize: userBlock)
    }

    /// Opens an HDF5 file image (the bytes of a whole `.h5` file) read-only. The bytes are copied,
    /// so `bytes` need not outlive the call. Any input that is not a valid file image, including an
    /// empty or truncated one, throws ``HDF5Error``.
    package static func openImage(_ bytes: UnsafeRawBufferPointer) throws -> HDF5File {
        try HDF5Library.prepare()
        let context = "cannot open HDF5 file image (\(bytes.count) bytes)"
        // An empty image would make the core driver look for a file on disk by name: refuse it here.
        guard let base = bytes.baseAddress, bytes.count > 0 else {
            throw HDF5Error("\(context): the image is empty")
        }
        let fapl = try makeAccessList(context)
        defer { H5Pclose(fapl) }
        try HDF5Library.check(status: H5Pset_fapl_core(fapl, 1 << 20, false), "\(context): cannot select core driver")
        // H5Pset_file_image copies the buffer; it never writes through the pointer.
        try HDF5Library.check(
            status: H5Pset_file_image(fapl, UnsafeMutableRawPointer(mutating: base), bytes.count),
            "\(context): cannot attach image")
        let name = HDF5Library.uniqueMemoryFileName("image")
        let id = try HDF5Library.check(H5Fopen(name, chdf5_H5F_ACC_RDONLY(), fapl), context)
        return HDF5File(id: id, name: "file image")
    }

    /// Opens the HDF5 file at `path` read-only. HDF5's file locking is disabled for the open, so
    /// concurrent readers (or a writer that replaces the file atomically) never make it fail, and
    /// nothing stays locked after ``close()``.
    package static func open(path: String) throws -> HDF5File {
        try HDF5Library.prepare()
        let context = "cannot open '\(path)'"
        if path.isEmpty { throw HDF5Error("\(context): empty path") }
        if path.utf8.contains(0) { throw HDF5Error("\(context): path contains a NUL byte") }
        let fapl = try makeAccessList(context)
        defer { H5Pclose(fapl) }
        try HDF5Library.check(status: chdf5_disable_file_locking(fapl), "\(context): cannot disable file locking")
        let id = try HDF5Library.check(H5Fopen(path, chdf5_H5F_ACC_RDONLY(), fapl), context)
        return HDF5File(id: id, name: "'\(path)'")
    }

    /// The whole file as bytes (flushed first): a valid HDF5 file, e.g. for ``writeFileAtomically(_:to:)``,
    /// starting with ``userBlockSize`` zero bytes.
    package func fileImage() throws -> [UInt8] {
        let context = "cannot take the image of \(name)"
        try requireOpen(context)
        try HDF5Library.check(status: H5Fflush(id, H5F_SCOPE_GLOBAL), "\(context): flush failed")
        let size = H5Fget_file_image(id, nil, 0)
        if size < 0 { throw HDF5Library.failure(context) }
        if size == 0 { return [] }
        var failed = false
        let skip = userBlockSize
        let bytes = [UInt8](unsafeUninitializedCapacity: skip + size) { buffer, initialized in
            buffer.baseAddress!.initialize(repeating: 0, count: skip)
            let got = H5Fget_file_image(id, buffer.baseAddress! + skip, size)
            if got == size {
                initialized = skip + size
            } else {
                failed = true
                initialized = 0
            }
        }
        if failed { throw HDF5Library.failure("\(context): image size changed") }
        return bytes
    }

    /// The root group "/". Every access opens a new group handle.
    package var root: HDF5Group {
        get throws {
            let context = "cannot open root group of \(name)"
            try requireOpen(context)
            let gid = try HDF5Library.check(H5Gopen2(id, "/", hid_t(H5P_DEFAULT)), context)
            return HDF5Group(file: self, id: gid, path: "/")
        }
    }
}
