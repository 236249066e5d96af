import _MigratorCShims

#if canImport(Glibc)
import Glibc
#endif

/// Small, careful file writes for the files operators keep (pins, keys,
/// signatures): never through a symlink, never over someone else's file.
enum Files {
    /// Creates `path` (it must not exist) with `bytes` and `mode`, synced.
    /// `path` may be relative to the open directory `directory`; `label`
    /// then names the file in errors.
    static func create(
        _ path: String, relativeTo directory: Int32 = AT_FDCWD, label: String? = nil, with bytes: [UInt8],
        mode: mode_t
    ) throws(MigratorError) {
        let fd = openat(directory, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | migrator_O_NOFOLLOW, mode)
        let path = label ?? path
        guard fd >= 0 else {
            let e = errno
            throw MigratorError(
                .writeFailed,
                e == EEXIST
                    ? "'\(path)' already exists; not overwriting it" : "cannot create '\(path)': \(errorText(e))")
        }
        defer { close(fd) }
        _ = fchmod(fd, mode)
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw MigratorError(.writeFailed, "writing '\(path)': \(errorText(errno))") }
            written += n
        }
        guard fsync(fd) == 0 else { throw MigratorError(.writeFailed, "writing '\(path)': \(errorText(errno))") }
        if directory != AT_FDCWD { _ = fsync(directory) }
    }

    /// Writes `bytes` to a new temporary file beside `path`, then renames it
    /// over `path`: readers see the old file or the new one, never half.
    static func replace(_ path: String, with bytes: [UInt8], mode: mode_t) throws(MigratorError) {
        let temporary = "\(path).tmp.\(getpid())"
        _ = unlink(temporary)
        try create(temporary, with: bytes, mode: mode)
        guard rename(temporary, path) == 0 else {
            let e = errno
            _ = unlink(temporary)
            throw MigratorError(.writeFailed, "cannot replace '\(path)': \(errorText(e))")
        }
    }
}

/// Files whose contents steer what migrator does (its config file): read
/// only if nobody but you or root could have written them.
package enum TrustedFile {
    /// The contents of the file at `path` (at most `limit` bytes), read from
    /// the descriptor that was checked: the file owned by you or root and
    /// writable by its owner alone, and every directory on its real path
    /// likewise (a sticky directory such as /tmp passes). `role` names it
    /// in the refusal ("config file").
    /// - Throws: `.untrustedConfig` naming the file and why it is not
    ///   trusted, or why it cannot be read.
    package static func read(_ path: String, role: String, limit: Int = 1 << 20) throws(MigratorError) -> [UInt8] {
        func refuse(_ why: String) -> MigratorError {
            MigratorError(
                .untrustedConfig, "\(role) '\(path)' \(why); anyone who can write to it decides what migrator does")
        }
        // Non-blocking: a FIFO planted as the file must not hold the run.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else {
            throw MigratorError(.untrustedConfig, "cannot read the \(role) '\(path)': \(errorText(errno))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            throw MigratorError(.untrustedConfig, "the \(role) '\(path)' is not a regular file")
        }
        if let problem = PluginDirectory.ownershipProblem(st) { throw refuse(problem) }
        if let problem = PluginDirectory.pathProblem(of: path) { throw refuse("lies in \(problem)") }
        guard let bytes = Backups.readAll(fd, limit: limit) else {
            throw MigratorError(
                .untrustedConfig, "cannot read the \(role) '\(path)' (or it is larger than \(limit) bytes)")
        }
        return bytes
    }

    /// Why the secret at `path` may have been read by others (a mode that
    /// lets them), or why it cannot be looked at; nil when only its owner can.
    static func ownerOnlyProblem(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return "cannot be read: \(errorText(errno))" }
        guard st.st_mode & 0o077 == 0 else {
            return "is readable by others (mode \(String(st.st_mode & 0o777, radix: 8))); chmod 600 it"
        }
        return nil
    }

    /// The secret in the file at `path` (its first line), under the owner
    /// and mode rule of ``read(_:role:limit:)`` and, as for ssh keys, not
    /// readable by others either.
    /// - Throws: `.untrustedConfig` naming the file and the cause.
    package static func secret(_ path: String, role: String) throws(MigratorError) -> String {
        if let problem = ownerOnlyProblem(path) {
            throw MigratorError(.untrustedConfig, "the \(role) '\(path)' \(problem)")
        }
        let text = String(decoding: try read(path, role: role, limit: 4096), as: UTF8.self)
        guard let line = text.split(separator: "\n", omittingEmptySubsequences: false).first,
            !line.trimmingCharacters(in: "\r").isEmpty
        else { throw MigratorError(.untrustedConfig, "the \(role) '\(path)' is empty") }
        return line.trimmingCharacters(in: "\r")
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = self
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

/// A directory opened once (`O_DIRECTORY | O_NOFOLLOW`): what is in it is
/// reached relative to the descriptor, so a path swapped for a link
/// meanwhile changes nothing that is read, written or deleted.
package final class OpenDirectory {
    let fd: Int32
    /// Its path, for messages.
    let path: String
    /// Its name in the directory it was opened from.
    let name: String

    /// `path` itself, which must be a directory and not a link; `label` names it.
    init?(opening path: String, as label: String? = nil) {
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | migrator_O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        self.path = label ?? path
        name = String(path.split(separator: "/").last ?? "")
    }

    /// The entry `name` of `parent`, which must be a directory and not a link.
    init?(opening name: String, in parent: OpenDirectory) {
        fd = openat(parent.fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | migrator_O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        path = parent.path + "/" + name
        self.name = name
    }

    deinit { close(fd) }

    /// A path that reaches the directory through its descriptor, for APIs
    /// that take a path (opening the copy read-only with LMDB).
    var anchoredPath: String { "/proc/self/fd/\(fd)" }

    var status: stat? {
        var st = stat()
        return fstat(fd, &st) == 0 ? st : nil
    }

    /// The names in it (without `.` and `..`); nil if it cannot be read.
    func entries() -> [String]? {
        let copy = dup(fd)
        guard copy >= 0, let d = fdopendir(copy) else { return nil }
        defer { closedir(d) }
        rewinddir(d)
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Removes every entry but directories (a link is removed, not followed).
    func removeEntries() {
        for name in entries() ?? [] { _ = unlinkat(fd, name, 0) }
    }
}
