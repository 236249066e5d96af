import Foundation
import MigrationEngine
import MigrationKit

/// Step logs, progress and run events on stderr. On a terminal, a progress
/// bar follows a migration's `progress` calls, and a migration running for
/// over a second without reporting progress gets an elapsed-time line.
/// `@unchecked Sendable`: every mutable field is read and written under
/// `lock`, which serialises the ticker thread with the run's callbacks.
final class Reporter: @unchecked Sendable {
    private let err: TextOutput
    let quiet: Bool
    let verbose: Bool
    let tty: Bool
    private let lock = NSLock()
    private var lastDraw = 0.0
    private var barShown = false
    /// The migration running now and when it started, for the ticker.
    private var current: (id: String, since: Double, progressed: Bool)?

    init(_ ctx: Context, quiet: Bool, verbose: Bool) {
        err = ctx.err
        self.quiet = quiet
        self.verbose = verbose
        tty = ctx.err.isTerminal && ctx.environment["TERM"] != "dumb"
        if tty && !quiet {
            Thread.detachNewThread { [weak self] in
                while let self {
                    Thread.sleep(forTimeInterval: 0.25)
                    self.tick()
                }
            }
        }
    }

    private func tick() {
        lock.lock()
        defer { lock.unlock() }
        guard let c = current, !c.progressed else { return }
        let elapsed = Date().timeIntervalSince1970 - c.since
        guard elapsed >= 1 else { return }
        draw(String(format: "  %@ running… %.0f s", c.id, elapsed))
    }

    /// Must hold `lock`.
    private func draw(_ line: String) {
        err.write("\r" + line + "\u{1B}[K")
        err.flush()
        barShown = true
    }

    /// Must hold `lock`.
    private func clearBar() {
        if barShown {
            err.write("\r\u{1B}[K")
            barShown = false
        }
    }

    var observer: StepObserver {
        StepObserver(
            log: { [self] id, level, message in
                guard !quiet, level != .debug || verbose else { return }
                lock.lock()
                defer { lock.unlock() }
                clearBar()
                let tag = level == .warning ? "warning: " : level == .error ? "error: " : ""
                err.line("  [\(id)] \(tag)\(printable(message))")
                err.flush()
            },
            progress: { [self] id, done, total in
                guard tty, !quiet else { return }
                lock.lock()
                defer { lock.unlock() }
                current?.progressed = true
                let now = Date().timeIntervalSince1970
                guard now - lastDraw >= 0.1 || done == total else { return }
                lastDraw = now
                var line = "  \(id) "
                if total > 0 {
                    let width = 30
                    let filled = Int(Double(width) * Double(min(done, total)) / Double(total))
                    line +=
                        "[" + String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
                        + "] "
                    line += "\(done * 100 / total)% (\(done)/\(total))"
                } else {
                    line += "\(done) done"
                }
                draw(line)
            })
    }

    var event: @Sendable (RunEvent) -> Void {
        { [self] e in
            lock.lock()
            defer { lock.unlock() }
            clearBar()
            switch e {
            case .started(let id, let direction):
                current = (id, Date().timeIntervalSince1970, false)
                if verbose { err.line("\(direction == .up ? "applying" : "rolling back") \(id)…") }
            case .finished(let id, let direction, let ms):
                current = nil
                if !quiet { err.line("\(direction == .up ? "applied" : "rolled back") \(id) (\(ms) ms)") }
            case .failed:
                current = nil  // reported with the error
            case .notice(let text):
                if !quiet { err.line("note: \(text)") }
            }
            err.flush()
        }
    }
}
