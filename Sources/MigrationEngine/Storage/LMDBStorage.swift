import DocumentStore

#if canImport(Glibc)
import Glibc
#endif

/// ``MigrationStorage`` over the embedded LMDB document store in a
/// directory: records in `_migrations` and `_migrations_history`, the run
/// lock in `<dir>/migrator.lock`, one LMDB write transaction per step.
package final class LMDBStorage: MigrationStorage, DocumentAccess {
    package let location: String
    private let options: DocumentStore.Options
    /// Run even if others can write the database directory (the insecure option).
    package var allowInsecureDirectory = false
    private var store: DocumentStore?

    /// Storage at `path`; nothing is opened or created until it is used.
    package init(path: String, options: DocumentStore.Options = .init()) {
        location = path
        var options = options
        // Reserve the whole map up front (it is address space, not disk): a
        // step that filled a smaller map would be aborted and run again after
        // the map grew, calling the migration's code twice. Full now means
        // the size limit, and the step fails saying so.
        options.initialMapSize = options.maxMapSize
        self.options = options
    }

    /// Whether there is anything at the path. Reads never create a
    /// database; a path that exists is opened, so a file there is an error.
    package var exists: Bool { access(location, F_OK) == 0 }

    package func requireExisting() throws {
        guard exists else {
            throw MigratorError(.directoryNotFound, "no database at \(location) (apply creates one)")
        }
    }

    /// The worker option that carries the map size limit, in MiB.
    static let maxMapOption = "max_map_mb"
    package var workerOptions: [String: String] { [Self.maxMapOption: String(options.maxMapSize >> 20)] }

    /// Forgets the open store: the directory was replaced (restore).
    package func reopen() { store = nil }

    /// The store, opened (and created) on first use.
    package func documentStore() throws -> DocumentStore {
        if let store { return store }
        let s = try DocumentStore(path: location, options: options)
        store = s
        return s
    }

    package func appliedMigrations() throws -> [AppliedMigration] {
        guard exists else { return [] }
        return try documentStore().read { try Tracking.appliedMigrations($0) }
    }

    package func isApplied(_ id: String) throws -> Bool {
        guard exists else { return false }
        return try documentStore().read { try Tracking.isApplied($0, id) }
    }

    package func partialMigrations() throws -> [MigrationProgress] {
        guard exists else { return [] }
        return try documentStore().read { try Tracking.allProgress($0) }
    }

    package func history() throws -> [HistoryEntry] {
        guard exists else { return [] }
        return try documentStore().read { try Tracking.historyEntries($0) }
    }

    package func prepare() throws { _ = try documentStore() }

    package func readDocuments<R>(_ body: (any SystemTransaction) throws -> R) throws -> R {
        try documentStore().read { try body($0) }
    }

    package func writeDocuments<R>(batched: Bool, _ body: (any SystemTransaction) throws -> R) throws -> R {
        try documentStore().write { try body($0) }
    }

    package func lockState() -> LockState { RunLock.inspect(database: location) }

    package func acquireLock(
        command: String, timeout: Double, onWait: ((LockOwner?) -> Void)? = nil
    ) throws(MigratorError) -> any RunLockSession {
        // The lock file lives in the database directory: create it first.
        do { _ = try documentStore() } catch {
            throw MigratorError(.lockFailed, "cannot open the database '\(location)': \(error)", underlying: error)
        }
        // Whoever can write the database directory can plant files the run
        // opens: it gets the same rule as the migrations folder.
        var st = stat()
        if !allowInsecureDirectory, stat(location, &st) == 0, let problem = PluginDirectory.ownershipProblem(st) {
            throw MigratorError(
                .insecurePermissions,
                "database directory '\(location)' \(problem); anyone who can write to it can tamper with the run")
        }
        // Whoever can write a directory above it can swap the whole database.
        if !allowInsecureDirectory, let problem = PluginDirectory.pathProblem(of: location) {
            throw MigratorError(
                .insecurePermissions,
                "database directory '\(location)' is inside \(problem); anyone who can write there can replace "
                    + "the database")
        }
        return try RunLock(database: location, command: command, timeout: timeout, onWait: onWait)
    }

    package func transaction<R>(_ body: (any StorageTransaction) throws -> R) throws -> R {
        try documentStore().write { txn in try body(StepTransaction(txn)) }
    }

    package func trial<R>(_ body: (any StorageTransaction) throws -> R) throws -> R {
        try documentStore().trial { txn in try body(StepTransaction(txn, trial: true)) }
    }
}

extension LMDBStorage: BackupCapable {
    package func backup(into directory: OpenDirectory, key: BackupKey?) throws -> BackupManifest {
        try Backups.take(try documentStore(), source: location, into: directory, key: key)
    }

    package func restore(
        from path: String, lockTimeout: Double, insecure: Bool, key: BackupKey?,
        events: @escaping @Sendable (RunEvent) -> Void
    ) throws -> CheckedBackup {
        try Backups.restore(path, into: self, lockTimeout: lockTimeout, insecure: insecure, key: key, events: events)
    }
}

extension LMDBStorage: LocalDirectoryStorage {
    package var directory: String { location }

    package func scratch(at path: String) -> any MigrationStorage { LMDBStorage(path: path, options: options) }
}

/// The driver of plain paths: an LMDB database in the directory.
struct LMDBDriver: StorageDriver {
    var name: String { "LMDB" }
    var schemes: [String] { [] }
    var reachesNetwork: Bool { false }

    func displayName(_ location: String) -> String { location }

    func storage(at location: String, options: StorageOptions) -> any DatabaseStorage {
        let lmdb = LMDBStorage(path: location, options: options.store)
        lmdb.allowInsecureDirectory = options.allowInsecureDirectory
        return lmdb
    }

    func storage(at location: String, workerOptions: [String: String]) -> any DatabaseStorage {
        var options = DocumentStore.Options()
        if let mb = workerOptions[LMDBStorage.maxMapOption].flatMap(Int.init), mb > 0 {
            options.maxMapSize = mb << 20
            options.initialMapSize = min(options.initialMapSize, options.maxMapSize)
        }
        return LMDBStorage(path: location, options: options)
    }
}
