import DocumentStore
import MigrationEngine

#if canImport(Glibc)
import Glibc
#endif

/// `migrator db …`: direct access to the document store.
enum DatabaseCommands {
    static let dbOption = OptionSpec(
        "db", value: "PATH",
        "Database: an LMDB directory or a postgres:// URI (default: $MIGRATOR_DB, else ./migrator.db).")
    static let filterOption = OptionSpec(
        "filter", value: "JSON", "MongoDB-style filter, e.g. '{\"age\":{\"$gt\":30}}' (default: {}).")
    static let collectionArgument = (name: "COLLECTION", help: "Collection name.")

    static let all: [Command] = [
        Command(
            path: ["db", "collections"], arguments: [], summary: "List collections with their document counts.",
            options: [dbOption], run: collections),
        Command(
            path: ["db", "digest"],
            arguments: [("[COLLECTION...]", "Digest only these (default: every user collection).")],
            summary: "Print a SHA-256 of each collection's documents and indexes, and a total.",
            options: [dbOption, MigrationCommands.json], run: digest),
        Command(
            path: ["db", "import"],
            arguments: [collectionArgument, ("FILE", "JSON Lines file, one object per line; '-' reads stdin.")],
            summary: "Import JSON Lines in one transaction: one bad line and nothing is imported.",
            options: [dbOption, MigrationCommands.lockTimeout, OptionSpec("verbose", "Report progress on stderr.")],
            run: importLines),
        Command(
            path: ["db", "export"], arguments: [collectionArgument],
            summary: "Write documents as JSON Lines to stdout, in _id order.",
            options: [dbOption, filterOption], run: export),
        Command(
            path: ["db", "find"], arguments: [collectionArgument],
            summary: "Print matching documents, one JSON document per line.",
            options: [
                dbOption, filterOption,
                OptionSpec("limit", value: "N", "Print at most N documents."),
                OptionSpec("skip", value: "N", "Skip the first N matches."),
                OptionSpec(
                    "sort", value: "PATH", "Sort by a dotted path; '-PATH' sorts descending. Repeat with commas."),
                OptionSpec("projection", value: "JSON", "Fields to keep ({\"name\":1}) or drop ({\"secret\":0})."),
            ],
            run: find),
        Command(
            path: ["db", "count"], arguments: [collectionArgument],
            summary: "Print the number of matching documents.",
            options: [dbOption, filterOption], run: count),
        Command(
            path: ["db", "indexes"], arguments: [collectionArgument],
            summary: "List a collection's secondary indexes.",
            options: [dbOption], run: indexes),
        Command(
            path: ["db", "create-index"],
            arguments: [collectionArgument, ("PATH", "Dotted field path, e.g. address.city.")],
            summary: "Create a secondary index over existing documents.",
            options: [
                dbOption, MigrationCommands.lockTimeout,
                OptionSpec("unique", "Refuse two documents with the same value."),
            ], run: createIndex),
        Command(
            path: ["db", "explain"], arguments: [collectionArgument],
            summary: "Show whether a filter uses an index or scans the collection.",
            options: [dbOption, filterOption], run: explain),
        Command(
            path: ["db", "copy"], arguments: [],
            summary: "Copy a whole database (migration records included) into an empty one, LMDB or PostgreSQL.",
            options: [
                OptionSpec(
                    "from", value: "DB", "The database to copy: a directory or postgres:// URI (default: --db)."),
                OptionSpec("to", value: "DB", "The new or empty database to copy into (required)."),
                dbOption, MigrationCommands.lockTimeout, OptionSpec("verbose", "Report each collection on stderr."),
            ], run: copy),
    ]

    /// The database at `--db` (a directory, or a PostgreSQL URI). Reads
    /// never create one: a mistyped path must not answer "0 documents"
    /// from a database made on the spot.
    static func open(_ ctx: Context, _ args: ParsedArguments, forWriting: Bool = false) throws -> any DatabaseStorage {
        try open(ctx, ctx.databasePath(args), forWriting: forWriting)
    }

    static func open(_ ctx: Context, _ location: String, forWriting: Bool = false) throws -> any DatabaseStorage {
        if !forWriting { try requireDatabase(location) }
        return Storages.at(location, options: try ctx.storeOptions())
    }

    /// Writes wait for a running migration like a run does, and say so,
    /// instead of hanging silently on the backend's writer lock.
    static func runLock(
        _ ctx: Context, _ args: ParsedArguments, _ storage: any DatabaseStorage, command: String
    ) throws -> any RunLockSession {
        return try storage.acquireLock(
            command: command, timeout: try MigrationCommands.lockTimeout(args) ?? Migrator.Options().lockTimeout,
            onWait: { owner in
                let what = owner?.currentID.map { " (migration \($0))" } ?? ""
                ctx.log(
                    "lock_wait", "waiting for the run lock held by \(owner?.summary ?? "another process")\(what) …",
                    [("holder", .string(owner?.summary ?? "another process"))])
            })
    }

    /// Fails with exit 1 when there is nothing at `path` (a directory, or a
    /// PostgreSQL URI whose schema holds no store).
    static func requireDatabase(_ path: String) throws {
        do { try Storages.at(path).requireExisting() } catch let e as MigratorError where e.code == .directoryNotFound {
            throw CommandError(e.message)
        }
    }

    /// Whether there is a database at `path`: a directory, or a PostgreSQL
    /// URI whose schema holds a store (an unreachable server: no).
    static func databaseExists(_ path: String) -> Bool { Storages.at(path).exists }

    static func filter(_ args: ParsedArguments) throws -> Filter {
        guard let text = args.options["filter"] else { return .all }
        do { return try Filter(parsing: text) } catch { throw UsageError("--filter: \(error.message)") }
    }

    static func collections(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let list = try open(ctx, args).readDocuments { try $0.collections() }
        ctx.out.write(Table.render([["COLLECTION", "DOCUMENTS"]] + list.map { [$0.name, String($0.count)] }))
        return ExitCode.ok
    }

    /// One line per collection (`DIGEST  NAME`) and a total, over the
    /// documents in `_id` order and the index definitions; equal digests
    /// mean equal contents.
    static func digest(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let only = args.positionals.isEmpty ? nil : args.positionals
        let (list, total) = try open(ctx, args).readDocuments { txn in
            if let only {
                for name in only where !(try txn.collectionExists(name)) {
                    throw CommandError("collection '\(name)' does not exist")
                }
            }
            return try txn.digests(only)
        }
        if args.flag("json") {
            let fields = list.map { "\(JSON.string($0.0).serialized):\(JSON.string($0.1).serialized)" }
            ctx.out.line("{\"collections\":{\(fields.joined(separator: ","))},\"total\":\"\(total)\"}")
        } else {
            for (name, d) in list { ctx.out.line("\(d)  \(printable(name))") }
            ctx.out.line("\(total)  (total)")
        }
        return ExitCode.ok
    }

    static func importLines(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let collection = args.positionals[0]
        let file = args.positionals[1]
        let source = try LineSource(path: file)
        let storage = try open(ctx, args, forWriting: true)
        let lock = try runLock(ctx, args, storage, command: "db import")
        defer { lock.release() }
        let verbose = args.flag("verbose")
        // Unbatched: each line's error must come at that line.
        let n = try storage.writeDocuments(batched: false) { txn -> Int in
            source.rewind()
            var n = 0
            while let (lineNumber, line) = try source.nextLine() {
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
                do {
                    try line.withUnsafeBytes { _ = try txn.insert(json: $0, into: collection) }
                } catch let e as StoreError {
                    throw CommandError("\(file):\(lineNumber): \(e.message); nothing was imported")
                }
                n += 1
                if verbose && n % 1000 == 0 {
                    ctx.log("import_progress", "imported \(n) documents…", [("documents", .int(Int64(n)))])
                }
            }
            return n
        }
        ctx.log(
            "imported", "imported \(n) document\(n == 1 ? "" : "s") into '\(collection)'",
            [("collection", .string(collection)), ("documents", .int(Int64(n)))])
        return ExitCode.ok
    }

    static func export(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        try printDocuments(ctx, args, FindOptions())
    }

    static func find(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        var options = FindOptions(skip: try args.int("skip") ?? 0, limit: try args.int("limit"))
        if let p = args.options["projection"] {
            do { options.projection = try Projection(JSON(parsing: p)) } catch {
                throw UsageError("--projection: \(error)")
            }
        }
        if let s = args.options["sort"] {
            for part in s.split(separator: ",") {
                let descending = part.hasPrefix("-")
                let dotted = String(descending ? part.dropFirst() : part[...])
                do { options.sort.append((try FieldPath(dotted), !descending)) } catch {
                    throw UsageError("--sort: \(error.message)")
                }
            }
        }
        return try printDocuments(ctx, args, options)
    }

    /// Writes the stored bytes of each match, one document per line.
    static func printDocuments(_ ctx: Context, _ args: ParsedArguments, _ options: FindOptions) throws -> Int32 {
        let f = try filter(args)
        try open(ctx, args).readDocuments { txn in
            let c = try txn.find(args.positionals[0], filter: f, options: options)
            while let raw = try c.nextRaw() {
                ctx.out.write(bytes: raw)
                ctx.out.write("\n")
            }
        }
        return ExitCode.ok
    }

    static func count(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let f = try filter(args)
        let n = try open(ctx, args).readDocuments { try $0.count(args.positionals[0], filter: f) }
        ctx.out.line(String(n))
        return ExitCode.ok
    }

    static func indexes(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let list = try open(ctx, args).readDocuments { try $0.indexes(args.positionals[0]) }
        ctx.out.line("_id (unique, implicit)")
        for i in list { ctx.out.line(i.path + (i.unique ? " (unique)" : "")) }
        return ExitCode.ok
    }

    static func createIndex(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let (collection, path) = (args.positionals[0], args.positionals[1])
        let storage = try open(ctx, args, forWriting: true)
        let lock = try runLock(ctx, args, storage, command: "db create-index")
        defer { lock.release() }
        let created = try storage.writeDocuments(batched: false) {
            try $0.createIndex(collection, path: path, unique: args.flag("unique"))
        }
        ctx.log(
            created ? "index_created" : "index_exists",
            created ? "created index on '\(collection)'.'\(path)'" : "index on '\(collection)'.'\(path)' already exists"
        )
        return ExitCode.ok
    }

    static func explain(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        let f = try filter(args)
        let plan = try open(ctx, args).readDocuments { try $0.explain(args.positionals[0], filter: f) }
        ctx.out.line(plan.description)
        return ExitCode.ok
    }
}

extension DatabaseCommands {
    /// `db copy --from A --to B`: one snapshot of A into B in one
    /// transaction, under B's run lock; B commits only if every
    /// collection's digest matches A's.
    static func copy(_ ctx: Context, _ args: ParsedArguments) throws -> Int32 {
        guard let to = args.options["to"], !to.isEmpty else { throw UsageError("db copy needs --to DB") }
        let from = args.options["from"] ?? ctx.databasePath(args)
        let source = try open(ctx, from)
        let target = try open(ctx, to, forWriting: true)
        let lock = try runLock(ctx, args, target, command: "db copy")
        defer { lock.release() }
        let verbose = args.flag("verbose")
        let report = try DatabaseCopy.copy(from: source, to: target) { name, n in
            guard verbose else { return }
            ctx.log(
                "copied_collection", "copied '\(printable(name))': \(n) document\(n == 1 ? "" : "s")",
                [("collection", .string(name)), ("documents", .int(Int64(n)))])
        }
        ctx.log(
            "copied",
            "copied \(report.collections) collection\(report.collections == 1 ? "" : "s") "
                + "(\(report.documents) document\(report.documents == 1 ? "" : "s")) from \(source.location) to "
                + "\(target.location); every digest matches (total \(report.digest))")
        return ExitCode.ok
    }
}

/// Reads a file or stdin line by line, keeping what it read so that a
/// retried transaction (after the map grows) can replay it.
final class LineSource {
    private let fd: Int32
    private let path: String
    private var data: [UInt8] = []
    private var position = 0
    private var lineNumber = 0
    private var eof = false

    init(path: String) throws {
        self.path = path
        if path == "-" {
            fd = 0
        } else {
            fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw CommandError("\(path): cannot open: \(String(cString: strerror(errno)))") }
            var st = stat()
            if fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
                close(fd)
                throw CommandError("\(path): is a directory, not a JSON Lines file")
            }
        }
    }

    deinit { if fd > 0 { close(fd) } }

    func rewind() {
        position = 0
        lineNumber = 0
    }

    /// The next line (without its newline) and its 1-based number.
    func nextLine() throws -> (Int, ArraySlice<UInt8>)? {
        while true {
            if let nl = data[position...].firstIndex(of: 0x0A) {
                let line = data[position..<nl]
                position = nl + 1
                lineNumber += 1
                return (lineNumber, line)
            }
            if eof {
                guard position < data.count else { return nil }
                let line = data[position...]
                position = data.count
                lineNumber += 1
                return (lineNumber, line)
            }
            try fill()
        }
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { return }
            throw CommandError("\(path): read failed: \(String(cString: strerror(errno)))")
        }
        if n == 0 {
            eof = true
            return
        }
        data.append(contentsOf: chunk[..<n])
    }
}
