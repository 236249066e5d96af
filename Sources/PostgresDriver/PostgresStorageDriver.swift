import MigrationEngine
import PostgresStore

/// The PostgreSQL storage driver: `postgres://` and `postgresql://`
/// locations, a schema of the database (`schema=`, default `migrator`).
/// Register it once, where the program starts, to open such locations:
///
///     PostgresStorageDriver.register()
///
/// `migrator` does; an app embedding the engine that wants PostgreSQL does
/// too. Without it, a `postgres://` location is refused, naming the scheme.
public struct PostgresStorageDriver: StorageDriver {
    package var name: String { "PostgreSQL" }
    package var schemes: [String] { ["postgres", "postgresql"] }
    package var reachesNetwork: Bool { true }
    package var backupAdvice: String {
        "use its own backups (pg_dump, base backups, replicas), or 'migrator db copy' into an LMDB directory"
    }

    /// Registers the driver (again is harmless).
    public static func register() { StorageDrivers.register(PostgresStorageDriver()) }

    package func displayName(_ location: String) -> String { ConnectionURI.redacted(location) }

    package func storage(at location: String, options: StorageOptions) -> any DatabaseStorage {
        PostgresStorage(uri: location)
    }

    package func storage(at location: String, workerOptions: [String: String]) -> any DatabaseStorage {
        PostgresStorage(uri: location)
    }
}
