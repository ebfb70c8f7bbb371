/// Dense products used by conditioners and linear layers.
///
/// Large products go to BLAS (`sgemm`/`dgemm`). Products too small for BLAS to amortise its
/// call overhead (a single row, or very narrow inputs such as the one-feature half of a 2-D
/// coupling) run in a register-friendly loop: OpenBLAS runs near 1 GFLOP/s there.
enum MatrixProducts {
    /// Work (m·n·k) below which the direct loops win over a BLAS call.
    static let directThreshold = 8 * 1024

    /// `y[i, j] = Σ_k x[i, k] · w[j, k] + bias[j]` — a PyTorch `Linear` with weight `[out, in]`.
    ///
    /// - Parameters:
    ///   - x: `rows × inFeatures` with row stride `ldx` (lets a coupling read a contiguous
    ///     half of its input in place).
    ///   - weight: `outFeatures × inFeatures`, row-major.
    ///   - bias: `outFeatures`, or nil for none.
    ///   - y: `rows × outFeatures`, row stride `outFeatures`; overwritten.
    /// - Complexity: O(rows · inFeatures · outFeatures).
    @_specialize(where T == Float) @_specialize(where T == Double)
    static func linear<T: FlowScalar>(
        _ x: UnsafePointer<T>, ldx: Int, rows: Int, inFeatures: Int,
        weight: UnsafePointer<T>, bias: UnsafePointer<T>?, outFeatures: Int,
        into y: UnsafeMutablePointer<T>
    ) {
        guard rows > 0, outFeatures > 0 else { return }
        if inFeatures == 0 {
            for i in 0..<rows {
                let yr = y + i * outFeatures
                for j in 0..<outFeatures { yr[j] = bias?[j] ?? 0 }
            }
            return
        }
        if rows * inFeatures * outFeatures <= directThreshold || inFeatures <= 2 {
            for i in 0..<rows {
                let xr = x + i * ldx
                let yr = y + i * outFeatures
                for j in 0..<outFeatures {
                    let wr = weight + j * inFeatures
                    var acc: T = bias?[j] ?? 0
                    for k in 0..<inFeatures { acc += xr[k] * wr[k] }
                    yr[j] = acc
                }
            }
            return
        }
        FlowRuntime.configureBLAS()
        if let bias {
            for i in 0..<rows { (y + i * outFeatures).update(from: bias, count: outFeatures) }
        }
        T.blasGemm(transA: false, transB: true, m: rows, n: outFeatures, k: inFeatures,
                   alpha: 1, a: x, lda: ldx, b: weight, ldb: inFeatures,
                   beta: bias == nil ? 0 : 1, c: y, ldc: outFeatures)
    }

    /// `dst[k·rows + j] = src[j·columns + k]`: a `rows × columns` row-major matrix transposed
    /// (how conditioners pack PyTorch-layout weights for the dense kernel). O(rows·columns).
    @_specialize(where T == Float) @_specialize(where T == Double)
    static func transpose<T>(_ src: UnsafePointer<T>, rows: Int, columns: Int, into dst: UnsafeMutablePointer<T>) {
        for j in 0..<rows {
            let row = src + j * columns
            for k in 0..<columns { dst[k * rows + j] = row[k] }
        }
    }
}
