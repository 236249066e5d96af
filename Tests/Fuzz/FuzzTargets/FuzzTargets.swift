// The fuzz targets: each takes arbitrary bytes and must neither crash nor
// break an invariant. They return the invariants an input broke: the Fuzzer
// executable traps on any (so libFuzzer sees a crash), and
// FuzzRegressionTests records each as a test failure while it replays the
// committed corpus (Tests/Fuzz/corpus) in every test run.
//
// They reach internal APIs through `@testable import`, which only debug
// builds allow, so in a release build this module is empty (and
// `swift build -c release` at the root still works).
#if DEBUG
@testable import DocumentStore
@testable import MigrationEngine
@testable import MigratorCLI
import MigrationKit
import MigratorPluginABI

public enum FuzzTargets {
    public static let names = ["json", "query", "plugin", "arguments"]

    /// Runs target `name` on `data`; returns the invariants it broke
    /// (empty when all held). An unknown name is reported the same way.
    public static func run(_ name: String, _ data: UnsafeRawBufferPointer) -> [String] {
        var broken = Invariants()
        switch name {
        case "json": json(data, &broken)
        case "query": query(data, &broken)
        case "plugin": plugin(data, &broken)
        case "arguments": arguments(data)
        default: broken.check(false, "unknown fuzz target '\(name)'")
        }
        return broken.failures
    }

    struct Invariants {
        var failures: [String] = []
        mutating func check(_ holds: Bool, _ what: @autoclosure () -> String) {
            if !holds { failures.append(what()) }
        }
    }

    /// The JSON parser: anything it accepts serializes and parses back equal.
    static func json(_ data: UnsafeRawBufferPointer, _ broken: inout Invariants) {
        // The insert fast path must agree with the parser on stored form:
        // what it accepts, the parser reads, and serializes to the same bytes.
        let fast = CanonicalCheck.check(data)
        guard let value = try? JSONParser.parse(data) else {
            broken.check(fast == nil, "the canonical check accepted text the parser rejects")
            return
        }
        let text = JSONSerializer.bytes(value)
        let again = text.withUnsafeBytes { try? JSONParser.parse($0) }
        broken.check(again == value, "JSON round trip changed \(value.serialized)")
        guard let fast else { return }
        broken.check(text.elementsEqual(data), "the canonical check accepted text that is not in stored form")
        guard case .object(let o) = value else {
            broken.check(false, "the canonical check accepted a non-object")
            return
        }
        let idFirst = o.fields.first?.key == "_id"
        if let range = fast.idRange, let id = o["_id"] {
            broken.check(idFirst, "the canonical check found _id first, the parser elsewhere")
            broken.check(
                data[range].elementsEqual(JSONSerializer.bytes(id)), "the canonical check's _id range is wrong")
        } else {
            broken.check(!idFirst, "the canonical check missed a leading _id")
        }
        broken.check(fast.idElsewhere == (o["_id"] != nil && !idFirst), "the canonical check misplaced _id")
    }

    /// Filters and updates compiled from the input, evaluated on documents.
    static func query(_ data: UnsafeRawBufferPointer, _ broken: inout Invariants) {
        guard let value = try? JSONParser.parse(data) else { return }
        let docs: [JSON] = [
            .object(
                JSONObject([
                    ("_id", .int(1)), ("a", .int(5)), ("b", .array([.int(1), .string("x")])),
                    ("c", .object(JSONObject([("d", .double(2.5)), ("e", .null)]))),
                ])),
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
                    broken.check(
                        (bytes.withUnsafeBytes { try? JSONParser.parse($0) }) == .object(o),
                        "an updated document does not parse back: \(JSON.object(o).serialized)")
                }
            }
        }
        if let projection = try? Projection(value), case .object(let o) = docs[0] { _ = projection.apply(to: o) }
        if case .string(let s) = value { _ = try? FieldPath(s) }
    }

    /// ELF checks and descriptor validation on a bundle built from the input.
    static func plugin(_ data: UnsafeRawBufferPointer, _ broken: inout Invariants) {
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
        func str(_ i: Int) -> UnsafePointer<CChar>? {
            i < strings.count && strings[i].pointee != 0x7F ? UnsafePointer(strings[i]) : nil
        }
        let count = min(Int(words[2] % 5), max(0, (strings.count - 2) / 5))
        let step: migrator_step_fn = { _, _, _ in MIGRATOR_OK }
        let migrations = UnsafeMutablePointer<migrator_migration_v1>.allocate(capacity: max(count, 1))
        defer { migrations.deallocate() }
        for i in 0..<count {
            migrations[i] = migrator_migration_v1(
                id: str(2 + 5 * i), name: str(3 + 5 * i), description: str(4 + 5 * i),
                version: str(5 + 5 * i), checksum: str(6 + 5 * i),
                up: words[0] & 1 == 0 ? step : nil, down: i % 2 == 0 ? step : nil, userdata: nil)
        }
        var bundle = migrator_plugin_v1(
            abi_major: words[0] % 3, abi_minor: words[1] % 4,
            struct_size: words[1] % 2 == 0 ? 48 : words[1] % 100,
            name: str(0), toolchain: str(1), migration_count: UInt32(count),
            migrations: UnsafePointer(migrations))
        let file = CheckedPluginFile(
            name: "fuzz.so", path: "/fuzz/fuzz.so", sha256: "",
            identity: FileIdentity(device: 0, inode: 0, size: 0, mtimeNanoseconds: 0), key: "/fuzz/fuzz.so")
        var warnings: [String] = []
        let described = try? PluginLoader.describe(&bundle, file: file, options: .init(), warnings: &warnings)
        if let described {
            for m in described.migrations {
                broken.check(MigrationID.problem(with: m.id) == nil, "accepted a bad id '\(m.id)'")
            }
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
#endif
