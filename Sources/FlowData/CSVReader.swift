import FlowCore
import FlowHDF5
/// Reads numeric CSV files into a `Tensor<Float>` of shape `[rows, columns]`.
///
/// ## Format
/// - Cells are separated by commas; spaces and tabs around a cell are ignored, and one pair of
///   enclosing double quotes is removed (quoted cells may not contain commas or quotes).
/// - Lines end in `\n` or `\r\n`. Blank lines and lines whose first non-blank character is `#`
///   (numpy's `savetxt` header style) are skipped; a leading UTF-8 byte-order mark is ignored.
/// - The first remaining line is a header if any of its cells is not a number; it fixes the
///   column count but is otherwise ignored. Every other line is a data row with exactly that
///   many cells.
/// - Numbers use the C syntax of `strtof` (`1`, `-2.5`, `.5`, `1e-3`, `0x1p-3`), parsed
///   locale-independently and rounded once to the nearest `Float`, so values written by
///   ``CSVWriter`` read back bit-exactly.
///
/// ## Errors
/// All content errors are ``FlowError/format(_:)`` and name the source, the 1-based line and,
/// where it applies, the 1-based column: ragged rows, empty or non-numeric cells, NaN or
/// infinite values, numbers outside the `Float` range, and a file without data rows. A missing
/// or unreadable file is ``FlowError/io(_:)``; sizes above ``Limits/maxDataFileBytes``,
/// ``Limits/maxDataElements`` or ``Limits/maxEventSize`` columns are
/// ``FlowError/limitExceeded(_:)``.
public enum CSVReader {
    /// Reads the CSV file at `path` as a `[rows, columns]` tensor.
    public static func read(path: String) throws -> Tensor<Float> {
        try parse(DataFile.readAll(path), source: "'\(path)'")
    }

    /// Parses CSV text (UTF-8 bytes) as a `[rows, columns]` tensor; `source` names the text in
    /// error messages.
    public static func parse(_ bytes: [UInt8], source: String = "CSV data") throws -> Tensor<Float> {
        var parser = CSVParser(source: source)
        try bytes.withUnsafeBufferPointer { try parser.parse($0) }
        guard parser.rows > 0 else {
            let what = parser.headerLine.map { "only a header (line \($0))" } ?? "nothing but blank or comment lines"
            throw FlowError.format("\(source) contains no data rows: it holds \(what)")
        }
        return try Tensor(shape: [parser.rows, parser.columns], scalars: parser.values)
    }
}

/// The line-by-line state machine behind ``CSVReader``.
private struct CSVParser {
    let source: String
    var values: [Float] = []
    var rows = 0
    var columns = 0
    /// The 1-based line of the header, if the first row was one.
    var headerLine: Int?
    /// The line that fixed the column count.
    private var firstLine = 0
    /// Reused cell boundaries of the current line.
    private var cells: [Range<Int>] = []

    init(source: String) {
        self.source = source
    }

    mutating func parse(_ text: UnsafeBufferPointer<UInt8>) throws {
        var start = 0
        if text.count >= 3, text[0] == 0xEF, text[1] == 0xBB, text[2] == 0xBF { start = 3 }
        var lineNumber = 0
        while start < text.count {
            lineNumber += 1
            var end = start
            while end < text.count, text[end] != UInt8(ascii: "\n") { end += 1 }
            let next = end + 1
            if end > start, text[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            try parseLine(text, start..<end, lineNumber)
            start = next
        }
    }

    private static func isBlank(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t")
    }

    /// `range` without surrounding blanks and one pair of enclosing double quotes.
    private static func trimmed(_ text: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Range<Int> {
        var lower = range.lowerBound, upper = range.upperBound
        while lower < upper, isBlank(text[lower]) { lower += 1 }
        while upper > lower, isBlank(text[upper - 1]) { upper -= 1 }
        if upper - lower >= 2, text[lower] == UInt8(ascii: "\""), text[upper - 1] == UInt8(ascii: "\"") {
            lower += 1
            upper -= 1
        }
        return lower..<upper
    }

    private mutating func parseLine(_ text: UnsafeBufferPointer<UInt8>, _ line: Range<Int>, _ number: Int) throws {
        let content = Self.trimmed(text, line)
        if content.isEmpty || text[content.lowerBound] == UInt8(ascii: "#") { return }
        cells.removeAll(keepingCapacity: true)
        var cellStart = line.lowerBound
        for i in line where text[i] == UInt8(ascii: ",") {
            cells.append(Self.trimmed(text, cellStart..<i))
            cellStart = i + 1
            if cells.count > Limits.maxEventSize {
                throw FlowError.limitExceeded(
                    "\(source) line \(number) has more than \(Limits.maxEventSize) columns")
            }
        }
        cells.append(Self.trimmed(text, cellStart..<line.upperBound))

        if firstLine == 0 {
            firstLine = number
            columns = cells.count
            if cells.contains(where: { Self.number(text, $0) == nil }) {
                headerLine = number
                return
            }
        } else if cells.count != columns {
            throw FlowError.format(
                "\(source) line \(number) has \(cells.count) \(cells.count == 1 ? "column" : "columns"), expected \(columns) (as on line \(firstLine))")
        }
        let (total, overflow) = (rows + 1).multipliedReportingOverflow(by: columns)
        if overflow || total > Limits.maxDataElements {
            throw FlowError.limitExceeded(
                "\(source) has more than \(Limits.maxDataElements) values (limit reached on line \(number))")
        }
        for (c, cell) in cells.enumerated() {
            values.append(try value(text, cell, line: number, column: c + 1))
        }
        rows += 1
    }

    /// The number in `cell`, or `nil` if it is empty or not entirely a number.
    private static func number(_ text: UnsafeBufferPointer<UInt8>, _ cell: Range<Int>) -> Float? {
        guard !cell.isEmpty else { return nil }
        return Float(Substring(decoding: UnsafeBufferPointer(rebasing: text[cell]), as: UTF8.self))
    }

    /// The finite number in `cell`, or a message naming line and column.
    private func value(_ text: UnsafeBufferPointer<UInt8>, _ cell: Range<Int>, line: Int, column: Int) throws -> Float {
        let location = "\(source) line \(line), column \(column)"
        if cell.isEmpty { throw FlowError.format("\(location): empty cell") }
        let cellText = String(decoding: UnsafeBufferPointer(rebasing: text[cell]), as: UTF8.self)
        let shown = cellText.count > 40 ? String(cellText.prefix(40)) + "…" : cellText
        guard let v = Float(cellText) else {
            throw FlowError.format("\(location): '\(shown)' is not a number")
        }
        if v.isNaN { throw FlowError.format("\(location): NaN ('\(shown)') is not allowed") }
        if v.isInfinite {
            let lower = cellText.lowercased()
            if lower.contains("inf") {
                throw FlowError.format("\(location): infinity ('\(shown)') is not allowed")
            }
            throw FlowError.format("\(location): \(shown) is outside the float32 range")
        }
        return v
    }
}
