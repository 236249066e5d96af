import DocumentStore
import FoundationEssentials
import MigrationKit
import _MigratorCShims

#if canImport(Glibc)
import Glibc
#endif

/// The worker process: the only place plugin code runs when plugins are
/// isolated (``PluginIsolation/worker(executable:forwardSignals:loadTimeout:)``). It
/// loads the verified bytes its parent sends (through a sealed memfd), reports
/// their descriptors, and runs one step at a time, each in its own write
/// transaction with its bookkeeping, exactly as in-process runs do.
///
/// An executable that offers isolation calls ``serve(arguments:)`` when it
/// is started as `EXECUTABLE __worker PARENT_PID`; `migrator` does.
package enum PluginWorker {
    /// Whether `arguments` (without the program name) start a worker.
    package static func isWorkerInvocation(_ arguments: [String]) -> Bool {
        arguments.first == WorkerProtocol.command
    }

    /// Serves the parent until it closes the pipe; returns the exit status.
    package static func serve(arguments: [String]) -> Int32 {
        // Die with the parent; and if it is already gone, do nothing at all.
        _ = migrator_set_parent_death_signal(SIGKILL)
        guard arguments.count >= 2, let parent = pid_t(arguments[1]), getppid() == parent else { return 1 }
        EngineClock.runnerPID = parent
        // Should a crash reporter be active after all (it returns from a
        // raised signal), a fatal signal still ends the worker.
        // The crash report goes to the memfd the parent passed, if it did
        // (and never into some other file that happens to be fd 5).
        migrator_make_fatal_signals_fatal(isCrashReport(WorkerProtocol.reportFD) ? WorkerProtocol.reportFD : -1)
        raiseFileLimit()
        // Close-on-exec: nothing the worker might run (where the sandbox is
        // off) may hold its channels open, and keep the parent waiting.
        for fd in [WorkerProtocol.requestFD, WorkerProtocol.responseFD, WorkerProtocol.reportFD] {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        // stdout is a pipe or stderr: line-buffer it, so that a plugin's
        // printed lines reach the operator as they happen, and are not lost
        // in a buffer when the worker is killed.
        migrator_line_buffer_stdout()
        // Resolved now: a user database lookup may need a socket (NIS,
        // LDAP) that the sandbox refuses afterwards.
        _ = EngineClock.userName
        _ = EngineClock.hostName
        let network = arguments.dropFirst(2).contains(WorkerProtocol.network)
        let sandbox = Sandbox.enter(network: network)
        if case .unavailable = sandbox { InProcessExecutor.killsDescendants.store(true, ordering: .relaxed) }
        var session = Session(parent: parent, sandbox: sandbox, network: network)
        let status = session.run()
        _ = migrator_kill_descendants()
        return status
    }

    /// What contains plugin code in this worker; see docs/security.md.
    enum Sandbox {
        /// The system-call filter is in force.
        case filtered
        /// It is not, for this reason; descendants are killed after each step instead.
        case unavailable(String)

        /// The environment variable that turns the filter off (`off`), for
        /// diagnosing a plugin; descendants are still killed.
        static let switchVariable = "MIGRATOR_SANDBOX"

        /// Before any plugin code runs (constructors included): descendants
        /// stay ours to kill, root loses CAP_SYS_PTRACE, and the filter goes
        /// on, refusing network sockets too unless `network`.
        static func enter(network: Bool) -> Sandbox {
            _ = migrator_become_subreaper()
            _ = migrator_drop_ptrace_capability()
            if let value = getenv(switchVariable), String(cString: value) == "off" {
                return .unavailable("\(switchVariable)=off")
            }
            guard migrator_install_sandbox() == 0, network || migrator_sandbox_deny_network() == 0 else {
                return .unavailable("the kernel refused the system-call filter: \(errorText(errno))")
            }
            return .filtered
        }

        /// The warning the parent shows once, if any.
        var warning: String? {
            guard case .unavailable(let why) = self else { return nil }
            return "warning: plugin code runs without the sandbox's system-call filter (\(why)); "
                + "processes it starts are killed after each step"
        }
    }

    private static func isCrashReport(_ fd: Int32) -> Bool {
        var target = [CChar](repeating: 0, count: 256)
        let n = readlink("/proc/self/fd/\(fd)", &target, target.count - 1)
        guard n > 0 else { return false }
        let name = String(decoding: target.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.hasPrefix("/memfd:\(CrashReport.name) ")
    }

    /// One memfd per plugin stays open: lift the soft limit to the hard one.
    private static func raiseFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    private struct Session {
        let parent: pid_t
        let requests = WorkerChannel(fd: WorkerProtocol.requestFD)
        let responses = WorkerChannel(fd: WorkerProtocol.responseFD)
        var migrations: [String: AvailableMigration] = [:]
        var storage: (any MigrationStorage)?
        /// The id of the step that just succeeded, if the last one did.
        var lastSucceeded: String?
        let sandbox: Sandbox
        /// Whether the sandbox's warning went out (with the first plugin).
        var warned = false

        /// Whether network sockets are allowed (a PostgreSQL database).
        let network: Bool

        init(parent: pid_t, sandbox: Sandbox, network: Bool) {
            self.parent = parent
            self.sandbox = sandbox
            self.network = network
        }

        /// Without the filter, nothing plugin code started may outlive its
        /// step (or its loading): killed before the outcome is reported.
        func killDescendants() {
            if case .unavailable = sandbox { _ = migrator_kill_descendants() }
        }

        mutating func run() -> Int32 {
            while let received = requests.receiveRequest() {
                switch received {
                case .success(.load(let file, let path, let sha256, let strict, let bundle)):
                    let answer = loaded(
                        file: file, path: path, sha256: sha256, strictToolchain: strict, bundle: bundle)
                    killDescendants()
                    reply(answer)
                case .success(.loadBatch): loadBatch()
                case .success(.endBatch): reply(.error(message: "end_batch outside a batch"))
                case .success(.open(let location, let options)): open(location, options)
                case .success(.step(let id, let direction, let after)): step(id, direction, after: after)
                case .success(.trial): trial()
                case .success(.sync(let nonce)): reply(.synced(nonce: nonce))
                case .failure(let error): reply(.error(message: "the worker cannot read \(error)"))
                }
            }
            return 0
        }

        func reply(_ answer: WorkerReply) { responses.send(answer) }

        /// `load_batch`: load messages, each followed by its bytes, until
        /// `end_batch`; then one reply with every result in order, so the
        /// parent never waits per file and never blocks on our replies.
        mutating func loadBatch() {
            var results: [WorkerReply] = []
            while true {
                // The parent is trusted; a request it cannot have meant ends the worker.
                guard case .success(let one)? = requests.receiveRequest() else { exit(1) }
                guard case .load(let file, let path, let sha256, let strict, let bundle) = one else {
                    guard one == .endBatch else { exit(1) }
                    break
                }
                results.append(
                    loaded(file: file, path: path, sha256: sha256, strictToolchain: strict, bundle: bundle))
            }
            killDescendants()
            reply(.loadedBatch(results))
        }

        /// Loads one plugin whose sealed image follows its request; the answer.
        mutating func loaded(
            file name: String, path: String, sha256: String, strictToolchain: Bool, bundle: String?
        ) -> WorkerReply {
            let image = migrator_receive_fd(requests.fd)
            guard image >= 0 else { exit(1) }
            var st = stat()
            let size = fstat(image, &st) == 0 ? Int64(st.st_size) : 0
            let file = CheckedPluginFile(
                name: name, path: path, sha256: sha256,
                identity: FileIdentity(device: 0, inode: 0, size: size, mtimeNanoseconds: 0), key: name)
            var warnings: [String] = []
            if !warned, let warning = sandbox.warning { warnings.append(warning) }
            warned = true
            var options = PluginLoader.Options()
            options.strictToolchain = strictToolchain
            do {
                let plugin = try PluginLoader.loadSealed(image, file: file, options: options, warnings: &warnings)
                for var m in plugin.migrations {
                    // Recorded with the migration, by the worker that commits it.
                    m.bundle = bundle
                    migrations[m.id] = m
                }
                return .loaded(plugin: JSONObject(plugin.descriptorFields), imageFD: Int64(image), warnings: warnings)
            } catch {
                return .problem(
                    code: error.code.rawValue, message: error.message, migrationID: error.migrationID,
                    warnings: warnings)
            }
        }

        mutating func open(_ location: String, _ options: [String: String]) {
            guard network || !Storages.reachesNetwork(location) else {
                reply(
                    .error(
                        message: "this worker was started without network access (for an embedded database), "
                            + "and cannot reach a database server"))
                return
            }
            let s = Storages.at(location, workerOptions: options)
            do {
                try s.prepare()
                storage = s
                reply(.opened)
            } catch {
                reply(.error(message: "\(error)"))
            }
        }

        /// `trial`, then the steps (JSON): runs them in one rolled-back
        /// transaction, naming each as it starts; replies `trial_done` and
        /// the results (JSON).
        mutating func trial() {
            lastSucceeded = nil
            guard getppid() == parent, let bytes = requests.receive() else { exit(1) }
            guard let steps = try? JSONDecoder().decode([TrialStep].self, from: Data(bytes)), let storage else {
                reply(.failed(message: "the trial request is unreadable"))
                return
            }
            var pairs: [(AvailableMigration, TrialStep)] = []
            for step in steps {
                guard let m = migrations[step.id] else {
                    reply(.failed(message: "migration '\(step.id)' is not loaded in the worker"))
                    return
                }
                pairs.append((m, step))
            }
            let responses = self.responses
            do {
                // Each result goes out as its step finishes, so a worker that
                // dies on a later step still leaves the earlier verdicts true.
                _ = try TrialRunner.run(
                    pairs, storage: storage, observer: forwardingObserver(),
                    onResult: { result in
                        let encoded = try JSONEncoder().encode(result)
                        responses.send(WorkerReply.trialResult)
                        responses.send(Array(encoded))
                    })
                killDescendants()
                reply(.trialDone)
            } catch {
                killDescendants()
                reply(.failed(message: "\(error)"))
            }
        }

        /// Passes a step's log lines and progress to the parent.
        func forwardingObserver() -> StepObserver {
            let responses = self.responses
            return StepObserver(
                log: { _, level, text in responses.send(WorkerReply.log(level: level.rawValue, message: text)) },
                progress: { _, done, total in responses.send(WorkerReply.progress(done: done, total: total)) })
        }

        mutating func step(_ id: String, _ direction: Direction, after: String?) {
            // An orphan must not run a step: a new run may already own the lock.
            guard getppid() == parent else { exit(1) }
            // A step sent ahead runs only if the one it follows succeeded.
            let previous = lastSucceeded
            lastSucceeded = nil
            if let after, after != previous {
                reply(.skipped)
                return
            }
            guard let m = migrations[id], let storage else {
                reply(.failed(message: "migration '\(id)' is not loaded in the worker, or no database is open"))
                return
            }
            let observer = forwardingObserver()
            do {
                let duration = try InProcessExecutor(storage: storage).runStep(
                    m, direction, startedAt: EngineClock.iso8601(), observer: observer)
                lastSucceeded = id
                killDescendants()
                // When it committed (CLOCK_MONOTONIC, the parent's clock too):
                // an operator's signal after it reached the next step.
                reply(.done(durationMS: duration, committedAt: EngineClock.monotonic()))
            } catch let failure as StepFailure {
                killDescendants()
                reply(.failed(message: failure.message))
            } catch {
                killDescendants()
                reply(.failed(message: "\(error)"))
            }
        }
    }
}
