import MigrationKit
import Testing

@testable import MigrationEngine

/// The planner alone: catalogs and records built in memory, no LMDB, no
/// plugins. `status`, `validate`, `apply` and `rollback` all ask it.
@Suite struct PlannerTests {
    struct Step: Migration {
        let id: String
        var name: String { "Step \(id)" }
        var description: String { "test step" }
        var version: String { "1.0.0" }
        var checksum: String? = nil
        func up(_ db: Database) throws {}
        func down(_ db: Database) throws {}
    }
    struct OneWay: IrreversibleMigration {
        let id: String
        var name: String { id }
        var description: String { "irreversible" }
        var version: String { "1.0.0" }
        func up(_ db: Database) throws {}
    }

    /// A plugin migration as the loader describes it (no code loaded).
    static func plugin(
        _ id: String, file: String = "p.so", sha: String = "aa", checksum: String? = nil,
        reversible: Bool = true
    ) -> AvailableMigration {
        AvailableMigration(
            id: id, name: id, description: "", version: "1.0.0", checksum: checksum, isReversible: reversible,
            origin: .plugin(file: file, sha256: sha), body: .descriptorOnly)
    }

    static func catalog(
        plugins: [AvailableMigration] = [], inProcess: [any Migration] = [], loadsPlugins: Bool = true,
        problems: [MigratorError] = []
    ) throws -> MigrationCatalog {
        var c = MigrationCatalog(appName: "app")
        if loadsPlugins || !plugins.isEmpty {
            var set = PluginSet()
            set.migrations = plugins
            set.problems = problems
            c.setPlugins(set)
        }
        for m in inProcess { try c.register(m) }
        return c
    }

    static func record(
        _ id: String, _ source: MigrationSource = .plugin(file: "p.so"), checksum: String? = nil,
        sha: String? = "aa"
    ) -> AppliedMigration {
        AppliedMigration(
            id: id, name: id, description: "", version: "1.0.0", startedAt: "t0", appliedAt: "t1",
            checksum: checksum, source: source, pluginSHA256: sha, durationMS: 1, appliedBy: "me",
            runnerVersion: runnerVersion)
    }

    func ids(_ plan: Plan) -> [String] { plan.steps.map(\.id) }
    func codes(_ plan: Plan) -> [MigratorError.Code] { plan.refusals.map(\.code) }

    // MARK: Applying

    @Test func anEmptyDatabaseGetsEveryMigrationInOrder() throws {
        let c = try Self.catalog(plugins: [Self.plugin("002_b"), Self.plugin("010_c"), Self.plugin("001_a")])
        let plan = Planner.plan(.applyAll, catalog: c, applied: [])
        #expect(ids(plan) == ["001_a", "002_b", "010_c"])
        #expect(plan.isAllowed && plan.direction == .up)
    }

    @Test func applyThroughATargetAndTheNextN() throws {
        let c = try Self.catalog(plugins: ["001_a", "002_b", "003_c"].map { Self.plugin($0) })
        let applied = [Self.record("001_a")]
        #expect(ids(Planner.plan(.apply(through: "002_b"), catalog: c, applied: applied)) == ["002_b"])
        #expect(ids(Planner.plan(.applyNext(1), catalog: c, applied: applied)) == ["002_b"])
        #expect(ids(Planner.plan(.applyNext(9), catalog: c, applied: applied)) == ["002_b", "003_c"])
        #expect(ids(Planner.plan(.applyNext(0), catalog: c, applied: applied)).isEmpty)
        let unknown = Planner.plan(.apply(through: "009_x"), catalog: c, applied: applied)
        #expect(codes(unknown) == [.unknownTarget] && unknown.refusals[0].migrationIDs == ["009_x"])
        let done = Planner.plan(.apply(through: "001_a"), catalog: c, applied: applied)
        #expect(codes(done) == [.targetAlreadyApplied])
        #expect(done.refusals[0].message.contains("the database is at '001_a'"))
    }

    @Test func aPendingMigrationBeforeTheLastAppliedIsOutOfOrder() throws {
        let c = try Self.catalog(plugins: ["001_a", "002_b", "003_c"].map { Self.plugin($0, file: "\($0).so") })
        let applied = [Self.record("001_a"), Self.record("003_c")]
        let plan = Planner.plan(.applyAll, catalog: c, applied: applied)
        #expect(codes(plan) == [.outOfOrder])
        #expect(plan.refusals[0].migrationIDs == ["002_b"] && plan.refusals[0].files == ["002_b.so"])
        #expect(plan.refusals[0].message.contains("number 3"))
        let allowed = Planner.plan(.applyAll, catalog: c, applied: applied, options: PlanOptions(allowOutOfOrder: true))
        #expect(allowed.isAllowed && ids(allowed) == ["002_b"])
    }

    @Test func appliedIDsNothingProvidesAreMissing() throws {
        let c = try Self.catalog(plugins: [Self.plugin("001_a"), Self.plugin("002_b")])
        let applied = [Self.record("001_a"), Self.record("005_gone", .plugin(file: "gone.so"))]
        let plan = Planner.plan(.applyAll, catalog: c, applied: applied)
        // Missing, and (because 005 counts) 002 is also out of order.
        #expect(codes(plan) == [.missingMigrations, .outOfOrder])
        #expect(plan.refusals[0].migrationIDs == ["005_gone"] && plan.refusals[0].files == ["gone.so"])
        // allowMissing also takes the missing record out of the high-water mark.
        let allowed = Planner.plan(.applyAll, catalog: c, applied: applied, options: PlanOptions(allowMissing: true))
        #expect(allowed.isAllowed && ids(allowed) == ["002_b"])
    }

    @Test func anEditedAppliedMigrationIsRefusedWithBothChecksums() throws {
        let c = try Self.catalog(plugins: [Self.plugin("001_a", checksum: "v2"), Self.plugin("002_b")])
        let plan = Planner.plan(.applyAll, catalog: c, applied: [Self.record("001_a", checksum: "v1")])
        #expect(codes(plan) == [.checksumChanged])
        let r = plan.refusals[0]
        #expect(
            r.recordedChecksum == "v1" && r.declaredChecksum == "v2" && r.migrationIDs == ["001_a"]
                && r.files == ["p.so"])
        // No checksum on either side: nothing to compare, nothing refused.
        let unversioned = Planner.plan(.applyAll, catalog: c, applied: [Self.record("001_a", checksum: nil)])
        #expect(unversioned.isAllowed)
    }

    @Test func aPluginProblemRefusesEveryRun() throws {
        let broken = MigratorError(.invalidELF, "plugin 'x.so': truncated", file: "x.so")
        let c = try Self.catalog(plugins: [Self.plugin("001_a")], problems: [broken])
        for request in [MigrationRequest.applyAll, .applyNext(1), .rollback(.all)] {
            let plan = Planner.plan(request, catalog: c, applied: [])
            #expect(codes(plan) == [.invalidELF] && plan.refusals[0].files == ["x.so"], "\(request)")
        }
    }

    @Test func duplicatesAreProblemsOfTheCatalog() throws {
        let c = try Self.catalog(plugins: [
            Self.plugin("001_a", file: "one.so"), Self.plugin("001_a", file: "two.so"),
            Self.plugin("1_b", file: "three.so"),
        ])
        #expect(c.problems.map(\.code) == [.duplicateID, .duplicateSequence])
        #expect(c.migrations.map(\.id) == ["001_a", "1_b"])
    }

    // MARK: Ownership

    @Test func anotherAppsInProcessRecordsAreNeitherMissingNorLate() throws {
        let c = try Self.catalog(plugins: [Self.plugin("001_a"), Self.plugin("002_b")])
        let theirs = Self.record("006_sessions", .inProcess(app: "example-app"), sha: nil)
        let plan = Planner.plan(.applyAll, catalog: c, applied: [theirs])
        #expect(plan.isAllowed && ids(plan) == ["001_a", "002_b"])
        let entries = Planner.entries(catalog: c, applied: [theirs], history: [])
        #expect(
            entries.last?.state == .applied && entries.last?.app == "example-app"
                && entries.last?.plugin == "in-process")
        // Rolling back through it is refused, naming its owner.
        let back = Planner.plan(.rollback(.all), catalog: c, applied: [Self.record("001_a"), theirs])
        #expect(codes(back) == [.ownedElsewhere])
        #expect(
            back.refusals[0].message.contains("'example-app'")
                && back.refusals[0].message.contains("the app that owns it"))
    }

    @Test func anAppWithoutPluginsLeavesPluginRecordsAlone() throws {
        let c = try Self.catalog(inProcess: [Step(id: "006_sessions")], loadsPlugins: false)
        let applied = [Self.record("001_a"), Self.record("007_b")]
        let plan = Planner.plan(.applyAll, catalog: c, applied: applied)
        #expect(plan.isAllowed && ids(plan) == ["006_sessions"])
        // Its own records, registered no more, are missing.
        let own = Planner.plan(.applyAll, catalog: c, applied: [Self.record("005_old", .inProcess(app: "app"))])
        #expect(codes(own) == [.missingMigrations])
    }

    // MARK: Rolling back

    @Test func rollbackRunsNewestFirst() throws {
        let c = try Self.catalog(plugins: ["001_a", "002_b", "003_c"].map { Self.plugin($0) })
        let applied = ["001_a", "002_b", "003_c"].map { Self.record($0) }
        #expect(ids(Planner.plan(.rollback(.to("001_a")), catalog: c, applied: applied)) == ["003_c", "002_b"])
        #expect(ids(Planner.plan(.rollback(.last(1)), catalog: c, applied: applied)) == ["003_c"])
        #expect(ids(Planner.plan(.rollback(.last(0)), catalog: c, applied: applied)).isEmpty)
        #expect(ids(Planner.plan(.rollback(.all), catalog: c, applied: applied)) == ["003_c", "002_b", "001_a"])
        #expect(ids(Planner.plan(.rollback(.to("003_c")), catalog: c, applied: applied)).isEmpty)
        let notApplied = Planner.plan(.rollback(.to("009_x")), catalog: c, applied: applied)
        #expect(
            codes(notApplied) == [.targetNotApplied] && notApplied.refusals[0].message.contains("001_a, 002_b, 003_c"))
        #expect(Planner.plan(.rollback(.all), catalog: c, applied: applied).direction == .down)
    }

    @Test func rollbackRefusesIrreversibleAndMissingBeforeRunningAnything() throws {
        let c = try Self.catalog(
            plugins: [Self.plugin("001_a"), Self.plugin("002_b", reversible: false)],
            inProcess: [OneWay(id: "003_c")])
        let applied = [
            Self.record("001_a"), Self.record("002_b"), Self.record("003_c", .inProcess(app: "app")),
            Self.record("004_gone", .plugin(file: "gone.so")),
        ]
        let plan = Planner.plan(.rollback(.all), catalog: c, applied: applied)
        #expect(codes(plan) == [.missingMigrations, .irreversible, .irreversible])
        #expect(plan.refusals.map(\.migrationIDs) == [["004_gone"], ["003_c"], ["002_b"]])
        #expect(!plan.isAllowed)
    }

    // MARK: Status

    @Test func statusEntriesAgreeWithThePlan() throws {
        let c = try Self.catalog(plugins: [
            Self.plugin("001_a", checksum: "v2"), Self.plugin("002_b"), Self.plugin("003_c"),
        ])
        let applied = [Self.record("001_a", checksum: "v1"), Self.record("004_gone")]
        let failed = HistoryEntry(
            sequence: 1, migrationID: "002_b", outcome: .failed, direction: .up, at: "t",
            durationMS: 1, error: "boom", appliedBy: "me", plugin: "p.so")
        let entries = Planner.entries(catalog: c, applied: applied, history: [failed])
        #expect(entries.map(\.id) == ["001_a", "002_b", "003_c", "004_gone"])
        #expect(entries.map(\.state) == [.applied, .failed, .pending, .missing])
        #expect(entries.map(\.changed) == [true, false, false, false])
        // What status shows as pending is exactly what apply would run.
        let plan = Planner.plan(.applyAll, catalog: c, applied: applied, options: PlanOptions(allowMissing: true))
        #expect(ids(plan) == entries.filter { $0.state == .pending || $0.state == .failed }.map(\.id))
    }

    @Test func aLeftoverLockRecordIsAnInterruptionUnlessTheStepCommitted() {
        var o = LockOwner(pid: 1, host: "h", user: "u", command: "apply", startedAt: "t")
        #expect(Planner.interruptedStep(o, appliedIDs: []) == nil, "no step recorded")
        o.currentID = "002_b"
        o.currentDirection = .up
        #expect(Planner.interruptedStep(o, appliedIDs: ["001_a"])?.id == "002_b")
        #expect(Planner.interruptedStep(o, appliedIDs: ["002_b"]) == nil, "committed just before dying")
        o.currentDirection = .down
        #expect(Planner.interruptedStep(o, appliedIDs: ["002_b"])?.direction == .down)
        #expect(Planner.interruptedStep(o, appliedIDs: []) == nil, "the rollback committed")
        // A step sent ahead to the worker starts as soon as the current one
        // commits: then it is the one interrupted.
        o.currentDirection = .up
        o.nextID = "003_c"
        #expect(Planner.interruptedStep(o, appliedIDs: ["001_a", "002_b"])?.id == "003_c")
        #expect(Planner.interruptedStep(o, appliedIDs: ["001_a"])?.id == "002_b", "the current one first")
        #expect(Planner.interruptedStep(o, appliedIDs: ["002_b", "003_c"]) == nil)
        o.currentDirection = .down
        #expect(Planner.interruptedStep(o, appliedIDs: ["003_c"])?.id == "003_c")
    }

    @Test func adviceNamesSequenceGapsAndRebuiltFiles() throws {
        let c = try Self.catalog(plugins: [Self.plugin("001_a", sha: "bbbb"), Self.plugin("004_d")])
        let advice = Planner.advice(catalog: c, applied: [Self.record("001_a", sha: "aaaa")])
        #expect(advice.warnings == ["sequence gap: nothing numbered 2–3 between 1 and 4"])
        #expect(advice.notes.count == 1 && advice.notes[0].contains("'001_a' was applied from p.so with SHA-256 aaaa"))
    }
}
