import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Signed bundles: one file of plugins made by `bundle create`, taken by
/// `apply --from` only signed, unexpired, not older than what the database
/// took, and with every file's size and hash as signed.
@Suite("bundles (end to end)")
struct BundleTests {
    /// A workspace with two plugins, a key pair and a trusted-keys folder.
    struct Fleet {
        let w: Workspace
        let keys: String
        let key: String

        init() throws {
            w = try Workspace()
            try w.add("a.so", Fixtures.stepPlugin("001_a", up: #"return host->insert(txn, "log", "{\"n\":1}");"#))
            try w.add("b.so", Fixtures.stepPlugin("002_b", up: #"return host->insert(txn, "log", "{\"n\":2}");"#))
            keys = w.root + "/trusted"
            #expect(mkdir(keys, 0o700) == 0)
            #expect(try migrator(["keygen", "--out", w.root + "/release"]).status == 0)
            #expect(rename(w.root + "/release.pub", keys + "/release.pub") == 0)
            key = w.root + "/release.key"
        }

        func bundle(_ sequence: Int, _ extra: [String] = [], dir: String? = nil) throws -> String {
            let out = w.root + "/app-\(sequence)-\(UInt32.random(in: 0..<UInt32.max)).bundle"
            let r = try migrator(
                [
                    "bundle", "create", "--dir", dir ?? w.dir, "--key", key, "--sequence", String(sequence), "--out",
                    out,
                    "--name", "app",
                ] + extra)
            #expect(r.status == 0, "\(r.stderr)")
            return out
        }

        func apply(_ bundle: String, _ extra: [String] = []) throws -> (status: Int32, stderr: String) {
            let r = try migrator(["apply", "--from", bundle, "--trusted-keys", keys, "--db", w.db] + extra)
            return (r.status, r.stderr)
        }
    }

    @Test func aBundleIsMadeInspectedAndApplied() throws {
        let f = try Fleet()
        let b = try f.bundle(3, ["--expires-in", "30d"])
        let unverified = try migrator(["bundle", "inspect", b])
        #expect(unverified.status == 0 && unverified.stdout.contains("Verdict:   unverified"), "\(unverified.stdout)")
        let inspected = try migrator(["bundle", "inspect", b, "--trusted-keys", f.keys, "--json"])
        #expect(inspected.status == 0, "\(inspected.stderr)")
        let doc = try JSONSerialization.jsonObject(with: Data(inspected.stdout.utf8)) as? [String: Any]
        let manifest = doc?["manifest"] as? [String: Any]
        #expect(manifest?["name"] as? String == "app" && manifest?["sequence"] as? Int == 3)
        let files = manifest?["files"] as? [[String: Any]] ?? []
        #expect(files.map { $0["name"] as? String } == ["a.so", "b.so"])
        #expect(files.map { $0["migrations"] as? [String] } == [["001_a"], ["002_b"]])
        #expect((doc?["verdict"] as? String)?.hasPrefix("good: signed by the trusted key 'release'") == true)
        #expect(manifest?["expires_at"] is String)
        // Applied from the bundle; no plugin file reaches the migrations folder.
        let applied = try f.apply(b)
        #expect(applied.status == 0, "\(applied.stderr)")
        #expect(try f.w.states() == ["001_a": "applied", "002_b": "applied"])
        let records = try migrator(["db", "find", "_migrations_bundles", "--db", f.w.db]).stdout
        #expect(records.contains(#""_id":"app""#) && records.contains(#""sequence":3"#), "\(records)")
        #expect(records.contains(#""applied":["001_a","002_b"]"#), "\(records)")
        // Each record and history entry names the bundle it came from.
        let history = try migrator(["history", "--json", "--db", f.w.db]).stdout
        #expect(history.components(separatedBy: #""bundle":"app #3""#).count == 3, "\(history)")
        let recorded = try migrator(["db", "find", "_migrations", "--db", f.w.db]).stdout
        #expect(recorded.components(separatedBy: #""bundle":"app #3""#).count == 3, "\(recorded)")
        // The same sequence again: nothing new, and it says so.
        let again = try f.apply(b)
        #expect(again.status == 0 && again.stderr.contains("already took bundle app #3"), "\(again.stderr)")
        // The same sequence with other contents is not the bundle taken.
        let other = f.w.root + "/other"
        #expect(mkdir(other, 0o700) == 0)
        try Fixtures.compilePlugin(Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;"), name: "a.so", in: other)
        let impostor = try f.apply(try f.bundle(3, dir: other))
        #expect(
            impostor.status == 4 && impostor.stderr.contains("already took with other contents"), "\(impostor.stderr)")
        let shown = try migrator(["status", "--from", b, "--trusted-keys", f.keys, "--db", f.w.db])
        #expect(shown.stdout.contains("Bundle:   app #3, taken "), "\(shown.stdout)")
        // status, validate and list read the same bundle.
        for command in [["status"], ["validate"], ["list"]] {
            let r = try migrator(command + ["--from", b, "--trusted-keys", f.keys, "--db", f.w.db])
            #expect(r.status == 0, "\(command): \(r.stderr)")
        }
        // A bundle is taken only signed.
        let unsigned = try migrator(["apply", "--from", b, "--db", f.w.db])
        #expect(unsigned.status == 2 && unsigned.stderr.contains("--from needs --trusted-keys"), "\(unsigned.stderr)")
    }

    @Test func refusedBundlesNameTheCheckThatFailed() throws {
        let f = try Fleet()
        let newer = try f.bundle(5)
        let older = try f.bundle(4)
        #expect(try f.apply(newer).status == 0)
        // A rollback: an older sequence after a newer one.
        let rolledBack = try f.apply(older)
        #expect(rolledBack.status == 4, "\(rolledBack.stderr)")
        #expect(
            rolledBack.stderr.contains("app #4, older than #5 that this database already took"), "\(rolledBack.stderr)")
        // A freeze: expired.
        let expiring = try f.bundle(6, ["--expires-in", "1s"])
        Thread.sleep(forTimeInterval: 2.1)
        let expired = try f.apply(expiring)
        #expect(expired.status == 4 && expired.stderr.contains("expired at"), "\(expired.stderr)")
        // Signed by a key this host does not trust.
        #expect(try migrator(["keygen", "--out", f.w.root + "/intruder"]).status == 0)
        let foreign = f.w.root + "/foreign.bundle"
        #expect(
            try migrator([
                "bundle", "create", "--dir", f.w.dir, "--key", f.w.root + "/intruder.key", "--sequence", "9", "--out",
                foreign,
            ]).status == 0)
        let untrusted = try f.apply(foreign)
        #expect(untrusted.status == 4 && untrusted.stderr.contains("which is not a trusted key"), "\(untrusted.stderr)")
        #expect(try f.w.states() == ["001_a": "applied", "002_b": "applied"])
    }

    /// Tampered bytes are refused on their hash, before they are parsed or
    /// loaded: the tampered plugin's constructor never runs.
    @Test func tamperedBytesNeverRun() throws {
        let f = try Fleet()
        let marker = f.w.root + "/constructor-ran"
        let evil = f.w.root + "/evil"
        #expect(mkdir(evil, 0o700) == 0)
        try Fixtures.compilePlugin(
            Fixtures.stepPlugin(
                "003_evil", up: "return MIGRATOR_OK;",
                prelude: """
                    #include <fcntl.h>
                    #include <unistd.h>
                    __attribute__((constructor)) static void ran(void) {
                        int fd = open("\(marker)", O_WRONLY | O_CREAT, 0600); if (fd >= 0) close(fd); }
                    """), name: "c.so", in: evil)
        let b = try f.bundle(1, dir: evil)
        let m = try f.bundle(2, dir: evil)
        // Making the bundles loaded the plugin (for its descriptors), where it is built.
        unlink(marker)
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: b)))
        bytes[bytes.count - 100] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: b))
        let r = try f.apply(b)
        #expect(r.status == 4 && r.stderr.contains("'c.so' does not match its SHA-256"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the tampered plugin's constructor ran")
        // A changed manifest fails the signature.
        var mb = Array(try Data(contentsOf: URL(fileURLWithPath: m)))
        if let at = mb.firstIndex(of: UInt8(ascii: "}")) { mb[at - 1] ^= 0x01 }
        try Data(mb).write(to: URL(fileURLWithPath: m))
        let sig = try f.apply(m)
        #expect(sig.status == 4 && sig.stderr.contains("signature does not match its manifest"), "\(sig.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker))
        // Not a bundle at all.
        let junk = f.w.root + "/junk.bundle"
        try "hello".write(toFile: junk, atomically: false, encoding: .utf8)
        let notBundle = try f.apply(junk)
        #expect(
            notBundle.status == 4 && notBundle.stderr.contains("does not start with MIGRATOR-BUNDLE-1"),
            "\(notBundle.stderr)")
    }
}

/// `--from https://…`: a bundle fetched over verified TLS, bounded in time
/// and size, retried only where a retry can help; then checked as a file is.
@Suite("bundles over HTTPS (end to end)", .serialized)
struct HTTPSBundleTests {
    @Test func aBundleIsFetchedAndEveryFailureIsNamed() throws {
        let f = try BundleTests.Fleet()
        let served = Fixtures.temporaryDirectory("served")
        defer { Fixtures.removeTree(served) }
        let b = try f.bundle(1)
        #expect(rename(b, served + "/app.bundle") == 0)
        let server = try HTTPSServer(serving: served)
        func apply(_ path: String, _ extra: [String] = []) throws -> (status: Int32, stderr: String) {
            try f.apply(server.url(path), ["--ca-file", server.caFile] + extra)
        }
        // The CA not trusted (the system's store has no test CA): TLS fails, nothing applied.
        let untrusted = try f.apply(server.url("/files/app.bundle"))
        #expect(untrusted.status == 1 && untrusted.stderr.contains("TLS failed"), "\(untrusted.stderr)")
        #expect(try f.w.states()["001_a"] == "pending")
        // Errors of their own, each naming its cause.
        for (path, extra, why) in [
            ("/status/404", [String](), "the server answered 404"),
            ("/truncated", [], "the body ended early"),
            ("/huge", [], "larger than"),
            ("/redirect-http/app.bundle", [], "refused a redirect"),
            ("/slow/30", ["--fetch-timeout", "2s"], "timed out"),
        ] {
            let started = Date()
            let r = try apply(path, extra)
            #expect(r.status == 1 && r.stderr.contains(why), "\(path): \(r.stderr)")
            #expect(Date().timeIntervalSince(started) < 25, "\(path) took too long")
        }
        #expect(try server.hits("/status/404") == 1, "no retry for a 4xx")
        // A 500 is retried with backoff; a flaky server still delivers.
        let flaky = try apply("/flaky/app.bundle")
        #expect(flaky.status == 0, "\(flaky.stderr)")
        #expect(try server.hits("/flaky/app.bundle") == 3)
        #expect(try f.w.states() == ["001_a": "applied", "002_b": "applied"])
        let always = try apply("/status/503")
        #expect(always.status == 1 && always.stderr.contains("answered 503"), "\(always.stderr)")
        #expect(try server.hits("/status/503") == 4, "the first attempt and 3 retries")
        // Reporting back: the run's report is POSTed; a failure to report changes nothing.
        let reported = try apply("/files/app.bundle", ["--report", server.url("/report")])
        #expect(reported.status == 0, "\(reported.stderr)")
        let line = try String(contentsOfFile: served + "/reports.jsonl", encoding: .utf8)
        let sent = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        #expect(
            sent?["exit"] as? Int == 0 && (sent?["bundle"] as? [String: Any])?["name"] as? String == "app", "\(line)")
        #expect(sent?["database"] as? String == f.w.db && sent?["applied"] as? [String] == [], "\(line)")
        // A run refused before it began is reported too.
        let refused = try apply("/status/404", ["--report", server.url("/report")])
        #expect(refused.status == 1, "\(refused.stderr)")
        let lines = try String(contentsOfFile: served + "/reports.jsonl", encoding: .utf8).split(separator: "\n")
        let last = try JSONSerialization.jsonObject(with: Data((lines.last ?? "").utf8)) as? [String: Any]
        #expect(lines.count == 2 && last?["exit"] as? Int == 1, "\(lines)")
        #expect((last?["error"] as? String)?.contains("answered 404") == true, "\(lines)")
        let lost = try apply("/files/app.bundle", ["--report", server.url("/status/404")])
        #expect(lost.status == 0 && lost.stderr.contains("could not report to"), "\(lost.stderr)")
        // Only https.
        let plain = try f.apply("http://127.0.0.1:\(server.port)/files/app.bundle")
        #expect(plain.status == 1 && plain.stderr.contains("only https:// URLs"), "\(plain.stderr)")
    }

    /// A fleet: 12 hosts (12 databases, 12 concurrent processes) apply one
    /// 20-plugin bundle from one server; each applies every migration once.
    @Test func twelveHostsApplyOneBundleExactlyOnce() throws {
        let f = try BundleTests.Fleet()
        for n in 3...20 {
            try f.w.add(String(format: "p%03d.so", n), ConcurrencyTests.orderedPlugin(n))
        }
        let served = Fixtures.temporaryDirectory("served")
        defer { Fixtures.removeTree(served) }
        #expect(rename(try f.bundle(7), served + "/app.bundle") == 0)
        let server = try HTTPSServer(serving: served)
        let hosts = (1...12).map { f.w.root + "/host\($0).db" }
        let runs = try hosts.map { db in
            try launchMigrator([
                "apply", "--from", server.url("/files/app.bundle"), "--trusted-keys", f.keys, "--ca-file",
                server.caFile, "--db", db,
            ])
        }
        for (run, db) in zip(runs, hosts) {
            let err = String(decoding: run.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            run.process.waitUntilExit()
            #expect(run.process.terminationStatus == 0, "\(db): \(err)")
            let history = try migrator(["history", "--json", "--db", db]).stdout
            let entries =
                (try JSONSerialization.jsonObject(with: Data(history.utf8)) as? [String: Any])?["history"]
                as? [[String: Any]] ?? []
            #expect(entries.count == 20 && entries.allSatisfy { $0["outcome"] as? String == "applied" }, "\(db)")
            #expect(Set(entries.compactMap { $0["migration_id"] as? String }).count == 20, "each exactly once")
        }
        #expect(try server.hits("/files/app.bundle") == 12)
    }
}
