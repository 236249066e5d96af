import DocumentStore
import MigrationKit
#if canImport(Glibc)
import Glibc
#endif

/// Applies, rolls back and reports migrations on one database: the engine
/// behind every `migrator` command, and the API for apps that migrate
/// themselves, in the style of GRDB's `DatabaseMigrator`.
///
/// ```swift
/// let migrator = Migrator(databasePath: "./app.db")
/// try migrator.register(CreateSessions())            // in-process, same protocol as plugins
/// try migrator.loadPlugins(from: "./migrations")     // compiled plugins
/// try migrator.migrateUp()                           // or migrateUp(to: "004_user_settings")
/// let status = try migrator.status()                 // == `migrator status --json`
/// ```
///
/// Each migration runs in its own write transaction together with its
/// `_migrations` record: it is applied entirely or not at all, even after
/// `kill -9`. Runs take an exclusive lock (see ``LockState``); two runners
/// started together apply each migration exactly once, in order. Reads
/// (`status`, `history`) never take the lock and are never blocked.
public final class Migrator {
    public struct Options: Sendable {
        /// Seconds to wait for another run to finish (default 60).
        public var lockTimeout: Double = 60
        /// Apply pending migrations that sort before applied ones.
        public var allowOutOfOrder = false
        /// Run although the database holds ids no plugin provides.
        public var allowMissing = false
        /// Where migrations' `log` and `progress` go.
        public var observer: StepObserver = .silent
        /// Run events (started, finished, failed, notices).
        public var events: @Sendable (RunEvent) -> Void = { _ in }
        /// The command recorded in the lock file, e.g. "apply".
        public var command = "embedded"
        public var storeOptions = DocumentStore.Options()
        public init() {}
    }

    public let databasePath: String
    public var options: Options
    private var registered: [AvailableMigration] = [] { didSet { known = nil } }
    private var plugins = PluginSet() { didSet { known = nil } }
    private var known: (migrations: [AvailableMigration], problems: [MigratorError])?
    private var openStore: DocumentStore?

    public init(databasePath: String, options: Options = Options()) {
        self.databasePath = databasePath
        self.options = options
    }

    // MARK: Defining migrations

    /// Registers an in-process migration. Its id must be valid and unique.
    public func register(_ migration: any Migration) throws(MigratorError) {
        if let problem = MigrationID.problem(with: migration.id) {
            throw MigratorError(.invalidID, "in-process migration '\(migration.id)': \(problem)", migrationID: migration.id)
        }
        if registered.contains(where: { $0.id == migration.id }) {
            throw MigratorError(.duplicateID, "in-process migration '\(migration.id)' is registered twice", migrationID: migration.id)
        }
        registered.append(AvailableMigration(migration))
    }

    /// Loads every plugin in `directory` (see ``PluginLoader``). Problems
    /// are kept and make ``migrateUp(to:)`` refuse; inspect them in the
    /// returned set.
    @discardableResult
    public func loadPlugins(from directory: String, options loader: PluginLoader.Options = .init()) throws(MigratorError) -> PluginSet {
        var loader = loader
        // The descriptor cache lives with the database, once it exists.
        if loader.cacheDirectory == nil && databaseExists { loader.cacheDirectory = databasePath }
        plugins = try PluginLoader.load(directory: directory, options: loader)
        return plugins
    }

    /// Every known migration in application order, and the problems that
    /// make a run refuse (broken plugins, duplicates).
    public var migrations: (migrations: [AvailableMigration], problems: [MigratorError]) {
        if let known { return known }
        let ordered = AvailableMigration.ordered(plugins.migrations + registered)
        let result = (ordered.migrations, plugins.problems + ordered.problems)
        known = result
        return result
    }

    // MARK: Reading state

    /// Whether there is anything at the database path. Reads never create a
    /// database; a path that exists is opened, so a file there is an error.
    private var databaseExists: Bool { access(databasePath, F_OK) == 0 }

    private func store() throws -> DocumentStore {
        if let openStore { return openStore }
        let s = try DocumentStore(path: databasePath, options: options.storeOptions)
        openStore = s
        return s
    }

    /// Applied migrations, in order.
    public func appliedMigrations() throws -> [AppliedMigration] {
        guard databaseExists else { return [] }
        return try store().read { try Tracking.appliedMigrations($0) }
    }

    /// The attempt log, oldest first.
    public func history() throws -> [HistoryEntry] {
        guard databaseExists else { return [] }
        return try store().read { try Tracking.historyEntries($0) }
    }

    /// Ids of known migrations not yet applied, in order.
    public func pendingMigrations() throws -> [String] {
        let applied = Set(try appliedMigrations().map(\.id))
        return migrations.migrations.map(\.id).filter { !applied.contains($0) }
    }

    /// True when the database holds applied ids that this app does not know:
    /// it was migrated by a newer version.
    public func hasBeenSuperseded() throws -> Bool {
        let known = Set(migrations.migrations.map(\.id))
        return try appliedMigrations().contains { !known.contains($0.id) }
    }

    /// The lock's state, without taking it.
    public var lockState: LockState { RunLock.inspect(database: databasePath) }

    /// Every known migration with its state; equal to `status --json`.
    public func status() throws -> MigrationStatus {
        let available = migrations.migrations
        let (applied, history): ([AppliedMigration], [HistoryEntry]) = databaseExists
            ? try store().read { (try Tracking.appliedMigrations($0), try Tracking.historyEntries($0)) }
            : ([], [])
        var lastUp: [String: HistoryEntry.Outcome] = [:]
        for h in history where h.direction == Direction.up.rawValue { lastUp[h.migrationID] = h.outcome }
        let appliedByID = Dictionary(applied.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let availableIDs = Set(available.map(\.id))
        var entries: [(UInt64, MigrationStatus.Entry)] = []
        var summary = MigrationStatus.Summary()
        for m in available {
            let a = appliedByID[m.id]
            let state: String
            if a != nil { state = "applied"; summary.applied += 1 }
            else if lastUp[m.id] == .failed { state = "failed"; summary.failed += 1 }
            else { state = "pending"; summary.pending += 1 }
            entries.append((m.sequence, .init(
                id: m.id, name: m.name, description: m.description, version: m.version, state: state,
                appliedAt: a?.appliedAt, plugin: m.origin.label, checksum: m.checksum ?? a?.checksum,
                changed: a.map { Self.checksumChanged(recorded: $0.checksum, declared: m.checksum) } ?? false)))
        }
        for a in applied where !availableIDs.contains(a.id) {
            summary.missing += 1
            entries.append((a.sequence, .init(
                id: a.id, name: a.name, description: a.description, version: a.version, state: "missing",
                appliedAt: a.appliedAt, plugin: a.plugin, checksum: a.checksum, changed: false)))
        }
        entries.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1.id < $1.1.id }
        var status = MigrationStatus(database: databasePath, migrations: entries.map(\.1), summary: summary)
        switch lockState {
        case .held(let owner):
            status.lockedBy = owner?.summary ?? "another process"
        case .free(let leftover):
            if let o = leftover, let id = o.currentID, Self.wasInterrupted(o, appliedIDs: Set(applied.map(\.id))) {
                status.interrupted = .init(id: id, direction: o.currentDirection ?? "up", pid: o.pid, at: o.currentStartedAt ?? o.startedAt)
            }
        }
        return status
    }

    /// The reference design's detailed health document.
    public func health() -> HealthReport {
        do {
            let s = try status()
            let state = s.lockedBy != nil ? "migrating" : (s.isUpToDate && migrations.problems.isEmpty ? "healthy" : "unhealthy")
            return HealthReport(status: state, migrations: s, error: nil)
        } catch {
            return HealthReport(status: "unhealthy", migrations: nil, error: "\(error)")
        }
    }

    static func checksumChanged(recorded: String?, declared: String?) -> Bool {
        guard let recorded, let declared else { return false }
        return recorded != declared
    }

    /// A leftover `current` marks an interruption unless that step committed
    /// just before the process died.
    static func wasInterrupted(_ o: LockOwner, appliedIDs: Set<String>) -> Bool {
        guard let id = o.currentID else { return false }
        return (o.currentDirection ?? "up") == Direction.up.rawValue ? !appliedIDs.contains(id) : appliedIDs.contains(id)
    }

    // MARK: Validation

    /// Everything `apply` checks before running anything, as refusals
    /// (each names the id and file), plus warnings about sequence gaps and
    /// plugin files rebuilt since they applied something. (Loader warnings
    /// are in the ``PluginSet`` that ``loadPlugins(from:options:)`` returned.)
    public func validate() throws -> (refusals: [MigratorError], warnings: [String]) {
        let (available, problems) = migrations
        let applied = try appliedMigrations()
        var refusals = problems
        var warnings: [String] = []
        refusals += Self.check(available: available, applied: applied, options: options)
        // Sequence gaps, and plugin files changed since they applied something.
        let numbers = Set(available.map(\.sequence) + applied.map(\.sequence)).sorted()
        for (a, b) in zip(numbers, numbers.dropFirst()) where b > a + 1 {
            warnings.append("warning: sequence gap: nothing numbered \(a + 1)\(b > a + 2 ? "–\(b - 1)" : "") between \(a) and \(b)")
        }
        let byID = Dictionary(available.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for a in applied {
            guard let m = byID[a.id], let now = m.origin.sha256, let then = a.pluginSHA256, now != then else { continue }
            warnings.append("warning: '\(a.id)' was applied from \(a.plugin) with SHA-256 \(then.prefix(12))…; \(m.origin.label) now has \(now.prefix(12))… (rebuilt or edited)")
        }
        return (refusals, warnings)
    }

    static func check(available: [AvailableMigration], applied: [AppliedMigration], options: Options) -> [MigratorError] {
        var refusals: [MigratorError] = []
        let appliedIDs = Set(applied.map(\.id))
        let byID = Dictionary(available.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for a in applied {
            guard let m = byID[a.id] else { continue }
            if checksumChanged(recorded: a.checksum, declared: m.checksum) {
                refusals.append(MigratorError(.checksumChanged,
                    "migration '\(a.id)' in \(m.origin.label) declares checksum '\(m.checksum ?? "")', but '\(a.checksum ?? "")' was recorded when it was applied (\(a.appliedAt)); an applied migration must not change: restore it, or write a new migration",
                    file: m.origin.label, migrationID: a.id))
            }
        }
        let missing = applied.filter { byID[$0.id] == nil }
        if !missing.isEmpty && !options.allowMissing {
            refusals.append(MigratorError(.missingMigrations,
                "the database is newer than these migrations: applied \(missing.map { "'\($0.id)' (from \($0.plugin))" }.joined(separator: ", ")) but no plugin provides \(missing.count == 1 ? "it" : "them") (pass --allow-missing to run anyway)",
                migrationID: missing.first?.id))
        }
        if let highest = applied.filter({ byID[$0.id] != nil || !options.allowMissing }).map(\.sequence).max(), !options.allowOutOfOrder {
            let late = available.filter { !appliedIDs.contains($0.id) && $0.sequence < highest }
            if !late.isEmpty {
                refusals.append(MigratorError(.outOfOrder,
                    "pending \(late.map { "'\($0.id)' (\($0.origin.label))" }.joined(separator: ", ")) sort\(late.count == 1 ? "s" : "") before the last applied migration (number \(highest)); was a branch merged? (pass --allow-out-of-order to apply \(late.count == 1 ? "it" : "them") anyway)",
                    file: late.first?.origin.label, migrationID: late.first?.id))
            }
        }
        return refusals
    }

    // MARK: Running

    /// Applies pending migrations in order, up to and including `target`.
    /// Refuses (throwing a refusal ``MigratorError``) before running anything
    /// when validation fails; stops at the first failing migration, keeping
    /// those before it.
    @discardableResult
    public func migrateUp(to target: String? = nil) throws -> RunReport {
        let (available, problems) = migrations
        if !problems.isEmpty { throw Self.combined(problems) }
        if let target, !available.contains(where: { $0.id == target }) {
            throw MigratorError(.unknownTarget, "target '\(target)' is not a known migration (see 'migrator list')", migrationID: target)
        }
        return try locked { store, lock, applied, report in
            let refusals = Self.check(available: available, applied: applied, options: options)
            if !refusals.isEmpty { throw Self.combined(refusals) }
            let appliedIDs = Set(applied.map(\.id))
            var pending = available.filter { !appliedIDs.contains($0.id) }
            if let target {
                guard let end = pending.firstIndex(where: { $0.id == target }) else {
                    throw MigratorError(.targetAlreadyApplied,
                        "target '\(target)' is already applied (the database is at '\(applied.last?.id ?? target)'); use 'rollback \(target)' to go back",
                        migrationID: target)
                }
                pending = Array(pending[...end])
            }
            for m in pending {
                try run(m, .up, store: store, lock: lock)
                report.completed.append(m.id)
            }
        }
    }

    /// The start of every run: take the lock, read what is applied, and
    /// deal with an interrupted previous run; then `body`.
    private func locked(_ body: (DocumentStore, RunLock, [AppliedMigration], inout RunReport) throws -> Void) throws -> RunReport {
        let store = try store()
        let lock = try RunLock(database: databasePath, command: options.command, timeout: options.lockTimeout)
        defer { lock.release() }
        var report = RunReport()
        let applied = try store.read { try Tracking.appliedMigrations($0) }
        try recordInterruption(lock, store: store, applied: applied, report: &report)
        try body(store, lock, applied, &report)
        return report
    }

    /// Rolls back every applied migration after `target`, newest first
    /// (`nil`: all of them). Refuses before running anything if one of
    /// them is irreversible or its plugin is missing.
    @discardableResult
    public func rollback(to target: String?) throws -> RunReport {
        try rollback { applied in
            guard let target else { return applied }
            guard let i = applied.firstIndex(where: { $0.id == target }) else {
                throw MigratorError(.targetNotApplied, "cannot roll back to '\(target)': it is not applied (applied: \(applied.isEmpty ? "none" : applied.map(\.id).joined(separator: ", ")))", migrationID: target)
            }
            return Array(applied[(i + 1)...])
        }
    }

    /// Rolls back the last `count` applied migrations, newest first.
    @discardableResult
    public func rollback(last count: Int) throws -> RunReport {
        try rollback { Array($0.suffix(max(0, count))) }
    }

    private func rollback(select: ([AppliedMigration]) throws -> [AppliedMigration]) throws -> RunReport {
        let (available, problems) = migrations
        if !problems.isEmpty { throw Self.combined(problems) }
        return try locked { store, lock, applied, report in
            let chosen = try select(applied).reversed()
            let byID = Dictionary(available.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            var refusals: [MigratorError] = []
            var steps: [AvailableMigration] = []
            for a in chosen {
                guard let m = byID[a.id] else {
                    refusals.append(MigratorError(.missingMigrations, "cannot roll back '\(a.id)': no plugin provides it (it was applied from \(a.plugin))", file: a.plugin, migrationID: a.id))
                    continue
                }
                guard m.isReversible else {
                    refusals.append(MigratorError(.irreversible, "cannot roll back '\(a.id)' (\(m.origin.label)): it is irreversible (no down)", file: m.origin.label, migrationID: a.id))
                    continue
                }
                steps.append(m)
            }
            if !refusals.isEmpty { throw Self.combined(refusals) }
            for m in steps {
                try run(m, .down, store: store, lock: lock)
                report.completed.append(m.id)
            }
        }
    }

    /// One migration in one write transaction, with its bookkeeping.
    private func run(_ m: AvailableMigration, _ direction: Direction, store: DocumentStore, lock: RunLock) throws {
        options.events(.started(id: m.id, direction: direction))
        lock.begin(m.id, direction)
        let startedAt = EngineClock.iso8601()
        let t0 = EngineClock.monotonic()
        var ms: Int64 { Int64((EngineClock.monotonic() - t0) * 1000) }
        do {
            let ran = try store.write { txn -> Bool in
                // Re-check inside the transaction: the state it commits on.
                guard try Tracking.isApplied(txn, m.id) == (direction == .down) else { return false }
                try m.perform(direction, in: txn, observer: options.observer)
                if direction == .up {
                    try Tracking.recordApplied(txn, m, startedAt: startedAt, durationMS: ms)
                } else {
                    try Tracking.removeApplied(txn, m.id)
                }
                try Tracking.appendHistory(txn, id: m.id, outcome: direction == .up ? .applied : .rolledBack, direction: direction,
                                           durationMS: ms, error: nil, plugin: m.origin.label, at: startedAt)
                return true
            }
            lock.end()
            if ran {
                options.events(.finished(id: m.id, direction: direction, milliseconds: ms))
            } else {
                options.events(.notice("'\(m.id)' was already \(direction == .up ? "applied" : "rolled back") by another run; skipped"))
            }
        } catch {
            let message = (error as? StepFailure)?.message ?? "\(error)"
            // The step's transaction is gone; record the attempt on its own.
            _ = try? store.write { txn in
                try Tracking.appendHistory(txn, id: m.id, outcome: .failed, direction: direction, durationMS: ms,
                                           error: message, plugin: m.origin.label, at: startedAt)
            }
            lock.end()
            options.events(.failed(id: m.id, direction: direction, message: message))
            throw MigratorError(.migrationFailed,
                "migration '\(m.id)' (\(m.origin.label)) failed during \(direction): \(message); its changes were rolled back\(direction == .up ? ", earlier migrations stay applied" : "")",
                file: m.origin.label, migrationID: m.id)
        }
    }

    /// If the previous run died mid-migration, say so and log it.
    private func recordInterruption(_ lock: RunLock, store: DocumentStore, applied: [AppliedMigration], report: inout RunReport) throws {
        guard let o = lock.leftover, let id = o.currentID else { return }
        if Self.wasInterrupted(o, appliedIDs: Set(applied.map(\.id))) {
            let direction = Direction(rawValue: o.currentDirection ?? "up") ?? .up
            try store.write { txn in
                try Tracking.appendHistory(txn, id: id, outcome: .interrupted, direction: direction, durationMS: nil,
                    error: "the run (\(o.summary)) stopped during this migration; nothing of it was committed",
                    plugin: nil, at: o.currentStartedAt ?? o.startedAt, by: "\(o.user)@\(o.host) (pid \(o.pid))")
            }
            let note = "the previous run (\(o.summary)) was interrupted during '\(id)' (\(direction)); nothing of it was committed"
            report.notices.append(note)
            options.events(.notice(note))
        }
        lock.clearLeftover()
    }

    /// One error for several refusals, keeping the first one's code.
    static func combined(_ errors: [MigratorError]) -> MigratorError {
        guard errors.count > 1, let first = errors.first else { return errors[0] }
        return MigratorError(first.code, errors.map(\.message).joined(separator: "\n"), file: first.file, migrationID: first.migrationID)
    }

    // MARK: Lock maintenance

    /// What `migrator unlock` does: explains the lock's state and clears a
    /// leftover owner record. Never breaks a lock a live process holds.
    public func unlock() throws -> String {
        switch lockState {
        case .held(let owner):
            throw MigratorError(.lockHeld, "the run lock of '\(databasePath)' is held by a live process: \(owner?.summary ?? "unknown owner"); not breaking it (wait for it, or stop that process)")
        case .free(let leftover):
            guard databaseExists else { return "'\(databasePath)' has no database; nothing to unlock" }
            guard let leftover else { return "the run lock of '\(databasePath)' is free; nothing to do" }
            let store = try store()
            let lock = try RunLock(database: databasePath, command: "unlock", timeout: 0)
            defer { lock.release() }
            var report = RunReport()
            let applied = try store.read { try Tracking.appliedMigrations($0) }
            try recordInterruption(lock, store: store, applied: applied, report: &report)
            return "cleared the record left by \(leftover.summary)" + (report.notices.isEmpty ? "" : "; " + report.notices.joined(separator: "; "))
                + ". The lock itself was already free: the kernel releases it when its holder dies."
        }
    }
}
