import FlowCore
import FlowHDF5
extension FileIntegrity {
    /// A bounds-checked little-endian reader over `[position, end)` of the file.
    struct Cursor {
        let bytes: UnsafeRawBufferPointer
        var position: Int
        let end: Int
        /// Where the enclosing message starts (for error messages).
        let origin: Int

        var remaining: Int { end - position }

        func fail(_ why: String) -> FlowError {
            FlowError.corrupt("damaged HDF5 object header message at byte \(origin): \(why)")
        }

        mutating func skip(_ n: Int) throws {
            guard n >= 0, n <= remaining else { throw fail("a field runs past the end of the message") }
            position += n
        }

        mutating func uint(_ width: Int) throws -> UInt64 {
            guard width <= remaining else { throw fail("a field runs past the end of the message") }
            defer { position += width }
            return readLE(bytes, position, width)
        }

        mutating func u8() throws -> UInt64 { try uint(1) }

        /// The next `n` bytes (n ≤ remaining) as a reader of their own.
        func window(_ n: Int) -> Cursor { Cursor(bytes: bytes, position: position, end: position + n, origin: origin) }
    }
}
