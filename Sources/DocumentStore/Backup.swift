import CLMDB

#if canImport(Glibc)
import Glibc
#endif

extension DocumentStore {
    /// Writes a consistent, compacted copy of the database as `data.mdb`
    /// (0600) into the open, empty directory `directory` (`label` names it
    /// in errors), while readers and writers carry on: LMDB copies from one
    /// read transaction (`mdb_env_copyfd2` with `MDB_CP_COMPACT`). The file
    /// is created relative to the descriptor (no path someone could swap is
    /// followed) and synced before this returns.
    public func copy(into directory: Int32, named label: String) throws(StoreError) {
        let file = label + "/data.mdb"
        let fd = openat(directory, "data.mdb", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw Environment.errnoError(errno, path: file, "creating the copy") }
        defer { close(fd) }
        try Environment.check(mdb_env_copyfd2(env.env, fd, UInt32(MDB_CP_COMPACT)), file, "mdb_env_copyfd2")
        guard fsync(fd) == 0 else { throw Environment.errnoError(errno, path: file, "fsync") }
        _ = fsync(directory)
    }

    /// Creates the directory `path` (0700), and any missing parents.
    /// - Throws: `.badPath` if it exists and is not a directory; I/O errors.
    public static func makeDirectory(_ path: String) throws(StoreError) { try Environment.makeDirectory(path) }
}
