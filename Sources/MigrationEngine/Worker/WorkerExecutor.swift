import Dispatch
import DocumentStore
import FoundationEssentials
import MigrationKit
import Synchronization
import _MigratorCShims

#if canImport(Glibc)
import Glibc
#endif

/// Where plugin code runs.
public struct PluginIsolation: Sendable, Equatable {
    /// The executable that serves as the worker (`migrator __worker`), if any.
    let executable: String?
    /// Forward SIGINT, SIGTERM, SIGQUIT and SIGHUP to the worker during a step.
    let forwardSignals: Bool
    /// How long loading may stall (a hanging constructor) before the worker is killed.
    var loadTimeout: Double = 60
    /// Whether plugin code in the worker may open network sockets: only
    /// when the database is a server's (PostgreSQL, through libpq). Set by
    /// ``Migrator/loadPlugins(from:options:)`` from the database it runs on.
    var allowsNetwork = false
    /// Where the worker's standard output and error go, line by line (from
    /// another thread); nil: straight to this process's standard error.
    public var output: (@Sendable (String) -> Void)? = nil

    /// Equal when they run plugins the same way (``output`` aside).
    public static func == (a: PluginIsolation, b: PluginIsolation) -> Bool {
        a.executable == b.executable && a.forwardSignals == b.forwardSignals && a.loadTimeout == b.loadTimeout
    }

    /// Plugins are loaded into this process (the default for embedding apps).
    public static let inProcess = PluginIsolation(executable: nil, forwardSignals: false)

    /// Plugins are loaded and run only in a worker process, `executable
    /// __worker` (the `migrator` binary): a plugin that crashes, exits or
    /// hangs fails its step instead of taking the caller down or faking a
    /// success. `forwardSignals` installs handlers that pass the operator's
    /// signals to the worker while a step runs (the CLI does). Loading that
    /// stalls for `loadTimeout` seconds (a constructor or entry function that
    /// hangs) kills the worker and is reported for the file; a migrator whose
    /// ``Migrator/Options/stepTimeout`` is set uses that instead.
    public static func worker(
        executable: String, forwardSignals: Bool = false, loadTimeout: Double = 60
    ) -> PluginIsolation {
        PluginIsolation(executable: executable, forwardSignals: forwardSignals, loadTimeout: loadTimeout)
    }
}

/// The parent's side of a worker process: it sends verified plugin bytes to
/// be described, then one step at a time to be run, and turns the worker's
/// death (a signal, an `exit` from plugin code, a step timeout) into a
/// failed step. The parent never loads plugin code itself.
///
/// `@unchecked Sendable`: it travels inside the catalog's plugin set, and
/// every use of the process (a description, a step) holds `exclusive`, so
/// two runs sharing a catalog take turns.
package final class WorkerExecutor: MigrationExecutor, @unchecked Sendable {
    private let exclusive = Mutex(())
    private let executable: String
    private let forwardSignals: Bool
    private let allowsNetwork: Bool
    private let output: (@Sendable (String) -> Void)?
    private var pid: pid_t = 0
    private var requests = WorkerChannel(fd: -1)
    private var responses = WorkerChannel(fd: -1)
    /// Why the current worker is gone, once it is.
    private var death: String?
    /// The step ("DIRECTION ID") sent ahead, whose answer is still unread.
    private var queued: String?
    /// Where the worker writes its backtrace if a signal kills it.
    private var crashReport: CrashReport?
    /// What the worker is doing, for its crash report.
    private var activity = "starting"
    /// The plugin behind each memfd number in the worker, for crash reports.
    private var images: [Int32: String] = [:]
    /// Where the last worker's crash report was saved, if it wrote one.
    private var backtraceFile: String?
    /// Signalled when the forwarder of the worker's output has read it all.
    private var outputForwarded: DispatchSemaphore?
    /// Whether the worker stopped reading while plugins were being sent.
    private var loadStalled = false
    private var openedDatabase: String?
    /// The operator's signal during a step that completed anyway.
    private var interruption: Int32?

    /// The database steps run against, and the store options to open it with.
    package var database: (path: String, maxMapMB: Int?)?
    /// A step that runs longer is killed and fails (nil: no limit).
    package var stepTimeout: Double?
    /// Loading that stalls this long (a constructor or entry that hangs) is
    /// killed and reported.
    private let loadTimeout: Double

    init(_ isolation: PluginIsolation) {
        executable = isolation.executable ?? "/proc/self/exe"
        forwardSignals = isolation.forwardSignals
        allowsNetwork = isolation.allowsNetwork
        output = isolation.output
        loadTimeout = isolation.loadTimeout
    }

    deinit {
        crashReport?.close()
        guard pid > 0, death == nil else { return }
        close(requests.fd)
        close(responses.fd)
        // Idle, with no transaction open: nothing is lost by killing it, and
        // a normal exit would first run a thousand plugins' destructors.
        kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
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
        let outcome: Result<(T, [String: Result<LoadedPlugin, MigratorError>]), MigratorError> = exclusive.withLock {
            _ in
            var sent: [CheckedPluginFile] = []
            var streaming = false
            var broken = false
            let fed = Result { () throws(MigratorError) in
                try feed { file in
                    sent.append(file)
                    guard !broken else { return }
                    if !streaming {
                        guard (try? start()) != nil, sendWhileLoading(Self.message("load_batch"))
                        else {
                            broken = true
                            return
                        }
                        streaming = true
                        activity = "reading the descriptors of the plugins in one batch"
                    }
                    guard (try? sendLoad(file, strictToolchain: strictToolchain)) == true else {
                        broken = true
                        return
                    }
                }
            }
            guard case .success(let value) = fed else {
                // The directory became unusable midway: nothing to describe.
                if streaming { _ = buryWorker(report: false, kill: true) }
                return fed.map { ($0, [:]) }
            }
            var results: [String: Result<LoadedPlugin, MigratorError>] = [:]
            if streaming, !broken, sendWhileLoading(Self.message("end_batch")),
                let reply = responses.receiveMessage(deadline: EngineClock.monotonic() + loadTimeout),
                let answers = reply["results"]?.arrayValue, answers.count == sent.count
            {
                for (file, answer) in zip(sent, answers) {
                    results[file.key] = Result { () throws(MigratorError) in
                        try plugin(from: answer.objectValue ?? JSONObject(), file: file, warnings: &warnings)
                    }
                }
                return .success((value, results))
            }
            // Described again one at a time, which names the file (and keeps
            // the crash report of the one that crashes). A hung worker is
            // killed first: loading holds no transaction.
            if streaming { _ = buryWorker(report: false, kill: true) }
            for file in sent {
                results[file.key] = Result { () throws(MigratorError) in
                    try describeLocked(file, strictToolchain: strictToolchain, warnings: &warnings)
                }
            }
            return .success((value, results))
        }
        return try outcome.get()
    }

    private static func message(_ op: String) -> JSON { .object(JSONObject([("op", .string(op))])) }

    /// Sends a `load` request and, with it, the file's checked bytes in a
    /// sealed memfd (no copy travels through the socket). Throws when the
    /// image cannot be made; false when the worker is gone.
    private func sendLoad(_ file: CheckedPluginFile, strictToolchain: Bool) throws(SealedImageError) -> Bool {
        guard let bytes = file.bytes else { throw SealedImageError("its bytes were not read") }
        let image = try SealedImage.seal(bytes, name: file.name)
        defer { close(image) }
        let message: JSON = .object(
            JSONObject([
                ("op", .string("load")), ("file", .string(file.name)), ("path", .string(file.path)),
                ("sha256", .string(file.sha256)), ("strict_toolchain", .bool(strictToolchain)),
            ]))
        return sendWhileLoading(message) && writableWhileLoading() && migrator_send_fd(requests.fd, image) == 0
    }

    /// Whether the worker reads within the load timeout; if not, it is
    /// marked stalled (hung in a constructor), not dead.
    private func writableWhileLoading() -> Bool {
        if requests.writable(patience: loadTimeout) { return true }
        loadStalled = true
        return false
    }

    private func sendWhileLoading(_ message: JSON) -> Bool {
        writableWhileLoading() && requests.send(message, patience: loadTimeout)
    }

    /// The plugin a worker's `loaded` reply describes, or its problem.
    private func plugin(
        from reply: JSONObject, file: CheckedPluginFile, warnings: inout [String]
    ) throws(MigratorError)
        -> LoadedPlugin
    {
        if let list = reply["warnings"]?.arrayValue { warnings += list.compactMap(\.stringValue) }
        switch reply.string("op") {
        case "loaded":
            if let image = reply.int("image_fd") {
                images[Int32(truncatingIfNeeded: image)] = "\(file.path) (sha256 \(file.sha256))"
            }
            guard let d = reply["plugin"]?.objectValue,
                let plugin = LoadedPlugin(descriptor: d, path: file.path, identity: file.identity, body: .worker)
            else {
                throw MigratorError(
                    .loadFailed, "plugin '\(file.path)': the worker sent unreadable descriptors", file: file.name)
            }
            return plugin
        case "problem":
            throw MigratorError(
                MigratorError.Code(rawValue: reply.string("code")), reply.string("message"), file: file.name,
                migrationID: reply["migration_id"]?.stringValue)
        default:
            throw MigratorError(
                .loadFailed, "plugin '\(file.path)': the worker answered '\(reply.string("op"))'", file: file.name)
        }
    }

    private func describeLocked(
        _ file: CheckedPluginFile, strictToolchain: Bool, warnings: inout [String]
    ) throws(MigratorError) -> LoadedPlugin {
        func fail(_ code: MigratorError.Code, _ why: String) -> MigratorError {
            MigratorError(code, "plugin '\(file.path)': \(why)", file: file.name)
        }
        let sent: Bool
        loadStalled = false
        do {
            try start()
            activity = "reading the descriptors of \(file.path)"
            sent = try sendLoad(file, strictToolchain: strictToolchain)
        } catch { throw fail(.loadFailed, error.description) }
        var failure: WorkerChannel.Failure?
        guard sent,
            let reply = responses.receiveMessage(deadline: EngineClock.monotonic() + loadTimeout, failure: &failure)
        else {
            if case .malformed(let what) = failure {
                _ = buryWorker(report: false, kill: true)
                throw fail(
                    .loadFailed,
                    "sent \(what) while its descriptors were read, which is not part of the worker's protocol "
                        + "(plugin code may have written to its channel); the worker was killed")
            }
            let stalled = failure == .timedOut || loadStalled
            let how = buryWorker(kill: stalled)
            if stalled {
                throw fail(
                    .loadFailed,
                    "did not finish loading within \(Self.duration(loadTimeout)) (a constructor or its entry function "
                        + "hung); the worker was killed")
            }
            throw fail(
                .loadFailed,
                "crashed while its descriptors were read (\(how)\(backtraceFile.map { "; backtrace in \($0)" } ?? ""))")
        }
        return try plugin(from: reply, file: file, warnings: &warnings)
    }

    // MARK: Running steps

    package func runStep(
        _ m: AvailableMigration, _ direction: Direction, next: AvailableMigration?, startedAt: String,
        observer: StepObserver
    ) throws -> Int64? {
        try exclusive.withLock { _ in try runStepLocked(m, direction, next: next, observer: observer) }
    }

    private func stepRequest(_ m: AvailableMigration, _ direction: Direction, after: String?) -> JSON {
        var fields: [(String, JSON)] = [
            ("op", .string("step")), ("id", .string(m.id)), ("direction", .string(direction.rawValue)),
        ]
        if let after { fields.append(("after", .string(after))) }
        return .object(JSONObject(fields))
    }

    /// Reads and drops the answer to a step sent ahead that the runner did
    /// not ask for (the step before it failed, so the worker skipped it).
    private func dropQueued() {
        guard queued != nil else { return }
        queued = nil
        while let reply = responses.receiveMessage() {
            if ["done", "failed", "skipped"].contains(reply.string("op")) { return }
        }
        _ = buryWorker()
    }

    private func runStepLocked(
        _ m: AvailableMigration, _ direction: Direction, next: AvailableMigration?, observer: StepObserver
    ) throws -> Int64? {
        guard pid > 0, death == nil else {
            throw StepFailure(message: "the worker holding the plugins is gone (\(death ?? "never started"))")
        }
        let key = "\(direction) \(m.id)"
        activity = "\(direction) of migration '\(m.id)' (\(m.origin.label))"
        let alreadySent = queued == key
        if !alreadySent { dropQueued() }
        queued = nil
        try openDatabase()
        // A signal that came after the last step's answer: stop before this one.
        if !alreadySent, migrator_forwarded_signal() != 0 {
            let signal = migrator_take_forwarded_signal()
            throw StepFailure(
                message: "interrupted by \(Self.signalName(signal)) before \(direction) began; nothing of it ran",
                interruptedBy: signal)
        }
        migrator_set_step_running(1)
        var nextQueued = false
        // While a step sent ahead runs, the operator's signals still go to it.
        defer { if !nextQueued { migrator_set_step_running(0) } }
        if !alreadySent {
            guard requests.send(stepRequest(m, direction, after: nil)) else { throw died(during: m, direction) }
        }
        // The worker starts `next` as soon as `m` commits, and skips it if `m` fails.
        if let next, requests.send(stepRequest(next, direction, after: m.id)) {
            queued = "\(direction) \(next.id)"
        }
        let deadline = stepTimeout.map { EngineClock.monotonic() + $0 }
        func exceededTimeout() -> StepFailure {
            _ = buryWorker(kill: true)
            return StepFailure(
                message: "the step exceeded the step timeout (\(Self.duration(stepTimeout ?? 0))) "
                    + "during \(direction); the worker was killed")
        }
        var signalled: Double?
        while true {
            // Waited for in slices: the step timeout and the operator's
            // signal count even while the worker stays silent.
            let now = EngineClock.monotonic()
            if let deadline, now >= deadline { throw exceededTimeout() }
            if migrator_forwarded_signal() != 0 {
                let since = signalled ?? now
                signalled = since
                // A worker whose crash report is written is dying of the
                // signal (SIGQUIT dumps core, which can take a while).
                let grace = crashReport?.contents() == nil ? Self.signalGrace : Self.dyingGrace
                if now - since >= grace {
                    // Plugin code that ignores or blocks the signal.
                    _ = buryWorker(kill: true)
                    let signal = migrator_take_forwarded_signal()
                    throw StepFailure(
                        message: "interrupted by \(Self.signalName(signal)) during \(direction); the step did not "
                            + "stop within \(Self.duration(grace)), and the worker was killed"
                            + (backtraceFile.map { " (backtrace in \($0))" } ?? ""),
                        interruptedBy: signal)
                }
            }
            guard responses.readable(within: min(0.25, (deadline ?? .infinity) - now)) else { continue }
            var failure: WorkerChannel.Failure?
            guard let reply = responses.receiveMessage(deadline: deadline, failure: &failure) else {
                switch failure {
                case .timedOut:
                    throw exceededTimeout()
                case .malformed(let what):
                    throw violation("sent \(what) during \(direction)")
                case .closed, nil:
                    throw died(during: m, direction)
                }
            }
            switch reply.string("op") {
            case "log":
                let level = LogLevel(rawValue: Int32(truncatingIfNeeded: reply.int("level") ?? 1)) ?? .info
                observer.log(m.id, level, reply.string("message"))
            case "progress":
                observer.progress(
                    m.id, UInt64(clamping: reply.int("done") ?? 0), UInt64(clamping: reply.int("total") ?? 0))
            case "done":
                nextQueued = queued != nil
                // The step committed, but the operator asked to stop. A
                // signal that came after the commit reached the step sent
                // ahead, which the worker was running: it ends as interrupted
                // (or is killed after the grace), and the runner sees it
                // there. Otherwise the run stops here, and the step sent
                // ahead is cancelled with its worker.
                var committedAt = Double.infinity
                if case .double(let at)? = reply["committed_at"] { committedAt = at }
                if migrator_forwarded_signal() != 0
                    && (queued == nil || migrator_forwarded_signal_time() <= committedAt)
                {
                    if queued != nil {
                        queued = nil
                        nextQueued = false
                        _ = buryWorker(report: false, kill: true)
                    }
                    interruption = migrator_take_forwarded_signal()
                }
                return reply.int("duration_ms")
            case "failed":
                // A failure is final once the worker is idle: plugin code
                // could have written this answer while its step still runs.
                awaitIdle(deadline: deadline)
                let why = reply.string("message")
                throw StepFailure(message: why.isEmpty ? "the worker reported a failure without a reason" : why)
            case "skipped":
                throw StepFailure(message: "the worker skipped it: the step before it did not complete")
            default:
                throw violation("answered '\(reply.string("op"))' during \(direction)")
            }
        }
    }

    package func trial(_ steps: [(AvailableMigration, TrialStep)], observer: StepObserver) throws -> [TrialResult] {
        try exclusive.withLock { _ in try trialLocked(steps, observer: observer) }
    }

    private func trialLocked(
        _ steps: [(AvailableMigration, TrialStep)], observer: StepObserver
    ) throws
        -> [TrialResult]
    {
        guard pid > 0, death == nil else {
            throw StepFailure(message: "the worker holding the plugins is gone (\(death ?? "never started"))")
        }
        guard let last = steps.last else { return [] }
        dropQueued()
        try openDatabase()
        let encoded = try JSONEncoder().encode(steps.map(\.1))
        guard requests.send(Self.message("trial")), requests.send(Array(encoded)) else {
            throw StepFailure(message: "the worker died (\(buryWorker()))")
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
            guard let reply = responses.receiveMessage(deadline: deadline, failure: &failure) else {
                // The worker died, hung or broke the protocol: the step it
                // was on failed, and nothing after it ran. The trial commits
                // nothing either way.
                let why: String
                switch failure {
                case .timedOut:
                    _ = buryWorker(kill: true)
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
            switch reply.string("op") {
            case "log":
                let level = LogLevel(rawValue: Int32(truncatingIfNeeded: reply.int("level") ?? 1)) ?? .info
                observer.log(current?.0.id ?? "", level, reply.string("message"))
            case "progress":
                observer.progress(
                    current?.0.id ?? "", UInt64(clamping: reply.int("done") ?? 0),
                    UInt64(clamping: reply.int("total") ?? 0))
            case "trial_result":
                guard let bytes = responses.receive(),
                    let result = try? JSONDecoder().decode(TrialResult.self, from: Data(bytes)),
                    result.id == current?.0.id
                else { throw violation("sent an unreadable trial result") }
                results.append(result)
            case "trial_done":
                guard results.count == steps.count else {
                    throw violation("ended the trial after \(results.count) of \(steps.count) steps")
                }
                return results
            case "failed":
                throw StepFailure(message: reply.string("message"))
            default:
                throw violation("answered '\(reply.string("op"))' during a trial")
            }
        }
    }

    private func openDatabase() throws {
        guard let database, openedDatabase != database.path else { return }
        var fields: [(String, JSON)] = [("op", .string("open")), ("db", .string(database.path))]
        if let mb = database.maxMapMB { fields.append(("max_map_mb", .int(Int64(mb)))) }
        guard requests.send(.object(JSONObject(fields))), let reply = responses.receiveMessage() else {
            throw StepFailure(message: "the worker died opening the database (\(buryWorker()))")
        }
        guard reply.string("op") == "ok" else { throw StepFailure(message: reply.string("message")) }
        openedDatabase = database.path
    }

    /// The worker said something outside the protocol (plugin code can write
    /// to its channel): it is killed, so nothing it still runs can commit
    /// after the caller has looked at the database.
    private func violation(_ what: String) -> StepFailure {
        _ = buryWorker(report: false, kill: true)
        return StepFailure(
            message: "the worker \(what), which is not part of its protocol (plugin code may have written to "
                + "its channel); the worker was killed")
    }

    /// Waits until the worker has finished everything sent to it, by a
    /// round trip with a fresh nonce (the worker answers requests in order);
    /// a worker that does not answer in time is killed. Either way nothing
    /// it runs can commit afterwards.
    private func awaitIdle(deadline: Double?) {
        guard pid > 0, death == nil else { return }
        queued = nil
        let nonce = String(UInt64.random(in: 1...UInt64.max))
        guard requests.send(.object(JSONObject([("op", .string("sync")), ("nonce", .string(nonce))]))) else {
            _ = buryWorker(report: false, kill: true)
            return
        }
        while true {
            guard let reply = responses.receiveMessage(deadline: deadline) else {
                _ = buryWorker(report: false, kill: true)
                return
            }
            if reply.string("op") == "synced" && reply.string("nonce") == nonce { return }
        }
    }

    package func takeInterruption() -> Int32? {
        exclusive.withLock { _ in
            defer { interruption = nil }
            return interruption
        }
    }

    package func settle() {
        exclusive.withLock { _ in
            guard pid > 0, death == nil else { return }
            _ = buryWorker(report: false, kill: true)
        }
    }

    /// The failure for a worker that stopped answering during a step.
    private func died(during m: AvailableMigration, _ direction: Direction) -> StepFailure {
        let how = buryWorker()
        let backtrace = backtraceFile.map { " (backtrace in \($0))" } ?? ""
        let signal = migrator_take_forwarded_signal()
        if signal != 0 {
            return StepFailure(
                message: "interrupted by \(Self.signalName(signal)) during \(direction)\(backtrace); "
                    + "nothing of it was committed",
                interruptedBy: signal)
        }
        return StepFailure(message: "\(how) during \(direction)\(backtrace)")
    }

    // MARK: The process

    /// Starts the worker if none is running.
    private func start() throws(SealedImageError) {
        if pid > 0 && death == nil {
            dropQueued()
            if death == nil { return }
        }
        // Requests go over a Unix socket, which can carry the plugins'
        // sealed memfds; responses over a pipe.
        var toWorker: [Int32] = [0, 0]
        var fromWorker: [Int32] = [0, 0]
        // Close-on-exec from birth: another thread's spawn must not inherit them.
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &toWorker) == 0,
            migrator_pipe_cloexec(&fromWorker) == 0
        else {
            throw SealedImageError("cannot create the worker's channels: \(errorText(errno))")
        }
        // Every end moves above the numbers the worker gets (3, 4, 5), so no
        // dup2 below overwrites a descriptor a later one still reads; and
        // none leaks into other children (dup2 clears the flag in the worker).
        toWorker = toWorker.map(Self.lifted)
        fromWorker = fromWorker.map(Self.lifted)
        crashReport?.close()
        let report = CrashReport()
        crashReport = report
        images = [:]
        backtraceFile = nil
        // A worker that dies mid-message must not kill us with SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        // Plugin code runs as our user: without this, it could open our
        // /proc/PID/mem (the worker has no CAP_SYS_PTRACE, which would
        // override it). It also means no core dump of this process.
        _ = migrator_set_undumpable()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toWorker[0], WorkerProtocol.requestFD)
        posix_spawn_file_actions_adddup2(&actions, fromWorker[1], WorkerProtocol.responseFD)
        if report.fd >= 0 { posix_spawn_file_actions_adddup2(&actions, report.fd, WorkerProtocol.reportFD) }
        // Plugin output must never reach stdout, where data goes.
        var outputPipe: [Int32] = [-1, -1]
        if output != nil, migrator_pipe_cloexec(&outputPipe) == 0 {
            outputPipe = outputPipe.map(Self.lifted)
            posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 1)
            posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 2)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 2, 1)
        }
        let args =
            [executable, WorkerProtocol.command, String(getpid())] + (allowsNetwork ? [WorkerProtocol.network] : [])
        let env = ProcessEnvironment.forWorker(ProcessEnvironment.current, network: allowsNetwork)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        _ = migrator_spawnattr_reset_signals(&attributes)
        var child: pid_t = 0
        let rc = withCStrings(args) { argv in
            withCStrings(env) { envp in posix_spawn(&child, executable, &actions, &attributes, argv, envp) }
        }
        close(toWorker[0])
        close(fromWorker[1])
        if outputPipe[1] >= 0 { close(outputPipe[1]) }
        outputForwarded = nil
        if let output, outputPipe[0] >= 0 { outputForwarded = Self.forwardLines(from: outputPipe[0], to: output) }
        guard rc == 0 else {
            close(toWorker[1])
            close(fromWorker[0])
            throw SealedImageError("cannot start the worker '\(executable)': \(errorText(rc))")
        }
        pid = child
        death = nil
        queued = nil
        openedDatabase = nil
        requests = WorkerChannel(fd: toWorker[1])
        responses = WorkerChannel(fd: fromWorker[0])
        if forwardSignals {
            migrator_install_signal_forwarding()
            migrator_set_forward_target(child)
        }
    }

    /// The longest line of plugin output handed over whole; a longer one
    /// is handed over in pieces of this size.
    static let outputLineLimit = 16 * 1024

    /// Reads `fd` until every writer closed it (the worker and anything it
    /// started), handing over each line; then closes it and signals the
    /// semaphore it returns.
    private static func forwardLines(
        from fd: Int32, to output: @escaping @Sendable (String) -> Void
    )
        -> DispatchSemaphore
    {
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                pending += buffer[0..<n]
                while true {
                    if let newline = pending.firstIndex(of: 0x0A), newline <= outputLineLimit {
                        output(String(decoding: pending[..<newline], as: UTF8.self))
                        pending.removeSubrange(...newline)
                    } else if pending.count >= outputLineLimit {
                        output(String(decoding: pending[..<outputLineLimit], as: UTF8.self))
                        pending.removeSubrange(..<outputLineLimit)
                    } else {
                        break
                    }
                }
            }
            if !pending.isEmpty { output(String(decoding: pending, as: UTF8.self)) }
            close(fd)
            done.signal()
        }
        return done
    }

    /// `fd` moved to a number of at least 10, close-on-exec (itself if that fails).
    static func lifted(_ fd: Int32) -> Int32 {
        guard fd >= 0 else { return fd }
        let high = fcntl(fd, F_DUPFD_CLOEXEC, 10)
        guard high >= 0 else { return fd }
        close(fd)
        return high
    }

    /// Reaps the worker and says how it ended; with `report`, a crash
    /// report the worker wrote is saved and its path named.
    private func buryWorker(report: Bool = true, kill killFirst: Bool = false) -> String {
        if let death { return death }
        // Only while nothing is committed-in-progress: loading, or a timeout.
        if killFirst { kill(pid, SIGKILL) }
        // Otherwise its channel ended: a dying worker is gone within moments;
        // one still running closed or replaced its descriptors (plugin code),
        // can never answer again, and is killed.
        let keptRunning = !killFirst && !Self.exits(pid, within: Self.exitGrace)
        if keptRunning { kill(pid, SIGKILL) }
        var status: Int32 = 0
        var how = "the worker stopped answering"
        close(requests.fd)
        close(responses.fd)
        if waitpid(pid, &status, 0) == pid {
            let signal = status & 0x7F
            if keptRunning && signal == SIGKILL {
                how =
                    "the worker closed its reply channel but kept running (plugin code closed or replaced its "
                    + "descriptors); it was killed"
            } else if signal != 0 {
                how = "the worker was killed by \(Self.signalName(signal))"
                if signal == SIGSYS, let call = crashReport?.refusedCall {
                    how =
                        "the worker reported that plugin code made a system call the sandbox refuses: \(call); "
                        + "the worker was killed"
                } else if signal == SIGSYS, crashReport?.contents() == nil {
                    // The kernel delivers a blocked SIGSYS with its default action,
                    // which runs no handler to write the report.
                    how +=
                        " with no report, most likely for a system call the sandbox refuses while signals were "
                        + "blocked (system() and posix_spawn block them before they start a process)"
                }
                if report {
                    backtraceFile = crashReport?.save(
                        worker: pid, signal: Self.signalName(signal), what: activity, images: images)
                }
            } else {
                let code = (status >> 8) & 0xFF
                how = "the plugin ended the worker process with exit status \(code) (exit() or _exit() in plugin code)"
            }
        }
        death = how
        migrator_set_forward_target(0)
        // The worker's last lines before what the caller says next; a
        // descendant that still holds the pipe is not waited for long.
        if let outputForwarded { _ = outputForwarded.wait(timeout: .now() + 1) }
        outputForwarded = nil
        return how
    }

    /// How long a step may go on after the operator's signal reached its
    /// worker before the worker is killed.
    static let signalGrace = 5.0
    /// The same, for a worker already writing its crash report.
    static let dyingGrace = 60.0

    /// How long a worker whose channel ended may take to exit. Its channel
    /// ends only once the kernel closes its files, the last moments of an
    /// exit: this is ample, and a SIGKILL then would not change the status
    /// an exiting process leaves.
    static let exitGrace = 0.1

    /// Whether `pid` has exited (a zombie, or gone) within `seconds`;
    /// it is not reaped.
    static func exits(_ pid: pid_t, within seconds: Double) -> Bool {
        let deadline = EngineClock.monotonic() + seconds
        while true {
            var info = siginfo_t()
            // WNOWAIT: look, and leave the status for waitpid.
            if waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 { return errno == ECHILD }
            if info._sifields._sigchld.si_pid == pid { return true }
            guard EngineClock.monotonic() < deadline else { return false }
            usleep(2000)
        }
    }

    static func signalName(_ signal: Int32) -> String {
        let names: [Int32: String] = [
            SIGSEGV: "SIGSEGV", SIGBUS: "SIGBUS", SIGABRT: "SIGABRT", SIGFPE: "SIGFPE", SIGILL: "SIGILL",
            SIGTRAP: "SIGTRAP", SIGKILL: "SIGKILL", SIGTERM: "SIGTERM", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT",
            SIGHUP: "SIGHUP", SIGSYS: "SIGSYS", SIGPIPE: "SIGPIPE",
        ]
        return names[signal] ?? "signal \(signal)"
    }

    static func duration(_ seconds: Double) -> String {
        seconds >= 60 && seconds.truncatingRemainder(dividingBy: 60) == 0
            ? "\(Int(seconds / 60))m" : "\(seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds))s"
    }
}

/// The worker's command line and pipe numbers.
enum WorkerProtocol {
    /// `migrator __worker PARENT_PID`: hidden from help.
    static let command = "__worker"
    /// The worker reads requests here.
    static let requestFD: Int32 = 3
    /// The worker writes responses here.
    static let responseFD: Int32 = 4
    /// The worker's fatal-signal handler writes its crash report here.
    static let reportFD: Int32 = 5
    /// The argument after the parent's pid that lets plugin code open
    /// network sockets (a PostgreSQL database).
    static let network = "--network"
}

/// This process's environment as `NAME=value` strings.
enum ProcessEnvironment {
    /// Passed to the worker as they are.
    static let workerNames: Set<String> = [
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", PluginWorker.Sandbox.switchVariable,
    ]
    /// Passed to the worker, by prefix: the locale, and the migrations' own.
    static let workerPrefixes = ["LC_", "MIGRATION_"]
    /// Passed only to a worker that connects to PostgreSQL: libpq's settings
    /// (`PGPASSWORD`, `PGPASSFILE`, `PGSSLMODE`, …) and what its TLS and
    /// Kerberos need.
    static let networkNames: Set<String> = [
        "KRB5CCNAME", "KRB5_CONFIG", "KRB5_KTNAME", "SSL_CERT_FILE", "SSL_CERT_DIR",
    ]
    static let networkPrefixes = ["PG"]

    /// The worker's environment: only the allowlist above from `parent`
    /// (no `LD_*`, nothing else the parent happens to hold), and no crash
    /// reporter: Swift's would return from a raised signal (the worker
    /// makes those fatal anyway) and can stall a crash for 30 s while it
    /// symbolicates. The parent reports the signal instead.
    static func forWorker(_ parent: [String], network: Bool) -> [String] {
        parent.filter { entry in
            let name = String(entry.prefix { $0 != "=" })
            if workerNames.contains(name) || workerPrefixes.contains(where: { name.hasPrefix($0) }) { return true }
            return network && (networkNames.contains(name) || networkPrefixes.contains { name.hasPrefix($0) })
        } + ["SWIFT_BACKTRACE=enable=no"]
    }

    static var current: [String] {
        var out: [String] = []
        var p = environ
        while let entry = p.pointee {
            out.append(String(cString: entry))
            p += 1
        }
        return out
    }
}

/// Calls `body` with a NULL-terminated C array of `strings`.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
