import MigrationEngine

#if canImport(Glibc)
import Glibc
#endif

/// `backup`, `restore`, and the confirmation destructive commands ask for.
enum BackupCommands {
    static let yes = OptionSpec("yes", "Do not ask for confirmation (required when there is no terminal to ask on).")
    static let signingKey = OptionSpec(
        "backup-key", value: "FILE", "Sign the backup's manifest with this private key (from 'migrator keygen').")
    static let checkingKey = OptionSpec(
        "backup-key", value: "FILE",
        "Restore only a backup signed by this key (its .key or .pub); without it, an unsigned backup warns.")

    /// The key `--backup-key` (or `backup_key`) names, read; for `signing`,
    /// it must be a private key (refused before any copy is made).
    static func key(_ args: ParsedArguments, signing: Bool) throws -> BackupKey? {
        guard let path = args.options["backup-key"] else { return nil }
        let key = try BackupKey(path: path)
        guard !signing || key.canSign else {
            throw MigratorError(
                .invalidTrustedKey, "the backup key '\(path)' is a public key; signing a backup needs the .key file")
        }
        return key
    }

    static let all: [Command] = [
        Command(
            path: ["backup"], arguments: [],
            summary: "Write a consistent, compacted copy of the database and its manifest (readers keep going).",
            options: [
                MigrationCommands.dbOption,
                OptionSpec("out", value: "PATH", "The new (or empty) directory to write; required."),
                signingKey, MigrationCommands.quiet,
            ],
            run: backup),
        Command(
            path: ["restore"], arguments: [("PATH", "A directory written by 'migrator backup'.")],
            summary: "Replace the database with a checked backup; the current one is removed only once it checks out.",
            options: [
                MigrationCommands.dbOption, MigrationCommands.lockTimeout, yes, MigrationCommands.quiet,
                OptionSpec("insecure", "Restore even from a backup others can write, or on such a path (warns)."),
                checkingKey,
            ],
            run: restore),
    ]

    static func backup(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        guard let out = args.options["out"] else { throw UsageError("backup needs --out PATH") }
        var options = try MigrationCommands.plainOptions(ctx)
        options.backupKey = try key(args, signing: true)
        let m = Migrator(databasePath: ctx.databasePath(args), options: options)
        let manifest = try m.backup(to: out)
        ctx.out.line(out)
        if !args.flag("quiet") {
            ctx.log(
                "backed_up",
                "backed up \(m.databaseName) (\(manifest.applied.count) migration(s) applied, "
                    + "\(manifest.collections.count) collection(s), digest \(manifest.digest.prefix(16))"
                    + (options.backupKey.map { ", signed by key \($0.id)" } ?? ", unsigned") + ") to \(out)")
        }
        return ExitCode.ok
    }

    static func restore(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let source = args.positionals[0]
        var options = try MigrationCommands.plainOptions(ctx, args)
        options.allowInsecureDatabase = args.flag("insecure")
        options.backupKey = try key(args, signing: false)
        options.events = Reporter(ctx, quiet: args.flag("quiet"), verbose: false).event
        let m = Migrator(databasePath: ctx.databasePath(args), options: options)
        // Checked before asking: never ask to restore a damaged or forged backup.
        let checked = try Migrator.checkBackup(source, insecure: options.allowInsecureDatabase, key: options.backupKey)
        let manifest = checked.manifest
        let vouched =
            if case .verified(let id) = checked.signature { "signed by key \(id)" } else {
                checked.signature.warning ?? ""
            }
        guard
            try confirm(
                ctx, args, "restore",
                "Replace \(m.databaseName) with the backup \(source) of \(manifest.source) taken \(manifest.createdAt) "
                    + "(\(manifest.applied.count) migration(s) applied; \(vouched))?")
        else {
            ctx.log("not_confirmed", "not restored")
            return ExitCode.refused
        }
        let signature = try m.restore(from: source).signature
        if !args.flag("quiet") {
            let signed = if case .verified(let id) = signature { ", signature by key \(id) checked" } else { "" }
            ctx.log(
                "restored",
                "restored \(m.databaseName) from \(source): \(manifest.applied.count) migration(s) applied, "
                    + "digest \(manifest.digest.prefix(16)) checked" + signed)
        }
        return ExitCode.ok
    }

    /// True with `--yes`; otherwise asks on the terminal. Without `--yes` and
    /// without a terminal, a usage error: a script must say what it means.
    static func confirm(_ ctx: Context, _ args: ParsedArguments, _ action: String, _ question: String) throws -> Bool {
        if args.flag("yes") { return true }
        guard isatty(0) == 1, ctx.err.isTerminal, !ctx.jsonLogs else {
            throw UsageError("\(action) needs --yes to go ahead when there is no terminal to ask on")
        }
        ctx.err.write(question + " [y/N] ")
        ctx.err.flush()
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while read(0, &byte, 1) == 1, byte != 0x0A { line.append(byte) }
        let answer = String(decoding: line, as: UTF8.self).trimmingCharacters(in: " \t\r")
        return ["y", "yes"].contains(answer.lowercased())
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = Substring(self)
        while let f = s.first, chars.contains(f) { s = s.dropFirst() }
        while let l = s.last, chars.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
