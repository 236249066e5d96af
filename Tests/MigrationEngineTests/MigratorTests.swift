import DocumentStore
import Foundation
import MigrationEngine
import MigrationKit
import TestSupport
import Testing

struct CreateSessions: Migration {
    let id = "001_create_sessions"
    let name = "Create Sessions"
    let description = "Sessions with a unique token"
    let version = "1.0.0"
    struct Session: Codable, Equatable {
        let token: String
        let user: Int
    }
    func up(_ db: Database) throws {
        try db.createIndex("sessions", path: "token", unique: true)
        try db.insert(Session(token: "a", user: 1), into: "sessions")
        try db.insert(json: #"{"token":"b","user":2}"#, into: "sessions")
    }
    func down(_ db: Database) throws { try db.dropCollection("sessions") }
}

struct AddExpiry: Migration {
    let id = "002_add_expiry"
    let name = "Add Expiry"
    let description = "Every session expires"
    let version = "1.1.0"
    let checksum: String? = "v1"
    func up(_ db: Database) throws {
        var seen = 0
        let sessions = try db.find("sessions")
        while let s = try sessions.next() {
            guard let filter = s.idFilter else { throw DatabaseError(.error, "no _id in \(s.json)") }
            try db.update("sessions", filter: filter, update: #"{"$set":{"expires":3600}}"#)
            seen += 1
        }
        guard seen == 2, try db.count("sessions", filter: #"{"expires":3600}"#) == 2 else {
            throw DatabaseError(.error, "expected 2")
        }
        let users = try db.find("sessions", as: CreateSessions.Session.self)
        guard try users.next()?.user == 1 else { throw DatabaseError(.error, "decoding failed") }
    }
    func down(_ db: Database) throws {
        try db.update("sessions", filter: "{}", update: #"{"$unset":{"expires":""}}"#)
    }
}

struct Explodes: Migration {
    let id = "003_explodes"
    let name = "Explodes"
    let description = "Inserts, then fails"
    let version = "1.2.0"
    struct Boom: Error, CustomStringConvertible { var description: String { "boom: the payment service is down" } }
    func up(_ db: Database) throws {
        try db.insert(json: #"{"token":"c","user":3}"#, into: "sessions")
        throw Boom()
    }
    func down(_ db: Database) throws {}
}

struct Purge: IrreversibleMigration {
    let id = "004_purge"
    let name = "Purge"
    let description = "Deletes old sessions"
    let version = "1.3.0"
    func up(_ db: Database) throws { try db.remove("sessions", filter: #"{"user":1}"#) }
}

@Suite struct MigratorTests {
    struct StoredSession: Decodable {
        let token: String
        let expires: Int?
    }

    /// The sessions collection as stored, read straight from the store.
    func sessions(_ path: String, _ backend: Backend = .lmdb) throws -> [StoredSession] {
        try backend.read(path) { txn in
            try txn.findAll("sessions").map { doc in
                try JSONDecoder().decode(StoredSession.self, from: Data(doc.serialized.utf8))
            }
        }
    }

    func withMigrator(_ backend: Backend = .lmdb, _ body: (Migrator, String) throws -> Void) throws {
        let (location, cleanup) = backend.freshLocation("migrator")
        defer { cleanup() }
        try body(Migrator(databasePath: location), location)
    }

    @Test(arguments: Backend.allCases) func inProcessMigrationsApplyAndRollBack(_ backend: Backend) throws {
        try withMigrator(backend) { m, path in
            try m.register(CreateSessions())
            try m.register(AddExpiry())
            #expect(try m.pendingMigrations() == ["001_create_sessions", "002_add_expiry"])
            let report = try m.migrateUp()
            #expect(report.completed == ["001_create_sessions", "002_add_expiry"])
            #expect(try m.appliedMigrations().map(\.plugin) == ["in-process", "in-process"])
            #expect(try m.pendingMigrations().isEmpty)
            let s = try m.status()
            #expect(s.summary == MigrationStatus.Summary(applied: 2, pending: 0, failed: 0, missing: 0))
            #expect(s.migrations.map(\.state) == [.applied, .applied])
            #expect(m.health().status == .healthy)
            #expect(try sessions(path, backend).map(\.expires) == [3600, 3600])
            #expect(try m.rollback(.to("001_create_sessions")).completed == ["002_add_expiry"])
            #expect(try sessions(path, backend).map(\.expires) == [nil, nil], "down removed the field")
            #expect(try m.pendingMigrations() == ["002_add_expiry"])
            #expect(try m.rollback(.all).completed == ["001_create_sessions"])
            #expect(try sessions(path, backend).isEmpty, "down dropped the collection")
            #expect(try m.history().map(\.outcome) == [.applied, .applied, .rolledBack, .rolledBack])
            #expect(m.health().status == .unhealthy, "pending migrations")
        }
    }

    @Test(arguments: Backend.allCases) func aThrowingMigrationLeavesNothing(_ backend: Backend) throws {
        try withMigrator(backend) { m, path in
            try m.register(CreateSessions())
            try m.register(Explodes())
            do {
                try m.migrateUp()
                Issue.record("expected a failure")
            } catch let e as MigratorError {
                #expect(e.code == .migrationFailed)
                #expect(e.migrationID == "003_explodes")
                #expect(e.message.contains("boom: the payment service is down"))
                // The app gets its own error back, typed.
                #expect(e.underlying is Explodes.Boom)
            }
            #expect(try m.appliedMigrations().map(\.id) == ["001_create_sessions"])
            // Explodes inserted token "c" before throwing: none of it stays.
            #expect(try sessions(path, backend).map(\.token) == ["a", "b"])
            #expect(try m.status().migrations.last?.state == .failed)
            #expect(try m.history().last?.error == "boom: the payment service is down")
        }
    }

    @Test(arguments: Backend.allCases) func irreversibleAndSupersededAndTargets(_ backend: Backend) throws {
        try withMigrator(backend) { m, path in
            try m.register(CreateSessions())
            try m.register(Purge())
            try m.migrateUp(to: "004_purge")
            do {
                try m.rollback(.to("001_create_sessions"))
                Issue.record("expected a refusal")
            } catch let e as MigratorError {
                #expect(e.code == .irreversible && e.code.isRefusal)
                #expect(e.refusals.map(\.migrationIDs) == [["004_purge"]])
            }
            // An older app that knows only 001 sees a newer database.
            let old = Migrator(databasePath: path)
            try old.register(CreateSessions())
            #expect(try old.hasBeenSuperseded())
            #expect(try !m.hasBeenSuperseded())
            do {
                try old.migrateUp()
                Issue.record("expected a refusal")
            } catch let e as MigratorError {
                #expect(e.code == .missingMigrations)
                #expect(e.refusals.first?.migrationIDs == ["004_purge"])
            }
            // Registration errors.
            let duplicate = #expect(throws: MigratorError.self) { try m.register(CreateSessions()) }
            #expect(duplicate?.code == .duplicateID)
            struct BadID: Migration {
                let id = "first"
                let name = ""
                let description = ""
                let version = ""
                func up(_ db: Database) throws {}
                func down(_ db: Database) throws {}
            }
            let invalid = #expect(throws: MigratorError.self) { try m.register(BadID()) }
            #expect(invalid?.code == .invalidID)
        }
    }

    /// An applied migration whose declared checksum changed is not "up to
    /// date": status says changed, health is unhealthy, apply refuses.
    @Test(arguments: Backend.allCases) func anEditedMigrationMakesHealthUnhealthy(_ backend: Backend) throws {
        try withMigrator(backend) { m, path in
            try m.register(CreateSessions())
            try m.register(AddExpiry())
            try m.migrateUp()
            #expect(m.health().status == .healthy)
            struct AddExpiryEdited: Migration {
                let id = "002_add_expiry"
                let name = "Add Expiry"
                let description = "Every session expires, later"
                let version = "1.1.1"
                let checksum: String? = "v2"
                func up(_ db: Database) throws {}
                func down(_ db: Database) throws {}
            }
            let edited = Migrator(databasePath: path)
            try edited.register(CreateSessions())
            try edited.register(AddExpiryEdited())
            let s = try edited.status()
            #expect(s.migrations.map(\.changed) == [false, true])
            #expect(!s.isUpToDate)
            #expect(edited.health().status == .unhealthy)
            let refused = #expect(throws: MigratorError.self) { try edited.migrateUp() }
            #expect(
                refused?.refusals.first?.recordedChecksum == "v1" && refused?.refusals.first?.declaredChecksum == "v2")
        }
    }

    /// A step that needs more map than the initial size must not be run a
    /// second time after the map grows: the engine reserves the whole map.
    @Test func aLargeStepRunsOnce() throws {
        final class Calls: @unchecked Sendable {  // written by one step at a time
            var count = 0
        }
        struct Big: Migration {
            let id = "001_big"
            let name = "Big"
            let description = "writes more than the initial map"
            let version = "1.0.0"
            let calls: Calls
            func up(_ db: Database) throws {
                calls.count += 1
                let blob = String(repeating: "x", count: 2000)
                for i in 0..<4000 { try db.insert(json: #"{"_id":\#(i),"b":"\#(blob)"}"#, into: "blobs") }
            }
            func down(_ db: Database) throws {}
        }
        let dir = Fixtures.temporaryDirectory("bigstep")
        defer { Fixtures.removeTree(dir) }
        var options = Migrator.Options()
        options.storeOptions.initialMapSize = 1 << 20
        options.storeOptions.maxMapSize = 64 << 20
        let calls = Calls()
        let m = Migrator(databasePath: dir + "/db", options: options)
        try m.register(Big(calls: calls))
        try m.migrateUp()
        #expect(calls.count == 1, "up ran \(calls.count) times")
        #expect(try DocumentStore(path: dir + "/db").read { try $0.count("blobs") } == 4000)
    }

    @Test func statusValueEncodesToTheDocumentedSchema() throws {
        try withMigrator { m, path in
            try m.register(CreateSessions())
            try m.register(AddExpiry())
            try m.migrateUp(to: "001_create_sessions")
            let data = try JSONEncoder().encode(try m.status())
            let o = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
            #expect(o["database"] as? String == path)
            let entries = o["migrations"] as? [[String: Any]] ?? []
            // In-process entries add "app"; plugin entries keep the original keys.
            #expect(entries.count == 2)
            #expect(
                entries.allSatisfy {
                    Set($0.keys) == [
                        "id", "name", "description", "version", "state", "applied_at",
                        "plugin", "checksum", "changed", "app",
                    ]
                })
            #expect(entries.first?["app"] as? String == m.catalog.appName)
            #expect(entries.last?["applied_at"] is NSNull && entries.last?["checksum"] as? String == "v1")
            let decoded = try JSONDecoder().decode(MigrationStatus.self, from: data)
            #expect(decoded == (try m.status()))
        }
    }
}

/// The host's parse caches and the `{"_id": v}` fast path must not change
/// what a filter or update means.
struct FilterShortcuts: Migration {
    let id = "001_filter_shortcuts"
    let name = "Filter shortcuts"
    let description = "semantics of cached and fast-path filters"
    let version = "1.0.0"
    struct Failed: Error, CustomStringConvertible { let description: String }
    func expect(_ got: UInt64, _ want: UInt64, _ what: String) throws {
        guard got == want else { throw Failed(description: "\(what): got \(got), want \(want)") }
    }
    func up(_ db: Database) throws {
        try db.insert(json: #"{"_id":1,"x":1}"#, into: "t")
        try db.insert(json: #"{"_id":2,"x":2}"#, into: "t")
        try db.insert(json: #"{"_id":"1","x":3}"#, into: "t")
        try expect(try db.update("t", filter: #"{"_id":1}"#, update: #"{"$set":{"a":1}}"#), 1, "int id")
        try expect(try db.count("t", filter: #"{"a":1}"#), 1, "int id only")
        try expect(try db.update("t", filter: #"{"_id":"1"}"#, update: #"{"$set":{"a":1}}"#), 1, "string id")
        try expect(
            try db.update("t", filter: #"{"_id":1,"x":2}"#, update: #"{"$set":{"a":2}}"#), 0, "id plus another field")
        try expect(try db.update("t", filter: #"{"_id":1.0}"#, update: #"{"$set":{"b":1}}"#), 1, "1.0 equals 1")
        try expect(try db.update("t", filter: #"{"_id":{"$in":[1,2]}}"#, update: #"{"$set":{"c":1}}"#), 2, "$in")
        try expect(try db.update("t", filter: #"{"_id": 2}"#, update: #"{"$set":{"c":5}}"#), 1, "spaces")
        try expect(try db.count("t", filter: #"{"c":5}"#), 1, "a new update text is parsed, not the cached one")
        try expect(try db.update("t", filter: #"{"_id":3}"#, update: #"{"$set":{"c":1}}"#), 0, "no such id")
        do {
            _ = try db.count("t", filter: #"{"_id":{"$bogus":1}}"#)
            throw Failed(description: "a bad operator after the fast path must still fail")
        } catch let e as DatabaseError where e.status == .invalid {}
    }
    func down(_ db: Database) throws { try db.dropCollection("t") }
}

@Suite struct HostShortcutTests {
    @Test func cachedAndFastPathFiltersKeepTheirMeaning() throws {
        let dir = Fixtures.temporaryDirectory("shortcuts")
        defer { Fixtures.removeTree(dir) }
        let m = Migrator(databasePath: dir + "/db")
        try m.register(FilterShortcuts())
        #expect(try m.migrateUp().completed == ["001_filter_shortcuts"])
    }
}

extension MigratorTests {
    /// With plugins in a worker, each step is sent ahead of the answer to the
    /// one before it. A step queued behind a failing one never runs, and the
    /// same Migrator (and worker) keeps working afterwards.
    @Test func aStepQueuedBehindAFailureNeverRuns() throws {
        func logging(_ id: String, fail: Bool = false) -> String {
            Fixtures.stepPlugin(
                id,
                up: """
                    host->insert(txn, "log", "{\\"id\\":\\"\(id)\\"}");
                    \(fail ? #"host->set_error(txn, "no"); return MIGRATOR_ERROR;"# : "")
                    return MIGRATOR_OK;
                    """,
                down: #"return host->remove(txn, "log", "{\"id\":\"\#(id)\"}", NULL);"#)
        }
        let dir = try pluginDirectory([
            ("a.so", logging("001_a")), ("b.so", logging("002_b", fail: true)), ("c.so", logging("003_c")),
        ])
        let db = Fixtures.temporaryDirectory("db")
        defer {
            Fixtures.removeTree(dir)
            Fixtures.removeTree(db)
        }
        var options = Migrator.Options()
        options.pluginIsolation = .worker(executable: Fixtures.productsDirectory + "/migrator")
        let m = Migrator(databasePath: db, options: options)
        try m.loadPlugins(from: dir)
        for _ in 1...2 {
            #expect(throws: MigratorError.self) { try m.migrateUp() }
            #expect(try m.appliedMigrations().map(\.id) == ["001_a"])
            #expect(try m.status().migrations.map(\.state) == [.applied, .failed, .pending])
        }
        let store = try DocumentStore(path: db)
        let third = try Filter(parsing: #"{"id":"003_c"}"#)
        #expect(try store.read { try $0.count("log", filter: third) } == 0, "003 never ran")
        #expect(try store.read { try $0.count("log") } == 1)
        // The worker is still usable: the rollback runs in it.
        #expect(try m.rollback(.all).completed == ["001_a"])
        #expect(try m.appliedMigrations().isEmpty)
    }
}

/// The Swift SDK's cursor writes and in-place reads, in-process.
struct RewritePlans: Migration {
    let id = "001_rewrite_plans"
    let name = "Rewrite plans"
    let description = "replaceCurrent, deleteCurrent and DocumentView"
    let version = "1.0.0"
    func up(_ db: Database) throws {
        let users = try db.documents("users")
        var out: [UInt8] = []
        while let user = try users.nextView() {
            if user.string("plan") == "gone" {
                try users.deleteCurrent()
                continue
            }
            let n = user.int("n") ?? 0
            out.removeAll(keepingCapacity: true)
            out += Array(#"{"plan":"pro","n":\#(n + 1),"tags":"#.utf8)
            out += user.field("tags").map(Array.init) ?? Array("[]".utf8)
            out += Array("}".utf8)
            try users.replaceCurrent(json: out)
        }
    }
    func down(_ db: Database) throws {}
}

extension MigratorTests {
    @Test func cursorWritesAndInPlaceReadsFromSwift() throws {
        let dir = Fixtures.temporaryDirectory("rewrite")
        defer { Fixtures.removeTree(dir) }
        let store = try DocumentStore(path: dir + "/db")
        try store.write { txn in
            _ = try txn.insert(JSON(parsing: #"{"_id":1,"plan":"free","n":1,"tags":["a",{"b":"}"}]}"#), into: "users")
            _ = try txn.insert(JSON(parsing: #"{"_id":2,"plan":"gone"}"#), into: "users")
            _ = try txn.insert(JSON(parsing: #"{"_id":"x","note":"a \"quoted\" plan","plan":"free"}"#), into: "users")
        }
        let m = Migrator(databasePath: dir + "/db")
        try m.register(RewritePlans())
        try m.migrateUp()
        let docs = try store.read { try $0.find("users").all().map(\.serialized) }
        #expect(
            docs == [
                #"{"_id":1,"plan":"pro","n":2,"tags":["a",{"b":"}"}]}"#, #"{"_id":"x","plan":"pro","n":1,"tags":[]}"#,
            ], "\(docs)")
    }
}
