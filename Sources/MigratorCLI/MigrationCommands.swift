import DocumentStore
import FoundationEssentials
import MigrationEngine
import MigrationKit

#if canImport(Glibc)
import Glibc
#endif

/// `apply`, `rollback`, `status`, `validate`, `history`, `create`, `unlock`:
/// thin wrappers over ``Migrator``.
enum MigrationCommands {
    static let dbOption = DatabaseCommands.dbOption
    static let quiet = OptionSpec("quiet", "Print only errors.")
    static let verbose = OptionSpec("verbose", "Also print debug logs and each step as it starts.")
    static let lockTimeout = OptionSpec(
        "lock-timeout", value: "SECONDS", "Wait this long for another run's lock (default 60); then exit 3.")
    static let allowOutOfOrder = OptionSpec(
        "allow-out-of-order", "Apply pending migrations that sort before applied ones.")
    static let allowMissing = OptionSpec("allow-missing", "Run although the database holds ids no plugin provides.")
    static let json = OptionSpec("json", "Print JSON.")
    static let stepTimeout = OptionSpec(
        "step-timeout", value: "DURATION",
        "Kill a plugin step that runs longer (e.g. 90s, 30m, 2h; default: no limit); it fails, exit 1.")
    static let runOptions = PluginCommands.loaderOptions + [dbOption, lockTimeout, stepTimeout, quiet, verbose]

    static let targetHint: @Sendable (String) -> String = { "to stop after a migration, use --target \($0)" }
    static let applyOptions =
        runOptions + [
            OptionSpec("target", value: "ID", "Stop after this migration."),
            OptionSpec("count", value: "N", "Apply only the next N pending migrations."),
            allowOutOfOrder, allowMissing, TrialCommands.dryRun,
            OptionSpec(
                "verify", "First check that every pending migration's down undoes its up; refuse (exit 4) if not."),
            OptionSpec("json", "With --dry-run: print the report as JSON."),
            OptionSpec("backup-dir", value: "DIR", "Back the database up into DIR before the first step runs."),
            OptionSpec("keep", value: "N", "With --backup-dir: keep the newest N backups there (default 5)."),
            BackupCommands.signingKey,
            OptionSpec(
                "report", value: "URL",
                "After the run, POST its JSON report to this https:// URL (a failure to report is logged only)."),
        ]

    static let all: [Command] = [
        Command(
            path: ["apply"], arguments: [], summary: "Apply pending migrations in order, each in its own transaction.",
            options: applyOptions, run: apply, argumentHint: targetHint),
        Command(
            path: ["migrate"], arguments: [], summary: "Alias of apply.",
            options: applyOptions, run: apply, argumentHint: targetHint),
        Command(
            path: ["rollback"], arguments: [("[TARGET]", "Roll back every migration applied after TARGET.")],
            summary: "Run down for applied migrations after TARGET, newest first.",
            options: runOptions + [
                OptionSpec("last", value: "N", "Roll back the last N applied migrations instead."),
                OptionSpec("all", "Roll back every applied migration (asks first; --yes without a terminal)."),
                TrialCommands.dryRun, BackupCommands.yes,
                OptionSpec("json", "With --dry-run: print the report as JSON."),
            ],
            run: rollback),
        Command(
            path: ["status"], arguments: [],
            summary: "Show every known migration and its state (never blocked by a run).",
            options: PluginCommands.loaderOptions + [
                dbOption, json, OptionSpec("check", "Exit 5 if anything is pending, failed or missing."),
            ],
            run: status),
        Command(
            path: ["validate"], arguments: [], summary: "Run every check apply would, without running any migration.",
            options: PluginCommands.loaderOptions + [
                dbOption, allowOutOfOrder, allowMissing,
                OptionSpec("verbose", "Also note plugin files rebuilt since they applied something."),
            ],
            run: validate),
        Command(
            path: ["history"], arguments: [],
            summary: "Show the log of every attempt: applied, failed, rolled_back, interrupted.",
            options: [dbOption, json], run: history),
        Command(
            path: ["create"],
            arguments: [("NAME", "Human name, e.g. \"Add User Settings\"."), ("[DESCRIPTION]", "What it does.")],
            summary: "Write a ready-to-build migration source with the next sequence number.",
            options: PluginCommands.loaderOptions + [
                dbOption,
                OptionSpec("lang", value: "swift|c", "Source language (default swift)."),
                OptionSpec("out", value: "DIR", "Where to write it (default: the current directory)."),
                OptionSpec("version", value: "VERSION", "The version field (default 1.0.0)."),
            ],
            run: create),
        Command(
            path: ["unlock"], arguments: [],
            summary: "Explain the run lock and clear a leftover owner record (never breaks a live lock).",
            options: [dbOption], run: unlock),
    ]

    // MARK: Shared

    /// Options from the environment and the lock flags, for commands that
    /// load no plugins and print no step events.
    static func plainOptions(_ ctx: Context, _ args: ParsedArguments? = nil) throws -> Migrator.Options {
        var options = Migrator.Options()
        options.storeOptions = try ctx.storeOptions()
        if let args, let t = try lockTimeout(args) { options.lockTimeout = t }
        return options
    }

    /// `--lock-timeout SECONDS`, if given.
    static func lockTimeout(_ args: ParsedArguments) throws(UsageError) -> Double? {
        guard let raw = args.options["lock-timeout"] else { return nil }
        guard let t = Double(raw), t >= 0 else {
            throw UsageError("--lock-timeout needs a number of seconds, got '\(raw)'")
        }
        return t
    }

    /// A migrator for `--db`, with plugins from `--dir` loaded (warnings on stderr).
    static func migrator(
        _ ctx: Context, _ args: ParsedArguments, command: String, loadPlugins: Bool = true
    ) throws -> Migrator {
        var options = Migrator.Options()
        options.command = command
        options.storeOptions = try ctx.storeOptions()
        options.allowOutOfOrder = args.flag("allow-out-of-order")
        options.allowMissing = args.flag("allow-missing")
        options.allowInsecureDatabase = args.flag("insecure")
        if let t = try lockTimeout(args) { options.lockTimeout = t }
        options.backupDirectory = args.options["backup-dir"]
        // A setting (keep = 3 in migrator.conf) may stand without backup_dir;
        // on the command line it would be a mistake.
        for name in ["keep", "backup-key"] where options.backupDirectory == nil && args.given(name) {
            throw UsageError("--\(name) goes with --backup-dir")
        }
        if options.backupDirectory != nil {
            if let keep = try args.int("keep", min: 1) { options.keepBackups = keep }
            options.backupKey = try BackupCommands.key(args, signing: true)
        }
        if let raw = args.options["step-timeout"] {
            guard let seconds = duration(raw) else {
                throw UsageError("--step-timeout needs a duration such as 90s, 30m or 2h, got '\(raw)'")
            }
            options.stepTimeout = seconds
        }
        if args.flag("quiet") && args.flag("verbose") {
            throw UsageError("--quiet and --verbose cannot be used together")
        }
        let reporter = Reporter(ctx, quiet: args.flag("quiet"), verbose: args.flag("verbose"))
        options.observer = reporter.observer
        options.events = reporter.event
        let m = Migrator(databasePath: ctx.databasePath(args), options: options)
        if loadPlugins { try Self.loadPlugins(into: m, ctx, args, command: command) }
        return m
    }

    /// Loads the plugins of `--from` or `--dir` into `m` (warnings on stderr).
    static func loadPlugins(into m: Migrator, _ ctx: Context, _ args: ParsedArguments, command: String) throws {
        var loader = PluginCommands.loaderOptions(ctx, args)
        loader.descriptorsOnly = command == "status"
        let set = try PluginCommands.load(m, ctx, args, loader)
        if !args.flag("quiet") { for w in set.warnings { ctx.log("warning", w, level: "warning") } }
    }

    /// Seconds in "90", "90s", "30m" or "2h"; nil if not positive.
    static func duration(_ text: String) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
        var number = Substring(text)
        var scale = 1.0
        if let last = text.last, let unit = units[last] {
            number = text.dropLast()
            scale = unit
        }
        guard let v = Double(number), v > 0, v.isFinite else { return nil }
        return v * scale
    }

    /// The documented exit code of an engine error.
    static func exitCode(for e: MigratorError) -> Int32 {
        // The operator's signal: the usual 128 + N.
        if e.code == .interrupted, let signal = (e.underlying as? StepFailure)?.interruptedBy { return 128 + signal }
        if e.code == .lockTimeout || e.code == .lockHeld { return ExitCode.lockTimeout }
        if e.code == .outcomeUnknown { return ExitCode.outcomeUnknown }
        if e.code.isRefusal { return ExitCode.refused }
        return ExitCode.failure
    }

    /// The command-line way out of an engine error, by its code: the
    /// engine speaks of options (`allowMissing`), the CLI of flags.
    static func hint(for code: MigratorError.Code, ids: [String] = []) -> String? {
        switch code {
        case .missingMigrations: return "pass --allow-missing to run anyway"
        case .checksumChanged:
            return ids.first.map { "if the edit was intended, accept it with 'migrator repair \($0)'" }
        case .baselineRefused: return "pass --force to record the rest as applied too"
        case .outOfOrder: return "pass --allow-out-of-order to apply them anyway"
        case .unknownTarget: return "see 'migrator list' for the known ids"
        case .targetAlreadyApplied: return ids.first.map { "use 'migrator rollback \($0)' to go back to it" }
        case .lockTimeout: return "wait longer with --lock-timeout SECONDS, or see 'migrator unlock'"
        case .insecurePermissions:
            return "make it owned by you or root and writable by its owner alone (chmod go-w); "
                + "--insecure goes on anyway, with a warning"
        case .untrustedConfig: return "make it owned by you or root and writable by its owner alone (chmod go-w)"
        case .unsafeLibraryPath:
            return "rebuild the plugin so that it names libraries by soname and its RUNPATH only directories "
                + "that root alone can write or create (or none), or make that directory so (see docs/security.md)"
        case .toolchainMismatch: return "rebuild the plugin with this toolchain, or drop --strict-toolchain"
        default: return nil
        }
    }

    /// Prints every refusal (or the error) once, each with its hint, and
    /// returns the exit code.
    static func fail(_ ctx: Context, _ e: MigratorError) -> Int32 {
        if e.refusals.isEmpty {
            report(ctx, e.code, e.message, ids: e.migrationID.map { [$0] } ?? [])
        } else {
            for r in e.refusals { report(ctx, r.code, r.message, ids: r.migrationIDs) }
        }
        return exitCode(for: e)
    }

    static func report(_ ctx: Context, _ code: MigratorError.Code, _ message: String, ids: [String]) {
        ctx.error(
            code.isRefusal ? "refused" : "error", message, hint: hint(for: code, ids: ids),
            [("code", .string(code.rawValue)), ("migrations", .array(ids.map(JSON.string)))])
    }

    // MARK: Commands

    static func apply(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let count = try args.int("count", min: 1)
        if count != nil && args.options["target"] != nil { throw UsageError("give --target or --count, not both") }
        if args.flag("json") && !args.flag("dry-run") { throw UsageError("--json goes with --dry-run") }
        if args.flag("dry-run") && args.flag("verify") { throw UsageError("--dry-run and --verify cannot be combined") }
        let request =
            count.map(MigrationRequest.applyNext) ?? args.options["target"].map(MigrationRequest.apply(through:))
            ?? .applyAll
        if args.flag("dry-run") { return try TrialCommands.dryRun(ctx, args, command: "apply", request) }
        // Loaded inside: a refused bundle or a failed fetch is reported too.
        let m = try migrator(ctx, args, command: "apply", loadPlugins: false)
        var completed: [String] = []
        var before: Set<String>?
        var failure: String?
        let code: Int32
        do {
            try loadPlugins(into: m, ctx, args, command: "apply")
            // Only a report needs to know what a failed run committed first.
            if args.options["report"] != nil { before = Set(try m.appliedMigrations().map(\.id)) }
            code = try apply(ctx, args, m, request, completed: &completed)
        } catch let e as MigratorError {
            failure = e.message
            code = fail(ctx, e)
            // A step that failed after others committed: those are applied, and said so.
            if let before, let now = try? m.appliedMigrations().map(\.id) {
                completed = now.filter { !before.contains($0) }
            }
        } catch {
            if let url = args.options["report"] { report(ctx, url, m, args, ExitCode.failure, completed, "\(error)") }
            throw error
        }
        if let url = args.options["report"] { report(ctx, url, m, args, code, completed, failure) }
        return code
    }

    /// POSTs the run's report to `url`; a failure is logged, and changes nothing else.
    static func report(
        _ ctx: Context, _ url: String, _ m: Migrator, _ args: ParsedArguments, _ code: Int32, _ completed: [String],
        _ failure: String?
    ) {
        var fields: [(String, JSON)] = [
            ("database", .string(m.databaseName)), ("host", .string(EngineClock.hostName)),
            ("by", .string(EngineClock.actor)), ("at", .string(EngineClock.iso8601())),
            ("source", .string(args.options["from"] ?? ctx.migrationsDirectory(args))), ("exit", .int(Int64(code))),
            ("applied", .array(completed.map(JSON.string))), ("error", failure.map(JSON.string) ?? .null),
        ]
        if let b = m.bundle {
            fields.append(
                (
                    "bundle",
                    .object(
                        JSONObject([
                            ("name", .string(b.manifest.name)), ("sequence", .int(Int64(b.manifest.sequence))),
                            ("sha256", .string(b.digest)),
                        ]))
                ))
        }
        do {
            try Migrator.postReport(
                JSONSerializer.bytes(.object(JSONObject(fields))), to: url,
                options: try PluginCommands.fetchOptions(args))
        } catch {
            ctx.log("warning", "warning: could not report to \(url): \(error)", level: "warning")
        }
    }

    private static func apply(
        _ ctx: Context, _ args: ParsedArguments, _ m: Migrator, _ request: MigrationRequest,
        completed: inout [String]
    ) throws -> Int32 {
        do {
            if args.flag("verify") {
                let check = try m.verify()
                let code = TrialCommands.exitCode(check)
                guard code == ExitCode.ok else {
                    TrialCommands.printReport(ctx, check, m)
                    ctx.log(
                        "refused", "error: apply refused: the reversibility check did not pass (nothing was applied)",
                        level: "error", [("code", .string(MigratorError.Code.notReversible.rawValue))])
                    return code
                }
                if !args.flag("quiet") {
                    ctx.log("verified", "verified: every pending migration's down undoes its up (or it has none)")
                }
            }
            let t0 = EngineClock.monotonic()
            let report = try m.run(request)
            completed = report.completed
            if !args.flag("quiet") {
                let seconds = EngineClock.monotonic() - t0
                ctx.log(
                    "run_end",
                    report.completed.isEmpty
                        ? "nothing to apply: \(m.databaseName) is up to date"
                        : "applied \(report.completed.count) migration(s) in \(hundredths(seconds)) s"
                            + (args.options["target"].map { " (target \($0))" } ?? ""),
                    [
                        ("completed", .array(report.completed.map(JSON.string))),
                        ("duration_ms", .int(Int64(seconds * 1000))),
                    ] + (report.backup.map { [("backup", JSON.string($0))] } ?? []))
            }
            return ExitCode.ok
        }
    }

    static func rollback(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let target = args.positionals.first
        let last = try args.int("last", min: 1)
        let choices = [target != nil, last != nil, args.flag("all")].filter { $0 }.count
        guard choices == 1 else { throw UsageError("give exactly one of TARGET, --last N or --all") }
        let rollbackTarget = last.map(RollbackTarget.last) ?? target.map(RollbackTarget.to) ?? .all
        if args.flag("json") && !args.flag("dry-run") { throw UsageError("--json goes with --dry-run") }
        if args.flag("dry-run") {
            return try TrialCommands.dryRun(ctx, args, command: "rollback", .rollback(rollbackTarget))
        }
        if args.flag("all"),
            !(try BackupCommands.confirm(
                ctx, args, "rollback --all", "Roll back every applied migration of \(ctx.databaseName(args))?"))
        {
            ctx.log("not_confirmed", "nothing rolled back")
            return ExitCode.refused
        }
        let m = try migrator(ctx, args, command: "rollback")
        do {
            let report = try m.rollback(rollbackTarget)
            if !args.flag("quiet") {
                ctx.log(
                    "run_end",
                    report.completed.isEmpty
                        ? "nothing to roll back" : "rolled back \(report.completed.count) migration(s)",
                    [("completed", .array(report.completed.map(JSON.string)))])
            }
            return ExitCode.ok
        } catch let e as MigratorError {
            return fail(ctx, e)
        }
    }

    /// `seconds` with two decimals, e.g. `0.45`.
    static func hundredths(_ seconds: Double) -> String {
        let n = Int((max(0, seconds) * 100).rounded())
        let cents = n % 100
        return "\(n / 100).\(cents < 10 ? "0" : "")\(cents)"
    }

    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func status(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let m = try migrator(ctx, args, command: "status")
        let s = try m.status()
        for p in m.catalog.problems { report(ctx, p.code, p.message, ids: []) }
        if args.flag("json") {
            ctx.out.line(try encode(s))
        } else {
            ctx.out.line("Database: \(s.database)" + (s.exists ? "" : " (no database there yet; apply creates it)"))
            if let b = s.bundle {
                ctx.out.line(
                    "Bundle:   \(b.name) #\(b.sequence), taken \(b.takenAt) by \(b.takenBy) "
                        + "(sha256 \(b.digest.prefix(16)))")
            }
            var rows = [["ID", "STATE", "APPLIED AT", "VERSION", "PLUGIN"]]
            for e in s.migrations {
                rows.append([
                    e.id, stateText(e, running: s.lockedBy != nil), e.appliedAt ?? "-", e.version, e.plugin ?? "-",
                ])
            }
            ctx.out.write(Table.render(rows))
            let sm = s.summary
            ctx.out.line(
                "\(s.migrations.count) migration(s): \(sm.applied) applied, \(sm.pending) pending, "
                    + "\(sm.failed) failed, \(sm.missing) missing"
            )
            let resumable = s.interrupted.flatMap { i in s.migrations.first { $0.id == i.id }?.resumableFrom }
            if let i = s.interrupted, let token = resumable {
                ctx.out.line(
                    "interrupted at \(i.id) (\(i.direction), pid \(i.pid), \(i.at)) after checkpoint '\(token)': "
                        + "the work up to it is kept; the next apply resumes from it")
            } else if let i = s.interrupted {
                // An interrupted down left the migration applied; apply never runs a down.
                ctx.out.line(
                    i.direction == .up
                        ? "interrupted at \(i.id) (up, pid \(i.pid), \(i.at)): "
                            + "nothing of it was committed; the next apply retries it"
                        : "rollback of \(i.id) interrupted (pid \(i.pid), \(i.at)): "
                            + "nothing of it was committed; \(i.id) is still applied (roll back again to retry)"
                )
            }
            if let by = s.lockedBy { ctx.out.line("migrating now: locked by \(by)") }
        }
        if args.flag("check") && (!s.isUpToDate || !m.catalog.problems.isEmpty) { return ExitCode.work }
        return ExitCode.ok
    }

    /// `applied`, `applied (changed)`, `applied (in-process: example-app)`, …
    /// `running`: a run holds the lock, so a checkpointed migration is in progress, not stopped.
    static func stateText(_ e: MigrationStatus.Entry, running: Bool = false) -> String {
        var notes: [String] = []
        if let app = e.app { notes.append("in-process: \(app)") }
        if e.changed { notes.append("changed") }
        if let token = e.resumableFrom {
            return running ? "running (last checkpoint \(token))" : "interrupted (resumable from \(token))"
        }
        return e.state.rawValue + (notes.isEmpty ? "" : " (\(notes.joined(separator: ", ")))")
    }

    static func validate(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let m = try migrator(ctx, args, command: "validate")
        let v = try m.validate()
        for w in v.warnings { ctx.log("warning", "warning: \(w)", level: "warning") }
        if args.flag("verbose") { for n in v.notes { ctx.log("note", "note: \(n)") } }
        for r in v.refusals { report(ctx, r.code, r.message, ids: r.migrationIDs) }
        if v.refusals.isEmpty {
            ctx.out.line("ok: \(v.checked) migration(s) checked, \(v.pending.count) pending")
            return ExitCode.ok
        }
        ctx.out.line("refused: \(v.refusals.count) problem(s); apply would not run")
        return ExitCode.refused
    }

    static func history(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let m = Migrator(databasePath: ctx.databasePath(args))
        try DatabaseCommands.requireDatabase(ctx.databasePath(args))
        let entries = try m.history()
        if args.flag("json") {
            let doc: JSON = .object(
                JSONObject([
                    (
                        "history",
                        .array(
                            entries.map { h in
                                .object(
                                    JSONObject(
                                        [
                                            ("migration_id", .string(h.migrationID)),
                                            ("outcome", .string(h.outcome.rawValue)),
                                            ("direction", .string(h.direction.rawValue)), ("at", .string(h.at)),
                                            ("duration_ms", h.durationMS.map(JSON.int) ?? .null),
                                            ("error", h.error.map(JSON.string) ?? .null),
                                            ("applied_by", .string(h.appliedBy)),
                                            ("plugin", h.plugin.map(JSON.string) ?? .null),
                                        ] + (h.detail.map { [("detail", JSON.string($0))] } ?? [])
                                            + (h.bundle.map { [("bundle", JSON.string($0))] } ?? [])))
                            })
                    )
                ]))
            ctx.out.line(doc.serialized)
        } else {
            var rows = [["#", "AT", "MIGRATION", "OUTCOME", "MS", "BY", "ERROR"]]
            for h in entries {
                rows.append([
                    String(h.sequence), h.at, h.migrationID,
                    h.outcome.rawValue + (h.direction == .down && h.outcome == .failed ? " (down)" : ""),
                    h.durationMS.map(String.init) ?? "-", h.appliedBy, printable(h.error ?? h.detail ?? ""),
                ])
            }
            ctx.out.write(Table.render(rows))
        }
        return ExitCode.ok
    }

    static func unlock(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        do {
            ctx.out.line(try Migrator(databasePath: ctx.databasePath(args)).unlock())
            return ExitCode.ok
        } catch let e as MigratorError {
            return fail(ctx, e)
        }
    }
}
