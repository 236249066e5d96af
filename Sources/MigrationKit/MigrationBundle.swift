import MigratorPluginABI
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Turns Swift migrations into the C bundle a plugin's entry returns.
///
/// ```swift
/// @_cdecl("migrator_plugin_entry_v1")   // or @c(migrator_plugin_entry_v1) on Swift 6.3
/// public func migratorPluginEntry() -> UnsafeRawPointer {
///     MigrationBundle.export(name: "example-migrations", migrations: [InitialSetup(), UserPreferences()])
/// }
/// ```
///
/// The descriptors and strings are allocated once and never freed: the ABI
/// requires them to live as long as the process. Errors thrown by `up` or
/// `down` become `set_error` plus `MIGRATOR_ERROR` at the boundary; nothing
/// unwinds into the host.
public enum MigrationBundle {
    private static let exported = Mutex<UnsafeRawPointer?>(nil)

    /// The bundle for `migrations`, built on the first call; later calls
    /// return the same pointer (a plugin exports one bundle).
    public static func export(name: String, migrations: [any Migration]) -> UnsafeRawPointer {
        exported.withLock { cached in
            if let cached { return cached }
            let built = UnsafeRawPointer(build(name: name, migrations: migrations))
            cached = built
            return built
        }
    }

    private static func build(name: String, migrations: [any Migration]) -> UnsafeMutablePointer<migrator_plugin_v1> {
        let array = UnsafeMutablePointer<migrator_migration_v1>.allocate(capacity: max(migrations.count, 1))
        for (i, m) in migrations.enumerated() {
            array[i] = migrator_migration_v1(
                id: strdup(m.id), name: strdup(m.name), description: strdup(m.description),
                version: strdup(m.version), checksum: m.checksum.map { UnsafePointer(strdup($0)) },
                up: upTrampoline,
                down: m.isReversible ? downTrampoline : nil,
                userdata: Unmanaged.passRetained(Box(m)).toOpaque())
        }
        let bundle = UnsafeMutablePointer<migrator_plugin_v1>.allocate(capacity: 1)
        bundle.initialize(
            to: migrator_plugin_v1(
                abi_major: UInt32(MIGRATOR_ABI_MAJOR), abi_minor: UInt32(MIGRATOR_ABI_MINOR),
                struct_size: UInt32(MemoryLayout<migrator_plugin_v1>.size),
                name: UnsafePointer(strdup(name)), toolchain: UnsafePointer(strdup(SwiftToolchain.current)),
                migration_count: UInt32(migrations.count), migrations: UnsafePointer(array)))
        return bundle
    }
}

private final class Box {
    let migration: any Migration
    init(_ m: any Migration) { migration = m }
}

private let upTrampoline: migrator_step_fn = { host, txn, userdata in runStep(host, txn, userdata, up: true) }
private let downTrampoline: migrator_step_fn = { host, txn, userdata in runStep(host, txn, userdata, up: false) }

/// Runs one step behind the C boundary: errors become a status.
private func runStep(
    _ host: UnsafePointer<migrator_host_v1>?, _ txn: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?,
    up: Bool
) -> migrator_status {
    guard let host, let txn, let userdata else { return MIGRATOR_INVALID }
    let migration = Unmanaged<Box>.fromOpaque(userdata).takeUnretainedValue().migration
    let db = PluginDatabase(host: host, txn: txn)
    defer { db.invalidate() }
    do {
        if up { try migration.up(db) } else { try migration.down(db) }
        return MIGRATOR_OK
    } catch {
        db.setError("\(error)")
        return (error as? DatabaseError)?.status.rawValue ?? MIGRATOR_ERROR
    }
}
