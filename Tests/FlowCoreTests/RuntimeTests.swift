@testable import FlowCore
@testable import FlowModelFile
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
}
