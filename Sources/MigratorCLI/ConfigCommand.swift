import MigrationEngine

/// `migrator config`: the effective settings and where each comes from.
enum ConfigCommand {
    static let all: [Command] = [
        Command(
            path: ["config"], arguments: [],
            summary:
                "Show the effective settings (flags, MIGRATOR_* variables, migrator.conf, defaults) and their sources.",
            options: Configuration.keys.map { k in
                OptionSpec(k.option, value: k.isFlag ? nil : "VALUE", "Override \(k.name) (\(k.meaning)).")
            },
            run: { _, _ in ExitCode.ok })
    ]

    static func show(_ ctx: Context, _ args: ParsedArguments, _ configuration: Configuration) -> Int32 {
        var rows = [["KEY", "VALUE", "SOURCE"]]
        for key in Configuration.keys {
            let (value, source) = configuration.effective(key, args, ctx.environment)
            // A database URI's password is never shown.
            let shown = Storages.displayName(value ?? defaultValue(key, ctx))
            rows.append([key.name, printable(shown), "\(source)"])
        }
        ctx.out.write(Table.render(rows))
        let file =
            configuration.path.map { "config file: \($0)" } ?? "config file: none (\(Configuration.fileName) not found)"
        ctx.out.line(file + (configuration.environmentName.map { ", environment: \($0)" } ?? ""))
        return ExitCode.ok
    }

    static func defaultValue(_ key: Configuration.Key, _ ctx: Context) -> String {
        switch key.name {
        case "dir": return "./migrations"
        case "db": return "./migrator.db"
        case "lock_timeout": return "60"
        case "step_timeout": return "(none)"
        case "keep": return "5"
        case "require_pin": return "false"
        case "log_format": return "text"
        default: return "(none)"
        }
    }
}
