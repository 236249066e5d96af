import DocumentStore
import Synchronization

/// How a storage is opened: every backend's options, each driver reading
/// what concerns it.
package struct StorageOptions: Sendable {
    /// The LMDB store's options (map size limits).
    package var store = DocumentStore.Options()
    /// Run even if others could write the database directory (LMDB).
    package var allowInsecureDirectory = false

    package init(store: DocumentStore.Options = .init(), allowInsecureDirectory: Bool = false) {
        self.store = store
        self.allowInsecureDirectory = allowInsecureDirectory
    }
}

/// A storage backend (golang-migrate's database driver): it opens the
/// locations of its URI schemes. A backend is one module with one driver,
/// and one ``StorageDrivers/register(_:)`` call where the program starts;
/// docs/ARCHITECTURE.md lists the files a new one touches.
package protocol StorageDriver: Sendable {
    /// The backend's name in messages ("LMDB", "PostgreSQL").
    var name: String { get }
    /// The URI schemes it opens (`postgres`, `postgresql`), lowercase.
    /// Empty for the driver of plain paths (LMDB).
    var schemes: [String] { get }
    /// Whether its databases are a server's, reached over the network: a
    /// worker running steps against one may open sockets.
    var reachesNetwork: Bool { get }
    /// What to use instead of `backup` and `restore`, for a backend whose
    /// storage is not ``BackupCapable``.
    var backupAdvice: String { get }
    /// The location as messages show it (a URI without its password).
    func displayName(_ location: String) -> String
    /// The storage at `location`; nothing is opened until it is used.
    func storage(at location: String, options: StorageOptions) -> any DatabaseStorage
    /// The same, in a worker, from the parent's
    /// ``MigrationStorage/workerOptions``.
    func storage(at location: String, workerOptions: [String: String]) -> any DatabaseStorage
}

extension StorageDriver {
    package var backupAdvice: String { "use its own backup tools, or 'migrator db copy' into an LMDB directory" }
}

/// Drivers by name, for either seam: registering one of a name already
/// there replaces it, so registering twice is harmless.
final class DriverRegistry<Driver: Sendable>: Sendable {
    private let drivers: Mutex<[(name: String, driver: Driver)]>

    init(_ builtIn: [(String, Driver)]) { drivers = Mutex(builtIn.map { (name: $0.0, driver: $0.1) }) }

    func register(_ driver: Driver, named name: String) {
        let entry = (name: name, driver: driver)
        drivers.withLock { list in
            list.removeAll { $0.name == name }
            list.append(entry)
        }
    }

    /// The drivers, oldest registration first.
    var all: [Driver] { drivers.withLock { $0.map(\.driver) } }
}

/// The registered drivers. LMDB, for plain paths, is always there.
package enum StorageDrivers {
    private static let registered = DriverRegistry<any StorageDriver>([("LMDB", LMDBDriver())])

    /// Registers `driver` for its schemes; a driver of the same name is
    /// replaced, so registering twice is harmless.
    package static func register(_ driver: any StorageDriver) { registered.register(driver, named: driver.name) }

    /// The URI scheme of `location` (`postgres` for `postgres://…`), if it has one.
    package static func scheme(of location: String) -> String? {
        let parts = location.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].hasPrefix("//") else { return nil }
        let scheme = parts[0].lowercased()
        guard let first = scheme.first, first.isLetter,
            scheme.allSatisfy({ $0.isLetter || $0.isNumber || "+-.".contains($0) })
        else { return nil }
        return scheme
    }

    /// The driver for `location`: the one registered for its scheme, or
    /// LMDB for a plain path; nil for a scheme no driver registered.
    package static func driver(for location: String) -> (any StorageDriver)? {
        let drivers = registered.all
        guard let scheme = scheme(of: location) else { return drivers.last { $0.schemes.isEmpty } }
        return drivers.last { $0.schemes.contains(scheme) }
    }

    /// The schemes with a driver, for messages.
    static var knownSchemes: [String] { registered.all.flatMap(\.schemes).sorted() }
}

/// Opens the storage for a location through its driver.
package enum Storages {
    /// The storage at `location`, through the driver of its scheme. A
    /// scheme no driver registered gives a storage whose every use fails
    /// saying so (never an LMDB directory named `postgres:`).
    package static func at(
        _ location: String, options: DocumentStore.Options = .init(), allowInsecureDirectory: Bool = false
    ) -> any DatabaseStorage {
        guard let driver = StorageDrivers.driver(for: location) else { return UnknownSchemeStorage(location) }
        return driver.storage(
            at: location, options: StorageOptions(store: options, allowInsecureDirectory: allowInsecureDirectory))
    }

    /// The storage a worker opens at `location`, with the options the
    /// parent's storage gave.
    package static func at(_ location: String, workerOptions: [String: String]) -> any DatabaseStorage {
        guard let driver = StorageDrivers.driver(for: location) else { return UnknownSchemeStorage(location) }
        return driver.storage(at: location, workerOptions: workerOptions)
    }

    /// `location` as messages show it: its driver's display name (no
    /// password); without a driver, only its scheme (nothing else of a URI
    /// nobody can parse is shown: it may hold a password).
    package static func displayName(_ location: String) -> String {
        if let driver = StorageDrivers.driver(for: location) { return driver.displayName(location) }
        guard let scheme = StorageDrivers.scheme(of: location) else { return location }
        return scheme + "://…"
    }

    /// Whether a worker running steps against `location` may open sockets.
    package static func reachesNetwork(_ location: String) -> Bool {
        StorageDrivers.driver(for: location)?.reachesNetwork ?? false
    }
}

/// The storage of a location whose scheme no driver registered: it exists
/// nowhere, and every use fails, naming the scheme and the known ones.
final class UnknownSchemeStorage: MigrationStorage, DocumentAccess {
    let location: String
    private let scheme: String

    init(_ location: String) {
        self.location = Storages.displayName(location)
        scheme = StorageDrivers.scheme(of: location) ?? ""
    }

    private var error: MigratorError {
        let known = StorageDrivers.knownSchemes
        return MigratorError(
            .unsupported,
            "no storage driver is registered for '\(scheme)://' (the database '\(location)'); "
                + (known.isEmpty
                    ? "only directory paths (LMDB) can be opened"
                    : "known: \(known.joined(separator: ", ")), and directory paths (LMDB)"))
    }

    var exists: Bool { false }
    var workerOptions: [String: String] { [:] }
    func prepare() throws { throw error }
    func appliedMigrations() throws -> [AppliedMigration] { throw error }
    func isApplied(_ id: String) throws -> Bool { throw error }
    func history() throws -> [HistoryEntry] { throw error }
    func partialMigrations() throws -> [MigrationProgress] { throw error }
    func lockState() -> LockState { .free(leftover: nil) }
    func acquireLock(
        command: String, timeout: Double, onWait: ((LockOwner?) -> Void)?
    ) throws(MigratorError) -> any RunLockSession { throw error }
    func transaction<R>(_ body: (any StorageTransaction) throws -> R) throws -> R { throw error }
    func trial<R>(_ body: (any StorageTransaction) throws -> R) throws -> R { throw error }
    func requireExisting() throws { throw error }
    func readDocuments<R>(_ body: (any SystemTransaction) throws -> R) throws -> R { throw error }
    func writeDocuments<R>(batched: Bool, _ body: (any SystemTransaction) throws -> R) throws -> R { throw error }
}
