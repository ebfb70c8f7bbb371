import CHDF5
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Attributes of a group: scalars and 1-D arrays of integers and floats, and string scalars.
///
/// Writing replaces an existing attribute of the same name. Strings are written as variable-length
/// UTF-8 scalars (h5py reads them as `str`); reading also accepts fixed-length and ASCII strings.
extension HDF5Group {
    // MARK: - Writing

    /// Sets the string attribute `name` (variable-length UTF-8 scalar). `string` must not contain NUL.
    package func setAttribute(_ name: String, string: String) throws {
        let context = "cannot write attribute '\(name)' of \(path)"
        try requireOpen(context)
        if string.utf8.contains(0) { throw HDF5Error("\(context): the string contains a NUL byte") }
        let type = try HDF5Library.check(H5Tcopy(chdf5_H5T_C_S1()), "\(context): cannot create string type")
        defer { H5Tclose(type) }
        try HDF5Library.check(status: H5Tset_size(type, chdf5_H5T_VARIABLE()), "\(context): cannot create string type")
        try HDF5Library.check(status: H5Tset_cset(type, H5T_CSET_UTF8), "\(context): cannot create string type")
        try string.withCString { pointer in
            var element: UnsafePointer<CChar>? = pointer
            try withUnsafePointer(to: &element) { elementPointer in
                try writeAttribute(name, fileType: type, memoryType: type, shape: [],
                                   data: UnsafeRawPointer(elementPointer), context: context)
            }
        }
    }

    /// Sets the scalar 64-bit integer attribute `name`.
    package func setAttribute(_ name: String, int: Int64) throws {
        let context = "cannot write attribute '\(name)' of \(path)"
        try requireOpen(context)
        var value = int
        try writeAttribute(name, fileType: chdf5_H5T_STD_I64LE(), memoryType: chdf5_H5T_NATIVE_INT64(),
                           shape: [], data: &value, context: context)
    }

    /// Sets the scalar 64-bit float attribute `name`.
    package func setAttribute(_ name: String, double: Double) throws {
        let context = "cannot write attribute '\(name)' of \(path)"
        try requireOpen(context)
        var value = double
        try writeAttribute(name, fileType: chdf5_H5T_IEEE_F64LE(), memoryType: chdf5_H5T_NATIVE_DOUBLE(),
                           shape: [], data: &value, context: context)
    }

    /// Sets the 1-D 64-bit integer array attribute `name` (may be empty).
    package func setAttribute(_ name: String, ints: [Int64]) throws {
        let context = "cannot write attribute '\(name)' of \(path)"
        try requireOpen(context)
        try ints.withUnsafeBytes { bytes in
            try writeAttribute(name, fileType: chdf5_H5T_STD_I64LE(), memoryType: chdf5_H5T_NATIVE_INT64(),
                               shape: [ints.count], data: bytes.baseAddress, context: context)
        }
    }

    /// Sets the 1-D 64-bit float array attribute `name` (may be empty).
    package func setAttribute(_ name: String, doubles: [Double]) throws {
        let context = "cannot write attribute '\(name)' of \(path)"
        try requireOpen(context)
        try doubles.withUnsafeBytes { bytes in
            try writeAttribute(name, fileType: chdf5_H5T_IEEE_F64LE(), memoryType: chdf5_H5T_NATIVE_DOUBLE(),
                               shape: [doubles.count], data: bytes.baseAddress, context: context)
        }
    }

    /// Creates (replacing any existing one) and writes an attribute of the given shape.
    private func writeAttribute(_ name: String, fileType: hid_t, memoryType: hid_t, shape: [Int],
                                data: UnsafeRawPointer?, context: String) throws {
        try HDF5Library.validateName(name, what: "attribute")
        let exists = H5Aexists(id, name)
        if exists < 0 { throw HDF5Library.failure(context) }
        if exists > 0 {
            try HDF5Library.check(status: H5Adelete(id, name), "\(context): cannot replace the existing attribute")
        }
        let count = try HDF5Library.elementCount(of: shape, context)
        let space = try HDF5Library.createSpace(shape: shape, context)
        defer { H5Sclose(space) }
        let attribute = try HDF5Library.check(
            H5Acreate2(id, name, fileType, space, hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT)), context)
        var dummy: Int64 = 0
        let written = withUnsafeMutablePointer(to: &dummy) { dummyPointer in
            // H5Awrite rejects a null buffer even for zero elements.
            H5Awrite(attribute, memoryType, count == 0 ? UnsafeRawPointer(dummyPointer) : data)
        }
        var error: HDF5Error? = written < 0 ? HDF5Library.failure(context) : nil
        if H5Aclose(attribute) < 0, error == nil { error = HDF5Library.failure(context) }
        if let error {
            _ = H5Adelete(id, name)
            HDF5Library.clearErrors()
            throw error
        }
    }

    // MARK: - Queries

    /// Whether the attribute `name` exists on this group; `false` on any error.
    package func hasAttribute(_ name: String) -> Bool {
        guard file.isOpen, (try? HDF5Library.prepare()) != nil,
              (try? HDF5Library.validateName(name, what: "attribute")) != nil else { return false }
        let exists = H5Aexists(id, name)
        if exists < 0 { HDF5Library.clearErrors() }
        return exists > 0
    }

    /// The names of this group's attributes in increasing name order.
    package func attributeNames() throws -> [String] {
        let context = "cannot list attributes of \(path)"
        try requireOpen(context)
        let collected = HDF5Library.StringList()
        let callback: H5A_operator2_t = { _, name, _, data in
            guard let name, let data else { return -1 }
            Unmanaged<HDF5Library.StringList>.fromOpaque(data).takeUnretainedValue().strings.append(String(cString: name))
            return 0
        }
        var index: hsize_t = 0
        let status = withExtendedLifetime(collected) {
            H5Aiterate2(id, H5_INDEX_NAME, H5_ITER_INC, &index, callback, Unmanaged.passUnretained(collected).toOpaque())
        }
        if status < 0 { throw HDF5Library.failure(context) }
        return collected.strings
    }

    // MARK: - Reading

    /// The string attribute `name`: a variable- or fixed-length string (ASCII or UTF-8), scalar or a
    /// 1-element 1-D array. Fixed-length strings lose their padding (NUL or trailing spaces).
    /// Invalid UTF-8 is repaired with U+FFFD. Throws if longer than `maxLength` bytes.
    package func stringAttribute(_ name: String, maxLength: Int = 1 << 20) throws -> String {
        try withAttribute(name) { attribute, type, shape, context in
            guard HDF5Library.isClass(type, H5T_STRING) else {
                throw HDF5Error("\(context): expected a string, found \(HDF5Library.describe(type: type))")
            }
            try requireSingleElement(shape, context)
            let isVariable = H5Tis_variable_str(type)
            if isVariable < 0 { throw HDF5Library.failure(context) }
            let cset = H5Tget_cset(type)
            if cset == H5T_CSET_ERROR { throw HDF5Library.failure(context) }
            if isVariable > 0 {
                let memoryType = try HDF5Library.check(H5Tcopy(chdf5_H5T_C_S1()), context)
                defer { H5Tclose(memoryType) }
                try HDF5Library.check(status: H5Tset_size(memoryType, chdf5_H5T_VARIABLE()), context)
                try HDF5Library.check(status: H5Tset_cset(memoryType, cset), context)
                var pointer: UnsafeMutablePointer<CChar>? = nil
                try HDF5Library.check(status: H5Aread(attribute, memoryType, &pointer), context)
                guard let pointer else { return "" }
                // The library allocated the string; H5free_memory is its matching deallocator
                // (what H5Dvlen_reclaim/H5Treclaim do for one variable-length string).
                defer { _ = H5free_memory(pointer) }
                let length = strlen(pointer)
                if length > maxLength {
                    throw HDF5Error("\(context): string of \(length) bytes exceeds the limit of \(maxLength)")
                }
                return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
            }
            let size = H5Tget_size(type)
            if size == 0 { throw HDF5Library.failure(context) }
            if size > maxLength {
                throw HDF5Error("\(context): fixed-length string of \(size) bytes exceeds the limit of \(maxLength)")
            }
            let padding = H5Tget_strpad(type)
            // Read the bytes exactly as stored: the memory type is a copy of the file type.
            let memoryType = try HDF5Library.check(H5Tcopy(type), context)
            defer { H5Tclose(memoryType) }
            var bytes = [UInt8](repeating: 0, count: size)
            try bytes.withUnsafeMutableBytes { buffer in
                try HDF5Library.check(status: H5Aread(attribute, memoryType, buffer.baseAddress), context)
            }
            if padding == H5T_STR_SPACEPAD {
                while let last = bytes.last, last == 0x20 || last == 0 { bytes.removeLast() }
            } else if let end = bytes.firstIndex(of: 0) {
                bytes.removeSubrange(end...)
            }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// The integer attribute `name`: any integer size and signedness, scalar or a 1-element 1-D array.
    /// Floats, strings and other classes are refused.
    package func intAttribute(_ name: String) throws -> Int64 {
        try withAttribute(name) { attribute, type, shape, context in
            guard HDF5Library.isClass(type, H5T_INTEGER) else {
                throw HDF5Error("\(context): expected an integer, found \(HDF5Library.describe(type: type))")
            }
            try requireSingleElement(shape, context)
            return try HDF5ElementReader.int64s(count: 1, fileType: type, context: context) {
                H5Aread(attribute, $0, $1)
            }[0]
        }
    }

    /// The numeric attribute `name` as a `Double`: any float or integer class, scalar or a
    /// 1-element 1-D array.
    package func doubleAttribute(_ name: String) throws -> Double {
        try withAttribute(name) { attribute, type, shape, context in
            guard HDF5Library.isClass(type, H5T_FLOAT) || HDF5Library.isClass(type, H5T_INTEGER) else {
                throw HDF5Error("\(context): expected a number, found \(HDF5Library.describe(type: type))")
            }
            try requireSingleElement(shape, context)
            return try HDF5ElementReader.doubles(count: 1, context: context) { H5Aread(attribute, $0, $1) }[0]
        }
    }

    /// The integer array attribute `name`: a scalar gives `[value]`, a 1-D array its elements.
    /// Throws if it has more than `maxCount` elements (checked before allocating).
    package func intsAttribute(_ name: String, maxCount: Int = 1 << 24) throws -> [Int64] {
        try withAttribute(name) { attribute, type, shape, context in
            guard HDF5Library.isClass(type, H5T_INTEGER) else {
                throw HDF5Error("\(context): expected integers, found \(HDF5Library.describe(type: type))")
            }
            let count = try arrayCount(shape, maxCount: maxCount, context)
            return try HDF5ElementReader.int64s(count: count, fileType: type, context: context) {
                H5Aread(attribute, $0, $1)
            }
        }
    }

    /// The numeric array attribute `name` as `Double`s (float or integer classes): a scalar gives
    /// `[value]`, a 1-D array its elements. Throws if it has more than `maxCount` elements.
    package func doublesAttribute(_ name: String, maxCount: Int = 1 << 24) throws -> [Double] {
        try withAttribute(name) { attribute, type, shape, context in
            guard HDF5Library.isClass(type, H5T_FLOAT) || HDF5Library.isClass(type, H5T_INTEGER) else {
                throw HDF5Error("\(context): expected numbers, found \(HDF5Library.describe(type: type))")
            }
            let count = try arrayCount(shape, maxCount: maxCount, context)
            return try HDF5ElementReader.doubles(count: count, context: context) { H5Aread(attribute, $0, $1) }
        }
    }

    // MARK: - Helpers

    /// Opens attribute `name` with its type and shape (`nil` for a null dataspace), runs `body`,
    /// and closes everything.
    private func withAttribute<T>(
        _ name: String,
        _ body: (_ attribute: hid_t, _ type: hid_t, _ shape: [Int]?, _ context: String) throws -> T
    ) throws -> T {
        let context = "attribute '\(name)' of \(path)"
        try requireOpen(context)
        try HDF5Library.validateName(name, what: "attribute")
        let exists = H5Aexists(id, name)
        if exists < 0 { throw HDF5Library.failure("cannot read \(context)") }
        if exists == 0 { throw HDF5Error("\(context) does not exist") }
        let attribute = try HDF5Library.check(H5Aopen(id, name, hid_t(H5P_DEFAULT)), "cannot open \(context)")
        defer { H5Aclose(attribute) }
        let type = try HDF5Library.check(H5Aget_type(attribute), "cannot read the type of \(context)")
        defer { H5Tclose(type) }
        let space = try HDF5Library.check(H5Aget_space(attribute), "cannot read the dataspace of \(context)")
        defer { H5Sclose(space) }
        let shape = try HDF5Library.shape(ofSpace: space, context)
        return try body(attribute, type, shape, context)
    }

    /// Requires a scalar or a 1-element 1-D array.
    private func requireSingleElement(_ shape: [Int]?, _ context: String) throws {
        guard let shape else { throw HDF5Error("\(context) has no value (empty dataspace)") }
        if shape.isEmpty || shape == [1] { return }
        throw HDF5Error("\(context): expected a single value, found shape \(shape)")
    }

    /// The element count of a scalar (1) or 1-D array, checked against `maxCount`.
    private func arrayCount(_ shape: [Int]?, maxCount: Int, _ context: String) throws -> Int {
        guard let shape else { return 0 }
        if shape.count > 1 { throw HDF5Error("\(context): expected a scalar or 1-D array, found shape \(shape)") }
        let count = shape.first ?? 1
        if count > maxCount {
            throw HDF5Error("\(context) has \(count) elements, more than the limit of \(maxCount)")
        }
        return count
    }
}
