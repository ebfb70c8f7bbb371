#if canImport(Glibc)
import Glibc
#endif

/// Learning-rate multiplier per optimisation step: linear warm-up, then a decay.
///
/// Step `t` (0-based, the update about to be applied) of `T` total steps gets
/// `lr(t) = base · warm(t) · decay(t)` with `warm(t) = min(1, (t + 1)/W)` for W warm-up steps
/// (Glow's cure for early NaNs) and
/// - `constant`: `decay = 1`;
/// - `cosine`: `decay = m + (1 − m)·½(1 + cos(π·u))`, `u = (t − W)/(T − W)` clamped to [0, 1],
///   `m` = ``minimumFactor`` (SGDR without restarts, Loshchilov & Hutter 2017);
/// - `step`: `decay = γ^⌊(t − W)/S⌋` for ``stepSize`` S and factor γ = ``gamma``.
public struct LearningRateSchedule: Equatable, Sendable {
    public enum Decay: String, CaseIterable, Sendable { case constant, cosine, step }

    public var decay: Decay
    public var warmupSteps: Int
    /// Cosine: the final learning rate as a fraction of the base.
    public var minimumFactor: Double
    /// Step: steps between decays.
    public var stepSize: Int
    /// Step: the factor applied at each decay.
    public var gamma: Double

    public init(decay: Decay = .constant, warmupSteps: Int = 0, minimumFactor: Double = 0,
                stepSize: Int = 1000, gamma: Double = 0.5) {
        self.decay = decay
        self.warmupSteps = warmupSteps
        self.minimumFactor = minimumFactor
        self.stepSize = stepSize
        self.gamma = gamma
    }

    public func validate() throws {
        guard warmupSteps >= 0 else { throw FlowError.invalidArgument("warm-up steps must be non-negative, got \(warmupSteps)") }
        guard minimumFactor.isFinite, (0...1).contains(minimumFactor) else {
            throw FlowError.invalidArgument("the cosine schedule's minimum factor must lie in [0, 1], got \(minimumFactor)")
        }
        guard stepSize >= 1 else { throw FlowError.invalidArgument("the step schedule's step size must be at least 1") }
        guard gamma.isFinite, gamma > 0, gamma <= 1 else {
            throw FlowError.invalidArgument("the step schedule's gamma must lie in (0, 1], got \(gamma)")
        }
    }

    /// The multiplier of the base learning rate at step `t` of `total`.
    public func factor(step t: Int, total: Int) -> Double {
        let warm = warmupSteps > 0 ? Swift.min(1, Double(t + 1) / Double(warmupSteps)) : 1
        let after = Swift.max(0, t - warmupSteps)
        switch decay {
        case .constant:
            return warm
        case .cosine:
            let span = Swift.max(1, total - warmupSteps)
            let u = Swift.min(1, Double(after) / Double(span))
            return warm * (minimumFactor + (1 - minimumFactor) * 0.5 * (1 + cos(Double.pi * u)))
        case .step:
            return warm * pow(gamma, Double(after / stepSize))
        }
    }
}
