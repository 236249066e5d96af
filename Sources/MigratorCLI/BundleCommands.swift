import DocumentStore
import FoundationEssentials
import MigrationEngine

#if canImport(Glibc)
import Glibc
#endif

/// `bundle create` and `bundle inspect`: one signed file of plugins, for
/// shipping a folder to many hosts (`apply --from FILE`).
enum BundleCommands {
    static let all: [Command] = [
        Command(
            path: ["bundle", "create"], arguments: [],
            summary: "Write the plugins of --dir and a signed manifest into one bundle file.",
            options: [
                PluginCommands.dirOption,
                OptionSpec("key", value: "FILE", "The private key to sign with (from 'migrator keygen'); required."),
                OptionSpec(
                    "sequence", value: "N", "The bundle's sequence; hosts refuse one lower than they took; required."),
                OptionSpec("out", value: "FILE", "The bundle file to write (never overwritten); required."),
                OptionSpec("name", value: "NAME", "The bundle's name (default: the folder's name)."),
                OptionSpec("expires-in", value: "DURATION", "Hosts refuse it after this long (45s, 90m, 12h, 30d)."),
                PluginCommands.insecureOption, PluginCommands.strictToolchainOption,
            ],
            run: create),
        Command(
            path: ["bundle", "inspect"], arguments: [("FILE", "A bundle written by 'migrator bundle create'.")],
            summary:
                "Print a bundle's manifest and, with --trusted-keys, whether its signature, expiry and files pass.",
            options: [
                OptionSpec(
                    "trusted-keys", value: "DIR",
                    "Check the signature, expiry, sizes and hashes with these keys (not the sequence: no database)."),
                MigrationCommands.json,
            ],
            run: inspect),
    ]

    /// `45s`, `90m`, `12h` or `30d`, in seconds.
    static func lifetime(_ text: String) -> Double? {
        if text.hasSuffix("d"), let days = Double(text.dropLast()), days > 0, days.isFinite { return days * 86_400 }
        return MigrationCommands.duration(text)
    }

    static func create(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        guard let key = args.options["key"] else { throw UsageError("bundle create needs --key FILE") }
        guard let out = args.options["out"] else { throw UsageError("bundle create needs --out FILE") }
        guard let sequence = try args.int("sequence", min: 0) else {
            throw UsageError("bundle create needs --sequence N")
        }
        let expiresIn = try args.options["expires-in"].map { raw throws(UsageError) in
            guard let s = lifetime(raw) else {
                throw UsageError("--expires-in needs a duration such as 45s, 90m, 12h or 30d, got '\(raw)'")
            }
            return s
        }
        let directory = ctx.migrationsDirectory(args)
        let folderName = String(directory.split(separator: "/").last ?? "migrations")
        let manifest = try Migrator.createBundle(
            from: directory, name: args.options["name"] ?? folderName, sequence: sequence, expiresIn: expiresIn,
            key: key, out: out, options: PluginCommands.loaderOptions(ctx, args))
        ctx.out.line(out)
        ctx.log(
            "bundle_written",
            "wrote \(out): \(manifest.name) #\(manifest.sequence), \(manifest.files.count) plugin(s), "
                + "\(manifest.files.flatMap(\.migrations).count) migration(s), signed by key \(manifest.keyID)"
                + (manifest.expiresAt.map { ", expires \($0)" } ?? ", no expiry"))
        return ExitCode.ok
    }

    static func inspect(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let path = args.positionals[0]
        let (manifest, verdict) = try Migrator.inspectBundle(path, trustedKeys: args.options["trusted-keys"])
        if args.flag("json") {
            let encoded = try JSONSerialization(manifest)
            ctx.out.line(JSON.object(JSONObject([("manifest", encoded), ("verdict", .string(verdict))])).serialized)
            return verdict.hasPrefix("refused") ? ExitCode.refused : ExitCode.ok
        }
        ctx.out.line("Bundle:    \(manifest.name) #\(manifest.sequence) (format \(manifest.format))")
        ctx.out.line("Created:   \(manifest.createdAt)")
        ctx.out.line("Expires:   \(manifest.expiresAt ?? "never")")
        ctx.out.line("Signed by: key \(manifest.keyID)")
        ctx.out.line("Verdict:   \(verdict)")
        ctx.out.line("")
        ctx.out.line("FILE".padding(28) + "SIZE".padding(10) + "ABI".padding(6) + "SHA-256".padding(18) + "MIGRATIONS")
        for f in manifest.files {
            ctx.out.line(
                f.name.padding(28) + String(f.size).padding(10) + f.abi.padding(6)
                    + String(f.sha256.prefix(16)).padding(18)
                    + f.migrations.joined(separator: ", "))
        }
        return verdict.hasPrefix("refused") ? ExitCode.refused : ExitCode.ok
    }

    /// The manifest as JSON, through its Codable form.
    private static func JSONSerialization(_ manifest: BundleManifest) throws -> JSON {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes = try encoder.encode(manifest)
        return try Array(bytes).withUnsafeBytes { try JSON(parsing: $0) }
    }
}
