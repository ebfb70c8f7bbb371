import FlowCore
import FlowHDF5
/// The `.npy` dtypes ``NPYReader`` converts to `Float`: little-endian IEEE floats and integers.
///
/// | descr | type |
/// |---|---|
/// | `<f4`, `<f8` | float32, float64 (float64 must fit the float32 range) |
/// | `|i1`, `<i2`, `<i4`, `<i8` | signed integers |
/// | `|u1`, `<u2`, `<u4`, `<u8` | unsigned integers |
///
/// Integers above 2²⁴ in magnitude are rounded to the nearest `Float`.
enum NPYElementType: String, CaseIterable {
    case float32 = "<f4"
    case float64 = "<f8"
    case int8 = "|i1"
    case uint8 = "|u1"
    case int16 = "<i2"
    case uint16 = "<u2"
    case int32 = "<i4"
    case uint32 = "<u4"
    case int64 = "<i8"
    case uint64 = "<u8"

    /// Bytes per element.
    var size: Int {
        switch self {
        case .int8, .uint8: return 1
        case .int16, .uint16: return 2
        case .float32, .int32, .uint32: return 4
        case .float64, .int64, .uint64: return 8
        }
    }

    /// The element type of `descr`, or a ``FlowError/format(_:)`` starting "wrong dtype" that
    /// says why it is refused (big-endian, object, string, other).
    init(descr: String, source: String) throws {
        if let type = NPYElementType(rawValue: descr) {
            self = type
            return
        }
        let supported = NPYElementType.allCases.map(\.rawValue).joined(separator: ", ")
        let bytes = Array(descr.utf8)
        let kind = bytes.count >= 2 ? Character(Unicode.Scalar(bytes[1])) : "?"
        if bytes.first == UInt8(ascii: ">"), "fiu".contains(kind) {
            let little = "<" + descr.dropFirst()
            throw FlowError.format(
                "\(source): wrong dtype '\(descr)': big-endian data is not supported; convert it with a.astype('\(little)')")
        }
        if kind == "O" {
            throw FlowError.format("\(source): wrong dtype '\(descr)': object arrays are not supported; save a numeric array")
        }
        throw FlowError.format("\(source): wrong dtype '\(descr)': supported dtypes are \(supported)")
    }

    /// Converts `count` elements of little-endian raw data to `Float`, refusing NaN, infinities
    /// and float64 values outside the float32 range. `columns` turns the element index into
    /// `[row, column]` for messages.
    func decode(_ raw: UnsafeRawBufferPointer, count: Int, columns: Int, source: String) throws -> [Float] {
        precondition(raw.count >= count * size)
        var bad: (index: Int, value: Double)?
        let values = [Float](unsafeUninitializedCapacity: count) { out, initialized in
            switch self {
            case .float32:
                for i in 0..<count {
                    let v = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                    if !v.isFinite { bad = (i, Double(v)); break }
                    out[i] = v
                }
            case .float64:
                for i in 0..<count {
                    let d = Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))
                    let v = Float(d)
                    if !v.isFinite { bad = (i, d); break }
                    out[i] = v
                }
            case .int8: for i in 0..<count { out[i] = Float(raw.load(fromByteOffset: i, as: Int8.self)) }
            case .uint8: for i in 0..<count { out[i] = Float(raw[i]) }
            case .int16: fill(out, count) { Float(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self))) }
            case .uint16: fill(out, count) { Float(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
            case .int32: fill(out, count) { Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
            case .uint32: fill(out, count) { Float(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
            case .int64: fill(out, count) { Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
            case .uint64: fill(out, count) { Float(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))) }
            }
            initialized = bad == nil ? count : 0
        }
        if let (i, d) = bad {
            let position = "element [\(i / columns), \(i % columns)]"
            if d.isNaN { throw FlowError.format("\(source): \(position) is NaN (NaN and infinity are not allowed)") }
            if d.isInfinite { throw FlowError.format("\(source): \(position) is infinite (NaN and infinity are not allowed)") }
            throw FlowError.format("\(source): \(position) = \(d) is outside the float32 range")
        }
        return values
    }

    private func fill(_ out: UnsafeMutableBufferPointer<Float>, _ count: Int, _ element: (Int) -> Float) {
        for i in 0..<count { out[i] = element(i) }
    }
}
