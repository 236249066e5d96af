import DocumentStore
import MigrationKit

/// The storage seam: everything the runner needs from a database, and
/// nothing more. The tracking records and history, the run lock, one write
/// transaction per step, and the ``StepDatabase`` that migrations write
/// through. A ``StorageDriver`` makes one per location; the planner, catalog
/// and runner never see a backend's own types. What only some backends can
/// do is a capability protocol of its own (``BackupCapable``,
/// ``LocalDirectoryStorage``), never a method that throws "unsupported".
package protocol MigrationStorage: AnyObject {
    /// What to call the database in messages and in `status` (a path, a
    /// URI without its password).
    var location: String { get }
    /// Whether the database exists. Reads never create one.
    var exists: Bool { get }
    /// What a worker process needs, besides the location, to open this
    /// database the same way (LMDB's map size): opaque to the worker
    /// protocol, handed back to the driver's
    /// ``StorageDriver/storage(at:workerOptions:)``.
    var workerOptions: [String: String] { get }
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
}

/// Direct reads and writes of the documents, outside any migration: the
/// `migrator db` commands and `db copy`. Not part of the runner's seam.
package protocol DocumentAccess: AnyObject {
    /// Throws, saying what is missing, when there is no database here; a
    /// server that cannot be reached throws its own error (it is not "no
    /// database").
    func requireExisting() throws
    /// Reads the documents in one consistent snapshot; creates nothing.
    /// Callers check ``MigrationStorage/exists`` first.
    func readDocuments<R>(_ body: (any SystemTransaction) throws -> R) throws -> R
    /// Writes documents in one transaction, creating the database. With
    /// `batched`, a server backend may send writes in batches: an error may
    /// then surface at a later call or at commit, and fails the whole
    /// transaction.
    func writeDocuments<R>(batched: Bool, _ body: (any SystemTransaction) throws -> R) throws -> R
}

/// What every driver opens: the runner's seam and direct document access.
package typealias DatabaseStorage = MigrationStorage & DocumentAccess

/// A storage that can copy itself into a backup and be replaced by one
/// (LMDB). Others have their own tools (PostgreSQL's `pg_dump`).
package protocol BackupCapable: MigrationStorage {
    /// Writes a consistent copy with its manifest into the open, empty
    /// `directory`; with `key`, the manifest is signed.
    func backup(into directory: OpenDirectory, key: BackupKey?) throws -> BackupManifest
    /// Replaces the database with the checked backup at `path`.
    func restore(
        from path: String, lockTimeout: Double, insecure: Bool, key: BackupKey?,
        events: @escaping @Sendable (RunEvent) -> Void
    ) throws -> CheckedBackup
}

/// A storage whose database is a directory on this host (LMDB): the
/// loader's descriptor cache can live there, and a trial on a database that
/// does not exist yet runs against an empty scratch one instead.
package protocol LocalDirectoryStorage: MigrationStorage {
    /// The database directory.
    var directory: String { get }
    /// An empty database of the same kind and options at `path`.
    func scratch(at path: String) -> any MigrationStorage
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
    /// Whether the lock can be lost while its holder lives on (a server
    /// session's lock, when its connection drops): then a leftover record
    /// whose process is alive was not interrupted.
    var canBeLostByALiveHolder: Bool { get }
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
    var bundle: String? = nil
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
