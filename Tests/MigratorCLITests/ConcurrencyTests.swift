import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("locking and concurrent runs (end to end)")
struct ConcurrencyTests {
    /// Each migration n appends {"n": n} and fails unless exactly n-1
    /// documents precede it: applying out of order or twice is detected.
    static func orderedPlugin(_ n: Int) -> String {
        Fixtures.stepPlugin(
            String(format: "%03d_step", n),
            up: """
                uint64_t have = 0;
                migrator_status st = host->count(txn, "log", NULL, &have);
                if (st != MIGRATOR_OK) return st;
                if (have != \(n - 1)) { host->set_error(txn, "out of order"); return MIGRATOR_ERROR; }
                return host->insert(txn, "log", "{\\"n\\":\(n)}");
                """)
    }

    /// The suite's size of bench/concurrency.sh: 8 runners, 30 migrations.
    @Test func concurrentRunnersApplyEachMigrationOnceInOrder() throws {
        let w = try Workspace()
        for n in 1...30 { try w.add(String(format: "p%03d.so", n), Self.orderedPlugin(n)) }
        let runners = try (0..<8).map { _ in
            try launchMigrator(["apply", "--db", w.db, "--dir", w.dir, "--lock-timeout", "120"])
        }
        for r in runners {
            try r.stdin.fileHandleForWriting.close()
            let err = String(decoding: r.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            r.process.waitUntilExit()
            #expect(r.process.terminationStatus == 0, "\(err)")
        }
        #expect(try w.count("log") == 30)
        let history = try w.history()
        #expect(history.count == 30, "one attempt per migration, no failures")
        #expect(history.map { $0["migration_id"] as? String ?? "" } == (1...30).map { String(format: "%03d_step", $0) })
    }

    @Test func lockTimeoutNamesTheHolderAndAStaleLockIsTakenOver() throws {
        let w = try Workspace()
        try w.add(
            "slow.so",
            Fixtures.stepPlugin(
                "001_slow",
                up: """
                    for (int i = 0; i < 100; i++) host->insert(txn, "things", "{}");
                    fprintf(stderr, "slow step running\\n"); fflush(stderr);
                    /* Hold the lock until the test says so (it kills us first); a
                       bound so that a dead test cannot leave us running forever. */
                    const char *release = getenv("MIGRATION_RELEASE_FILE");
                    for (int i = 0; i < 600000 && access(release, F_OK) != 0; i++) usleep(1000);
                    return MIGRATOR_OK;
                    """))
        let slow = try launchMigrator(
            ["apply", "--db", w.db, "--dir", w.dir], environment: ["MIGRATION_RELEASE_FILE": w.root + "/release"])
        // Wait until the step runs, i.e. the lock is held.
        let seen = slow.stderr(until: "slow step running")
        #expect(seen.contains("slow step running"))

        // The holder is inside its step until we kill it: no timing involved.
        let blocked = try w.run(["apply", "--lock-timeout", "0"])
        #expect(blocked.status == 3)
        #expect(blocked.stderr.contains("locked by apply (pid \(slow.process.processIdentifier)"), "\(blocked.stderr)")
        // Writes through `db` wait like a run does, and say for whom.
        let importing = try migrator(["db", "import", "things", "-", "--db", w.db, "--lock-timeout", "0"], input: "{}")
        #expect(importing.status == 3, "\(importing.stderr)")
        #expect(
            importing.stderr.contains("waiting for the run lock held by apply (pid \(slow.process.processIdentifier)")
                && importing.stderr.contains("(migration 001_slow)"), "\(importing.stderr)")
        // Readers are not blocked, and see the run.
        let status = try w.run(["status"])
        #expect(status.status == 0)
        #expect(status.stdout.contains("migrating now: locked by apply"))
        #expect(try w.run(["unlock"], dir: false).status == 3, "a live lock is never broken")
        #expect(try w.count("things") == 0, "readers see no half-applied migration")

        kill(slow.process.processIdentifier, SIGKILL)
        slow.process.waitUntilExit()
        #expect(try w.run(["status"]).stdout.contains("interrupted at 001_slow"))
        let unlock = try w.run(["unlock"], dir: false)
        #expect(unlock.status == 0 && unlock.stdout.contains("cleared the record left by apply"))
        #expect(try w.history().map { $0["outcome"] as? String ?? "" } == ["interrupted"])
        #expect(!(try w.run(["status"]).stdout.contains("interrupted at")))
    }

    @Test func statusJSONFollowsItsSchema() throws {
        let w = try Workspace(examples: true)
        try w.importSample()
        #expect(try w.run(["apply", "--target", "002_user_preferences"]).status == 0)
        let s = try w.status()
        #expect(Set(s.keys).isSuperset(of: ["database", "migrations", "summary"]))
        #expect(s["database"] as? String == w.db)
        let migrations = s["migrations"] as? [[String: Any]] ?? []
        #expect(migrations.count == 5)
        for m in migrations {
            #expect(
                Set(m.keys) == [
                    "id", "name", "description", "version", "state", "applied_at", "plugin", "checksum", "changed",
                ])
            for k in ["id", "name", "description", "version", "state"] { #expect(m[k] is String, "\(k)") }
            #expect(m["changed"] is Bool)
            #expect(["applied", "pending", "failed", "missing"].contains(m["state"] as? String ?? ""))
            #expect(m["state"] as? String == "applied" ? m["applied_at"] is String : m["applied_at"] is NSNull)
        }
        let summary = s["summary"] as? [String: Int] ?? [:]
        #expect(summary == ["applied": 2, "pending": 3, "failed": 0, "missing": 0])
        // The documented deployment script (status, then migrate) works as written.
        let script = """
            m="\(migratorBinary) --db \(w.db) --dir \(w.dir)"
            $m status > /dev/null
            if [ $? -eq 0 ]; then
                $m migrate
                if [ $? -eq 0 ]; then echo "Migrations completed successfully"
                else echo "Migration failed - rolling back deployment"; exit 1; fi
            fi
            """
        let r = try Fixtures.run("/bin/sh", ["-c", script])
        #expect(r.status == 0 && r.output.contains("Migrations completed successfully"), "\(r.output)")
    }

    /// The suite's size of bench/crash-torture.sh: 3 kills over 20,000 users.
    @Test func crashTortureThreeKills() throws {
        let r = try Fixtures.run(
            "/bin/bash", [Fixtures.packageRoot + "/bench/crash-torture.sh", "3", "20000", "1234"],
            environment: ["MIGRATOR": migratorBinary])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("3 kills, 3 landed in a transaction, 0 inconsistencies"), "\(r.output)")
    }
}
