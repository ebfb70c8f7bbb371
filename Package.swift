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
    // Linked with lld, not the default gold: FlowCAPI reaches FlowCore's type metadata and
    // conformance descriptors (and libdispatch its TLS variable) through GOT entries, and gold keeps
    // the dynamic relocations of those entries against the symbols even after exports.map has made
    // them local, so ~26 of them stayed in .dynsym (as LOCAL, but listed by `nm -D`). lld resolves
    // them to relative relocations, leaving exactly the sf_ functions (`make test-exports`).
    capiLinker = [
        .unsafeFlags([
            "-use-ld=lld",
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
        // The benchmark harness (bench/README.md); `make bench` builds and runs it.
        .executable(name: "swiftflows-bench", targets: ["SwiftFlowsBench"]),
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
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // Float32 kernels of the hot paths with an AVX2+FMA variant chosen at run time.
        .target(
            name: "CFlowKernels",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]
        ),
        .target(
            name: "FlowCore",
            dependencies: [
                "CHDF5", "CBLAS", "CZlib", "CFlowKernels",
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
        .executableTarget(
            name: "SwiftFlowsBench",
            dependencies: ["FlowCore", "CBLAS"],
            swiftSettings: optimized
        ),
        .target(
            name: "FlowTestSupport",
            dependencies: ["FlowCore"],
            path: "Tests/FlowTestSupport"
        ),
        .testTarget(
            name: "FlowCoreTests",
            dependencies: ["FlowCore", "FlowTestSupport", "CFlowKernels"]
        ),
        .testTarget(
            name: "FlowCAPITests",
            dependencies: ["FlowCAPI", "FlowCore", "FlowTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v5]
)
