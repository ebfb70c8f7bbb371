import FlowCore
import FlowModelFile
import FlowData

/// How `train` reports progress.
enum ProgressStyle: String, CaseIterable, ExpressibleByArgument {
    /// A live bar on a terminal, plain lines otherwise.
    case auto
    /// A live progress bar on stderr (epoch, batch, loss, samples/s, ETA) and a line per epoch.
    case bar
    /// One line per epoch on stderr.
    case plain
    /// One JSON object per epoch (and per skipped step / early stop) on stdout.
    case json
    /// Nothing but the final summary.
    case none
}

import ArgumentParser

/// Turns ``TrainingEvent``s into terminal output.
final class ProgressReporter {
    private let style: ProgressStyle
    private let epochs: Int
    private var lastDraw = 0.0
    private var barVisible = false
    /// Reads and resets the solver work of the flow's continuous layers (nil: none).
    private let solverWork: () -> SolverWork?

    init(style: ProgressStyle, epochs: Int, solverWork: @escaping () -> SolverWork? = { nil }) {
        self.style = style == .auto ? (Terminal.stderrIsTerminal ? .bar : .plain) : style
        self.epochs = epochs
        self.solverWork = solverWork
    }

    /// Handles one event; never cancels.
    func handle(_ event: TrainingEvent) -> Bool {
        switch (style, event) {
        case (.bar, let .batch(epoch, batch, batches, loss, rate, elapsed)):
            drawBar(epoch: epoch, batch: batch, batches: batches, loss: loss, rate: rate, elapsed: elapsed)
        case (.bar, .epoch(let r)), (.plain, .epoch(let r)):
            clearBar()
            Terminal.error(epochLine(r, solverWork()) + "\n")
        case (.bar, let .skipped(epoch, batch, reason)), (.plain, let .skipped(epoch, batch, reason)):
            clearBar()
            Terminal.error("epoch \(epoch) batch \(batch): step skipped (\(reason))\n")
        case (.bar, let .stopped(epoch, best)), (.plain, let .stopped(epoch, best)):
            clearBar()
            Terminal.error("early stopping after epoch \(epoch); keeping epoch \(best)\n")
        case (.json, .epoch(let r)):
            var o: [String: JSONValue] = [
                "event": .string("epoch"), "epoch": .number(Double(r.epoch)), "train_nll": .number(r.trainNLL),
                "learning_rate": .number(r.learningRate), "skipped_steps": .number(Double(r.skippedSteps)),
                "samples_per_second": .number(r.samplesPerSecond.rounded()), "elapsed_seconds": .number(r.elapsed),
                "improved": .bool(r.improved),
            ]
            o["validation_nll"] = r.validationNLL.map(JSONValue.number) ?? .null
            if let work = solverWork() {
                o["nfe_per_solve"] = work.meanNFE.map(JSONValue.number) ?? .null
                o["adjoint_nfe_per_solve"] = work.meanAdjointNFE.map(JSONValue.number) ?? .null
            }
            Terminal.out(JSONValue.object(o).description + "\n")
        case (.json, let .skipped(epoch, batch, reason)):
            Terminal.out(JSONValue.object(["event": .string("skipped"), "epoch": .number(Double(epoch)),
                                           "batch": .number(Double(batch)), "reason": .string(reason)]).description + "\n")
        case (.json, let .stopped(epoch, best)):
            Terminal.out(JSONValue.object(["event": .string("stopped"), "epoch": .number(Double(epoch)),
                                           "best_epoch": .number(Double(best))]).description + "\n")
        default:
            break
        }
        return true
    }

    /// `epoch  3/40  train 2.9134  val 2.9012 *  lr 9.80e-04  48.2k rows/s  0:12`, and for flows
    /// with continuous layers the epoch's mean NFE per state solve / per adjoint solve
    /// (`NFE 86/140`; validation solves included).
    private func epochLine(_ r: EpochRecord, _ work: SolverWork?) -> String {
        let width = String(epochs).count
        var line = "epoch \(Terminal.right(String(r.epoch), width))/\(epochs)  train \(Terminal.fixed(r.trainNLL, 4))"
        if let v = r.validationNLL { line += "  val \(Terminal.fixed(v, 4))\(r.improved ? " *" : "  ")" }
        line += "  lr \(Terminal.scientific(r.learningRate))  \(Terminal.rate(r.samplesPerSecond)) rows/s  \(Terminal.duration(r.elapsed))"
        if let work, let nfe = work.meanNFE {
            line += "  NFE \(Int(nfe.rounded()))" + (work.meanAdjointNFE.map { "/\(Int($0.rounded()))" } ?? "")
        }
        if r.skippedSteps > 0 { line += "  (\(r.skippedSteps) skipped)" }
        return line
    }

    private func drawBar(epoch: Int, batch: Int, batches: Int, loss: Double, rate: Double, elapsed: Double) {
        guard elapsed - lastDraw >= 0.1 || batch == batches else { return }
        lastDraw = elapsed
        let width = 24
        let filled = batches > 0 ? width * batch / batches : width
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let stepsDone = Double((epoch - 1) * batches + batch)
        let stepsLeft = Double((epochs - epoch) * batches + (batches - batch))
        let eta = stepsDone > 0 ? elapsed / stepsDone * stepsLeft : .nan
        let text = "epoch \(epoch)/\(epochs) \(bar) \(batch)/\(batches)  loss \(Terminal.fixed(loss, 4))  "
            + "\(Terminal.rate(rate)) rows/s  ETA \(Terminal.duration(eta))"
        Terminal.error("\r\u{1B}[2K" + text)
        barVisible = true
    }

    private func clearBar() {
        if barVisible { Terminal.error("\r\u{1B}[2K") }
        barVisible = false
    }
}
