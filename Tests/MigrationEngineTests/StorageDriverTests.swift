import DocumentStore
import Foundation
import MigrationEngine
import MigrationKit
import Synchronization
import TestSupport
import Testing

/// A third backend, as a test double: the driver of `recorded://NAME`,
/// whose storage keeps its database in a temporary LMDB directory and
/// records every call the engine makes. Registering it is the one line a
/// new backend adds; the engine runs on it unchanged.
struct RecordingDriver: StorageDriver {
    static let calls = Mutex<[String]>([])
    static let root = Fixtures.temporaryDirectory("recorded")

    var name: String { "Recorded" }
    var schemes: [String] { ["recorded"] }
    var reachesNetwork: Bool { false }
    func displayName(_ location: String) -> String { location.replacingOccurrences(of: "secret", with: "***") }
    func storage(at location: String, options: StorageOptions) -> any DatabaseStorage {
        RecordingStorage(
            location: displayName(location),
            path: Self.root + "/" + (location.split(separator: "/").last.map(String.init) ?? "db"))
    }
    func storage(at location: String, workerOptions: [String: String]) -> any DatabaseStorage {
        storage(at: location, options: StorageOptions())
    }
}

final class RecordingStorage: MigrationStorage, DocumentAccess {
    let location: String
    private let inner: LMDBStorage

    init(location: String, path: String) {
        self.location = location
        inner = LMDBStorage(path: path)
    }

    private func note(_ call: String) { RecordingDriver.calls.withLock { $0.append(call) } }

    var exists: Bool { inner.exists }
    var workerOptions: [String: String] { [:] }
    func prepare() throws { try inner.prepare() }
    func appliedMigrations() throws -> [AppliedMigration] {
        note("appliedMigrations")
        return try inner.appliedMigrations()
    }
    func isApplied(_ id: String) throws -> Bool { try inner.isApplied(id) }
    func history() throws -> [HistoryEntry] { try inner.history() }
    func partialMigrations() throws -> [MigrationProgress] { try inner.partialMigrations() }
    func lockState() -> LockState { inner.lockState() }
    func acquireLock(
        command: String, timeout: Double, onWait: ((LockOwner?) -> Void)?
    ) throws(MigratorError) -> any RunLockSession {
        note("lock \(command)")
        return try inner.acquireLock(command: command, timeout: timeout, onWait: onWait)
    }
    func transaction<R>(_ body: (any StorageTransaction) throws -> R) throws -> R {
        note("transaction")
        return try inner.transaction(body)
    }
    func trial<R>(_ body: (any StorageTransaction) throws -> R) throws -> R {
        note("trial")
        return try inner.trial(body)
    }
    func requireExisting() throws { try inner.requireExisting() }
    func readDocuments<R>(_ body: (any SystemTransaction) throws -> R) throws -> R { try inner.readDocuments(body) }
    func writeDocuments<R>(batched: Bool, _ body: (any SystemTransaction) throws -> R) throws -> R {
        try inner.writeDocuments(batched: batched, body)
    }
}

@Suite("storage drivers", .serialized)
struct StorageDriverTests {
    @Test("a registered driver opens its scheme, and the engine runs on it unchanged")
    func aThirdBackendRegistersItself() throws {
        StorageDrivers.register(RecordingDriver())
        let m = Migrator(databasePath: "recorded://user:secret@here/one")
        #expect(m.databaseName == "recorded://user:***@here/one", "its driver's display name")
        try m.register(CreateSessions())
        try m.register(AddExpiry())
        #expect(try m.migrateUp().completed == ["001_create_sessions", "002_add_expiry"])
        #expect(try m.status().migrations.map(\.state) == [.applied, .applied])
        #expect(try m.rollback(.last(1)).completed == ["002_add_expiry"])
        #expect(try m.dryRun().results.map(\.id) == ["002_add_expiry"])
        let calls = RecordingDriver.calls.withLock { $0 }
        #expect(calls.filter { $0 == "transaction" }.count == 3, "one per step: \(calls)")
        #expect(calls.contains("lock apply") || calls.contains("lock embedded"), "\(calls)")
        #expect(calls.contains("trial"), "\(calls)")
        // What it cannot do is a missing capability, said so, never a crash.
        let e = #expect(throws: MigratorError.self) { try m.backup(to: Fixtures.temporaryDirectory("b") + "/x") }
        #expect(e?.code == .unsupported && e?.message.contains("is Recorded") == true, "\(String(describing: e))")
    }

    @Test("a scheme without a driver is refused, naming it; never an LMDB directory of that name")
    func anUnknownSchemeIsRefused() throws {
        let dir = Fixtures.temporaryDirectory("unknown")
        let location = "nosuch://" + dir + "/db"
        let m = Migrator(databasePath: location)
        try m.register(CreateSessions())
        let e = #expect(throws: MigratorError.self) { try m.migrateUp() }
        #expect(
            e?.message.contains("no storage driver is registered for 'nosuch://'") == true, "\(String(describing: e))")
        #expect(!FileManager.default.fileExists(atPath: "nosuch:"), "nothing made in the working directory")
        #expect(StorageDrivers.scheme(of: "/srv/app.db") == nil)
        #expect(StorageDrivers.scheme(of: "PostgreSQL://h/db") == "postgresql")
    }
}
