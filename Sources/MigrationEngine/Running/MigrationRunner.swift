#if canImport(Glibc)
import Glibc
#endif

/// Executes plans: takes the run lock, re-reads what is applied under it,
/// asks the ``Planner``, and runs each step through the executor seam, which
/// runs it in its own storage transaction together with its bookkeeping.
/// A failed step's attempt is recorded here, so that it is recorded even
/// when the executor (a worker process) died.
struct MigrationRunner {
    let storage: any MigrationStorage
    /// Runs in-process migrations (and plugins loaded in this process).
    let executor: any MigrationExecutor
    /// Runs the plugins a worker process loaded, if any.
    var worker: (any MigrationExecutor)? = nil
    let options: Migrator.Options

    /// The executor that holds `m`'s code.
    private func executor(for m: AvailableMigration) -> any MigrationExecutor {
        if case .worker = m.body, let worker { return worker }
        return executor
    }

    /// Runs `request` against `catalog`.
    /// - Throws: ``MigratorError``: a refusal (nothing ran), a failed step
    ///   (its changes rolled back, earlier steps kept), or a lock error.
    func run(_ request: MigrationRequest, catalog: MigrationCatalog) throws -> RunReport {
        try run([request], catalog: catalog)
    }

    /// Runs `requests` one after the other under one hold of the lock, each
    /// planned against what the ones before it left (`redo`).
    func run(_ requests: [MigrationRequest], catalog: MigrationCatalog) throws -> RunReport {
        let lock = try acquireLock()
        defer { lock.release() }
        var report = RunReport()
        for request in requests {
            // Read under the lock: the state the plan is made against.
            let applied = try storage.appliedMigrations()
            if let note = try recordInterruption(lock, applied: applied) { report.notices.append(note) }
            let plan = Planner.plan(request, catalog: catalog, applied: applied, options: options.plan)
            guard plan.isAllowed else { throw MigratorError(refusals: plan.refusals) }
            let steps = plan.direction == .down ? try withPartialWork(plan.steps, request, catalog) : plan.steps
            options.events(.planned(direction: plan.direction, ids: steps.map(\.id)))
            if let parent = options.backupDirectory, !steps.isEmpty, report.backup == nil {
                report.backup = try backUp(into: parent)
            }
            for (i, m) in steps.enumerated() {
                // The step after this one, if the same executor runs it: a worker
                // starts it as soon as this one commits, without a round trip.
                let next = steps.dropFirst(i + 1).first.flatMap {
                    executor(for: $0) === executor(for: m) ? $0 : nil
                }
                if let step = try run(m, plan.direction, next: next, lock: lock) { report.steps.append(step) }
                if let signal = executor(for: m).takeInterruption() {
                    try stop(after: m, plan.direction, signal: signal, next: next, remaining: steps.count - i - 1)
                }
            }
        }
        return report
    }

    /// A rollback first undoes the work a checkpointing migration committed
    /// before its run stopped: it counts as the newest applied migration.
    private func withPartialWork(
        _ steps: [AvailableMigration], _ request: MigrationRequest, _ catalog: MigrationCatalog
    ) throws -> [AvailableMigration] {
        let partial = try storage.partialMigrations().compactMap { p in catalog.migrations.first { $0.id == p.id } }
            .sorted { AvailableMigration.precedes($1, $0) }
        guard !partial.isEmpty else { return steps }
        if let m = partial.first(where: { !$0.isReversible }) {
            throw MigratorError(
                .irreversible,
                "cannot roll back '\(m.id)' (\(m.origin.label)): it stopped after a checkpoint and has no down",
                migrationID: m.id)
        }
        let all = partial + steps.filter { s in !partial.contains { $0.id == s.id } }
        if case .rollback(let target) = request.kind, case .last(let n) = target.kind { return Array(all.prefix(n)) }
        return all
    }

    /// A backup before the first step, under the run's lock, and pruning.
    private func backUp(into parent: String) throws -> String {
        guard let backups = storage as? any BackupCapable else {
            throw Backups.unsupported("--backup-dir copies", storage.location)
        }
        let folder = try Backups.openTrusted(
            parent, role: "backup directory", create: true, insecure: options.allowInsecureDatabase,
            events: options.events)
        let backup = try Backups.newBackup(in: folder)
        do { _ = try backups.backup(into: backup, key: options.backupKey) } catch {
            Backups.discard(backup, in: folder)
            throw error
        }
        let path = backup.path
        options.events(.notice("backup: \(path)"))
        for old in Backups.prune(folder, keep: max(1, options.keepBackups), taken: backup) {
            options.events(.notice("removed the old backup \(old) (keeping \(max(1, options.keepBackups)))"))
        }
        return path
    }

    func acquireLock() throws -> any RunLockSession {
        try storage.acquireLock(
            command: options.command, timeout: options.lockTimeout,
            onWait: { owner in
                options.events(.lockWait(holder: owner?.summary ?? "another process"))
            })
    }

    /// Plans `request` under the lock and runs it as a trial: every step in
    /// one write transaction that is rolled back, so nothing is kept. With
    /// `verify`, the steps it names (nil: every step) are checked for
    /// reversibility instead of just run.
    /// - Throws: refusals as for a real run; `.unsupported` when the steps
    ///   live in different executors (in-process and worker), which cannot
    ///   share a transaction.
    func trial(
        _ request: MigrationRequest, verify: Set<String>?, catalog: MigrationCatalog, dryRun: Bool
    )
        throws -> [TrialResult]
    {
        let lock = try acquireLock()
        defer { lock.release() }
        let applied = try storage.appliedMigrations()
        _ = try recordInterruption(lock, applied: applied)
        let plan = Planner.plan(request, catalog: catalog, applied: applied, options: options.plan)
        guard plan.isAllowed else { throw MigratorError(refusals: plan.refusals) }
        guard let first = plan.steps.first else { return [] }
        let executor = executor(for: first)
        guard plan.steps.allSatisfy({ self.executor(for: $0) === executor }) else {
            throw MigratorError(
                .unsupported,
                "a \(dryRun ? "dry run" : "reversibility check") cannot span in-process migrations and plugins "
                    + "loaded in a worker: they cannot share one transaction (load the plugins in-process)")
        }
        let steps = plan.steps.map { m in
            (m, TrialStep(id: m.id, direction: plan.direction, verify: !dryRun && (verify?.contains(m.id) ?? true)))
        }
        do {
            return try executor.trial(steps, observer: options.observer)
        } catch let failure as StepFailure {
            // The worker could not run the trial at all (a step's own failure is a result).
            throw MigratorError(
                .migrationFailed,
                "the \(dryRun ? "dry run" : "reversibility check") of \(steps.map(\.0.id).joined(separator: ", ")) "
                    + "failed: \(failure.message); nothing was kept",
                underlying: failure.underlying ?? failure)
        }
    }

    /// One migration in one write transaction, with its bookkeeping.
    /// Returns nil when another run already did the step. `next` is the
    /// step the caller runs after this one if it succeeds.
    private func run(
        _ m: AvailableMigration, _ direction: Direction, next: AvailableMigration?, lock: any RunLockSession
    ) throws -> CompletedStep? {
        options.events(.started(id: m.id, direction: direction))
        lock.begin(m.id, direction, next: next?.id)
        var unrecorded = false
        var succeeded = false
        // After a success with a next step, that step's own begin replaces
        // the record: it may already be running.
        defer { if !unrecorded && !(succeeded && next != nil) { lock.end() } }
        let startedAt = EngineClock.iso8601()
        let t0 = EngineClock.monotonic()
        let executor = executor(for: m)
        do {
            let ran = try executor.runStep(
                m, direction, next: next, startedAt: startedAt, observer: options.observer)
            // Plugin code shares the worker's channel and could answer for
            // it: a success counts once the record says so. If it does not,
            // the worker is stopped and the record, now final, decides.
            if try storage.isApplied(m.id) != (direction == .up) {
                executor.settle()
                guard try storage.isApplied(m.id) == (direction == .up) else {
                    throw StepFailure(
                        message: "its executor reported success, but the record in _migrations disagrees "
                            + "(plugin code may have answered for the worker); the worker was stopped")
                }
            }
            succeeded = true
            guard let durationMS = ran else {
                let done = direction == .up ? "applied" : "rolled back"
                options.events(.notice("'\(m.id)' was already \(done) by another run; skipped"))
                return nil
            }
            options.events(.finished(id: m.id, direction: direction, milliseconds: durationMS))
            return CompletedStep(id: m.id, direction: direction, durationMS: durationMS)
        } catch {
            let elapsed = Int64((EngineClock.monotonic() - t0) * 1000)
            return try outcome(
                of: m, direction, failedWith: error, startedAt: startedAt, elapsed: elapsed, lock: lock,
                unrecorded: &unrecorded)
        }
    }

    /// What a step whose executor failed really did, read from the record:
    /// it committed after all (returned), it did not (its attempt recorded,
    /// and thrown), or nobody can tell (`.outcomeUnknown`). `unrecorded`
    /// says whether the attempt could not be written.
    private func outcome(
        of m: AvailableMigration, _ direction: Direction, failedWith error: any Error, startedAt: String,
        elapsed: Int64, lock: any RunLockSession, unrecorded: inout Bool
    ) throws -> CompletedStep {
        let failure = error as? StepFailure
        let message = failure?.message ?? "\(error)"
        // A worker can die after its commit and before its answer, or
        // plugin code can answer for it, or the database connection can
        // drop after the commit: then the step is done, and saying
        // "failed" would be false. If the record cannot be read at all,
        // neither "committed" nor "rolled back" is known.
        let committed: Bool
        do { committed = try storage.isApplied(m.id) == (direction == .up) } catch let readError {
            // The lock's record keeps naming the step: the next run finds out.
            lock.keepRecord()
            options.events(.failed(id: m.id, direction: direction, message: message))
            throw MigratorError(
                .outcomeUnknown,
                "migration '\(m.id)' (\(m.origin.label)) failed during \(direction): \(message); whether it "
                    + "committed is unknown, because the database cannot be read now (\(readError)): check "
                    + "'migrator status' before running again",
                migrationID: m.id, underlying: readError)
        }
        if committed {
            options.events(.notice("'\(m.id)' committed, though its executor reported a failure (\(message))"))
            options.events(.finished(id: m.id, direction: direction, milliseconds: elapsed))
            return CompletedStep(id: m.id, direction: direction, durationMS: elapsed)
        }
        let interrupted = failure?.interruptedBy != nil
        // A checkpointing migration keeps what its checkpoints committed.
        let checkpoint = (try? storage.partialMigrations().first { $0.id == m.id }).flatMap { $0 }
        // The step's transaction is gone; record the attempt on its own. If
        // even that fails (a full disk), the lock file keeps naming the
        // step, and status and the next run report it as interrupted.
        unrecorded =
            (try? storage.transaction { txn in
                try txn.appendHistory(
                    NewHistoryEntry(
                        migrationID: m.id, outcome: interrupted ? .interrupted : .failed, direction: direction,
                        durationMS: elapsed,
                        error: message
                            + (checkpoint.map { "; the work up to checkpoint '\($0.token)' is kept" } ?? ""),
                        plugin: m.origin.label, bundle: m.bundle, at: startedAt))
            }) == nil
        if unrecorded { lock.keepRecord() }
        options.events(.failed(id: m.id, direction: direction, message: message))
        let kept = direction == .up ? ", earlier migrations stay applied" : ""
        let undone =
            checkpoint.map {
                "its changes since checkpoint '\($0.token)' were rolled back; the work up to it is kept "
                    + "(apply resumes from it, rollback runs down)"
            } ?? "its changes were rolled back"
        throw MigratorError(
            interrupted ? .interrupted : .migrationFailed,
            "migration '\(m.id)' (\(m.origin.label)) failed during \(direction): \(message); \(undone)\(kept)",
            file: m.origin.sha256 == nil ? nil : m.origin.label, migrationID: m.id,
            underlying: failure.map { $0.underlying ?? $0 } ?? error)
    }

    /// The operator's signal came during `m`, which completed anyway: the
    /// run stops here. The step sent ahead (`next`) was cancelled; should it
    /// have committed first, the record says so, and so does the report.
    private func stop(
        after m: AvailableMigration, _ direction: Direction, signal: Int32, next: AvailableMigration?,
        remaining: Int
    ) throws -> Never {
        var notRun = remaining
        if let next {
            switch Result(catching: { try storage.isApplied(next.id) == (direction == .up) }) {
            case .success(true):
                options.events(.notice("'\(next.id)' committed before the run could stop"))
                notRun -= 1
            case .success(false): break
            case .failure(let error):
                options.events(
                    .notice("whether '\(next.id)' committed before the run stopped is unknown (\(error))"))
                notRun -= 1
            }
        }
        let name = WorkerProcess.signalName(signal)
        let done = direction == .up ? "applied" : "rolled back"
        throw MigratorError(
            .interrupted,
            "interrupted by \(name) after '\(m.id)' was \(done) (it completed before it could stop); "
                + "\(notRun) more migration(s) not run",
            migrationID: m.id, underlying: StepFailure(message: "interrupted by \(name)", interruptedBy: signal))
    }

    /// If the previous run died mid-step, logs it in the history and
    /// returns a notice; then forgets the leftover record.
    func recordInterruption(_ lock: any RunLockSession, applied: [AppliedMigration]) throws -> String? {
        guard let o = lock.leftover else { return nil }
        defer { lock.clearLeftover() }
        guard let (id, direction) = Planner.interruptedStep(o, appliedIDs: Set(applied.map(\.id))) else { return nil }
        // On PostgreSQL a runner can lose its lock (its connection dropped)
        // and run on: one that is alive here was not interrupted. Its step
        // waits for ours, or ours for its (the step transaction lock).
        if lock.canBeLostByALiveHolder, o.host == EngineClock.hostName, o.pid != getpid(),
            kill(o.pid, 0) == 0 || errno == EPERM
        {
            let note =
                "the previous holder of the lock (\(o.summary)) is still running, though it lost the lock, "
                + "during '\(id)' (\(direction)); its steps and this run's take turns"
            options.events(.notice(note))
            return note
        }
        let kept =
            try storage.partialMigrations().first { $0.id == id }.map {
                "the work up to checkpoint '\($0.token)' is kept, and apply resumes from it"
            } ?? "nothing of it was committed"
        try storage.transaction { txn in
            try txn.appendHistory(
                NewHistoryEntry(
                    migrationID: id, outcome: .interrupted, direction: direction, durationMS: nil,
                    error: "the run (\(o.summary)) stopped during this migration; \(kept)",
                    plugin: nil, at: o.currentStartedAt ?? o.startedAt, by: "\(o.user)@\(o.host) (pid \(o.pid))"))
        }
        let note = "the previous run (\(o.summary)) was interrupted during '\(id)' (\(direction)); \(kept)"
        options.events(.notice(note))
        return note
    }
}
