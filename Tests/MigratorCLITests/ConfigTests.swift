import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// migrator.conf with environments, the precedence of flags, variables and
/// the file, JSON logs, and confirmation before destructive commands.
@Suite("configuration, JSON logs, confirmation (end to end)")
struct ConfigTests {
    func config(_ w: Workspace, _ text: String) throws -> String {
        let path = w.root + "/migrator.conf"
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        return path
    }

    @Test func settingsComeFromFlagsThenVariablesThenTheFile() throws {
        let w = try Workspace()
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;"))
        let path = try config(
            w,
            """
            # shared by every environment
            dir = \(w.dir)
            db = \(w.root)/dev.db
            lock_timeout = 7

            [env prod]
            db = "\(w.db)"
            log_format = json
            """)
        // The file alone: dev.db.
        let plain = try migrator(["config", "--config", path])
        // (The columns are as wide as the longest key.)
        #expect(plain.stdout.contains(try Regex("\\ndb +\\Q\(w.root)/dev.db\\E")), "\(plain.stdout)")
        #expect(plain.stdout.contains("\(path) line 3"), "\(plain.stdout)")
        #expect(plain.stdout.contains(try Regex("\\nlock_timeout +7 ")), "\(plain.stdout)")
        // The environment section wins over the top level, a variable over the file, a flag over both.
        let prod = try migrator(["config", "--config", path], environment: ["MIGRATOR_ENV": "prod"])
        #expect(prod.stdout.contains("\(path) line 7 [env prod]"), "\(prod.stdout)")
        let variable = try migrator(
            ["config", "--config", path, "--env", "prod"], environment: ["MIGRATOR_DB": "/from/env"])
        #expect(variable.stdout.contains("/from/env") && variable.stdout.contains("environment MIGRATOR_DB"))
        let flag = try migrator(
            ["config", "--config", path, "--env", "prod", "--db", "/from/flag"],
            environment: ["MIGRATOR_DB": "/from/env"])
        #expect(flag.stdout.contains("/from/flag") && flag.stdout.contains("flag --db"), "\(flag.stdout)")
        // And a real command uses them: apply in prod writes w.db, with JSON logs.
        let apply = try migrator(["apply", "--config", path, "--env", "prod"])
        #expect(apply.status == 0, "\(apply.stderr)")
        #expect(try w.states() == ["001_a": "applied"])
        #expect(access(w.root + "/dev.db", F_OK) != 0)
        #expect(apply.stderr.split(separator: "\n").allSatisfy { $0.hasPrefix("{\"ts\":") }, "\(apply.stderr)")
    }

    /// A config file someone else could have written is not obeyed (it can
    /// send backups, or the run, anywhere): the implicit ./migrator.conf of
    /// a cron-style run included. Nothing runs; the file and cause are named.
    @Test func aConfigFileOthersCouldWriteIsRefused() throws {
        let w = try Workspace()
        try w.add("p1.so", Fixtures.stepPlugin("001_step", up: "return MIGRATOR_OK;"))
        let config = w.root + "/migrator.conf"
        try "backup_dir = \(w.root)/attacker\n".write(toFile: config, atomically: false, encoding: .utf8)
        #expect(chmod(config, 0o666) == 0)
        let implicit = try migrator(["apply", "--db", w.db, "--dir", w.dir], in: w.root)
        #expect(implicit.status == 4, "\(implicit.stderr)")
        #expect(
            implicit.stderr.contains(
                "config file 'migrator.conf' is writable by everyone (mode 666); anyone who can write to it decides"),
            "\(implicit.stderr)")
        #expect(implicit.stderr.contains("chmod go-w"), "\(implicit.stderr)")
        #expect(try w.states()["001_step"] != "applied")
        #expect(access(w.root + "/attacker", F_OK) != 0)
        // Someone else's file, named explicitly.
        #expect(chmod(config, 0o644) == 0)
        if getuid() == 0 {
            #expect(chown(config, 65534, 65534) == 0)
            let foreign = try migrator(["status", "--config", config, "--db", w.db, "--dir", w.dir])
            #expect(foreign.status == 4 && foreign.stderr.contains("is owned by uid 65534"), "\(foreign.stderr)")
            #expect(chown(config, 0, 0) == 0)
        }
        // In a folder everyone can write (no sticky bit).
        let open = w.root + "/open"
        #expect(mkdir(open, 0o777) == 0 && chmod(open, 0o777) == 0)
        try "log_format = text\n".write(toFile: open + "/migrator.conf", atomically: false, encoding: .utf8)
        let inOpen = try migrator(["status", "--config", open + "/migrator.conf", "--db", w.db, "--dir", w.dir])
        #expect(inOpen.status == 4 && inOpen.stderr.contains("lies in '\(open)'"), "\(inOpen.stderr)")
        // Owned by you and written by you alone: read.
        let ok = try migrator(["apply", "--db", w.db, "--dir", w.dir], in: w.root)
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(FileManager.default.fileExists(atPath: w.root + "/attacker"), "the trusted file is obeyed")
    }

    @Test func aBadConfigFileIsAUsageErrorNamingTheLine() throws {
        let w = try Workspace()
        for (text, why) in [
            ("dir = x\nbackup_directory = /b\n", "line 2: unknown key 'backup_directory' (did you mean 'backup_dir'?)"),
            ("keep = none\n", "line 1: keep must be a whole number of at least 1, got 'none'"),
            ("just words\n", "line 1: expected 'key = value'"),
            ("[production]\n", "line 1: expected a section header like [env production]"),
            ("db = a\ndb = b\n", "line 2: db is set twice here"),
        ] {
            let path = try config(w, text)
            let r = try migrator(["status", "--config", path])
            #expect(r.status == 2, "\(text): \(r.stderr)")
            #expect(r.stderr.contains("\(path) \(why)"), "\(r.stderr)")
        }
        let path = try config(w, "db = x\n[env a]\ndb = y\n")
        let missing = try migrator(["status", "--config", path, "--env", "b"])
        #expect(
            missing.status == 2 && missing.stderr.contains("has no [env b] section (it has: a)"), "\(missing.stderr)")
        #expect(try migrator(["status", "--config", w.root + "/nope.conf"]).status == 2)
    }

    @Test func jsonLogsAreOneObjectPerLine() throws {
        let w = try Workspace()
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: #"host->log(txn, 1, "hello"); return MIGRATOR_OK;"#))
        try w.add("b.so", Fixtures.stepPlugin("002_b", up: #"host->set_error(txn, "boom"); return MIGRATOR_ERROR;"#))
        // As this user (as root, no warning that plugin code runs as root).
        let r = try w.run(["apply", "--log-format", "json", "--run-as", String(getuid())])
        #expect(r.status == 1)
        var events: [[String: Any]] = []
        for line in r.stderr.split(separator: "\n") {
            let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(o?["ts"] is String && o?["level"] is String, "\(line)")
            events.append(o ?? [:])
        }
        let names = events.compactMap { $0["event"] as? String }
        #expect(
            names.starts(with: ["plan", "step_start", "migration_log", "step_end", "step_start", "step_end"]),
            "\(names)")
        #expect(events.contains { $0["event"] as? String == "migration_log" && $0["message"] as? String == "hello" })
        let failed = events.first { $0["event"] as? String == "step_end" && $0["outcome"] as? String == "failed" }
        #expect(failed?["migration"] as? String == "002_b")
        let error = events.last
        #expect(error?["event"] as? String == "error" && error?["code"] as? String == "migration_failed", "\(names)")
        #expect(try w.run(["apply", "--log-format", "yaml"]).status == 2)
    }

    @Test func rollbackAllAsksFirst() throws {
        let w = try Workspace()
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;"))
        #expect(try w.run(["apply"]).status == 0)
        let r = try w.run(["rollback", "--all"])
        #expect(r.status == 2 && r.stderr.contains("rollback --all needs --yes"), "\(r.stderr)")
        #expect(try w.states() == ["001_a": "applied"])
        #expect(try w.run(["rollback", "--all", "--yes"]).status == 0)
        #expect(try w.states() == ["001_a": "pending"])
    }
}
