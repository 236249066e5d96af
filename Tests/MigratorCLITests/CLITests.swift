import Foundation
import TestSupport
import Testing

/// The built `migrator` binary: SwiftPM puts it beside the test bundle.
let migratorBinary: String = {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("migrator").path
}()

struct RunResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// A started `migrator` process with pipes on stdin, stdout and stderr.
struct Launched {
    let process = Process()
    let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
}

extension Launched {
    /// Reads stderr until `marker` appears (or it closes); returns what it read.
    /// The handshake between a test and a child: no sleeps.
    func stderr(until marker: String) -> String {
        let handle = stderr.fileHandleForReading
        var seen = ""
        while !seen.contains(marker) {
            let d = handle.availableData
            if d.isEmpty { break }
            seen += String(decoding: d, as: UTF8.self)
        }
        return seen
    }
}

/// Starts `migrator` with `args`; crash backtraces are off so kills are quick.
func launchMigrator(
    _ args: [String], environment: [String: String] = [:], in directory: String? = nil
) throws -> Launched {
    let l = Launched()
    l.process.executableURL = URL(fileURLWithPath: migratorBinary)
    if let directory { l.process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    l.process.arguments = args
    var env = ProcessInfo.processInfo.environment
    env["SWIFT_BACKTRACE"] = "enable=no"
    for (k, v) in environment { env[k] = v }
    l.process.environment = env
    l.process.standardInput = l.stdin
    l.process.standardOutput = l.stdout
    l.process.standardError = l.stderr
    try l.process.run()
    return l
}

/// Runs `migrator` with `args` to completion, feeding `input` to stdin.
func migrator(
    _ args: [String], input: String = "", environment: [String: String] = [:], in directory: String? = nil
) throws -> RunResult {
    let l = try launchMigrator(args, environment: environment, in: directory)
    l.stdin.fileHandleForWriting.write(Data(input.utf8))
    try l.stdin.fileHandleForWriting.close()
    let out = l.stdout.fileHandleForReading.readDataToEndOfFile()
    let err = l.stderr.fileHandleForReading.readDataToEndOfFile()
    l.process.waitUntilExit()
    return RunResult(
        status: l.process.terminationStatus, stdout: String(decoding: out, as: UTF8.self),
        stderr: String(decoding: err, as: UTF8.self))
}

func scratchDirectory() -> String {
    let dir = NSTemporaryDirectory() + "migrator-cli-" + UUID().uuidString
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

@Suite("migrator db (end to end)")
struct CLITests {
    let users = """
        {"_id":1,"email":"ada@example.com","name":"Ada","age":36,"address":{"city":"Oslo"}}
        {"_id":2,"email":"bob@example.com","name":"Bob","age":25}

        {"email":"cy@example.com","name":"Cy","age":41,"tags":["a","b"]}
        """

    @Test("import, collections, find, count, export, indexes, explain", arguments: Backend.allCases)
    func roundTrip(_ backend: Backend) throws {
        let (location, cleanup) = backend.freshLocation("cli")
        defer { cleanup() }
        let db = ["--db", location]
        let imp = try migrator(["db", "import", "users", "-"] + db, input: users)
        #expect(imp.status == 0)
        #expect(imp.stderr.contains("imported 3 documents into 'users'"))
        #expect(imp.stdout.isEmpty)
        #expect(try migrator(["db", "collections"] + db).stdout == "COLLECTION  DOCUMENTS\nusers       3\n")
        // The longest name still gets a gap, and every count one column.
        let long = "a_collection_with_a_long_name"
        #expect(try migrator(["db", "import", long, "-"] + db, input: #"{"_id":1}"#).status == 0)
        let table = try migrator(["db", "collections"] + db).stdout.split(separator: "\n")
        #expect(table.count == 3)
        #expect(
            Set(table.map { line in line.count - (line.split(separator: " ").last?.count ?? 0) }).count == 1,
            "counts start in one column: \(table)")
        let found = try migrator(
            [
                "db", "find", "users", "--filter", #"{"age":{"$gte":30}}"#, "--sort", "-age", "--projection",
                #"{"name":1,"_id":0}"#,
            ] + db)
        #expect(found.stdout == "{\"name\":\"Cy\"}\n{\"name\":\"Ada\"}\n")
        #expect(
            try migrator(["db", "find", "users", "--limit", "1"] + db).stdout
                == #"{"_id":1,"email":"ada@example.com","name":"Ada","age":36,"address":{"city":"Oslo"}}"# + "\n")
        #expect(try migrator(["db", "count", "users", "--filter", #"{"address.city":"Oslo"}"#] + db).stdout == "1\n")
        // MIGRATOR_DB is the default database.
        #expect(try migrator(["db", "count", "users"], environment: ["MIGRATOR_DB": location]).stdout == "3\n")
        let export = try migrator(["db", "export", "users"] + db)
        #expect(export.stderr.isEmpty)
        let lines = export.stdout.split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines.first == #"{"_id":1,"email":"ada@example.com","name":"Ada","age":36,"address":{"city":"Oslo"}}"#)
        // Export then import into another collection gives the same bytes.
        #expect(try migrator(["db", "import", "copy", "-"] + db, input: export.stdout).status == 0)
        #expect(try migrator(["db", "export", "copy"] + db).stdout == export.stdout)

        #expect(try migrator(["db", "create-index", "users", "email", "--unique"] + db).status == 0)
        #expect(try migrator(["db", "indexes", "users"] + db).stdout == "_id (unique, implicit)\nemail (unique)\n")
        #expect(
            try migrator(["db", "explain", "users", "--filter", #"{"email":"bob@example.com"}"#] + db).stdout
                == "IXSCAN email (1 key)\n")
        let dup = try migrator(["db", "import", "users", "-"] + db, input: #"{"email":"ada@example.com"}"#)
        #expect(dup.status == 1)
        #expect(dup.stderr.contains("unique index on 'email' already holds \"ada@example.com\" for _id 1"))
    }

    @Test("a bad line imports nothing and names the file, line and cause", arguments: Backend.allCases)
    func badImport(_ backend: Backend) throws {
        let dir = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (location, cleanup) = backend.freshLocation("cli")
        defer { cleanup() }
        let file = dir + "/in.jsonl"
        try (users + "\n{\"name\":\"Dee\",}\n").write(toFile: file, atomically: true, encoding: .utf8)
        let r = try migrator(["db", "import", "users", file, "--db", location])
        #expect(r.status == 1)
        #expect(
            r.stderr.contains(
                "\(file):5: collection 'users': invalid JSON at byte 14: expected a string key; nothing was imported"))
        #expect(try migrator(["db", "count", "users", "--db", location]).stdout == "0\n")
        let notObject = try migrator(["db", "import", "users", "-", "--db", location], input: "[1,2]\n")
        #expect(notObject.stderr.contains("-:1: collection 'users': a document must be a JSON object, not array"))
        let missing = try migrator(["db", "import", "users", dir + "/nope.jsonl", "--db", location])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("\(dir)/nope.jsonl: cannot open: No such file or directory"))
    }

    @Test("usage errors exit 2 with the usage line; --help works on every command")
    func usage() throws {
        for cmd in ["collections", "import", "export", "find", "count", "indexes", "create-index", "explain"] {
            let r = try migrator(["db", cmd, "--help"])
            #expect(r.status == 0, "\(cmd)")
            #expect(r.stdout.contains("Usage: migrator db \(cmd)"), "\(cmd)")
            #expect(r.stdout.contains("--db PATH"), "\(cmd)")
        }
        let top = try migrator(["--help"])
        #expect(top.status == 0 && top.stdout.contains("Exit codes:"))
        #expect(try migrator(["--version"]).stdout.hasPrefix("migrator "))
        let unknown = try migrator(["db", "find", "users", "--bogus"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("unknown option '--bogus'"))
        #expect(unknown.stderr.contains("usage: migrator db find COLLECTION"))
        #expect(try migrator(["db", "find"]).status == 2)
        #expect(try migrator(["db", "count", "u", "--limit", "x"]).status == 2)
        #expect(try migrator(["nope"]).status == 2)
        #expect(try migrator([]).status == 2)
        // Help reaches every command, however it is asked for.
        for args in [["help", "apply"], ["apply", "--help"], ["help", "db", "find"], ["db", "find", "-h"]] {
            let r = try migrator(args)
            #expect(
                r.status == 0 && r.stdout.contains("Usage: migrator \(args.contains("db") ? "db find" : "apply")"),
                "\(args)")
        }
        for args in [["db", "--help"], ["help", "db"]] {
            let r = try migrator(args)
            #expect(r.status == 0 && r.stdout.contains("db create-index"), "\(args): \(r.stderr)")
        }
        let bare = try migrator(["db"])
        #expect(bare.status == 2 && bare.stderr.contains("'db' needs a command") && bare.stderr.contains("db find"))
        // Readable usage errors, with the nearest match.
        let positional = try migrator(["apply", "002_user_preferences"])
        #expect(positional.status == 2)
        #expect(
            positional.stderr.contains(
                "'migrator apply' takes no arguments, got '002_user_preferences'; "
                    + "to stop after a migration, use --target 002_user_preferences"), "\(positional.stderr)")
        #expect(try migrator(["stauts"]).stderr.contains("unknown command 'stauts' (did you mean 'status'?)"))
        #expect(try migrator(["db", "fnd", "x"]).stderr.contains("unknown command 'db fnd' (did you mean 'db find'?)"))
        #expect(
            try migrator(["apply", "--tagret", "x"]).stderr.contains(
                "unknown option '--tagret' (did you mean '--target'?)"))
        #expect(!(try migrator(["apply", "--zzzzzz"]).stderr.contains("did you mean")), "no far-fetched suggestion")
        #expect(try migrator(["help", "nope"]).status == 2)
        let both = try migrator(["apply", "--quiet", "--verbose"])
        #expect(both.status == 2 && both.stderr.contains("--quiet and --verbose cannot be used together"))
        let create = try migrator(["create"])
        #expect(create.status == 2 && create.stderr.contains("'migrator create' needs NAME"))
        let extra = try migrator(["create", "a", "b", "c"])
        #expect(extra.status == 2 && extra.stderr.contains("unexpected 'c'"))
        let badFilter = try migrator(["db", "count", "u", "--filter", #"{"a":{"$regex":"x"}}"#])
        #expect(badFilter.status == 2)
        #expect(badFilter.stderr.contains("unknown operator $regex on \"a\""))
    }

    @Test("a database path that is a file is a clear error")
    func badDatabasePath() throws {
        let dir = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = FileManager.default.createFile(atPath: dir + "/file", contents: Data("x".utf8))
        let r = try migrator(["db", "collections", "--db", dir + "/file"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("\(dir)/file: exists and is not a directory"))
    }

    @Test("SIGKILL inside a write transaction keeps the last commit and nothing of the aborted one")
    func crashDuringImport() throws {
        let dir = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = ["--db", dir + "/db"]
        #expect(try migrator(["db", "import", "users", "-"] + db, input: users).status == 0)

        let child = try launchMigrator(["db", "import", "users", "-", "--verbose"] + db)
        let (p, inPipe, errPipe) = (child.process, child.stdin, child.stderr)
        var lines = ""
        for i in 0..<5000 { lines += #"{"_id":"k\#(i)","n":\#(i)}"# + "\n" }
        inPipe.fileHandleForWriting.write(Data(lines.utf8))
        // Wait until the child reports 5000 inserts inside its open transaction.
        var seen = ""
        while !seen.contains("imported 5000 documents…") {
            let chunk = errPipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen += String(decoding: chunk, as: UTF8.self)
        }
        #expect(seen.contains("imported 5000 documents…"))
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal)

        #expect(try migrator(["db", "count", "users"] + db).stdout == "3\n")
        #expect(try migrator(["db", "count", "users", "--filter", #"{"_id":"k1"}"#] + db).stdout == "0\n")
        // The database is writable again at once.
        #expect(try migrator(["db", "import", "users", "-"] + db, input: #"{"_id":"after"}"#).status == 0)
        #expect(try migrator(["db", "collections"] + db).stdout == "COLLECTION  DOCUMENTS\nusers       4\n")
    }
}
