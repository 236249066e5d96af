import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Bad input and hostile environments, as a checklist. Every case asserts a
/// clear message, the exit code, and that no data changed.
@Suite("hostile input checklist (end to end)")
struct HostileInputTests {
    /// A workspace with one applied migration and 50 users.
    func seeded() throws -> Workspace {
        let w = try Workspace()
        try w.add(
            "a.so",
            Fixtures.stepPlugin(
                "001_seed",
                up: """
                    for (int i = 1; i <= 50; i++) { char d[96];
                        snprintf(d, sizeof d, "{\\"_id\\":%d,\\"email\\":\\"user%02d@example.com\\"}", i, i);
                        migrator_status st = host->insert(txn, "users", d); if (st) return st; }
                    return MIGRATOR_OK;
                    """))
        let r = try w.run(["apply"])
        #expect(r.status == 0, "\(r.stderr)")
        return w
    }

    /// A migration inserting `count` documents of about 2 KB each.
    static func blobs(_ id: String, count: Int) -> String {
        Fixtures.stepPlugin(
            id,
            up: """
                char d[2100]; memset(d, 'x', sizeof d);
                d[0] = '{'; d[1] = '"'; d[2] = 'p'; d[3] = '"'; d[4] = ':'; d[5] = '"';
                d[sizeof d - 3] = '"'; d[sizeof d - 2] = '}'; d[sizeof d - 1] = 0;
                for (int i = 0; i < \(count); i++) {
                    migrator_status st = host->insert(txn, "blobs", d); if (st) return st; }
                return MIGRATOR_OK;
                """)
    }

    func fingerprint(_ w: Workspace) throws -> String {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: w.db + "/data.mdb")))
        return
            "\(bytes.count):"
            + "\(bytes.reduce(into: UInt64(1_469_598_103_934_665_603)) { $0 = ($0 ^ UInt64($1)) &* 1_099_511_628_211 })"
    }

    func flip(_ path: String, at offsets: [Int]) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        for o in offsets { bytes[o] ^= 0xFF }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    // MARK: - [x] a corrupted data.mdb: flipped bytes in the header

    @Test func corruptedHeader() throws {
        let w = try seeded()
        // Both meta pages (LMDB keeps two): their magic numbers.
        try flip(w.db + "/data.mdb", at: [16, 17, 18, 19, 4096 + 16, 4096 + 17, 4096 + 18, 4096 + 19])
        let before = try fingerprint(w)
        for args in [["status"], ["apply"], ["db", "count", "users"]] {
            let r = try w.run(args, dir: args[0] != "db")
            #expect(r.status == 1, "\(args): \(r.stderr)")
            #expect(
                r.stderr.contains(w.db)
                    && (r.stderr.contains("not an LMDB") || r.stderr.contains("corrupt")
                        || r.stderr.contains("invalid")),
                "\(args): \(r.stderr)")
        }
        #expect(try fingerprint(w) == before)
    }

    // MARK: - [x] a corrupted data.mdb: flipped bytes in the middle

    @Test func corruptedDocument() throws {
        let w = try seeded()
        let path = w.db + "/data.mdb"
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let needle = Array(#""email":"user07"#.utf8)
        guard
            let at = (0...(bytes.count - needle.count)).first(where: {
                bytes[$0..<($0 + needle.count)].elementsEqual(needle)
            })
        else {
            Issue.record("document bytes not found")
            return
        }
        try flip(path, at: [at])  // the opening quote of "email"
        let before = try fingerprint(w)
        // Unfiltered export hands out stored bytes as they are; anything
        // that reads the document (a filter, an update) finds the damage.
        let r = try w.run(["db", "find", "users", "--filter", #"{"email":{"$exists":true}}"#], dir: false)
        #expect(r.status == 1)
        #expect(r.stderr.contains("users") && r.stderr.contains("_id 7"), "\(r.stderr)")
        let s = try w.run(["status"])
        #expect(s.status == 0, "tracking is intact, so status still reads: \(s.stderr)")
        #expect(try fingerprint(w) == before)
    }

    // MARK: - [x] a read-only database directory

    @Test func readOnlyDatabaseDirectory() throws {
        let w = try seeded()
        try w.add("b.so", Fixtures.stepPlugin("002_more", up: #"return host->insert(txn, "users", "{}");"#))
        let before = try fingerprint(w)
        let readOnly = w.root + "/ro"
        mkdir(readOnly, 0o700)
        var mounted = false
        if getuid() == 0 {
            // Root ignores file modes: make the directory read-only for real.
            let bind = try Fixtures.run("/bin/mount", ["--bind", w.db, readOnly])
            let ro = try Fixtures.run("/bin/mount", ["-o", "remount,bind,ro", readOnly])
            #expect(bind.status == 0 && ro.status == 0, "read-only bind mount: \(bind.output) \(ro.output)")
            mounted = bind.status == 0
        } else {
            Fixtures.removeTree(readOnly)
            try FileManager.default.copyItem(atPath: w.db, toPath: readOnly)
            chmod(readOnly, 0o500)
        }
        defer { if mounted { _ = try? Fixtures.run("/bin/umount", [readOnly]) } }
        // Reads work on it, opened read-only.
        let status = try migrator(["status", "--db", readOnly, "--dir", w.dir])
        #expect(
            status.status == 0 && status.stdout.contains("001_seed") && status.stdout.contains("applied"), "\(status)")
        #expect(try migrator(["db", "count", "users", "--db", readOnly]).stdout == "50\n")
        let r = try migrator(["apply", "--db", readOnly, "--dir", w.dir])
        #expect(r.status == 1)
        let message = r.stderr.lowercased()
        #expect(
            r.stderr.contains(readOnly) && (message.contains("read-only") || message.contains("permission")),
            "\(r.stderr)")
        // (No "data unchanged" check here: the kernel forbids writing, so it
        // could not fail. What is checked is the message and the exit code.)
        _ = before
    }

    // MARK: - [x] permission cases as an unprivileged user

    /// Runs the built `migrator` as user nobody (65534) when the tests run
    /// as root, so that permission checks are real; as itself otherwise.
    func migratorAsNobody(_ args: [String]) throws -> (status: Int32, output: String) {
        if getuid() == 0 {
            return try Fixtures.run(
                "/usr/bin/setpriv",
                [
                    "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                    migratorBinary,
                ] + args)
        }
        return try Fixtures.run(migratorBinary, args)
    }

    @Test func unprivilegedUser() throws {
        let w = try seeded()
        chmod(w.root, 0o755)
        chmod(w.dir, 0o755)
        // A database directory the user may read but not write.
        chmod(w.db, 0o755)
        for f in ["data.mdb", "lock.mdb"] { chmod(w.db + "/" + f, 0o644) }
        let before = try fingerprint(w)
        // Reading works without write access to the directory.
        let reading = try migratorAsNobody(["db", "count", "users", "--db", w.db])
        #expect(reading.status == 0 && reading.output.contains("50"), "\(reading.output)")
        let ro = try migratorAsNobody(["apply", "--db", w.db, "--dir", w.dir])
        #expect(
            ro.status == 1 && ro.output.contains(w.db) && ro.output.lowercased().contains("permission"), "\(ro.output)")
        // An unreadable migrations directory.
        let locked = w.root + "/locked"
        mkdir(locked, 0o000)
        let u = try migratorAsNobody(["list", "--dir", locked])
        #expect(
            u.status == 1 && u.output.contains(locked) && u.output.lowercased().contains("permission"), "\(u.output)")
        #expect(try fingerprint(w) == before)
    }

    /// A plugin owned by another user (not root, not us) is refused: whoever
    /// owns it can change what runs.
    @Test(.enabled(if: getuid() == 0, "only root can give a file away; CI runs as root"))
    func pluginOwnedByAnotherUserIsRefused() throws {
        let w = try Workspace()
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;"))
        chown(w.dir + "/a.so", 65534, 65534)
        let r = try w.run(["apply"])
        #expect(r.status == 4, "\(r.stderr)")
        #expect(r.stderr.contains("a.so") && r.stderr.contains("owned by uid 65534"), "\(r.stderr)")
        #expect(try w.states().isEmpty, "nothing from the refused file is known, let alone applied")
    }

    // MARK: - [x] a full disk (a map that may not grow)

    @Test func fullDisk() throws {
        let w = try seeded()
        try w.add("b.so", Self.blobs("002_huge", count: 20000))
        let before = try w.count("users")
        let r = try w.run(["apply"], environment: ["MIGRATOR_MAX_MAP_MB": "8"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("002_huge") && r.stderr.contains("size limit"), "\(r.stderr)")
        #expect(try w.count("blobs") == 0)
        #expect(try w.count("users") == before)
        #expect(try w.states()["002_huge"] == "failed")
    }

    // MARK: - [x] a database path that is a file

    @Test func databasePathIsAFile() throws {
        let w = try Workspace()
        try "not a database".write(toFile: w.db, atomically: true, encoding: .utf8)
        for args in [["apply"], ["status"]] {
            let r = try w.run(args)
            #expect(r.status == 1)
            #expect(r.stderr.contains(w.db), "\(r.stderr)")
        }
        #expect(try String(contentsOfFile: w.db, encoding: .utf8) == "not a database")
    }

    // MARK: - [x] a migrations directory that does not exist, is empty, or is unreadable

    @Test func migrationsDirectoryProblems() throws {
        let w = try seeded()
        let before = try fingerprint(w)
        let missing = try migrator(["apply", "--db", w.db, "--dir", w.root + "/nope"])
        #expect(missing.status == 1 && missing.stderr.contains("/nope") && missing.stderr.contains("does not exist"))
        let empty = w.root + "/empty"
        mkdir(empty, 0o700)
        let e = try migrator(["status", "--db", w.db, "--dir", empty])
        #expect(
            e.status == 0 && e.stdout.contains("001_seed") && e.stdout.contains("missing"),
            "applied but no plugin: \(e.stdout)")
        let ea = try migrator(["apply", "--db", w.db, "--dir", empty])
        #expect(ea.status == 4 && ea.stderr.contains("newer than these migrations"))
        // Unreadable: not a directory at all (root can read any directory).
        let file = w.root + "/file"
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        let f = try migrator(["apply", "--db", w.db, "--dir", file])
        #expect(f.status == 1 && f.stderr.contains("is not a directory"))
        if getuid() != 0 {
            let locked = w.root + "/locked"
            mkdir(locked, 0o000)
            let u = try migrator(["apply", "--db", w.db, "--dir", locked])
            #expect(u.status == 1 && u.stderr.contains(locked))
        }
        #expect(try fingerprint(w) == before)
    }

    // MARK: - [x] plugins whose strings are not UTF-8, and ids of 10 KB

    @Test func nonUTF8AndHugeIDs() throws {
        let w = try seeded()
        let before = try fingerprint(w)
        try w.add("latin1.so", Fixtures.pluginSource(migrations: [Fixtures.migration("002_x", name: "\"caf\\xe9\"")]))
        try w.add(
            "huge.so",
            Fixtures.pluginSource(migrations: [Fixtures.migration("003_" + String(repeating: "a", count: 10_240))]))
        let r = try w.run(["apply"])
        #expect(r.status == 4)
        #expect(r.stderr.contains("latin1.so") && r.stderr.contains("not valid UTF-8"), "\(r.stderr)")
        #expect(r.stderr.contains("huge.so") && r.stderr.contains("longer than"))
        #expect(r.stderr.count < 4000, "a 10 KB id is not echoed back whole")
        #expect(try fingerprint(w) == before)
    }

    // MARK: - [x] a plugin returning migration_count 1,000,000 with a NULL array

    @Test func absurdMigrationCount() throws {
        let w = try seeded()
        let before = try fingerprint(w)
        try w.add(
            "liar.so",
            Fixtures.pluginSource(
                migrations: [],
                bundle: "{ MIGRATOR_ABI_MAJOR, 0, sizeof(migrator_plugin_v1), \"liar\", NULL, 1000000, NULL }"))
        let r = try w.run(["apply"])
        #expect(r.status == 4)
        #expect(r.stderr.contains("liar.so") && r.stderr.contains("1000000 migrations"), "\(r.stderr)")
        #expect(try fingerprint(w) == before)
    }

    // MARK: - [x] a plugin calling the host with NULL pointers, invalid JSON, or a closed cursor

    @Test func hostileHostCalls() throws {
        let w = try Workspace()
        try w.add(
            "a.so",
            Fixtures.stepPlugin(
                "001_hostile",
                up: """
                    migrator_cursor *c = NULL; const char *doc = NULL; size_t len = 0; uint64_t n = 0;
                    #define MUST(call, want) \\
                        do { if ((call) != (want)) { host->set_error(txn, #call); return MIGRATOR_ERROR; } } while (0)
                    MUST(host->create_collection(txn, NULL), MIGRATOR_INVALID);
                    MUST(host->drop_collection(txn, NULL), MIGRATOR_INVALID);
                    MUST(host->create_index(txn, "t", NULL, 0), MIGRATOR_INVALID);
                    MUST(host->insert(txn, "t", NULL), MIGRATOR_INVALID);
                    MUST(host->insert(txn, NULL, NULL), MIGRATOR_INVALID);
                    MUST(host->insert(txn, "t", "[1,2]"), MIGRATOR_INVALID);
                    MUST(host->insert(txn, "t", "{\\"a\\":"), MIGRATOR_INVALID);
                    MUST(host->insert(txn, "t", "{\\"a\\":1,\\"a\\":2}"), MIGRATOR_INVALID);
                    MUST(host->insert(txn, "", "{}"), MIGRATOR_INVALID);
                    MUST(host->insert(txn, "tab\\tname", "{}"), MIGRATOR_INVALID);
                    MUST(host->find(txn, "t", NULL, NULL), MIGRATOR_INVALID);
                    MUST(host->find(txn, "t", "{\\"$where\\":1}", &c), MIGRATOR_INVALID);
                    MUST(host->update(txn, "t", NULL, NULL, NULL), MIGRATOR_INVALID);
                    MUST(host->update(txn, "t", "{}", "{\\"$frobnicate\\":{}}", NULL), MIGRATOR_INVALID);
                    MUST(host->count(txn, "t", NULL, NULL), MIGRATOR_INVALID);
                    MUST(host->cursor_next(NULL, &doc, &len), MIGRATOR_INVALID);
                    MUST(host->cursor_close(NULL), MIGRATOR_OK);
                    MUST(host->log(txn, 99, NULL), MIGRATOR_OK);
                    MUST(host->set_error(txn, NULL), MIGRATOR_OK);
                    MUST(host->insert(NULL, "t", "{}"), MIGRATOR_INVALID);
                    if (host->last_error(NULL) != NULL) return MIGRATOR_ERROR;
                    if (host->last_error(txn) == NULL || host->last_error(txn)[0] == 0) return MIGRATOR_ERROR;
                    MUST(host->insert(txn, "t", "{\\"ok\\":true}"), MIGRATOR_OK);
                    MUST(host->find(txn, "t", NULL, &c), MIGRATOR_OK);
                    MUST(host->cursor_next(c, NULL, &len), MIGRATOR_INVALID);
                    MUST(host->cursor_close(c), MIGRATOR_OK);
                    MUST(host->cursor_next(c, &doc, &len), MIGRATOR_INVALID);
                    MUST(host->remove(txn, "t", "{\\"ok\\":false}", &n), MIGRATOR_OK);
                    MUST(host->count(txn, "t", NULL, &n), MIGRATOR_OK);
                    return n == 1 ? MIGRATOR_OK : MIGRATOR_ERROR;
                    """))
        let r = try w.run(["apply"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try w.count("t") == 1)
    }

    // MARK: - [x] a plugin that keeps a cursor (and its transaction) past its step

    @Test func cursorKeptPastItsStep() throws {
        let w = try Workspace()
        let shared = """
            #include <stdio.h>
            #include <string.h>
            #include "migrator_plugin.h"
            static migrator_cursor *kept; static migrator_txn *kept_txn;
            static migrator_status first(const migrator_host_v1 *h, migrator_txn *t, void *u) {
                (void)u; h->insert(t, "t", "{\\"_id\\":1}"); h->insert(t, "t", "{\\"_id\\":2}");
                kept_txn = t;
                return h->find(t, "t", NULL, &kept);   /* never closed */
            }
            static migrator_status second(const migrator_host_v1 *h, migrator_txn *t, void *u) {
                (void)u; const char *doc; size_t len;
                if (h->cursor_next(kept, &doc, &len) != MIGRATOR_INVALID) {
                    h->set_error(t, "stale cursor accepted"); return MIGRATOR_ERROR; }
                if (h->insert(kept_txn, "t", "{}") != MIGRATOR_INVALID) {
                    h->set_error(t, "stale txn accepted"); return MIGRATOR_ERROR; }
                return h->insert(t, "t", "{\\"_id\\":3}");
            }
            static const migrator_migration_v1 ms[] = {
                { "001_keep", "keep", "", "1", NULL, first, NULL, NULL },
                { "002_reuse", "reuse", "", "1", NULL, second, NULL, NULL },
            };
            static const migrator_plugin_v1 b = { MIGRATOR_ABI_MAJOR, 0, sizeof b, "keeper", NULL, 2, ms };
            const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return &b; }
            """
        try w.add("keeper.so", shared)
        let r = try w.run(["apply"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try w.count("t") == 3)
    }

    // MARK: - [x] a really full disk (a small tmpfs)

    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root; CI runs as root"))
    func aFullFileSystemSaysDiskFull() throws {
        let w = try Workspace()
        let small = w.root + "/small"
        mkdir(small, 0o700)
        let mount = try Fixtures.run("/bin/mount", ["-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", small])
        #expect(mount.status == 0, "\(mount.output)")
        defer { _ = try? Fixtures.run("/bin/umount", [small]) }
        let db = small + "/db"
        try w.add("a.so", Fixtures.stepPlugin("001_small", up: #"return host->insert(txn, "t", "{}");"#))
        try w.add("b.so", Self.blobs("002_huge", count: 4000))
        let r = try migrator(["apply", "--db", db, "--dir", w.dir])
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("'002_huge'") && r.stderr.contains("disk full"), "\(r.stderr)")
        #expect(!r.stderr.contains("corrupt"), "a full disk is not corruption: \(r.stderr)")
        #expect(try migrator(["db", "count", "blobs", "--db", db]).stdout == "0\n", "nothing of the step was kept")
        let status = try migrator(["status", "--db", db, "--dir", w.dir]).stdout
        #expect(
            status.contains("002_huge") && (status.contains("failed") || status.contains("interrupted at 002_huge")),
            "\(status)")
    }

    // MARK: - [x] the rename-exchange race

    /// An unprivileged user swaps their file with the real one in a loop
    /// (`renameat2(RENAME_EXCHANGE)` in a world-writable subdirectory that a
    /// symlink in the migrations folder points into) while `list` runs a
    /// hundred times: their constructor never runs, and every run says why.
    @Test(.enabled(if: getuid() == 0, "the attacker is user nobody; CI runs as root"))
    func theRenameExchangeRaceNeverRunsTheAttackersCode() throws {
        let w = try Workspace()
        chmod(w.root, 0o755)
        chmod(w.dir, 0o755)
        let sub = w.dir + "/sub"
        mkdir(sub, 0o777)
        chmod(sub, 0o777)
        let marker = w.root + "/attacker-ran"
        try Fixtures.compilePlugin(
            Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")]), name: "real.so", in: sub)
        try Fixtures.compilePlugin(
            Fixtures.pluginSource(
                migrations: [Fixtures.migration("001_a")],
                prelude: "#include <stdio.h>\n__attribute__((constructor)) static void evil(void) { "
                    + "FILE *f = fopen(\"\(marker)\", \"w\"); if (f) fclose(f); }"), name: "evil.so", in: sub)
        chown(sub + "/evil.so", 65534, 65534)
        #expect(symlink("sub/real.so", w.dir + "/legit.so") == 0)
        let swapper = w.root + "/swapper"
        let src = w.root + "/swapper.c"
        try """
        #define _GNU_SOURCE
        #include <fcntl.h>
        #include <stdio.h>
        #include <sys/syscall.h>
        #include <time.h>
        #include <unistd.h>
        int main(int argc, char **argv) {
            time_t end = time(NULL) + 3;
            while (time(NULL) < end)
                syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], 2 /* RENAME_EXCHANGE */);
            return 0;
        }
        """.write(toFile: src, atomically: true, encoding: .utf8)
        let built = try Fixtures.run(Fixtures.cCompiler, ["-O1", "-o", swapper, src])
        #expect(built.status == 0, "\(built.output)")
        chmod(swapper, 0o755)
        let attacker = Process()
        attacker.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        attacker.arguments = [
            "--reuid=65534", "--regid=65534", "--clear-groups", "--", swapper, sub + "/real.so", sub + "/evil.so",
        ]
        try attacker.run()
        var refused = 0
        for _ in 0..<100 {
            let r = try migrator(["list", "--dir", w.dir])
            if r.status == 1 && r.stderr.contains("links into '\(sub)'") { refused += 1 }
        }
        attacker.waitUntilExit()
        #expect(access(marker, F_OK) != 0, "the attacker's constructor ran")
        #expect(refused == 100, "every run refused the writable subdirectory (\(refused) did)")
    }
}
