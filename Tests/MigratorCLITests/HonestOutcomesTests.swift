import Foundation
import PostgresStore
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Outcomes that must be true: generated code that cannot be hijacked by a
/// name, and reads that never invent a database.
@Suite("honest outcomes (end to end)")
struct HonestOutcomesTests {
    static let hostileName =
        "Evil */ __attribute__((constructor)) static void evil(void) { abort(); } /* \"quoted\" ??= \\(x)"
    static let hostileDescription = "line one\nstruct Injected {} // \"\"\" \\(boom) \u{1}end"

    /// A C file generated for a hostile name compiles, and its constructor
    /// was never emitted: the plugin loads, and its name reads back exactly.
    @Test func createEscapesHostileNamesInC() throws {
        let w = try Workspace()
        let out = w.root + "/src"
        let r = try w.run(["create", Self.hostileName, Self.hostileDescription, "--lang", "c", "--out", out])
        #expect(r.status == 0, "\(r.stderr)")
        let path = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let header = text.components(separatedBy: "#include").first ?? ""
        #expect(header.components(separatedBy: "*/").count == 2, "only the header's own */ closes it: \(header)")
        try Fixtures.compilePlugin(text, name: "evil.so", in: w.dir)
        let list = try migrator(["list", "--json", "--dir", w.dir])
        #expect(list.status == 0, "\(list.stderr)")
        let doc = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [String: Any]
        let m = (doc?["migrations"] as? [[String: Any]])?.first
        #expect(m?["name"] as? String == Self.hostileName)
        #expect(m?["description"] as? String == Self.hostileDescription)
    }

    /// The Swift file type-checks and holds the texts as data, not code.
    @Test func createEscapesHostileNamesInSwift() throws {
        let w = try Workspace()
        let r = try w.run(["create", Self.hostileName, Self.hostileDescription, "--out", w.root])
        #expect(r.status == 0, "\(r.stderr)")
        let path = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(!text.contains("\nstruct Injected"), "a line break cannot end the doc comment")
        let tc = try Fixtures.typecheckSwift(path)
        #expect(tc.status == 0, "\(tc.output)\n\(text)")
    }

    /// Reads of a path with nothing there fail and create nothing.
    /// Under `ulimit -v` the whole map cannot be reserved: the store opens
    /// with the largest map that fits, in the runner and in the worker, and
    /// the run still applies each migration once.
    @Test func aLimitedAddressSpaceStillRuns() throws {
        let w = try Workspace(examples: true)
        let exe = Fixtures.productsDirectory + "/migrator"
        let r = try Fixtures.run(
            "/bin/sh", ["-c", "ulimit -v 6000000 && exec \"$0\" apply --db \"$1\" --dir \"$2\"", exe, w.db, w.dir])
        #expect(r.status == 0, "\(r.output)")
        let states = try w.states()
        #expect(!states.isEmpty && states.values.allSatisfy { $0 == "applied" }, "\(states)")
        #expect(try w.history().filter { $0["outcome"] as? String == "applied" }.count == states.count)
    }

    @Test(arguments: Backend.allCases)
    func readsNeverCreateADatabase(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;"))
        // A mistyped directory, or a schema nobody made.
        let schema = PostgresServer.freshSchema("typo")
        let typo = backend == .lmdb ? w.root + "/typo.dbb" : PostgresServer.uri + "&schema=" + schema
        func created() -> Bool {
            backend == .lmdb
                ? access(typo, F_OK) == 0
                : (try? PostgresDocumentStore.exists(uri: PostgresServer.uri, schema: schema)) != false
        }
        for args in [
            ["db", "count", "users"], ["db", "find", "users"], ["db", "collections"], ["db", "export", "users"],
            ["db", "indexes", "users"], ["db", "explain", "users"], ["history"], ["list", "--dir", w.dir],
        ] {
            let r = try migrator(args + ["--db", typo])
            let missing =
                backend == .lmdb
                ? "no database at \(typo) (apply creates one)"
                : "no migrator tables in schema '\(schema)' of \(typo) (apply creates them)"
            #expect(r.status == 1 && r.stderr.contains(missing), "\(args): \(r.stderr)")
            #expect(!created(), "\(args) created \(typo)")
        }
        // status says so, in text and JSON, and --check sees the pending work.
        let text = try migrator(["status", "--db", typo, "--dir", w.dir])
        #expect(text.status == 0 && text.stdout.contains("no database there yet; apply creates it"), "\(text.stdout)")
        let json = try migrator(["status", "--json", "--db", typo, "--dir", w.dir])
        #expect(json.stdout.contains(#""exists":false"#) && json.stdout.contains(#""pending":1"#), "\(json.stdout)")
        #expect(try migrator(["status", "--check", "--db", typo, "--dir", w.dir]).status == 5)
        #expect(!created(), "status created \(typo)")
        // An existing database has no "exists" key: the pinned schema holds.
        #expect(try w.run(["apply"]).status == 0)
        #expect(!(try w.run(["status", "--json"]).stdout.contains("exists")))
    }

    /// A full disk on stdout is a failure, never a finished export.
    @Test(arguments: Backend.allCases)
    func writeErrorsOnStdoutFail(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: #"return host->insert(txn, "t", "{}");"#))
        #expect(try w.run(["apply"]).status == 0)
        for args in [
            ["db", "export", "t", "--db", w.db], ["status", "--json", "--db", w.db, "--dir", w.dir], ["header"],
        ] {
            let r = try Fixtures.run(
                "/bin/sh", ["-c", ([migratorBinary] + args).map { "'\($0)'" }.joined(separator: " ") + " > /dev/full"])
            #expect(
                r.status == 1 && r.output.contains("cannot write to standard output: No space left on device"),
                "\(args): \(r.output)")
        }
    }

    /// A plugin's message is capped, and printed without its control
    /// characters: it cannot flood history or redraw the terminal.
    @Test(arguments: Backend.allCases)
    func pluginMessagesAreCappedAndEscaped(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add(
            "a.so",
            Fixtures.stepPlugin(
                "001_loud",
                up: """
                    static char big[100000];
                    memset(big, 'x', sizeof big - 1);
                    memcpy(big, "\\033[2Jfake\\nerror: all good", 24);
                    host->set_error(txn, big);
                    return MIGRATOR_ERROR;
                    """))
        let r = try w.run(["apply"])
        #expect(r.status == 1)
        #expect(!r.stderr.contains("\u{1B}"), "no raw escape reaches the terminal")
        #expect(r.stderr.contains("\\x1b[2Jfake\\nerror: all good"), "\(r.stderr.prefix(300))")
        #expect(r.stderr.contains("(cut at 4096 bytes)"))
        let stored = try w.history().last?["error"] as? String ?? ""
        #expect(stored.utf8.count < 4200, "history holds \(stored.utf8.count) bytes")
        let table = try w.run(["history"], dir: false).stdout
        #expect(table.split(separator: "\n").count == 2 && !table.contains("\u{1B}"), "one row, no escape")
    }

    /// A database directory others can write is refused for runs, and a
    /// planted symlink as the lock file is never followed or truncated.
    @Test func theDatabaseDirectoryIsCheckedAndItsLockNeverFollowed() throws {
        let w = try Workspace()
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;"))
        try w.add("b.so", Fixtures.stepPlugin("002_b", up: "return MIGRATOR_OK;"))
        #expect(try w.run(["apply", "--target", "001_a"]).status == 0)
        chmod(w.db, 0o777)
        let open = try w.run(["apply"])
        #expect(
            open.status == 4 && open.stderr.contains("database directory '\(w.db)' is writable by everyone"),
            "\(open.stderr)")
        #expect(try w.states()["002_b"] == "pending")
        chmod(w.db, 0o700)
        // A folder above it that everyone can write (no sticky bit): whoever
        // can write there can swap the whole database directory.
        let shared = w.root + "/shared"
        #expect(mkdir(shared, 0o777) == 0 && chmod(shared, 0o777) == 0)
        let parent = try migrator(["apply", "--db", shared + "/db", "--dir", w.dir])
        #expect(
            parent.status == 4
                && parent.stderr.contains("database directory '\(shared)/db' is inside '\(shared)', which is writable"),
            "\(parent.stderr)")
        // The planted link: its target must survive, untouched.
        let victim = w.root + "/victim.txt"
        try "precious".write(toFile: victim, atomically: true, encoding: .utf8)
        unlink(w.db + "/migrator.lock")
        #expect(symlink(victim, w.db + "/migrator.lock") == 0)
        let linked = try w.run(["apply"])
        #expect(
            linked.status == 1 && linked.stderr.contains("is a symbolic link; refusing to follow it"),
            "\(linked.stderr)")
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious")
        #expect(try w.states()["002_b"] == "pending")
    }
}
