import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// As root, plugin code never runs as root when there is someone else to
/// be: `migrator` becomes the database directory's owner, or the `run_as`
/// user, before it opens the database or loads a plugin. Run as root (CI).
@Suite("run as an unprivileged user (end to end)")
struct RunAsTests {
    static let nobody: uid_t = 65534

    /// A plugin that records the uid and gid its code runs as.
    static let whoAmI = Fixtures.stepPlugin(
        "001_whoami",
        up: """
            char doc[96];
            snprintf(doc, sizeof doc, "{\\"uid\\":%u,\\"gid\\":%u}", (unsigned)getuid(), (unsigned)getgid());
            return host->insert(txn, "who", doc);
            """, prelude: "#include <stdio.h>\n#include <unistd.h>\n")

    /// A workspace another user can reach: its root and plugins readable by all.
    func workspace() throws -> Workspace {
        let w = try Workspace()
        try w.add("who.so", Self.whoAmI)
        chmod(w.root, 0o755)
        chmod(w.dir, 0o755)
        return w
    }

    @Test(.enabled(if: getuid() == 0, "becoming another user needs root; CI runs as root"))
    func rootBecomesTheDatabaseOwner() throws {
        let w = try workspace()
        #expect(mkdir(w.db, 0o700) == 0 && chown(w.db, Self.nobody, Self.nobody) == 0)
        let r = try w.run(["apply", "--verbose"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("running as 'nobody' (uid 65534), the owner of \(w.db)"), "\(r.stderr)")
        #expect(!r.stderr.contains("plugin code runs as root"), "\(r.stderr)")
        let found = try migrator(["db", "find", "who", "--db", w.db]).stdout
        #expect(found.contains(#""uid":65534"#) && found.contains(#""gid":65534"#), "\(found)")
        // What it made is the owner's: the next run, as that user, can open it.
        var st = stat()
        #expect(stat(w.db + "/data.mdb", &st) == 0 && st.st_uid == Self.nobody)
        let history = try migrator(["history", "--json", "--db", w.db]).stdout
        #expect(history.contains("nobody@"), "\(history)")
    }

    @Test(.enabled(if: getuid() == 0, "becoming another user needs root; CI runs as root"))
    func runAsChoosesTheUserAndRootIsSaidOutLoud() throws {
        let w = try workspace()
        // A database root owns, and nobody asked for: it says plugin code runs as root.
        let warned = try w.run(["apply"])
        #expect(warned.status == 0, "\(warned.stderr)")
        #expect(warned.stderr.contains("warning: plugin code runs as root"), "\(warned.stderr)")
        let asked = try w.run(["status", "--run-as", "root"])
        #expect(!asked.stderr.contains("plugin code runs as root"), "\(asked.stderr)")
        // run_as in the config file: a new database is made by that user.
        let fresh = try workspace()
        let parent = fresh.root + "/svc"
        #expect(mkdir(parent, 0o755) == 0 && chown(parent, Self.nobody, Self.nobody) == 0)
        try "run_as = nobody\n".write(toFile: fresh.root + "/m.conf", atomically: false, encoding: .utf8)
        let made = try migrator([
            "apply", "--config", fresh.root + "/m.conf", "--db", parent + "/db", "--dir", fresh.dir,
        ])
        #expect(made.status == 0, "\(made.stderr)")
        var st = stat()
        #expect(stat(parent + "/db", &st) == 0 && st.st_uid == Self.nobody)
        let found = try migrator(["db", "find", "who", "--db", parent + "/db"]).stdout
        #expect(found.contains(#""uid":65534"#), "\(found)")
        // A user that does not exist: refused before anything runs.
        let unknown = try w.run(["apply", "--run-as", "no-such-user-here"])
        #expect(
            unknown.status == 4 && unknown.stderr.contains("there is no user 'no-such-user-here'"), "\(unknown.stderr)")
    }

    @Test(.enabled(if: getuid() == 0, "the operator is user nobody; CI runs as root"))
    func withoutRootNoOtherUser() throws {
        let w = try workspace()
        #expect(mkdir(w.db, 0o700) == 0 && chown(w.db, Self.nobody, Self.nobody) == 0)
        let r = try Fixtures.run(
            "/usr/bin/setpriv",
            [
                "--reuid=65534", "--regid=65534", "--clear-groups", "--", migratorBinary, "apply", "--db", w.db,
                "--dir", w.dir, "--run-as", "root",
            ],
            environment: ["TMPDIR": w.db])
        #expect(r.status == 4, "\(r.output)")
        #expect(r.output.contains("only root can become another user"), "\(r.output)")
    }
}
