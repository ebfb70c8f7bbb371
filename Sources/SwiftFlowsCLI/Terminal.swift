#if canImport(Glibc)
import Glibc
#endif

/// Output helpers: stderr for progress and diagnostics, stdout for results.
enum Terminal {
    /// Monotonic seconds.
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) != 0 }

    static func error(_ text: String) {
        fputs(text, stderr)
        fflush(stderr)
    }

    static func out(_ text: String) {
        fputs(text, stdout)
        fflush(stdout)
    }

    /// `1:02:03` or `2:03`.
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "--:--" }
        let s = Int(seconds.rounded())
        let (h, m, r) = (s / 3600, (s / 60) % 60, s % 60)
        return h > 0 ? "\(h):\(pad2(m)):\(pad2(r))" : "\(m):\(pad2(r))"
    }

    /// `48.2k`, `1.3M`.
    static func rate(_ value: Double) -> String {
        guard value.isFinite else { return "-" }
        if value >= 1e6 { return fixed(value / 1e6, 1) + "M" }
        if value >= 1e3 { return fixed(value / 1e3, 1) + "k" }
        return fixed(value, 0)
    }

    /// `value` with `digits` decimals (no Foundation).
    static func fixed(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return "\(value)" }
        var buffer = [CChar](repeating: 0, count: 64)
        _ = withVaList([digits, value]) { vsnprintf(&buffer, 64, "%.*f", $0) }
        return String(cString: buffer)
    }

    /// `value` in `%.3g`-style scientific notation.
    static func scientific(_ value: Double) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        _ = withVaList([value]) { vsnprintf(&buffer, 64, "%.2e", $0) }
        return String(cString: buffer)
    }

    static func pad2(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }

    /// Left-pads `text` to `width` columns.
    static func right(_ text: String, _ width: Int) -> String {
        String(repeating: " ", count: max(0, width - text.count)) + text
    }

    /// Right-pads `text` to `width` columns.
    static func left(_ text: String, _ width: Int) -> String {
        text + String(repeating: " ", count: max(0, width - text.count))
    }
}
