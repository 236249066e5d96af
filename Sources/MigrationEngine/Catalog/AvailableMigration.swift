import MigrationKit
import MigratorPluginABI

/// A migration the engine can run: from a plugin file or registered
/// in-process. Its descriptor fields are copied into Swift strings at load.
///
/// `@unchecked Sendable`: the plugin body holds C function pointers and the
/// plugin's `userdata`, which are immutable after load and live as long as
/// the process (plugins are never unloaded); everything else is a value.
public struct AvailableMigration: @unchecked Sendable {
    /// Where a migration comes from.
    public enum Origin: Sendable, Equatable {
        /// A plugin file in the migrations directory, with its SHA-256.
        case plugin(file: String, sha256: String)
        /// Registered with ``Migrator/register(_:)`` by the embedding app
        /// named `app`.
        case inProcess(app: String)

        /// The file name, or `"in-process"`, as recorded in `_migrations`.
        public var label: String {
            switch self {
            case .plugin(let file, _): return file
            case .inProcess: return "in-process"
            }
        }
        /// The plugin file's SHA-256, or nil for an in-process migration.
        public var sha256: String? {
            if case .plugin(_, let sha) = self { return sha }
            return nil
        }
        /// The app that registered an in-process migration.
        public var app: String? {
            if case .inProcess(let app) = self { return app }
            return nil
        }
    }

    enum Body {
        case plugin(up: migrator_step_fn, down: migrator_step_fn?, userdata: UnsafeMutableRawPointer?)
        case swift(any Migration)
        /// Read from the descriptor cache for reporting; its code is not loaded.
        case descriptorOnly
        /// Loaded in a worker process, which runs it (see `WorkerClient`).
        case worker
    }

    /// The id, `NNN_name`, which orders migrations by its number.
    public let id: String
    /// A human name.
    public let name: String
    public let description: String
    /// The migration's own version text.
    public let version: String
    /// The declared checksum: a change after it was applied is refused as an edit.
    public let checksum: String?
    /// The trusted key that signed its plugin file, when signatures are required.
    public package(set) var signedBy: String? = nil
    /// The bundle its plugin came from (`name #sequence`), when it was loaded from one.
    public package(set) var bundle: String? = nil
    /// Whether it has a `down`.
    public let isReversible: Bool
    /// The id's numeric prefix; the sort key.
    public let sequence: UInt64
    /// Where it comes from: a plugin file or the embedding app.
    public let origin: Origin
    let body: Body

    init(
        id: String, name: String, description: String, version: String, checksum: String?, isReversible: Bool,
        origin: Origin, body: Body
    ) {
        self.id = id
        self.name = name
        self.description = description
        self.version = version
        self.checksum = checksum
        self.isReversible = isReversible
        self.sequence = MigrationID.sequence(of: id) ?? 0
        self.origin = origin
        self.body = body
    }

    /// An in-process migration of the app named `app`; its id must be valid.
    init(_ migration: any Migration, app: String) {
        self.init(
            id: migration.id, name: migration.name, description: migration.description, version: migration.version,
            checksum: migration.checksum, isReversible: migration.isReversible, origin: .inProcess(app: app),
            body: .swift(migration))
    }

    /// Order of application: numeric prefix, then id.
    static func precedes(_ a: AvailableMigration, _ b: AvailableMigration) -> Bool {
        a.sequence != b.sequence
            ? a.sequence < b.sequence : Array(a.id.utf8).lexicographicallyPrecedes(Array(b.id.utf8))
    }

    /// Sorts `migrations` and reports duplicate ids and sequence numbers
    /// shared by different ids, naming both sources.
    static func ordered(
        _ migrations: [AvailableMigration]
    ) -> (migrations: [AvailableMigration], problems: [MigratorError]) {
        let sorted = migrations.sorted(by: precedes)
        var problems: [MigratorError] = []
        var byID: [String: AvailableMigration] = [:]
        var bySequence: [UInt64: AvailableMigration] = [:]
        var unique: [AvailableMigration] = []
        for m in sorted {
            if let first = byID[m.id] {
                problems.append(
                    MigratorError(
                        .duplicateID,
                        "migration id '\(m.id)' is defined twice: in \(first.origin.label) and in \(m.origin.label)",
                        file: m.origin.label, migrationID: m.id))
                continue
            }
            if let first = bySequence[m.sequence] {
                problems.append(
                    MigratorError(
                        .duplicateSequence,
                        "sequence number \(m.sequence) is used by both '\(first.id)' (\(first.origin.label)) "
                            + "and '\(m.id)' (\(m.origin.label)); renumber one of them",
                        file: m.origin.label, migrationID: m.id))
            }
            byID[m.id] = m
            bySequence[m.sequence] = m
            unique.append(m)
        }
        return (unique, problems)
    }
}
