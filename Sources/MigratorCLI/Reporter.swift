import Dispatch
import DocumentStore
import MigrationEngine
import MigrationKit
import Synchronization

/// Step logs, progress and run events on stderr. On a terminal, a progress
/// bar follows a migration's `progress` calls, and a migration running for
/// over a second without reporting progress gets an elapsed-time line.
/// `@unchecked Sendable`: every mutable field is read and written under
/// `lock`, which serialises the ticker thread with the run's callbacks.
final class Reporter: @unchecked Sendable {
    private let err: TextOutput
    private let ctx: Context
    let quiet: Bool
    let verbose: Bool
    let tty: Bool
    private let lock = Mutex(())
    private var ticker: (any DispatchSourceTimer)?
    private var lastDraw = 0.0
    private var barShown = false
    /// The migration running now and when it started, for the ticker.
    private var current: (id: String, since: Double, progressed: Bool)?

    init(_ ctx: Context, quiet: Bool, verbose: Bool) {
        err = ctx.err
        self.ctx = ctx
        self.quiet = quiet
        self.verbose = verbose
        tty = ctx.err.isTerminal && ctx.environment["TERM"] != "dumb" && !ctx.jsonLogs
        if tty && !quiet {
            let timer = DispatchSource.makeTimerSource(queue: .global())
            timer.schedule(deadline: .now() + 0.25, repeating: 0.25)
            timer.setEventHandler { [weak self] in self?.tick() }
            timer.resume()
            ticker = timer
        }
    }

    deinit { ticker?.cancel() }

    private func tick() {
        lock.withLock { _ in
            guard let c = current, !c.progressed else { return }
            let elapsed = EngineClock.monotonic() - c.since
            guard elapsed >= 1 else { return }
            draw("  \(c.id) running… \(Int(elapsed.rounded())) s")
        }
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
                if ctx.jsonLogs {
                    let name =
                        level == .warning ? "warning" : level == .error ? "error" : level == .debug ? "debug" : "info"
                    ctx.log("migration_log", message, level: name, [("migration", .string(id))])
                    return
                }
                lock.withLock { _ in
                    clearBar()
                    let tag = level == .warning ? "warning: " : level == .error ? "error: " : ""
                    err.line("  [\(id)] \(tag)\(printable(message))")
                    err.flush()
                }
            },
            progress: { [self] id, done, total in
                guard tty, !quiet else { return }
                lock.withLock { _ in
                    current?.progressed = true
                    let now = EngineClock.monotonic()
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
                }
            })
    }

    var event: @Sendable (RunEvent) -> Void {
        { [self] e in
            if ctx.jsonLogs {
                json(e)
                return
            }
            lock.withLock { _ in
                clearBar()
                switch e {
                case .planned: break
                case .lockWait(let holder): err.line("note: waiting for the run lock held by \(holder)")
                case .started(let id, let direction):
                    current = (id, EngineClock.monotonic(), false)
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

    /// One JSON object per event (``Context/log(_:_:level:_:)``).
    private func json(_ e: RunEvent) {
        switch e {
        case .planned(let direction, let ids):
            ctx.log(
                "plan", "", [("direction", .string(direction.rawValue)), ("migrations", .array(ids.map(JSON.string)))])
        case .lockWait(let holder):
            ctx.log("lock_wait", "waiting for the run lock", [("holder", .string(holder))])
        case .started(let id, let direction):
            ctx.log("step_start", "", [("migration", .string(id)), ("direction", .string(direction.rawValue))])
        case .finished(let id, let direction, let ms):
            ctx.log(
                "step_end", "",
                [
                    ("migration", .string(id)), ("direction", .string(direction.rawValue)), ("outcome", .string("ok")),
                    ("duration_ms", .int(ms)),
                ])
        case .failed(let id, let direction, let message):
            ctx.log(
                "step_end", message, level: "error",
                [
                    ("migration", .string(id)), ("direction", .string(direction.rawValue)),
                    ("outcome", .string("failed")),
                ])
        case .notice(let text):
            if !quiet { ctx.log("notice", text) }
        }
    }
}
