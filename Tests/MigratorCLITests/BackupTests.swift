import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Backups round-trip exactly; restore checks before it replaces anything.
@Suite("backup and restore (end to end)")
struct BackupTests {
    func total(_ w: Workspace) throws -> String {
        try w.run(["db", "digest"], dir: false).stdout.split(separator: "\n").last.map(String.init) ?? ""
    }

    func applied(_ w: Workspace) throws -> Workspace {
        try w.importSample()
        #expect(try w.run(["apply"]).status == 0)
        return w
    }

    @Test func aBackupRestoresExactly() throws {
        let w = try applied(try Workspace(examples: true))
        let out = w.root + "/bk"
        let r = try w.run(["backup", "--out", out], dir: false)
        #expect(r.status == 0, "\(r.stderr)")
        var st = stat()
        #expect(stat(out, &st) == 0 && st.st_mode & 0o777 == 0o700)
        #expect(stat(out + "/data.mdb", &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(stat(out + "/manifest.json", &st) == 0 && st.st_mode & 0o777 == 0o600)
        let digest = try total(w)
        let history = try w.run(["history", "--json"], dir: false).stdout
        let states = try w.states()
        // Change everything, then restore.
        #expect(try w.run(["rollback", "--last", "1"]).status == 4, "005 is irreversible")
        _ = try migrator(["db", "import", "users", "-", "--db", w.db], input: #"{"_id":"intruder"}"#)
        #expect(try total(w) != digest)
        let refused = try w.run(["restore", out], dir: false)
        #expect(refused.status == 2 && refused.stderr.contains("restore needs --yes"), "\(refused.stderr)")
        let back = try w.run(["restore", out, "--yes"], dir: false)
        #expect(back.status == 0, "\(back.stderr)")
        #expect(try total(w) == digest)
        #expect(try w.run(["history", "--json"], dir: false).stdout == history)
        #expect(try w.states() == states)
        // Nothing left beside the database.
        let siblings = try FileManager.default.contentsOfDirectory(atPath: w.root)
        #expect(!siblings.contains { $0.contains("restoring") || $0.contains("before-restore") }, "\(siblings)")
        // A backup never overwrites.
        let again = try w.run(["backup", "--out", out], dir: false)
        #expect(again.status == 1 && again.stderr.contains("is not empty"), "\(again.stderr)")
    }

    @Test func damagedBackupsAreRefusedAndNothingChanges() throws {
        let w = try applied(try Workspace(examples: true))
        let digest = try total(w)
        func fresh(_ name: String) throws -> String {
            let out = w.root + "/" + name
            #expect(try w.run(["backup", "--out", out], dir: false).status == 0)
            return out
        }
        // Truncated data.
        let truncated = try fresh("truncated")
        #expect(truncate(truncated + "/data.mdb", 8192) == 0)
        // A manifest that does not match.
        let edited = try fresh("edited")
        let manifest = try String(contentsOfFile: edited + "/manifest.json", encoding: .utf8)
        try manifest.replacingOccurrences(of: "\"digest\" : \"", with: "\"digest\" : \"00")
            .write(toFile: edited + "/manifest.json", atomically: false, encoding: .utf8)
        // Not a manifest at all; no manifest.
        let junk = try fresh("junk")
        try "not json".write(toFile: junk + "/manifest.json", atomically: false, encoding: .utf8)
        let bare = try fresh("bare")
        unlink(bare + "/manifest.json")
        for (dir, why) in [
            (truncated, "cannot be read"), (edited, "do not match the manifest's digest"),
            (junk, "is not a migrator backup manifest"), (bare, "no readable manifest.json"),
        ] {
            let r = try w.run(["restore", dir, "--yes"], dir: false)
            #expect(r.status == 4, "\(dir): \(r.stderr)")
            #expect(r.stderr.contains("'\(dir)' is not a usable backup") && r.stderr.contains(why), "\(r.stderr)")
        }
        #expect(try total(w) == digest)
    }

    @Test func applyBacksUpFirstAndKeepsTheNewest() throws {
        let w = try Workspace()
        try w.importSample()
        let dir = w.root + "/backups"
        for i in 1...4 {
            try w.add("p\(i).so", Fixtures.stepPlugin(String(format: "%03d_step", i), up: "return MIGRATOR_OK;"))
            let r = try w.run(["apply", "--backup-dir", dir, "--keep", "2"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.contains("note: backup: \(dir)/backup-"), "\(r.stderr)")
        }
        let kept = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(kept.count == 2, "\(kept)")
        // The newest backup holds the state before the last step.
        let manifest =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: dir + "/" + kept[1] + "/manifest.json"))) as? [String: Any]
        #expect(manifest?["applied"] as? [String] == ["001_step", "002_step", "003_step"])
        // Nothing pending: no backup.
        #expect(try w.run(["apply", "--backup-dir", dir]).stderr.contains("backup") == false)
    }

    /// The red team's attack, without its race: the backup folder holds a
    /// link named like an old backup, pointing at a folder with a manifest
    /// and a data.mdb (as the live database would be mid-swap), someone
    /// else's "backup", and a folder without a manifest. The prune removes
    /// only migrator's own old backup, through the descriptor it checked.
    @Test(.enabled(if: getuid() == 0, "the planted backup belongs to user nobody"))
    func aPruneRemovesOnlyItsOwnBackupsAndFollowsNoLink() throws {
        let w = try Workspace()
        try w.importSample()
        let dir = w.root + "/backups"
        try w.add("p1.so", Fixtures.stepPlugin("001_step", up: "return MIGRATOR_OK;"))
        #expect(try w.run(["apply", "--backup-dir", dir]).status == 0)
        let first = try FileManager.default.contentsOfDirectory(atPath: dir)
        #expect(first.count == 1, "\(first)")
        let manifest = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(first[0])/manifest.json"))
        // The victim: what the link points to.
        let victim = w.root + "/victim"
        try FileManager.default.createDirectory(atPath: victim, withIntermediateDirectories: false)
        try manifest.write(to: URL(fileURLWithPath: victim + "/manifest.json"))
        try Data("live".utf8).write(to: URL(fileURLWithPath: victim + "/data.mdb"))
        #expect(symlink(victim, dir + "/backup-00000000T000000000Z") == 0)
        // Someone else's directory, with a manifest.
        let foreign = dir + "/backup-00000000T000000001Z"
        try FileManager.default.createDirectory(atPath: foreign, withIntermediateDirectories: false)
        try manifest.write(to: URL(fileURLWithPath: foreign + "/manifest.json"))
        #expect(chown(foreign, 65534, 65534) == 0 && chown(foreign + "/manifest.json", 65534, 65534) == 0)
        // Ours, but no backup.
        let stray = dir + "/backup-00000000T000000002Z"
        try FileManager.default.createDirectory(atPath: stray, withIntermediateDirectories: false)
        try Data("notes".utf8).write(to: URL(fileURLWithPath: stray + "/notes.txt"))

        try w.add("p2.so", Fixtures.stepPlugin("002_step", up: "return MIGRATOR_OK;"))
        let r = try w.run(["apply", "--backup-dir", dir, "--keep", "1"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("removed the old backup \(dir)/\(first[0])"), "\(r.stderr)")
        #expect(!r.stderr.contains("backup-00000000"), "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: victim + "/data.mdb"), "the link was followed")
        #expect(FileManager.default.fileExists(atPath: victim + "/manifest.json"))
        #expect(FileManager.default.fileExists(atPath: foreign + "/manifest.json"), "someone else's was removed")
        #expect(FileManager.default.fileExists(atPath: stray + "/notes.txt"))
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(left.count == 4 && !left.contains(first[0]), "\(left)")
    }

    /// A backup folder someone else could write (or owns) is refused before
    /// anything runs; `--insecure` goes on, with a warning.
    @Test func aBackupFolderOthersCanWriteIsRefused() throws {
        let w = try Workspace()
        try w.add("p1.so", Fixtures.stepPlugin("001_step", up: "return MIGRATOR_OK;"))
        let shared = w.root + "/shared"
        #expect(mkdir(shared, 0o700) == 0 && chmod(shared, 0o777) == 0)
        let r = try w.run(["apply", "--backup-dir", shared])
        #expect(r.status == 4, "\(r.stderr)")
        #expect(
            r.stderr.contains("backup directory '\(shared)' is writable by everyone (mode 777); anyone who can write"),
            "\(r.stderr)")
        #expect(try w.states()["001_step"] != "applied")
        // Inside a folder everyone can write (no sticky bit): refused too.
        let inside = shared + "/mine"
        #expect(mkdir(inside, 0o700) == 0)
        let nested = try w.run(["apply", "--backup-dir", inside])
        #expect(nested.status == 4 && nested.stderr.contains("lies in '\(shared)'"), "\(nested.stderr)")
        let anyway = try w.run(["apply", "--backup-dir", shared, "--insecure"])
        #expect(anyway.status == 0, "\(anyway.stderr)")
        #expect(anyway.stderr.contains("used anyway: the insecure option is set"), "\(anyway.stderr)")
        #expect(try w.states()["001_step"] == "applied")
    }

    /// A backup others could write could be changed into anything: restore
    /// (and its check) refuse it unless `--insecure`.
    @Test func restoreRefusesABackupOthersCanWrite() throws {
        let w = try applied(try Workspace(examples: true))
        let out = w.root + "/bk"
        #expect(try w.run(["backup", "--out", out], dir: false).status == 0)
        #expect(chmod(out, 0o777) == 0)
        let refused = try w.run(["restore", out, "--yes"], dir: false)
        #expect(refused.status == 4, "\(refused.stderr)")
        #expect(refused.stderr.contains("backup '\(out)' is writable by everyone"), "\(refused.stderr)")
        let anyway = try w.run(["restore", out, "--yes", "--insecure"], dir: false)
        #expect(anyway.status == 0, "\(anyway.stderr)")
        #expect(anyway.stderr.contains("used anyway"), "\(anyway.stderr)")
        // A link as the backup is not followed by the backup command either.
        #expect(symlink(w.root + "/elsewhere", w.root + "/link") == 0)
        let link = try w.run(["backup", "--out", w.root + "/link"], dir: false)
        #expect(link.status == 1 && link.stderr.contains("is not a directory (or is a symlink)"), "\(link.stderr)")
    }

    /// The red team's forgery: someone who can write a backup replaces its
    /// files and recomputes the (unkeyed) manifest. A signed manifest
    /// catches it; so does a `data.mdb` whose bytes differ from the signed
    /// hash though every digest the old check compared still matches.
    @Test func aForgedBackupIsRefusedByItsSignature() throws {
        let w = try Workspace()
        try w.importSample()
        try w.add("p1.so", Fixtures.stepPlugin("001_step", up: "return MIGRATOR_OK;"))
        #expect(try w.run(["apply"]).status == 0)
        let keys = w.root + "/keys"
        #expect(mkdir(keys, 0o700) == 0)
        #expect(try migrator(["keygen", "--out", keys + "/host"]).status == 0)
        #expect(try migrator(["keygen", "--out", keys + "/intruder"]).status == 0)
        let signed = w.root + "/signed"
        let made = try w.run(["backup", "--out", signed, "--backup-key", keys + "/host.key"], dir: false)
        #expect(made.status == 0 && made.stderr.contains("signed by key"), "\(made.stderr)")
        let digest = try total(w)
        func copy(_ name: String, from: String, to: String) throws {
            unlink(to + "/" + name)
            try FileManager.default.copyItem(atPath: from + "/" + name, toPath: to + "/" + name)
        }
        func restore(_ dir: String, _ key: String?) throws -> (status: Int32, stderr: String) {
            let r = try w.run(["restore", dir, "--yes"] + (key.map { ["--backup-key", $0] } ?? []), dir: false)
            return (r.status, r.stderr)
        }
        // Its own key (private or public half) checks it.
        let good = try restore(signed, keys + "/host.pub")
        #expect(good.status == 0 && good.stderr.contains("signature by key"), "\(good.stderr)")
        // Same collections and applied list, other history: the signed hash of data.mdb differs.
        #expect(try w.run(["rollback", "--all", "--yes"]).status == 0)
        #expect(try w.run(["apply"]).status == 0)
        #expect(try total(w) == digest)
        let later = w.root + "/later"
        #expect(try w.run(["backup", "--out", later], dir: false).status == 0)
        let swapped = w.root + "/swapped"
        try FileManager.default.copyItem(atPath: signed, toPath: swapped)
        try copy("data.mdb", from: later, to: swapped)
        // The forgery: the intruder's data, with a manifest made for it.
        _ = try migrator(["db", "import", "users", "-", "--db", w.db], input: #"{"_id":"intruder"}"#)
        let forged = w.root + "/forged"
        #expect(try w.run(["backup", "--out", forged + "-src"], dir: false).status == 0)
        try FileManager.default.copyItem(atPath: signed, toPath: forged)
        try copy("data.mdb", from: forged + "-src", to: forged)
        try copy("manifest.json", from: forged + "-src", to: forged)
        let resigned = w.root + "/resigned"
        #expect(
            try w.run(["backup", "--out", resigned, "--backup-key", keys + "/intruder.key"], dir: false).status == 0)
        let unsigned = w.root + "/unsigned"
        try FileManager.default.copyItem(atPath: forged, toPath: unsigned)
        unlink(unsigned + "/manifest.json.sig")
        let before = try total(w)
        for (dir, why) in [
            (swapped, "its data.mdb does not match the manifest's SHA-256"),
            (forged, "the signature of its manifest does not verify"),
            (resigned, "is signed by key"), (unsigned, "it is not signed (no manifest.json.sig)"),
        ] {
            let r = try restore(dir, keys + "/host.key")
            #expect(r.status == 4, "\(dir): \(r.stderr)")
            #expect(r.stderr.contains("'\(dir)' is not a usable backup") && r.stderr.contains(why), "\(r.stderr)")
        }
        #expect(try total(w) == before)
        // Without a key, an unsigned backup is restored, and the run says what vouches for it.
        let warned = try restore(unsigned, nil)
        #expect(warned.status == 0, "\(warned.stderr)")
        #expect(warned.stderr.contains("is not signed; only its owner and mode vouch for it"), "\(warned.stderr)")
        // A public key cannot sign: refused before anything is copied.
        let pub = try w.run(["backup", "--out", w.root + "/p", "--backup-key", keys + "/host.pub"], dir: false)
        #expect(pub.status == 4 && pub.stderr.contains("is a public key"), "\(pub.stderr)")
        #expect(!FileManager.default.fileExists(atPath: w.root + "/p"))
        // A key file others could write decides what restores: refused.
        #expect(chmod(keys + "/host.pub", 0o666) == 0)
        let loose = try restore(signed, keys + "/host.pub")
        #expect(
            loose.status == 4 && loose.stderr.contains("backup key '\(keys)/host.pub' is writable by everyone"),
            "\(loose.stderr)")
        // The question names what it restores from, and what vouches for it.
        #expect(good.stderr.contains("signature by key"), "\(good.stderr)")
    }

    /// `apply --backup-dir` signs with `backup_key`; the setting alone,
    /// without a backup folder, does not stop an apply.
    @Test func applyBackupsAreSignedWithTheConfiguredKey() throws {
        let w = try Workspace()
        try w.add("p1.so", Fixtures.stepPlugin("001_step", up: "return MIGRATOR_OK;"))
        #expect(try migrator(["keygen", "--out", w.root + "/host"]).status == 0)
        let conf = w.root + "/migrator.conf"
        try "backup_key = \(w.root)/host.key\n".write(toFile: conf, atomically: false, encoding: .utf8)
        #expect(try w.run(["apply", "--config", conf]).status == 0)
        try w.add("p2.so", Fixtures.stepPlugin("002_step", up: "return MIGRATOR_OK;"))
        let dir = w.root + "/backups"
        let r = try w.run(["apply", "--config", conf, "--backup-dir", dir])
        #expect(r.status == 0, "\(r.stderr)")
        let taken = try FileManager.default.contentsOfDirectory(atPath: dir)
        #expect(taken.count == 1)
        let sig = try String(contentsOfFile: dir + "/" + taken[0] + "/manifest.json.sig", encoding: .utf8)
        #expect(sig.hasPrefix("migrator-signature-v1\n"))
        let usage = try w.run(["apply", "--backup-key", w.root + "/host.key"])
        #expect(usage.status == 2 && usage.stderr.contains("--backup-key goes with --backup-dir"), "\(usage.stderr)")
    }

    @Test func restoreWaitsForARunAndAKilledBackupIsNeverRestored() throws {
        let w = try Workspace()
        try w.importSample()
        let out = w.root + "/bk"
        #expect(try w.run(["backup", "--out", out], dir: false).status == 0)
        try w.add(
            "slow.so",
            Fixtures.stepPlugin(
                "001_slow", up: #"fprintf(stderr, "in step\n"); fflush(stderr); sleep(5); return MIGRATOR_OK;"#))
        let run = try launchMigrator(["apply", "--db", w.db, "--dir", w.dir])
        #expect(run.stderr(until: "in step").contains("in step"))
        let r = try w.run(["restore", out, "--yes", "--lock-timeout", "0"], dir: false)
        #expect(r.status == 3, "the run holds the lock: \(r.stderr)")
        run.process.waitUntilExit()
        #expect(try w.states() == ["001_slow": "applied"])
        // A backup killed part way has no manifest: restore refuses it.
        let partial = w.root + "/partial"
        mkdir(partial, 0o700)
        let copy = try String(contentsOfFile: out + "/data.mdb", encoding: .isoLatin1)
        try copy.prefix(4096).write(toFile: partial + "/data.mdb", atomically: false, encoding: .isoLatin1)
        #expect(try w.run(["restore", partial, "--yes"], dir: false).status == 4)
        #expect(try w.states() == ["001_slow": "applied"])
    }
}

/// The operator demo runs from start to end on the sample data.
@Suite("operator demo (end to end)")
struct OperatorDemoTests {
    @Test func theDemoRunsThrough() throws {
        let bundle = try exampleMigrationsDirectory()
        defer { Fixtures.removeTree(bundle) }
        let r = try Fixtures.run(
            "/bin/bash",
            [
                Fixtures.packageRoot + "/Plugins-Examples/operator-demo/demo.sh",
                Fixtures.productsDirectory + "/migrator",
                bundle,
            ])
        #expect(r.status == 0, "\(r.output)")
        for expected in [
            "pinned 2 plugin(s)", "dry run: 5 migration(s) would be applied; nothing was kept",
            "verified 5 migration(s): 4 reversible, 1 irreversible, 0 not reversible",
            "note: backup: backups/backup-", "zz_intruder.so' is not in migrations.lock",
            "done: the database is back to the state before apply",
        ] {
            #expect(r.output.contains(expected), "missing '\(expected)' in:\n\(r.output)")
        }
        // The digest after the dry run and after the restore equal the first.
        let totals = r.output.split(separator: "\n").filter { $0.hasSuffix("(total)") }
        #expect(totals.count == 3 && Set(totals).count == 1, "\(totals)")
    }
}

/// Killed at any moment, a restore leaves either the old database or the
/// backup in place, whole; and a killed verify keeps nothing.
@Suite("killed operator commands (end to end)")
struct KilledOperatorTests {
    func total(_ w: Workspace) throws -> String {
        try w.run(["db", "digest"], dir: false).stdout.split(separator: "\n").last.map(String.init) ?? ""
    }

    @Test func aRestoreKilledAtAnyMomentLeavesOneWholeDatabase() throws {
        let w = try Workspace()
        try w.importSample()
        let out = w.root + "/bk"
        #expect(try w.run(["backup", "--out", out], dir: false).status == 0)
        let backup = try total(w)
        _ = try migrator(["db", "import", "users", "-", "--db", w.db], input: #"{"_id":"later"}"#)
        var current = try total(w)
        for delay in stride(from: 0, to: 30_000, by: 3_000) {
            let run = try launchMigrator(["restore", out, "--yes", "--db", w.db])
            usleep(useconds_t(delay))
            kill(run.process.processIdentifier, SIGKILL)
            run.process.waitUntilExit()
            let now = try total(w)
            #expect(now == backup || now == current, "after a kill at \(delay) µs: \(now)")
            current = now
        }
        #expect(try w.run(["restore", out, "--yes"], dir: false).status == 0, "a later restore still works")
        #expect(try total(w) == backup)
    }

    @Test func aKilledVerifyKeepsNothing() throws {
        let w = try Workspace()
        try w.add("a.so", slowPlugin("001_slow", down: #"return host->remove(txn, "t", "{}", NULL);"#))
        _ = try migrator(["db", "import", "t", "-", "--db", w.db], input: #"{"_id":"kept"}"#)
        let before = try total(w)
        let run = try launchMigrator(["verify", "--db", w.db, "--dir", w.dir])
        #expect(run.stderr(until: "in step").contains("in step"))
        kill(run.process.processIdentifier, SIGKILL)
        run.process.waitUntilExit()
        usleep(200_000)
        #expect(try total(w) == before)
        #expect(try w.history().isEmpty)
    }
}
