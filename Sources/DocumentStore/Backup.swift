import CLMDB

#if canImport(Glibc)
import Glibc
#endif

extension DocumentStore {
    /// Writes a consistent, compacted copy of the database into the empty
    /// or new directory `directory` (created 0700), as `data.mdb` (0600),
    /// while readers and writers carry on: LMDB copies from one read
    /// transaction (`mdb_env_copyfd2` with `MDB_CP_COMPACT`). The file is
    /// synced before this returns.
    /// - Throws: `.badPath` if `directory` exists and is not empty; I/O errors.
    public func copy(to directory: String) throws(StoreError) {
        var st = stat()
        if lstat(directory, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else {
                throw StoreError(.badPath, "\(directory): exists and is not a directory")
            }
            guard Self.isEmptyDirectory(directory) else {
                throw StoreError(.badPath, "\(directory): is not empty; a copy never overwrites anything")
            }
        } else {
            try Environment.makeDirectory(directory)
        }
        let file = directory + "/data.mdb"
        let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw Environment.errnoError(errno, path: file, "creating the copy") }
        defer { close(fd) }
        try Environment.check(mdb_env_copyfd2(env.env, fd, UInt32(MDB_CP_COMPACT)), file, "mdb_env_copyfd2")
        guard fsync(fd) == 0 else { throw Environment.errnoError(errno, path: file, "fsync") }
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            _ = fsync(dir)
            close(dir)
        }
    }

    /// Whether `path` is a directory with no entries.
    public static func isEmptyDirectory(_ path: String) -> Bool {
        guard let d = opendir(path) else { return false }
        defer { closedir(d) }
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { return false }
        }
        return true
    }
}
