// swift-tools-version:6.0
//
// SwiftFlows: normalizing flows in Swift, shipped as a C-ABI shared library.
//
// Products
// - `libswiftflows.so` (product "swiftflows"): the C API of `include/swiftflows.h`.
//   Set SWIFTFLOWS_SHARED_RELEASE=1 (the Makefile does) to link the Swift runtime statically,
//   export only `sf_*` symbols and set a SONAME. Those flags stay out of `swift test` links.
// Targets, from the bottom up:
// - CFlowKernels: float32 kernels of the hot paths (AVX2+FMA and portable, chosen at run time).
// - FlowCore: the engine: tensors, the bijection contract, layers, distributions, flows,
//   training, ODE solvers, numerics, the JSON spec, toy data. BLAS for matrix products; no
//   HDF5, no zlib, no file readers, no environment variables.
// - FlowEnvironment: reads the SWIFTFLOWS_* environment variables into the engine's
//   RuntimeConfiguration, for the hosts below.
// - FlowHDF5: Swift wrappers over the HDF5 C library (CHDF5) and atomic file writes.
// - FlowModelFile: the model file of docs/model-format.md, training checkpoints, and the
//   integrity walker every file passes before HDF5 parses it.
// - FlowData: data readers and writers (CSV, NPY, IDX, HDF5 datasets, image data sets) for the
//   command-line tool, the benchmarks and tests.
// - FlowCAPI: the C API (`sf_*`), a thin shell over FlowCore and FlowModelFile.
// - SwiftFlowsCLI, SwiftFlowsBench: the command-line tool and the benchmark harness.
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
        .library(name: "FlowModelFile", targets: ["FlowModelFile"]),
        .library(name: "FlowData", targets: ["FlowData"]),
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
                "CBLAS", "CFlowKernels",
                .product(name: "RealModule", package: "swift-numerics"),
            ],
            swiftSettings: optimized
        ),
        .target(
            name: "FlowEnvironment",
            dependencies: ["FlowCore"],
            swiftSettings: optimized
        ),
        .target(
            name: "FlowHDF5",
            dependencies: ["CHDF5"],
            swiftSettings: optimized
        ),
        .target(
            name: "FlowModelFile",
            dependencies: ["FlowCore", "FlowHDF5", "CZlib"],
            swiftSettings: optimized
        ),
        .target(
            name: "FlowData",
            dependencies: ["FlowCore", "FlowHDF5", "CZlib"],
            swiftSettings: optimized
        ),
        .systemLibrary(name: "CSwiftFlowsABI"),
        .target(
            name: "FlowCAPI",
            dependencies: ["FlowCore", "FlowModelFile", "FlowEnvironment", "CSwiftFlowsABI"],
            exclude: ["exports.map"],
            swiftSettings: optimized,
            linkerSettings: capiLinker
        ),
        .executableTarget(
            name: "SwiftFlowsCLI",
            dependencies: [
                "FlowCore", "FlowModelFile", "FlowData", "FlowEnvironment",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: optimized
        ),
        .executableTarget(
            name: "SwiftFlowsBench",
            dependencies: ["FlowCore", "FlowModelFile", "FlowData", "FlowEnvironment", "CBLAS"],
            swiftSettings: optimized
        ),
        .target(
            name: "FlowTestSupport",
            dependencies: ["FlowCore", "FlowModelFile"],
            path: "Tests/FlowTestSupport"
        ),
        .testTarget(
            name: "FlowCoreTests",
            dependencies: ["FlowCore", "FlowModelFile", "FlowHDF5", "FlowTestSupport", "CFlowKernels"]
        ),
        .testTarget(
            name: "FlowModelFileTests",
            dependencies: ["FlowModelFile", "FlowHDF5", "FlowCore", "FlowTestSupport"]
        ),
        .testTarget(
            name: "FlowDataTests",
            dependencies: ["FlowData", "FlowHDF5", "FlowCore", "FlowTestSupport"]
        ),
        .testTarget(
            name: "FlowCAPITests",
            dependencies: ["FlowCAPI", "FlowCore", "FlowModelFile", "FlowTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v5]
)
