import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Checkpointed migrations (ABI 1.1): killed at random points, resumed, and
/// every document transformed exactly once. (bench/checkpoint-torture.sh
/// runs the 3,000,000-document version.)
@Suite("checkpointed migrations (end to end)")
struct CheckpointTests {
    func workspace(users: Int, backend: Backend = .lmdb) throws -> Workspace {
        let w = try Workspace(backend: backend)
        let source = try String(
            contentsOfFile: Fixtures.packageRoot + "/bench/migrations/checkpoint_migration.c", encoding: .utf8)
        try w.add("c.so", source)
        let lines = (1...users).map { #"{"_id":\#($0)}"# }.joined(separator: "\n")
        #expect(try migrator(["db", "import", "users", "-", "--db", w.db], input: lines).status == 0)
        return w
    }

    @Test(arguments: Backend.allCases) func aKilledCheckpointedMigrationResumesAndDoesEveryDocumentOnce(
        _ backend: Backend
    ) throws {
        let users = 6000
        let w = try workspace(users: users, backend: backend)
        var generator = SystemRandomNumberGenerator()
        var kills = 0
        while kills < 3 {
            let run = try launchMigrator(
                ["apply", "--db", w.db, "--dir", w.dir],
                environment: [
                    "MIGRATION_CHECKPOINT_EVERY": "200", "MIGRATION_CHECKPOINT_PAUSE_MS": "30", "TMPDIR": w.root,
                ])
            // After 1 to 3 more checkpoints, kill the worker (not the runner).
            let wanted = Int.random(in: 1...3, using: &generator)
            var seen = ""
            for _ in 0..<wanted { seen += run.stderr(until: "checkpoint ") }
            let workers = try Fixtures.run(
                "/usr/bin/pgrep", ["-P", "\(run.process.processIdentifier)", "-f", "__worker"])
            guard let worker = Int32(workers.output.split(separator: "\n").first ?? "") else {
                run.process.waitUntilExit()
                Issue.record("the run ended before it could be killed: \(seen)")
                break
            }
            usleep(UInt32.random(in: 0...20_000, using: &generator))
            kill(worker, SIGKILL)
            _ = run.stderr.fileHandleForReading.readDataToEndOfFile()
            run.process.waitUntilExit()
            #expect(run.process.terminationStatus == 1, "the step failed: \(seen)")
            kills += 1
            let status = try w.run(["status"]).stdout
            #expect(status.contains("050_count_users") && status.contains("interrupted (resumable from "), "\(status)")
        }
        let history = try w.history()
        #expect(
            history.contains { ($0["error"] as? String)?.contains("the work up to checkpoint") == true },
            "the failure says what was kept: \(history)")
        let last = try w.run(["apply"], environment: ["MIGRATION_CHECKPOINT_EVERY": "200"])
        #expect(last.status == 0, "\(last.stderr)")
        #expect(try w.count("users", #"{"n":1}"#) == users, "every user once")
        #expect(try w.count("users", #"{"n":{"$ne":1}}"#) == 0, "no user twice, none skipped")
        #expect(try w.states() == ["050_count_users": "applied"])
        #expect(try w.run(["status", "--json"]).stdout.contains("resumable_from") == false)
    }

    @Test(arguments: Backend.allCases) func rollbackOfAnInterruptedCheckpointedMigrationRunsDown(
        _ backend: Backend
    ) throws {
        let w = try workspace(users: 2000, backend: backend)
        let run = try launchMigrator(
            ["apply", "--db", w.db, "--dir", w.dir],
            environment: ["MIGRATION_CHECKPOINT_EVERY": "100", "MIGRATION_CHECKPOINT_PAUSE_MS": "30", "TMPDIR": w.root])
        _ = run.stderr(until: "checkpoint 2 ")
        let workers = try Fixtures.run("/usr/bin/pgrep", ["-P", "\(run.process.processIdentifier)", "-f", "__worker"])
        if let worker = Int32(workers.output.split(separator: "\n").first ?? "") { kill(worker, SIGKILL) }
        _ = run.stderr.fileHandleForReading.readDataToEndOfFile()
        run.process.waitUntilExit()
        #expect(try w.count("users", #"{"n":1}"#) >= 200, "the checkpoints are kept")
        let json = try w.run(["status", "--json"]).stdout
        #expect(json.contains(#""resumable_from":"#), "\(json)")
        let r = try w.run(["rollback", "--all", "--yes"])
        #expect(r.status == 0 && r.stderr.contains("rolled back 050_count_users"), "\(r.stderr)")
        #expect(try w.count("users", #"{"n":{"$exists":true}}"#) == 0, "down undid the partial work")
        #expect(try w.run(["status", "--json"]).stdout.contains("resumable_from") == false)
    }

    @Test(arguments: Backend.allCases)
    func trialsRefuseToCheckpoint(_ backend: Backend) throws {
        let w = try workspace(users: 300, backend: backend)
        let dry = try w.run(["apply", "--dry-run"], environment: ["MIGRATION_CHECKPOINT_EVERY": "100"])
        #expect(dry.status == 1, "\(dry.stdout)")
        #expect(dry.stdout.contains("cannot do: its work would be committed"), "\(dry.stdout)")
        #expect(try w.count("users", #"{"n":{"$exists":true}}"#) == 0, "nothing was committed")
    }
}
