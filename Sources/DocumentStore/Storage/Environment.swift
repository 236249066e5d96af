import CLMDB
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One open LMDB environment (`mdb_env_*`), shared by every
/// ``DocumentStore`` that opens the same directory in this process: LMDB
/// forbids opening one environment twice in a process, because closing
/// either copy would drop the other's POSIX locks.
///
/// `@unchecked Sendable`: its handles are immutable after open, an LMDB
/// environment may be used from any thread (`MDB_NOTLS`), and its mutable
/// state sits behind a `Mutex`.
final class Environment: @unchecked Sendable {
    let env: OpaquePointer
    let path: String
    /// Documents of every collection, keyed by collection id + `_id` key.
    let docs: MDB_dbi
    /// Index entries (`MDB_DUPSORT`): index id + value key → `_id` keys.
    let index: MDB_dbi
    /// Collection records and the id sequence.
    let meta: MDB_dbi
    let maxMapSize: Int
    /// The map size asked for, when the address space allowed less.
    let reducedFrom: Int?

    private struct State {
        var activeTransactions = 0
        var writerThread: pthread_t?
        var mapSize: Int
    }
    private let state: Mutex<State>

    private struct FileID: Hashable {
        let dev: UInt64
        let ino: UInt64
    }
    /// `@unchecked Sendable`: only read and written under `registry`'s lock.
    private final class WeakEnvironment: @unchecked Sendable { weak var env: Environment? }
    private static let registry = Mutex<[FileID: WeakEnvironment]>([:])
    private let fileID: FileID

    /// Opens (or shares) the environment at `path`, creating the directory.
    static func open(path: String, options: DocumentStore.Options) throws(StoreError) -> Environment {
        if !options.readOnly { try makeDirectory(path) }
        var st = stat()
        guard stat(path, &st) == 0 else { throw errnoError(errno, path: path, "stat") }
        let id = FileID(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))
        let result: Result<Environment, StoreError> = registry.withLock { reg in
            if let live = reg[id]?.env { return .success(live) }
            do {
                let env = try openReducingMap(path: path, fileID: id, options: options)
                let box = WeakEnvironment()
                box.env = env
                reg[id] = box
                return .success(env)
            } catch let e as StoreError {
                return .failure(e)
            } catch {
                return .failure(StoreError(.storage, "\(path): \(error)"))
            }
        }
        return try result.get()
    }

    /// The smallest map a reduced reservation goes down to.
    static let smallestReducedMap = 64 << 20

    /// Opens with the map asked for or, when the process may not reserve that
    /// much address space (`ulimit -v`: `mdb_env_open` fails with ENOMEM;
    /// some sandboxes, such as valgrind, refuse the mapping with EINVAL),
    /// with the largest halving of it that fits. A store that reserved its
    /// whole map (initial == max) keeps initial == max at the reduced size,
    /// so a step still never runs twice; it fails "map full" naming both sizes.
    private static func openReducingMap(
        path: String, fileID: FileID, options: DocumentStore.Options
    ) throws(StoreError) -> Environment {
        var tried = options
        while true {
            do {
                return try Environment(
                    path: path, fileID: fileID, options: tried,
                    reducedFrom: tried.initialMapSize == options.initialMapSize ? nil : options.maxMapSize)
            } catch
                where (error.lmdbCode == ENOMEM || error.lmdbCode == EINVAL)
                && tried.initialMapSize / 2 >= smallestReducedMap
            {
                let reserving = tried.initialMapSize == tried.maxMapSize
                tried.initialMapSize /= 2
                if reserving { tried.maxMapSize = tried.initialMapSize }
            }
        }
    }

    private init(
        path: String, fileID: FileID, options: DocumentStore.Options, reducedFrom: Int?
    ) throws(StoreError) {
        self.path = path
        self.fileID = fileID
        self.maxMapSize = options.maxMapSize
        self.reducedFrom = reducedFrom
        var envp: OpaquePointer?
        var rc = mdb_env_create(&envp)
        guard rc == 0, let env = envp else { throw Environment.lmdbError(rc, path: path, "mdb_env_create") }
        self.env = env
        var fixed: [MDB_dbi] = []
        do throws(StoreError) {
            try Environment.check(mdb_env_set_maxdbs(env, 8), path, "mdb_env_set_maxdbs")
            try Environment.check(mdb_env_set_mapsize(env, options.initialMapSize), path, "mdb_env_set_mapsize")
            // MDB_NOTLS: read transactions are not tied to threads, so one
            // thread may hold several and tasks may hop threads between them.
            // A directory we may not write (a read-only mount, another user's
            // database) is opened read-only, so that reads still work; without
            // a writable lock.mdb, also without LMDB's reader table.
            var flags = UInt32(MDB_NOTLS)
            if options.readOnly {
                flags |= UInt32(MDB_RDONLY | MDB_NOLOCK)
            } else if access(path, W_OK) != 0 {
                flags |= UInt32(MDB_RDONLY)
                if access(path + "/lock.mdb", W_OK) != 0 { flags |= UInt32(MDB_NOLOCK) }
            }
            rc = mdb_env_open(env, path, flags, 0o600)
            try Environment.check(rc, path, "mdb_env_open")
            if flags & UInt32(MDB_NOLOCK) == 0 {
                var dead: Int32 = 0
                try Environment.check(mdb_reader_check(env, &dead), path, "mdb_reader_check")
            }
            var info = MDB_envinfo()
            mdb_env_info(env, &info)
            state = Mutex(State(mapSize: info.me_mapsize))
            // A file shorter than its own last page (a truncated copy) would
            // fault (SIGBUS) on the first read past its end: refuse it here.
            var stats = MDB_stat()
            var st = stat()
            if mdb_env_stat(env, &stats) == 0, stat(path + "/data.mdb", &st) == 0,
                (Int(info.me_last_pgno) + 1) * Int(stats.ms_psize) > Int(st.st_size)
            {
                throw StoreError(
                    .corrupted,
                    "\(path)/data.mdb is truncated: it is \(st.st_size) bytes, but its pages reach "
                        + "\((Int(info.me_last_pgno) + 1) * Int(stats.ms_psize)) bytes")
            }

            // Open the named databases in a read transaction when they exist,
            // so opening never waits for another process's writer (a long
            // migration); only a new file needs a write transaction.
            for write in [false, true] {
                var txn: OpaquePointer?
                try Environment.check(
                    mdb_txn_begin(env, nil, write ? 0 : UInt32(MDB_RDONLY), &txn), path, "mdb_txn_begin")
                fixed = []
                for (name, flags) in [("docs", 0), ("index", MDB_DUPSORT), ("meta", 0)] {
                    var dbi: MDB_dbi = 0
                    rc = mdb_dbi_open(txn, name, UInt32(write ? flags | MDB_CREATE : flags), &dbi)
                    if rc != 0 { break }
                    fixed.append(dbi)
                }
                if rc == MDB_NOTFOUND && !write {
                    mdb_txn_abort(txn)
                    continue
                }
                if rc != 0 {
                    mdb_txn_abort(txn)
                    try Environment.check(rc, path, "mdb_dbi_open")
                }
                try Environment.check(mdb_txn_commit(txn), path, "mdb_txn_commit")
                break
            }
        } catch {
            mdb_env_close(env)
            throw error
        }
        docs = fixed[0]
        index = fixed[1]
        meta = fixed[2]
    }

    deinit {
        Environment.registry.withLock { reg in
            if reg[fileID]?.env == nil { reg[fileID] = nil }
        }
        mdb_env_close(env)
    }

    // MARK: Transactions

    /// `mdb_txn_begin`. Adopts a map size grown by another process.
    func begin(write: Bool) throws(StoreError) -> OpaquePointer {
        state.withLock { $0.activeTransactions += 1 }
        var txn: OpaquePointer?
        var rc = mdb_txn_begin(env, nil, write ? 0 : UInt32(MDB_RDONLY), &txn)
        if rc == MDB_MAP_RESIZED {
            _ = mdb_env_set_mapsize(env, 0)
            rc = mdb_txn_begin(env, nil, write ? 0 : UInt32(MDB_RDONLY), &txn)
        }
        guard rc == 0, let txn else {
            ended()
            throw Environment.lmdbError(rc, path: path, "mdb_txn_begin")
        }
        return txn
    }

    func ended() { state.withLock { $0.activeTransactions -= 1 } }

    /// Marks this thread as the writer; a second write on it is an error,
    /// where LMDB would deadlock on its own writer mutex.
    func enterWriter() throws(StoreError) {
        let me = pthread_self()
        let nested = state.withLock { s -> Bool in
            if let w = s.writerThread, pthread_equal(w, me) != 0 { return true }
            return false
        }
        if nested {
            throw StoreError(
                .nestedWriteTransaction,
                "\(path): a write transaction is already open on this thread; nest the work inside it instead")
        }
    }

    func claimWriter() { state.withLock { $0.writerThread = pthread_self() } }
    func releaseWriter() { state.withLock { $0.writerThread = nil } }

    /// Doubles the map after `MDB_MAP_FULL` (`mdb_env_set_mapsize`), which
    /// LMDB allows only while this process has no transaction open.
    func grow() throws(StoreError) {
        let result: StoreError? = state.withLock { s in
            guard s.activeTransactions == 0 else {
                return StoreError(
                    .mapFull,
                    "\(path): the database map is full and cannot grow while \(s.activeTransactions) "
                        + "other transaction(s) are open in this process"
                )
            }
            let next = s.mapSize >= maxMapSize ? 0 : min(maxMapSize, max(s.mapSize * 2, 1 << 20))
            guard next > s.mapSize else {
                let reduced = reducedFrom.map {
                    " (\($0 >> 20) MiB was asked for, but this process may not reserve that much address space: "
                        + "see ulimit -v)"
                }
                return StoreError(
                    .mapFull,
                    "\(path): the database map is full: it reached its size limit of \(maxMapSize >> 20) MiB"
                        + (reduced ?? ""))
            }
            let rc = mdb_env_set_mapsize(env, next)
            guard rc == 0 else { return Environment.lmdbError(rc, path: path, "mdb_env_set_mapsize") }
            var info = MDB_envinfo()
            mdb_env_info(env, &info)
            s.mapSize = info.me_mapsize
            return nil
        }
        if let result { throw result }
    }

    var mapSize: Int { state.withLock { $0.mapSize } }

    // MARK: Errors

    static func check(_ rc: Int32, _ path: String, _ what: String) throws(StoreError) {
        if rc != 0 { throw lmdbError(rc, path: path, what) }
    }

    static func lmdbError(_ rc: Int32, path: String, _ what: String) -> StoreError {
        var text = String(cString: mdb_strerror(rc))
        let code: StoreError.Code
        switch rc {
        case MDB_MAP_FULL: code = .mapFull
        case ENOSPC, EDQUOT:
            code = .diskFull
            text = "disk full (\(text)); nothing of this transaction was written"
        case EACCES, EPERM, EROFS: code = .permissionDenied
        case ENOENT, ENOTDIR: code = .badPath
        case MDB_INVALID, MDB_CORRUPTED, MDB_VERSION_MISMATCH, MDB_PAGE_NOTFOUND: code = .corrupted
        case EIO:
            // A device error, not evidence of a damaged file. LMDB turns a
            // short write on a full disk into EIO: look at the free space.
            if freeBytes(path).map({ $0 < 1 << 20 }) ?? false {
                code = .diskFull
                text = "disk full (the file system has no room left); nothing of this transaction was written"
            } else {
                code = .storage
                text += " (the disk may be failing)"
            }
        default: code = .storage
        }
        return StoreError(code, "\(path): \(what) failed: \(text)", lmdbCode: rc)
    }

    /// Bytes an unprivileged write could still use on `path`'s file system.
    static func freeBytes(_ path: String) -> Int? {
        var fs = statvfs()
        guard statvfs(path, &fs) == 0 else { return nil }
        return Int(fs.f_bavail) * Int(fs.f_frsize)
    }

    static func errnoError(_ e: Int32, path: String, _ what: String) -> StoreError {
        lmdbError(e, path: path, what)
    }

    /// `mkdir -p` with mode 0700; a path that exists must be a directory.
    static func makeDirectory(_ path: String) throws(StoreError) {
        guard !path.isEmpty else { throw StoreError(.badPath, "the database path is empty") }
        var st = stat()
        if stat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else {
                throw StoreError(
                    .badPath,
                    "\(path): exists and is not a directory (a database is a directory holding data.mdb and lock.mdb)")
            }
            return
        }
        let parent = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        if !parent.isEmpty && parent != path { try makeDirectory(parent) }
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw errnoError(errno, path: path, "creating the database directory")
        }
    }
}
