import RealModule

/// The generators behind ``ToyDataset``: one method per data set, each following the recipe and
/// the random-stream layout documented on ``ToyDataset`` (which is the contract; change neither
/// without changing both).
///
/// Points are built as `(x, y)` pairs in `Double`, then rounded to `Float` in ``generate(_:)``.
struct ToyRecipes {
    let dataset: ToyDataset
    let seed: UInt64

    /// The `purpose` field of the stream word.
    private enum Purpose: UInt32 {
        case point = 0
        case noise = 1
        case shuffle = 2
    }

    /// `n × 2` row-major values (`n` already validated).
    mutating func generate(_ n: Int) -> [Float] {
        let points: [(Double, Double)]
        switch dataset {
        case .eightGaussians: points = eightGaussians(n)
        case .checkerboard: points = checkerboard(n)
        case .rings: points = rings(n)
        case .moons: points = moons(n)
        case .circles: points = circles(n)
        case .swissroll: points = swissroll(n)
        case .pinwheel: points = pinwheel(n)
        case .twoSpirals: points = twoSpirals(n)
        }
        var values = [Float](repeating: 0, count: 2 * n)
        for (i, p) in points.enumerated() {
            values[2 * i] = Float(p.0)
            values[2 * i + 1] = Float(p.1)
        }
        return values
    }

    // MARK: - Random streams

    /// The Philox stream word for `purpose` (see ``ToyDataset``).
    private func streamWord(_ purpose: Purpose) -> UInt32 {
        0x746F_0000 | (dataset.streamCode << 8) | purpose.rawValue
    }

    /// The draws of point `i` (its index before any shuffle).
    private func pointStream(_ i: Int) -> PhiloxStream {
        PhiloxStream(seed: seed, row: UInt64(i), stream: streamWord(.point))
    }

    /// `points` in a seeded random order: `result[r] = points[p[r]]`.
    private func shuffled(_ points: [(Double, Double)]) -> [(Double, Double)] {
        var stream = PhiloxStream(seed: seed, row: 0, stream: streamWord(.shuffle))
        return stream.permutation(points.count).map { points[$0] }
    }

    /// Adds `N(0, sigma²)` to both coordinates of every row `r` (two normals from row `r`).
    private func addingNoise(_ points: [(Double, Double)], sigma: Double) -> [(Double, Double)] {
        var result = points
        for r in result.indices {
            var stream = PhiloxStream(seed: seed, row: UInt64(r), stream: streamWord(.noise))
            let e0 = stream.nextNormal(), e1 = stream.nextNormal()
            result[r].0 += sigma * e0
            result[r].1 += sigma * e1
        }
        return result
    }

    // MARK: - Deterministic grids

    /// numpy's `linspace(start, stop, count)` (endpoint included; `[start]` for one point).
    private static func linspace(_ start: Double, _ stop: Double, _ count: Int) -> [Double] {
        guard count > 1 else { return count == 1 ? [start] : [] }
        let step = (stop - start) / Double(count - 1)
        var values = (0..<count).map { start + Double($0) * step }
        values[count - 1] = stop
        return values
    }

    /// `count` points `radius·(cos θ, sin θ)` at `θ = 2πj/count` (numpy's `endpoint=False`).
    private static func circle(radius: Double, count: Int) -> [(Double, Double)] {
        (0..<count).map { j in
            let theta = 2 * Double.pi * Double(j) / Double(count)
            return (radius * Double.cos(theta), radius * Double.sin(theta))
        }
    }

    // MARK: - Recipes

    private func eightGaussians(_ n: Int) -> [(Double, Double)] {
        let h = 1 / Double.sqrt(2)
        let centres: [(Double, Double)] = [(1, 0), (-1, 0), (0, 1), (0, -1), (h, h), (h, -h), (-h, h), (-h, -h)]
        return (0..<n).map { i in
            var stream = pointStream(i)
            let z0 = stream.nextNormal(), z1 = stream.nextNormal()
            let c = centres[stream.nextInt(below: 8)]
            return ((0.5 * z0 + 4 * c.0) / 1.414, (0.5 * z1 + 4 * c.1) / 1.414)
        }
    }

    private func checkerboard(_ n: Int) -> [(Double, Double)] {
        (0..<n).map { i in
            var stream = pointStream(i)
            let u1 = stream.nextUniform(), u2 = stream.nextUniform()
            let b = Double(stream.nextInt(below: 2))
            let x1 = 4 * u1 - 2
            let column = x1.rounded(.down)
            // Python's `%`: the result has the sign of the divisor, so it is 0 or 1 here.
            let parity = column - 2 * (column / 2).rounded(.down)
            let x2 = u2 - 2 * b + parity
            return (2 * x1, 2 * x2)
        }
    }

    private func rings(_ n: Int) -> [(Double, Double)] {
        let quarter = n / 4
        let counts = [quarter, quarter, quarter, n - 3 * quarter]
        let radii: [Double] = [1, 0.75, 0.5, 0.25]
        var points: [(Double, Double)] = []
        points.reserveCapacity(n)
        for (radius, count) in zip(radii, counts) {
            points += Self.circle(radius: 3 * radius, count: count)
        }
        return addingNoise(shuffled(points), sigma: 0.08)
    }

    private func moons(_ n: Int) -> [(Double, Double)] {
        let outer = n / 2
        var points = Self.linspace(0, Double.pi, outer).map { t in (Double.cos(t), Double.sin(t)) }
        points += Self.linspace(0, Double.pi, n - outer).map { t in (1 - Double.cos(t), 1 - Double.sin(t) - 0.5) }
        return addingNoise(shuffled(points), sigma: 0.1).map { p in (2 * p.0 - 1, 2 * p.1 - 0.2) }
    }

    private func circles(_ n: Int) -> [(Double, Double)] {
        let outer = n / 2
        let points = Self.circle(radius: 1, count: outer) + Self.circle(radius: 0.5, count: n - outer)
        return addingNoise(shuffled(points), sigma: 0.08).map { p in (3 * p.0, 3 * p.1) }
    }

    private func swissroll(_ n: Int) -> [(Double, Double)] {
        (0..<n).map { i in
            var stream = pointStream(i)
            let t = 1.5 * Double.pi * (1 + 2 * stream.nextUniform())
            let e1 = stream.nextNormal(), e2 = stream.nextNormal()
            return ((t * Double.cos(t) + e1) / 5, (t * Double.sin(t) + e2) / 5)
        }
    }

    private func pinwheel(_ n: Int) -> [(Double, Double)] {
        let arms = 5
        let points: [(Double, Double)] = (0..<n).map { i in
            var stream = pointStream(i)
            let f0 = 1 + 0.3 * stream.nextNormal()
            let f1 = 0.1 * stream.nextNormal()
            let angle = 2 * Double.pi * Double(i % arms) / Double(arms) + 0.25 * Double.exp(f0)
            let c = Double.cos(angle), s = Double.sin(angle)
            return (2 * (f0 * c + f1 * s), 2 * (-f0 * s + f1 * c))
        }
        return shuffled(points)
    }

    private func twoSpirals(_ n: Int) -> [(Double, Double)] {
        let half = (n + 1) / 2
        let first: [(Double, Double)] = (0..<half).map { i in
            var stream = pointStream(i)
            let t = Double.sqrt(stream.nextUniform()) * 540 * (2 * Double.pi) / 360
            let a = stream.nextUniform(), b = stream.nextUniform()
            return (-Double.cos(t) * t + 0.5 * a, Double.sin(t) * t + 0.5 * b)
        }
        let stacked = first + first.map { p in (-p.0, -p.1) }
        let points = stacked.prefix(n).map { p in (p.0 / 3, p.1 / 3) }
        return addingNoise(shuffled(points), sigma: 0.1)
    }
}
