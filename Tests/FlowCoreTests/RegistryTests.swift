@testable import FlowCore
import FlowTestSupport
import XCTest

/// The one list of layer types (``LayerRegistry/types(_:)``) and of base types
/// (``BaseRegistry/types(_:)``) against what must follow them: the format document and the
/// shared checkers' fixtures.
final class RegistryTests: XCTestCase {
    private var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    func testEveryLayerTypeIsDocumentedInTheModelFormat() throws {
        let text = try String(contentsOf: repositoryRoot.appendingPathComponent("docs/model-format.md"), encoding: .utf8)
        for name in LayerRegistry.typeNames {
            XCTAssertTrue(text.contains("### `\(name)`"), "docs/model-format.md has no section \"### `\(name)`\"")
        }
    }

    func testEveryLayerTypeIsInTheSharedCheckersFixtures() {
        let covered = Fixtures.coveredLayerTypes
        for name in LayerRegistry.typeNames {
            XCTAssertTrue(covered.contains(name), "no fixture in FlowTestSupport/Fixtures.swift builds a \"\(name)\" layer")
        }
        XCTAssertTrue(covered.isSubset(of: Set(LayerRegistry.typeNames)), "fixtures name unknown types: \(covered)")
    }

    /// Every base type has a row in the format document's base table and a fixture.
    func testEveryBaseTypeIsDocumentedAndInTheFixtures() throws {
        let text = try String(contentsOf: repositoryRoot.appendingPathComponent("docs/model-format.md"), encoding: .utf8)
        for name in BaseRegistry.typeNames {
            XCTAssertTrue(text.contains("| `\(name)` |"), "docs/model-format.md has no base table row for `\(name)`")
            XCTAssertEqual(BaseRegistry.baseType(name, Double.self)?.typeName, name)
        }
        XCTAssertEqual(Fixtures.coveredBaseTypes, Set(BaseRegistry.typeNames))
        XCTAssertEqual(Set(BaseRegistry.typeNames).count, BaseRegistry.typeNames.count)
        XCTAssertNil(BaseRegistry.baseType("cauchy", Float.self))
    }

    func testTypeNamesAreUniqueAndResolve() {
        XCTAssertEqual(Set(LayerRegistry.typeNames).count, LayerRegistry.typeNames.count)
        for name in LayerRegistry.typeNames {
            XCTAssertEqual(LayerRegistry.layerType(name, Double.self)?.typeName, name)
        }
        XCTAssertNil(LayerRegistry.layerType("no_such_layer", Float.self))
    }
}
