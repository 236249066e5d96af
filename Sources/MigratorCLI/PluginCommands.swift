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
        "insecure",
        "Load plugins (and use a database directory or a backup folder) even if others can write them (warns).")
    static let strictToolchainOption = OptionSpec(
        "strict-toolchain", "Refuse Swift plugins built by another toolchain (default: warn).")
    static let requirePinOption = OptionSpec(
        "require-pin", "Refuse to load anything unless the folder has a migrations.lock (see 'migrator pin').")
    static let trustedKeysOption = OptionSpec(
        "trusted-keys", value: "DIR", "Load only plugins with a valid signature (FILE.so.sig) by a key in DIR (*.pub).")
    static let runAsOption = OptionSpec(
        "run-as", value: "USER",
        "As root, become USER before opening the database or loading plugins (default: the database "
            + "directory's owner, when not root).")
    static let fromOption = OptionSpec(
        "from", value: "SOURCE",
        "Take the plugins from this bundle (a file, or an https:// URL) instead of --dir; needs --trusted-keys.",
        fromSettings: false)
    static let caFileOption = OptionSpec(
        "ca-file", value: "PEM", "With --from https://…: trust these CA certificates instead of the system's.")
    static let fetchTimeoutOption = OptionSpec(
        "fetch-timeout", value: "DURATION", "With --from https://…: the longest one attempt may take (default 120s).")
    static let loaderOptions = [
        dirOption, fromOption, insecureOption, strictToolchainOption, requirePinOption, trustedKeysOption,
        runAsOption, caFileOption, fetchTimeoutOption,
    ]

    /// `--ca-file` and `--fetch-timeout`, for fetching a bundle or posting a report.
    static func fetchOptions(_ args: ParsedArguments) throws(UsageError) -> FetchOptions {
        var fetch = FetchOptions()
        fetch.caFile = args.options["ca-file"]
        if let raw = args.options["fetch-timeout"] {
            guard let seconds = MigrationCommands.duration(raw) else {
                throw UsageError("--fetch-timeout needs a duration such as 30s or 2m, got '\(raw)'")
            }
            fetch.totalTimeout = seconds
        }
        return fetch
    }

    /// Loads the plugins of `--from` (a bundle, checked first) or of `--dir`.
    static func load(
        _ m: Migrator, _ ctx: Context, _ args: ParsedArguments, _ loader: PluginLoader.Options
    ) throws
        -> PluginSet
    {
        guard let from = args.options["from"] else {
            return try m.loadPlugins(from: ctx.migrationsDirectory(args), options: loader)
        }
        guard let keys = args.options["trusted-keys"] else {
            throw UsageError(
                "--from needs --trusted-keys DIR (or trusted_keys in migrator.conf): a bundle is taken only signed")
        }
        if args.given("dir") { throw UsageError("--from and --dir cannot be used together") }
        let set = try m.loadBundle(from: from, trustedKeys: keys, options: loader, fetch: try fetchOptions(args))
        if m.bundleAlreadyTaken, let b = m.bundle {
            ctx.log(
                "bundle_taken",
                "note: this database already took bundle \(b.manifest.name) #\(b.manifest.sequence); "
                    + "only steps an earlier run left undone can apply")
        }
        return set
    }

    static let all: [Command] = [
        Command(
            path: ["list"], arguments: [],
            summary: "List the migrations in the plugins of --dir, without touching a database.",
            options: loaderOptions + [
                OptionSpec("json", "Print JSON instead of a table."),
                OptionSpec(
                    "db", value: "PATH",
                    "Also show each migration's state in this database (only when given here; "
                        + "$MIGRATOR_DB and migrator.conf are not read).", fromSettings: false),
            ], run: list),
        Command(
            path: ["pin"], arguments: [],
            summary: "Write DIR/migrations.lock: the SHA-256 of every plugin; then nothing else loads from DIR.",
            options: [dirOption, insecureOption], run: pin),
        Command(
            path: ["keygen"], arguments: [],
            summary: "Write a new Ed25519 signing key pair: NAME.key (0600, keep it secret) and NAME.pub.",
            options: [OptionSpec("out", value: "NAME", "Base name of the two files; required.")], run: keygen),
        Command(
            path: ["sign"], arguments: [("FILE.so...", "Plugin files to sign; writes FILE.so.sig beside each.")],
            summary: "Sign plugin files (their bytes and names) with a private key from 'migrator keygen'.",
            options: [OptionSpec("key", value: "NAME.key", "The private key; required.")], run: sign),
        Command(
            path: ["header"], arguments: [],
            summary: "Print migrator_plugin.h, the C header for writing plugins.",
            options: [], run: header),
    ]

    /// The CLI runs plugin code only in a worker: this same binary, started
    /// as `migrator __worker`, with the operator's signals forwarded to it.
    static func isolation(_ ctx: Context) -> PluginIsolation {
        var isolation = PluginIsolation.worker(executable: "/proc/self/exe", forwardSignals: true)
        isolation.output = ctx.pluginOutput
        return isolation
    }

    static func loaderOptions(_ ctx: Context, _ args: ParsedArguments) -> PluginLoader.Options {
        var options = PluginLoader.Options(
            insecure: args.flag("insecure"), strictToolchain: args.flag("strict-toolchain"))
        options.isolation = isolation(ctx)
        options.requirePin = args.flag("require-pin")
        options.trustedKeysDirectory = args.options["trusted-keys"]
        return options
    }

    static func pin(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let directory = ctx.migrationsDirectory(args)
        let pins = try Migrator.pin(directory: directory, insecure: args.flag("insecure"))
        for p in pins { ctx.out.line("\(p.sha256)  \(p.name)") }
        ctx.log("pinned", "pinned \(pins.count) plugin(s) in \(directory)/migrations.lock")
        return ExitCode.ok
    }

    static func keygen(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        guard let base = args.options["out"] else { throw UsageError("keygen needs --out NAME") }
        let id = try Migrator.generateSigningKey(at: base)
        ctx.out.line(id)
        ctx.log(
            "key_written",
            "wrote \(base).key (private: keep it off the servers) and \(base).pub (key id \(id)); "
                + "put the .pub in the servers' --trusted-keys directory")
        return ExitCode.ok
    }

    static func sign(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        guard let key = args.options["key"] else { throw UsageError("sign needs --key NAME.key") }
        guard !args.positionals.isEmpty else { throw UsageError("sign needs at least one FILE.so") }
        for s in try Migrator.sign(args.positionals, key: key) { ctx.out.line("\(s.file).sig") }
        return ExitCode.ok
    }

    static func list(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        // Plugins only, unless --db is given on the command line: then each
        // migration's state there, exactly as `status` reports it (reads
        // only; never blocked). A database from the environment or the
        // config file is never looked for, so `list` works before one exists.
        let dbPath = args.options["db"]
        if let dbPath { try DatabaseCommands.requireDatabase(dbPath) }
        let migrator = Migrator(databasePath: dbPath ?? "")
        var loader = loaderOptions(ctx, args)
        if dbPath == nil { loader.cacheDirectory = nil }
        let set = try load(migrator, ctx, args, loader)
        for w in set.warnings { ctx.log("warning", w, level: "warning") }
        var states: [String: String] = [:]
        if dbPath != nil {
            for e in try migrator.status().migrations { states[e.id] = MigrationCommands.stateText(e) }
        }
        let catalog = migrator.catalog
        if args.flag("json") {
            let doc: JSON = .object(
                JSONObject([
                    ("directory", .string(args.options["from"] ?? ctx.migrationsDirectory(args))),
                    (
                        "plugins",
                        .array(
                            set.plugins.map { p in
                                .object(
                                    JSONObject(
                                        [
                                            ("file", .string(p.file)), ("name", .string(p.name)),
                                            ("sha256", .string(p.sha256)),
                                            ("toolchain", p.toolchain.map(JSON.string) ?? .null),
                                            ("abi_minor", .int(Int64(p.abiMinor))),
                                            ("migrations", .int(Int64(p.migrations.count))),
                                        ] + (p.signer.map { [("signed_by", JSON.string($0))] } ?? [])))
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
