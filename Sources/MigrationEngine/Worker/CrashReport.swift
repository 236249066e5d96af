import _MigratorCShims

#if canImport(Glibc)
import Glibc
#endif

/// The worker's crash report: a memfd the worker inherits as
/// ``WorkerProtocol/reportFD``, where its fatal-signal handler writes the
/// signal and a backtrace before the process dies. The parent reads it after
/// the death and keeps it as a file, so the operator's terminal gets one line
/// with the path instead of a backtrace.
struct CrashReport {
    /// The parent's end of the memfd (-1: none could be made).
    let fd: Int32

    /// The memfd's name, by which the worker recognises it.
    static let name = "migrator-crash-report"

    init() { fd = WorkerProcess.lifted(migrator_memfd_create(Self.name)) }

    func close() { if fd >= 0 { _ = Glibc.close(fd) } }

    /// What the worker wrote, if anything.
    func contents() -> String? {
        var st = stat()
        guard fd >= 0, fstat(fd, &st) == 0, st.st_size > 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(min(st.st_size, 1 << 20)))
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return String(decoding: bytes.prefix(n), as: UTF8.self)
    }

    /// The system call the worker's report says the sandbox refused, named
    /// from this process's own table ("NAME (nr N)"); nil unless the report
    /// says so of a call the filter does refuse. Plugin code can write the
    /// report too: callers say "the worker reported".
    var refusedCall: String? {
        let marker = "refused system call "
        guard let text = contents(), text.hasPrefix(marker) else { return nil }
        let line = String(text.prefix { $0 != "\n" })
        guard let open = line.lastIndex(of: "("), line[open...].hasPrefix("(nr "),
            let nr = Int32(line[open...].dropFirst(4).prefix { $0.isNumber }),
            let name = migrator_refused_call_name(nr)
        else { return nil }
        return "\(String(cString: name)) (nr \(nr))"
    }

    /// Saves the report, if the worker wrote one, as a new file in
    /// `$TMPDIR` (or /tmp), readable only by this user; returns its path.
    /// `what` says what the worker was doing; `images` names the plugin
    /// behind each `/proc/self/fd/N` the backtrace mentions.
    func save(worker: pid_t, signal: String, what: String, images: [Int32: String]) -> String? {
        guard let text = contents() else { return nil }
        var out = "migrator: the worker process (pid \(worker)) of run pid \(getpid()) was killed by \(signal)\n"
        out += "while: \(what)\n\n" + text
        let named = images.filter {
            text.contains("/proc/self/fd/\($0.key)(") || text.contains("/proc/self/fd/\($0.key) ")
        }
        if !named.isEmpty {
            out += "\nplugins in this backtrace:\n"
            for (fd, plugin) in named.sorted(by: { $0.key < $1.key }) { out += "  /proc/self/fd/\(fd) = \(plugin)\n" }
        }
        let directory = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        let stamp = EngineClock.iso8601().filter { $0.isNumber }.prefix(14)
        for attempt in 0..<100 {
            let path = "\(directory)/migrator-crash-\(stamp)-\(worker)\(attempt == 0 ? "" : "-\(attempt)").txt"
            let file = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | migrator_O_NOFOLLOW, 0o600)
            if file < 0 {
                if errno == EEXIST { continue }
                return nil
            }
            defer { _ = Glibc.close(file) }
            let bytes = Array(out.utf8)
            var written = 0
            while written < bytes.count {
                let n = bytes.withUnsafeBytes { write(file, $0.baseAddress! + written, $0.count - written) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return nil }
                written += n
            }
            return path
        }
        return nil
    }
}
