import DocumentStore
import MigrationEngine

/// `apply --dry-run`, `rollback --dry-run`, `verify`, `redo`: trials that keep
/// nothing, and the one-lock rollback-and-apply.
enum TrialCommands {
    static let dryRun = OptionSpec(
        "dry-run",
        "Run every planned step in one transaction that is rolled back; report what each changed "
            + "(a check for plugins you trust: see 'migrator help verify').")
    static let json = MigrationCommands.json

    static let all: [Command] = [
        Command(
            path: ["verify"], arguments: [("[ID...]", "Check these pending migrations (default: every pending one).")],
            summary: "Prove that down undoes up: up, down, compare, up again, all rolled back.",
            options: MigrationCommands.runOptions + [
                json, MigrationCommands.allowOutOfOrder, MigrationCommands.allowMissing,
            ],
            run: verify, notes: TrialCommands.verdictNote),
        Command(
            path: ["baseline"], arguments: [],
            summary: "Record every migration up to --to ID as applied without running it (adopt a database).",
            options: PluginCommands.loaderOptions + [
                MigrationCommands.dbOption, MigrationCommands.lockTimeout,
                OptionSpec("to", value: "ID", "The last migration the database already has; required."),
                OptionSpec("force", "Also when migrations were applied already (asks; --yes without a terminal)."),
                BackupCommands.yes, MigrationCommands.quiet,
            ],
            run: baseline),
        Command(
            path: ["repair"], arguments: [("ID", "An applied migration whose declared checksum changed on purpose.")],
            summary: "Accept an applied migration's current checksum after an intended edit (recorded in history).",
            options: PluginCommands.loaderOptions + [
                MigrationCommands.dbOption, MigrationCommands.lockTimeout, MigrationCommands.quiet,
            ],
            run: repair),
        Command(
            path: ["redo"], arguments: [],
            summary: "Roll back the last applied migration and apply it again (refused if irreversible).",
            options: MigrationCommands.runOptions, run: redo),
    ]

    /// `apply --dry-run` and `rollback --dry-run`.
    static func dryRun(
        _ ctx: Context, _ args: ParsedArguments, command: String, _ request: MigrationRequest
    ) throws -> Int32 {
        let m = try MigrationCommands.migrator(ctx, args, command: command)
        let report = try m.dryRun(request)
        if args.flag("json") {
            ctx.out.line(try MigrationCommands.encode(report))
        } else {
            printReport(ctx, report, m)
        }
        return report.failure == nil ? ExitCode.ok : ExitCode.failure
    }

    static func verify(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let m = try MigrationCommands.migrator(ctx, args, command: "verify")
        let report = try m.verify(args.positionals)
        if args.flag("json") {
            ctx.out.line(try MigrationCommands.encode(report))
        } else {
            printReport(ctx, report, m)
        }
        return exitCode(report)
    }

    /// What a trial's verdict is worth (docs/security.md, "Verdicts").
    static let verdictNote =
        "The verdict is a correctness check for plugins you trust, not a defence against hostile ones: "
        + "plugin code runs in the same worker that reports it, and nothing is kept to re-read afterwards. "
        + "Signatures (--trusted-keys) and pins (migrator pin) decide which plugins may run."

    /// 1 if a migration's code failed, 4 if one is not reversible, else 0.
    static func exitCode(_ report: TrialReport) -> Int32 {
        if report.failure != nil { return ExitCode.failure }
        if !report.notReversible.isEmpty { return ExitCode.refused }
        return ExitCode.ok
    }

    static func redo(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let m = try MigrationCommands.migrator(ctx, args, command: "redo")
        let report = try m.redo()
        if !args.flag("quiet") {
            let steps = report.steps.map { "\($0.direction == .up ? "applied" : "rolled back") \($0.id)" }
            ctx.log("run_end", "redone: " + steps.joined(separator: ", "))
        }
        return ExitCode.ok
    }

    static func baseline(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        guard let id = args.options["to"] else { throw UsageError("baseline needs --to ID") }
        let m = try MigrationCommands.migrator(ctx, args, command: "baseline")
        if args.flag("force"),
            !(try BackupCommands.confirm(
                ctx, args, "baseline --force",
                "Record every migration through \(id) as applied in \(m.databaseName) without running it?"))
        {
            ctx.log("not_confirmed", "nothing recorded")
            return ExitCode.refused
        }
        let ids = try m.baseline(through: id, force: args.flag("force"))
        for id in ids { ctx.out.line(id) }
        if !args.flag("quiet") {
            ctx.log(
                "baselined", "baselined \(ids.count) migration(s) through \(id): recorded as applied, not run",
                [("migrations", .array(ids.map(JSON.string)))])
        }
        return ExitCode.ok
    }

    static func repair(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let id = args.positionals[0]
        let m = try MigrationCommands.migrator(ctx, args, command: "repair")
        if let change = try m.repair(id) {
            ctx.log(
                "repaired",
                "repaired \(id): checksum \(change.old ?? "(none)") -> \(change.new ?? "(none)") accepted "
                    + "(recorded in history)")
        } else {
            ctx.log("nothing_to_repair", "nothing to repair: \(id) has the checksum it was applied with")
        }
        return ExitCode.ok
    }

    // MARK: Output

    static func printReport(_ ctx: Context, _ report: TrialReport, _ m: Migrator) {
        let what = report.kind == .dryRun ? "dry run" : "reversibility check"
        ctx.out.line("\(what) against \(report.database) (one transaction, rolled back: nothing is kept)")
        if report.results.isEmpty {
            ctx.out.line(report.direction == .up ? "nothing to apply" : "nothing to roll back")
            return
        }
        let labels = Dictionary(m.catalog.migrations.map { ($0.id, $0.origin.label) }, uniquingKeysWith: { a, _ in a })
        for r in report.results {
            let verdict: String
            switch r.verdict {
            case .ran: verdict = r.direction == .up ? "would apply" : "would roll back"
            case .skipped: verdict = "already done"
            case .failed: verdict = "FAILS"
            case .reversible: verdict = "reversible"
            case .irreversible: verdict = "irreversible (no down)"
            case .notReversible: verdict = "NOT REVERSIBLE"
            case .notRun: verdict = "not reached"
            }
            let time = r.verdict == .notRun ? "" : "  (\(r.durationMS) ms)"
            ctx.out.line("\(r.id)  \(r.direction)  \(verdict)\(time)")
            for c in r.changes { ctx.out.line("    \(c.collection): \(summary(c))") }
            if let error = r.error {
                let label = labels[r.id].map { " (\($0))" } ?? ""
                let text =
                    r.verdict == .failed
                    ? "migration '\(r.id)'\(label) failed during \(r.direction): \(error)" : error
                ctx.out.line("    error: \(printable(text))")
            }
            for d in r.differences {
                let ids = d.exampleIDs.isEmpty ? "" : "; e.g. _id " + d.exampleIDs.joined(separator: ", ")
                ctx.out.line(
                    "    \(d.collection): \(d.differingDocuments) document(s) differ after down"
                        + " (digest \(d.digestBefore.prefix(12)) -> \(d.digestAfter.prefix(12)))\(printable(ids))")
                if d.indexesBefore != d.indexesAfter {
                    ctx.out.line(
                        "      indexes: [\(d.indexesBefore.joined(separator: ", "))] -> "
                            + "[\(d.indexesAfter.joined(separator: ", "))]")
                }
                for line in d.diff { ctx.out.line("      \(printable(line))") }
            }
        }
        let counts = Dictionary(grouping: report.results, by: \.verdict).mapValues(\.count)
        if report.kind == .dryRun {
            let ran = counts[.ran, default: 0]
            let done = report.direction == .up ? "applied" : "rolled back"
            if let f = report.failure {
                ctx.out.line("dry run: \(ran) migration(s) would be \(done), then \(f.id) fails; nothing was kept")
            } else {
                ctx.out.line("dry run: \(ran) migration(s) would be \(done); nothing was kept")
            }
        } else {
            ctx.out.line(
                "verified \(report.results.count) migration(s): \(counts[.reversible, default: 0]) reversible, "
                    + "\(counts[.irreversible, default: 0]) irreversible, "
                    + "\(counts[.notReversible, default: 0]) not reversible"
                    + (report.failure.map { "; \($0.id) failed" } ?? "") + "; nothing was kept")
        }
    }

    static func summary(_ c: CollectionChangeCount) -> String {
        var parts: [String] = []
        if c.created { parts.append("created") }
        if c.dropped { parts.append("dropped") }
        if c.inserted > 0 { parts.append("\(c.inserted) inserted") }
        if c.updated > 0 { parts.append("\(c.updated) updated") }
        if c.deleted > 0 { parts.append("\(c.deleted) deleted") }
        if c.indexesCreated > 0 { parts.append("\(c.indexesCreated) index(es) created") }
        if c.indexesDropped > 0 { parts.append("\(c.indexesDropped) index(es) dropped") }
        return parts.isEmpty ? "no change" : parts.joined(separator: ", ")
    }
}
