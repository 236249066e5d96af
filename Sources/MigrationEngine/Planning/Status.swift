/// The state of every known migration: the value of `migrator status --json`
/// and of ``Migrator/status()``. The schema is stable: fields may be added,
/// never renamed or removed.
public struct MigrationStatus: Codable, Sendable, Equatable {
    /// One migration's line in the status.
    public struct Entry: Codable, Sendable, Equatable {
        /// The migration id.
        public var id: String
        /// Its human name.
        public var name: String
        public var description: String
        /// Its version text.
        public var version: String
        /// `applied`, `pending`, `failed` (pending; its last attempt failed)
        /// or `missing` (applied, but no plugin provides it).
        public var state: MigrationState
        /// When it was applied, if it is.
        public var appliedAt: String?
        /// The plugin file that provides it (or applied it), or `"in-process"`.
        public var plugin: String?
        /// The declared checksum: the available one, else the recorded one.
        public var checksum: String?
        /// The declared checksum differs from the one recorded when applied.
        public var changed: Bool
        /// For an in-process migration: the app that owns it. Encoded only
        /// when set, so plugin-only output is unchanged.
        public var app: String?
        /// The trusted key that signed its plugin, when signatures are
        /// required; encoded only when set.
        public var signedBy: String?
        /// For a checkpointing migration whose run stopped after a
        /// checkpoint: its resume token (the work up to it is committed;
        /// `apply` resumes from it). Encoded only when set.
        public var resumableFrom: String?

        /// An entry; see each property.
        public init(
            id: String, name: String, description: String, version: String, state: MigrationState,
            appliedAt: String?, plugin: String?, checksum: String?, changed: Bool, app: String? = nil,
            signedBy: String? = nil
        ) {
            self.id = id
            self.name = name
            self.description = description
            self.version = version
            self.state = state
            self.appliedAt = appliedAt
            self.plugin = plugin
            self.checksum = checksum
            self.changed = changed
            self.app = app
            self.signedBy = signedBy
        }

        enum CodingKeys: String, CodingKey {
            case id, name, description, version, state
            case appliedAt = "applied_at"
            case plugin, checksum, changed, app
            case signedBy = "signed_by"
            case resumableFrom = "resumable_from"
        }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try c.encode(name, forKey: .name)
            try c.encode(description, forKey: .description)
            try c.encode(version, forKey: .version)
            try c.encode(state, forKey: .state)
            try c.encode(appliedAt, forKey: .appliedAt)
            try c.encode(plugin, forKey: .plugin)
            try c.encode(checksum, forKey: .checksum)
            try c.encode(changed, forKey: .changed)
            try c.encodeIfPresent(app, forKey: .app)
            try c.encodeIfPresent(signedBy, forKey: .signedBy)
            try c.encodeIfPresent(resumableFrom, forKey: .resumableFrom)
        }
    }
    /// How many migrations are in each state.
    public struct Summary: Codable, Sendable, Equatable {
        /// Applied migrations.
        public var applied = 0
        /// Migrations `apply` would run.
        public var pending = 0
        /// Pending migrations whose last attempt failed.
        public var failed = 0
        /// Applied ids no plugin provides now.
        public var missing = 0
        /// A summary with these counts.
        public init(applied: Int = 0, pending: Int = 0, failed: Int = 0, missing: Int = 0) {
            self.applied = applied
            self.pending = pending
            self.failed = failed
            self.missing = missing
        }
    }
    /// A run that died mid-migration, and has not been retried since.
    public struct Interrupted: Codable, Sendable, Equatable {
        /// The migration the run was in.
        public var id: String
        /// Whether it was applying or rolling back.
        public var direction: Direction
        /// The interrupted runner's process id.
        public var pid: Int32
        /// When its step started.
        public var at: String
    }

    /// The database path.
    public var database: String
    /// Every known migration and applied record, in application order.
    public var migrations: [Entry]
    /// The counts per state.
    public var summary: Summary
    /// Set when the last run was killed during a migration.
    public var interrupted: Interrupted?
    /// Set while a run holds the lock: who, e.g. "apply (pid 42, …) since …".
    public var lockedBy: String?
    /// False when there is no database at the path yet (`apply` creates
    /// one); encoded only then, so the output for a database is unchanged.
    public var exists: Bool = true
    /// The bundle this database took last (`apply --from`), if any; encoded
    /// only then.
    public var bundle: BundleRecord?

    enum CodingKeys: String, CodingKey {
        case database, migrations, summary, interrupted, exists, bundle
        case lockedBy = "locked_by"
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(database, forKey: .database)
        try c.encode(migrations, forKey: .migrations)
        try c.encode(summary, forKey: .summary)
        try c.encode(interrupted, forKey: .interrupted)
        try c.encode(lockedBy, forKey: .lockedBy)
        if !exists { try c.encode(exists, forKey: .exists) }
        try c.encodeIfPresent(bundle, forKey: .bundle)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        database = try c.decode(String.self, forKey: .database)
        migrations = try c.decode([Entry].self, forKey: .migrations)
        summary = try c.decode(Summary.self, forKey: .summary)
        interrupted = try c.decodeIfPresent(Interrupted.self, forKey: .interrupted)
        lockedBy = try c.decodeIfPresent(String.self, forKey: .lockedBy)
        exists = try c.decodeIfPresent(Bool.self, forKey: .exists) ?? true
        bundle = try c.decodeIfPresent(BundleRecord.self, forKey: .bundle)
    }

    /// A status; see each property.
    public init(database: String, migrations: [Entry], summary: Summary) {
        self.database = database
        self.migrations = migrations
        self.summary = summary
    }

    /// True when nothing is pending, failed or missing, and no applied
    /// migration has changed since it was applied.
    public var isUpToDate: Bool {
        summary.pending == 0 && summary.failed == 0 && summary.missing == 0 && !migrations.contains(where: \.changed)
    }
}

/// The detailed health document for an app's health endpoint:
/// `{"status": "healthy" | "migrating" | "unhealthy", "migrations": {…}}`.
public struct HealthReport: Codable, Sendable, Equatable {
    /// The overall verdict; encodes as `healthy`, `migrating`, `unhealthy`.
    public enum Status: String, Codable, Sendable {
        /// Up to date, no plugin problem.
        case healthy
        /// A run holds the lock: a probe must not kill the process.
        case migrating
        /// Pending, failed, missing or changed migrations, a plugin
        /// problem, or an error reading the state.
        case unhealthy
    }
    /// The verdict.
    public var status: Status
    /// The status behind the verdict, when it could be read.
    public var migrations: MigrationStatus?
    /// Why the status could not be read, if it could not.
    public var error: String?
}

/// One step a run completed.
public struct CompletedStep: Sendable, Equatable {
    /// The migration id.
    public let id: String
    /// Applied (up) or rolled back (down).
    public let direction: Direction
    /// How long `up`/`down` and its bookkeeping took: the `duration_ms`
    /// recorded in `_migrations` and in the history.
    public let durationMS: Int64
}

/// What a run did.
public struct RunReport: Sendable, Equatable {
    /// The steps applied (or rolled back), in the order they ran.
    public var steps: [CompletedStep] = []
    /// Notices worth showing (an interrupted previous run, …).
    public var notices: [String] = []
    /// The backup taken before the first step (``Migrator/Options/backupDirectory``).
    public var backup: String?

    /// The ids of ``steps``.
    public var completed: [String] { steps.map(\.id) }
}

/// What ``Migrator/validate()`` found: everything `apply` checks, without
/// running anything.
public struct ValidationReport: Sendable {
    /// Why `apply` would refuse; empty when it would run.
    public var refusals: [Refusal]
    /// Worth a look, never fatal (sequence gaps).
    public var warnings: [String]
    /// Details for the curious (plugin files rebuilt since they applied).
    public var notes: [String]
    /// How many migrations were checked.
    public var checked: Int
    /// The ids `apply` would run, in order.
    public var pending: [String]
}

/// Progress of a run, for a CLI or an app's logs.
public enum RunEvent: Sendable {
    /// A run planned these steps (empty: nothing to do).
    case planned(direction: Direction, ids: [String])
    /// Waiting for the run lock, held by this owner.
    case lockWait(holder: String)
    /// A step started.
    case started(id: String, direction: Direction)
    /// A step committed, in this many milliseconds.
    case finished(id: String, direction: Direction, milliseconds: Int64)
    /// A step failed; nothing of it was committed.
    case failed(id: String, direction: Direction, message: String)
    /// Something worth telling the operator (an earlier interruption, a backup's path).
    case notice(String)
}

/// What ``Migrator/dryRun(_:)`` or ``Migrator/verify(_:)`` found. Nothing
/// of it was kept.
public struct TrialReport: Sendable, Equatable, Codable {
    /// Which trial it was.
    public enum Kind: String, Sendable, Codable {
        /// A dry run (``Migrator/dryRun(_:)``).
        case dryRun = "dry_run"
        /// A reversibility check (``Migrator/verify(_:)``).
        case verify
    }
    /// The database it ran against.
    public var database: String
    /// A dry run or a reversibility check.
    public var kind: Kind
    /// Up for apply and verify, down for a rollback's dry run.
    public var direction: Direction
    /// One per planned step, in order.
    public var results: [TrialResult]

    /// The first step whose code failed, if any: a real run would stop there.
    public var failure: TrialResult? { results.first { $0.verdict == .failed } }
    /// The migrations whose `down` does not undo their `up`.
    public var notReversible: [TrialResult] { results.filter { $0.verdict == .notReversible } }
}
