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
