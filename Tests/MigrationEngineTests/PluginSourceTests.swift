import Foundation
import MigrationEngine
import Synchronization
import TestSupport
import Testing

/// A second source, as a test double: `memory://NAME` yields images held
/// in memory (here compiled by the test, then read into bytes), each made
/// through the one initializer that checks it. It touches nothing but its
/// own code and one registration line.
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
                let file = try CheckedPluginFile(
                    checking: bytes, name: name, path: path, key: path, origin: "/nonexistent", policy: policy,
                    warnings: &scan.warnings)
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

    @Test("trusted keys and required pins hold for every source: unsigned, unpinned images are refused")
    func theLoaderPolicyHoldsForEverySource() throws {
        PluginSources.register(MemorySourceDriver())
        let dir = Fixtures.temporaryDirectory("memory-policy")
        defer { Fixtures.removeTree(dir) }
        let path = try Fixtures.compilePlugin(
            Fixtures.stepPlugin("001_unsigned", up: "return MIGRATOR_OK;"), name: "a.so", in: dir)
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        MemorySourceDriver.sets.withLock { $0["policy"] = [("a.so", bytes)] }
        let keys = dir + "/keys"
        #expect(mkdir(keys, 0o700) == 0)
        _ = try Migrator.generateSigningKey(at: keys + "/release")
        var signed = PluginLoader.Options()
        signed.trustedKeysDirectory = keys
        let m = Migrator(databasePath: dir + "/db")
        let set = try m.loadPlugins(from: "memory://policy", options: signed)
        #expect(set.migrations.isEmpty)
        #expect(set.problems.map(\.code) == [.untrustedPlugin], "\(set.problems)")
        var pinned = PluginLoader.Options()
        pinned.requirePin = true
        let unpinned = try Migrator(databasePath: dir + "/db").loadPlugins(from: "memory://policy", options: pinned)
        #expect(unpinned.problems.map(\.code) == [.notPinned], "\(unpinned.problems)")
    }

    @Test("a scheme without a source driver is refused, naming it")
    func anUnknownSourceIsRefused() throws {
        let m = Migrator(databasePath: Fixtures.temporaryDirectory("nosource") + "/db")
        let e = #expect(throws: MigratorError.self) { try m.loadPlugins(from: "s3://bucket/migrations") }
        #expect(e?.message.contains("no source driver is registered for 's3://'") == true, "\(String(describing: e))")
    }
}
