import CHDF5
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Process-wide HDF5 set-up and the helpers shared by ``HDF5File`` and ``HDF5Group``:
/// error-stack capture, checked calls, shape validation and type descriptions.
///
/// Every entry point of the wrapper calls ``prepare()`` before its first HDF5 call.
package enum HDF5Library {
    /// Largest dataset or attribute rank the wrapper reads or writes.
    package static let maxRank = 8

    /// `H5open` once per process (a lazily initialised global, thread-safe by Swift's rules).
    private static let opened: Bool = {
        chdf5_silence_errors_on_this_thread()
        return H5open() >= 0
    }()

    /// A list of strings filled by C callbacks (passed to them as an unretained opaque pointer).
    package final class StringList {
        var strings: [String] = []
        /// Set by a callback that stopped early because `limit` was reached.
        var exceeded = false
        var limit = Int.max
    }

    /// Counter for unique names of in-memory files (the core driver identifies files by name).
    private static let memoryFileCounter = Atomic<Int>(0)

    /// Initialises the library once and silences HDF5's automatic error printing on the calling thread.
    ///
    /// In a thread-safe HDF5 build (Debian's is) each thread has its own error stack with its own
    /// automatic handler, so silencing must happen per thread; the shim caches that in a thread-local flag.
    package static func prepare() throws {
        chdf5_silence_errors_on_this_thread()
        if !opened {
            throw HDF5Error("cannot initialise the HDF5 library")
        }
    }

    /// A process-unique name for an in-memory (core driver) file.
    package static func uniqueMemoryFileName(_ prefix: String) -> String {
        let n = memoryFileCounter.wrappingAdd(1, ordering: .relaxed).oldValue
        return "swiftflows-\(prefix)-\(getpid())-\(n)"
    }

    // MARK: - Errors

    /// Builds an error "`context`: `hdf5 description(s)`" from the calling thread's HDF5 error stack,
    /// then clears the stack. Call it right after the failing HDF5 call, before any other HDF5 call.
    package static func failure(_ context: String) -> HDF5Error {
        let collector = StringList()
        let walker: H5E_walk2_t = { _, errorDescription, clientData in
            guard let errorDescription, let clientData else { return 0 }
            if let desc = errorDescription.pointee.desc {
                Unmanaged<StringList>.fromOpaque(clientData).takeUnretainedValue().strings.append(String(cString: desc))
            }
            return 0
        }
        withExtendedLifetime(collector) {
            // Downward: from the API function the wrapper called to the innermost cause.
            _ = H5Ewalk2(hid_t(H5E_DEFAULT), H5E_WALK_DOWNWARD, walker,
                         Unmanaged.passUnretained(collector).toOpaque())
        }
        _ = H5Eclear2(hid_t(H5E_DEFAULT))
        let descriptions = collector.strings.map(trimmed).filter { !$0.isEmpty }
        return HDF5Error(compose(context, descriptions))
    }

    /// "`context`: outermost: innermost" (duplicates dropped; "unknown HDF5 error" if the stack was empty).
    package static func compose(_ context: String, _ descriptions: [String]) -> String {
        guard let outer = descriptions.first, let inner = descriptions.last else {
            return "\(context): unknown HDF5 error"
        }
        // HDF5 often repeats the outer text with details ("unable to open file: name = ..."): keep those.
        if outer == inner || inner.hasPrefix(outer) { return "\(context): \(inner)" }
        return "\(context): \(outer): \(inner)"
    }

    /// Returns `id` if it is a valid identifier (>= 0), else throws ``failure(_:)``.
    @discardableResult
    package static func check(_ id: hid_t, _ context: @autoclosure () -> String) throws -> hid_t {
        if id < 0 { throw failure(context()) }
        return id
    }

    /// Throws ``failure(_:)`` if `status` is negative.
    package static func check(status: herr_t, _ context: @autoclosure () -> String) throws {
        if status < 0 { throw failure(context()) }
    }

    /// Clears the calling thread's error stack (after a failure that is deliberately ignored).
    package static func clearErrors() {
        _ = H5Eclear2(hid_t(H5E_DEFAULT))
    }

    // MARK: - Names and shapes

    /// Rejects names HDF5 cannot represent faithfully (empty, or containing NUL).
    package static func validateName(_ name: String, what: String) throws {
        if name.isEmpty { throw HDF5Error("\(what) name must not be empty") }
        if name.utf8.contains(0) { throw HDF5Error("\(what) name \(name.debugDescription) contains a NUL byte") }
    }

    /// The product of `shape`, with every dimension checked to be >= 0 and the product checked for
    /// overflow. `[]` (a scalar) has one element. Throws an error starting with `context`.
    package static func elementCount(of shape: [Int], _ context: @autoclosure () -> String) throws -> Int {
        if shape.count > maxRank {
            throw HDF5Error("\(context()): rank \(shape.count) exceeds the maximum rank \(maxRank)")
        }
        var count = 1
        for d in shape {
            if d < 0 { throw HDF5Error("\(context()): negative dimension in shape \(shape)") }
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            if overflow { throw HDF5Error("\(context()): shape \(shape) has too many elements") }
            count = product
        }
        return count
    }

    /// The shape of dataspace `space`: `[]` for a scalar, `nil` for a null (empty, H5S_NULL) dataspace.
    /// Validates the rank and every dimension before anything is allocated.
    package static func shape(ofSpace space: hid_t, _ context: @autoclosure () -> String) throws -> [Int]? {
        let kind = H5Sget_simple_extent_type(space)
        if kind == H5S_NULL { return nil }
        if kind == H5S_SCALAR { return [] }
        guard kind == H5S_SIMPLE else { throw failure("\(context()): cannot read dataspace") }
        let rank = H5Sget_simple_extent_ndims(space)
        if rank < 0 { throw failure("\(context()): cannot read dataspace rank") }
        if Int(rank) > maxRank {
            throw HDF5Error("\(context()): rank \(rank) exceeds the maximum rank \(maxRank)")
        }
        var dims = [hsize_t](repeating: 0, count: Int(rank))
        if rank > 0 {
            let got = dims.withUnsafeMutableBufferPointer { H5Sget_simple_extent_dims(space, $0.baseAddress, nil) }
            if got != rank { throw failure("\(context()): cannot read dataspace dimensions") }
        }
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        for d in dims {
            guard d <= UInt64(Int.max) else { throw HDF5Error("\(context()): dimension \(d) is too large") }
            shape.append(Int(d))
        }
        return shape
    }

    /// A dataspace for `shape` (`[]` = scalar). The caller closes it.
    package static func createSpace(shape: [Int], _ context: @autoclosure () -> String) throws -> hid_t {
        if shape.isEmpty {
            return try check(H5Screate(H5S_SCALAR), "\(context()): cannot create dataspace")
        }
        let dims = shape.map { hsize_t($0) }
        return try check(H5Screate_simple(Int32(dims.count), dims, nil), "\(context()): cannot create dataspace")
    }

    // MARK: - Types

    /// A short description of an HDF5 datatype for error messages, e.g. "64-bit signed integer",
    /// "32-bit float", "variable-length string", "compound".
    package static func describe(type: hid_t) -> String {
        let typeClass = H5Tget_class(type)
        let size = H5Tget_size(type)
        let result: String
        switch typeClass {
        case H5T_INTEGER:
            let signed = H5Tget_sign(type) == H5T_SGN_2
            result = "\(size * 8)-bit \(signed ? "signed" : "unsigned") integer"
        case H5T_FLOAT: result = "\(size * 8)-bit float"
        case H5T_STRING:
            result = H5Tis_variable_str(type) > 0 ? "variable-length string" : "fixed-length string (\(size) bytes)"
        case H5T_TIME: result = "time"
        case H5T_BITFIELD: result = "bitfield"
        case H5T_OPAQUE: result = "opaque"
        case H5T_COMPOUND: result = "compound"
        case H5T_REFERENCE: result = "reference"
        case H5T_ENUM: result = "enum"
        case H5T_VLEN: result = "variable-length sequence"
        case H5T_ARRAY: result = "array"
        default: result = "unknown type"
        }
        clearErrors()
        return result
    }

    /// `text` without leading and trailing spaces, tabs and newlines.
    private static func trimmed(_ text: String) -> String {
        let blanks: Set<Character> = [" ", "\n", "\t", "\r"]
        var slice = Substring(text)
        while let first = slice.first, blanks.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, blanks.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }

    /// Whether `type` is of class `typeClass`.
    package static func isClass(_ type: hid_t, _ typeClass: H5T_class_t) -> Bool {
        H5Tget_class(type) == typeClass
    }
}
