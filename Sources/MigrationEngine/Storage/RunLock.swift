import DocumentStore
import _MigratorCShims

#if canImport(Glibc)
import Glibc
#endif

/// Who holds (or last held) the run lock, as written in the lock file.
public struct LockOwner: Sendable, Equatable {
    /// The holder's process id.
    public var pid: Int32
    /// The holder's host name.
    public var host: String
    /// The holder's user name.
    public var user: String
    /// The command it runs (`apply`, `rollback`, …).
    public var command: String
    /// When it took the lock.
    public var startedAt: String
    /// The migration being run when this was written, if any: after a
    /// crash, this is what was interrupted.
    public var currentID: String?
    /// The direction of the step in progress.
    public var currentDirection: Direction?
    /// When the step in progress started.
    public var currentStartedAt: String?
    /// The step sent ahead to run right after the current one, if any: once
    /// the current one committed, a crash interrupted this one.
    public var nextID: String?

    package var json: JSON {
        var fields: [(String, JSON)] = [
            ("pid", .int(Int64(pid))), ("host", .string(host)), ("user", .string(user)),
            ("command", .string(command)), ("started_at", .string(startedAt)),
        ]
        if let currentID {
            fields.append(
                (
                    "current",
                    .object(
                        JSONObject(
                            [
                                ("id", .string(currentID)), ("direction", .string((currentDirection ?? .up).rawValue)),
                                ("started_at", .string(currentStartedAt ?? "")),
                            ] + (nextID.map { [("next", JSON.string($0))] } ?? [])))
                ))
        }
        return .object(JSONObject(fields))
    }

    package init(pid: Int32, host: String, user: String, command: String, startedAt: String) {
        self.pid = pid
        self.host = host
        self.user = user
        self.command = command
        self.startedAt = startedAt
    }

    package init?(parsing text: String) {
        guard let o = (try? JSON(parsing: text))?.objectValue, case .int(let pid)? = o["pid"] else { return nil }
        self.pid = Int32(truncatingIfNeeded: pid)
        host = o["host"]?.stringValue ?? "?"
        user = o["user"]?.stringValue ?? "?"
        command = o["command"]?.stringValue ?? "?"
        startedAt = o["started_at"]?.stringValue ?? "?"
        let current = o["current"]?.objectValue
        currentID = current?["id"]?.stringValue
        currentDirection = current?["direction"]?.stringValue.flatMap(Direction.init(rawValue:))
        currentStartedAt = current?["started_at"]?.stringValue
        nextID = current?["next"]?.stringValue
    }

    /// Records that `id` is now running in `direction`, with `next` queued.
    mutating func begin(_ id: String, _ direction: Direction, next: String?) {
        currentID = id
        currentDirection = direction
        currentStartedAt = EngineClock.iso8601()
        nextID = next
    }

    /// Records that no step is running.
    mutating func end() {
        currentID = nil
        currentDirection = nil
        currentStartedAt = nil
        nextID = nil
    }

    /// "apply (pid 42, root@box) since 2026-11-26T10:00:05.123Z"
    public var summary: String { "\(command) (pid \(pid), \(user)@\(host)) since \(startedAt)" }
}

/// The state of a database's run lock, read without taking it.
public enum LockState: Sendable, Equatable {
    /// Nobody holds it. `leftover` is the record a crashed run left behind.
    case free(leftover: LockOwner?)
    /// A live process holds it.
    case held(by: LockOwner?)
}

/// A run lock that keeps its owner record in one place (a file, a row) and
/// rewrites it as steps begin and end.
package protocol OwnerRecordLock: RunLockSession {
    var owner: LockOwner { get set }
    /// Writes ``owner`` where readers find it.
    func write()
}

extension OwnerRecordLock {
    package func begin(_ id: String, _ direction: Direction, next: String?) {
        owner.begin(id, direction, next: next)
        write()
    }

    package func end() {
        owner.end()
        write()
    }

    /// Forgets a leftover record (after it has been dealt with).
    package func clearLeftover() { write() }
}

/// The exclusive run lock of `apply`, `rollback` and `unlock`: an open-file-
/// description lock (`F_OFD_SETLK`) on `<db>/migrator.lock`. The kernel drops
/// it when the holder dies, so no lock outlives a crashed runner; readers test
/// it with `F_OFD_GETLK` without taking it. The file records the owner, and
/// the migration in progress, for messages and crash reports.
final class RunLock: OwnerRecordLock {
    /// The kernel drops an OFD lock only when its holder's descriptor closes.
    var canBeLostByALiveHolder: Bool { false }
    private static let getLock = migrator_F_OFD_GETLK
    private static let setLock = migrator_F_OFD_SETLK

    static func path(database: String) -> String { database + "/migrator.lock" }

    private let fd: Int32
    var owner: LockOwner
    /// The record found when the lock was taken: a previous run's, if it
    /// did not finish cleanly.
    let leftover: LockOwner?

    /// Takes the lock, waiting up to `timeout` seconds; `onWait` is told once,
    /// with the holder, when the lock is not free at once.
    init(
        database: String, command: String, timeout: Double, onWait: ((LockOwner?) -> Void)? = nil
    ) throws(MigratorError) {
        let path = Self.path(database: database)
        // Never through a symlink: a planted link would make us truncate its target.
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | migrator_O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            let e = errno
            let why = e == ELOOP ? "it is a symbolic link; refusing to follow it" : errorText(e)
            throw MigratorError(.lockFailed, "cannot open the lock file '\(path)': \(why)")
        }
        let deadline = EngineClock.monotonic() + timeout
        var told = false
        while true {
            var fl = Self.request(F_WRLCK)
            if fcntl(fd, Self.setLock, &fl) == 0 { break }
            if !told, let onWait {
                told = true
                onWait(Self.readOwner(fd))
            }
            let e = errno
            guard e == EAGAIN || e == EACCES || e == EINTR else {
                close(fd)
                throw MigratorError(.lockFailed, "cannot lock '\(path)': \(errorText(e))")
            }
            if EngineClock.monotonic() >= deadline {
                let holder = Self.readOwner(fd)
                close(fd)
                throw MigratorError(
                    .lockTimeout,
                    "database '\(database)' is locked by \(holder?.summary ?? "another process"); "
                        + "gave up after \(EngineClock.seconds(timeout))"
                )
            }
            usleep(20_000)
        }
        leftover = Self.readOwner(fd)
        owner = LockOwner(
            pid: getpid(), host: EngineClock.hostName, user: EngineClock.userName, command: command,
            startedAt: EngineClock.iso8601())
        write()
    }

    deinit { release() }

    private var released = false
    private var keepsRecord = false

    /// Clears the owner record (unless kept) and drops the lock.
    func release() {
        guard !released else { return }
        released = true
        if !keepsRecord { _ = ftruncate(fd, 0) }
        close(fd)  // drops the OFD lock
    }

    func keepRecord() { keepsRecord = true }

    /// Rewrites the record in place, padded with spaces to a fixed size so
    /// the file never changes length (no truncation per migration; no fsync:
    /// it only has to survive the process, which the page cache does).
    func write() {
        var text = Array(owner.json.serialized.utf8)
        let size = max(Self.recordSize, text.count + 1)
        text += [UInt8](repeating: 0x20, count: size - 1 - text.count) + [0x0A]
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }
    private static let recordSize = 1024

    /// The lock's state, read without taking it. `nil` file: never locked.
    static func inspect(database: String) -> LockState {
        let fd = open(path(database: database), O_RDONLY | O_CLOEXEC | migrator_O_NOFOLLOW)
        guard fd >= 0 else { return .free(leftover: nil) }
        defer { close(fd) }
        var fl = request(F_WRLCK)
        let owner = readOwner(fd)
        if fcntl(fd, getLock, &fl) == 0, fl.l_type == Int16(F_UNLCK) {
            return .free(leftover: owner)
        }
        return .held(by: owner)
    }

    private static func request(_ type: Int32) -> flock {
        var fl = flock()
        fl.l_type = Int16(type)
        fl.l_whence = Int16(SEEK_SET)
        fl.l_start = 0
        fl.l_len = 0
        fl.l_pid = 0
        return fl
    }

    private static func readOwner(_ fd: Int32) -> LockOwner? {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return LockOwner(parsing: String(decoding: buf[..<n], as: UTF8.self))
    }
}
