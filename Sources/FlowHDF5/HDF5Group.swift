import CHDF5

/// An open HDF5 group: navigation (children, subgroups) lives here; attributes and datasets are in
/// the extensions `HDF5Group+Attributes.swift` and `HDF5Group+Datasets.swift`.
///
/// A group keeps its ``HDF5File`` alive and closes its own identifier on deinit. After the file was
/// closed explicitly, every operation throws (or returns `false`) without calling HDF5.
package final class HDF5Group {
    /// The file this group belongs to.
    package let file: HDF5File
    /// The HDF5 group identifier.
    package let id: hid_t
    /// The absolute path of the group in its file, e.g. "/layers/0003" (used in messages).
    package let path: String

    /// Wraps an open group identifier (owned from now on) of `file` at absolute `path`.
    package init(file: HDF5File, id: hid_t, path: String) {
        self.file = file
        self.id = id
        self.path = path
    }

    deinit {
        // With the strong close degree, closing the file already closed this identifier.
        if file.isOpen {
            chdf5_silence_errors_on_this_thread()
            if H5Gclose(id) < 0 { HDF5Library.clearErrors() }
        }
    }

    /// The absolute path of the child `name` (which may itself be a relative path).
    package func childPath(_ name: String) -> String {
        if name.hasPrefix("/") { return name }
        return path == "/" ? "/" + name : path + "/" + name
    }

    /// Throws unless the file is still open; prepares HDF5 for a call on this thread.
    package func requireOpen(_ context: @autoclosure () -> String) throws {
        try file.requireOpen(context())
    }

    // MARK: - Children

    /// Creates the subgroup `name` (its parent must exist) and returns it.
    package func createGroup(_ name: String) throws -> HDF5Group {
        let target = childPath(name)
        let context = "cannot create group \(target)"
        try requireOpen(context)
        try HDF5Library.validateName(name, what: "group")
        let gcpl = try HDF5Library.check(H5Pcreate(chdf5_H5P_GROUP_CREATE()), "\(context): cannot create property list")
        defer { H5Pclose(gcpl) }
        // No modification times in object headers: the same model always gives the same bytes.
        try HDF5Library.check(status: H5Pset_obj_track_times(gcpl, false), "\(context): cannot turn off time tracking")
        let gid = try HDF5Library.check(H5Gcreate2(id, name, hid_t(H5P_DEFAULT), gcpl, hid_t(H5P_DEFAULT)), context)
        return HDF5Group(file: file, id: gid, path: target)
    }

    /// Opens the existing subgroup `name`. The error names the missing (or non-group) path.
    package func openGroup(_ name: String) throws -> HDF5Group {
        let target = childPath(name)
        let context = "cannot open group \(target)"
        try requireOpen(context)
        try HDF5Library.validateName(name, what: "group")
        guard hasChild(name) else { throw HDF5Error("\(context): no such group in \(file.name)") }
        guard isGroup(name) else { throw HDF5Error("\(context): " + notAnObject(name, "\(target) is not a group")) }
        let gid = try HDF5Library.check(H5Gopen2(id, name, hid_t(H5P_DEFAULT)), context)
        return HDF5Group(file: file, id: gid, path: target)
    }

    /// The names of the links in this group, in increasing (byte-wise) name order.
    /// Throws if there are more than `limit` of them.
    package func childNames(limit: Int = 1_000_000) throws -> [String] {
        let context = "cannot list group \(path)"
        try requireOpen(context)
        var info = H5G_info_t()
        try HDF5Library.check(status: H5Gget_info(id, &info), context)
        if info.nlinks > UInt64(max(limit, 0)) {
            throw HDF5Error("\(context): it has \(info.nlinks) children, more than the limit of \(limit)")
        }
        let collected = HDF5Library.StringList()
        collected.limit = limit
        collected.strings.reserveCapacity(Int(info.nlinks))
        let callback: chdf5_name_callback = { name, context in
            guard let name, let context else { return -1 }
            let collected = Unmanaged<HDF5Library.StringList>.fromOpaque(context).takeUnretainedValue()
            if collected.strings.count >= collected.limit {
                collected.exceeded = true
                return 1
            }
            collected.strings.append(String(cString: name))
            return 0
        }
        let status = withExtendedLifetime(collected) {
            chdf5_iterate_link_names(id, callback, Unmanaged.passUnretained(collected).toOpaque())
        }
        if status < 0 { throw HDF5Library.failure(context) }
        if collected.exceeded {
            throw HDF5Error("\(context): it has more children than the limit of \(limit)")
        }
        return collected.strings
    }

    /// Whether a link called `name` exists in this group (`H5Lexists`); `false` on any error.
    package func hasChild(_ name: String) -> Bool {
        guard file.isOpen, (try? HDF5Library.prepare()) != nil,
              (try? HDF5Library.validateName(name, what: "link")) != nil else { return false }
        let exists = H5Lexists(id, name, hid_t(H5P_DEFAULT))
        if exists < 0 { HDF5Library.clearErrors() }
        return exists > 0
    }

    /// Whether `name` exists and is a group; `false` on any error.
    package func isGroup(_ name: String) -> Bool {
        objectType(name) == H5I_GROUP
    }

    /// Whether `name` exists and is a dataset; `false` on any error.
    package func isDataset(_ name: String) -> Bool {
        objectType(name) == H5I_DATASET
    }

    /// Whether `name` is a hard link (an object stored in this file). Soft and external links are
    /// never followed: an external link would make a reader open other files (FIFOs and devices
    /// included), and model files hold none.
    package func isHardLink(_ name: String) -> Bool {
        guard hasChild(name) else { return false }
        var info = H5L_info_t()
        guard H5Lget_info(id, name, &info, hid_t(H5P_DEFAULT)) >= 0 else {
            HDF5Library.clearErrors()
            return false
        }
        return info.type == H5L_TYPE_HARD
    }

    /// "is a soft or external link" for a link that ``isHardLink(_:)`` refuses, else `fallback`.
    package func notAnObject(_ name: String, _ fallback: String) -> String {
        hasChild(name) && !isHardLink(name)
            ? "\(childPath(name)) is a soft or external link (model files hold only objects stored in the file)"
            : fallback
    }

    /// The identifier type of the object `name` refers to, or `nil` if it cannot be opened or is
    /// not a hard link.
    private func objectType(_ name: String) -> H5I_type_t? {
        guard isHardLink(name) else { return nil }
        let object = H5Oopen(id, name, hid_t(H5P_DEFAULT))
        if object < 0 {
            HDF5Library.clearErrors()
            return nil
        }
        defer { H5Oclose(object) }
        return H5Iget_type(object)
    }
}
