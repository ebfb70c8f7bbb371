/// Small dense linear algebra in Double for set-up work (initialisation, LU factors, inverses
/// of D×D weights). Row-major `[n·n]` arrays. O(n³); not on any per-sample path.
enum DenseLinearAlgebra {
    /// A uniformly random orthogonal matrix: modified Gram–Schmidt on a Gaussian matrix, with
    /// column signs fixed so the distribution is Haar (Mezzadri 2007).
    static func randomOrthogonal(_ n: Int, rng: inout PhiloxStream) -> [Double] {
        var a = (0..<(n * n)).map { _ in rng.nextNormal() }
        // Orthonormalise columns.
        for j in 0..<n {
            for k in 0..<j {
                var dot = 0.0
                for i in 0..<n { dot += a[i * n + j] * a[i * n + k] }
                for i in 0..<n { a[i * n + j] -= dot * a[i * n + k] }
            }
            var norm = 0.0
            for i in 0..<n { norm += a[i * n + j] * a[i * n + j] }
            norm = norm.squareRoot()
            if norm < 1e-12 { for i in 0..<n { a[i * n + j] = i == j ? 1 : 0 }; norm = 1 }
            for i in 0..<n { a[i * n + j] /= norm }
        }
        return a
    }

    /// LU with partial pivoting: `a[rowOrder[i], :] = (L·U)[i, :]`. `L` unit lower, `U` upper,
    /// returned packed in one matrix (L strictly below the diagonal). Nil when singular.
    static func luDecompose(_ a: [Double], _ n: Int) -> (lu: [Double], rowOrder: [Int])? {
        var m = a
        var order = Array(0..<n)
        for k in 0..<n {
            var pivot = k
            for i in (k + 1)..<max(n, k + 1) where abs(m[i * n + k]) > abs(m[pivot * n + k]) { pivot = i }
            if m[pivot * n + k] == 0 { return nil }
            if pivot != k {
                for j in 0..<n { m.swapAt(k * n + j, pivot * n + j) }
                order.swapAt(k, pivot)
            }
            for i in (k + 1)..<max(n, k + 1) {
                let f = m[i * n + k] / m[k * n + k]
                m[i * n + k] = f
                for j in (k + 1)..<n { m[i * n + j] -= f * m[k * n + j] }
            }
        }
        return (m, order)
    }

    /// Inverse of `a` by LU with partial pivoting, or nil when singular.
    static func inverse(_ a: [Double], _ n: Int) -> [Double]? {
        guard let (lu, order) = luDecompose(a, n) else { return nil }
        var inv = [Double](repeating: 0, count: n * n)
        var col = [Double](repeating: 0, count: n)
        for j in 0..<n {
            // Solve A x = e_j, i.e. L U x = (row-permuted e_j).
            for i in 0..<n { col[i] = order[i] == j ? 1 : 0 }
            for i in 0..<n { for k in 0..<i { col[i] -= lu[i * n + k] * col[k] } }
            for i in stride(from: n - 1, through: 0, by: -1) {
                for k in (i + 1)..<max(n, i + 1) { col[i] -= lu[i * n + k] * col[k] }
                col[i] /= lu[i * n + i]
            }
            for i in 0..<n { inv[i * n + j] = col[i] }
        }
        return inv
    }

    /// log|det a| and the sign of det a, by LU; nil when singular.
    static func logAbsDeterminant(_ a: [Double], _ n: Int) -> (logAbs: Double, sign: Double)? {
        guard let (lu, order) = luDecompose(a, n) else { return nil }
        var logAbs = 0.0, sign = 1.0
        for i in 0..<n {
            let d = lu[i * n + i]
            logAbs += Double.log(abs(d))
            if d < 0 { sign = -sign }
        }
        // Parity of the row permutation.
        var seen = [Bool](repeating: false, count: n)
        for i in 0..<n where !seen[i] {
            var j = i, length = 0
            while !seen[j] { seen[j] = true; j = order[j]; length += 1 }
            if length % 2 == 0 { sign = -sign }
        }
        return (logAbs, sign)
    }

    /// The 1-norm condition number ‖a‖₁·‖a⁻¹‖₁ from `a` and its inverse (∞ when the inverse is
    /// not finite).
    static func conditionNumber(_ a: [Double], inverse: [Double], _ n: Int) -> Double {
        func norm1(_ m: [Double]) -> Double {
            var largest = 0.0
            for j in 0..<n {
                var column = 0.0
                for i in 0..<n { column += abs(m[i * n + j]) }
                if !column.isFinite { return .infinity }
                largest = Swift.max(largest, column)
            }
            return largest
        }
        return norm1(a) * norm1(inverse)
    }
}
