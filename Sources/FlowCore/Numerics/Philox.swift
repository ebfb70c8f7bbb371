import CFlowKernels

/// Philox4x32-10, the counter-based generator of Salmon et al., "Parallel random numbers: as easy
/// as 1, 2, 3" (SC 2011) — the generator behind numpy's `Philox`, JAX and cuRAND.
///
/// A counter-based generator maps `(key, counter)` to random bits with no hidden state, so the
/// random numbers of sample row `r` depend only on the seed and `r`. Batches can be split
/// across any number of threads, or chunks, and still give bit-identical samples.
///
/// SwiftFlows' use of it (part of the documented, stable sampling contract):
/// - key = the 64-bit seed split into `(low 32 bits, high 32 bits)`;
/// - counter = `(block, row low 32 bits, row high 32 bits, stream)`, where `block` counts groups
///   of four values within a row and `stream` separates independent uses (0 = base samples,
///   1 = parameter initialisation, 2 = random permutations, 3 = data shuffling).
public struct Philox4x32: Sendable {
    public var key: (UInt32, UInt32)

    @inlinable public init(seed: UInt64) {
        key = (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32))
    }

    /// The ten-round Philox4x32 bijection of `counter` under `key`.
    @inlinable @inline(__always)
    public func block(_ c0: UInt32, _ c1: UInt32, _ c2: UInt32, _ c3: UInt32)
        -> (UInt32, UInt32, UInt32, UInt32)
    {
        var (x0, x1, x2, x3) = (c0, c1, c2, c3)
        var (k0, k1) = key
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(x0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(x2)
            let hi0 = UInt32(truncatingIfNeeded: p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
            let hi1 = UInt32(truncatingIfNeeded: p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
            (x0, x1, x2, x3) = (hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0)
            k0 &+= 0x9E37_79B9
            k1 &+= 0xBB67_AE85
        }
        return (x0, x1, x2, x3)
    }

    /// A uniform in the open interval (0, 1) from 32 random bits: `(u + 0.5) / 2³²`.
    @inlinable @inline(__always)
    public static func unitOpen(_ u: UInt32) -> Double { (Double(u) + 0.5) * 0x1p-32 }

    /// Fills `count` standard normal values of row `row` in stream `stream`, by the Box–Muller
    /// transform: each Philox block of four 32-bit words gives two uniform pairs, so four
    /// normals (`fk_philox_normal_f32`: radius `√(−2 ln u)` with `u = (⌊w/2⁸⌋ + ½)/2²⁴`, angle
    /// from the second word, computed in float32 with AVX2 where available). Double callers get
    /// the same float values, widened.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public func fillNormal<T: FlowScalar>(
        _ out: UnsafeMutablePointer<T>, count: Int, row: UInt64, stream: UInt32
    ) {
        guard count > 0 else { return }
        let seed = UInt64(key.1) << 32 | UInt64(key.0)
        let raw = UnsafeMutableRawPointer(out)
        fk_philox_normal_f32(seed, row, stream, raw.assumingMemoryBound(to: Float.self), count)  // C writes raw bytes
        if T.self == Float.self { return }
        // Widen in place, from the end, so no float is overwritten before it is read.
        for i in stride(from: count - 1, through: 0, by: -1) {
            let v = raw.load(fromByteOffset: i * MemoryLayout<Float>.stride, as: Float.self)
            raw.storeBytes(of: T(v), toByteOffset: i * MemoryLayout<T>.stride, as: T.self)
        }
    }

    /// ``fillNormal(_:count:row:stream:)`` for `rows` consecutive rows from `firstRow`: row
    /// `firstRow + r` goes to `out + r·count`. The same values as one call per row;
    /// `fk_philox_normal_rows_f32` packs several short rows into each vector.
    @_specialize(where T == Float) @_specialize(where T == Double)
    public func fillNormalRows<T: FlowScalar>(
        _ out: UnsafeMutablePointer<T>, rows: Int, count: Int, firstRow: UInt64, stream: UInt32
    ) {
        guard rows > 0, count > 0 else { return }
        guard T.self == Float.self else {
            for r in 0..<rows { fillNormal(out + r * count, count: count, row: firstRow &+ UInt64(r), stream: stream) }
            return
        }
        let seed = UInt64(key.1) << 32 | UInt64(key.0)
        fk_philox_normal_rows_f32(seed, firstRow, rows, stream, count,
                                  UnsafeMutableRawPointer(out).assumingMemoryBound(to: Float.self), count)
    }

    /// Fills `count` uniforms in (0, 1) for row `row` of stream `stream` (53-bit resolution).
    public func fillUniform(_ out: UnsafeMutablePointer<Double>, count: Int, row: UInt64, stream: UInt32) {
        let r0 = UInt32(truncatingIfNeeded: row), r1 = UInt32(truncatingIfNeeded: row >> 32)
        var i = 0
        var blockIndex: UInt32 = 0
        while i < count {
            let (a, b, c, d) = block(blockIndex, r0, r1, stream)
            blockIndex &+= 1
            let u1 = (Double((UInt64(a) << 21) ^ UInt64(b >> 11)) + 0.5) * 0x1p-53
            let u2 = (Double((UInt64(c) << 21) ^ UInt64(d >> 11)) + 0.5) * 0x1p-53
            out[i] = u1
            if i + 1 < count { out[i + 1] = u2 }
            i += 2
        }
    }
}

/// A sequential stream over one Philox row, for set-up work (weight initialisation, random
/// permutations, shuffles) where values are drawn one at a time.
public struct PhiloxStream: Sendable {
    private let philox: Philox4x32
    private let row: UInt64
    private let stream: UInt32
    private var blockIndex: UInt32 = 0
    private var buffer: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
    private var used = 4

    public init(seed: UInt64, row: UInt64, stream: UInt32) {
        philox = Philox4x32(seed: seed)
        self.row = row
        self.stream = stream
    }

    public mutating func nextUInt32() -> UInt32 {
        if used == 4 {
            buffer = philox.block(blockIndex, UInt32(truncatingIfNeeded: row),
                                  UInt32(truncatingIfNeeded: row >> 32), stream)
            blockIndex &+= 1
            used = 0
        }
        defer { used += 1 }
        switch used {
        case 0: return buffer.0
        case 1: return buffer.1
        case 2: return buffer.2
        default: return buffer.3
        }
    }

    /// Uniform in (0, 1) with 53 random bits.
    public mutating func nextUniform() -> Double {
        let hi = UInt64(nextUInt32()), lo = UInt64(nextUInt32())
        return (Double((hi << 21) ^ (lo >> 11)) + 0.5) * 0x1p-53
    }

    /// Uniform on [a, b).
    public mutating func nextUniform(in a: Double, _ b: Double) -> Double { a + (b - a) * nextUniform() }

    /// Standard normal by Box–Muller (one value per call; the sine branch is discarded for simplicity).
    public mutating func nextNormal() -> Double {
        let u1 = nextUniform(), u2 = nextUniform()
        return (-2 * Double.log(u1)).squareRoot() * Double.cos(2 * Double.pi * u2)
    }

    /// Uniform integer in 0..<bound (bound > 0), by Lemire's multiply-shift with rejection.
    public mutating func nextInt(below bound: Int) -> Int {
        guard bound > 1 else { return 0 }
        let b = UInt32(clamping: bound)
        let threshold = (0 &- b) % b
        while true {
            let m = UInt64(nextUInt32()) &* UInt64(b)
            if UInt32(truncatingIfNeeded: m) >= threshold { return Int(m >> 32) }
        }
    }

    /// A uniformly random permutation of 0..<n (Fisher–Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n > 1 {
            for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, nextInt(below: i + 1)) }
        }
        return p
    }
}

/// Named Philox streams (see ``Philox4x32``).
public enum RandomStream {
    public static let baseSamples: UInt32 = 0
    public static let initialization: UInt32 = 1
    public static let permutation: UInt32 = 2
    public static let shuffle: UInt32 = 3
    public static let dequantization: UInt32 = 4
    public static let probes: UInt32 = 5
}
