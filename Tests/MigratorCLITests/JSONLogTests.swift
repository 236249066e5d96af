import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `--log-format json` (or `MIGRATOR_LOG_FORMAT`, or `log_format` in
/// migrator.conf) on every command: each line on stderr is one JSON object
/// with a timestamp, a level and a stable event name; stdout keeps its data.
@Suite("JSON logs on every command (end to end)")
struct JSONLogTests {
    /// Every line of `stderr` parsed; a line that is not a JSON object with
    /// `ts`, `level` and `event` fails the test.
    static func events(_ stderr: String, _ what: String) -> [[String: Any]] {
        stderr.split(separator: "\n").compactMap { line in
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(
                object?["ts"] is String && object?["level"] is String && object?["event"] is String,
                "\(what): not a JSON log line: \(line)")
            return object
        }
    }

    /// The command paths `migrator --help` lists (`db find` included).
    static func commandPaths() throws -> [[String]] {
        let help = try migrator(["--help"]).stdout
        var lines: [[String]] = []
        var inCommands = false
        for line in help.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "Commands:" {
                inCommands = true
                continue
            }
            guard inCommands else { continue }
            guard line.hasPrefix("  ") else { break }
            lines.append(line.split(separator: " ").map(String.init))
        }
        // A group (`db`, `bundle`) is a first word that starts several lines.
        let firsts = lines.map { $0[0] }
        let paths = lines.map { words in
            firsts.filter { $0 == words[0] }.count > 1 ? Array(words.prefix(2)) : [words[0]]
        }
        return paths
    }

    @Test func usageErrorsOfEveryCommandAreJSON() throws {
        let paths = try Self.commandPaths()
        #expect(paths.count > 25 && paths.contains(["db", "find"]) && paths.contains(["list"]), "\(paths)")
        let settings = Fixtures.temporaryDirectory("jsonconf")
        defer { Fixtures.removeTree(settings) }
        let config = settings + "/migrator.conf"
        try "log_format = text\n[env ci]\nlog_format = json\n".write(toFile: config, atomically: true, encoding: .utf8)
        for path in paths {
            for (args, environment) in [
                (path + ["--log-format", "json", "--no-such-option"], [String: String]()),
                (path + ["--log-format", "text", "--log-format=json", "--no-such-option"], [:]),
                (path + ["--no-such-option"], ["MIGRATOR_LOG_FORMAT": "json"]),
                (path + ["--config", config, "--env", "ci", "--no-such-option"], [:]),
                (path + ["--no-such-option"], ["MIGRATOR_CONFIG": config, "MIGRATOR_ENV": "ci"]),
            ] {
                let r = try migrator(args, environment: environment)
                #expect(r.status == 2, "\(args): \(r.stderr)")
                let events = Self.events(r.stderr, args.joined(separator: " "))
                #expect(
                    events.count == 1 && events.first?["event"] as? String == "usage_error"
                        && (events.first?["message"] as? String)?.contains("--no-such-option") == true,
                    "\(args): \(r.stderr)")
            }
            // --help is data: stdout, nothing on stderr.
            let help = try migrator(path + ["--help", "--log-format", "json"])
            #expect(help.status == 0 && help.stderr.isEmpty && help.stdout.contains("--log-format"), "\(path)")
        }
        for args in [["nosuch", "--log-format", "json"], ["--log-format", "json"], ["db", "--log-format=json"]] {
            let r = try migrator(args)
            #expect(r.status == 2, "\(args)")
            #expect(
                Self.events(r.stderr, "\(args)").first?["event"] as? String == "usage_error", "\(args): \(r.stderr)")
        }
    }

    @Test func anOperatorsDayInJSON() throws {
        let w = try Workspace(examples: true)
        try w.importSample()
        let backups = w.root + "/backups"
        // A plugin that prints to its own stdout and stderr: wrapped too.
        try w.add(
            "loud.so",
            Fixtures.stepPlugin(
                "006_loud",
                up: #"printf("from stdout\n"); fflush(stdout); fprintf(stderr, "from stderr\n"); return MIGRATOR_OK;"#
            ))
        let config = w.root + "/migrator.conf"
        try "log_format = json\n".write(toFile: config, atomically: true, encoding: .utf8)
        let dir = ["--dir", w.dir]
        let db = ["--db", w.db]
        let steps: [([String], Int32)] = [
            (["list"] + dir, 0), (["validate"] + dir + db, 0), (["verify"] + dir + db, 0), (["apply"] + dir + db, 0),
            (["status", "--check"] + dir + db, 0), (["history"] + db, 0),
            (["backup", "--out", backups + "/b1"] + db, 0), (["restore", backups + "/b1", "--yes"] + db, 0),
            (["db", "count", "users"] + db, 0), (["db", "find", "nope", "--filter", "{"] + db, 2),
            (["rollback", "--all"] + dir + db, 2), (["rollback", "001_initial_setup"] + dir + db, 4),
            (["pin"] + dir, 0), (["unlock"] + db, 0),
        ]
        var seen: Set<String> = []
        for (args, code) in steps {
            let r = try migrator(args, environment: ["MIGRATOR_CONFIG": config, "TMPDIR": w.root])
            #expect(r.status == code, "\(args): \(r.stderr)")
            for e in Self.events(r.stderr, args.joined(separator: " ")) { seen.insert(e["event"] as? String ?? "") }
            if args.first == "apply" {
                let output = Self.events(r.stderr, "apply").filter { $0["event"] as? String == "plugin_output" }
                #expect(
                    Set(output.compactMap { $0["message"] as? String }) == ["from stdout", "from stderr"], "\(r.stderr)"
                )
                #expect(!r.stdout.contains("from stdout"), "plugin output reached stdout")
            }
            if args.first == "status" { #expect(r.stdout.contains("6 applied"), "\(r.stdout)") }
        }
        #expect(
            seen.isSuperset(of: ["step_end", "run_end", "backed_up", "restored", "usage_error", "refused", "pinned"]),
            "\(seen)")
    }

    /// A line a plugin prints without flushing still reaches the log when
    /// it then crashes (the worker's stdout is line-buffered), and comes
    /// before the step's failure; a line longer than the limit arrives in
    /// pieces, each its own JSON object.
    @Test func pluginOutputBeforeACrashAndVeryLongLines() throws {
        let w = try Workspace()
        try w.add(
            "long.so",
            Fixtures.stepPlugin(
                "001_long",
                up: #"for (int i = 0; i < 40000; i++) putchar('x'); putchar('\n'); return MIGRATOR_OK;"#))
        try w.add(
            "crash.so", Fixtures.stepPlugin("002_crash", up: #"printf("last words\n"); abort(); return MIGRATOR_OK;"#))
        let r = try migrator(["apply", "--log-format", "json", "--dir", w.dir, "--db", w.db])
        #expect(r.status == 1, "\(r.stderr)")
        let events = Self.events(r.stderr, "apply")
        let output = events.filter { $0["event"] as? String == "plugin_output" }.compactMap { $0["message"] as? String }
        #expect(output.filter { $0.hasPrefix("x") }.map(\.count) == [16384, 16384, 7232], "\(output.map(\.count))")
        let words = events.firstIndex { $0["message"] as? String == "last words" }
        let failure = events.firstIndex { ($0["message"] as? String)?.contains("SIGABRT") == true }
        #expect(words != nil && failure != nil && words! < failure!, "\(r.stderr)")
    }
}
