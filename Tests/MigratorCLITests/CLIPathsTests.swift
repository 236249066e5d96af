import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Command-line paths users run that no other test reaches: each one's
/// output and exit code, success and failure.
@Suite("every command path (end to end)")
struct CLIPathsTests {
    func threeSteps(_ w: Workspace) throws {
        for (i, id) in ["001_a", "002_b", "003_c"].enumerated() {
            try w.add("p\(i).so", Fixtures.stepPlugin(id, up: "return MIGRATOR_OK;"))
        }
    }

    // MARK: apply, rollback, validate, status, history, unlock

    @Test func rollbackLastAndAll() throws {
        let w = try Workspace()
        try threeSteps(w)
        #expect(try w.run(["apply"]).status == 0)
        let last = try w.run(["rollback", "--last", "2"])
        #expect(last.status == 0 && last.stderr.contains("rolled back 2 migration(s)"), "\(last.stderr)")
        #expect(try w.states() == ["001_a": "applied", "002_b": "pending", "003_c": "pending"])
        let all = try w.run(["rollback", "--all", "--yes"])
        #expect(all.status == 0 && all.stderr.contains("rolled back 1 migration(s)"))
        #expect(try w.states().values.allSatisfy { $0 == "pending" })
        let nothing = try w.run(["rollback", "--all", "--yes"])
        #expect(nothing.status == 0 && nothing.stderr.contains("nothing to roll back"))
        let both = try w.run(["rollback", "001_a", "--all"])
        #expect(both.status == 2 && both.stderr.contains("give exactly one of TARGET, --last N or --all"))
        #expect(try w.run(["rollback", "--last", "0"]).status == 2)
    }

    @Test func validateSucceedsAndWarnsAboutGaps() throws {
        let w = try Workspace()
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;"))
        try w.add("d.so", Fixtures.stepPlugin("004_d", up: "return MIGRATOR_OK;"))
        let v = try w.run(["validate"])
        #expect(v.status == 0)
        #expect(v.stdout == "ok: 2 migration(s) checked, 2 pending\n")
        #expect(v.stderr.contains("warning: sequence gap: nothing numbered 2–3 between 1 and 4"), "\(v.stderr)")
    }

    @Test func duplicatesAreReportedOnceEverywhere() throws {
        let w = try Workspace()
        try w.add("one.so", Fixtures.stepPlugin("002_users", up: "return MIGRATOR_OK;"))
        try w.add("two.so", Fixtures.stepPlugin("2_orders", up: "return MIGRATOR_OK;"))
        for args in [["apply"], ["validate"], ["list"], ["status"]] {
            let r = try w.run(args)
            let lines = r.stderr.split(separator: "\n").filter { $0.contains("sequence number 2 is used by both") }
            #expect(lines.count == 1, "\(args): \(r.stderr)")
        }
        #expect(try w.run(["validate"]).stdout.contains("refused: 1 problem(s)"))
    }

    @Test func statusCheckHistoryTableAndUnlock() throws {
        let w = try Workspace()
        try threeSteps(w)
        #expect(try w.run(["status", "--check"]).status == 5, "pending")
        #expect(try w.run(["apply"]).status == 0)
        #expect(try w.run(["status", "--check"]).status == 0)
        let table = try w.run(["history"], dir: false)
        let rows = table.stdout.split(separator: "\n")
        #expect(rows.count == 4 && rows[0].hasPrefix("#") && rows[0].contains("OUTCOME"))
        #expect(rows[1].contains("001_a") && rows[1].contains("applied") && rows[3].contains("003_c"))
        let unlock = try w.run(["unlock"], dir: false)
        #expect(unlock.status == 0 && unlock.stdout.contains("is free; nothing to do"))
        let noDB = try migrator(["unlock", "--db", w.root + "/nothing"])
        #expect(noDB.status == 0 && noDB.stdout.contains("has no database; nothing to unlock"))
    }

    @Test func quietAndVerbose() throws {
        let w = try Workspace()
        try w.add(
            "a.so",
            Fixtures.stepPlugin("001_a", up: #"host->log(txn, MIGRATOR_LOG_DEBUG, "deep detail"); return MIGRATOR_OK;"#)
        )
        try w.add("b.so", Fixtures.stepPlugin("002_b", up: "return MIGRATOR_OK;"))
        let quiet = try w.run(["apply", "--target", "001_a", "--quiet"])
        #expect(quiet.status == 0 && quiet.stderr.isEmpty && quiet.stdout.isEmpty, "\(quiet.stderr)")
        #expect(try w.run(["rollback", "--all", "--yes", "--quiet"]).stderr.isEmpty)
        let normal = try w.run(["apply", "--target", "001_a"])
        #expect(!normal.stderr.contains("deep detail") && normal.stderr.contains("applied 001_a ("))
        #expect(try w.run(["rollback", "--all", "--yes"]).status == 0)
        let verbose = try w.run(["apply", "--verbose"])
        #expect(
            verbose.stderr.contains("applying 001_a…") && verbose.stderr.contains("[001_a] deep detail"),
            "\(verbose.stderr)")
    }

    @Test func insecureAndStrictToolchainFlags() throws {
        let w = try Workspace()
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;"))
        chmod(w.dir + "/a.so", 0o664)
        let refused = try w.run(["apply"])
        #expect(
            refused.status == 4 && refused.stderr.contains("a.so") && refused.stderr.contains("--insecure"),
            "\(refused.stderr)")
        let insecure = try w.run(["apply", "--insecure"])
        #expect(insecure.status == 0 && insecure.stderr.contains("warning"), "\(insecure.stderr)")
        // A plugin that says it was built by another Swift toolchain.
        let foreign = Fixtures.stepPlugin("002_b", up: "return MIGRATOR_OK;")
            .replacingOccurrences(of: "\"002_b\", NULL, 1, &m", with: "\"002_b\", \"swift-5.9\", 1, &m")
        try w.add("b.so", foreign)
        let warned = try w.run(["validate", "--insecure"])
        #expect(warned.status == 0 && warned.stderr.contains("built with swift-5.9"), "\(warned.stderr)")
        let strict = try w.run(["apply", "--insecure", "--strict-toolchain"])
        #expect(strict.status == 4 && strict.stderr.contains("built with swift-5.9"), "\(strict.stderr)")
    }

    /// `--dir` through a symlink that sits in a folder everyone can write:
    /// whoever can write that folder chooses where the link points (a
    /// trusted folder without `migrations.lock`, which turns pins off), so
    /// it is refused like a folder others can write. A link in a safe
    /// folder is fine.
    @Test func aMigrationsFolderReachedThroughAnOpenFolderIsRefused() throws {
        let w = try Workspace()
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;"))
        let open = w.root + "/open"
        #expect(mkdir(open, 0o777) == 0 && chmod(open, 0o777) == 0)
        #expect(symlink(w.dir, open + "/link") == 0)
        let refused = try w.run(["apply", "--dir", open + "/link"], dir: false)
        #expect(refused.status == 4, "\(refused.stderr)")
        #expect(
            refused.stderr.contains(
                "migrations directory '\(open)/link' is inside '\(open)', which is writable by everyone"),
            "\(refused.stderr)")
        #expect(try w.states()["001_a"] != "applied")
        // A chain: a link in a safe folder, to a link in the open one.
        #expect(symlink(open + "/link", w.root + "/chain") == 0)
        let chained = try w.run(["apply", "--dir", w.root + "/chain"], dir: false)
        #expect(chained.status == 4 && chained.stderr.contains("is inside '\(open)'"), "\(chained.stderr)")
        #expect(symlink(w.dir, w.root + "/safe-link") == 0)
        let fine = try w.run(["apply", "--dir", w.root + "/safe-link"], dir: false)
        #expect(fine.status == 0, "\(fine.stderr)")
    }

    // MARK: create

    @Test func createVersionOverwriteAndBadNames() throws {
        let w = try Workspace()
        let out = w.root + "/src"
        let r = try w.run(["create", "Add Things", "--lang", "c", "--out", out, "--version", "2.5.0"])
        #expect(r.status == 0, "\(r.stderr)")
        let path = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains("\"2.5.0\""))
        // The same name again gets the next number; the same file is never overwritten.
        let again = try w.run(["create", "Add Things", "--lang", "c", "--out", out])
        #expect(again.status == 0 && again.stdout.contains("002_add_things.c"), "\(again.stdout)")
        let bad = try w.run(["create", "!!!", "--out", out])
        #expect(bad.status == 2 && bad.stderr.contains("no letters or digits"))
        let lang = try w.run(["create", "X", "--lang", "rust", "--out", out])
        #expect(lang.status == 2 && lang.stderr.contains("--lang must be swift or c"))
    }

    @Test func createNeverOverwrites() throws {
        let w = try Workspace()
        let out = w.root + "/src"
        mkdir(out, 0o700)
        // Files already in --out count as taken numbers: the new one gets 003.
        try "keep me".write(toFile: out + "/001_add_things.swift", atomically: true, encoding: .utf8)
        try "keep me too".write(toFile: out + "/002_add_things.swift", atomically: true, encoding: .utf8)
        let r = try w.run(["create", "Add Things", "--out", out])
        #expect(r.status == 0 && r.stdout.contains("003_add_things.swift"), "\(r.stdout)\(r.stderr)")
        #expect(try String(contentsOfFile: out + "/002_add_things.swift", encoding: .utf8) == "keep me too")
    }

    // MARK: db

    @Test(arguments: Backend.allCases)
    func dbFindSkipSortExportFilterExplain(_ backend: Backend) throws {
        let (location, cleanup) = backend.freshLocation("db")
        defer { cleanup() }
        let db = ["--db", location]
        let docs =
            #"{"_id":1,"a":2,"b":1}"# + "\n" + #"{"_id":2,"a":1,"b":2}"# + "\n" + #"{"_id":3,"a":1,"b":1}"# + "\n"
        #expect(try migrator(["db", "import", "t", "-"] + db, input: docs).status == 0)
        #expect(
            try migrator(["db", "find", "t", "--sort", "a,-b"] + db).stdout
                == #"{"_id":2,"a":1,"b":2}"# + "\n" + #"{"_id":3,"a":1,"b":1}"# + "\n" + #"{"_id":1,"a":2,"b":1}"#
                + "\n")
        #expect(try migrator(["db", "find", "t", "--skip", "2"] + db).stdout == #"{"_id":3,"a":1,"b":1}"# + "\n")
        #expect(
            try migrator(["db", "export", "t", "--filter", #"{"a":1}"#] + db).stdout
                == #"{"_id":2,"a":1,"b":2}"# + "\n" + #"{"_id":3,"a":1,"b":1}"# + "\n")
        #expect(try migrator(["db", "explain", "t", "--filter", #"{"_id":2}"#] + db).stdout == "IDLOOKUP (1 key)\n")
        #expect(try migrator(["db", "explain", "t", "--filter", #"{"a":2}"#] + db).stdout == "COLLSCAN\n")
        // --name=value, and -- before a positional that looks like an option.
        #expect(try migrator(["db", "count", "t", #"--filter={"a":1}"#, "--db=\(location)"]).stdout == "2\n")
        #expect(
            try migrator(["db", "import", "--db", location, "--", "-odd", "-"], input: #"{"_id":1}"#).status == 0)
        #expect(try migrator(["db", "count", "-odd", "--db", location]).status == 2, "without --, it is an option")
        #expect(try migrator(["db", "count", "--db", location, "--", "-odd"]).stdout == "1\n")
    }

    @Test func invalidNumbersAreUsageErrors() throws {
        let w = try Workspace()
        let map = try w.run(["apply"], environment: ["MIGRATOR_MAX_MAP_MB": "lots"])
        #expect(
            map.status == 2
                && map.stderr.contains("MIGRATOR_MAX_MAP_MB must be a whole number of megabytes, got 'lots'"))
        let timeout = try w.run(["apply", "--lock-timeout", "-1"])
        #expect(timeout.status == 2 && timeout.stderr.contains("--lock-timeout needs a number of seconds, got '-1'"))
    }

    @Test func listLooksForADatabaseOnlyWhenGivenOne() throws {
        let w = try Workspace()
        try threeSteps(w)
        // $MIGRATOR_DB and migrator.conf name a database apply has not created yet
        // (the README's main command lists first): list neither needs nor creates it.
        let missing = w.root + "/not-yet.db"
        let config = w.root + "/migrator.conf"
        try "db = \(missing)\n".write(toFile: config, atomically: true, encoding: .utf8)
        for environment in [["MIGRATOR_DB": missing], ["MIGRATOR_CONFIG": config]] {
            let r = try migrator(["list", "--dir", w.dir], environment: environment)
            #expect(r.status == 0 && r.stdout.contains("3 migration(s) in 3 plugin(s)"), "\(environment): \(r.stderr)")
            #expect(!r.stdout.contains("STATE"), "\(r.stdout)")
        }
        #expect(access(missing, F_OK) != 0, "list created \(missing)")
        #expect(try w.run(["apply", "--target", "001_a"]).status == 0)
        // An existing database in the environment does not change list's output either.
        let plain = try migrator(["list", "--dir", w.dir], environment: ["MIGRATOR_DB": w.db])
        #expect(plain.status == 0 && !plain.stdout.contains("STATE"), "\(plain.stdout)")
        // Given on the command line, its states are shown.
        let r = try migrator(["list", "--dir", w.dir, "--db", w.db])
        #expect(r.status == 0 && r.stdout.contains("STATE"), "\(r.stdout)")
        let rows = r.stdout.split(separator: "\n")
        #expect(rows.first { $0.hasPrefix("001_a") }?.hasSuffix("applied") == true)
        #expect(rows.first { $0.hasPrefix("002_b") }?.hasSuffix("pending") == true)
    }

    /// A plugin built elsewhere names a RUNPATH directory this host does not
    /// have (a build machine's toolchain). Where only root or you could
    /// create it, the plugin applies; where others could, it is refused with
    /// advice that fits (not "--insecure" first). The plugin needs libanl,
    /// which migrator has not loaded, so the directory would be searched.
    @Test func aMissingRunpathDirectoryOnAServer() throws {
        let w = try Workspace()
        let closed = Fixtures.temporaryDirectory("closedlibs", mode: 0o755)
        defer { Fixtures.removeTree(closed) }
        let open = Fixtures.temporaryDirectory("openlibs", mode: 0o777)
        defer { Fixtures.removeTree(open) }
        func add(_ runpath: String) throws {
            try Fixtures.compilePlugin(
                Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;"), name: "p.so", in: w.dir,
                extraFlags: ["-Wl,--no-as-needed", "-lanl", "-Wl,-rpath,\(runpath)"])
        }
        try add(open + "/toolchain/usr/lib")
        let refused = try w.run(["apply"])
        #expect(refused.status == 4, "\(refused.stderr)")
        #expect(refused.stderr.contains("does not exist, and '\(open)' is writable by everyone"), "\(refused.stderr)")
        let hint = refused.stderr.split(separator: "\n").first { $0.contains("hint:") } ?? ""
        #expect(
            hint.contains("its RUNPATH only directories that root alone can write or create")
                && !hint.contains("insecure"), "\(hint)")
        try add(closed + "/toolchain/usr/lib/swift/linux")
        let applied = try w.run(["apply"])
        #expect(applied.status == 0 && applied.stderr.contains("applied 1 migration(s)"), "\(applied.stderr)")
    }
}
