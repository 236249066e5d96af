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
/// try migrator.rollback(.last(1))                    // .to(id), .last(n), .all
/// let status = try migrator.status()                 // == `migrator status --json`
/// ```
///
/// Each migration runs in its own write transaction together with its
/// `_migrations` record: it is applied entirely or not at all, even after
/// `kill -9`. Runs take an exclusive lock (see ``LockState``); two runners
/// started together apply each migration exactly once, in order. Reads
/// (`status`, `history`) never take the lock and are never blocked.
///
/// `Migrator` is a thin loop over three parts: a ``MigrationCatalog`` (what
/// is known), the `Planner` (what to do, or why not) and a runner that
/// executes plans through the storage and executor seams.
public final class Migrator {
    /// How runs behave.
    public struct Options: Sendable {
        /// Seconds to wait for another run to finish (default 60).
        public var lockTimeout: Double = 60
        /// Apply pending migrations that sort before applied ones.
        public var allowOutOfOrder = false
        /// Run although the database holds ids this catalog should provide
        /// and does not.
        public var allowMissing = false
        /// Where migrations' `log` and `progress` go.
        public var observer: StepObserver = .silent
        /// Run events (started, finished, failed, notices).
        public var events: @Sendable (RunEvent) -> Void = { _ in }
        /// The command recorded in the lock file, e.g. "apply".
        public var command = "embedded"
        /// Options of the LMDB store (map size limits).
        public var storeOptions = DocumentStore.Options()
        /// Where plugin code runs: in this process (default), or only in a
        /// worker process, so that a plugin that crashes, exits or hangs
        /// fails its step instead of the caller. In-process migrations
        /// always run in-process.
        public var pluginIsolation: PluginIsolation = .inProcess
        /// Seconds a plugin step may run in a worker before it is killed and
        /// fails (nil: no limit). Needs worker isolation.
        public var stepTimeout: Double?
        /// Before the first step of a run that has any, back the database up
        /// into a new `backup-<time>` directory here, keeping the newest
        /// ``keepBackups``.
        public var backupDirectory: String?
        /// How many backups ``backupDirectory`` keeps (the newest; at least 1).
        public var keepBackups = 5
        /// Signs every backup's manifest (a private key), and is required
        /// to have signed a backup before ``Migrator/restore(from:)`` puts
        /// it in place (a private or public key). Nil: backups are
        /// unsigned, and a restore warns that only its owner and mode vouch
        /// for it.
        public var backupKey: BackupKey?
        /// Run even if the database directory is writable by others, or
        /// owned by another user (the refusal is `insecure_permissions`).
        public var allowInsecureDatabase = false
        /// The defaults: in-process plugins, a 60 s lock timeout, no step timeout.
        public init() {}

        var plan: PlanOptions { PlanOptions(allowOutOfOrder: allowOutOfOrder, allowMissing: allowMissing) }
    }

    /// The database: an LMDB directory, or a `postgres://` URI, which may
    /// hold a password (show ``databaseName`` instead).
    public let databasePath: String
    /// The database as every report, event and message shows it: a URI's
    /// password replaced by `***`.
    public var databaseName: String { Storages.displayName(databasePath) }
    /// The options runs use; change them between runs.
    public var options: Options
    /// Every known migration, and the problems found gathering them.
    public private(set) var catalog: MigrationCatalog
    private var storageInstance: (any DatabaseStorage)?
    /// The worker holding the code of the plugins loaded last, if they were
    /// loaded in one. The catalog holds their descriptors only; each run
    /// reaches this through a session of its own.
    private var pluginWorker: WorkerClient?
    /// The bundle the catalog's plugins came from, recorded by a run
    /// (``loadBundle(from:trustedKeys:options:fetch:)``).
    public private(set) var bundle: VerifiedBundle?
    /// Whether this database already took ``bundle``'s very sequence: a run
    /// from it has nothing new, short of steps an earlier run did not finish.
    public private(set) var bundleAlreadyTaken = false

    /// A migrator for the database at `databasePath`. In-process migrations
    /// are recorded as owned by `appName` (default: the process's name).
    public init(databasePath: String, appName: String? = nil, options: Options = Options()) {
        self.databasePath = databasePath
        self.options = options
        catalog = appName.map(MigrationCatalog.init(appName:)) ?? MigrationCatalog()
    }

    /// Opened on first use, with the options in force then: PostgreSQL for
    /// a `postgres://` URI, else LMDB in the directory.
    private var storage: any DatabaseStorage {
        if let storageInstance { return storageInstance }
        let s = Storages.at(
            databasePath, options: options.storeOptions, allowInsecureDirectory: options.allowInsecureDatabase)
        storageInstance = s
        return s
    }

    // MARK: Defining migrations

    /// Registers an in-process migration.
    /// - Throws: ``MigratorError`` `.invalidID` or `.duplicateID`.
    public func register(_ migration: any Migration) throws(MigratorError) {
        try catalog.register(migration)
    }

    /// Loads every plugin in `directory` (see ``PluginLoader``): a folder,
    /// or a location whose URI scheme a registered source driver reads.
    /// Problems are kept in the catalog and make runs refuse; inspect them
    /// in the returned set.
    /// - Throws: ``MigratorError`` when the source itself is unusable
    ///   (`.directoryNotFound` for a scheme no source driver reads).
    @discardableResult
    public func loadPlugins(
        from directory: String, options loader: PluginLoader.Options = .init()
    ) throws(MigratorError) -> PluginSet {
        var loader = loader
        // Options that did not choose a worker take the migrator's isolation
        // whole (its output handler included).
        if loader.isolation.executable == nil { loader.isolation = options.pluginIsolation }
        if let limit = options.stepTimeout { loader.isolation.loadTimeout = limit }
        loader.isolation.allowsNetwork = Storages.reachesNetwork(databasePath)
        // The descriptor cache lives in a local database's directory, once it exists.
        if loader.cacheDirectory == nil, let local = storage as? any LocalDirectoryStorage, storage.exists {
            loader.cacheDirectory = local.directory
        }
        let source = try PluginSources.source(at: directory)
        let (set, worker) = try PluginLoader.loadHoldingCode(from: source, options: loader)
        catalog.setPlugins(set)
        pluginWorker = worker
        return set
    }

    // MARK: Reading state

    /// Applied migrations, in order.
    /// - Throws: the backend's `StorageFailure` (`StoreError`, `PostgresError`) when the database cannot be read.
    public func appliedMigrations() throws -> [AppliedMigration] { try storage.appliedMigrations() }

    /// The attempt log, oldest first.
    /// - Throws: the backend's `StorageFailure` (`StoreError`, `PostgresError`) when the database cannot be read.
    public func history() throws -> [HistoryEntry] { try storage.history() }

    /// Ids of known migrations not yet applied, in order.
    /// - Throws: the backend's `StorageFailure` (`StoreError`, `PostgresError`) when the database cannot be read.
    public func pendingMigrations() throws -> [String] {
        Planner.pendingMigrations(catalog, try appliedMigrations()).map(\.id)
    }

    /// True when the database holds applied ids this catalog should know
    /// and does not: it was migrated by a newer version.
    /// - Throws: the backend's `StorageFailure` (`StoreError`, `PostgresError`) when the database cannot be read.
    public func hasBeenSuperseded() throws -> Bool {
        !Planner.missingMigrations(catalog, try appliedMigrations()).isEmpty
    }

    /// The lock's state, without taking it.
    public var lockState: LockState { storage.lockState() }

    /// What `request` would do now, or why it would refuse, without
    /// taking the lock or running anything.
    /// - Throws: the backend's `StorageFailure` (`StoreError`, `PostgresError`) when the database cannot be read.
    public func plan(_ request: MigrationRequest) throws -> Plan {
        Planner.plan(request, catalog: catalog, applied: try appliedMigrations(), options: options.plan)
    }

    /// Every known migration with its state; equal to `status --json`.
    /// - Throws: the backend's `StorageFailure` (`StoreError`, `PostgresError`) when the database cannot be read.
    public func status() throws -> MigrationStatus {
        let applied = try storage.appliedMigrations()
        var entries = Planner.entries(catalog: catalog, applied: applied, history: try storage.history())
        let partial = Dictionary(try storage.partialMigrations().map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for i in entries.indices { entries[i].resumableFrom = partial[entries[i].id]?.token }
        var summary = MigrationStatus.Summary()
        for e in entries {
            switch e.state {
            case .applied: summary.applied += 1
            case .pending: summary.pending += 1
            case .failed: summary.failed += 1
            case .missing: summary.missing += 1
            }
        }
        var status = MigrationStatus(database: databaseName, migrations: entries, summary: summary)
        status.exists = storage.exists
        status.bundle = try bundles().max { $0.takenAt < $1.takenAt }
        switch lockState {
        case .held(let owner):
            status.lockedBy = owner?.summary ?? "another process"
        case .free(let leftover):
            if let o = leftover, let (id, direction) = Planner.interruptedStep(o, appliedIDs: Set(applied.map(\.id))) {
                status.interrupted = .init(
                    id: id, direction: direction, pid: o.pid, at: o.currentStartedAt ?? o.startedAt)
            }
        }
        return status
    }

    /// The detailed health document for an app's health endpoint: `migrating` while a
    /// run holds the lock, `healthy` when up to date with no plugin problem,
    /// else `unhealthy`.
    public func health() -> HealthReport {
        do {
            let s = try status()
            let verdict: HealthReport.Status =
                s.lockedBy != nil
                ? .migrating : (s.isUpToDate && catalog.problems.isEmpty ? .healthy : .unhealthy)
            return HealthReport(status: verdict, migrations: s, error: nil)
        } catch {
            return HealthReport(status: .unhealthy, migrations: nil, error: "\(error)")
        }
    }

    /// Everything `apply` checks before running anything, without running
    /// anything: the same plan `apply` would make.
    /// - Throws: the backend's `StorageFailure` (`StoreError`, `PostgresError`) when the database cannot be read.
    public func validate() throws -> ValidationReport {
        let applied = try appliedMigrations()
        let plan = Planner.plan(.applyAll, catalog: catalog, applied: applied, options: options.plan)
        let advice = Planner.advice(catalog: catalog, applied: applied)
        return ValidationReport(
            refusals: plan.refusals, warnings: advice.warnings, notes: advice.notes,
            checked: catalog.migrations.count, pending: plan.steps.map(\.id))
    }

    // MARK: Running

    private func runner(_ options: Options, on other: (any MigrationStorage)? = nil) -> MigrationRunner {
        let storage = other ?? storage
        // The raw location: a display name (a URI without its password) could not be opened.
        let database = WorkerDatabase(location: other?.location ?? databasePath, options: storage.workerOptions)
        let session = pluginWorker.map { WorkerSession($0, database: database, stepTimeout: options.stepTimeout) }
        return MigrationRunner(
            storage: storage, executor: InProcessExecutor(storage: storage), worker: session, options: options)
    }

    /// The runner for a trial. A trial keeps nothing, so on an LMDB path
    /// where no database exists yet it runs against an empty one in a
    /// private temporary directory, removed afterwards: the path stays free.
    private func trialRunner<R>(_ options: Options, _ body: (MigrationRunner) throws -> R) throws -> R {
        guard let local = storage as? any LocalDirectoryStorage, !storage.exists else {
            return try body(runner(options))
        }
        let base = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((base + "/migrator-trial.XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw MigratorError(
                .writeFailed, "cannot make a scratch database in '\(base)' (TMPDIR): \(errorText(errno))")
        }
        let scratch = String(cString: made)
        defer { Backups.removeFlatDirectory(scratch) }
        options.events(
            .notice("no database at \(storage.location) yet: the trial runs against an empty one, and creates nothing"))
        return try body(runner(options, on: local.scratch(at: scratch)))
    }

    /// Runs `request`: takes the lock, plans against what is applied then,
    /// and runs the steps in order, each in its own transaction.
    /// - Throws: ``MigratorError``: refused before anything ran (its
    ///   ``MigratorError/refusals``), a failed step (its changes rolled back,
    ///   earlier steps kept; the migration's own error in
    ///   ``MigratorError/underlying``), or a lock timeout.
    @discardableResult
    public func run(_ request: MigrationRequest) throws -> RunReport {
        let report: RunReport
        do { report = try runner(options).run(request, catalog: catalog) } catch {
            // Steps of it may have committed before the failure: an older one must not come after.
            if request.direction == .up { recordBundle(applied: []) }
            throw error
        }
        if request.direction == .up { recordBundle(applied: report.completed) }
        return report
    }

    /// Records that this database took ``bundle``, if a run used one: no
    /// older one is accepted after it. A failure to record is said, and
    /// changes nothing of the run's outcome.
    private func recordBundle(applied: [String]) {
        guard let bundle, storage.exists else { return }
        do {
            try storage.writeDocuments(batched: false) { txn in
                try Tracking.recordBundle(txn, bundle, applied: applied)
            }
        } catch {
            options.events(
                .notice(
                    "warning: could not record bundle \(bundle.manifest.name) #\(bundle.manifest.sequence): \(error)"))
        }
    }

    // MARK: Bundles

    /// Loads the plugins of the migration bundle at `path`, a file or an
    /// `https://` URL (fetched with `fetch`; one file of plugins and a signed
    /// manifest; `migrator bundle create` makes one),
    /// after checking, in this order and before any plugin byte is parsed:
    /// its signature against the `*.pub` keys in `trustedKeys`, its expiry,
    /// that its sequence is not below the highest this database took of its
    /// name, and every file's size and hash. Its plugins are then the
    /// catalog's, loaded as a folder's are; a run that completes records
    /// the bundle (``bundles()``).
    /// - Throws: ``MigratorError`` `.untrustedPlugin`, `.bundleExpired`,
    ///   `.bundleRolledBack`, `.invalidBundle`, naming the check.
    @discardableResult
    public func loadBundle(
        from path: String, trustedKeys: String, options loader: PluginLoader.Options = .init(),
        fetch: FetchOptions = .init()
    ) throws -> PluginSet {
        let keys = try PluginSignatures.trustedKeys(in: trustedKeys)
        var recorded: Int?
        // Fetched whole into memory over HTTPS (nothing written to disk), or read from the file.
        let bytes =
            try StorageDrivers.scheme(of: path) == nil ? Bundles.readBundle(path) : Fetch.get(path, options: fetch)
        let verified = try Bundles.open(bytes: bytes, from: path, trusted: keys) { name in
            let record = try self.bundles().first { $0.name == name }
            recorded = record?.sequence
            return record.map { ($0.sequence, $0.digest) }
        }
        bundleAlreadyTaken = recorded == verified.manifest.sequence
        var loader = loader
        if loader.isolation.executable == nil { loader.isolation = options.pluginIsolation }
        if let limit = options.stepTimeout { loader.isolation.loadTimeout = limit }
        loader.isolation.allowsNetwork = Storages.reachesNetwork(databasePath)
        let (set, worker) = try PluginLoader.loadHoldingCode(from: BundleSource(bundle: verified), options: loader)
        catalog.setPlugins(set)
        pluginWorker = worker
        bundle = verified
        return set
    }

    /// Writes the plugins of `directory` and a manifest signed with the
    /// private key at `key` into the new bundle file `out`. The plugins are
    /// checked and loaded as for a run (`options`: the loader's), so the
    /// manifest can list each file's migrations and ABI; a folder with any
    /// problem is refused.
    /// - Throws: the folder's first problem, `.invalidBundle`, key and write errors.
    @discardableResult
    public static func createBundle(
        from directory: String, name: String, sequence: Int, expiresIn: Double?, key: String, out: String,
        options: PluginLoader.Options = .init()
    ) throws -> BundleManifest {
        let (set, _) = try PluginLoader.loadHoldingCode(from: try PluginSources.source(at: directory), options: options)
        if let problem = set.problems.first { throw problem }
        guard !set.plugins.isEmpty else {
            throw MigratorError(.invalidBundle, "no plugins in '\(directory)' to bundle")
        }
        var files: [(name: String, bytes: [UInt8], migrations: [String], abi: String)] = []
        for p in set.plugins {
            // The checked bytes are not kept: read again, and they must be the same.
            guard let bytes = Bundles.readFile(p.path), SHA256Digest.hex(bytes) == p.sha256 else {
                throw MigratorError(.invalidBundle, "plugin '\(p.path)' changed while the bundle was made")
            }
            files.append((p.file, bytes, p.migrations.map(\.id), "1.\(p.abiMinor)"))
        }
        return try Bundles.create(
            files: files, name: name, sequence: sequence, expiresIn: expiresIn, keyPath: key, out: out)
    }

    /// The manifest of the bundle at `path`, and a verdict: with
    /// `trustedKeys`, whether its signature, expiry, sizes and hashes pass
    /// (`good: …` or `refused: …`); without, `unverified`.
    /// - Throws: `.invalidBundle` when it is not a bundle at all.
    public static func inspectBundle(
        _ path: String, trustedKeys: String?
    ) throws -> (manifest: BundleManifest, verdict: String) {
        // Read once: the verdict is about the very bytes the manifest shown came from.
        let bytes = try Bundles.readBundle(path)
        let (manifest, keyID) = try Bundles.peek(bytes: bytes, from: path)
        guard let trustedKeys else {
            return (manifest, "unverified (signed by key \(keyID); give --trusted-keys to check it)")
        }
        let keys = try PluginSignatures.trustedKeys(in: trustedKeys)
        do {
            let verified = try Bundles.open(bytes: bytes, from: path, trusted: keys) { _ in nil }
            return (
                verified.manifest,
                "good: signed by the trusted key '\(verified.signer)', every size and hash matches"
                    + (verified.manifest.expiresAt.map { ", valid until \($0)" } ?? ", no expiry")
            )
        } catch let e as MigratorError {
            return (manifest, "refused: \(e.message)")
        }
    }

    /// POSTs `report` (JSON) to the `https://` URL `url`, under the fetch
    /// rules (verified TLS, timeouts, retries for what a retry can fix).
    /// - Throws: the `fetch_*` errors of ``loadBundle(from:trustedKeys:options:fetch:)``.
    public static func postReport(_ report: [UInt8], to url: String, options: FetchOptions = .init()) throws {
        try Fetch.post(url, json: report, options: options)
    }

    /// The bundles this database took, by name, with the highest sequence of each.
    /// - Throws: the backend's `StorageFailure` when the database cannot be read.
    public func bundles() throws -> [BundleRecord] {
        guard storage.exists else { return [] }
        return try storage.readDocuments { try Tracking.bundleRecords($0) }
    }

    /// Applies pending migrations in order, up to and including `target`
    /// (`nil`: all of them). See ``run(_:)``.
    @discardableResult
    public func migrateUp(to target: String? = nil) throws -> RunReport {
        try run(target.map(MigrationRequest.apply(through:)) ?? .applyAll)
    }

    /// Rolls back applied migrations, newest first: `.to(id)` keeps `id`,
    /// `.last(n)`, `.all`. Refuses before running anything if one of them is
    /// irreversible, missing, or owned by another app. See ``run(_:)``.
    @discardableResult
    public func rollback(_ target: RollbackTarget) throws -> RunReport {
        try run(.rollback(target))
    }

    // MARK: Trials

    /// Runs what `request` would run, every step, in order, inside one write
    /// transaction that is rolled back at the end: the database keeps the
    /// same data, `_migrations` and history (only an earlier run's
    /// interruption, if one is pending, is recorded, as any run records it).
    /// A failing step ends it, as it ends a real run; the report says which
    /// and why, with the message a real run gives, and what each step
    /// changed per collection.
    /// - Throws: refusals, lock errors, or `.unsupported` when in-process
    ///   migrations and worker plugins would have to share the transaction.
    public func dryRun(_ request: MigrationRequest = .applyAll) throws -> TrialReport {
        var o = options
        o.command = "\(o.command) --dry-run"
        let results = try trialRunner(o) { try $0.trial(request, verify: nil, catalog: catalog, dryRun: true) }
        return TrialReport(database: databaseName, kind: .dryRun, direction: request.direction, results: results)
    }

    /// Checks that `down` undoes `up` for each pending migration (or each of
    /// `ids`, which must be pending), inside one write transaction that is
    /// rolled back: for each, the collections `up` touches are digested, then
    /// `up`, `down`, a comparison, and `up` again. Migrations before a named
    /// one run (`up`) first, as `apply` would run them.
    /// - Throws: `.unknownTarget` or `.targetAlreadyApplied` for a bad id;
    ///   refusals and lock errors as for ``dryRun(_:)``.
    public func verify(_ ids: [String] = []) throws -> TrialReport {
        var request = MigrationRequest.applyAll
        if !ids.isEmpty {
            let known = Dictionary(catalog.migrations.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            let applied = Set(try storage.appliedMigrations().map(\.id))
            for id in ids {
                guard known[id] != nil else {
                    throw MigratorError(.unknownTarget, "no migration '\(id)' to verify", migrationID: id)
                }
                guard !applied.contains(id) else {
                    throw MigratorError(
                        .targetAlreadyApplied,
                        "'\(id)' is already applied; verify checks pending migrations (roll it back first, or redo it)",
                        migrationID: id)
                }
            }
            let last = catalog.migrations.last { ids.contains($0.id) }
            if let last { request = .apply(through: last.id) }
        }
        var o = options
        o.command = "verify"
        let results = try trialRunner(o) {
            try $0.trial(request, verify: ids.isEmpty ? nil : Set(ids), catalog: catalog, dryRun: false)
        }
        return TrialReport(database: databaseName, kind: .verify, direction: .up, results: results)
    }

    /// Rolls back the last applied migration and applies it again, under one
    /// hold of the lock (goose's `redo`). Refused, with nothing run, when it
    /// is irreversible or owned by another app.
    @discardableResult
    public func redo() throws -> RunReport {
        guard let last = try storage.appliedMigrations().last else {
            throw MigratorError(.targetNotApplied, "nothing is applied to redo")
        }
        var o = options
        o.command = "redo"
        return try runner(o).run([.rollback(.last(1)), .apply(through: last.id)], catalog: catalog)
    }

    // MARK: Adopting and repairing

    /// Records every migration up to and including `id` as applied without
    /// running it (history: `baselined`): for a database that already has
    /// those changes. Refused when migrations were already applied, unless
    /// `force`, which records the rest. Returns what it recorded.
    @discardableResult
    public func baseline(through id: String, force: Bool = false) throws -> [String] {
        var o = options
        o.command = "baseline"
        return try runner(o).baseline(through: id, force: force, catalog: catalog).map(\.id)
    }

    /// Accepts an applied migration's current declared checksum after an
    /// intended edit (history: `checksum_accepted`, with both checksums), so
    /// that runs stop refusing it. Returns the old and new checksums, or nil
    /// when they already agree.
    @discardableResult
    public func repair(_ id: String) throws -> (old: String?, new: String?)? {
        var o = options
        o.command = "repair"
        return try runner(o).repair(id, catalog: catalog)
    }

    // MARK: Pins and signatures

    /// Writes `directory/migrations.lock`, pinning every plugin there by its
    /// SHA-256 (files are checked as for loading, never loaded). Returns the pins.
    @discardableResult
    public static func pin(directory: String, insecure: Bool = false) throws -> [(name: String, sha256: String)] {
        try PinFile.write(directory, insecure: insecure)
    }

    /// Writes a new Ed25519 key pair, `base.key` (0600) and `base.pub`;
    /// returns the key id that signatures name.
    public static func generateSigningKey(at base: String) throws -> String {
        try PluginSignatures.writeKeyPair(base)
    }

    /// Signs plugin files with the private key at `key`, writing `FILE.sig`
    /// beside each (over the file's bytes and its name).
    @discardableResult
    public static func sign(_ files: [String], key: String) throws -> [(file: String, sha256: String)] {
        try PluginSignatures.sign(files: files, keyPath: key)
    }

    // MARK: Backups

    /// Writes a consistent copy of the database (compacted, taken while
    /// readers and writers carry on) into `directory`, which must be new or
    /// empty (created 0700; files 0600), with a `manifest.json` made from the
    /// copy: time, source, applied migrations, content digests and the
    /// SHA-256 of the copied file. With ``Options/backupKey``, the manifest
    /// is signed (`manifest.json.sig`).
    /// - Throws: `.backupFailed` (nothing is left behind).
    @discardableResult
    public func backup(to directory: String) throws -> BackupManifest {
        guard storage.exists else {
            throw MigratorError(.backupFailed, "no database at \(storage.location) to back up")
        }
        guard let backups = storage as? any BackupCapable else {
            throw Backups.unsupported("backup copies", storage.location)
        }
        return try Backups.into(directory) { try backups.backup(into: $0, key: options.backupKey) }
    }

    /// Replaces the database with the backup in `directory`: checks its
    /// manifest and digest, holds the run lock, copies it into a sibling
    /// directory, checks that copy, swaps it into place atomically, checks
    /// it there, and only then removes the previous database. If a check
    /// fails, the previous database stays (or is put back). With
    /// ``Options/backupKey``, only a backup it signed is restored; without,
    /// an unsigned or unchecked backup is restored with a warning event.
    /// - Throws: `.backupInvalid` (nothing changed), lock errors, `.restoreFailed`.
    @discardableResult
    public func restore(from directory: String) throws -> CheckedBackup {
        guard let backups = storage as? any BackupCapable else {
            throw Backups.unsupported("restore replaces", storage.location)
        }
        let checked = try backups.restore(
            from: directory, lockTimeout: options.lockTimeout, insecure: options.allowInsecureDatabase,
            key: options.backupKey, events: options.events)
        if let warning = checked.signature.warning { options.events(.notice("warning: '\(directory)' \(warning)")) }
        return checked
    }

    /// The backup in `directory`, checked: who can write it (unless
    /// `insecure`), its signature (required when `key` is given), its
    /// manifest, and whether its contents still match the manifest.
    /// - Throws: `.insecurePermissions` when others could write it;
    ///   `.backupInvalid` naming what is wrong.
    public static func checkBackup(
        _ directory: String, insecure: Bool = false, key: BackupKey? = nil
    ) throws -> CheckedBackup {
        try Backups.check(directory, insecure: insecure, key: key)
    }

    // MARK: Lock maintenance

    /// What `migrator unlock` does: explains the lock's state and clears a
    /// leftover owner record. Never breaks a lock a live process holds.
    /// - Throws: ``MigratorError`` `.lockHeld` when a live process holds it.
    public func unlock() throws -> String {
        switch lockState {
        case .held(let owner):
            throw MigratorError(
                .lockHeld,
                "the run lock of '\(storage.location)' is held by a live process: "
                    + "\(owner?.summary ?? "unknown owner"); not breaking it (wait for it, or stop that process)")
        case .free(let leftover):
            guard storage.exists else { return "'\(storage.location)' has no database; nothing to unlock" }
            guard let leftover else { return "the run lock of '\(storage.location)' is free; nothing to do" }
            var unlockOptions = options
            unlockOptions.command = "unlock"
            unlockOptions.lockTimeout = 0
            let lock = try storage.acquireLock(command: "unlock", timeout: 0, onWait: nil)
            defer { lock.release() }
            let note = try runner(unlockOptions).recordInterruption(lock, applied: try appliedMigrations())
            return "cleared the record left by \(leftover.summary)" + (note.map { "; " + $0 } ?? "")
                + ". The lock itself was already free: the kernel releases it when its holder dies."
        }
    }
}
