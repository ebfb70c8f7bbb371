import FlowCore
import FlowModelFile
import FlowData
#if canImport(Glibc)
import Glibc
#endif

/// Command-line options of `swiftflows-bench`.
struct Options {
    var json = false
    var filter: String?
    var only: String?
    var threads: Int?
    var quick = false
    var memory = true
    var child = false
    var list = false
    /// `--sgemm-child CALLS`: time SGEMM and print the rates for the parent.
    var sgemmChildCalls: Int?
    /// `--sgemm-seconds S`: and keep timing until S seconds have passed.
    var sgemmChildSeconds = 0.0

    static let usage = """
    usage: swiftflows-bench [--json] [--filter SUBSTRING] [--threads N] [--quick] [--no-memory] [--list]

    Times every operation of the benchmark models (see bench/README.md) and prints one table:
    samples/s (median, min, max over repeats after warm-up), time per call, GFLOP/s, percentage
    of the SGEMM rate measured in the same run, and the peak memory of the row's process.

      --json              print the results as JSON instead of the table
      --filter SUBSTRING  run only the rows whose id contains SUBSTRING (ids: --list)
      --only ROWID        run exactly one row
      --threads N         worker threads of the library (FlowRuntime.threadCount; default: its
                          own default, SWIFTFLOWS_NUM_THREADS or all processors)
      --quick             fewer and shorter repeats (smoke tests; numbers are rough)
      --no-memory         run rows in this process (no child processes, no peak memory)
      --list              print the row ids and exit
      --child             (internal) run the --only row and print a result line for the parent
      --sgemm-child CALLS (internal) time CALLS SGEMM calls and print their rates for the parent
      --sgemm-seconds S   (internal) with --sgemm-child: time calls for at least S seconds
      -h, --help          this text
    """

    static func parse(_ arguments: [String]) throws -> Options {
        var o = Options()
        var i = 0
        func value(_ flag: String) throws -> String {
            i += 1
            guard i < arguments.count else { throw BenchError("\(flag) needs a value") }
            return arguments[i]
        }
        while i < arguments.count {
            let a = arguments[i]
            switch a {
            case "--json": o.json = true
            case "--filter": o.filter = try value(a)
            case "--only": o.only = try value(a)
            case "--threads":
                let v = try value(a)
                guard let n = Int(v), (1...256).contains(n) else { throw BenchError("--threads needs an integer in 1...256, got \(v)") }
                o.threads = n
            case "--quick": o.quick = true
            case "--no-memory": o.memory = false
            case "--child": o.child = true
            case "--list": o.list = true
            case "--sgemm-child":
                let v = try value(a)
                guard let n = Int(v), (1...1000).contains(n) else { throw BenchError("--sgemm-child needs a count in 1...1000, got \(v)") }
                o.sgemmChildCalls = n
            case "--sgemm-seconds":
                let v = try value(a)
                guard let t = Double(v), t >= 0, t <= 60 else { throw BenchError("--sgemm-seconds needs seconds in 0...60, got \(v)") }
                o.sgemmChildSeconds = t
            case "-h", "--help":
                print(usage)
                exit(0)
            default:
                throw BenchError("unknown argument \(a)\n\(usage)")
            }
            i += 1
        }
        if o.child, o.only == nil { throw BenchError("--child needs --only ROWID") }
        return o
    }

    var settings: MeasureSettings { quick ? .quick : .standard }

    /// The selected rows, in table order.
    func rows() throws -> [RowSpec] {
        var rows = RowSpec.all
        if let only {
            rows = rows.filter { $0.id == only }
            guard !rows.isEmpty else { throw BenchError("no row has the id \(only) (see --list)") }
        }
        if let filter { rows = rows.filter { $0.id.contains(filter) } }
        return rows
    }
}
