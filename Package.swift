// swift-tools-version:6.0
//
// SwiftFlows: normalizing flows in Swift, shipped as a C-ABI shared library.
//
// Products
// - `libswiftflows.so` (product "swiftflows"): the C API of `include/swiftflows.h`.
//   Set SWIFTFLOWS_SHARED_RELEASE=1 (the Makefile does) to link the Swift runtime statically,
//   export only `sf_*` symbols and set a SONAME. Those flags stay out of `swift test` links.
// - FlowCore: the engine (pure Swift, BLAS for matrix products, HDF5 for model files).
import PackageDescription
import Foundation

let sharedRelease = ProcessInfo.processInfo.environment["SWIFTFLOWS_SHARED_RELEASE"] == "1"
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path

var capiLinker: [LinkerSetting] = []
if sharedRelease {
    capiLinker = [
        .unsafeFlags([
            "-static-stdlib",
            "-Xlinker", "--version-script=\(packageRoot)/Sources/FlowCAPI/exports.map",
            "-Xlinker", "-soname=libswiftflows.so.0",
        ]),
    ]
}

let optimized: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "SwiftFlows",
    products: [
        .library(name: "swiftflows", type: .dynamic, targets: ["FlowCAPI"]),
        .library(name: "FlowCore", targets: ["FlowCore"]),
        // The command-line tool; the Makefile installs it as `swiftflows`.
        .executable(name: "swiftflows-cli", targets: ["SwiftFlowsCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-numerics", from: "1.1.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CHDF5",
            pkgConfig: "hdf5",
            providers: [.apt(["libhdf5-dev"])]
        ),
        .systemLibrary(
            name: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .target(
            name: "FlowCore",
            dependencies: [
                "CHDF5", "CBLAS",
                .product(name: "RealModule", package: "swift-numerics"),
            ],
            swiftSettings: optimized
        ),
        .systemLibrary(name: "CSwiftFlowsABI"),
        .target(
            name: "FlowCAPI",
            dependencies: ["FlowCore", "CSwiftFlowsABI"],
            exclude: ["exports.map"],
            swiftSettings: optimized,
            linkerSettings: capiLinker
        ),
        .executableTarget(
            name: "SwiftFlowsCLI",
            dependencies: ["FlowCore", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: optimized
        ),
        .target(
            name: "FlowTestSupport",
            dependencies: ["FlowCore"],
            path: "Tests/FlowTestSupport"
        ),
        .testTarget(
            name: "FlowCoreTests",
            dependencies: ["FlowCore", "FlowTestSupport"]
        ),
        .testTarget(
            name: "FlowCAPITests",
            dependencies: ["FlowCAPI", "FlowCore", "FlowTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v5]
)
