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

    @Test("bad connections fail fast with the URI redacted")
    func badInputs() throws {
        let socket = PostgresServer.socketDirectory
        let cases: [(String, String)] = [
            ("postgresql://password_user:wrong-secret@/migrator_test?host=\(socket)", "authentication failed"),
            ("postgresql://migrator@/no_such_database?host=\(socket)", "no_such_database"),
            ("postgresql://migrator:some-secret@127.0.0.1:1/x?connect_timeout=2", "127.0.0.1"),
            // A role without rights on the schema (nor to create one).
            (
                "postgresql://limited_user:some-secret@/migrator_test?host=\(socket)&port=5432&schema=locked",
                "permission denied"
            ),
        ]
        for (uri, expected) in cases {
            let start = Date()
            let r = try migrator(["apply", "--db", uri, "--dir", Fixtures.temporaryDirectory("empty")])
            #expect(r.status == 1 || r.status == 2, "\(uri): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains(expected), "\(r.stderr)")
            #expect(!r.stderr.contains("secret"), "the password leaked: \(r.stderr)")
            #expect(Date().timeIntervalSince(start) < 30)
        }
    }

    /// Every command, given a URI with a password, never shows it: not on
    /// stdout or stderr, in text or JSON, in reports, logs or the history;
    /// and a password on the command line (visible in ps) is warned about.
    @Test("a password in the URI is never shown")
    func aPasswordInTheURIIsNeverShown() throws {
        let admin = try Connection(uri: PostgresServer.uri)
        _ = try admin.run("GRANT CREATE ON DATABASE migrator_test TO password_user")
        let schema = PostgresServer.freshSchema("secret")
        defer { _ = try? admin.run("DROP SCHEMA IF EXISTS \(schema) CASCADE") }
        let secret = "right-password"
        let uri = PostgresServer.uri(user: "password_user", password: secret) + "&schema=" + schema
        let w = try Workspace()
        for n in 1...2 { try w.add(String(format: "p%03d.so", n), ConcurrencyTests.orderedPlugin(n)) }
        let db = ["--db", uri]
        let dir = ["--dir", w.dir]
        let commands: [([String], Int32)] = [
            // verify: the fixtures' down does not undo their up (exit 4); backup: not on PostgreSQL (4).
            (["apply", "--dry-run", "--json"] + db + dir, 0), (["verify", "--json"] + db + dir, 4),
            (["apply"] + db + dir, 0), (["apply"] + db + dir, 0), (["apply", "--log-format", "json"] + db + dir, 0),
            (["status"] + db + dir, 0), (["status", "--json"] + db + dir, 0),
            (["status", "--log-format", "json"] + db + dir, 0), (["history"] + db, 0), (["history", "--json"] + db, 0),
            (["validate"] + db + dir, 0), (["config"] + db, 0), (["db", "count", "log"] + db, 0),
            (["db", "find", "log"] + db, 0), (["db", "collections"] + db, 0),
            (["backup", "--out", w.root + "/b"] + db, 4),
            (["rollback", "--last", "1"] + db + dir, 0), (["rollback", "nonesuch"] + db + dir, 4),
            (["unlock"] + db, 0),
        ]
        for (args, code) in commands {
            let r = try migrator(args)
            #expect(r.status == code, "\(args.prefix(3)): \(r.stderr)")
            #expect(!r.stdout.contains(secret) && !r.stderr.contains(secret), "\(args.prefix(3)) showed the password")
            #expect(r.stderr.contains("the password in --db is visible"), "\(args.prefix(3)): \(r.stderr)")
        }
        let status = try migrator(["status", "--json"] + dir, environment: ["MIGRATOR_DB": uri])
        #expect(status.stdout.contains("password_user:***@"), "\(status.stdout)")
        #expect(!status.stderr.contains("visible"), "no warning for a URI from the environment: \(status.stderr)")
        // The records themselves.
        let history = try PostgresDocumentStore(uri: PostgresServer.uri, schema: schema).read { txn in
            try txn.withSystemAccess { try txn.findAll("_migrations_history") + txn.findAll("_migrations") }
        }
        #expect(!history.isEmpty && !history.map(\.serialized).joined().contains(secret))
    }

    /// The password from a file (owner-only), never on the command line: the
    /// runner's connections and the worker's use it, and nothing shows it.
    @Test("a password file gives the PostgreSQL password")
    func aPasswordFileGivesThePassword() throws {
        // password_user may create schemas (Tests/Postgres/server.sh grants it).
        let admin = try Connection(uri: PostgresServer.uri)
        let schema = PostgresServer.freshSchema("pwfile")
        defer { _ = try? admin.run("DROP SCHEMA IF EXISTS \(schema) CASCADE") }
        let uri = PostgresServer.uri(user: "password_user") + "&schema=" + schema
        let w = try Workspace()
        for n in 1...2 { try w.add(String(format: "p%03d.so", n), ConcurrencyTests.orderedPlugin(n)) }
        let file = w.root + "/pg.password"
        try "right-password\n".write(toFile: file, atomically: false, encoding: .utf8)
        #expect(chmod(file, 0o600) == 0)
        let without = try migrator(["apply", "--db", uri, "--dir", w.dir], environment: ["PGPASSWORD": ""])
        #expect(without.status == 1, "\(without.stderr)")
        let with = try migrator(["apply", "--db", uri, "--dir", w.dir, "--password-file", file])
        #expect(with.status == 0, "\(with.stderr)")
        #expect(!with.stderr.contains("right-password") && !with.stdout.contains("right-password"))
        #expect(!with.stderr.contains("visible"), "no password on the command line: \(with.stderr)")
        // From the config file too.
        try "password_file = \(file)\n".write(toFile: w.root + "/m.conf", atomically: false, encoding: .utf8)
        let status = try migrator(["status", "--check", "--db", uri, "--dir", w.dir, "--config", w.root + "/m.conf"])
        #expect(status.status == 0 && status.stdout.contains("2 applied"), "\(status.stdout)\(status.stderr)")
        // A password file others can read is refused, naming it.
        #expect(chmod(file, 0o644) == 0)
        let loose = try migrator(["status", "--db", uri, "--dir", w.dir, "--password-file", file])
        #expect(
            loose.status == 4 && loose.stderr.contains("password file '\(file)' is readable by others"),
            "\(loose.stderr)")
    }

    /// Several hosts share one PostgreSQL database and take the same bundle
    /// at once: the run lock makes every migration run once, and the bundle
    /// is recorded once with its sequence.
    @Test("hosts sharing one database take one bundle: each migration once")
    func hostsSharingADatabaseTakeABundleOnce() throws {
        let f = try BundleTests.Fleet()
        for n in 3...8 { try f.w.add(String(format: "p%03d.so", n), ConcurrencyTests.orderedPlugin(n)) }
        let bundle = try f.bundle(11)
        let db = Database()
        let runs = try (1...6).map { _ in
            try launchMigrator([
                "apply", "--from", bundle, "--trusted-keys", f.keys, "--db", db.uri, "--lock-timeout", "120",
            ])
        }
        for run in runs {
            let err = String(decoding: run.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            run.process.waitUntilExit()
            #expect(run.process.terminationStatus == 0, "\(err)")
        }
        #expect(try db.count("log") == 8)
        let outcomes = try db.history().compactMap { $0.objectValue?["outcome"]?.stringValue }
        #expect(outcomes == Array(repeating: "applied", count: 8), "\(outcomes)")
        let records = try migrator(["db", "find", "_migrations_bundles", "--db", db.uri]).stdout
        #expect(records.contains(#""sequence":11"#), "\(records)")
        // An older bundle afterwards: refused here too.
        let older = try f.apply(try f.bundle(10), []).status
        #expect(older == 0, "another host's own database is free to take it")
        let refused = try migrator(["apply", "--from", try f.bundle(9), "--trusted-keys", f.keys, "--db", db.uri])
        #expect(refused.status == 4 && refused.stderr.contains("older than #11"), "\(refused.stderr)")
    }

    /// The red team's attack: runner A's lock connection is terminated
    /// while A's `down` runs; runner B then takes the lock and plans the
    /// same `down`. B's step waits for A's (the step transaction lock), then
    /// finds it done and skips it: the down runs once, one history entry,
    /// and B writes no false "interrupted".
    @Test("a runner that lost its lock mid-step never has its step run twice")
    func aLostLockNeverRunsAStepTwice() throws {
        let w = try Workspace()
        let db = Database()
        let release = w.root + "/release"
        try w.add("p001.so", ConcurrencyTests.orderedPlugin(1))
        try w.add(
            "p002.so",
            Fixtures.stepPlugin(
                "002_slow_down", up: #"return host->insert(txn, "log", "{\"n\":2}");"#,
                down: """
                    uint64_t gone = 0;
                    fprintf(stderr, "down running\\n"); fflush(stderr);
                    for (int i = 0; i < 400 && access("\(release)", F_OK) != 0; i++) usleep(25000);
                    if (host->remove(txn, "log", "{\\"n\\":2}", &gone) != MIGRATOR_OK) return MIGRATOR_ERROR;
                    if (gone != 1) {
                        host->set_error(txn, "nothing to undo: the down ran twice"); return MIGRATOR_ERROR; }
                    return MIGRATOR_OK;
                    """))
        #expect(try migrator(["apply", "--db", db.uri, "--dir", w.dir]).status == 0)
        let a = try launchMigrator(["rollback", "--last", "1", "--db", db.uri, "--dir", w.dir])
        _ = a.stderr(until: "down running")
        // A's session (the one holding the run lock) goes away; its worker's
        // step transaction, on another connection, goes on.
        let admin = try Connection(uri: PostgresServer.uri)
        let key = "migrator run " + db.schema  // the run lock's advisory key (PostgresRunLock.lockKey)
        let killed = try admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                + "AND objsubid = 1 AND objid::bigint = (hashtext($1)::bigint & 4294967295)", [key])
        #expect(killed.count == 1, "the lock's session was found and terminated")
        let b = try launchMigrator(["rollback", "--last", "1", "--db", db.uri, "--dir", w.dir, "--lock-timeout", "20"])
        Thread.sleep(forTimeInterval: 1)
        try Data().write(to: URL(fileURLWithPath: release))
        let bErr = String(decoding: b.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        b.process.waitUntilExit()
        let aErr = String(decoding: a.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        a.process.waitUntilExit()
        #expect(!aErr.contains("ran twice") && !bErr.contains("ran twice"), "A: \(aErr)\nB: \(bErr)")
        #expect(try db.count("log") == 1)
        let outcomes = try db.history().compactMap { $0.objectValue?["outcome"]?.stringValue }
        #expect(outcomes.filter { $0 == "rolled_back" }.count == 1, "\(outcomes)\nA: \(aErr)\nB: \(bErr)")
        #expect(!outcomes.contains("interrupted"), "\(outcomes)")
    }

    /// The runner's own connection (not the worker's, not the lock's) is
    /// dropped while a step runs, which then commits: the runner reads the
    /// outcome again on a fresh connection and reports the truth, where it
    /// used to say "its changes were rolled back".
    /// `001_step`, then `002_waits`, which says "step running" and waits
    /// (up to 10 s) for the file `release` before it inserts.
    static func addWaitingSteps(to w: Workspace, release: String) throws {
        try w.add("p001.so", ConcurrencyTests.orderedPlugin(1))
        try w.add(
            "p002.so",
            Fixtures.stepPlugin(
                "002_waits",
                up: """
                    fprintf(stderr, "step running\\n"); fflush(stderr);
                    for (int i = 0; i < 400 && access("\(release)", F_OK) != 0; i++) usleep(25000);
                    return host->insert(txn, "log", "{\\"n\\":2}");
                    """))
    }

    @Test("a dropped runner connection: the outcome is re-read, never guessed")
    func aDroppedConnectionDoesNotGuessTheOutcome() throws {
        let w = try Workspace()
        let db = Database()
        let tag = "outcome_\(UInt32.random(in: 0..<UInt32.max))"
        let uri = db.uri + "&application_name=" + tag
        let release = w.root + "/release"
        try Self.addWaitingSteps(to: w, release: release)
        let run = try launchMigrator(["apply", "--db", uri, "--dir", w.dir])
        _ = run.stderr(until: "step running")
        // Idle and holding no advisory lock: the runner's store connection
        // (the worker's is in a transaction, the lock's holds the lock).
        let admin = try Connection(uri: PostgresServer.uri)
        var dropped = 0
        // On a busy machine the runner may still be between statements: look again.
        for _ in 0..<50 where dropped == 0 {
            dropped = try admin.execute(
                "SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a WHERE a.application_name = $1 "
                    + "AND a.state = 'idle' AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid "
                    + "AND l.locktype = 'advisory' AND l.granted)", [tag]
            ).count
            if dropped == 0 { Thread.sleep(forTimeInterval: 0.1) }
        }
        #expect(dropped >= 1, "the runner's connection was found")
        try Data().write(to: URL(fileURLWithPath: release))
        let err = String(decoding: run.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.process.waitUntilExit()
        #expect(!err.contains("rolled back"), "\(err)")
        #expect(run.process.terminationStatus == 0, "\(err)")
        #expect(try db.count("log") == 2)
    }

    /// The server goes down mid-step (an immediate shutdown, as a crash) and
    /// stays down: nothing can say whether the step committed, so the run
    /// ends with `outcome_unknown`, exit 6, never "rolled back". Once the
    /// server is back, `status` tells the truth. Its own server: stopping
    /// the shared one would fail every other test.
    @Test("a server that goes away mid-step: the outcome is unknown, exit 6")
    func aServerGoneMidStepIsOutcomeUnknown() throws {
        let w = try Workspace()
        let dir = "/tmp/migrator-pg-halt-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        let started = PostgresServer.runScript(["start", dir])
        defer { _ = PostgresServer.runScript(["stop", dir]) }
        let uri = try #require(
            started.output.split(separator: "\n").last(where: { $0.hasPrefix("postgresql://") }).map(String.init),
            "\(started.output)")
        let release = w.root + "/release"
        try Self.addWaitingSteps(to: w, release: release)
        let run = try launchMigrator(["apply", "--db", uri, "--dir", w.dir])
        _ = run.stderr(until: "step running")
        let halted = PostgresServer.runScript(["halt", dir])
        #expect(halted.status == 0, "\(halted.output)")
        try Data().write(to: URL(fileURLWithPath: release))
        let err = String(decoding: run.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.process.waitUntilExit()
        #expect(run.process.terminationStatus == 6, "\(err)")
        #expect(err.contains("whether it committed is unknown") && err.contains("check 'migrator status'"), "\(err)")
        #expect(!err.contains("rolled back"), "\(err)")
        // Back up: the step did not commit, and status says so.
        #expect(PostgresServer.runScript(["restart", dir]).status == 0)
        let status = try migrator(["status", "--json", "--db", uri, "--dir", w.dir])
        #expect(status.status == 0, "\(status.stderr)")
        let list = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        let states = (list?["migrations"] as? [[String: Any]] ?? []).map {
            "\($0["id"] as? String ?? "?")=\($0["state"] as? String ?? "?")"
        }
        #expect(states == ["001_step=applied", "002_waits=pending"], "\(status.stdout)")
    }

    /// `status` and `db …` say what is wrong: a server that cannot be
    /// reached is not "no database", and a reachable one without migrator's
    /// tables says so, naming the schema.
    @Test("an unreachable server and an empty schema are told apart")
    func unreachableIsNotEmpty() throws {
        let w = try Workspace()
        let down = "postgresql://migrator@127.0.0.1:1/x"
        for args in [["db", "count", "users", "--db", down], ["status", "--db", down, "--dir", w.dir]] {
            let r = try migrator(args)
            #expect(r.status == 1, "\(args): \(r.stderr)")
            #expect(r.stderr.contains("cannot connect to") && !r.stderr.contains("no database"), "\(args): \(r.stderr)")
        }
        let schema = PostgresServer.freshSchema("empty")
        let empty = try migrator(["db", "count", "users", "--db", PostgresServer.uri + "&schema=" + schema])
        #expect(empty.status == 1, "\(empty.stderr)")
        #expect(empty.stderr.contains("no migrator tables in schema '\(schema)'"), "\(empty.stderr)")
    }

    @Test("db copy moves a database LMDB → PostgreSQL → LMDB: every digest equal, the records with it")
    func copyBetweenBackends() throws {
        let w = try Workspace()
        for n in 1...3 { try w.add(String(format: "p%03d.so", n), ConcurrencyTests.orderedPlugin(n)) }
        let lmdb = w.dir + "/source.db"
        #expect(try migrator(["apply", "--db", lmdb, "--dir", w.dir]).status == 0)
        let docs = (0..<1200).map { #"{"_id":\#($0),"email":"u\#($0)@x","tags":["a",\#($0 % 5)]}"# }
        let imp = try migrator(["db", "import", "users", "-", "--db", lmdb], input: docs.joined(separator: "\n"))
        #expect(imp.status == 0, "\(imp.stderr)")
        #expect(try migrator(["db", "create-index", "users", "email", "--unique", "--db", lmdb]).status == 0)
        func digest(_ db: String) throws -> String {
            try migrator(["db", "digest", "--db", db]).stdout
        }
        let db = Database()
        let copy = try migrator(["db", "copy", "--from", lmdb, "--to", db.uri])
        #expect(copy.status == 0, "\(copy.stderr)")
        #expect(copy.stderr.contains("copied 4 collections (1209 documents)"), "\(copy.stderr)")
        #expect(try digest(db.uri) == digest(lmdb))
        // The migration records came along: nothing is pending there.
        let status = try migrator(["status", "--json", "--db", db.uri, "--dir", w.dir])
        #expect(status.stdout.components(separatedBy: #""state":"applied""#).count - 1 == 3, "\(status.stdout)")
        #expect(try db.history().count == 3)
        let explain = try migrator(["db", "explain", "users", "--filter", #"{"email":"u7@x"}"#, "--db", db.uri])
        #expect(explain.stdout == "IXSCAN email (1 key)\n")
        // And back, through the CLI's default database for --from.
        let back = w.dir + "/back.db"
        let again = try migrator(["db", "copy", "--to", back], environment: ["MIGRATOR_DB": db.uri])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try digest(back) == digest(lmdb))
        // A target that holds anything is refused, and left as it was.
        let refused = try migrator(["db", "copy", "--from", lmdb, "--to", db.uri])
        #expect(refused.status == 1 && refused.stderr.contains("already holds 4 collections"), "\(refused.stderr)")
        #expect(try db.count("users") == 1200)
        #expect(try migrator(["db", "copy", "--from", lmdb]).status == 2, "--to is required")
        let missing = try migrator(["db", "copy", "--from", w.dir + "/nothing", "--to", w.dir + "/x"])
        #expect(missing.status == 1 && missing.stderr.contains("no database at"), "\(missing.stderr)")
    }

    @Test("the server restarting during a run: a clear lost-connection error, exit 1, nothing half-done")
    func serverRestart() throws {
        // A server of its own: restarting the shared one would disturb other tests.
        let dir = "/tmp/migrator-pg-restart-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        let started = PostgresServer.runScript(["start", dir])
        defer { _ = PostgresServer.runScript(["stop", dir]) }
        try #require(started.status == 0, "\(started.output)")
        let uri = try #require(started.output.split(separator: "\n").last.map(String.init))

        let w = try Workspace()
        let marker = w.root + "/in-step-2"
        let go = w.root + "/go"
        try w.add("p001.so", ConcurrencyTests.orderedPlugin(1))
        // Step 2 says it started, waits until told to go on, then writes.
        try w.add(
            "p002.so",
            Fixtures.stepPlugin(
                "002_step",
                up: """
                    fclose(fopen("\(marker)", "w"));
                    for (int i = 0; i < 600 && access("\(go)", F_OK) != 0; i++) usleep(50000);
                    return host->insert(txn, "log", "{\\"n\\":2}");
                    """))
        let run = try launchMigrator(["apply", "--db", uri, "--dir", w.dir])
        try run.stdin.fileHandleForWriting.close()
        var waited = 0
        while access(marker, F_OK) != 0 && waited < 600 {
            usleep(50_000)
            waited += 1
        }
        try #require(access(marker, F_OK) == 0, "step 2 never started")
        let restart = PostgresServer.runScript(["restart", dir])
        try #require(restart.status == 0, "\(restart.output)")
        fclose(fopen(go, "w"))
        let err = String(decoding: run.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.process.waitUntilExit()
        #expect(run.process.terminationStatus == 1, "\(err)")
        #expect(err.contains("connection") && err.contains("lost"), "\(err)")

        // 001 committed before the restart, 002 did not: nothing half-done.
        let (connect, schema) = ConnectionURI.splitSchema(uri)
        let count = try PostgresDocumentStore(uri: connect, schema: schema ?? "migrator").read { try $0.count("log") }
        #expect(count == 1)
        let again = try migrator(["apply", "--db", uri, "--dir", w.dir])
        #expect(again.status == 0, "\(again.stderr)")
        #expect((again.stdout + again.stderr).contains("applied 002_step"), "\(again.stdout)\(again.stderr)")
    }
}
