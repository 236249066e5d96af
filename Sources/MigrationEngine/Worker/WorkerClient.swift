import DocumentStore
import FoundationEssentials
import MigrationKit
import _MigratorCShims

#if canImport(Glibc)
import Glibc
#endif

/// The database a worker's steps run against: where it is, and the options
/// its storage gave for opening it there (opaque to the worker protocol).
struct WorkerDatabase: Equatable {
    let location: String
    let options: [String: String]
}

/// The parent's side of the worker: it sends verified plugin bytes to be
/// described, then one step at a time to be run, and turns the worker's
/// death (a signal, an `exit` from plugin code, a step timeout) into a
/// failed step. The parent never loads plugin code itself.
///
/// Owned by the ``Migrator`` that loaded the plugins, never by a shared
/// value: each run talks to it through its own ``WorkerSession``.
final class WorkerClient {
    private let process: WorkerProcess
    /// The step ("DIRECTION ID") sent ahead, whose answer is still unread.
    private var queued: String?
    /// Whether the worker stopped reading while plugins were being sent.
    private var loadStalled = false
    private var openedDatabase: WorkerDatabase?
    /// The operator's signal during a step that completed anyway.
    private var interruption: Int32?
    /// Loading that stalls this long (a constructor or entry that hangs) is
    /// killed and reported.
    private let loadTimeout: Double

    init(_ isolation: PluginIsolation) {
        process = WorkerProcess(isolation)
        loadTimeout = isolation.loadTimeout
    }

    private var requests: WorkerChannel { process.requests }
    private var responses: WorkerChannel { process.responses }

    /// Starts the worker if none is running.
    private func start() throws(SealedImageError) {
        if process.isAlive {
            dropQueued()
            if process.isAlive { return }
        }
        try process.start()
        queued = nil
        openedDatabase = nil
    }

    // MARK: Describing plugins

    /// Describes, in one exchange, every file that `feed` sends while it
    /// runs (the directory scan hands over each file as soon as it passed its
    /// checks, so the worker loads while the rest are checked). Results are
    /// read once `feed` returns. If the worker dies midway, the files are
    /// described again one at a time in a fresh worker, which names the one
    /// that crashed. Returns `feed`'s result and each file's, by cache key.
    func describeAll<T: Sendable>(
        strictToolchain: Bool, warnings: inout [String],
        feeding feed: (_ send: (CheckedPluginFile) -> Void) throws(MigratorError) -> T
    ) throws(MigratorError) -> (T, [String: Result<LoadedPlugin, MigratorError>]) {
        var sent: [CheckedPluginFile] = []
        var streaming = false
        var broken = false
        let fed = Result { () throws(MigratorError) in
            try feed { file in
                sent.append(file)
                guard !broken else { return }
                if !streaming {
                    guard (try? start()) != nil, sendWhileLoading(.loadBatch) else {
                        broken = true
                        return
                    }
                    streaming = true
                    process.activity = "reading the descriptors of the plugins in one batch"
                }
                guard (try? sendLoad(file, strictToolchain: strictToolchain)) == true else {
                    broken = true
                    return
                }
            }
        }
        guard case .success(let value) = fed else {
            // The directory became unusable midway: nothing to describe.
            if streaming { _ = process.bury(report: false, kill: true) }
            return try (fed.map { ($0, [:]) }).get()
        }
        var results: [String: Result<LoadedPlugin, MigratorError>] = [:]
        if streaming, !broken, sendWhileLoading(.endBatch),
            case .loadedBatch(let answers)? = responses.receiveReply(deadline: EngineClock.monotonic() + loadTimeout),
            answers.count == sent.count
        {
            for (file, answer) in zip(sent, answers) {
                results[file.key] = Result { () throws(MigratorError) in
                    try plugin(from: answer, file: file, warnings: &warnings)
                }
            }
            return (value, results)
        }
        // Described again one at a time, which names the file (and keeps
        // the crash report of the one that crashes). A hung worker is
        // killed first: loading holds no transaction.
        if streaming { _ = process.bury(report: false, kill: true) }
        for file in sent {
            results[file.key] = Result { () throws(MigratorError) in
                try describe(file, strictToolchain: strictToolchain, warnings: &warnings)
            }
        }
        return (value, results)
    }

    /// Sends a `load` request and, with it, the file's checked bytes in a
    /// sealed memfd (no copy travels through the socket). Throws when the
    /// image cannot be made; false when the worker is gone.
    private func sendLoad(_ file: CheckedPluginFile, strictToolchain: Bool) throws(SealedImageError) -> Bool {
        guard let bytes = file.bytes else { throw SealedImageError("its bytes were not read") }
        let image = try SealedImage.seal(bytes, name: file.name)
        defer { close(image) }
        let request = WorkerRequest.load(
            file: file.name, path: file.path, sha256: file.sha256, strictToolchain: strictToolchain,
            bundle: file.bundle)
        return sendWhileLoading(request) && writableWhileLoading() && migrator_send_fd(requests.fd, image) == 0
    }

    /// Whether the worker reads within the load timeout; if not, it is
    /// marked stalled (hung in a constructor), not dead.
    private func writableWhileLoading() -> Bool {
        if requests.writable(patience: loadTimeout) { return true }
        loadStalled = true
        return false
    }

    private func sendWhileLoading(_ request: WorkerRequest) -> Bool {
        writableWhileLoading() && requests.send(request, patience: loadTimeout)
    }

    /// The plugin a worker's `loaded` reply describes, or its problem.
    private func plugin(
        from reply: WorkerReply, file: CheckedPluginFile, warnings: inout [String]
    ) throws(MigratorError)
        -> LoadedPlugin
    {
        switch reply {
        case .loaded(let descriptors, let image, let more):
            warnings += more
            if let image { process.images[Int32(truncatingIfNeeded: image)] = "\(file.path) (sha256 \(file.sha256))" }
            guard
                let plugin = LoadedPlugin(
                    descriptor: descriptors, path: file.path, identity: file.identity, body: .worker)
            else {
                throw MigratorError(
                    .loadFailed, "plugin '\(file.path)': the worker sent unreadable descriptors", file: file.name)
            }
            return plugin
        case .problem(let code, let message, let id, let more):
            warnings += more
            throw MigratorError(MigratorError.Code(rawValue: code), message, file: file.name, migrationID: id)
        default:
            throw MigratorError(
                .loadFailed, "plugin '\(file.path)': the worker answered '\(reply.op)'", file: file.name)
        }
    }

    /// Describes one file in a worker of its own, naming it if it crashes.
    private func describe(
        _ file: CheckedPluginFile, strictToolchain: Bool, warnings: inout [String]
    ) throws(MigratorError) -> LoadedPlugin {
        func fail(_ code: MigratorError.Code, _ why: String) -> MigratorError {
            MigratorError(code, "plugin '\(file.path)': \(why)", file: file.name)
        }
        let sent: Bool
        loadStalled = false
        do {
            try start()
            process.activity = "reading the descriptors of \(file.path)"
            sent = try sendLoad(file, strictToolchain: strictToolchain)
        } catch { throw fail(.loadFailed, error.description) }
        var failure: WorkerChannel.Failure?
        guard sent,
            let reply = responses.receiveReply(deadline: EngineClock.monotonic() + loadTimeout, failure: &failure)
        else {
            if case .malformed(let what) = failure {
                _ = process.bury(report: false, kill: true)
                throw fail(
                    .loadFailed,
                    "sent \(what) while its descriptors were read, which is not part of the worker's protocol "
                        + "(plugin code may have written to its channel); the worker was killed")
            }
            let stalled = failure == .timedOut || loadStalled
            let how = process.bury(kill: stalled)
            if stalled {
                throw fail(
                    .loadFailed,
                    "did not finish loading within \(Self.duration(loadTimeout)) (a constructor or its entry function "
                        + "hung); the worker was killed")
            }
            throw fail(
                .loadFailed,
                "crashed while its descriptors were read (\(how)"
                    + "\(process.backtraceFile.map { "; backtrace in \($0)" } ?? ""))")
        }
        return try plugin(from: reply, file: file, warnings: &warnings)
    }

    // MARK: Running steps

    /// Reads and drops the answer to a step sent ahead that the runner did
    /// not ask for (the step before it failed, so the worker skipped it).
    private func dropQueued() {
        guard queued != nil else { return }
        queued = nil
        while let reply = responses.receiveReply() {
            switch reply {
            case .done, .failed, .skipped: return
            default: continue
            }
        }
        _ = process.bury()
    }

    /// See ``MigrationExecutor/runStep(_:_:next:startedAt:observer:)``, against `database`.
    func runStep(
        _ m: AvailableMigration, _ direction: Direction, next: AvailableMigration?, observer: StepObserver,
        database: WorkerDatabase, stepTimeout: Double?
    ) throws -> Int64? {
        guard process.isAlive else {
            throw StepFailure(message: "the worker holding the plugins is gone (\(process.death ?? "never started"))")
        }
        let key = "\(direction) \(m.id)"
        process.activity = "\(direction) of migration '\(m.id)' (\(m.origin.label))"
        let alreadySent = queued == key
        if !alreadySent { dropQueued() }
        queued = nil
        try open(database)
        // A signal that came after the last step's answer: stop before this one.
        if !alreadySent, migrator_forwarded_signal() != 0 {
            let signal = migrator_take_forwarded_signal()
            throw StepFailure(
                message:
                    "interrupted by \(WorkerProcess.signalName(signal)) before \(direction) began; nothing of it ran",
                interruptedBy: signal)
        }
        migrator_set_step_running(1)
        var nextQueued = false
        // While a step sent ahead runs, the operator's signals still go to it.
        defer { if !nextQueued { migrator_set_step_running(0) } }
        if !alreadySent {
            guard requests.send(.step(id: m.id, direction: direction, after: nil)) else {
                throw died(during: m, direction)
            }
        }
        // The worker starts `next` as soon as `m` commits, and skips it if `m` fails.
        if let next, requests.send(.step(id: next.id, direction: direction, after: m.id)) {
            queued = "\(direction) \(next.id)"
        }
        let deadline = stepTimeout.map { EngineClock.monotonic() + $0 }
        let reply = try answer(to: m, direction, deadline: deadline, stepTimeout: stepTimeout, observer: observer)
        switch reply {
        case .done(let duration, let committedAt):
            nextQueued = queued != nil
            // The step committed, but the operator asked to stop. A signal
            // that came after the commit reached the step sent ahead, which
            // the worker was running: it ends as interrupted (or is killed
            // after the grace), and the runner sees it there. Otherwise the
            // run stops here, and the step sent ahead is cancelled with its
            // worker.
            if migrator_forwarded_signal() != 0
                && (queued == nil || migrator_forwarded_signal_time() <= committedAt ?? .infinity)
            {
                if queued != nil {
                    queued = nil
                    nextQueued = false
                    _ = process.bury(report: false, kill: true)
                }
                interruption = migrator_take_forwarded_signal()
            }
            return duration
        case .failed(let why):
            // A failure is final once the worker is idle: plugin code could
            // have written this answer while its step still runs.
            awaitIdle(deadline: deadline)
            throw StepFailure(
                message: why.flatMap { $0.isEmpty ? nil : $0 } ?? "the worker reported a failure without a reason")
        case .skipped:
            throw StepFailure(message: "the worker skipped it: the step before it did not complete")
        default:
            throw violation("answered '\(reply.op)' during \(direction)")
        }
    }

    /// The worker's answer to the step `m`, its log lines and progress
    /// handed to `observer` meanwhile. Waited for in slices, so the step
    /// timeout and the operator's signal count even while the worker stays
    /// silent; a worker that outlasts either, dies or breaks the protocol
    /// fails the step.
    private func answer(
        to m: AvailableMigration, _ direction: Direction, deadline: Double?, stepTimeout: Double?,
        observer: StepObserver
    ) throws -> WorkerReply {
        func exceededTimeout() -> StepFailure {
            _ = process.bury(kill: true)
            return StepFailure(
                message: "the step exceeded the step timeout (\(Self.duration(stepTimeout ?? 0))) "
                    + "during \(direction); the worker was killed")
        }
        var signalled: Double?
        while true {
            let now = EngineClock.monotonic()
            if let deadline, now >= deadline { throw exceededTimeout() }
            if migrator_forwarded_signal() != 0 {
                let since = signalled ?? now
                signalled = since
                // A worker whose crash report is written is dying of the
                // signal (SIGQUIT dumps core, which can take a while).
                let grace = process.isWritingCrashReport ? Self.dyingGrace : Self.signalGrace
                if now - since >= grace {
                    // Plugin code that ignores or blocks the signal.
                    _ = process.bury(kill: true)
                    let signal = migrator_take_forwarded_signal()
                    throw StepFailure(
                        message: "interrupted by \(WorkerProcess.signalName(signal)) during \(direction); the step "
                            + "did not stop within \(Self.duration(grace)), and the worker was killed"
                            + (process.backtraceFile.map { " (backtrace in \($0))" } ?? ""),
                        interruptedBy: signal)
                }
            }
            guard responses.readable(within: min(0.25, (deadline ?? .infinity) - now)) else { continue }
            var failure: WorkerChannel.Failure?
            guard let reply = responses.receiveReply(deadline: deadline, failure: &failure) else {
                switch failure {
                case .timedOut: throw exceededTimeout()
                case .malformed(let what): throw violation("sent \(what) during \(direction)")
                case .closed, nil: throw died(during: m, direction)
                }
            }
            if !reply.observed(by: observer, for: m.id) { return reply }
        }
    }

    /// See ``MigrationExecutor/trial(_:observer:)``, against `database`.
    func trial(
        _ steps: [(AvailableMigration, TrialStep)], observer: StepObserver, database: WorkerDatabase,
        stepTimeout: Double?
    ) throws -> [TrialResult] {
        guard process.isAlive else {
            throw StepFailure(message: "the worker holding the plugins is gone (\(process.death ?? "never started"))")
        }
        guard let last = steps.last else { return [] }
        dropQueued()
        try open(database)
        let encoded = try JSONEncoder().encode(steps.map(\.1))
        guard requests.send(.trial), requests.send(Array(encoded)) else {
            throw StepFailure(message: "the worker died (\(process.bury()))")
        }
        migrator_set_step_running(1)
        defer { migrator_set_step_running(0) }
        let deadline = stepTimeout.map { EngineClock.monotonic() + $0 * Double(max(1, steps.count)) }
        // Results arrive one per step, in order, so the step running now is
        // the first one without a result.
        var results: [TrialResult] = []
        while true {
            let current = results.count < steps.count ? steps[results.count] : nil
            var failure: WorkerChannel.Failure?
            guard let reply = responses.receiveReply(deadline: deadline, failure: &failure) else {
                // The worker died, hung or broke the protocol: the step it
                // was on failed, and nothing after it ran. The trial commits
                // nothing either way.
                let why: String
                switch failure {
                case .timedOut:
                    _ = process.bury(kill: true)
                    why = "the trial exceeded the step timeout; the worker was killed"
                case .malformed(let what):
                    why = violation("sent \(what) during a trial").message
                case .closed, nil:
                    why = died(during: (current ?? last).0, (current ?? last).1.direction).message
                }
                let failed = results.count
                for (i, (m, step)) in steps.enumerated().dropFirst(failed) {
                    var r = TrialResult(id: m.id, direction: step.direction, verdict: i == failed ? .failed : .notRun)
                    if i == failed { r.error = why }
                    results.append(r)
                }
                return results
            }
            if reply.observed(by: observer, for: current?.0.id ?? "") { continue }
            switch reply {
            case .trialResult:
                guard let bytes = responses.receive(),
                    let result = try? JSONDecoder().decode(TrialResult.self, from: Data(bytes)),
                    result.id == current?.0.id
                else { throw violation("sent an unreadable trial result") }
                results.append(result)
            case .trialDone:
                guard results.count == steps.count else {
                    throw violation("ended the trial after \(results.count) of \(steps.count) steps")
                }
                return results
            case .failed(let why):
                throw StepFailure(
                    message: why.flatMap { $0.isEmpty ? nil : $0 } ?? "the worker reported a failure without a reason")
            default:
                throw violation("answered '\(reply.op)' during a trial")
            }
        }
    }

    /// Has the worker open `database`, unless it has it open already.
    private func open(_ database: WorkerDatabase) throws {
        guard openedDatabase != database else { return }
        guard requests.send(.open(location: database.location, options: database.options)) else {
            throw StepFailure(message: "the worker died opening the database (\(process.bury()))")
        }
        var failure: WorkerChannel.Failure?
        switch responses.receiveReply(failure: &failure) {
        case .opened?: openedDatabase = database
        case .error(let why)?: throw StepFailure(message: why)
        case nil:
            if case .malformed(let what) = failure { throw violation("sent \(what) opening the database") }
            throw StepFailure(message: "the worker died opening the database (\(process.bury()))")
        case let other?: throw violation("answered '\(other.op)' opening the database")
        }
    }

    /// The worker said something outside the protocol (plugin code can write
    /// to its channel): it is killed, so nothing it still runs can commit
    /// after the caller has looked at the database.
    private func violation(_ what: String) -> StepFailure {
        _ = process.bury(report: false, kill: true)
        return StepFailure(
            message: "the worker \(what), which is not part of its protocol (plugin code may have written to "
                + "its channel); the worker was killed")
    }

    /// Waits until the worker has finished everything sent to it, by a
    /// round trip with a fresh nonce (the worker answers requests in order);
    /// a worker that does not answer in time is killed. Either way nothing
    /// it runs can commit afterwards.
    private func awaitIdle(deadline: Double?) {
        guard process.isAlive else { return }
        queued = nil
        let nonce = String(UInt64.random(in: 1...UInt64.max))
        guard requests.send(.sync(nonce: nonce)) else {
            _ = process.bury(report: false, kill: true)
            return
        }
        while true {
            var failure: WorkerChannel.Failure?
            guard let reply = responses.receiveReply(deadline: deadline, failure: &failure) else {
                // Nothing, or garbage (plugin code): either way it is not idle.
                _ = process.bury(report: false, kill: true)
                return
            }
            if reply == .synced(nonce: nonce) { return }
        }
    }

    /// See ``MigrationExecutor/takeInterruption()``.
    func takeInterruption() -> Int32? {
        defer { interruption = nil }
        return interruption
    }

    /// See ``MigrationExecutor/settle()``.
    func settle() {
        guard process.isAlive else { return }
        _ = process.bury(report: false, kill: true)
    }

    /// The failure for a worker that stopped answering during a step.
    private func died(during m: AvailableMigration, _ direction: Direction) -> StepFailure {
        let how = process.bury()
        let backtrace = process.backtraceFile.map { " (backtrace in \($0))" } ?? ""
        let signal = migrator_take_forwarded_signal()
        if signal != 0 {
            return StepFailure(
                message: "interrupted by \(WorkerProcess.signalName(signal)) during \(direction)\(backtrace); "
                    + "nothing of it was committed",
                interruptedBy: signal)
        }
        return StepFailure(message: "\(how) during \(direction)\(backtrace)")
    }

    /// How long a step may go on after the operator's signal reached its
    /// worker before the worker is killed.
    static let signalGrace = 5.0
    /// The same, for a worker already writing its crash report.
    static let dyingGrace = 60.0

    static func duration(_ seconds: Double) -> String {
        seconds >= 60 && seconds.truncatingRemainder(dividingBy: 60) == 0
            ? "\(Int(seconds / 60))m" : "\(seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds))s"
    }
}

/// One run's use of the worker: its database and step timeout are fixed
/// for the session (`let`s), so nothing a later run sets can change where
/// or how long this one's steps run. Made by the ``Migrator`` for each
/// runner, which owns it.
final class WorkerSession: MigrationExecutor {
    private let client: WorkerClient
    let database: WorkerDatabase
    let stepTimeout: Double?

    init(_ client: WorkerClient, database: WorkerDatabase, stepTimeout: Double?) {
        self.client = client
        self.database = database
        self.stepTimeout = stepTimeout
    }

    func runStep(
        _ m: AvailableMigration, _ direction: Direction, next: AvailableMigration?, startedAt: String,
        observer: StepObserver
    ) throws -> Int64? {
        try client.runStep(
            m, direction, next: next, observer: observer, database: database, stepTimeout: stepTimeout)
    }

    func trial(_ steps: [(AvailableMigration, TrialStep)], observer: StepObserver) throws -> [TrialResult] {
        try client.trial(steps, observer: observer, database: database, stepTimeout: stepTimeout)
    }

    func settle() { client.settle() }

    func takeInterruption() -> Int32? { client.takeInterruption() }
}
