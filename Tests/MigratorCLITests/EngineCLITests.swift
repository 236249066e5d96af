import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A database and a migrations directory in a fresh temporary folder.
final class Workspace {
    let root = Fixtures.temporaryDirectory("engine")
    /// The database: a directory in the workspace, or a fresh PostgreSQL schema.
    let db: String
    private let dropDatabase: () -> Void
    var dir: String { root + "/migrations" }

    init(examples: Bool = false, backend: Backend = .lmdb) throws {
        if backend == .lmdb {
            db = root + "/db"
            dropDatabase = {}
        } else {
            (db, dropDatabase) = backend.freshLocation("cli")
        }
        if examples {
            let ex = try exampleMigrationsDirectory()
            try FileManager.default.moveItem(atPath: ex, toPath: dir)
        } else {
            mkdir(dir, 0o700)
        }
    }
    deinit {
        dropDatabase()
        Fixtures.removeTree(root)
    }

    /// `migrator <args> --db db --dir dir`. Crash reports go to the
    /// workspace (TMPDIR), not to /tmp, unless `environment` says otherwise.
    func run(_ args: [String], dir: Bool = true, environment: [String: String] = [:]) throws -> RunResult {
        try migrator(
            args + ["--db", db] + (dir ? ["--dir", self.dir] : []),
            environment: ["TMPDIR": root].merging(environment) { _, given in given })
    }

    func add(_ file: String, _ source: String) throws {
        try Fixtures.compilePlugin(source, name: file, in: dir)
    }

    func importSample() throws {
        for c in ["users", "documents"] {
            let r = try migrator([
                "db", "import", c, Fixtures.packageRoot + "/Plugins-Examples/sample-data/\(c).jsonl", "--db", db,
            ])
            #expect(r.status == 0, "\(r.stderr)")
        }
    }

    func count(_ collection: String, _ filter: String = "{}") throws -> Int {
        Int(
            try migrator(["db", "count", collection, "--filter", filter, "--db", db]).stdout.trimmingCharacters(
                in: .whitespacesAndNewlines)) ?? -1
    }

    /// `status --json`, parsed; anything unreadable fails the test.
    func status() throws -> [String: Any] {
        let r = try run(["status", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        guard let o = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else {
            throw Unreadable("status --json is not a JSON object: \(r.stdout)")
        }
        return o
    }

    /// Each migration's state, by id.
    func states() throws -> [String: String] {
        guard let list = try status()["migrations"] as? [[String: Any]] else {
            throw Unreadable("status --json has no migrations")
        }
        var out: [String: String] = [:]
        for m in list {
            guard let id = m["id"] as? String, let state = m["state"] as? String else {
                throw Unreadable("bad entry \(m)")
            }
            out[id] = state
        }
        return out
    }

    func history() throws -> [[String: Any]] {
        // No LMDB database at all (a trial creates none): nothing was ever recorded.
        if !db.contains("://") && access(db, F_OK) != 0 { return [] }
        let r = try run(["history", "--json"], dir: false)
        guard
            let list = (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["history"]
                as? [[String: Any]]
        else {
            throw Unreadable("history --json is unreadable: \(r.stdout)")
        }
        return list
    }
}

/// Output a test could not read: a failure, never an empty answer.
struct Unreadable: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

let exampleIDs = [
    "001_initial_setup", "002_user_preferences", "003_document_analysis_enhancement", "004_user_settings",
    "005_drop_legacy_tags",
]

@Suite("migrator apply, rollback, status (end to end)")
struct EngineCLITests {
    // MARK: Apply

    @Test(arguments: Backend.allCases)
    func applyFromEmptyThenReapplyIsANoOp(_ backend: Backend) throws {
        let w = try Workspace(examples: true, backend: backend)
        try w.importSample()
        let r = try w.run(["apply"])
        #expect(r.status == 0, "\(r.stderr)")
        for id in exampleIDs { #expect(r.stderr.contains("applied \(id)")) }
        #expect(try w.count("user_preferences") == 24)
        #expect(try w.count("user_settings") == 24)
        #expect(try w.count("documents", #"{"analysis.added_by":"003"}"#) == 7)
        #expect(try w.count("users", #"{"tags":{"$exists":true}}"#) == 0)
        #expect(try w.states().values.allSatisfy { $0 == "applied" })

        // The tracking record.
        let rec = try w.run(["db", "find", "_migrations", "--filter", #"{"_id":"004_user_settings"}"#], dir: false)
        let doc = (try JSONSerialization.jsonObject(with: Data(rec.stdout.utf8)) as? [String: Any]) ?? [:]
        #expect(doc["migration_id"] as? String == "004_user_settings")
        #expect(doc["plugin"] as? String == "example_c_migrations.so")
        #expect((doc["plugin_sha256"] as? String)?.count == 64)
        #expect(doc["checksum"] as? String == "004-v1")
        #expect(doc["success"] as? Bool == true)
        #expect((doc["applied_by"] as? String)?.contains("(pid ") == true)
        for key in ["started_at", "applied_at"] {
            let t = doc[key] as? String ?? ""
            #expect(
                t.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#, options: .regularExpression) != nil,
                "\(key) = \(t)")
        }
        #expect(doc["runner_version"] is String && doc["duration_ms"] is Int)

        let again = try w.run(["apply"])
        #expect(again.status == 0)
        #expect(again.stderr.contains("nothing to apply"))
        #expect(try w.history().count == 5)
        // The alias, and environment defaults.
        let alias = try migrator(["migrate"], environment: ["MIGRATOR_DB": w.db, "MIGRATOR_DIR": w.dir])
        #expect(alias.status == 0 && alias.stderr.contains("nothing to apply"))
    }

    @Test(arguments: Backend.allCases)
    func target(_ backend: Backend) throws {
        let w = try Workspace(examples: true, backend: backend)
        try w.importSample()
        let r = try w.run(["apply", "--target", "002_user_preferences"])
        #expect(r.status == 0, "\(r.stderr)")
        let list = try w.run(["list"])
        #expect(
            list.stdout.contains("STATE")
                && list.stdout.split(separator: "\n").filter { $0.hasSuffix("applied") }.count == 2, "\(list.stdout)")
        #expect(
            try w.states() == [
                "001_initial_setup": "applied", "002_user_preferences": "applied",
                "003_document_analysis_enhancement": "pending", "004_user_settings": "pending",
                "005_drop_legacy_tags": "pending",
            ])
        let unknown = try w.run(["apply", "--target", "009_nope"])
        #expect(unknown.status == 4)
        #expect(unknown.stderr.contains("'009_nope' is not a known migration"))
        let behind = try w.run(["apply", "--target", "001_initial_setup"])
        #expect(behind.status == 4)
        #expect(behind.stderr.contains("already applied"))
    }

    // MARK: Rollback

    @Test(arguments: Backend.allCases)
    func rollbackToATarget(_ backend: Backend) throws {
        let w = try Workspace(examples: true, backend: backend)
        try w.importSample()
        #expect(try w.run(["apply", "--target", "004_user_settings"]).status == 0)
        let r = try w.run(["rollback", "001_initial_setup"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(
            r.stderr.contains("rolled back 004_user_settings") && r.stderr.contains("rolled back 002_user_preferences"))
        let order = ["004_user_settings", "003_document_analysis_enhancement", "002_user_preferences"].map {
            r.stderr.range(of: "rolled back " + $0)?.lowerBound
        }
        #expect(
            order.compactMap { $0 } == order.compactMap { $0 }.sorted() && order.allSatisfy { $0 != nil },
            "newest first")
        #expect(try w.states()["001_initial_setup"] == "applied")
        #expect(try w.states()["002_user_preferences"] == "pending")
        #expect(try w.count("user_preferences") == 0)
        #expect(
            try w.count("documents", #"{"analysis":{"$exists":true}}"#) == 1,
            "only the document that had its own analysis")
        let outcomes = try w.history().map { $0["outcome"] as? String ?? "" }
        #expect(outcomes.filter { $0 == "rolled_back" }.count == 3)
        // Not applied: error.
        let bad = try w.run(["rollback", "003_document_analysis_enhancement"])
        #expect(bad.status == 4 && bad.stderr.contains("not applied"))
        // And forward again.
        #expect(try w.run(["apply"]).status == 0)
        #expect(try w.count("user_settings") == 24)
    }

    @Test(arguments: Backend.allCases)
    func irreversibleMigrationIsRefusedBeforeAnythingRuns(_ backend: Backend) throws {
        let w = try Workspace(examples: true, backend: backend)
        try w.importSample()
        #expect(try w.run(["apply"]).status == 0)
        let r = try w.run(["rollback", "003_document_analysis_enhancement"])
        #expect(r.status == 4)
        #expect(r.stderr.contains("'005_drop_legacy_tags'") && r.stderr.contains("irreversible"))
        #expect(try w.states().values.allSatisfy { $0 == "applied" }, "nothing was rolled back, not even 004")
        #expect(try w.count("user_settings") == 24)
    }

    // MARK: Failures

    @Test(arguments: Backend.allCases)
    func failingMigrationAbortsItsTransaction(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add("a.so", Fixtures.stepPlugin("001_make", up: #"return host->insert(txn, "things", "{\"n\":0}");"#))
        try w.add(
            "b.so",
            Fixtures.stepPlugin(
                "002_half",
                up: """
                    for (int i = 1; i <= 3; i++) {
                        char d[32]; snprintf(d, sizeof d, "{\\"n\\":%d}", i); host->insert(txn, "things", d); }
                    host->set_error(txn, "the third-party API said no");
                    return MIGRATOR_ERROR;
                    """))
        try w.add("c.so", Fixtures.stepPlugin("003_after", up: #"return host->insert(txn, "later", "{}");"#))
        let r = try w.run(["apply"])
        #expect(r.status == 1)
        #expect(
            r.stderr.contains("'002_half'") && r.stderr.contains("b.so")
                && r.stderr.contains("the third-party API said no"), "\(r.stderr)")
        #expect(try w.count("things") == 1, "no partial documents from 002")
        #expect(try w.count("later") == 0, "apply stopped at the failure")
        #expect(try w.states() == ["001_make": "applied", "002_half": "failed", "003_after": "pending"])
        let failed = try w.history().last ?? [:]
        #expect(failed["outcome"] as? String == "failed")
        #expect(failed["migration_id"] as? String == "002_half")
        #expect(failed["error"] as? String == "the third-party API said no")
        let check = try w.run(["status", "--check"])
        #expect(check.status == 5)
    }

    @Test(arguments: Backend.allCases)
    func hostErrorsReachThePlugin(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add(
            "a.so",
            Fixtures.stepPlugin(
                "001_bad_filter",
                up: """
                    uint64_t n;
                    migrator_status st = host->count(txn, "users", "{\\"age\\":{\\"$bogus\\":1}}", &n);
                    if (st != MIGRATOR_INVALID) return MIGRATOR_ERROR;
                    const char *why = host->last_error(txn);
                    if (!why || !strstr(why, "$bogus")) return MIGRATOR_ERROR;
                    if (host->insert(txn, "users", "{not json") != MIGRATOR_INVALID) return MIGRATOR_ERROR;
                    if (host->insert(txn, "_migrations", "{}") != MIGRATOR_INVALID) return MIGRATOR_ERROR;
                    if (host->insert(txn, NULL, "{}") != MIGRATOR_INVALID) return MIGRATOR_ERROR;
                    if (host->insert(txn, "users", "{\\"_id\\":1}") != MIGRATOR_OK) return MIGRATOR_ERROR;
                    if (host->insert(txn, "users", "{\\"_id\\":1}") != MIGRATOR_DUPLICATE_KEY) return MIGRATOR_ERROR;
                    if (host->drop_index(txn, "users", "nope") != MIGRATOR_NOT_FOUND) return MIGRATOR_ERROR;
                    migrator_cursor *c; const char *doc; size_t len;
                    if (host->find(txn, "users", NULL, &c) != MIGRATOR_OK) return MIGRATOR_ERROR;
                    if (host->cursor_next(c, &doc, &len) != MIGRATOR_OK || doc[len] != 0) return MIGRATOR_ERROR;
                    if (host->cursor_next(c, &doc, &len) != MIGRATOR_DONE) return MIGRATOR_ERROR;
                    if (host->cursor_close(c) != MIGRATOR_OK) return MIGRATOR_ERROR;
                    if (host->cursor_close(c) != MIGRATOR_INVALID) return MIGRATOR_ERROR;      /* closed twice */
                    if (host->cursor_next(c, &doc, &len) != MIGRATOR_INVALID) return MIGRATOR_ERROR;
                    if (host->find(txn, "users", NULL, &c) != MIGRATOR_OK) return MIGRATOR_ERROR; /* left open */
                    return MIGRATOR_OK;
                    """))
        let r = try w.run(["apply"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try w.count("users") == 1)
    }

    @Test(arguments: Backend.allCases)
    func crashingPluginLeavesNothingAndIsRetried(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add("a.so", Fixtures.stepPlugin("001_first", up: #"return host->insert(txn, "things", "{\"n\":1}");"#))
        try w.add(
            "b.so",
            Fixtures.stepPlugin(
                "002_crashy",
                up: """
                    for (int i = 0; i < 1000; i++) host->insert(txn, "things", "{\\"n\\":2}");
                    if (getenv("MIGRATION_CRASH_NOW")) raise(SIGKILL);
                    return MIGRATOR_OK;
                    """))
        // The plugin kills its own process: that is the worker, so the run
        // reports the step as failed, names the cause, and exits 1.
        let crashed = try w.run(["apply"], environment: ["MIGRATION_CRASH_NOW": "1"])
        #expect(crashed.status == 1, "\(crashed.stderr)")
        #expect(
            crashed.stderr.contains("migration '002_crashy' (b.so) failed during up: the worker was killed by SIGKILL"),
            "\(crashed.stderr)")
        #expect(try w.count("things") == 1, "nothing of 002 survived")
        #expect(try w.status()["interrupted"] is NSNull, "the runner itself was not interrupted")
        #expect(try w.states()["002_crashy"] == "failed")
        // The next apply simply retries.
        let again = try w.run(["apply", "--lock-timeout", "1"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try w.count("things") == 1001)
        let history = try w.history()
        #expect(history.map { $0["outcome"] as? String ?? "" } == ["applied", "failed", "applied"])
        #expect((history[1]["error"] as? String)?.contains("killed by SIGKILL") == true)
        // Written by the worker and by the runner: both name the process the operator ran.
        #expect(history[0]["applied_by"] as? String == history[1]["applied_by"] as? String)
    }

    // MARK: Refusals

    @Test(arguments: Backend.allCases)
    func outOfOrderIsRefused(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;"))
        try w.add("c.so", Fixtures.stepPlugin("003_c", up: "return MIGRATOR_OK;"))
        #expect(try w.run(["apply"]).status == 0)
        try w.add("b.so", Fixtures.stepPlugin("002_b", up: "return MIGRATOR_OK;"))
        let r = try w.run(["apply"])
        #expect(r.status == 4)
        #expect(r.stderr.contains("'002_b' (b.so)") && r.stderr.contains("--allow-out-of-order"), "\(r.stderr)")
        #expect(try w.states()["002_b"] == "pending")
        #expect(try w.run(["validate"]).status == 4)
        #expect(try w.run(["apply", "--allow-out-of-order"]).status == 0)
        #expect(try w.states()["002_b"] == "applied")
    }

    @Test(arguments: Backend.allCases)
    func missingPluginIsReported(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;"))
        try w.add("b.so", Fixtures.stepPlugin("002_b", up: "return MIGRATOR_OK;"))
        #expect(try w.run(["apply"]).status == 0)
        unlink(w.dir + "/b.so")
        #expect(try w.states()["002_b"] == "missing")
        #expect(try w.run(["status", "--check"]).status == 5)
        #expect(try w.run(["status"]).status == 0)
        try w.add("c.so", Fixtures.stepPlugin("003_c", up: "return MIGRATOR_OK;"))
        let r = try w.run(["apply"])
        #expect(r.status == 4)
        #expect(
            r.stderr.contains("newer than these migrations") && r.stderr.contains("'002_b' (from b.so)"), "\(r.stderr)")
        #expect(try w.run(["apply", "--allow-missing"]).status == 0)
        let rb = try w.run(["rollback", "--all", "--yes"])
        #expect(
            rb.status == 4
                && rb.stderr.contains("cannot roll back '002_b': nothing provides it (it was applied from b.so)"),
            "\(rb.stderr)")
    }

    @Test(arguments: Backend.allCases)
    func changedChecksumIsRefused(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;", checksum: "v1"))
        #expect(try w.run(["apply"]).status == 0)
        unlink(w.dir + "/a.so")
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;", checksum: "v2"))
        try w.add("b.so", Fixtures.stepPlugin("002_b", up: "return MIGRATOR_OK;"))
        let r = try w.run(["apply"])
        #expect(r.status == 4)
        #expect(
            r.stderr.contains("'001_a'") && r.stderr.contains("a.so") && r.stderr.contains("'v2'")
                && r.stderr.contains("'v1'"), "\(r.stderr)")
        #expect(try w.states()["002_b"] == "pending")
        let s = try w.status()
        let first = (s["migrations"] as? [[String: Any]])?.first
        #expect(first?["changed"] as? Bool == true)
        // The declared checksum decides "edited"; a changed file hash alone
        // is a note under --verbose, never a warning on every run.
        let v = try w.run(["validate"])
        #expect(v.status == 4 && !v.stderr.contains("SHA-256"), "\(v.stderr)")
        let verbose = try w.run(["validate", "--verbose"])
        #expect(verbose.stderr.contains("note: '001_a' was applied from a.so with SHA-256"), "\(verbose.stderr)")
        // An edited applied migration is not "up to date": status --check says so.
        #expect(try w.run(["status", "--check"]).status == 5)
    }

    // MARK: create

    @Test func createdCMigrationCompilesAndApplies() throws {
        let w = try Workspace()
        try w.add("a.so", Fixtures.stepPlugin("007_a", up: "return MIGRATOR_OK;"))
        #expect(try w.run(["apply"]).status == 0)
        let out = w.root + "/src"
        let r = try w.run(["create", "Add User Settings", "Defaults per user", "--lang", "c", "--out", out])
        #expect(r.status == 0, "\(r.stderr)")
        let path = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(path.hasSuffix("/008_add_user_settings.c"))
        try Fixtures.compilePlugin(try String(contentsOfFile: path, encoding: .utf8), name: "008.so", in: w.dir)
        let apply = try w.run(["apply"])
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(try w.states()["008_add_user_settings"] == "applied")
        // The next one counts the source just written.
        let next = try w.run(["create", "Second One", "--lang", "c", "--out", out])
        #expect(next.stdout.contains("009_second_one.c"))
    }

    @Test func createdSwiftMigrationTypeChecks() throws {
        let w = try Workspace()
        let r = try w.run(["create", "Add Audit Log", "--out", w.root])
        #expect(r.status == 0)
        let path = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(path.hasSuffix("/001_add_audit_log.swift"))
        let tc = try Fixtures.typecheckSwift(path)
        #expect(tc.status == 0, "\(tc.output)")
    }

    // MARK: The descriptor cache behind status

    @Test func statusReusesDescriptorsOnlyForUnchangedFiles() throws {
        let w = try Workspace()
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;", checksum: "v1"))
        #expect(try w.run(["apply"]).status == 0)
        #expect(try w.run(["status"]).status == 0)  // writes the cache
        let cachePath = w.db + "/plugin-descriptors.json"
        let cache = try String(contentsOfFile: cachePath, encoding: .utf8)
        #expect(cache.contains("\"001_a\""))
        // Prove the cache is read: doctor the cached name; status shows it.
        try cache.replacingOccurrences(of: "Step 001_a", with: "Doctored").write(
            toFile: cachePath, atomically: true, encoding: .utf8)
        let s = try w.status()
        #expect((s["migrations"] as? [[String: Any]])?.first?["name"] as? String == "Doctored")
        // A rebuilt plugin (new identity) is loaded again, never trusted from the cache.
        unlink(w.dir + "/a.so")
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;", checksum: "v2"))
        let fresh = (try w.status()["migrations"] as? [[String: Any]])?.first
        #expect(fresh?["name"] as? String == "Step 001_a")
        #expect(fresh?["changed"] as? Bool == true)
        // apply never runs from the cache: it loads and checks the file.
        let r = try w.run(["apply"])
        #expect(r.status == 4 && r.stderr.contains("'v2'"))
    }
}

@Suite("example app: auto-migrate and health (end to end)")
struct ExampleAppTests {
    func app(_ w: Workspace, _ env: [String: String]) throws -> (status: Int32, health: [String: Any]) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Fixtures.productsDirectory + "/example-app")
        p.arguments = ["--once"]
        p.environment = ProcessInfo.processInfo.environment.merging(
            ["MIGRATOR_DB": w.db, "MIGRATOR_DIR": w.dir], uniquingKeysWith: { $1 }
        )
        .merging(env, uniquingKeysWith: { $1 })
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, (try JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:])
    }

    /// The operations guide's combination: the app auto-migrates its own
    /// in-process migration, and `migrator apply` runs the plugins. Each
    /// leaves the other's records alone.
    @Test func appAndPluginRunnerShareOneDatabase() throws {
        let w = try Workspace(examples: true)
        try w.importSample()
        // The app starts first, with no plugins of its own: it applies 006.
        let first = try app(w, ["AUTO_MIGRATE": "true", "MIGRATOR_DIR": w.root + "/none"])
        #expect(first.status == 0 && first.health["status"] as? String == "healthy", "\(first.health)")
        // The plugin runner applies 001–005: 006 is the app's, not "missing",
        // and does not make the plugins out of order.
        let apply = try w.run(["apply"])
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(apply.stderr.contains("applied 5 migration(s)"), "\(apply.stderr)")
        let states = try w.states()
        #expect(states.count == 6 && states.values.allSatisfy { $0 == "applied" }, "\(states)")
        let entry = (try w.status()["migrations"] as? [[String: Any]])?.first {
            $0["id"] as? String == "006_app_sessions"
        }
        #expect(entry?["plugin"] as? String == "in-process" && entry?["app"] as? String == "example-app")
        #expect(try w.run(["status"]).stdout.contains("applied (in-process: example-app)"))
        #expect(try w.run(["status", "--check"]).status == 0)
        #expect(try w.run(["apply"]).stderr.contains("nothing to apply"))
        // Only the app rolls back its own migration.
        let rollback = try w.run(["rollback", "--last", "1"])
        #expect(rollback.status == 4)
        #expect(
            rollback.stderr.contains("'006_app_sessions'")
                && rollback.stderr.contains("rolled back by the app that owns it"),
            "\(rollback.stderr)")
        // The app, restarted, sees the plugins' records as someone else's.
        let again = try app(w, ["AUTO_MIGRATE": "true", "MIGRATOR_DIR": w.root + "/none"])
        #expect(again.status == 0 && again.health["status"] as? String == "healthy", "\(again.health)")
    }

    @Test func autoMigratesAndReportsHealth() throws {
        let w = try Workspace(examples: true)
        try w.importSample()
        let before = try app(w, [:])
        #expect(before.status == 1)
        #expect(before.health["status"] as? String == "unhealthy", "pending migrations and no auto-migrate")
        let after = try app(w, ["AUTO_MIGRATE": "true"])
        #expect(after.status == 0)
        #expect(after.health["status"] as? String == "healthy")
        let migrations = (after.health["migrations"] as? [String: Any])?["migrations"] as? [[String: Any]] ?? []
        #expect(migrations.count == 6)
        #expect(
            migrations.last?["id"] as? String == "006_app_sessions"
                && migrations.last?["plugin"] as? String == "in-process")
        // The CLI sees the app's migration as applied, owned by the app.
        #expect(try w.states()["006_app_sessions"] == "applied")
        #expect(try w.run(["apply"]).status == 0)
    }
}
