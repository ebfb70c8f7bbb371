import FlowCore
import FlowHDF5
/// The header of a NumPy `.npy` file (format versions 1.0, 2.0 and 3.0), shared by
/// ``NPYReader`` and ``NPYWriter``.
///
/// Layout: the magic `\x93NUMPY`, one byte each of major and minor version, the header length as
/// little-endian `UInt16` (version 1) or `UInt32` (versions 2 and 3), then the header itself: a
/// Python dictionary literal such as `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }`
/// padded with spaces and ended by `\n` so that the data start at a multiple of 64 bytes.
/// The data follow immediately, in C (row-major) order unless `fortran_order` is `True`.
struct NPYHeader: Equatable {
    /// The dtype string, e.g. `<f4`.
    var descr: String
    var fortranOrder: Bool
    var shape: [Int]

    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // "\x93NUMPY"
    /// Bytes of magic + version, the part that reveals the size of the rest of the preamble.
    static let leadLength = 8
    /// Largest header accepted when reading (numpy itself refuses more than 10 000 bytes by default).
    static let maxHeaderLength = 1 << 20

    // MARK: - Reading

    /// The length of the header-length field after the 8 lead bytes (magic and version), or an
    /// error if `lead` is not the start of a supported `.npy` file.
    static func lengthFieldSize(lead: [UInt8], source: String) throws -> Int {
        guard lead.count == leadLength, Array(lead[0..<6]) == magic else {
            throw FlowError.format("\(source) is not a .npy file (no \\x93NUMPY magic at the start)")
        }
        switch lead[6] {
        case 1: return 2
        case 2, 3: return 4
        default:
            throw FlowError.format("\(source): unsupported .npy format version \(lead[6]).\(lead[7]) (1.0, 2.0 and 3.0 are read)")
        }
    }

    /// The header length from its little-endian field.
    static func headerLength(field: [UInt8]) -> Int {
        field.reversed().reduce(0) { $0 << 8 | Int($1) }
    }

    /// Parses the header text (the dictionary literal and its padding).
    static func parse(_ text: [UInt8], source: String) throws -> NPYHeader {
        var parser = NPYDictionaryParser(text: text, source: source)
        let entries = try parser.parseDictionary()
        let expected: Set<String> = ["descr", "fortran_order", "shape"]
        guard Set(entries.keys) == expected else {
            let found = entries.keys.sorted().joined(separator: ", ")
            throw FlowError.format("\(source): invalid .npy header: expected the keys descr, fortran_order, shape; found \(found)")
        }
        let descr: String
        switch entries["descr"]! {
        case .string(let s): descr = s
        case .list:
            throw FlowError.format("\(source): wrong dtype: structured arrays (a list of fields) are not supported")
        default: throw FlowError.format("\(source): invalid .npy header: 'descr' is not a string")
        }
        guard case .bool(let fortranOrder) = entries["fortran_order"]! else {
            throw FlowError.format("\(source): invalid .npy header: 'fortran_order' is not True or False")
        }
        guard case .tuple(let shape) = entries["shape"]! else {
            throw FlowError.format("\(source): invalid .npy header: 'shape' is not a tuple of integers")
        }
        return NPYHeader(descr: descr, fortranOrder: fortranOrder, shape: shape)
    }

    // MARK: - Writing

    /// The header dictionary as numpy writes it, e.g.
    /// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }` (`(3,)` for one dimension).
    var dictionaryText: String {
        let dims: String
        switch shape.count {
        case 0: dims = "()"
        case 1: dims = "(\(shape[0]),)"
        default: dims = "(" + shape.map(String.init).joined(separator: ", ") + ")"
        }
        return "{'descr': '\(descr)', 'fortran_order': \(fortranOrder ? "True" : "False"), 'shape': \(dims), }"
    }

    /// Magic, version, length field and padded header: version 1.0 when the header fits in
    /// 65 535 bytes, else 2.0. The result's length is a multiple of 64.
    func encoded() -> [UInt8] {
        let text = Array(dictionaryText.utf8)
        for (major, fieldSize) in [(UInt8(1), 2), (UInt8(2), 4)] {
            let unpadded = Self.leadLength + fieldSize + text.count + 1  // + the final "\n"
            let padding = (64 - unpadded % 64) % 64
            let headerLength = text.count + padding + 1
            if fieldSize == 2 && headerLength > Int(UInt16.max) { continue }
            var bytes = Self.magic + [major, 0]
            for k in 0..<fieldSize { bytes.append(UInt8(truncatingIfNeeded: headerLength >> (8 * k))) }
            bytes += text
            bytes += [UInt8](repeating: UInt8(ascii: " "), count: padding)
            bytes.append(UInt8(ascii: "\n"))
            return bytes
        }
        preconditionFailure("an .npy header of \(text.count) bytes does not fit a UInt32 length")
    }
}

/// A value of the Python literal subset used in `.npy` headers.
enum NPYHeaderValue: Equatable {
    case string(String)
    case bool(Bool)
    case tuple([Int])
    /// A list (structured dtype descriptions); its contents are not needed.
    case list
}

/// Parses `{'key': value, ...}` with string keys and values that are strings, `True`/`False`,
/// tuples of non-negative integers (an `L` suffix, as Python 2 wrote, is accepted) or lists.
/// Anything after the closing brace must be spaces or line breaks.
private struct NPYDictionaryParser {
    let text: [UInt8]
    let source: String
    var index = 0

    init(text: [UInt8], source: String) {
        self.text = text
        self.source = source
    }

    private func failure(_ what: String) -> FlowError {
        FlowError.format("\(source): invalid .npy header: \(what) at byte \(index) of the header")
    }

    private mutating func skipSpace() {
        while index < text.count, [UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\t"), UInt8(ascii: "\r")].contains(text[index]) {
            index += 1
        }
    }

    private mutating func peek() -> UInt8? {
        skipSpace()
        return index < text.count ? text[index] : nil
    }

    private mutating func expect(_ byte: UInt8) throws {
        guard peek() == byte else { throw failure("expected '\(Character(Unicode.Scalar(byte)))'") }
        index += 1
    }

    mutating func parseDictionary() throws -> [String: NPYHeaderValue] {
        try expect(UInt8(ascii: "{"))
        var entries: [String: NPYHeaderValue] = [:]
        while peek() != UInt8(ascii: "}") {
            let key = try parseString()
            try expect(UInt8(ascii: ":"))
            let value = try parseValue()
            if entries.updateValue(value, forKey: key) != nil { throw failure("duplicate key '\(key)'") }
            if peek() == UInt8(ascii: ",") { index += 1 } else { break }
        }
        try expect(UInt8(ascii: "}"))
        skipSpace()
        if index != text.count { throw failure("unexpected text after the dictionary") }
        return entries
    }

    private mutating func parseString() throws -> String {
        guard let quote = peek(), quote == UInt8(ascii: "'") || quote == UInt8(ascii: "\"") else {
            throw failure("expected a quoted string")
        }
        let start = index + 1
        var end = start
        while end < text.count, text[end] != quote {
            if text[end] == UInt8(ascii: "\\") { throw failure("escape sequences are not supported") }
            end += 1
        }
        guard end < text.count else { throw failure("unterminated string") }
        index = end + 1
        return String(decoding: text[start..<end], as: UTF8.self)
    }

    private mutating func parseValue() throws -> NPYHeaderValue {
        switch peek() {
        case UInt8(ascii: "'"), UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "("): return .tuple(try parseTuple())
        case UInt8(ascii: "["): return try skipList()
        case UInt8(ascii: "T"), UInt8(ascii: "F"):
            for (word, value) in [("True", true), ("False", false)] where text[index...].starts(with: word.utf8) {
                index += word.utf8.count
                return .bool(value)
            }
            throw failure("expected True or False")
        default: throw failure("expected a string, True, False or a tuple")
        }
    }

    private mutating func parseTuple() throws -> [Int] {
        try expect(UInt8(ascii: "("))
        var values: [Int] = []
        while peek() != UInt8(ascii: ")") {
            values.append(try parseInteger())
            if values.count > 64 { throw failure("too many dimensions") }
            if peek() == UInt8(ascii: ",") { index += 1 } else { break }
        }
        try expect(UInt8(ascii: ")"))
        return values
    }

    private mutating func parseInteger() throws -> Int {
        skipSpace()
        var value = 0
        let start = index
        while index < text.count, text[index] >= UInt8(ascii: "0"), text[index] <= UInt8(ascii: "9") {
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(Int(text[index] - UInt8(ascii: "0")))
            if o1 || o2 { throw failure("dimension too large") }
            value = sum
            index += 1
        }
        if index == start { throw failure("expected a non-negative integer") }
        if index < text.count, text[index] == UInt8(ascii: "L") { index += 1 }
        return value
    }

    /// Skips a (possibly nested) list literal, honouring quoted strings.
    private mutating func skipList() throws -> NPYHeaderValue {
        var depth = 0
        var quote: UInt8?
        while index < text.count {
            let byte = text[index]
            index += 1
            if let q = quote {
                if byte == q { quote = nil }
            } else if byte == UInt8(ascii: "'") || byte == UInt8(ascii: "\"") {
                quote = byte
            } else if byte == UInt8(ascii: "[") || byte == UInt8(ascii: "(") {
                depth += 1
            } else if byte == UInt8(ascii: "]") || byte == UInt8(ascii: ")") {
                depth -= 1
                if depth == 0 { return .list }
            }
        }
        throw failure("unterminated list")
    }
}
