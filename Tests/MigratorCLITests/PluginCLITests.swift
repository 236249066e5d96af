import Foundation
import TestSupport
import Testing

/// A fresh migrations directory holding both example plugins, built the
/// way users build them: the package's Swift product and the C source.
func exampleMigrationsDirectory() throws -> String {
    let dir = Fixtures.temporaryDirectory("examples")
    try FileManager.default.copyItem(
        atPath: Fixtures.productsDirectory + "/libExampleMigrations.so",
        toPath: dir + "/example_swift_migrations.so")
    chmod(dir + "/example_swift_migrations.so", 0o644)
    let c = try String(
        contentsOfFile: Fixtures.packageRoot + "/Plugins-Examples/c-plugin/user_settings.c", encoding: .utf8)
    try Fixtures.compilePlugin(c, name: "example_c_migrations.so", in: dir, extraFlags: ["-fvisibility=hidden"])
    return dir
}

@Suite("migrator list and header (end to end)")
struct PluginCLITests {
    @Test func listsTheExamplePlugins() throws {
        let dir = try exampleMigrationsDirectory()
        defer { Fixtures.removeTree(dir) }
        let r = try migrator(["list", "--dir", dir])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("ID") == true)
        let ids = lines.dropFirst().compactMap { $0.split(separator: " ").first.map(String.init) }.filter {
            $0.contains("_")
        }
        #expect(
            ids == [
                "001_initial_setup", "002_user_preferences", "003_document_analysis_enhancement", "004_user_settings",
                "005_drop_legacy_tags",
            ])
        #expect(r.stdout.contains("5 migration(s) in 2 plugin(s)"))
        let irreversible = lines.first { $0.hasPrefix("005_drop_legacy_tags") } ?? ""
        #expect(irreversible.contains(" no "))

        // The same through MIGRATOR_DIR, as JSON.
        let j = try migrator(["list", "--json"], environment: ["MIGRATOR_DIR": dir])
        #expect(j.status == 0)
        let doc = try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any]
        let migrations = doc?["migrations"] as? [[String: Any]] ?? []
        #expect(migrations.map { $0["id"] as? String ?? "" } == ids)
        #expect(migrations.last?["reversible"] as? Bool == false)
        #expect(migrations.first?["plugin"] as? String == "example_swift_migrations.so")
        #expect(migrations.first?["state"] == nil, "no state without --db")
        let plugins = doc?["plugins"] as? [[String: Any]] ?? []
        #expect(plugins.map { ($0["sha256"] as? String)?.count ?? 0 } == [64, 64])
    }

    @Test func brokenPluginsAreNamedAndFailTheCommand() throws {
        let dir = try exampleMigrationsDirectory()
        defer { Fixtures.removeTree(dir) }
        try "not a library".write(toFile: dir + "/broken.so", atomically: true, encoding: .utf8)
        let r = try migrator(["list", "--dir", dir])
        #expect(r.status == 1)
        #expect(r.stderr.contains("broken.so") && r.stderr.contains("not an ELF file"), "\(r.stderr)")
        #expect(r.stdout.contains("004_user_settings"), "good plugins are still listed")
        let missing = try migrator(["list", "--dir", dir + "/nope"])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("does not exist"))
    }

    @Test func headerPrintsTheABI() throws {
        let r = try migrator(["header"])
        #expect(r.status == 0)
        let file = try String(contentsOfFile: Fixtures.includeDirectory + "/migrator_plugin.h", encoding: .utf8)
        #expect(r.stdout == file)
        let help = try migrator(["list", "--help"])
        #expect(help.status == 0 && help.stdout.contains("--dir DIR"))
    }
}
