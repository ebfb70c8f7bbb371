/// What the ODE solves of continuous layers cost: how many solves ran and their summed
/// ``ODESolver/Statistics``, for the state (forward, inverse, sampling and the forward pass of a
/// training step) and for the adjoint (the backward pass of a training step with
/// `"gradient": "adjoint"`). One solve integrates one chunk of rows
/// (``ContinuousFlow/rowsPerSolve``), so "NFE per solve" is the number of network evaluations
/// a batch of that many rows needed — the cost FFJORD reports, and the one RNODE's penalties
/// keep small.
public struct SolverWork: Equatable, Sendable, CustomStringConvertible {
    /// Solves of the state `[z, Δ]` that finished.
    public var solves = 0
    /// Their summed statistics.
    public var statistics = ODESolver.Statistics()
    /// Adjoint solves that finished.
    public var adjointSolves = 0
    /// Their summed statistics.
    public var adjointStatistics = ODESolver.Statistics()

    public init() {}

    /// Mean function evaluations per state solve (nil before the first).
    public var meanNFE: Double? { solves > 0 ? Double(statistics.functionEvaluations) / Double(solves) : nil }
    /// Mean function evaluations per adjoint solve (nil before the first).
    public var meanAdjointNFE: Double? {
        adjointSolves > 0 ? Double(adjointStatistics.functionEvaluations) / Double(adjointSolves) : nil
    }

    public static func + (a: SolverWork, b: SolverWork) -> SolverWork {
        var s = a
        s.solves += b.solves
        s.statistics += b.statistics
        s.adjointSolves += b.adjointSolves
        s.adjointStatistics += b.adjointStatistics
        return s
    }

    /// `NFE 86 per solve (412 solves), adjoint 140 (56 solves)`.
    public var description: String {
        func mean(_ v: Double?) -> String { v.map { String(Int($0.rounded())) } ?? "-" }
        var text = "NFE \(mean(meanNFE)) per solve (\(solves) solves)"
        if adjointSolves > 0 { text += ", adjoint \(mean(meanAdjointNFE)) (\(adjointSolves) solves)" }
        return text
    }
}

/// A ``SolverWork`` total that the chunks of a call, running on several threads, add to.
final class SolverWorkCounter: @unchecked Sendable {
    private let mutex = PosixMutex()
    private var work = SolverWork()

    func add(state statistics: ODESolver.Statistics) {
        mutex.withLock {
            work.solves += 1
            work.statistics += statistics
        }
    }

    func add(adjoint statistics: ODESolver.Statistics) {
        mutex.withLock {
            work.adjointSolves += 1
            work.adjointStatistics += statistics
        }
    }

    /// The total so far; with `reset`, starts a new one.
    func read(reset: Bool) -> SolverWork {
        mutex.withLock {
            let current = work
            if reset { work = SolverWork() }
            return current
        }
    }
}
