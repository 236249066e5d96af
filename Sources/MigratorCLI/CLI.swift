import DocumentStore
import MigrationEngine
import MigrationKit
import PostgresDriver

#if canImport(Glibc)
import Glibc
#endif

/// Exit codes of the `migrator` executable. They are part of its interface.
enum ExitCode {
    static let ok: Int32 = 0
    /// Any failure that is not a usage error (a migration failed, bad data…).
    static let failure: Int32 = 1
    /// The command line was wrong.
    static let usage: Int32 = 2
    /// Another run held the lock past `--lock-timeout`.
    static let lockTimeout: Int32 = 3
    /// Validation refused the run before anything ran.
    static let refused: Int32 = 4
    /// `status --check` found pending, failed or missing migrations.
    static let work: Int32 = 5
    /// A step failed and its outcome could not be read back.
    static let outcomeUnknown: Int32 = 6
}

/// What a command needs from its surroundings.
public struct Context {
    var environment: [String: String]
    let out: TextOutput
    let err: TextOutput
    /// `--log-format json`: every message on stderr is one JSON object.
    var jsonLogs = false

    /// A message for the operator on stderr: the text as it is, or with
    /// `--log-format json` one object with a timestamp, level, event name,
    /// the text and `fields`.
    func log(_ event: String, _ text: String, level: String = "info", _ fields: [(String, JSON)] = []) {
        if jsonLogs {
            err.line(Self.jsonLine(event, text, level: level, fields))
        } else if !text.isEmpty {
            err.line(text)
        }
        err.flush()
    }

    /// One `--log-format json` line: timestamp, level, event, message, fields.
    static func jsonLine(_ event: String, _ text: String, level: String, _ fields: [(String, JSON)] = []) -> String {
        var all: [(String, JSON)] = [
            ("ts", .string(EngineClock.iso8601())), ("level", .string(level)), ("event", .string(event)),
        ]
        if !text.isEmpty { all.append(("message", .string(text))) }
        return JSON.object(JSONObject(all + fields)).serialized
    }

    /// Where plugin code's own output goes: as it is (text), or one
    /// `plugin_output` object per line (JSON), written whole in one call.
    var pluginOutput: (@Sendable (String) -> Void)? {
        guard jsonLogs else { return nil }
        return { line in
            let bytes = Array((Self.jsonLine("plugin_output", line, level: "info") + "\n").utf8)
            _ = TextOutput.stderrLock.withLock { _ in bytes.withUnsafeBytes { TextOutput.writeAll(2, $0) } }
        }
    }

    /// An error for the operator: `error: TEXT` and an indented hint, or
    /// one JSON object at level `error` with the hint as a field. In text,
    /// control characters are shown escaped, so that text from a plugin or
    /// a database can neither add lines nor send escapes.
    func error(_ event: String, _ text: String, hint: String? = nil, _ fields: [(String, JSON)] = []) {
        if jsonLogs {
            log(event, text, level: "error", fields + (hint.map { [("hint", JSON.string($0))] } ?? []))
        } else {
            log(event, "error: \(printable(text))" + (hint.map { "\n  hint: \($0)" } ?? ""), level: "error")
        }
    }

    /// A usage mistake, with the usage line to follow.
    func usageError(_ text: String, usage: String) {
        if jsonLogs {
            log("usage_error", text, level: "error", [("usage", .string(usage))])
        } else {
            log("usage_error", "error: \(text)\nusage: \(usage)")
        }
    }

    /// The last `--log-format` among `args` (before any `--`), else
    /// `MIGRATOR_LOG_FORMAT`, else `log_format` in the config file that
    /// `--config`/`MIGRATOR_CONFIG` or `./migrator.conf` names (for the
    /// `--env`/`MIGRATOR_ENV` section): known before the arguments are
    /// parsed, so that a usage error is reported in the format asked for.
    /// A config file that cannot be read counts as text; the command then
    /// reports it.
    static func requestsJSONLogs(_ args: [String], environment: [String: String]) -> Bool {
        var early = ParsedArguments()
        var i = 0
        while i < args.count, args[i] != "--" {
            for name in ["log-format", "config", "env"] {
                if args[i] == "--" + name, i + 1 < args.count {
                    early.options[name] = args[i + 1]
                } else if args[i].hasPrefix("--\(name)=") {
                    early.options[name] = String(args[i].dropFirst(name.count + 3))
                }
            }
            i += 1
        }
        if let format = early.options["log-format"] { return format == "json" }
        if let format = environment["MIGRATOR_LOG_FORMAT"], !format.isEmpty { return format == "json" }
        guard let key = Configuration.keys.first(where: { $0.name == "log_format" }),
            let settings = try? Configuration(early, environment: environment)
        else { return false }
        return settings.effective(key, early, environment).0 == "json"
    }

    /// The process's standard output and error, and `environment`.
    public init(environment: [String: String]) {
        self.init(environment: environment, out: TextOutput(fd: 1), err: TextOutput(fd: 2))
    }

    init(environment: [String: String], out: TextOutput, err: TextOutput) {
        self.environment = environment
        self.out = out
        self.err = err
    }

    /// `--db`, else `MIGRATOR_DB`, else `./migrator.db`: a directory (LMDB)
    /// or a `postgres://` URI.
    func databasePath(_ args: ParsedArguments) -> String {
        args.options["db"] ?? environment["MIGRATOR_DB"] ?? "./migrator.db"
    }

    /// ``databasePath(_:)`` as messages and prompts show it: a URI's password redacted.
    func databaseName(_ args: ParsedArguments) -> String { Storages.displayName(databasePath(args)) }

    /// Store options from the environment: `MIGRATOR_MAX_MAP_MB` caps how
    /// large the database may grow (default: 1 TiB).
    func storeOptions() throws -> DocumentStore.Options {
        var o = DocumentStore.Options()
        if let raw = environment["MIGRATOR_MAX_MAP_MB"] {
            guard let mb = Int(raw), mb > 0, mb <= 1 << 20 else {
                throw UsageError("MIGRATOR_MAX_MAP_MB must be a whole number of megabytes, got '\(raw)'")
            }
            o.maxMapSize = mb << 20
            o.initialMapSize = min(o.initialMapSize, o.maxMapSize)
        }
        return o
    }

    /// `--dir`, else `MIGRATOR_DIR`, else `./migrations`.
    func migrationsDirectory(_ args: ParsedArguments) -> String {
        args.options["dir"] ?? environment["MIGRATOR_DIR"] ?? "./migrations"
    }
}

/// One `migrator` command.
struct Command: Sendable {
    let path: [String]
    let arguments: [(name: String, help: String)]
    let summary: String
    let options: [OptionSpec]
    let run: @Sendable (Context, ParsedArguments) throws -> Int32
    /// What to suggest when a command that takes no arguments gets one.
    var argumentHint: (@Sendable (String) -> String)? = nil
    /// A paragraph the help (and man page) shows after the summary.
    var notes: String? = nil

    static let passwordFile = OptionSpec(
        "password-file", value: "FILE",
        "The PostgreSQL password, on the first line of FILE (owner-only, mode 600): never on the command line.")

    /// Options every command takes, after its own.
    static let common = [
        OptionSpec("log-format", value: "text|json", "json: one JSON object per line on stderr, for CI (default text).")
    ]

    init(
        path: [String], arguments: [(name: String, help: String)], summary: String, options: [OptionSpec],
        run: @escaping @Sendable (Context, ParsedArguments) throws -> Int32,
        argumentHint: (@Sendable (String) -> String)? = nil, notes: String? = nil
    ) {
        self.path = path
        self.arguments = arguments
        self.summary = summary
        // A database that may be a server's takes its password from a file.
        let takesPassword = options.contains { $0.name == "db" } && !options.contains { $0.name == "password-file" }
        self.options = options + (takesPassword ? [Self.passwordFile] : []) + Self.common
        self.run = run
        self.argumentHint = argumentHint
        self.notes = notes
    }

    var name: String { "migrator " + path.joined(separator: " ") }

    /// Checks the number of positionals against ``arguments``.
    func checkPositionals(_ positionals: [String]) throws(UsageError) {
        let required = arguments.filter { !$0.name.hasPrefix("[") }.count
        if arguments.isEmpty, let first = positionals.first {
            throw UsageError(
                "'\(name)' takes no arguments, got '\(first)'" + (argumentHint.map { "; " + $0(first) } ?? ""))
        }
        if positionals.count < required {
            let names = arguments.filter { !$0.name.hasPrefix("[") }.map(\.name)
            throw UsageError("'\(name)' needs \(names.dropFirst(positionals.count).joined(separator: " "))")
        }
        // A last argument named `X...` takes any number.
        let variadic = arguments.last?.name.hasSuffix("...") == true || arguments.last?.name.hasSuffix("...]") == true
        if positionals.count > arguments.count && !variadic {
            let extra = positionals.dropFirst(arguments.count).map { "'\($0)'" }.joined(separator: ", ")
            throw UsageError("'\(name)' takes \(arguments.map(\.name).joined(separator: " ")); unexpected \(extra)")
        }
    }

    var usage: String {
        var u = name
        for a in arguments { u += " " + a.name }
        if !options.isEmpty { u += " [options]" }
        return u
    }

    var help: String {
        var h = "\(summary)\n" + (notes.map { "\n\($0)\n" } ?? "") + "\nUsage: \(usage)\n"
        if !arguments.isEmpty {
            h += "\nArguments:\n"
            for a in arguments { h += "  " + a.name.padding(22) + a.help + "\n" }
        }
        h += "\nOptions:\n"
        for o in options + [OptionSpec("help", "Show this help.")] {
            let left = "--" + o.name + (o.value.map { " " + $0 } ?? "")
            h += "  " + left.padding(22) + o.help + "\n"
        }
        return h
    }
}

extension String {
    func padding(_ width: Int) -> String {
        // At least two spaces: the man pages and completions read up to them.
        count >= width - 1 ? self + "  " : self + String(repeating: " ", count: width - count)
    }
}

/// The `migrator` command line. The executable is only `exit(main(args))`.
public enum MigratorCommandLine {
    static let version = runnerVersion

    static let commands: [Command] =
        MigrationCommands.all + TrialCommands.all + BackupCommands.all + PluginCommands.all + BundleCommands.all
        + DatabaseCommands.all
        + ConfigCommand.all

    /// The commands under a group such as `db`.
    static func group(_ name: String) -> [Command] { commands.filter { $0.path.count > 1 && $0.path[0] == name } }

    /// Help for a group: its subcommands and what they do.
    static func groupHelp(_ name: String) -> String {
        var h = "Usage: migrator \(name) <command> [options]\n\nCommands:\n"
        for c in group(name) { h += "  " + c.path.joined(separator: " ").padding(20) + c.summary + "\n" }
        return h + "\nEvery command takes --help.\n"
    }

    /// `help`, `help CMD`, `help db CMD`.
    static func help(_ path: [String], _ context: Context) -> Int32 {
        if path.isEmpty {
            context.out.write(topHelp)
            return ExitCode.ok
        }
        if let command = commands.first(where: { $0.path == path }) {
            context.out.write(command.help)
            return ExitCode.ok
        }
        if path.count == 1, !group(path[0]).isEmpty {
            context.out.write(groupHelp(path[0]))
            return ExitCode.ok
        }
        context.usageError(
            "no command '\(path.joined(separator: " "))'"
                + suggestion(path.joined(separator: " "), among: commands.map { $0.path.joined(separator: " ") }),
            usage: "migrator help [COMMAND]")
        return ExitCode.usage
    }

    /// "; did you mean 'status'?" when one candidate is close to `word`.
    static func suggestion(_ word: String, among candidates: [String]) -> String {
        nearest(word, among: candidates).map { " (did you mean '\($0)'?)" } ?? ""
    }

    static var topHelp: String {
        var h = """
            migrator \(version): compiled database migrations on an embedded LMDB document store.

            Usage: migrator <command> [options]

            Commands:

            """
        for c in commands {
            h += "  " + c.path.joined(separator: " ").padding(20) + c.summary + "\n"
        }
        h += """

            --dir DIR defaults to $MIGRATOR_DIR, else ./migrations; --db PATH to
            $MIGRATOR_DB, else ./migrator.db. Settings can also come from migrator.conf
            (--config PATH, --env NAME); 'migrator config' shows them. Every command
            takes --help. Tables and data go to stdout; logs and progress to stderr.

            Exit codes:
              0  success (also: nothing to do)
              1  a migration failed, or another failure (bad data, storage error)
              2  usage error
              3  lock timeout: another run holds the database's run lock
              4  validation refused the run (nothing was changed)
              5  status --check found pending, failed or missing migrations
              6  outcome unknown: a step failed and the database could not say whether it committed
              128+N  the operator's signal N stopped the run (a step it interrupted committed nothing)

            """
        return h
    }

    /// Runs the command line `args` (without the program name) and returns the exit code.
    public static func main(_ args: [String], context: Context) -> Int32 {
        // Before anything loads a library on demand: a worker has these too.
        LoadedLibraries.recordStartup()
        // The storage drivers beside LMDB's, in the worker too (it opens the database).
        PostgresStorageDriver.register()
        // Started by ourselves to hold plugin code (see PluginIsolation).
        if PluginWorker.isWorkerInvocation(args) { return PluginWorker.serve(arguments: args) }
        var context = context
        context.jsonLogs = Context.requestsJSONLogs(args, environment: context.environment)
        var code = dispatch(args, context: context)
        context.out.flush()
        if let e = context.out.writeError {
            if e == EPIPE {
                code = 128 + SIGPIPE  // the reader went away: quietly, as a pipe usually ends
            } else {
                context.error("output_failed", "cannot write to standard output: \(String(cString: strerror(e)))")
                code = ExitCode.failure
            }
        }
        context.err.flush()
        return code
    }

    /// Runs the command `args` names.
    static func dispatch(_ args: [String], context: Context) -> Int32 {
        // `migrator --db X --dir Y status` means `migrator status --db X --dir Y`.
        var args = args
        var leading: [String] = []
        while let first = args.first,
            ["--db", "--dir", "--config", "--env", "--log-format"].contains(where: {
                first == $0 || first.hasPrefix($0 + "=")
            })
        {
            if first.contains("=") {
                leading.append(args.removeFirst())
            } else if args.count >= 2 {
                leading += args.prefix(2)
                args.removeFirst(2)
            } else {
                break
            }
        }
        if args.isEmpty {
            if context.jsonLogs {
                context.usageError("no command given; see 'migrator --help'", usage: "migrator <command> [options]")
            } else {
                context.err.write(topHelp)
            }
            return ExitCode.usage
        }
        if args.first == Generators.command { return Generators.run(args, context) }
        if args == ["--help"] || args == ["-h"] { return help([], context) }
        if args[0] == "help" { return help(Array(args.dropFirst()), context) }
        if args == ["--version"] {
            context.out.line(
                "migrator \(version) (plugin ABI \(pluginABIVersion), built with \(SwiftToolchain.current))")
            return ExitCode.ok
        }
        // The longest command path that prefixes the arguments.
        let match =
            commands
            .filter { args.starts(with: $0.path) }
            .max { $0.path.count < $1.path.count }
        guard let command = match else { return noCommand(args, context) }
        return run(command, Array(args.dropFirst(command.path.count)) + leading, context)
    }

    /// Arguments that name no command: a group without its command, or a
    /// typo (with the nearest command suggested).
    static func noCommand(_ args: [String], _ context: Context) -> Int32 {
        let members = group(args[0])
        guard !members.isEmpty else {
            let names = Set(commands.map { $0.path[0] }).sorted()
            context.usageError(
                "unknown command '\(args[0])'" + suggestion(args[0], among: names) + "; see 'migrator --help'",
                usage: "migrator <command> [options]")
            return ExitCode.usage
        }
        if args.count > 1 && (args[1] == "--help" || args[1] == "-h") { return help([args[0]], context) }
        let message: String
        if args.count > 1 && !args[1].hasPrefix("-") {
            let names = members.map { $0.path.joined(separator: " ") }
            message = "unknown command '\(args[0]) \(args[1])'" + suggestion("\(args[0]) \(args[1])", among: names)
        } else {
            message = "'\(args[0])' needs a command"
        }
        if context.jsonLogs {
            context.usageError(message, usage: "migrator \(args[0]) <command> [options]")
        } else {
            context.err.line("error: " + message)
            context.err.write(groupHelp(args[0]))
        }
        return ExitCode.usage
    }

    /// Parses `rest` for `command` and runs it, mapping every error to its
    /// message and documented exit code.
    static func run(_ command: Command, _ rest: [String], _ context: Context) -> Int32 {
        var context = context
        do {
            var parsed = try ParsedArguments(
                rest,
                specs: command.options + [OptionSpec("help", ""), Configuration.configOption, Configuration.envOption])
            if parsed.flag("help") {
                context.out.write(command.help)
                return ExitCode.ok
            }
            if let db = parsed.options["db"], Storages.displayName(db) != db {
                context.log(
                    "warning",
                    "warning: the password in --db is visible to every user of this machine (ps, /proc); "
                        + "set PGPASSWORD or a PGPASSFILE instead", level: "warning")
            }
            // Settings a flag did not give: the environment's, then the config file's.
            let configuration = try Configuration(parsed, environment: context.environment)
            if command.path == ["config"] { return ConfigCommand.show(context, parsed, configuration) }
            configuration.apply(to: &parsed, accepting: command.options, environment: context.environment)
            if let format = parsed.options["log-format"] {
                guard ["text", "json"].contains(format) else {
                    throw UsageError("--log-format must be text or json, got '\(format)'")
                }
                context.jsonLogs = format == "json"
            }
            try command.checkPositionals(parsed.positionals)
            // Read before privileges are dropped (it may be root's alone); libpq
            // and the worker's libpq take it from the environment.
            if let file = parsed.options["password-file"] {
                setenv("PGPASSWORD", try TrustedFile.secret(file, role: "password file"), 1)
            }
            // Before the database is opened or any plugin loads: plugin code never runs as root.
            if command.options.contains(where: { $0.name == "run-as" }) {
                switch try RunAs.apply(requested: parsed.options["run-as"], database: context.databasePath(parsed)) {
                case .stillRoot(let warning) where !parsed.flag("quiet"):
                    context.log("warning", warning, level: "warning")
                case .became(let user, let uid, let reason) where parsed.flag("verbose"):
                    context.log("run_as", "note: running as '\(user)' (uid \(uid)), \(reason)")
                default: break
                }
            }
            return try command.run(context, parsed)
        } catch let e as UsageError {
            context.usageError(e.message, usage: "\(command.usage)  (see --help)")
            return ExitCode.usage
        } catch let e as any StorageFailure {
            context.error("error", e.message, [("code", .string(e.codeName))])
            return ExitCode.failure
        } catch let e as MigratorError {
            return MigrationCommands.fail(context, e)
        } catch let e as CommandError {
            context.error("error", e.message)
            return e.exitCode
        } catch {
            context.error("error", "\(error)")
            return ExitCode.failure
        }
    }
}

/// A command failure with its message and exit code.
struct CommandError: Error {
    let message: String
    let exitCode: Int32
    init(_ message: String, exitCode: Int32 = ExitCode.failure) {
        self.message = message
        self.exitCode = exitCode
    }
}
