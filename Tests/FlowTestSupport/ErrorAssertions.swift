@testable import FlowCore
@testable import FlowModelFile
import XCTest

/// Assertions on thrown ``FlowError``s shared by the test suites.
public enum ErrorAssertions {
    /// Asserts that `body` throws a FlowError of the kind `matches` accepts whose message contains
    /// every fragment.
    public static func assertThrows(_ fragments: [String], _ matches: (FlowError) -> Bool,
                                    file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("expected an error containing \(fragments)", file: file, line: line)
        } catch let e as FlowError {
            XCTAssertTrue(matches(e), "wrong FlowError case: \(e)", file: file, line: line)
            for f in fragments {
                XCTAssertTrue(e.message.contains(f), "'\(e.message)' does not contain '\(f)'", file: file, line: line)
            }
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    public static let isFormat: (FlowError) -> Bool = { if case .format = $0 { return true }; return false }
    public static let isCorrupt: (FlowError) -> Bool = { if case .corrupt = $0 { return true }; return false }
    public static let isNumerical: (FlowError) -> Bool = { if case .numerical = $0 { return true }; return false }
    public static let isUnsupportedVersion: (FlowError) -> Bool = {
        if case .unsupportedVersion = $0 { return true }; return false
    }
    public static let isIO: (FlowError) -> Bool = { if case .io = $0 { return true }; return false }
    public static let isInvalid: (FlowError) -> Bool = { if case .invalidArgument = $0 { return true }; return false }
    public static let isLimit: (FlowError) -> Bool = { if case .limitExceeded = $0 { return true }; return false }
    public static let isInvalidSpec: (FlowError) -> Bool = { if case .invalidSpec = $0 { return true }; return false }
    public static let isShape: (FlowError) -> Bool = { if case .shapeMismatch = $0 { return true }; return false }
}
