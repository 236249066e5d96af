import Dispatch
import DocumentStore
import Foundation
import MigrationEngine
import MigrationKit
import PostgresStore
import TestSupport
import Testing

/// What only the PostgreSQL backend has: a run lock shared by runners on
/// many hosts, held by a server session, and URIs with passwords in them.
@Suite("The engine on PostgreSQL")
struct PostgresEngineTests {
    /// A migration that holds its step open until told to finish.
    final class Gate: @unchecked Sendable {
        let started = DispatchSemaphore(value: 0)
        let finish = DispatchSemaphore(value: 0)
    }
    struct Slow: Migration {
        let id = "001_slow"
        let name = "Slow"
        let description = "waits inside its step"
        let version = "1.0.0"
        let gate: Gate
        func up(_ db: Database) throws {
            try db.insert(json: #"{"_id":1}"#, into: "slow")
            gate.started.signal()
            gate.finish.wait()
        }
        func down(_ db: Database) throws { try db.dropCollection("slow") }
    }

    @Test("a second runner waits for the lock, sees its holder, and finds the work done")
    func runLock() throws {
        let (location, cleanup) = Backend.postgres.freshLocation("lock")
        defer { cleanup() }
        let gate = Gate()
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var firstResult: Result<[String], any Error>?
        Thread.detachNewThread {
            firstResult = Result {
                let first = Migrator(databasePath: location)
                try first.register(Slow(gate: gate))
                return try first.migrateUp().completed
            }
            done.signal()
        }
        try #require(gate.started.wait(timeout: .now() + 60) == .success, "the step never started")

        var options = Migrator.Options()
        options.lockTimeout = 0.5
        let second = Migrator(databasePath: location, options: options)
        try second.register(Slow(gate: gate))
        guard case .held(let owner) = second.lockState else {
            Issue.record("the lock is not held during a step")
            gate.finish.signal()
            return
        }
        #expect(owner?.command == "embedded", "the library's runs are named so")
        #expect(owner?.currentID == "001_slow")
        let waited = #expect(throws: MigratorError.self) { try second.migrateUp() }
        #expect(waited?.code == .lockTimeout)
        #expect(waited?.message.contains("is locked by embedded (pid \(getpid())") == true, "\(waited?.message ?? "")")

        gate.finish.signal()
        try #require(done.wait(timeout: .now() + 60) == .success, "the first runner never finished")
        #expect(try firstResult?.get() == ["001_slow"])
        #expect(try second.migrateUp().completed.isEmpty, "the first runner did the work")
        guard case .free(leftover: nil) = second.lockState else {
            Issue.record("the lock record outlived a clean run")
            return
        }
    }

    @Test("a runner whose session dies mid-step leaves no lock and nothing half-done")
    func sessionDeath() throws {
        let (fresh, cleanup) = Backend.postgres.freshLocation("death")
        defer { cleanup() }
        // Its own application name, so that only this runner's sessions end.
        let name = "death_\(getpid())_\(UInt32.random(in: 0..<UInt32.max))"
        let location = fresh + "&application_name=" + name
        let gate = Gate()
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var failure: (any Error)?
        Thread.detachNewThread {
            do {
                let first = Migrator(databasePath: location)
                try first.register(Slow(gate: gate))
                _ = try first.migrateUp()
            } catch { failure = error }
            done.signal()
        }
        try #require(gate.started.wait(timeout: .now() + 60) == .success, "the step never started")
        // Every session of the runner ends, as when its host dies.
        let admin = try Connection(uri: PostgresServer.uri)
        let ended = try admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", [name])
        #expect((Int(ended.text(0, 0) ?? "") ?? 0) >= 2, "the step's connection and the lock's session")
        gate.finish.signal()
        try #require(done.wait(timeout: .now() + 60) == .success, "the first runner never finished")
        #expect(failure != nil, "the step cannot have committed on a dead connection")

        let second = Migrator(databasePath: location)
        try second.register(Slow(gate: gate))
        guard case .free = second.lockState else {
            Issue.record("the lock outlived its session")
            return
        }
        #expect(try second.appliedMigrations().isEmpty)
        #expect(try Backend.postgres.read(location) { try $0.count("slow") } == 0, "nothing half-done")
        gate.finish.signal()  // the next run's step does not wait
        #expect(try second.migrateUp().completed == ["001_slow"])
    }

    @Test("passwords in the URI never appear in messages")
    func redaction() throws {
        let m = Migrator(
            databasePath:
                "postgresql://password_user:not-the-password@/migrator_test?host=\(PostgresServer.socketDirectory)")
        let e = #expect(throws: (any Error).self) { try m.migrateUp() }
        let text = "\(e.map { "\($0)" } ?? "")"
        #expect(!text.contains("not-the-password"), "\(text)")
        #expect(text.contains("password_user:***@"), "\(text)")
    }

    @Test("a role that may only read can run status: reads create nothing")
    func readOnlyRole() throws {
        let (location, cleanup) = Backend.postgres.freshLocation("readonly")
        defer { cleanup() }
        let writer = Migrator(databasePath: location)
        try writer.register(CreateSessions())
        try writer.migrateUp()
        let (_, schema) = ConnectionURI.splitSchema(location)
        let admin = try Connection(uri: PostgresServer.uri)
        try admin.run(
            "GRANT USAGE ON SCHEMA \(schema ?? "") TO limited_user; "
                + "GRANT SELECT ON ALL TABLES IN SCHEMA \(schema ?? "") TO limited_user")
        let readerURI = PostgresServer.uri(user: "limited_user") + "&schema=" + (schema ?? "")
        // What opening with creation would do: the role may not create.
        #expect(throws: (any Error).self) {
            _ = try PostgresDocumentStore(uri: PostgresServer.uri(user: "limited_user"), schema: schema ?? "")
        }
        let reader = Migrator(databasePath: readerURI)
        try reader.register(CreateSessions())
        #expect(try reader.status().migrations.map(\.state) == [.applied])
        #expect(try reader.history().count == 1)
    }
}
