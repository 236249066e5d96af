import DocumentStore
import MigrationKit
import PostgresStore

/// The storage seam: everything the runner needs from a database, and
/// nothing more. The tracking records and history, the run lock, one write
/// transaction per step, and the ``StepDatabase`` that migrations write
/// through. ``LMDBStorage`` and ``PostgresStorage`` implement it; the
/// planner, catalog and runner never see a backend's own types.
package protocol MigrationStorage: AnyObject {
    /// What to call the database in messages and in `status` (a path, a URI).
    var location: String { get }
    /// Whether the database exists. Reads never create one.
    var exists: Bool { get }
    /// What a worker process needs, besides the location, to open this
    /// database the same way (LMDB's map size): opaque to the worker
    /// protocol, read back by ``Storages/at(_:workerOptions:)``.
    var workerOptions: [String: String] { get }
    /// Whether the database is a server's, reached over the network: then a
    /// worker running its steps may open sockets.
    var reachesNetwork: Bool { get }
    /// Opens the database, creating it if it does not exist.
    func prepare() throws
    /// Applied migrations, in application order.
    func appliedMigrations() throws -> [AppliedMigration]
    /// Whether `id` is recorded as applied, as last committed.
    func isApplied(_ id: String) throws -> Bool
    /// Every attempt, oldest first.
    func history() throws -> [HistoryEntry]
    /// Checkpointing migrations whose run stopped after a checkpoint.
    func partialMigrations() throws -> [MigrationProgress]
    /// The run lock's state, without taking it.
    func lockState() -> LockState
    /// Takes the exclusive run lock, waiting up to `timeout` seconds; tells
    /// `onWait` who holds it if it must wait.
    /// - Throws: ``MigratorError`` `.lockTimeout` or `.lockFailed`.
    func acquireLock(
        command: String, timeout: Double, onWait: ((LockOwner?) -> Void)?
    ) throws(MigratorError)
        -> any RunLockSession
    /// Runs `body` in one write transaction: commits when it returns,
    /// aborts when it throws. The transaction stays on the calling thread.
    func transaction<R>(_ body: (any StorageTransaction) throws -> R) throws -> R
    /// Runs `body` in one write transaction that is always rolled back: dry
    /// runs and reversibility checks. The transaction stays on the calling thread.
    func trial<R>(_ body: (any StorageTransaction) throws -> R) throws -> R
    /// Writes a consistent copy with its manifest into the open, empty `directory`.
    func backup(into directory: OpenDirectory, key: BackupKey?) throws -> BackupManifest
    /// Reads the documents directly (`migrator db …`) in one consistent
    /// snapshot; creates nothing. Callers check ``exists`` first.
    func readDocuments<R>(_ body: (any SystemTransaction) throws -> R) throws -> R
    /// Writes documents directly in one transaction, creating the database.
    /// With `batched`, PostgreSQL sends writes in batches: an error may then
    /// surface at a later call or at commit, and fails the whole transaction.
    func writeDocuments<R>(batched: Bool, _ body: (any SystemTransaction) throws -> R) throws -> R
}

/// Picks the backend for a database location.
package enum Storages {
    /// PostgreSQL for a `postgres://` (or `postgresql://`) URI, else LMDB in
    /// the directory at `location`.
    package static func at(
        _ location: String, options: DocumentStore.Options = .init(), allowInsecureDirectory: Bool = false
    ) -> any MigrationStorage {
        if ConnectionURI.isPostgres(location) { return PostgresStorage(uri: location) }
        let lmdb = LMDBStorage(path: location, options: options)
        lmdb.allowInsecureDirectory = allowInsecureDirectory
        return lmdb
    }

    /// The storage a worker opens at `location`, with the options the
    /// parent's storage gave (``MigrationStorage/workerOptions``).
    package static func at(_ location: String, workerOptions: [String: String]) -> any MigrationStorage {
        var options = DocumentStore.Options()
        if let mb = workerOptions[LMDBStorage.maxMapOption].flatMap(Int.init), mb > 0 {
            options.maxMapSize = mb << 20
            options.initialMapSize = min(options.initialMapSize, options.maxMapSize)
        }
        return at(location, options: options)
    }
}

/// A held run lock. It also records the step in progress, so that a run
/// killed mid-step is reported as interrupted by the next one.
package protocol RunLockSession: AnyObject {
    /// The record a previous holder left behind: it did not finish cleanly.
    var leftover: LockOwner? { get }
    /// Records that `id` is now running in `direction`, and `next` (in the
    /// same direction) queued to start as soon as it commits, if any.
    func begin(_ id: String, _ direction: Direction, next: String?)
    /// Records that no step is running.
    func end()
    /// Forgets ``leftover`` once it has been dealt with.
    func clearLeftover()
    /// Leaves the record of the step in progress in place at release, for
    /// the next run to report (when its failure could not be recorded).
    func keepRecord()
    /// Clears the owner record and drops the lock.
    func release()
}

/// One write transaction of a ``MigrationStorage``: the step's own changes
/// and its bookkeeping commit together or not at all.
package protocol StorageTransaction: AnyObject {
    func isApplied(_ id: String) throws -> Bool
    func recordApplied(_ m: AvailableMigration, startedAt: String, durationMS: Int64) throws
    func removeApplied(_ id: String) throws
    /// The checkpoint `id` left, if a run of it stopped after one.
    func progress(_ id: String) throws -> MigrationProgress?
    /// Forgets `id`'s checkpoint (it completed, or was rolled back).
    func clearProgress(_ id: String) throws
    /// Sets an applied migration's recorded checksum (`repair`).
    func acceptChecksum(_ id: String, _ checksum: String?) throws
    func appendHistory(_ entry: NewHistoryEntry) throws
    /// The ``Database`` a migration writes through inside this transaction,
    /// resuming from `resumeToken` (the last checkpoint of an interrupted run).
    func database(for migrationID: String, observer: StepObserver, resumeToken: String?) -> any StepDatabase
    /// Follows what migration code changes from now on (nil: stop).
    func track(_ tracker: ChangeTracker?)
    /// The touched collections that differ from before `tracker` first saw them change.
    func differences(since tracker: ChangeTracker) throws -> [ContentDifference]
}

/// A history entry to append; the storage numbers it.
package struct NewHistoryEntry: Sendable {
    var migrationID: String
    var outcome: HistoryEntry.Outcome
    var direction: Direction
    var durationMS: Int64?
    var error: String?
    var plugin: String?
    var detail: String? = nil
    var at: String = EngineClock.iso8601()
    var by: String = EngineClock.actor
}

/// A ``Database`` for one step, with the raw entry points the C host table
/// calls (JSON as bytes, no `String` copies). Ends with ``finish()``.
package protocol StepDatabase: Database {
    /// Inserts a document; returns its `_id` (generated when absent), or
    /// `.null` when `returningID` is false.
    @discardableResult
    func insert(
        jsonBytes: UnsafeRawBufferPointer, into collection: String, returningID: Bool
    ) throws(DatabaseError)
        -> JSON
    /// The stored JSON of the document whose `_id` is `id` (JSON text), valid
    /// until the next write in the step; nil when there is none.
    func getRaw(_ collection: String, id: UnsafeRawBufferPointer) throws(DatabaseError) -> UnsafeRawBufferPointer?
    func openCursor(_ collection: String, filter: UnsafeRawBufferPointer?) throws(DatabaseError) -> any StepCursor
    func updateRaw(
        _ collection: String, filter: UnsafeRawBufferPointer?, update: UnsafeRawBufferPointer
    ) throws(DatabaseError) -> UInt64
    func removeRaw(_ collection: String, filter: UnsafeRawBufferPointer?) throws(DatabaseError) -> UInt64
    func countRaw(_ collection: String, filter: UnsafeRawBufferPointer?) throws(DatabaseError) -> UInt64
    /// Ends the step: closes every cursor it opened; later calls fail.
    func finish()
}

/// A cursor of a ``StepDatabase``.
package protocol StepCursor: AnyObject {
    /// The next document's JSON, valid until the next call on this cursor
    /// or any write in the step; `nil` at the end.
    func nextRaw() throws(DatabaseError) -> UnsafeRawBufferPointer?
    /// Replaces the document `nextRaw` returned last (ABI 1.1 `cursor_replace`).
    func replaceCurrent(json: UnsafeRawBufferPointer) throws(DatabaseError)
    /// Deletes the document `nextRaw` returned last (ABI 1.1 `cursor_delete`).
    func deleteCurrent() throws(DatabaseError)
    func close()
}
