@testable import FlowCore
import XCTest

/// Process-wide runtime settings: the OpenBLAS warm-up that runs when flows configure BLAS.
final class RuntimeTests: XCTestCase {
    /// The warm-up's threads meet before multiplying, so their OpenBLAS calls overlap and each
    /// holds a buffer of its own (a warm-up whose threads ran one after another would warm the
    /// first buffer only; a rendezvous that let threads go early would return fewer).
    func testWarmUpThreadsAllMeetBeforeTheirProducts() {
        for threads in [1, 2, 3, 5] {
            XCTAssertEqual(FlowRuntime.warmUpBLAS(threads: threads), threads, "\(threads) threads")
        }
        XCTAssertEqual(FlowRuntime.warmUpBLAS(threads: 0), 1, "at least the calling thread")
        XCTAssertEqual(FlowRuntime.warmUpBLAS(threads: FlowRuntime.warmUpSlotLimit + 3), FlowRuntime.warmUpSlotLimit)
    }

    /// Raising the thread knob warms buffers for the new workers; the knob reads back clamped.
    func testThreadCountIsClampedAndReadsBack() {
        let saved = FlowRuntime.threadCount
        defer { FlowRuntime.threadCount = saved }
        FlowRuntime.threadCount = 3
        XCTAssertEqual(FlowRuntime.threadCount, 3)
        FlowRuntime.threadCount = 0
        XCTAssertEqual(FlowRuntime.threadCount, 1)
        FlowRuntime.threadCount = 1_000
        XCTAssertEqual(FlowRuntime.threadCount, 256)
    }

    /// Every variable of the configuration table parses; malformed or out-of-range values leave
    /// the default.
    func testConfigurationParsesTheEnvironmentTable() {
        let defaults = RuntimeConfiguration()
        XCTAssertEqual(RuntimeConfiguration(environment: [:]), defaults)
        XCTAssertNil(defaults.threads)
        XCTAssertEqual(defaults.tapeBudget, 64 << 20)
        XCTAssertTrue(defaults.winograd)
        XCTAssertEqual(defaults.memoryLimit, MemoryBudget.defaultLimit)
        let set = RuntimeConfiguration(environment: [
            "SWIFTFLOWS_NUM_THREADS": "3", "SWIFTFLOWS_TAPE_BUDGET": "0", "SWIFTFLOWS_WINOGRAD": "0",
            "SWIFTFLOWS_FASHION_MNIST_DIR": "/data/fm", "SWIFTFLOWS_DIGITS_PATH": "d.h5", "OTHER": "1",
            "SWIFTFLOWS_MEMORY_LIMIT": "123456789",
        ])
        XCTAssertEqual(set.threads, 3)
        XCTAssertEqual(set.tapeBudget, 0)
        XCTAssertFalse(set.winograd)
        XCTAssertEqual(set.fashionMNISTDirectory, "/data/fm")
        XCTAssertEqual(set.digitsPath, "d.h5")
        XCTAssertEqual(set.memoryLimit, 123_456_789)
        XCTAssertEqual(RuntimeConfiguration(environment: ["SWIFTFLOWS_NUM_THREADS": "1000"]).threads, 256)
        let bad = RuntimeConfiguration(environment: [
            "SWIFTFLOWS_NUM_THREADS": "0", "SWIFTFLOWS_TAPE_BUDGET": "-5", "SWIFTFLOWS_WINOGRAD": "no",
            "SWIFTFLOWS_FASHION_MNIST_DIR": "", "SWIFTFLOWS_DIGITS_PATH": "", "SWIFTFLOWS_MEMORY_LIMIT": "1000",
        ])
        XCTAssertEqual(bad, defaults)
        XCTAssertEqual(Set(RuntimeConfiguration.variables).count, 6)
    }

    /// Installing a configuration that names a thread count sets the thread knob.
    func testInstallingAConfigurationSetsTheThreadCount() {
        let saved = FlowRuntime.configuration, savedThreads = FlowRuntime.threadCount
        defer { FlowRuntime.configuration = saved; FlowRuntime.threadCount = savedThreads }
        var c = saved
        c.threads = 2
        c.tapeBudget = 12345
        FlowRuntime.configuration = c
        XCTAssertEqual(FlowRuntime.threadCount, 2)
        XCTAssertEqual(NormalizingFlow<Float>.tapeBudget, 12345)
    }
}
