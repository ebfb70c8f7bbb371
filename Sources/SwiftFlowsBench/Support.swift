#if canImport(Glibc)
import Glibc
#endif

// MARK: - Clock

/// Seconds on the monotonic clock.
@inline(__always)
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

// MARK: - Random data

/// SplitMix64 with Box–Muller normals: reproducible benchmark inputs without Foundation.
struct BenchRandom {
    private var state: UInt64
    private var spare: Double?

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform on [0, 1).
    mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform on [lower, upper).
    mutating func uniform(_ lower: Double, _ upper: Double) -> Double { lower + (upper - lower) * uniform() }

    /// Standard normal.
    mutating func normal() -> Double {
        if let s = spare { spare = nil; return s }
        var u = uniform()
        while u <= 0 { u = uniform() }
        let v = uniform()
        let r = (-2 * log(u)).squareRoot(), t = 2 * Double.pi * v
        spare = r * sin(t)
        return r * cos(t)
    }
}

/// A 64-byte-aligned buffer of `count` values, freed explicitly.
struct AlignedBuffer<T> {
    let pointer: UnsafeMutablePointer<T>
    let count: Int

    init(count: Int, repeating value: T) {
        self.count = count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<T>.stride, alignment: 64)
            .bindMemory(to: T.self, capacity: max(count, 1))
        pointer.initialize(repeating: value, count: max(count, 1))
    }

    func free() { UnsafeMutableRawPointer(pointer).deallocate() }
}

/// Writes `rows` rows of a fixed correlated Gaussian in `dim` dimensions: feature `j` is
/// `μ_j + σ_j·ε_j + 0.5·ε_{j−1}` with `μ_j ∈ [−1, 1]`, `σ_j ∈ [0.5, 1.5]` drawn once from the
/// dimension, so every process and model sees the same data distribution.
func fillData(_ out: UnsafeMutablePointer<Float>, rows: Int, dim: Int, seed: UInt64) {
    var shape = BenchRandom(seed: 0xDA7A_0000 &+ UInt64(dim))
    let mu = (0..<dim).map { _ in shape.uniform(-1, 1) }
    let sigma = (0..<dim).map { _ in shape.uniform(0.5, 1.5) }
    var rng = BenchRandom(seed: seed)
    for r in 0..<rows {
        var previous = 0.0
        for j in 0..<dim {
            let e = rng.normal()
            out[r * dim + j] = Float(mu[j] + sigma[j] * e + 0.5 * previous)
            previous = e
        }
    }
}

/// Writes `count` standard-normal values (latent inputs of `inverse`).
func fillNormal(_ out: UnsafeMutablePointer<Float>, count: Int, seed: UInt64) {
    var rng = BenchRandom(seed: seed)
    for i in 0..<count { out[i] = Float(rng.normal()) }
}

// MARK: - Statistics

/// Median, minimum and maximum of repeated measurements.
struct Summary {
    let median: Double
    let min: Double
    let max: Double

    init(_ values: [Double]) {
        let sorted = values.sorted()
        precondition(!sorted.isEmpty, "no measurements")
        let n = sorted.count
        median = n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
        min = sorted[0]
        max = sorted[n - 1]
    }
}

// MARK: - Formatting (printf through vsnprintf; no Foundation)

/// `printf`-style formatting of numbers.
func cFormat(_ format: String, _ arguments: CVarArg...) -> String {
    withVaList(arguments) { va in
        var buffer = [CChar](repeating: 0, count: 128)
        _ = buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress!, $0.count, format, va) }
        return String(cString: buffer)
    }
}

/// A rate with an SI suffix and three significant digits: `812`, `12.3k`, `1.05M`.
func siRate(_ value: Double) -> String {
    guard value.isFinite else { return "-" }
    let units: [(Double, String)] = [(1e9, "G"), (1e6, "M"), (1e3, "k")]
    for (scale, suffix) in units where value >= scale * 0.9995 {
        return threeDigits(value / scale) + suffix
    }
    return threeDigits(value)
}

private func threeDigits(_ v: Double) -> String {
    if v >= 99.95 { return cFormat("%.0f", v) }
    if v >= 9.995 { return cFormat("%.1f", v) }
    return cFormat("%.2f", v)
}

/// A duration in ns, µs, ms or s with three significant digits.
func duration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "-" }
    if seconds < 1e-6 { return threeDigits(seconds * 1e9) + " ns" }
    if seconds < 1e-3 { return threeDigits(seconds * 1e6) + " µs" }
    if seconds < 1 { return threeDigits(seconds * 1e3) + " ms" }
    return threeDigits(seconds) + " s"
}

/// Pads `text` to `width` display columns (left- or right-aligned). Counts Unicode scalars,
/// which is the display width of everything this program prints.
func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
    let n = text.unicodeScalars.count
    guard n < width else { return text }
    let fill = String(repeating: " ", count: width - n)
    return right ? fill + text : text + fill
}

/// A JSON number (`null` for non-finite values).
func jsonNumber(_ v: Double) -> String {
    guard v.isFinite else { return "null" }
    if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
    return cFormat("%.6g", v)
}

/// A JSON string literal.
func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 { out += cFormat("\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}

// MARK: - Output

/// Writes `text` to standard error.
func printError(_ text: String) {
    fputs(text + "\n", stderr)
}

/// The first line of `path` (e.g. a /proc file) or nil.
func readFirstLine(_ path: String, prefix: String? = nil) -> String? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var line: UnsafeMutablePointer<CChar>?
    var capacity = 0
    defer { free(line) }
    while getline(&line, &capacity, f) > 0 {
        var s = String(cString: line!)
        while s.last == "\n" { s.removeLast() }
        guard let prefix else { return s }
        if s.hasPrefix(prefix) { return s }
    }
    return nil
}
