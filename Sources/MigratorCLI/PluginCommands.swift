import DocumentStore
import MigrationEngine

#if canImport(Glibc)
import Glibc
#endif

/// `migrator list` and `migrator header`: what plugins hold, and the ABI.
enum PluginCommands {
    static let dirOption = OptionSpec(
        "dir", value: "DIR", "Migrations directory (default: $MIGRATOR_DIR, else ./migrations).")
    static let insecureOption = OptionSpec(
        "insecure", "Load plugins (and run on a database directory) even if others can write them (warns).")
    static let strictToolchainOption = OptionSpec(
        "strict-toolchain", "Refuse Swift plugins built by another toolchain (default: warn).")
    static let loaderOptions = [dirOption, insecureOption, strictToolchainOption]

    static let all: [Command] = [
        Command(
            path: ["list"], arguments: [],
            summary: "List the migrations in the plugins of --dir, without touching a database.",
            options: loaderOptions + [
                OptionSpec("json", "Print JSON instead of a table."),
                OptionSpec("db", value: "PATH", "Also show each migration's state in this database."),
            ], run: list),
        Command(
            path: ["header"], arguments: [],
            summary: "Print migrator_plugin.h, the C header for writing plugins.",
            options: [], run: header),
    ]

    /// The CLI runs plugin code only in a worker: this same binary, started
    /// as `migrator __worker`, with the operator's signals forwarded to it.
    static let isolation = PluginIsolation.worker(executable: "/proc/self/exe", forwardSignals: true)

    static func loaderOptions(_ args: ParsedArguments) -> PluginLoader.Options {
        var options = PluginLoader.Options(
            insecure: args.flag("insecure"), strictToolchain: args.flag("strict-toolchain"))
        options.isolation = isolation
        return options
    }

    static func list(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        // With a database (--db or $MIGRATOR_DB), each migration's state
        // there, exactly as `status` reports it (reads only; never blocked).
        // An explicit --db must exist; $MIGRATOR_DB adds states only if it does.
        if let explicit = args.options["db"] { try DatabaseCommands.requireDatabase(explicit) }
        var dbPath = args.options["db"]
        if dbPath == nil, let fromEnvironment = ctx.environment["MIGRATOR_DB"], access(fromEnvironment, F_OK) == 0 {
            dbPath = fromEnvironment
        }
        let migrator = Migrator(databasePath: dbPath ?? "")
        let directory = ctx.migrationsDirectory(args)
        var loader = loaderOptions(args)
        if dbPath == nil { loader.cacheDirectory = nil }
        let set = try migrator.loadPlugins(from: directory, options: loader)
        for w in set.warnings { ctx.err.line(w) }
        var states: [String: String] = [:]
        if dbPath != nil {
            for e in try migrator.status().migrations { states[e.id] = MigrationCommands.stateText(e) }
        }
        let catalog = migrator.catalog
        if args.flag("json") {
            let doc: JSON = .object(
                JSONObject([
                    ("directory", .string(ctx.migrationsDirectory(args))),
                    (
                        "plugins",
                        .array(
                            set.plugins.map { p in
                                .object(
                                    JSONObject([
                                        ("file", .string(p.file)), ("name", .string(p.name)),
                                        ("sha256", .string(p.sha256)),
                                        ("toolchain", p.toolchain.map(JSON.string) ?? .null),
                                        ("abi_minor", .int(Int64(p.abiMinor))),
                                        ("migrations", .int(Int64(p.migrations.count))),
                                    ]))
                            })
                    ),
                    (
                        "migrations",
                        .array(
                            catalog.migrations.map { m in
                                .object(
                                    JSONObject(
                                        [
                                            ("id", .string(m.id)), ("name", .string(m.name)),
                                            ("description", .string(m.description)),
                                            ("version", .string(m.version)), ("plugin", .string(m.origin.label)),
                                            ("reversible", .bool(m.isReversible)),
                                            ("checksum", m.checksum.map(JSON.string) ?? .null),
                                        ]
                                            + (states.isEmpty ? [] : [("state", .string(states[m.id] ?? "pending"))])))
                            })
                    ),
                    ("problems", problemsJSON(catalog.problems)),
                ]))
            ctx.out.line(doc.serialized)
        } else {
            var rows = [
                ["ID", "NAME", "VERSION", "PLUGIN", "REVERSIBLE", "CHECKSUM"] + (states.isEmpty ? [] : ["STATE"])
            ]
            for m in catalog.migrations {
                rows.append(
                    [m.id, m.name, m.version, m.origin.label, m.isReversible ? "yes" : "no", m.checksum ?? "-"]
                        + (states.isEmpty ? [] : [states[m.id] ?? "pending"]))
            }
            ctx.out.write(Table.render(rows))
            ctx.out.line("\(catalog.migrations.count) migration(s) in \(set.plugins.count) plugin(s)")
        }
        for p in catalog.problems { MigrationCommands.report(ctx, p.code, p.message, ids: []) }
        return catalog.problems.isEmpty ? ExitCode.ok : ExitCode.failure
    }

    static func problemsJSON(_ problems: [MigratorError]) -> JSON {
        .array(
            problems.map { p in
                .object(
                    JSONObject([
                        ("code", .string(p.code.rawValue)), ("file", p.file.map(JSON.string) ?? .null),
                        ("migration_id", p.migrationID.map(JSON.string) ?? .null), ("message", .string(p.message)),
                    ]))
            })
    }

    static func header(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        ctx.out.line(pluginHeaderText)
        return ExitCode.ok
    }
}

/// Left-aligned text columns.
enum Table {
    static func render(_ rows: [[String]]) -> String {
        guard let first = rows.first else { return "" }
        var widths = [Int](repeating: 0, count: first.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        var out = ""
        for r in rows {
            var line = ""
            for (i, c) in r.enumerated() {
                line += i == r.count - 1 ? c : c.padding(widths[i] + 2)
            }
            out += line + "\n"
        }
        return out
    }
}
