import MigrationKit
import MigratorPluginABI

/// The one version number of migrator: `--version`, records, packages.
public let runnerVersion = "0.4.0"
/// The plugin C ABI this host implements, `MAJOR.MINOR`.
public let pluginABIVersion = "\(MIGRATOR_ABI_MAJOR).\(MIGRATOR_ABI_MINOR)"

/// Which way a step goes. Encodes as `"up"` / `"down"`.
public enum Direction: String, Sendable, Codable {
    /// Applying (`up`) or rolling back (`down`).
    case up, down
}

/// What the engine knows about one migration. Encodes as the strings of
/// `status --json`: `applied`, `pending`, `failed`, `missing`.
public enum MigrationState: String, Sendable, Codable {
    /// Recorded in `_migrations`.
    case applied
    /// Known and not applied.
    case pending
    /// Not applied, and its last attempt failed.
    case failed
    /// Applied, but this catalog should provide it and does not.
    case missing
}

/// Where an applied migration came from, as recorded in `_migrations`.
public enum MigrationSource: Sendable, Equatable {
    /// A plugin file, by its name in the migrations directory.
    case plugin(file: String)
    /// Registered in-process by the app named `app` (`nil` for records
    /// written before the app name was recorded).
    case inProcess(app: String?)

    /// The `plugin` field of records and of `status --json`: the file name,
    /// or `"in-process"`.
    public var label: String {
        switch self {
        case .plugin(let file): return file
        case .inProcess: return "in-process"
        }
    }

    /// The app that owns an in-process migration.
    public var app: String? {
        if case .inProcess(let app) = self { return app }
        return nil
    }
}

/// One applied migration: a document in `_migrations` (`_id` = its id).
/// A checkpointing migration whose run stopped after a checkpoint: the work
/// up to `token` is committed; `apply` resumes from it, `rollback` runs `down`.
public struct MigrationProgress: Sendable, Equatable, Codable {
    /// The migration id.
    public var id: String
    /// The resume token of its last checkpoint.
    public var token: String
    /// How many checkpoints it has committed.
    public var checkpoints: Int
    /// When the last one was committed.
    public var at: String
}

/// A migration's record in `_migrations`: what was applied, when, by whom,
/// from which file, and how long it took.
public struct AppliedMigration: Sendable, Equatable {
    /// The migration id.
    public let id: String
    /// Its human name when it was applied.
    public let name: String
    public let description: String
    /// Its version text when it was applied.
    public let version: String
    /// When its step started.
    public let startedAt: String
    /// When its step committed.
    public let appliedAt: String
    /// The checksum the migration declared when it was applied.
    public let checksum: String?
    /// The plugin file, or the app that applied it in-process.
    public let source: MigrationSource
    /// The SHA-256 of the plugin file it was applied from.
    public let pluginSHA256: String?
    /// How long its step took, in milliseconds.
    public let durationMS: Int64
    /// `user@host (pid N)` of the run.
    public let appliedBy: String
    /// The migrator version that applied it.
    public let runnerVersion: String

    /// The plugin file name, or `"in-process"`.
    public var plugin: String { source.label }
    /// The id's numeric prefix.
    public var sequence: UInt64 { MigrationID.sequence(of: id) ?? 0 }
}

/// One attempt: a document in the append-only `_migrations_history`.
public struct HistoryEntry: Sendable, Equatable {
    /// What became of an attempt. Encodes as `applied`, `failed`,
    /// `rolled_back`, `interrupted`, `baselined` (recorded as applied without
    /// running: `migrator baseline`), `checksum_accepted` (`migrator
    /// repair`); an outcome written by a newer runner is kept as
    /// ``other(_:)`` with its text.
    public enum Outcome: Sendable, Hashable, CustomStringConvertible {
        /// The known outcomes (see the type).
        case applied, failed, rolledBack, interrupted, baselined, checksumAccepted
        /// An outcome written by a newer runner, kept as its text.
        case other(String)

        public init(rawValue: String) {
            switch rawValue {
            case "applied": self = .applied
            case "failed": self = .failed
            case "rolled_back": self = .rolledBack
            case "interrupted": self = .interrupted
            case "baselined": self = .baselined
            case "checksum_accepted": self = .checksumAccepted
            default: self = .other(rawValue)
            }
        }

        public var rawValue: String {
            switch self {
            case .applied: return "applied"
            case .failed: return "failed"
            case .rolledBack: return "rolled_back"
            case .interrupted: return "interrupted"
            case .baselined: return "baselined"
            case .checksumAccepted: return "checksum_accepted"
            case .other(let text): return text
            }
        }
        public var description: String { rawValue }
    }
    /// The entry's number, from 1, in order.
    public let sequence: Int64
    /// The migration id.
    public let migrationID: String
    /// What became of the attempt.
    public let outcome: Outcome
    /// Up or down.
    public let direction: Direction
    /// When the attempt started.
    public let at: String
    /// How long it took, when it ran.
    public let durationMS: Int64?
    /// Why it failed, in the migration's or the host's words.
    public let error: String?
    /// `user@host (pid N)` of the run.
    public let appliedBy: String
    /// The plugin file, or `in-process`.
    public let plugin: String?
    /// What an operator's action changed (`repair`: both checksums).
    public var detail: String? = nil
    /// The bundle the migration came from (`name #sequence`), if it did.
    public var bundle: String? = nil
}

/// A bundle this database took (`_migrations_bundles`): the highest sequence
/// of its name, and what was applied from that name's bundles.
public struct BundleRecord: Sendable, Equatable, Codable {
    /// The bundle's name.
    public let name: String
    /// The highest sequence of it taken; an older one is refused.
    public let sequence: Int
    /// The SHA-256 of that bundle file.
    public let digest: String
    /// The key that signed it.
    public let keyID: String
    /// When it was taken.
    public let takenAt: String
    /// Who took it (`user@host (pid N)`).
    public let takenBy: String
    /// The migrations applied from this name's bundles, in order.
    public let applied: [String]

    enum CodingKeys: String, CodingKey {
        case name, sequence, digest, applied
        case keyID = "key_id"
        case takenAt = "taken_at"
        case takenBy = "taken_by"
    }
}
