// The fuzz targets: each takes arbitrary bytes and must neither crash nor
// break an invariant (an invariant break is a crash, so libFuzzer sees it).
// The Fuzzer executable feeds them under libFuzzer; FuzzRegressionTests
// replays the committed corpus (Tests/Fuzz/corpus) in every test run.
@testable import DocumentStore
@testable import MigrationEngine
@testable import MigratorCLI
import MigrationKit
import MigratorPluginABI

public enum FuzzTargets {
    public static let names = ["json", "query", "plugin", "arguments"]

    public static func run(_ name: String, _ data: UnsafeRawBufferPointer) {
        switch name {
        case "json": json(data)
        case "query": query(data)
        case "plugin": plugin(data)
        case "arguments": arguments(data)
        default: fatalError("unknown fuzz target \(name)")   // a harness bug, not input
        }
    }

    /// The JSON parser: anything it accepts serializes and parses back equal.
    static func json(_ data: UnsafeRawBufferPointer) {
        guard let value = try? JSONParser.parse(data) else { return }
        let text = JSONSerializer.bytes(value)
        let again = text.withUnsafeBytes { try? JSONParser.parse($0) }
        precondition(again == value, "JSON round trip changed \(value.serialized)")
        // The insert fast path must agree with the parser on stored form.
        _ = CanonicalCheck.check(data)
    }

    /// Filters and updates compiled from the input, evaluated on documents.
    static func query(_ data: UnsafeRawBufferPointer) {
        guard let value = try? JSONParser.parse(data) else { return }
        let docs: [JSON] = [
            .object(JSONObject([("_id", .int(1)), ("a", .int(5)), ("b", .array([.int(1), .string("x")])),
                                ("c", .object(JSONObject([("d", .double(2.5)), ("e", .null)])))])),
            .object(JSONObject([("_id", .string("k")), ("a", .string("5")), ("tags", .array([]))])),
        ]
        if let filter = try? Filter(value) {
            for d in docs { _ = filter.matches(d) }
            _ = filter.indexableEqualities()
            _ = filter.isPrimaryKeyExact
        }
        if let update = try? Update(value) {
            for d in docs {
                guard case .object(var o) = d else { continue }
                if (try? update.apply(to: &o)) != nil {
                    // An updated document still serializes and parses back.
                    let bytes = JSONSerializer.bytes(.object(o))
                    precondition((bytes.withUnsafeBytes { try? JSONParser.parse($0) }) == .object(o))
                }
            }
        }
        if let projection = try? Projection(value), case .object(let o) = docs[0] { _ = projection.apply(to: o) }
        if case .string(let s) = value { _ = try? FieldPath(s) }
    }

    /// ELF checks and descriptor validation on a bundle built from the input.
    static func plugin(_ data: UnsafeRawBufferPointer) {
        _ = ELFCheck.problem([UInt8](data))
        if let s = String(validating: data, as: UTF8.self) {
            _ = MigrationID.problem(with: s)
            _ = MigrationID.sequence(of: s)
        }
        guard data.count >= 12 else { return }
        // Header fields from the first 12 bytes, then NUL-separated strings.
        let words = (0..<3).map { data.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self) }
        var strings: [UnsafeMutablePointer<CChar>] = []
        defer { strings.forEach { $0.deallocate() } }
        for part in data[12...].split(separator: 0, omittingEmptySubsequences: false).prefix(40) {
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: part.count + 1)
            for (i, b) in part.enumerated() { p[i] = CChar(bitPattern: b) }
            p[part.count] = 0
            strings.append(p)
        }
        func str(_ i: Int) -> UnsafePointer<CChar>? { i < strings.count && strings[i].pointee != 0x7F ? UnsafePointer(strings[i]) : nil }
        let count = min(Int(words[2] % 5), max(0, (strings.count - 2) / 5))
        let step: migrator_step_fn = { _, _, _ in MIGRATOR_OK }
        let migrations = UnsafeMutablePointer<migrator_migration_v1>.allocate(capacity: max(count, 1))
        defer { migrations.deallocate() }
        for i in 0..<count {
            migrations[i] = migrator_migration_v1(id: str(2 + 5 * i), name: str(3 + 5 * i), description: str(4 + 5 * i),
                                                  version: str(5 + 5 * i), checksum: str(6 + 5 * i),
                                                  up: words[0] & 1 == 0 ? step : nil, down: i % 2 == 0 ? step : nil, userdata: nil)
        }
        var bundle = migrator_plugin_v1(abi_major: words[0] % 3, abi_minor: words[1] % 4,
                                        struct_size: words[1] % 2 == 0 ? 48 : words[1] % 100,
                                        name: str(0), toolchain: str(1), migration_count: UInt32(count),
                                        migrations: UnsafePointer(migrations))
        let file = CheckedPluginFile(name: "fuzz.so", path: "/fuzz/fuzz.so", sha256: "",
                                     identity: FileIdentity(device: 0, inode: 0, size: 0, mtimeNanoseconds: 0), key: "/fuzz/fuzz.so")
        var warnings: [String] = []
        let described = try? PluginLoader.describe(&bundle, file: file, options: .init(), warnings: &warnings)
        if let described {
            for m in described.migrations { precondition(MigrationID.problem(with: m.id) == nil, "accepted a bad id") }
            _ = AvailableMigration.ordered(described.migrations)
        }
    }

    /// The argument parser, against every command's options.
    static func arguments(_ data: UnsafeRawBufferPointer) {
        let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        for command in MigratorCommandLine.commands {
            _ = try? ParsedArguments(args, specs: command.options)
        }
        if let first = args.first {
            _ = MigratorCommandLine.commands.filter { [first].starts(with: $0.path.prefix(1)) }
        }
    }
}
