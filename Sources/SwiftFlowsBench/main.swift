// swiftflows-bench: the release-mode benchmark of SwiftFlows (bench/README.md).
//
// Parent mode (default): measures the SGEMM reference, runs every selected row — each in a child
// process of this executable unless --no-memory — measures SGEMM again, and prints the table
// (or JSON with --json). Child mode (--only ROWID --child): builds and perturbs the row's model,
// times the row and prints one result line for the parent (see ChildProtocol).
import FlowCore
import FlowEnvironment
import FlowModelFile
import FlowData
#if canImport(Glibc)
import Glibc
#endif

/// Builds a model and gives it trained-like parameters.
func preparedModel(_ model: BenchModel) throws -> NormalizingFlow<Float> {
    let flow = try model.build()
    try perturb(flow)
    return flow
}

func runAsChild(_ options: Options, row: RowSpec) -> Int32 {
    do {
        let flow = try preparedModel(row.model)
        let m = try runRow(row, flow: flow, settings: options.settings)
        print(ChildProtocol.line(id: row.id, m))
        fflush(stdout)
        return 0
    } catch {
        printError("swiftflows-bench: \(row.id): \(error)")
        return 1
    }
}

func cpuName() -> String {
    guard let line = readFirstLine("/proc/cpuinfo", prefix: "model name") else { return "unknown CPU" }
    guard let colon = line.firstIndex(of: ":") else { return line }
    var name = String(line[line.index(after: colon)...])
    while name.first == " " { name.removeFirst() }
    return name
}

/// SGEMM rates: from a child process (parent mode with memory measurement), else in-process.
func measureSGEMM(_ sgemm: inout SGEMMReference, options: Options, executable: String) -> String? {
    let calls = options.quick ? 2 : 5, seconds = options.quick ? 0 : 0.5
    guard options.memory else {
        sgemm.measure(calls: calls, seconds: seconds)
        return nil
    }
    let outcome = runChild(executable: executable,
                           arguments: ["--sgemm-child", String(calls), "--sgemm-seconds", cFormat("%g", seconds),
                                       "--threads", String(sgemm.threads)])
    if let failure = outcome.failure { return "SGEMM child: \(failure)" }
    guard let rates = ChildProtocol.parseSGEMM(outcome.output) else { return "SGEMM child printed no result line" }
    sgemm.append(rates)
    return nil
}

func runAsParent(_ options: Options, rows: [RowSpec]) -> Int32 {
    let threads = FlowRuntime.threadCount
    let executable: String
    do { executable = try executablePath() } catch {
        printError("swiftflows-bench: \(error)")
        return 1
    }
    let loadAverage = readFirstLine("/proc/loadavg").map { $0.split(separator: " ").prefix(3).joined(separator: " ") } ?? "unknown"
    var sgemm = SGEMMReference(threads: threads)
    var problems: [String] = []
    if let problem = measureSGEMM(&sgemm, options: options, executable: executable) { problems.append(problem) }
    // In-process SGEMM (--no-memory): let OpenBLAS's worker threads go to sleep before rows are timed.
    if !options.memory { usleep(200_000) }

    let progress = isatty(STDERR_FILENO) != 0
    var results: [RowResult] = []
    var models: [String: NormalizingFlow<Float>] = [:]  // --no-memory: one prepared model per catalogue entry
    for (k, row) in rows.enumerated() {
        if progress { fputs("\r\u{1B}[K[\(k + 1)/\(rows.count)] \(row.id)", stderr) }
        if options.memory {
            var arguments = ["--only", row.id, "--child", "--threads", String(threads)]
            if options.quick { arguments.append("--quick") }
            let outcome = runChild(executable: executable, arguments: arguments)
            let m = ChildProtocol.parseRow(outcome.output, id: row.id)
            let failure = outcome.failure ?? (m == nil ? "child printed no result line" : nil)
            results.append(RowResult(row: row, measurement: failure == nil ? m : nil, peakRSSBytes: outcome.peakRSSBytes,
                                     failure: failure))
        } else {
            do {
                let flow: NormalizingFlow<Float>
                if let cached = models[row.model.id] {
                    flow = cached
                } else {
                    flow = try preparedModel(row.model)
                    models[row.model.id] = flow
                }
                let m = try runRow(row, flow: flow, settings: options.settings)
                results.append(RowResult(row: row, measurement: m, peakRSSBytes: nil, failure: nil))
            } catch {
                results.append(RowResult(row: row, measurement: nil, peakRSSBytes: nil, failure: "\(error)"))
            }
        }
    }
    if progress { fputs("\r\u{1B}[K", stderr) }
    if let problem = measureSGEMM(&sgemm, options: options, executable: executable) { problems.append(problem) }

    #if DEBUG
    let debugBuild = true
    #else
    let debugBuild = false
    #endif
    let info = RunInfo(threads: threads, quick: options.quick, cpu: cpuName(),
                       processors: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), loadAverage: loadAverage,
                       sgemm: sgemm, memory: options.memory, parentPeakRSSBytes: ownPeakRSSBytes(),
                       debugBuild: debugBuild)
    print(options.json ? Report.json(results, info) : Report.table(results, info))
    let failed = results.filter { $0.failure != nil }
    for r in failed { printError("swiftflows-bench: \(r.row.id) failed: \(r.failure!)") }
    for p in problems { printError("swiftflows-bench: \(p)") }
    return failed.isEmpty && problems.isEmpty ? 0 : 1
}

func main() -> Int32 {
    let options: Options
    let rows: [RowSpec]
    do {
        options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
        rows = try options.rows()
    } catch {
        printError("swiftflows-bench: \(error)")
        return 2
    }
    FlowRuntime.configureFromProcessEnvironment()
    if let t = options.threads { FlowRuntime.threadCount = t }
    if options.list {
        for r in rows { print(r.id) }
        return 0
    }
    if let calls = options.sgemmChildCalls {
        var sgemm = SGEMMReference(threads: FlowRuntime.threadCount)
        sgemm.measure(calls: calls, seconds: options.sgemmChildSeconds)
        print(ChildProtocol.sgemmLine(sgemm.rates))
        fflush(stdout)
        return 0
    }
    if options.child { return runAsChild(options, row: rows[0]) }
    guard !rows.isEmpty else {
        printError("swiftflows-bench: no row id contains \"\(options.filter ?? "")\" (see --list)")
        return 2
    }
    return runAsParent(options, rows: rows)
}

exit(main())
