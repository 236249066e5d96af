import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Pins and signatures: a plugin nobody approved is refused before any of
/// its code runs (its constructor would leave a marker file).
@Suite("pinned and signed plugins (end to end)")
struct TrustTests {
    /// A plugin whose constructor creates `marker`: proof that it was loaded.
    func marked(_ id: String, marker: String) -> String {
        Fixtures.pluginSource(
            migrations: [Fixtures.migration(id)],
            prelude: """
                #include <fcntl.h>
                #include <unistd.h>
                __attribute__((constructor)) static void loaded(void) {
                    int fd = open("\(marker)", O_CREAT | O_WRONLY, 0600); if (fd >= 0) close(fd); }
                """)
    }

    /// `migrator ARGS --dir DIR`, for commands without a database.
    func inDir(_ w: Workspace, _ args: [String]) throws -> RunResult { try migrator(args + ["--dir", w.dir]) }

    @Test func pinsRefuseWhatTheyDoNotName() throws {
        let w = try Workspace()
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;"))
        let pin = try inDir(w, ["pin"])
        #expect(pin.status == 0, "\(pin.stderr)")
        let lock = try String(contentsOfFile: w.dir + "/migrations.lock", encoding: .utf8)
        #expect(lock.contains("  a.so\n"))
        #expect(try inDir(w, ["list", "--require-pin"]).status == 0)
        // An unpinned file: refused, never loaded.
        let marker = w.root + "/loaded"
        try w.add("b.so", marked("002_b", marker: marker))
        let r = try w.run(["apply"])
        #expect(r.status == 4, "\(r.stderr)")
        #expect(r.stderr.contains("plugin '\(w.dir)/b.so' is not in migrations.lock (its SHA-256 is "), "\(r.stderr)")
        #expect(access(marker, F_OK) != 0, "its constructor never ran")
        #expect(try w.states().isEmpty || w.states()["001_a"] != "applied")
        // Pinned again, then the bytes change: both hashes named.
        #expect(try inDir(w, ["pin"]).status == 0)
        unlink(marker)
        let pinned = try String(contentsOfFile: w.dir + "/migrations.lock", encoding: .utf8)
        try w.add("b.so", marked("002_b", marker: marker + "2"))
        let changed = try inDir(w, ["list"])
        #expect(changed.status == 4 || changed.status == 1, "\(changed.stderr)")
        #expect(changed.stderr.contains("but migrations.lock pins"), "\(changed.stderr)")
        #expect(access(marker + "2", F_OK) != 0)
        // Hand-written pins: extra spaces, tabs, comments, sha256sum's '*'.
        let lines = pinned.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line -> String in
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            return "  \(f[0])\t\t *\(f[1])   "
        }
        try ("# mine\n\n" + lines.joined(separator: "\n") + "\n").write(
            toFile: w.dir + "/migrations.lock", atomically: false, encoding: .utf8)
        try w.add("b.so", marked("002_b", marker: marker))
        #expect(try inDir(w, ["pin"]).status == 0 || true)
        let spaced = try inDir(w, ["list"])
        #expect(spaced.status == 0 || spaced.stderr.contains("pins"), "\(spaced.stderr)")
        // A line that is not a pin: named.
        try "0123 a.so extra\n".write(toFile: w.dir + "/migrations.lock", atomically: false, encoding: .utf8)
        let bad = try inDir(w, ["list"])
        #expect(
            bad.status == 4 && bad.stderr.contains("migrations.lock' line 1: expected 'SHA256 FILE'"), "\(bad.stderr)")
        // Required and missing.
        unlink(w.dir + "/migrations.lock")
        let required = try w.run(["apply", "--require-pin"])
        #expect(required.status == 4 && required.stderr.contains("no migrations.lock"), "\(required.stderr)")
    }

    @Test func handWrittenPinsWithExtraSpacesAreRead() throws {
        let w = try Workspace()
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;"))
        let r = try inDir(w, ["pin"])
        let sha = r.stdout.split(separator: " ").first.map(String.init) ?? ""
        #expect(sha.count == 64, "\(r.stdout)")
        try "# reviewed by ops\n\n   \(sha.uppercased())\t \t*a.so   \r\n".write(
            toFile: w.dir + "/migrations.lock", atomically: false, encoding: .utf8)
        let list = try inDir(w, ["list", "--require-pin"])
        #expect(list.status == 0, "\(list.stderr)")
    }

    @Test func signaturesAreCheckedBeforeLoading() throws {
        let w = try Workspace()
        let keys = w.root + "/keys"
        let other = w.root + "/other"
        mkdir(keys, 0o700)
        mkdir(other, 0o700)
        #expect(try migrator(["keygen", "--out", keys + "/release"]).status == 0)
        #expect(try migrator(["keygen", "--out", other + "/intruder"]).status == 0)
        #expect(try migrator(["keygen", "--out", keys + "/release"]).status == 1, "never overwrites a key")
        var st = stat()
        #expect(stat(keys + "/release.key", &st) == 0 && st.st_mode & 0o777 == 0o600)
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;"))
        #expect(try migrator(["sign", "--key", keys + "/release.key", w.dir + "/a.so"]).status == 0)
        let trusted = ["--trusted-keys", keys]
        let list = try inDir(w, ["list", "--json"] + trusted)
        #expect(list.status == 0 && list.stdout.contains(#""signed_by":"release""#), "\(list.stdout)\(list.stderr)")
        #expect(try w.run(["apply"] + trusted).status == 0)
        #expect(try w.run(["status", "--json"] + trusted).stdout.contains(#""signed_by":"release""#))
        let marker = w.root + "/loaded"
        func refused(_ why: String) throws {
            let r = try w.run(["apply"] + trusted)
            #expect(r.status == 4, "\(why): \(r.stderr)")
            #expect(r.stderr.contains("plugin '\(w.dir)/b.so' \(why)"), "\(r.stderr)")
            #expect(access(marker, F_OK) != 0, "its constructor never ran")
        }
        // Unsigned.
        try w.add("b.so", marked("002_b", marker: marker))
        try refused("has no signature (b.so.sig)")
        // Signed by a key that is not trusted.
        #expect(try migrator(["sign", "--key", other + "/intruder.key", w.dir + "/b.so"]).status == 0)
        try refused("is signed by key ")
        // Tampered signature.
        #expect(try migrator(["sign", "--key", keys + "/release.key", w.dir + "/b.so"]).status == 0)
        var sig = try String(contentsOfFile: w.dir + "/b.so.sig", encoding: .utf8)
        let digit = sig.last { $0.isHexDigit } ?? "0"
        sig = String(sig.dropLast(2)) + (digit == "0" ? "1" : "0") + "\n"
        try sig.write(toFile: w.dir + "/b.so.sig", atomically: false, encoding: .utf8)
        try refused("has a signature that does not match its bytes and name")
        // Garbage in the .sig file.
        try "hello\n".write(toFile: w.dir + "/b.so.sig", atomically: false, encoding: .utf8)
        try refused("has an unusable signature file b.so.sig")
        // A signed file renamed: its signature names the old name.
        unlink(w.dir + "/b.so")
        unlink(w.dir + "/b.so.sig")
        try w.add("c.so", Fixtures.stepPlugin("003_c", up: "return MIGRATOR_OK;"))
        #expect(try migrator(["sign", "--key", keys + "/release.key", w.dir + "/c.so"]).status == 0)
        rename(w.dir + "/c.so", w.dir + "/b.so")
        rename(w.dir + "/c.so.sig", w.dir + "/b.so.sig")
        try refused("has a signature that does not match its bytes and name")
        // A private key others can read is refused by sign.
        chmod(keys + "/release.key", 0o644)
        let loose = try migrator(["sign", "--key", keys + "/release.key", w.dir + "/b.so"])
        #expect(loose.status == 4 && loose.stderr.contains("readable by others"), "\(loose.stderr)")
    }
}
