import MigrationKit
import MigratorPluginABI
import Synchronization
import _MigratorCShims

#if canImport(Glibc)
import Glibc
#endif

/// The executor seam: runs one step of a migration, atomically with its
/// bookkeeping. The runner decides what runs, records failures and reports;
/// an executor only makes one step happen. ``InProcessExecutor`` runs the
/// code in this process; `WorkerSession` sends the step to a worker
/// process that holds the plugin code. Neither changes the runner.
package protocol MigrationExecutor: AnyObject {
    /// Runs `m` in `direction` in one write transaction, together with its
    /// `_migrations` record and history entry; re-checks inside it that the
    /// step is still to do.
    ///
    /// `next` is the step the caller will run right after this one if it
    /// succeeds (nil: none, or another executor's). An executor may start it
    /// as soon as `m` commits; the caller then always asks for it next.
    /// - Returns: the duration recorded, or nil when another run already did it.
    /// - Throws: ``StepFailure`` when the migration failed or its code died
    ///   (nothing was committed); other errors (storage) as they are.
    func runStep(
        _ m: AvailableMigration, _ direction: Direction, next: AvailableMigration?, startedAt: String,
        observer: StepObserver
    ) throws
        -> Int64?

    /// Runs `steps` (each with its migration) in one write transaction that
    /// is rolled back at the end: a dry run, or reversibility checks.
    /// - Returns: one result per step, in order; a step that failed ends the
    ///   trial and the rest are `notRun`.
    func trial(_ steps: [(AvailableMigration, TrialStep)], observer: StepObserver) throws -> [TrialResult]

    /// Stops any code still running for the last step, so that the
    /// database shows its final outcome: called when the executor's answer
    /// and the database disagree.
    func settle()

    /// The operator's signal that arrived during the last step, which
    /// nevertheless completed (then cleared): the run must stop after it.
    func takeInterruption() -> Int32?
}

extension MigrationExecutor {
    /// In-process steps get the operator's signals directly: none is held.
    package func takeInterruption() -> Int32? { nil }
}

/// A step that failed: the migration's or the host's explanation, and the
/// migration's own error when it threw one.
package struct StepFailure: Error {
    package let message: String
    package let underlying: (any Error)?
    /// The operator's signal that ended the step, if one did.
    package let interruptedBy: Int32?
    package init(message: String, underlying: (any Error)? = nil, interruptedBy: Int32? = nil) {
        self.message = message
        self.underlying = underlying
        self.interruptedBy = interruptedBy
    }
}

/// Runs migrations in this process: in-process Swift migrations directly,
/// plugin migrations through the C host table.
package final class InProcessExecutor: MigrationExecutor {
    let storage: any MigrationStorage
    package init(storage: any MigrationStorage) { self.storage = storage }

    package func trial(_ steps: [(AvailableMigration, TrialStep)], observer: StepObserver) throws -> [TrialResult] {
        try TrialRunner.run(steps, storage: storage, observer: observer)
    }

    /// Nothing to stop: a step here has returned before its answer.
    package func settle() {}

    package func runStep(
        _ m: AvailableMigration, _ direction: Direction, next: AvailableMigration? = nil, startedAt: String,
        observer: StepObserver
    ) throws -> Int64? {
        try storage.transaction { txn in
            try Self.runStep(m, direction, in: txn, startedAt: startedAt, observer: observer)
        }
    }

    /// Runs `m` in `direction` inside `txn`, with its `_migrations` record
    /// and history entry; nil when the step is already done.
    static func runStep(
        _ m: AvailableMigration, _ direction: Direction, in txn: any StorageTransaction, startedAt: String,
        observer: StepObserver
    ) throws -> Int64? {
        let t0 = EngineClock.monotonic()
        // Re-check inside the transaction: the state it commits on. A run
        // stopped after a checkpoint left work to resume (up) or undo (down).
        let progress = try txn.progress(m.id)
        let wasApplied = try txn.isApplied(m.id)
        guard wasApplied == (direction == .down) || (direction == .down && progress != nil) else {
            return nil
        }
        let db = txn.database(for: m.id, observer: observer, resumeToken: direction == .up ? progress?.token : nil)
        defer { db.finish() }
        try Self.execute(m, direction, on: db)
        // One duration: recorded, reported and printed alike.
        let durationMS = Int64((EngineClock.monotonic() - t0) * 1000)
        if direction == .up {
            try txn.recordApplied(m, startedAt: startedAt, durationMS: durationMS)
        } else {
            // A partial (checkpointed) migration has no record to remove.
            if wasApplied { try txn.removeApplied(m.id) }
        }
        try txn.clearProgress(m.id)
        try txn.appendHistory(
            NewHistoryEntry(
                migrationID: m.id, outcome: direction == .up ? .applied : .rolledBack, direction: direction,
                durationMS: durationMS, error: nil, plugin: m.origin.label, bundle: m.bundle, at: startedAt))
        return durationMS
    }

    /// Runs `m`'s code in `direction` against `db`.
    /// - Throws: ``StepFailure`` with the migration's explanation.
    static func execute(_ migration: AvailableMigration, _ direction: Direction, on db: any StepDatabase) throws {
        switch migration.body {
        case .swift(let m):
            do {
                if direction == .up { try m.up(db) } else { try m.down(db) }
            } catch {
                throw StepFailure(message: "\(error)", underlying: error)
            }
        case .descriptorOnly, .worker:
            throw StepFailure(message: "migration '\(migration.id)' is not loaded in this process")
        case .plugin(let up, let down, let userdata):
            guard let fn = direction == .up ? up : down else {
                throw StepFailure(message: "migration '\(migration.id)' is irreversible (its plugin provides no down)")
            }
            try callPlugin(fn, userdata: userdata, direction: direction, db: db)
        }
    }

    /// Calls a plugin's step function with a fresh numeric handle for the
    /// step; every handle it was given dies when it returns.
    /// Installed before the first plugin call: a plugin may fork.
    private static let forkGuard: Void = migrator_install_fork_guard()
    /// Set in a worker whose plugin code runs without the system-call
    /// filter: every process it started is killed when its step returns.
    static let killsDescendants = Atomic(false)

    private static func callPlugin(
        _ fn: migrator_step_fn, userdata: UnsafeMutableRawPointer?, direction: Direction,
        db: any StepDatabase
    ) throws {
        _ = forkGuard
        let step = HostStep(db: db)
        let id = HostHandles.register(step)
        defer {
            // Close what the plugin left open; its handles die with the step.
            let left = HostHandles.table.withLock { t in
                t.steps[id] = nil
                return step.cursorIDs.compactMap { t.cursors.removeValue(forKey: $0) }
            }
            for c in left { c.cursor.close() }
            HostHandles.ThreadCache.current.forget(step)
        }
        let status = fn(HostAPI.tablePointer, HostHandles.handle(id), userdata)
        // A child the plugin made (fork, or raw clone) must not go on with
        // the run: it would commit the step a second time from a copy of our
        // transaction.
        if migrator_may_act_for(step.pid) == 0 { _exit(127) }
        // In a worker without the sandbox's filter: whatever plugin code
        // started dies before the step commits.
        if killsDescendants.load(ordering: .relaxed) { _ = migrator_kill_descendants() }
        guard status == MIGRATOR_OK else {
            let why = step.pluginError ?? (step.lastErrorText.isEmpty ? nil : step.lastErrorText)
            let code = DatabaseError.Status(rawValue: status)
            throw StepFailure(message: why ?? "\(direction) returned status \(status) (\(code)) without an explanation")
        }
    }
}
