import Dispatch
import _MigratorCShims

#if canImport(Glibc)
import Glibc
#endif

/// One worker process, from the parent's side: spawning it with its
/// channels and sandbox-ready environment, reaping it, and saying how it
/// ended. What is said over the channels is ``WorkerClient``'s business.
final class WorkerProcess {
    private let executable: String
    private let forwardSignals: Bool
    private let allowsNetwork: Bool
    private let output: (@Sendable (String) -> Void)?
    private(set) var pid: pid_t = 0
    private(set) var requests = WorkerChannel(fd: -1)
    private(set) var responses = WorkerChannel(fd: -1)
    /// Why the current worker is gone, once it is.
    private(set) var death: String?
    /// Where the worker writes its backtrace if a signal kills it.
    private var crashReport: CrashReport?
    /// Where the last worker's crash report was saved, if it wrote one.
    private(set) var backtraceFile: String?
    /// Signalled when the forwarder of the worker's output has read it all.
    private var outputForwarded: DispatchSemaphore?
    /// What the worker is doing, for its crash report.
    var activity = "starting"
    /// The plugin behind each memfd number in the worker, for crash reports.
    var images: [Int32: String] = [:]

    init(_ isolation: PluginIsolation) {
        executable = isolation.executable ?? "/proc/self/exe"
        forwardSignals = isolation.forwardSignals
        allowsNetwork = isolation.allowsNetwork
        output = isolation.output
    }

    deinit {
        crashReport?.close()
        guard isAlive else { return }
        close(requests.fd)
        close(responses.fd)
        // Idle, with no transaction open: nothing is lost by killing it, and
        // a normal exit would first run a thousand plugins' destructors.
        kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
    }

    /// Whether a worker was started and has not been buried.
    var isAlive: Bool { pid > 0 && death == nil }

    /// Whether the worker wrote a crash report (it is dying of a signal).
    var isWritingCrashReport: Bool { crashReport?.contents() != nil }

    /// Starts a new worker (the caller buried the last one, if any).
    func start() throws(SealedImageError) {
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
    func bury(report: Bool = true, kill killFirst: Bool = false) -> String {
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
}
