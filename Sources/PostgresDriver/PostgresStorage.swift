import DocumentStore
import MigrationEngine
import MigrationKit
import PostgresStore

#if canImport(Glibc)
import Glibc
#endif

/// ``MigrationStorage`` over the PostgreSQL document store: the same
/// records (`_migrations`, `_migrations_history`, `_migrations_progress`)
/// with the same JSON shapes as on LMDB, one PostgreSQL transaction per
/// step, and a run lock (``PostgresRunLock``) that many app hosts can share.
package final class PostgresStorage: MigrationStorage, DocumentAccess {
    /// The URI with its password redacted: what messages and `status` show.
    package let location: String
    package var workerOptions: [String: String] { [:] }
    private let uri: String
    private let schema: String
    private var store: PostgresDocumentStore?

    /// Storage at `uri`, in the schema its `schema=` parameter names (default
    /// `migrator`); nothing is opened until it is used.
    package init(uri: String) {
        let (connect, schema) = ConnectionURI.splitSchema(uri)
        self.uri = connect
        self.schema = schema ?? "migrator"
        location = ConnectionURI.redacted(uri)
    }

    /// Whether the schema holds a store. Reads never create one; a server
    /// that cannot be reached counts as no database here, and the error
    /// comes from the operation that needs it.
    package var exists: Bool {
        store != nil || ((try? PostgresDocumentStore.exists(uri: uri, schema: schema)) ?? false)
    }

    package func requireExisting() throws {
        guard try store != nil || PostgresDocumentStore.exists(uri: uri, schema: schema) else {
            throw MigratorError(
                .directoryNotFound, "no migrator tables in schema '\(schema)' of \(location) (apply creates them)")
        }
    }

    private var prepared = false

    /// The store for writing: opened, and its schema created, on first use.
    package func documentStore() throws -> PostgresDocumentStore {
        let s = try openStore()
        if !prepared {
            try s.prepare()
            prepared = true
        }
        return s
    }

    /// The store, opened without creating anything.
    private func openStore() throws -> PostgresDocumentStore {
        if let store { return store }
        let s = try PostgresDocumentStore(uri: uri, schema: schema, create: false)
        store = s
        return s
    }

    private func read<R>(_ empty: R, _ body: (PostgresTransaction) throws -> R) throws -> R {
        // Once open, the store exists: no new connection to ask (a run asks
        // after every step). Reads create nothing, so a read-only role can
        // run `status`.
        if let store {
            do { return try store.read(body) } catch let e as PostgresError where e.code == .connectionLost {
                // A dropped connection says nothing of what committed: ask
                // again on a fresh one (the runner re-reads outcomes so).
                self.store = nil
                prepared = false
                return try openStore().read(body)
            }
        }
        guard try PostgresDocumentStore.exists(uri: uri, schema: schema) else { return empty }
        return try openStore().read(body)
    }

    package func appliedMigrations() throws -> [AppliedMigration] {
        try read([]) { try Tracking.appliedMigrations($0) }
    }
    package func isApplied(_ id: String) throws -> Bool { try read(false) { try Tracking.isApplied($0, id) } }
    package func partialMigrations() throws -> [MigrationProgress] { try read([]) { try Tracking.allProgress($0) } }
    package func history() throws -> [HistoryEntry] { try read([]) { try Tracking.historyEntries($0) } }

    package func prepare() throws { _ = try documentStore() }

    package func readDocuments<R>(_ body: (any SystemTransaction) throws -> R) throws -> R {
        try openStore().read { try body($0) }
    }

    package func writeDocuments<R>(batched: Bool, _ body: (any SystemTransaction) throws -> R) throws -> R {
        try documentStore().write { txn in
            txn.batchesWrites = batched
            return try body(txn)
        }
    }

    package func lockState() -> LockState { PostgresRunLock.inspect(uri: uri, schema: schema) }

    package func acquireLock(
        command: String, timeout: Double, onWait: ((LockOwner?) -> Void)?
    ) throws(MigratorError) -> any RunLockSession {
        do { _ = try documentStore() } catch {
            throw MigratorError(.lockFailed, "cannot open the database '\(location)': \(error)", underlying: error)
        }
        return try PostgresRunLock(uri: uri, schema: schema, command: command, timeout: timeout, onWait: onWait)
    }

    package func transaction<R>(_ body: (any StorageTransaction) throws -> R) throws -> R {
        try documentStore().write { txn in
            // Step transactions take turns even if a runner lost its session
            // lock (a dropped connection): the second one then re-checks the
            // record after the first committed, and finds the step done.
            try txn.holdTransactionLock(Self.stepLockName)
            // A step's writes go in batches; plugin-abi.md says errors may come later.
            txn.batchesWrites = true
            return try body(StepTransaction(txn))
        }
    }

    /// The transaction lock every step transaction holds (with the schema).
    static let stepLockName = "migrator step"

    package func trial<R>(_ body: (any StorageTransaction) throws -> R) throws -> R {
        try documentStore().trial { txn in
            txn.batchesWrites = true
            return try body(StepTransaction(txn, trial: true))
        }
    }
}

/// The run lock on PostgreSQL: a session-level advisory lock on a key
/// derived from the schema, held by a connection of its own for the run.
/// The server drops it when that session ends, however the runner dies, so
/// no lock outlives its holder. The owner record (who, and the step in
/// progress) is a row of `run_lock`, written in its own transaction, for
/// `status` and for the next run to report an interruption.
final class PostgresRunLock: OwnerRecordLock {
    /// A terminated session (a dropped connection) loses the lock while the
    /// runner lives on.
    var canBeLostByALiveHolder: Bool { true }
    private let session: Connection
    private let schema: String
    private let key: String
    var owner: LockOwner
    let leftover: LockOwner?
    private var released = false
    private var keepsRecord = false

    static func lockKey(_ schema: String) -> String { "migrator run " + schema }

    init(
        uri: String, schema: String, command: String, timeout: Double, onWait: ((LockOwner?) -> Void)?
    ) throws(MigratorError) {
        self.schema = schema
        key = Self.lockKey(schema)
        let name = ConnectionURI.redacted(uri)
        do { session = try Connection(uri: uri) } catch {
            throw MigratorError(
                .lockFailed, "cannot connect to '\(name)' for the run lock: \(error)", underlying: error)
        }
        let deadline = EngineClock.monotonic() + timeout
        var told = false
        do {
            while try session.execute("SELECT pg_try_advisory_lock(hashtext($1))", [key]).text(0, 0) != "t" {
                if !told, let onWait {
                    told = true
                    onWait(Self.record(session, schema))
                }
                if EngineClock.monotonic() >= deadline {
                    let holder = Self.record(session, schema)
                    throw MigratorError(
                        .lockTimeout,
                        "database '\(name)' is locked by \(holder?.summary ?? "another runner"); "
                            + "gave up after \(EngineClock.seconds(timeout))")
                }
                usleep(50_000)
            }
        } catch let e as MigratorError {
            throw e
        } catch {
            throw MigratorError(.lockFailed, "cannot take the run lock of '\(name)': \(error)", underlying: error)
        }
        leftover = Self.record(session, schema)
        // The owner record need not wait for its own flush: each step's
        // commit (synchronous, on the worker's connection) flushes the WAL
        // up to it, and names the step after it (`next`), so a server crash
        // can lose only a record whose step had not committed, and the next
        // run still names the interrupted step (Planner.interruptedStep).
        _ = try? session.run("SET synchronous_commit = off")
        owner = LockOwner(
            pid: getpid(), host: EngineClock.hostName, user: EngineClock.userName, command: command,
            startedAt: EngineClock.iso8601())
        write()
    }

    deinit { release() }

    func keepRecord() { keepsRecord = true }

    func release() {
        guard !released else { return }
        released = true
        if !keepsRecord { _ = try? session.execute("DELETE FROM \(schema).run_lock") }
        _ = try? session.execute("SELECT pg_advisory_unlock(hashtext($1))", [key])
    }

    /// Writes the owner record (autocommit: its own transaction).
    func write() {
        _ = try? session.execute(
            "INSERT INTO \(schema).run_lock (id, owner) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET owner = $1",
            [owner.json.serialized])
    }

    private static func record(_ c: Connection, _ schema: String) -> LockOwner? {
        guard let rows = try? c.execute("SELECT owner FROM \(schema).run_lock WHERE id = 1"),
            let text = rows.text(0, 0)
        else { return nil }
        return LockOwner(parsing: text)
    }

    /// The lock's state, read without keeping it.
    static func inspect(uri: String, schema: String) -> LockState {
        guard let c = try? Connection(uri: uri) else { return .free(leftover: nil) }
        let owner = record(c, schema)
        let got = try? c.execute("SELECT pg_try_advisory_lock(hashtext($1))", [lockKey(schema)]).text(0, 0)
        if got == "t" {
            _ = try? c.execute("SELECT pg_advisory_unlock(hashtext($1))", [lockKey(schema)])
            return .free(leftover: owner)
        }
        return .held(by: owner)
    }
}
