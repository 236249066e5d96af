import DocumentStore
import Foundation
import PostgresStore
import TestSupport
import Testing

/// The built `migrator` against PostgreSQL: C plugins applied through the
/// worker, the records and reports, many runners at once, and the commands
/// that do not work there yet refusing clearly.
@Suite("migrator on PostgreSQL (end to end)")
struct PostgresCLITests {
    /// A schema of its own on the test server, dropped afterwards.
    final class Database {
        let schema = PostgresServer.freshSchema("cli")
        var uri: String { PostgresServer.uri + "&schema=" + schema }
        deinit {
            let c = try? Connection(uri: PostgresServer.uri)
            _ = try? c?.run("DROP SCHEMA IF EXISTS \(schema) CASCADE")
        }
        func count(_ collection: String) throws -> Int {
            try PostgresDocumentStore(uri: PostgresServer.uri, schema: schema).read { try $0.count(collection) }
        }
        func history() throws -> [JSON] {
            try PostgresDocumentStore(uri: PostgresServer.uri, schema: schema).read { txn in
                try txn.withSystemAccess { try txn.findAll("_migrations_history") }
            }
        }
    }

    @Test("apply, status, history and rollback of C plugins, through the worker")
    func applyAndRollBack() throws {
        let w = try Workspace()
        let db = Database()
        for n in 1...3 { try w.add(String(format: "p%03d.so", n), ConcurrencyTests.orderedPlugin(n)) }
        let apply = try migrator(["apply", "--db", db.uri, "--dir", w.dir])
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(try db.count("log") == 3)
        let status = try migrator(["status", "--json", "--db", db.uri, "--dir", w.dir])
        #expect(status.status == 0)
        #expect(status.stdout.components(separatedBy: #""state":"applied""#).count - 1 == 3, "\(status.stdout)")
        #expect(status.stdout.contains(#""database":"postgresql://"#))
        let history = try migrator(["history", "--db", db.uri])
        #expect(history.status == 0 && history.stdout.contains("003_step"), "\(history.stderr)")
        let rollback = try migrator(["rollback", "--all", "--yes", "--db", db.uri, "--dir", w.dir])
        #expect(rollback.status == 0, "\(rollback.stderr)")
        let after = try migrator(["status", "--json", "--db", db.uri, "--dir", w.dir])
        #expect(after.stdout.components(separatedBy: #""state":"pending""#).count - 1 == 3, "\(after.stdout)")
        #expect(
            try db.history().map { $0.objectValue?["outcome"]?.stringValue ?? "" }.suffix(3) == [
                "rolled_back", "rolled_back", "rolled_back",
            ])
    }

    @Test("8 runners at once, 20 rounds: every migration applied exactly once, in order")
    func concurrentRunners() throws {
        let w = try Workspace()
        for n in 1...5 { try w.add(String(format: "p%03d.so", n), ConcurrencyTests.orderedPlugin(n)) }
        for round in 1...20 {
            let db = Database()
            let runners = try (0..<8).map { _ in
                try launchMigrator(["apply", "--db", db.uri, "--dir", w.dir, "--lock-timeout", "120"])
            }
            for r in runners {
                try r.stdin.fileHandleForWriting.close()
                let err = String(decoding: r.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                r.process.waitUntilExit()
                #expect(r.process.terminationStatus == 0, "round \(round): \(err)")
            }
            #expect(try db.count("log") == 5, "round \(round)")
            let ids = try db.history().map { $0.objectValue?["migration_id"]?.stringValue ?? "" }
            #expect(ids == (1...5).map { String(format: "%03d_step", $0) }, "round \(round): \(ids)")
        }
    }

    @Test("bad connections fail fast with the URI redacted; db commands refuse PostgreSQL")
    func badInputs() throws {
        let socket = PostgresServer.socketDirectory
        let cases: [(String, String)] = [
            ("postgresql://password_user:wrong-secret@/migrator_test?host=\(socket)", "authentication failed"),
            ("postgresql://migrator@/no_such_database?host=\(socket)", "no_such_database"),
            ("postgresql://migrator:some-secret@127.0.0.1:1/x?connect_timeout=2", "127.0.0.1"),
        ]
        for (uri, expected) in cases {
            let start = Date()
            let r = try migrator(["apply", "--db", uri, "--dir", Fixtures.temporaryDirectory("empty")])
            #expect(r.status == 1 || r.status == 2, "\(uri): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains(expected), "\(r.stderr)")
            #expect(!r.stderr.contains("secret"), "the password leaked: \(r.stderr)")
            #expect(Date().timeIntervalSince(start) < 30)
        }
        let db = Database()
        let refused = try migrator(["db", "collections", "--db", db.uri])
        #expect(refused.status == 1 && refused.stderr.contains("LMDB databases only"), "\(refused.stderr)")
    }
}
