import FoundationEssentials
import MigrationEngine
import MigrationKit

#if canImport(Glibc)
import Glibc
#endif

extension MigrationCommands {
    /// `create`: the next free number, a slug of the name, and a source
    /// file from `Scaffold`; never overwrites.
    static func create(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let name = args.positionals[0]
        let description = args.positionals.count > 1 ? args.positionals[1] : name
        guard let language = Scaffold.Language(rawValue: args.options["lang"] ?? "swift") else {
            throw UsageError("--lang must be swift or c, not '\(args.options["lang"] ?? "")'")
        }
        if args.options["from"] != nil {
            throw UsageError("create numbers the next migration from the sources and --dir; --from is for runs")
        }
        let out = args.options["out"] ?? "."
        var ids: [String] = []
        // Numbers in use: plugins in --dir, sources in --out, the database.
        let dir = ctx.migrationsDirectory(args)
        if access(dir, F_OK) == 0 {
            // The same loader policy as every other command (pins, trusted
            // keys, ownership): numbering a new file is no reason to run code
            // that apply would refuse.
            let set = try PluginLoader.load(directory: dir, options: PluginCommands.loaderOptions(ctx, args))
            for p in set.problems {
                ctx.log(
                    "not_counted", "note: not counting \(p.file ?? dir): \(p.message)",
                    [("file", .string(p.file ?? dir))])
            }
            ids += set.migrations.map(\.id)
        }
        if let names = try? FileManager.default.contentsOfDirectory(atPath: out) {
            let stems = names.map { name in name.lastIndex(of: ".").map { String(name[..<$0]) } ?? name }
            ids += stems.filter { MigrationID.problem(with: $0) == nil }
        }
        ids += try Migrator(databasePath: ctx.databasePath(args)).appliedMigrations().map(\.id)
        guard let id = Scaffold.nextID(name: name, existingIDs: ids) else {
            throw UsageError("NAME '\(name)' has no letters or digits to build an id from")
        }
        let (file, text) = Scaffold.source(
            id: id, name: name, description: description,
            version: args.options["version"] ?? "1.0.0", language: language)
        let path = out.hasSuffix("/") ? out + file : out + "/" + file
        guard !FileManager.default.fileExists(atPath: path) else {
            throw CommandError("'\(path)' already exists; not overwriting it")
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        ctx.out.line(path)
        switch language {
        case .swift:
            ctx.log(
                "created",
                """
                wrote \(id) to \(path)
                next: add \(Scaffold.typeName(id))() to MigrationBundle.export in your plugin package, then
                  swift build -c release && install -m 0644 .build/release/lib<YourPlugin>.so \(dir)/
                """
            )
        case .c:
            ctx.log(
                "created",
                """
                wrote \(id) to \(path)
                build it with:
                  migrator header > migrator_plugin.h
                  cc -shared -fPIC -O2 -fvisibility=hidden -I. -o \(dir)/\(id).so \(path)
                """
            )
        }
        return ExitCode.ok
    }
}
