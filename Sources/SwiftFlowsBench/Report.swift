#if canImport(Glibc)
import Glibc
#endif

/// The outcome of one row.
struct RowResult {
    let row: RowSpec
    let measurement: RowMeasurement?
    /// The child's peak RSS in bytes; nil without child processes (`--no-memory`).
    let peakRSSBytes: Int?
    let failure: String?

    var summary: Summary? { measurement.map { Summary($0.samplesPerSecond) } }
    /// nil when the row has no FLOP model (adaptive ODE solvers: the work depends on the steps taken).
    var gflops: Double? { row.flopsPerRow.isFinite ? summary.map { row.flopsPerRow * $0.median / 1e9 } : nil }
    var secondsPerCall: Double? { summary.map { Double(row.batch) / $0.median } }
}

/// Everything the report shows besides the rows.
struct RunInfo {
    let threads: Int
    let quick: Bool
    let cpu: String
    let processors: Int
    let loadAverage: String
    let sgemm: SGEMMReference
    let memory: Bool
    /// The parent's own peak RSS: a floor of every child's (see ``ownPeakRSSBytes()``).
    let parentPeakRSSBytes: Int
    let debugBuild: Bool
}

enum Report {
    static func percentOfSGEMM(_ r: RowResult, _ info: RunInfo) -> Double? {
        guard let g = r.gflops, let s = info.sgemm.summary, s.median > 0 else { return nil }
        return 100 * g / s.median
    }

    static func mebibytes(_ bytes: Int?) -> Double? { bytes.map { Double($0) / 1_048_576 } }

    /// The human-readable table.
    static func table(_ results: [RowResult], _ info: RunInfo) -> String {
        var lines: [String] = []
        lines.append("SwiftFlows benchmark (swiftflows-bench\(info.debugBuild ? ", DEBUG BUILD: numbers are meaningless" : ", release build"))")
        lines.append("CPU: \(info.cpu), \(info.processors) processors; load average at start \(info.loadAverage); library threads \(info.threads)"
            + (info.quick ? "; --quick (rough numbers)" : ""))
        if let s = info.sgemm.summary {
            lines.append("SGEMM 1024x1024x1024 (cblas_sgemm, \(info.sgemm.threads) thread\(info.sgemm.threads == 1 ? "" : "s")): "
                + cFormat("%.1f GFLOP/s median (min %.1f, max %.1f; %d calls at the start and the end of the run)",
                          s.median, s.min, s.max, Int32(info.sgemm.rates.count)))
        } else {
            lines.append("SGEMM: not measured")
        }
        lines.append("")
        let header = [pad("model", 14), pad("operation", 10), pad("batch", 6, right: true),
                      pad("samples/s", 10, right: true), pad("min", 8, right: true), pad("max", 8, right: true),
                      pad("time/call", 10, right: true), pad("GFLOP/s", 8, right: true),
                      pad("% SGEMM", 8, right: true), pad("peak MiB", 9, right: true)].joined(separator: " ")
        lines.append(header)
        lines.append(String(repeating: "-", count: header.unicodeScalars.count))
        var previousModel: String?
        for r in results {
            if let previousModel, previousModel != r.row.model.id { lines.append("") }
            previousModel = r.row.model.id
            let lead = [pad(r.row.model.name, 14), pad(r.row.operation.rawValue, 10), pad(String(r.row.batch), 6, right: true)]
            guard let s = r.summary, r.failure == nil else {
                lines.append((lead + ["FAILED: \(r.failure ?? "no measurement")"]).joined(separator: " "))
                continue
            }
            let pct = percentOfSGEMM(r, info).map { cFormat("%.1f", $0) } ?? "-"
            let mem = mebibytes(r.peakRSSBytes).map { cFormat("%.1f", $0) } ?? "-"
            lines.append((lead + [
                pad(siRate(s.median), 10, right: true), pad(siRate(s.min), 8, right: true), pad(siRate(s.max), 8, right: true),
                pad(duration(r.secondsPerCall ?? .nan), 10, right: true),
                pad(r.gflops.map { cFormat("%.2f", $0) } ?? "-", 8, right: true), pad(pct, 8, right: true), pad(mem, 9, right: true),
            ]).joined(separator: " "))
        }
        lines.append("")
        lines.append("samples/s: rows per second, median (min, max) over the timed repeats after warm-up; train_step counts")
        lines.append("training rows (forward + backward + Adam on one batch of the row's size). GFLOP/s: FLOPs per row (bench/README.md)")
        lines.append("x median samples/s. % SGEMM: GFLOP/s / the SGEMM rate above.")
        lines.append(info.memory
            ? "peak MiB: the whole peak RSS (ru_maxrss) of the child process that built, perturbed and timed the row"
                + cFormat(" (floor: the\nparent's own peak, %.1f MiB, which Linux carries into a spawned child).", Double(info.parentPeakRSSBytes) / 1_048_576)
            : "peak MiB: not measured (--no-memory).")
        return lines.joined(separator: "\n")
    }

    /// The JSON document of `--json`.
    static func json(_ results: [RowResult], _ info: RunInfo) -> String {
        func obj(_ pairs: [(String, String)]) -> String {
            "{" + pairs.map { "\(jsonString($0.0)): \($0.1)" }.joined(separator: ", ") + "}"
        }
        func opt(_ v: Double?) -> String { v.map(jsonNumber) ?? "null" }
        var sgemm: [(String, String)] = [
            ("m", "1024"), ("n", "1024"), ("k", "1024"), ("threads", String(info.sgemm.threads)),
            ("calls", String(info.sgemm.rates.count)),
        ]
        let s = info.sgemm.summary
        sgemm += [("gflops_median", opt(s?.median)), ("gflops_min", opt(s?.min)), ("gflops_max", opt(s?.max))]
        let rows = results.map { r -> String in
            let sum = r.summary
            return obj([
                ("id", jsonString(r.row.id)),
                ("model", jsonString(r.row.model.name)),
                ("model_id", jsonString(r.row.model.id)),
                ("model_description", jsonString(r.row.model.description)),
                ("operation", jsonString(r.row.operation.rawValue)),
                ("batch", String(r.row.batch)),
                ("samples_per_second", obj([("median", opt(sum?.median)), ("min", opt(sum?.min)), ("max", opt(sum?.max))])),
                ("repeats", String(r.measurement?.samplesPerSecond.count ?? 0)),
                ("calls_per_repeat", String(r.measurement?.callsPerRepeat ?? 0)),
                ("seconds_per_call_median", opt(r.secondsPerCall)),
                ("flops_per_row", jsonNumber(r.row.flopsPerRow)),
                ("gflops", opt(r.gflops)),
                ("percent_of_sgemm", opt(percentOfSGEMM(r, info))),
                ("peak_rss_mib", opt(mebibytes(r.peakRSSBytes))),
                ("checksum", opt(r.measurement?.checksum)),
                ("error", r.failure.map(jsonString) ?? "null"),
            ])
        }
        let top: [(String, String)] = [
            ("tool", jsonString("swiftflows-bench")),
            ("debug_build", info.debugBuild ? "true" : "false"),
            ("quick", info.quick ? "true" : "false"),
            ("threads", String(info.threads)),
            ("cpu", jsonString(info.cpu)),
            ("processors", String(info.processors)),
            ("load_average", jsonString(info.loadAverage)),
            ("peak_memory", jsonString(info.memory ? "child ru_maxrss" : "not measured")),
            ("parent_peak_rss_mib", jsonNumber(Double(info.parentPeakRSSBytes) / 1_048_576)),
            ("sgemm", obj(sgemm)),
        ]
        return "{\n" + top.map { "  \(jsonString($0.0)): \($0.1),\n" }.joined()
            + "  \"rows\": [\n" + rows.map { "    " + $0 }.joined(separator: ",\n") + "\n  ]\n}"
    }
}
