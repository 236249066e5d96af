import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Dry runs, reversibility checks, redo and digests: trials keep nothing,
/// and say what a real run would do.
/// A one-migration plugin: up inserts `{_id: 1}` into `t`, down removes everything there.
func insertingPlugin(_ id: String) -> String {
    Fixtures.stepPlugin(
        id, up: #"return host->insert(txn, "t", "{\"_id\":1}");"#, down: #"return host->remove(txn, "t", "{}", NULL);"#)
}

/// A plugin whose up inserts into `t`, says "in step" on stderr, and sleeps 30 s.
func slowPlugin(_ id: String, down: String? = "return MIGRATOR_OK;") -> String {
    Fixtures.stepPlugin(
        id,
        up: #"host->insert(txn, "t", "{}"); fprintf(stderr, "in step\n"); fflush(stderr); sleep(30);"#
            + " return MIGRATOR_OK;",
        down: down)
}

@Suite("dry runs, verify, redo, digest (end to end)")
struct OperatorTests {
    /// The whole-database digest line.
    func total(_ w: Workspace) throws -> String {
        let r = try w.run(["db", "digest"], dir: false)
        #expect(r.status == 0, "\(r.stderr)")
        return r.stdout.split(separator: "\n").last.map(String.init) ?? ""
    }

    func json(_ text: String) throws -> [String: Any] {
        guard let o = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw Unreadable("not a JSON object: \(text)")
        }
        return o
    }

    @Test(arguments: Backend.allCases)
    func aDryRunRunsEveryStepAndKeepsNothing(_ backend: Backend) throws {
        let w = try Workspace(examples: true, backend: backend)
        try w.importSample()
        let before = try total(w)
        let r = try w.run(["apply", "--dry-run", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try json(r.stdout)
        let results = report["results"] as? [[String: Any]] ?? []
        #expect(report["kind"] as? String == "dry_run")
        #expect(results.count == 5 && results.allSatisfy { $0["verdict"] as? String == "ran" }, "\(r.stdout)")
        let prefs = (results.first { $0["id"] as? String == "002_user_preferences" }?["changes"] as? [[String: Any]])?
            .first { $0["collection"] as? String == "user_preferences" }
        #expect(prefs?["inserted"] as? Int == 24 && prefs?["created"] as? Bool == true, "\(r.stdout)")
        // Nothing kept: same data, same records, same (empty) history.
        #expect(try total(w) == before)
        #expect(try w.states().values.allSatisfy { $0 == "pending" })
        #expect(try w.history().isEmpty)
        // The text form names each migration and its counts.
        let text = try w.run(["apply", "--dry-run"])
        #expect(text.stdout.contains("002_user_preferences  up  would apply"), "\(text.stdout)")
        #expect(text.stdout.contains("user_preferences: created, 24 inserted, 1 index(es) created"))
        #expect(text.stdout.contains("dry run: 5 migration(s) would be applied; nothing was kept"))
        // And a real apply afterwards does the same work.
        #expect(try w.run(["apply"]).status == 0)
        #expect(try w.count("user_preferences") == 24)
    }

    @Test(arguments: Backend.allCases)
    func aDryRunReportsAFailureAsARealRunWould(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: #"return host->insert(txn, "t", "{}");"#))
        try w.add("b.so", Fixtures.stepPlugin("002_b", up: #"host->set_error(txn, "boom"); return MIGRATOR_ERROR;"#))
        try w.add("c.so", Fixtures.stepPlugin("003_c", up: #"return host->insert(txn, "t", "{}");"#))
        let dry = try w.run(["apply", "--dry-run"])
        let real = try Workspace(backend: backend)
        for (f, s) in [("a.so", "001_a"), ("b.so", "002_b")] {
            try real.add(
                f,
                Fixtures.stepPlugin(
                    s,
                    up: s == "001_a"
                        ? #"return host->insert(txn, "t", "{}");"#
                        : #"host->set_error(txn, "boom"); return MIGRATOR_ERROR;"#))
        }
        let run = try real.run(["apply"])
        #expect(dry.status == run.status && dry.status == 1, "\(dry.stdout)\(dry.stderr)")
        #expect(dry.stdout.contains("error: migration '002_b' (b.so) failed during up: boom"), "\(dry.stdout)")
        #expect(run.stderr.contains("migration '002_b' (b.so) failed during up: boom"))
        #expect(dry.stdout.contains("003_c  up  not reached"))
        #expect(dry.stdout.contains("dry run: 1 migration(s) would be applied, then 002_b fails; nothing was kept"))
        #expect(try w.states() == ["001_a": "pending", "002_b": "pending", "003_c": "pending"])
        #expect(try w.history().isEmpty)
        // A trial on a database that does not exist yet creates none.
        #expect(backend == .postgres || access(w.db, F_OK) != 0, "the dry run created \(w.db)")
    }

    /// On PostgreSQL an insert of a stored `_id` fails when its batch is
    /// sent, not at the call: the dry run must still fail that step, and
    /// count nothing for the insert that never happened.
    @Test(arguments: Backend.allCases)
    func aDryRunFailsAStepWhoseInsertCollidesAndCountsNothingForIt(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        #expect(try migrator(["db", "import", "users", "-", "--db", w.db], input: #"{"_id":1}"#).status == 0)
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: #"return host->insert(txn, "users", "{\"_id\":1}");"#))
        let dry = try w.run(["apply", "--dry-run"])
        #expect(dry.status == 1, "\(dry.stdout)\(dry.stderr)")
        #expect(dry.stdout.contains("failed during up: collection 'users': duplicate _id 1"), "\(dry.stdout)")
        #expect(dry.stdout.contains("users: no change"), "\(dry.stdout)")
        let real = try w.run(["apply"])
        #expect(real.status == 1 && real.stderr.contains("duplicate _id 1"), "\(real.stderr)")
        #expect(try w.count("users") == 1)
    }

    @Test(arguments: Backend.allCases)
    func aRollbackDryRunKeepsEverythingApplied(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add("a.so", insertingPlugin("001_a"))
        #expect(try w.run(["apply"]).status == 0)
        let before = try total(w)
        let r = try w.run(["rollback", "--all", "--dry-run"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("001_a  down  would roll back") && r.stdout.contains("t: 1 deleted"), "\(r.stdout)")
        #expect(try total(w) == before)
        #expect(try w.states() == ["001_a": "applied"])
        #expect(try w.history().count == 1)
    }

    /// up sets a plan on every user; down unsets it, losing the plans some
    /// users had before: not reversible, with the ids and a field diff.
    @Test(arguments: Backend.allCases)
    func verifyFindsADownThatDoesNotUndoUp(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add(
            "a.so",
            Fixtures.stepPlugin(
                "001_seed", up: #"return host->insert(txn, "users", "{\"_id\":\"u1\",\"plan\":\"free\"}");"#))
        #expect(try w.run(["apply"]).status == 0)
        try w.add(
            "b.so",
            Fixtures.stepPlugin(
                "002_plans",
                up: #"return host->update(txn, "users", "{}", "{\"$set\":{\"plan\":\"pro\"}}", NULL);"#,
                down: #"return host->update(txn, "users", "{}", "{\"$unset\":{\"plan\":1}}", NULL);"#))
        try w.add(
            "c.so",
            Fixtures.stepPlugin(
                "003_ok", up: #"return host->create_index(txn, "users", "plan", 0);"#,
                down: #"return host->drop_index(txn, "users", "plan");"#))
        let before = try total(w)
        let r = try w.run(["verify"])
        #expect(r.status == 4, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("002_plans  up  NOT REVERSIBLE"), "\(r.stdout)")
        #expect(r.stdout.contains("users: 1 document(s) differ after down"), "\(r.stdout)")
        #expect(r.stdout.contains(#"e.g. _id "u1""#), "\(r.stdout)")
        #expect(r.stdout.contains(#"- plan: "free""#), "\(r.stdout)")
        #expect(r.stdout.contains("003_ok  up  reversible"), "\(r.stdout)")
        #expect(try total(w) == before, "verify keeps nothing")
        #expect(try w.history().count == 1)
        // Only the named one.
        let one = try w.run(["verify", "003_ok", "--json"])
        #expect(one.status == 0, "\(one.stdout)\(one.stderr)")
        let results = try json(one.stdout)["results"] as? [[String: Any]] ?? []
        #expect(results.map { $0["verdict"] as? String } == ["ran", "reversible"], "\(one.stdout)")
        #expect(try w.run(["verify", "001_seed"]).status == 4, "an applied migration is refused")
        #expect(try w.run(["verify", "009_nope"]).status == 4)
        // apply --verify refuses and applies nothing.
        let apply = try w.run(["apply", "--verify"])
        #expect(apply.status == 4, "\(apply.stderr)")
        #expect(apply.stderr.contains("apply refused: the reversibility check did not pass"))
        #expect(try w.states()["002_plans"] == "pending")
    }

    /// A worker that dies mid-trial leaves the verdicts of the steps before
    /// it as they were, the dying step failed, and the rest not reached.
    @Test(arguments: Backend.allCases)
    func aTrialWhoseWorkerDiesKeepsTheEarlierVerdicts(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        _ = try migrator(["db", "import", "t", "-", "--db", w.db], input: #"{"_id":"kept"}"#)
        try w.add(
            "a.so",
            Fixtures.stepPlugin(
                "001_a", up: #"return host->create_index(txn, "t", "n", 0);"#,
                down: #"return host->drop_index(txn, "t", "n");"#))
        try w.add("b.so", Fixtures.stepPlugin("002_b", up: "abort(); return MIGRATOR_OK;"))
        try w.add("c.so", insertingPlugin("003_c"))
        let before = try total(w)
        let r = try w.run(["verify", "--json"])
        #expect(r.status == 1, "\(r.stdout)\(r.stderr)")
        let results = try json(r.stdout)["results"] as? [[String: Any]] ?? []
        #expect(
            results.map { $0["verdict"] as? String } == ["reversible", "failed", "not_run"], "\(r.stdout)\(r.stderr)")
        let error = results.count > 1 ? results[1]["error"] as? String ?? "" : ""
        #expect(error.contains("killed by SIGABRT during up"), "\(r.stdout)")
        #expect(try w.history().isEmpty)
        #expect(try total(w) == before, "verify keeps nothing")
    }

    @Test(arguments: Backend.allCases)
    func redoRollsBackAndAppliesTheLastOne(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add("a.so", insertingPlugin("001_a"))
        try w.add("b.so", Fixtures.stepPlugin("002_b", up: "return MIGRATOR_OK;", down: nil))
        #expect(try w.run(["apply", "--count", "1"]).status == 0)
        #expect(try w.states() == ["001_a": "applied", "002_b": "pending"])
        let r = try w.run(["redo"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("redone: rolled back 001_a, applied 001_a"), "\(r.stderr)")
        #expect(try w.history().map { $0["outcome"] as? String } == ["applied", "rolled_back", "applied"])
        #expect(try w.count("t") == 1)
        #expect(try w.run(["apply"]).status == 0)
        let refused = try w.run(["redo"])
        #expect(refused.status == 4 && refused.stderr.contains("irreversible"), "\(refused.stderr)")
    }

    /// Equal contents, equal digests, whatever order they were written in.
    @Test(arguments: Backend.allCases)
    func digestsDependOnContentsOnly(_ backend: Backend) throws {
        let a = try Workspace(backend: backend)
        let b = try Workspace(backend: backend)
        let lines = [#"{"_id":1,"x":1}"#, #"{"_id":2,"x":2}"#, #"{"_id":3,"x":3}"#]
        for (w, order) in [(a, lines), (b, lines.reversed())] {
            let r = try migrator(["db", "import", "c", "-", "--db", w.db], input: order.joined(separator: "\n"))
            #expect(r.status == 0, "\(r.stderr)")
        }
        #expect(try total(a) == total(b))
        let one = try a.run(["db", "digest", "c", "--json"], dir: false)
        #expect(try json(one.stdout)["collections"] as? [String: String] != nil, "\(one.stdout)")
        _ = try migrator(["db", "import", "c", "-", "--db", b.db], input: #"{"_id":4}"#)
        #expect(try total(a) != total(b))
        #expect(try a.run(["db", "digest", "nope"], dir: false).status == 1)
    }

    /// A dry run killed mid-step leaves nothing behind, and the next run is normal.
    @Test(arguments: Backend.allCases)
    func aKilledDryRunKeepsNothing(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add("a.so", slowPlugin("001_slow"))
        _ = try migrator(["db", "import", "t", "-", "--db", w.db], input: #"{"_id":"kept"}"#)
        let before = try total(w)
        let run = try launchMigrator(
            ["apply", "--dry-run", "--db", w.db, "--dir", w.dir], environment: ["TMPDIR": w.root])
        #expect(run.stderr(until: "in step").contains("in step"))
        kill(run.process.processIdentifier, SIGKILL)
        run.process.waitUntilExit()
        usleep(200_000)
        #expect(try total(w) == before)
        #expect(try w.history().isEmpty, "a dry run leaves no history, even killed")
        #expect(try w.states() == ["001_slow": "pending"])
    }
}

/// Adopting a database (`baseline`) and accepting an intended edit (`repair`).
@Suite("baseline and repair (end to end)")
struct AdoptionTests {
    @Test(arguments: Backend.allCases)
    func baselineRecordsWithoutRunning(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        for i in 1...3 {
            let id = String(format: "%03d_step", i)
            try w.add("p\(i).so", Fixtures.stepPlugin(id, up: #"return host->insert(txn, "ran", "{}");"#))
        }
        let r = try w.run(["baseline", "--to", "002_step"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "001_step\n002_step\n")
        #expect(try w.states() == ["001_step": "applied", "002_step": "applied", "003_step": "pending"])
        #expect(try w.history().map { $0["outcome"] as? String } == ["baselined", "baselined"])
        #expect(try w.count("ran") == 0, "nothing ran")
        // Already applied: refused, then forced.
        let again = try w.run(["baseline", "--to", "003_step"])
        #expect(again.status == 4 && again.stderr.contains("already has 2 applied migration(s)"), "\(again.stderr)")
        #expect(again.stderr.contains("hint: pass --force"))
        #expect(try w.run(["baseline", "--to", "003_step", "--force"]).status == 2, "--force asks; no terminal")
        #expect(try w.run(["baseline", "--to", "003_step", "--force", "--yes"]).status == 0)
        #expect(try w.states()["003_step"] == "applied")
        #expect(try w.run(["baseline", "--to", "009_nope", "--force", "--yes"]).status == 4)
        #expect(try w.count("ran") == 0)
    }

    @Test(arguments: Backend.allCases)
    func repairAcceptsAnEditedChecksum(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;", checksum: "v1"))
        #expect(try w.run(["apply"]).status == 0)
        try w.add("a.so", Fixtures.stepPlugin("001_a", up: "return MIGRATOR_OK;", checksum: "v2"))
        try w.add("b.so", Fixtures.stepPlugin("002_b", up: "return MIGRATOR_OK;"))
        let refused = try w.run(["apply"])
        #expect(refused.status == 4, "\(refused.stderr)")
        #expect(refused.stderr.contains("hint: if the edit was intended, accept it with 'migrator repair 001_a'"))
        let r = try w.run(["repair", "001_a"])
        #expect(r.status == 0 && r.stderr.contains("checksum v1 -> v2 accepted"), "\(r.stderr)")
        let last = try w.history().last
        #expect(last?["outcome"] as? String == "checksum_accepted")
        #expect((last?["detail"] as? String)?.contains("v1 -> v2") == true)
        #expect(try w.run(["apply"]).status == 0, "the next apply proceeds")
        #expect(try w.run(["repair", "001_a"]).stderr.contains("nothing to repair"))
        #expect(try w.run(["repair", "009_x"]).status == 4)
    }
}
