@testable import FlowCore
@testable import FlowModelFile
import XCTest

/// Checks hand-derived gradients of the mean negative log-likelihood against central finite
/// differences, in Double.
public enum GradientChecker {
    /// Compares `∂ mean NLL / ∂θ` from ``NormalizingFlow/accumulateNLLGradient(_:count:normalizer:)``
    /// with `(L(θ + h) − L(θ − h)) / 2h` for every parameter element (or `maxPerParameter` of them,
    /// evenly spaced). Passes when `|analytic − fd| ≤ tolerance·max(1, |fd|)`.
    /// A conditional flow reads `context` (`count` rows of ``NormalizingFlow/contextSize``).
    public static func check(_ flow: NormalizingFlow<Double>, data x: [Double], count: Int, context: [Double]? = nil,
                             step h: Double = 1e-6, tolerance: Double = 1e-6, maxPerParameter: Int = 40,
                             _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        flow.zeroGradients()
        func withContext<R>(_ body: (UnsafePointer<Double>?) -> R) -> R {
            guard let context else { return body(nil) }
            return context.withUnsafeBufferPointer { body($0.baseAddress!) }
        }
        withContext { c in x.withUnsafeBufferPointer { _ = flow.accumulateNLLGradient($0.baseAddress!, count: count, context: c) } }
        func loss() -> Double {
            withContext { c in x.withUnsafeBufferPointer { flow.meanNLL($0.baseAddress!, count: count, context: c) } }
        }
        var checked = 0
        for p in flow.parameters {
            let stride = max(1, p.count / maxPerParameter)
            for i in Swift.stride(from: 0, to: p.count, by: stride) {
                let original = p.values[i]
                p.values[i] = original + h
                flow.parametersDidChange()
                let up = loss()
                p.values[i] = original - h
                flow.parametersDidChange()
                let down = loss()
                p.values[i] = original
                flow.parametersDidChange()
                let fd = (up - down) / (2 * h)
                let analytic = p.gradient[i]
                XCTAssertEqual(analytic, fd, accuracy: tolerance * max(1, abs(fd)),
                               "\(label): ∂L/∂\(p.name)[\(i)] analytic \(analytic) vs finite differences \(fd)",
                               file: file, line: line)
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 0, "\(label): no parameters checked", file: file, line: line)
    }
}
