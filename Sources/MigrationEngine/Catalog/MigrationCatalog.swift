import FoundationEssentials
import MigrationKit

/// The migrations an engine knows, in application order: registered
/// in-process ones and those of a plugin directory, each with its source,
/// plus the problems found while gathering them. The role GRDB's
/// `DatabaseMigrator` plays; a value, so it can be built once and shared.
///
/// A catalog also knows what it *owns*: in-process migrations of its own
/// app, and plugin migrations if it loaded a plugin directory. Records the
/// database holds from another owner (another app's in-process migrations,
/// or plugin migrations in an app that loads no plugins) are neither
/// missing nor rolled back here.
public struct MigrationCatalog: Sendable {
    /// The app that owns this catalog's in-process migrations, recorded
    /// with each of them.
    public let appName: String
    /// Every known migration in application order, without duplicates.
    public private(set) var migrations: [AvailableMigration] = []
    /// Broken plugin files and conflicts (duplicate ids or sequence
    /// numbers). Any problem makes a run refuse.
    public private(set) var problems: [MigratorError] = []
    /// The loaded plugin directory, if any.
    public private(set) var plugins: PluginSet?
    private var registered: [AvailableMigration] = []
    private var byID: [String: Int] = [:]

    /// An empty catalog for the app named `appName` (default: the
    /// process's name).
    package init(appName: String = ProcessInfo.processInfo.processName) {
        self.appName = appName
    }

    /// Adds an in-process migration.
    /// - Throws: ``MigratorError`` `.invalidID` or `.duplicateID`.
    package mutating func register(_ migration: any Migration) throws(MigratorError) {
        if let problem = MigrationID.problem(with: migration.id) {
            throw MigratorError(
                .invalidID, "in-process migration '\(migration.id)': \(problem)", migrationID: migration.id)
        }
        if registered.contains(where: { $0.id == migration.id }) {
            throw MigratorError(
                .duplicateID, "in-process migration '\(migration.id)' is registered twice",
                migrationID: migration.id)
        }
        registered.append(AvailableMigration(migration, app: appName))
        rebuild()
    }

    /// Replaces the plugin migrations with those of `set`.
    package mutating func setPlugins(_ set: PluginSet) {
        plugins = set
        rebuild()
    }

    /// The known migration with this id.
    public func migration(_ id: String) -> AvailableMigration? {
        byID[id].map { migrations[$0] }
    }

    /// Whether this catalog is responsible for `record`: a record it does not
    /// own is never missing here, and is rolled back by its owner.
    public func owns(_ record: AppliedMigration) -> Bool {
        if byID[record.id] != nil { return true }
        switch record.source {
        case .plugin: return plugins != nil
        case .inProcess(let app): return !registered.isEmpty && (app == nil || app == appName)
        }
    }

    private mutating func rebuild() {
        let ordered = AvailableMigration.ordered((plugins?.migrations ?? []) + registered)
        migrations = ordered.migrations
        problems = (plugins?.problems ?? []) + ordered.problems
        byID = Dictionary(migrations.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { a, _ in a })
    }
}
