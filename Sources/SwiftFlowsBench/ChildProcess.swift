#if canImport(Glibc)
import Glibc
#endif

/// Child-process protocol. The parent runs `swiftflows-bench --only ROWID --child …`; the child
/// runs that one row and prints one line
///
///     SFBENCH-ROW <row id> <calls per repeat> <checksum> <samples/s of repeat 1> <repeat 2> …
///
/// on standard output (its diagnostics go to standard error, which it shares with the parent).
/// The SGEMM reference runs the same way (`--sgemm-child CALLS`, one line
/// `SFBENCH-SGEMM <GFLOP/s of call 1> …`), so the parent never holds large buffers.
/// The parent reads the line through a pipe and the child's resource usage through `wait4`, whose
/// `ru_maxrss` is the child's whole peak resident set: Swift runtime, OpenBLAS, the model, its
/// perturbation training, the row's input and output buffers and the library's scratch (and at
/// least the parent's own peak, see ``ownPeakRSSBytes()``).
enum ChildProtocol {
    static let rowTag = "SFBENCH-ROW"
    static let sgemmTag = "SFBENCH-SGEMM"

    /// The result line of a finished row.
    static func line(id: String, _ m: RowMeasurement) -> String {
        ([rowTag, id, String(m.callsPerRepeat), cFormat("%.17g", m.checksum)]
            + m.samplesPerSecond.map { cFormat("%.17g", $0) }).joined(separator: " ")
    }

    /// The result line of an SGEMM child.
    static func sgemmLine(_ rates: [Double]) -> String {
        ([sgemmTag] + rates.map { cFormat("%.17g", $0) }).joined(separator: " ")
    }

    /// The fields after `tag` (and `id`, if given) of the first matching line.
    private static func fields(_ output: String, tag: String, id: String?) -> [String]? {
        for line in output.split(separator: "\n") {
            var f = line.split(separator: " ").map(String.init)
            guard f.first == tag else { continue }
            f.removeFirst()
            if let id {
                guard f.first == id else { continue }
                f.removeFirst()
            }
            return f
        }
        return nil
    }

    /// Parses the result line for `id` out of a child's standard output.
    static func parseRow(_ output: String, id: String) -> RowMeasurement? {
        guard let f = fields(output, tag: rowTag, id: id), f.count >= 3,
              let calls = Int(f[0]), let checksum = Double(f[1]) else { return nil }
        let rates = f[2...].compactMap(Double.init)
        guard rates.count == f.count - 2 else { return nil }
        return RowMeasurement(callsPerRepeat: calls, samplesPerSecond: rates, checksum: checksum)
    }

    /// Parses an SGEMM child's rates.
    static func parseSGEMM(_ output: String) -> [Double]? {
        guard let f = fields(output, tag: sgemmTag, id: nil), !f.isEmpty else { return nil }
        let rates = f.compactMap(Double.init)
        return rates.count == f.count ? rates : nil
    }
}

/// What a child process left behind.
struct ChildOutcome {
    /// Its standard output.
    let output: String
    /// Peak resident set size of the child in bytes (`ru_maxrss`).
    let peakRSSBytes: Int
    /// Nil when it exited with status 0, else what went wrong.
    let failure: String?
}

/// The path of the running executable (`/proc/self/exe`).
func executablePath() throws -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { throw BenchError("cannot resolve /proc/self/exe: \(String(cString: strerror(errno)))") }
    buffer[n] = 0
    return String(cString: buffer)
}

/// This process's own peak resident set size in bytes.
///
/// It matters for the children's numbers: `posix_spawn` starts a child in the parent's address
/// space (vfork) and Linux carries that address space's high-water mark into the child's
/// `ru_maxrss` at `exec`, so every child's peak is at least the parent's peak at spawn time. The
/// parent therefore keeps its own footprint small (even SGEMM runs in a child) and reports this
/// value as the floor.
func ownPeakRSSBytes() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Int(usage.ru_maxrss) * 1024
}

/// Spawns this executable with `arguments` (after argv[0]), collects its standard output and
/// waits for it.
func runChild(executable: String, arguments: [String]) -> ChildOutcome {
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else {
        return ChildOutcome(output: "", peakRSSBytes: 0, failure: "pipe: \(String(cString: strerror(errno)))")
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO)
    posix_spawn_file_actions_addclose(&actions, fds[0])
    posix_spawn_file_actions_addclose(&actions, fds[1])

    let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid = pid_t()
    let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
    close(fds[1])
    guard spawned == 0 else {
        close(fds[0])
        return ChildOutcome(output: "", peakRSSBytes: 0,
                            failure: "posix_spawn \(executable): \(String(cString: strerror(spawned)))")
    }

    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        if n > 0 { bytes += chunk[0..<n]; continue }
        if n < 0, errno == EINTR { continue }
        break
    }
    close(fds[0])
    let output = String(decoding: bytes, as: UTF8.self)

    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 {
        guard errno == EINTR else {
            return ChildOutcome(output: output, peakRSSBytes: 0, failure: "wait4: \(String(cString: strerror(errno)))")
        }
    }
    let peak = Int(usage.ru_maxrss) * 1024  // kilobytes on Linux
    // <sys/wait.h> macros, spelled out: low 7 bits = terminating signal (0 = exited normally).
    let signal = status & 0x7f, exitCode = (status >> 8) & 0xff
    if signal != 0 {
        return ChildOutcome(output: output, peakRSSBytes: peak, failure: "child killed by signal \(signal)")
    }
    if exitCode != 0 {
        return ChildOutcome(output: output, peakRSSBytes: peak, failure: "child exited with status \(exitCode)")
    }
    return ChildOutcome(output: output, peakRSSBytes: peak, failure: nil)
}
