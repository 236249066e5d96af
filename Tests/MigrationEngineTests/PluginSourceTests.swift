import Foundation
import MigrationEngine
import Synchronization
import TestSupport
import Testing

/// A second source, as a test double: `memory://NAME` yields images held
/// in memory (here compiled by the test, then read into bytes), checked as
/// every source must (``ImageCheck``) before it hands them over. It touches
/// nothing but its own code and one registration line.
struct MemorySourceDriver: PluginSourceDriver {
    /// The images of each set, by set name: (file name, bytes).
    static let sets = Mutex<[String: [(String, [UInt8])]]>([:])

    var name: String { "memory" }
    var schemes: [String] { ["memory"] }
    func source(at location: String) -> any PluginSource { MemorySource(location: location) }
}

struct MemorySource: PluginSource {
    let location: String

    func scan(_ policy: SourcePolicy, onChecked: (CheckedPluginFile) -> Void) throws(MigratorError) -> SourceScan {
        let set = String(location.dropFirst("memory://".count))
        guard let images = MemorySourceDriver.sets.withLock({ $0[set] }) else {
            throw MigratorError(.directoryNotFound, "no set '\(set)' in memory")
        }
        var scan = SourceScan()
        for (name, bytes) in images.sorted(by: { $0.0 < $1.0 }) {
            let path = location + "/" + name
            do {
                let sha256 = try ImageCheck.check(
                    bytes, name: name, path: path, origin: "/nonexistent", insecure: policy.insecure,
                    loadedLibraries: policy.loadedLibraries, warnings: &scan.warnings)
                let file = CheckedPluginFile(name: name, path: path, key: path, bytes: bytes, sha256: sha256)
                onChecked(file)
                scan.files.append(file)
            } catch {
                scan.problems.append(error)
            }
        }
        return scan
    }
}

@Suite("plugin sources", .serialized)
struct PluginSourceTests {
    @Test("a registered source yields checked images, and they load and apply like a folder's")
    func aSecondSourceRegistersItself() throws {
        PluginSources.register(MemorySourceDriver())
        let dir = Fixtures.temporaryDirectory("memory-source")
        defer { Fixtures.removeTree(dir) }
        var images: [(String, [UInt8])] = []
        for (n, name) in [(1, "a.so"), (2, "b.so")] {
            let path = try Fixtures.compilePlugin(
                Fixtures.stepPlugin(
                    String(format: "%03d_memory", n), up: #"return host->insert(txn, "log", "{\"n\":1}");"#),
                name: name, in: dir)
            images.append((name, Array(try Data(contentsOf: URL(fileURLWithPath: path)))))
        }
        // Not an ELF image: refused by the common check, naming it.
        images.append(("c.so", Array("not a plugin".utf8)))
        MemorySourceDriver.sets.withLock { $0["two"] = images }
        let (db, cleanup) = Backend.lmdb.freshLocation("memory-source-db")
        defer { cleanup() }
        let m = Migrator(databasePath: db)
        let set = try m.loadPlugins(from: "memory://two")
        #expect(set.migrations.map(\.id) == ["001_memory", "002_memory"])
        #expect(set.problems.map(\.code) == [.invalidELF])
        #expect(set.problems.first?.message.contains("plugin 'memory://two/c.so'") == true, "\(set.problems)")
        // A set with a problem is refused as a folder's is; without it, it applies.
        #expect(throws: MigratorError.self) { try m.migrateUp() }
        MemorySourceDriver.sets.withLock { $0["two"] = Array(images.prefix(2)) }
        let clean = Migrator(databasePath: db)
        try clean.loadPlugins(from: "memory://two")
        #expect(try clean.migrateUp().completed == ["001_memory", "002_memory"])
        #expect(
            try clean.appliedMigrations().map(\.plugin) == ["a.so", "b.so"], "recorded by file name, as a folder's")
    }

    @Test("a scheme without a source driver is refused, naming it")
    func anUnknownSourceIsRefused() throws {
        let m = Migrator(databasePath: Fixtures.temporaryDirectory("nosource") + "/db")
        let e = #expect(throws: MigratorError.self) { try m.loadPlugins(from: "s3://bucket/migrations") }
        #expect(e?.message.contains("no source driver is registered for 's3://'") == true, "\(String(describing: e))")
    }
}
