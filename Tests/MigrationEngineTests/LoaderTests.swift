import Foundation
import MigrationKit
import MigratorPluginABI
import TestSupport
import Testing

@testable import MigrationEngine

#if canImport(Glibc)
import Glibc
#endif

@Suite struct LoaderTests {
    // MARK: Good plugins

    @Test func loadsACPluginAndOrdersByNumber() throws {
        let dir = try pluginDirectory([
            (
                "a.so",
                Fixtures.pluginSource(migrations: [
                    Fixtures.migration("10_tenth", checksum: "\"c10\""), Fixtures.migration("9_ninth", down: "NULL"),
                ])
            ),
            ("b.so", Fixtures.pluginSource(migrations: [Fixtures.migration("0011_eleventh")])),
        ])
        defer { Fixtures.removeTree(dir) }
        let set = loadPlugins(dir)
        #expect(set.problems.isEmpty, "\(set.problems)")
        #expect(set.migrations.map(\.id) == ["9_ninth", "10_tenth", "0011_eleventh"])
        #expect(set.migrations.map(\.isReversible) == [false, true, true])
        #expect(set.plugins.map(\.file) == ["a.so", "b.so"])
        guard set.migrations.count == 3, let a = set.plugins.first else { return }
        #expect(set.migrations[1].checksum == "c10")
        #expect(set.migrations[0].origin == .plugin(file: "a.so", sha256: a.sha256))
        #expect(a.toolchain == nil)
        // The recorded hash is the file's SHA-256.
        let sum = try Fixtures.run("/usr/bin/sha256sum", [dir + "/a.so"]).output.prefix(64)
        #expect(a.sha256 == String(sum))
    }

    @Test func loadsTheExampleSwiftPlugin() throws {
        let built = Fixtures.productsDirectory + "/libExampleMigrations.so"
        let dir = Fixtures.temporaryDirectory("swift-plugin")
        defer { Fixtures.removeTree(dir) }
        try FileManager.default.copyItem(atPath: built, toPath: dir + "/examples.so")
        let set = loadPlugins(dir)
        #expect(set.problems.isEmpty, "\(set.problems)")
        #expect(
            set.migrations.map(\.id) == [
                "001_initial_setup", "002_user_preferences", "003_document_analysis_enhancement",
            ])
        #expect(set.migrations.filter(\.isReversible).count == 3)
        #expect(set.plugins.first?.toolchain == SwiftToolchain.current)
        #expect(set.plugins.first?.name == "example-swift-migrations")
        // Only the entry symbol is exported.
        let nm = try Fixtures.run("/usr/bin/nm", ["-D", "--defined-only", "--extern-only", built]).output
        #expect(
            nm.split(separator: "\n").map { String($0.split(separator: " ").last ?? "") } == [
                "migrator_plugin_entry_v1"
            ])
    }

    @Test func skipsAndReportsOtherFiles() throws {
        let dir = try pluginDirectory([("ok.so", Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")]))])
        defer { Fixtures.removeTree(dir) }
        try "notes".write(toFile: dir + "/README.md", atomically: true, encoding: .utf8)
        let set = loadPlugins(dir)
        #expect(set.problems.isEmpty)
        #expect(set.migrations.count == 1)
        #expect(set.warnings.contains { $0.contains("README.md") && $0.contains("not a .so file") })
    }

    // MARK: Each broken plugin gets its own error

    func problem(_ source: String, name: String = "bad.so") throws -> MigratorError? {
        let dir = try pluginDirectory([(name, source)])
        defer { Fixtures.removeTree(dir) }
        let set = loadPlugins(dir)
        #expect(set.problems.count == 1, "\(set.problems)")
        #expect(set.migrations.isEmpty)
        let p = set.problems.first
        #expect(p?.file == name)
        #expect(p?.message.contains(name) == true, "message must name the file: \(p?.message ?? "")")
        return p
    }

    @Test func missingEntrySymbol() throws {
        let p = try problem(Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")], entry: false))
        #expect(p?.code == .noEntrySymbol)
        #expect(p?.message.contains("migrator_plugin_entry_v1") == true)
    }

    @Test func wrongMajorVersion() throws {
        let p = try problem(
            Fixtures.pluginSource(
                migrations: [Fixtures.migration("001_a")],
                bundle: "{ 2, 5, sizeof(migrator_plugin_v1), \"future\", NULL, 1, migrations }"))
        #expect(p?.code == .abiMismatch)
        #expect(
            p?.message.contains("ABI 2.5") == true && p?.message.contains("it is 1.1") == true, "\(p?.message ?? "")")
    }

    @Test func structSizeTooSmall() throws {
        let p = try problem(
            Fixtures.pluginSource(
                migrations: [Fixtures.migration("001_a")],
                bundle: "{ MIGRATOR_ABI_MAJOR, 0, 24, \"small\", NULL, 1, migrations }"))
        #expect(p?.code == .invalidDescriptor)
        #expect(p?.message.contains("struct_size is 24") == true)
    }

    @Test func nullID() throws {
        let p = try problem(Fixtures.pluginSource(migrations: [Fixtures.migration("NULL")]))
        #expect(p?.code == .invalidDescriptor)
        #expect(p?.message.contains("the id of migration #0 is NULL") == true, "\(p?.message ?? "")")
    }

    @Test func badIDFormat() throws {
        for (id, why) in [
            ("1-bad", "followed by '_'"), ("abc_x", "start with digits"), ("001_Upper", "not 'U'"), ("001_", "no name"),
        ] {
            let p = try problem(Fixtures.pluginSource(migrations: [Fixtures.migration(id)]))
            #expect(p?.code == .invalidID)
            #expect(p?.migrationID == id)
            #expect(p?.message.contains(why) == true, "\(id): \(p?.message ?? "")")
        }
    }

    @Test func nullUpAndNullStrings() throws {
        let p = try problem(Fixtures.pluginSource(migrations: [Fixtures.migration("001_a", up: "NULL")]))
        #expect(p?.message.contains("no up function") == true)
        let q = try problem(Fixtures.pluginSource(migrations: [Fixtures.migration("001_a", name: "NULL")]))
        #expect(q?.message.contains("the name of migration '001_a' is NULL") == true, "\(q?.message ?? "")")
    }

    @Test func emptyVersionIsRefused() throws {
        let p = try problem(
            Fixtures.pluginSource(migrations: [#"{ "001_a", "A", "d", "", NULL, ok_step, ok_step, NULL }"#]))
        #expect(p?.code == .invalidDescriptor && p?.migrationID == "001_a")
        #expect(p?.message.contains("the version of migration '001_a' is empty") == true, "\(p?.message ?? "")")
    }

    @Test func nonUTF8AndHugeStrings() throws {
        let p = try problem(Fixtures.pluginSource(migrations: [Fixtures.migration("001_a", name: "\"caf\\xe9\"")]))
        #expect(p?.message.contains("not valid UTF-8") == true, "\(p?.message ?? "")")
        let long = String(repeating: "x", count: 10_000)
        let q = try problem(Fixtures.pluginSource(migrations: [Fixtures.migration("001_" + long)]))
        #expect(q?.message.contains("longer than") == true, "\(q?.message.prefix(200) ?? "")")
    }

    @Test func absurdMigrationCount() throws {
        let p = try problem(
            Fixtures.pluginSource(
                migrations: [],
                bundle: "{ MIGRATOR_ABI_MAJOR, 0, sizeof(migrator_plugin_v1), \"liar\", NULL, 1000000, NULL }"))
        #expect(p?.code == .invalidDescriptor)
        #expect(p?.message.contains("1000000 migrations") == true)
        let q = try problem(
            Fixtures.pluginSource(
                migrations: [],
                bundle: "{ MIGRATOR_ABI_MAJOR, 0, sizeof(migrator_plugin_v1), \"liar\", NULL, 3, NULL }"))
        #expect(q?.message.contains("array is NULL") == true)
    }

    @Test func foreignSwiftToolchainWarnsOrFails() throws {
        let source = Fixtures.pluginSource(
            migrations: [Fixtures.migration("001_a")],
            bundle: "{ MIGRATOR_ABI_MAJOR, 0, sizeof(migrator_plugin_v1), \"old\", \"swift-5.9\", 1, migrations }")
        let dir = try pluginDirectory([("old.so", source)])
        defer { Fixtures.removeTree(dir) }
        let loose = loadPlugins(dir)
        #expect(loose.problems.isEmpty && loose.migrations.count == 1)
        #expect(
            loose.warnings.contains {
                $0.contains("old.so") && $0.contains("swift-5.9") && $0.contains(SwiftToolchain.current)
            })
        let strict = loadPlugins(dir, options: .init(strictToolchain: true))
        #expect(strict.problems.map(\.code) == [.toolchainMismatch])
    }

    @Test func entryReturningNull() throws {
        let p = try problem(
            """
            #include "migrator_plugin.h"
            const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return NULL; }
            """)
        #expect(p?.message.contains("returned NULL") == true)
    }

    @Test func duplicateIDWithinAFile() throws {
        let p = try problem(
            Fixtures.pluginSource(migrations: [Fixtures.migration("001_a"), Fixtures.migration("001_a")]))
        #expect(p?.code == .duplicateID)
        #expect(p?.message.contains("appears twice in this file") == true)
    }

    @Test func duplicateIDAcrossFiles() throws {
        let dir = try pluginDirectory([
            ("one.so", Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")])),
            ("two.so", Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")])),
        ])
        defer { Fixtures.removeTree(dir) }
        var catalog = MigrationCatalog()
        catalog.setPlugins(loadPlugins(dir))
        #expect(catalog.problems.map(\.code) == [.duplicateID], "reported once, by the catalog")
        #expect(
            catalog.problems.first?.message.contains("one.so") == true
                && catalog.problems.first?.message.contains("two.so") == true)
        #expect(catalog.migrations.map(\.id) == ["001_a"])
    }

    @Test func duplicateSequenceAcrossFiles() throws {
        let dir = try pluginDirectory([
            ("one.so", Fixtures.pluginSource(migrations: [Fixtures.migration("002_users")])),
            ("two.so", Fixtures.pluginSource(migrations: [Fixtures.migration("2_orders")])),
        ])
        defer { Fixtures.removeTree(dir) }
        var catalog = MigrationCatalog()
        catalog.setPlugins(loadPlugins(dir))
        #expect(catalog.problems.map(\.code) == [.duplicateSequence], "reported once, by the catalog")
        let m = catalog.problems.first?.message ?? ""
        #expect(
            m.contains("002_users") && m.contains("2_orders") && m.contains("one.so") && m.contains("two.so"), "\(m)")
    }

    @Test func unresolvedExternalSymbol() throws {
        let p = try problem(
            Fixtures.pluginSource(
                migrations: [Fixtures.migration("001_a", up: "calls_missing")],
                prelude: """
                    extern int no_such_function_anywhere(void);
                    static migrator_status calls_missing(const migrator_host_v1 *h, migrator_txn *t, void *u) {
                        (void)h; (void)t; (void)u; return no_such_function_anywhere();
                    }
                    """))
        #expect(p?.code == .loadFailed)
        #expect(p?.message.contains("undefined symbol: no_such_function_anywhere") == true, "\(p?.message ?? "")")
    }

    // MARK: Files that are not loadable ELF

    func fileProblem(_ write: (String) throws -> Void, name: String = "bad.so") throws -> MigratorError? {
        let dir = Fixtures.temporaryDirectory("files")
        defer { Fixtures.removeTree(dir) }
        try write(dir + "/" + name)
        let set = loadPlugins(dir)
        #expect(set.problems.count == 1)
        #expect(set.problems.first?.message.contains(name) == true)
        return set.problems.first
    }

    @Test func emptyFile() throws {
        let p = try fileProblem { try Data().write(to: URL(fileURLWithPath: $0)) }
        #expect(p?.code == .invalidELF)
        #expect(p?.message.contains("empty") == true)
    }

    @Test func textFile() throws {
        let p = try fileProblem { try "#!/bin/sh\necho hi\n".write(toFile: $0, atomically: true, encoding: .utf8) }
        #expect(p?.code == .invalidELF)
        #expect(p?.message.contains("not an ELF file") == true)
    }

    @Test func truncatedELF() throws {
        let p = try fileProblem { path in
            let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
            let full = try Fixtures.compilePlugin(
                Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")]), name: "full.tmp", in: dir)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: full))
            unlink(full)
            try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
        }
        #expect(p?.code == .invalidELF)
        #expect(p?.message.contains("truncated ELF") == true, "\(p?.message ?? "")")
    }

    @Test func foreignArchitecture() throws {
        let p = try fileProblem { path in
            let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
            let full = try Fixtures.compilePlugin(
                Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")]), name: "full.tmp", in: dir)
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: full)))
            unlink(full)
            bytes[18] = 243
            bytes[19] = 0  // e_machine: RISC-V
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        }
        #expect(p?.code == .invalidELF)
        #expect(p?.message.contains("built for RISC-V") == true)
    }

    @Test func directoryNamedSo() throws {
        let p = try fileProblem {
            try FileManager.default.createDirectory(atPath: $0, withIntermediateDirectories: false)
        }
        #expect(p?.code == .notAPlugin)
        #expect(p?.message.contains("is a directory") == true)
    }

    @Test func symlinks() throws {
        let outside = Fixtures.temporaryDirectory("outside")
        defer { Fixtures.removeTree(outside) }
        let target = try Fixtures.compilePlugin(
            Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")]), name: "real.so", in: outside)
        let p = try fileProblem { symlink(target, $0) }
        #expect(p?.code == .notAPlugin)
        #expect(p?.message.contains("outside the migrations directory") == true)
        // A link that stays inside is followed.
        let dir = try pluginDirectory([
            ("real.bin.so", Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")]))
        ])
        defer { Fixtures.removeTree(dir) }
        let sub = dir + "/sub"
        mkdir(sub, 0o700)
        try FileManager.default.moveItem(atPath: dir + "/real.bin.so", toPath: sub + "/real")
        symlink("sub/real", dir + "/linked.so")
        let set = loadPlugins(dir)
        #expect(set.problems.isEmpty, "\(set.problems)")
        #expect(set.migrations.map(\.origin.label) == ["linked.so"])
    }

    // MARK: Permissions (sshd StrictModes)

    @Test func groupWritableFileIsRefusedUnlessInsecure() throws {
        let dir = try pluginDirectory([("gw.so", Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")]))])
        defer { Fixtures.removeTree(dir) }
        chmod(dir + "/gw.so", 0o664)
        let set = loadPlugins(dir)
        #expect(set.problems.map(\.code) == [.insecurePermissions])
        #expect(
            set.problems.first?.message.contains("gw.so") == true
                && set.problems.first?.message.contains("group") == true)
        let loose = loadPlugins(dir, options: .init(insecure: true))
        #expect(loose.problems.isEmpty)
        #expect(loose.migrations.count == 1)
        #expect(loose.warnings.contains { $0.contains("loaded anyway: the insecure option is set") })
    }

    @Test func worldWritableDirectoryIsRefused() throws {
        let dir = try pluginDirectory([("ok.so", Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")]))])
        defer { Fixtures.removeTree(dir) }
        chmod(dir, 0o777)
        let e = #expect(throws: MigratorError.self) { try PluginLoader.load(directory: dir) }
        #expect(e?.code == .insecurePermissions)
        #expect(e?.message.contains("everyone") == true)
    }

    @Test func missingDirectory() throws {
        do {
            _ = try PluginLoader.load(directory: "/nonexistent/migrations")
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .directoryNotFound)
            #expect(error.message.contains("/nonexistent/migrations"))
        }
    }

    /// As sshd does: a folder inside a directory others can write is refused,
    /// and so is a symlink into a subdirectory others can write.
    @Test func writableAncestorsAndSubdirectoriesAreRefused() throws {
        let root = Fixtures.temporaryDirectory("ancestors")
        defer { Fixtures.removeTree(root) }
        let open = root + "/open"
        mkdir(open, 0o755)
        chmod(open, 0o777)
        let dir = try pluginDirectory([("ok.so", Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")]))])
        defer { Fixtures.removeTree(dir) }
        let inside = open + "/migrations"
        #expect(rename(dir, inside) == 0)
        let e = #expect(throws: MigratorError.self) { try PluginLoader.load(directory: inside) }
        #expect(
            e?.code == .insecurePermissions && e?.message.contains("'\(open)', which is writable by everyone") == true)
        #expect((try? PluginLoader.load(directory: inside, options: .init(insecure: true)))?.warnings.isEmpty == false)
        // A sticky world-writable directory (like /tmp) is fine.
        chmod(open, 0o1777)
        #expect(loadPlugins(inside).problems.isEmpty)
        // A symlink into a subdirectory others can write.
        chmod(open, 0o755)
        let sub = inside + "/sub"
        mkdir(sub, 0o777)
        chmod(sub, 0o777)
        #expect(rename(inside + "/ok.so", sub + "/real.so") == 0)
        #expect(symlink("sub/real.so", inside + "/legit.so") == 0)
        let set = loadPlugins(inside)
        #expect(set.problems.map(\.code) == [.insecurePermissions])
        #expect(set.problems.first?.message.contains("links into '\(sub)'") == true, "\(set.problems)")
        chmod(sub, 0o755)
        #expect(loadPlugins(inside).problems.isEmpty)
    }

    /// A helper library beside the plugin, found through `$ORIGIN`, is not
    /// part of what was checked: it is never loaded (its constructor never
    /// runs), and the plugin fails to load with a message naming it.
    @Test func aHelperBesideThePluginIsNeverLoaded() throws {
        let dir = Fixtures.temporaryDirectory("origin")
        defer { Fixtures.removeTree(dir) }
        let marker = dir + "/helper-ran"
        let libs = Fixtures.temporaryDirectory("helperlib")
        defer { Fixtures.removeTree(libs) }
        try Fixtures.compilePlugin(
            """
            #include <stdio.h>
            __attribute__((constructor)) static void ran(void) { FILE *f = fopen("\(marker)", "w"); if (f) fclose(f); }
            int helper_value(void) { return 7; }
            """, name: "libhelper.so.1", in: libs, extraFlags: ["-Wl,-soname,libhelper.so.1"])
        symlink(libs + "/libhelper.so.1", libs + "/libhelper.so")
        let source = Fixtures.pluginSource(
            migrations: [Fixtures.migration("001_a", up: "uses_helper")],
            prelude: """
                int helper_value(void);
                static migrator_status uses_helper(const migrator_host_v1 *h, migrator_txn *t, void *u) {
                    (void)h; (void)t; (void)u; return helper_value() == 7 ? MIGRATOR_OK : MIGRATOR_ERROR; }
                """)
        try Fixtures.compilePlugin(
            source, name: "p.so", in: dir, extraFlags: ["-L", libs, "-lhelper", "-Wl,-rpath,$ORIGIN"])
        // The helper sits beside the plugin, as an attacker (or a careless build) would put it.
        #expect(rename(libs + "/libhelper.so.1", dir + "/libhelper.so.1") == 0)
        chmod(dir + "/libhelper.so.1", 0o666)
        let set = loadPlugins(dir)
        #expect(set.problems.map(\.code) == [.loadFailed], "\(set.problems)")
        #expect(set.problems.first?.message.contains("libhelper.so.1") == true, "\(set.problems)")
        #expect(access(marker, F_OK) != 0, "the helper's constructor ran")
    }

    /// A RUNPATH directory others can write would let them replace a
    /// library the plugin loads: refused, naming the plugin and directory.
    /// (The plugin needs libanl.so.1, which the test process has not
    /// loaded, so the dynamic loader would search the directory.)
    @Test func aRunpathOthersCanWriteIsRefused() throws {
        let dir = try pluginDirectory([])
        defer { Fixtures.removeTree(dir) }
        let open = Fixtures.temporaryDirectory("openlibs", mode: 0o777)
        defer { Fixtures.removeTree(open) }
        try Fixtures.compilePlugin(
            Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")]), name: "p.so", in: dir,
            extraFlags: Self.needsUnloadedLibrary + ["-Wl,-rpath,\(open)"])
        let set = loadPlugins(dir)
        #expect(set.problems.map(\.code) == [.unsafeLibraryPath])
        #expect(
            set.problems.first?.message.contains("its RUNPATH directory '\(open)' is writable by everyone") == true,
            "\(set.problems)")
        try Fixtures.compilePlugin(
            Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")]), name: "p.so", in: dir,
            extraFlags: Self.needsUnloadedLibrary + ["-Wl,-rpath,relative/libs"])
        #expect(loadPlugins(dir).problems.first?.message.contains("relative directory 'relative/libs'") == true)
    }

    /// Links libanl.so.1 (a glibc stub no test loads into this process), so
    /// that loading the plugin would search its RUNPATH.
    static let needsUnloadedLibrary = ["-Wl,--no-as-needed", "-lanl"]

    /// The loader's verdict on a plugin with `runpath` that needs libc and
    /// libanl, when the loading process already has `loaded`. Judged on the
    /// bytes alone: nothing is loaded into this (shared) test process.
    /// `@DIR` in `runpath` stands for the plugin's (migrations) folder.
    static func runpathVerdict(
        _ runpath: String, loaded: Set<String> = ["libc.so.6"], linking: [String] = needsUnloadedLibrary
    ) throws -> String? {
        let dir = Fixtures.temporaryDirectory("runpath")
        defer { Fixtures.removeTree(dir) }
        let runpath = runpath.replacing("@DIR", with: dir)
        try Fixtures.compilePlugin(
            Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")]), name: "p.so", in: dir,
            extraFlags: linking + ["-Wl,-rpath,\(runpath)"])
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/p.so")))
        let dependencies = try ELFDependencies(bytes)
        #expect(dependencies.searchPaths.joined(separator: ":") == runpath)
        #expect(dependencies.needed.contains("libanl.so.1"), "\(dependencies.needed)")
        return dependencies.problem(migrationsDirectory: dir, loaded: loaded)
    }

    /// A RUNPATH that only serves libraries already loaded (the Swift
    /// runtime that migrator brought, for a Swift plugin on a server) is
    /// never searched: a writable or missing directory there does not matter.
    @Test func aRunpathOnlyForLoadedLibrariesIsNeverSearched() throws {
        let open = Fixtures.temporaryDirectory("openlibs", mode: 0o777)
        defer { Fixtures.removeTree(open) }
        let everything: Set<String> = ["libc.so.6", "libanl.so.1"]
        #expect(try Self.runpathVerdict(open)?.contains("writable by everyone") == true)
        #expect(try Self.runpathVerdict(open, loaded: everything) == nil)
        #expect(try Self.runpathVerdict("/tmp/no-such-toolchain/usr/lib/swift/linux", loaded: everything) == nil)
        // What this process has loaded, as dl_iterate_phdr reports it.
        #expect(LoadedLibraries.current().isSuperset(of: ["libc.so.6", "libswiftCore.so"]))
    }

    /// A RUNPATH directory that does not exist (a build machine's toolchain)
    /// is judged by its nearest existing ancestor: under one that only its
    /// owner can write, nobody else can create it; under a directory others
    /// can write, sticky `/tmp` included, it is refused.
    @Test func aMissingRunpathDirectoryIsJudgedByItsNearestAncestor() throws {
        let closed = Fixtures.temporaryDirectory("closedlibs", mode: 0o755)
        defer { Fixtures.removeTree(closed) }
        let open = Fixtures.temporaryDirectory("openlibs", mode: 0o777)
        defer { Fixtures.removeTree(open) }
        #expect(try Self.runpathVerdict(closed + "/toolchain/usr/lib/swift/linux") == nil)
        let missing = open + "/toolchain/usr/lib"
        let unsafe = try Self.runpathVerdict(missing)
        #expect(
            unsafe?.contains(
                "its RUNPATH directory '\(missing)' does not exist, and '\(open)' is writable by everyone (mode 777): "
                    + "someone else could create it") == true, "\(unsafe ?? "accepted")")
        let underTmp = "/tmp/migrator-no-such-dir-\(getpid())/lib"
        let sticky = try Self.runpathVerdict(underTmp)
        #expect(
            sticky?.contains("'\(underTmp)' does not exist, and '/tmp' is writable by everyone") == true,
            "\(sticky ?? "accepted")")
    }

    /// `$ORIGIN` alone is passed over (under memfd loading it is
    /// `/proc/self/fd`); anything built on it is resolved and checked like
    /// an absolute entry, and `$LIB`/`$PLATFORM` are refused.
    @Test func originBasedRunpathsAreResolvedAndChecked() throws {
        let open = Fixtures.temporaryDirectory("openlibs", mode: 0o777)
        defer { Fixtures.removeTree(open) }
        #expect(try Self.runpathVerdict("$ORIGIN") == nil)
        #expect(try Self.runpathVerdict("${ORIGIN}") == nil)
        // /proc/self/fd/../root/<open> is <open>: the same folder, written another way.
        let escaped = try Self.runpathVerdict("$ORIGIN/../root" + open)
        #expect(escaped?.contains("is writable by everyone") == true, "\(escaped ?? "accepted")")
        #expect(try Self.runpathVerdict("/usr/$LIB")?.contains("uses a substitution") == true)
        #expect(try Self.runpathVerdict("${PLATFORM}/lib")?.contains("uses a substitution") == true)
        // glibc's matching: $ORIGINX is another (unknown) token, not $ORIGIN followed by X.
        #expect(try Self.runpathVerdict("$ORIGINX/lib")?.contains("uses a substitution") == true)
        #expect(try Self.runpathVerdict("$ORIGIN_lib")?.contains("uses a substitution") == true)
        // Below /proc/self/fd is a descriptor: any directory the process has open.
        for through in ["$ORIGIN/3", "$ORIGIN/5/..", "${ORIGIN}/./7/lib"] {
            let verdict = try Self.runpathVerdict(through)
            #expect(
                verdict?.contains("a descriptor of the loading process") == true, "\(through): \(verdict ?? "accepted")"
            )
        }
        #expect(try Self.runpathVerdict("$ORIGIN/") == nil)
    }

    /// An empty element (`a::b`, or a leading or trailing colon) is the
    /// current directory to the dynamic loader.
    @Test func anEmptyRunpathElementIsRefused() throws {
        for runpath in ["/usr/lib:", ":/usr/lib", "/usr/lib::/lib"] {
            let verdict = try Self.runpathVerdict(runpath)
            #expect(verdict?.contains("empty entry") == true, "\(runpath): \(verdict ?? "accepted")")
        }
    }

    /// Filtees (DT_FILTER, DT_AUXILIARY) are looked up through the RUNPATH
    /// like needed libraries, so they count as needed.
    @Test func filterLibrariesCountAsNeeded() throws {
        let open = Fixtures.temporaryDirectory("openlibs", mode: 0o777)
        defer { Fixtures.removeTree(open) }
        for flag in ["-Wl,--filter=libanl.so.1", "-Wl,--auxiliary=libanl.so.1"] {
            let verdict = try Self.runpathVerdict(open, linking: [flag])
            #expect(verdict?.contains("is writable by everyone") == true, "\(flag): \(verdict ?? "accepted")")
        }
    }

    /// The nearest existing entry above a missing RUNPATH directory may be a
    /// symbolic link (judged where it leads, refused if it leads nowhere) or
    /// a file (someone who can write its folder can replace it with a
    /// directory); a missing directory inside the migrations folder is
    /// refused like an existing one.
    @Test func aMissingRunpathDirectoryBehindALinkOrAFile() throws {
        let closed = Fixtures.temporaryDirectory("closedlibs", mode: 0o755)
        defer { Fixtures.removeTree(closed) }
        let open = Fixtures.temporaryDirectory("openlibs", mode: 0o777)
        defer { Fixtures.removeTree(open) }
        #expect(symlink("/tmp/migrator-nowhere-\(getpid())", closed + "/dangling") == 0)
        #expect(symlink(open, closed + "/toopen") == 0)
        #expect(FileManager.default.createFile(atPath: closed + "/file", contents: Data()))
        #expect(FileManager.default.createFile(atPath: open + "/file", contents: Data()))
        let dangling = try Self.runpathVerdict(closed + "/dangling/lib")
        #expect(dangling?.contains("is a symbolic link that leads nowhere") == true, "\(dangling ?? "accepted")")
        let linked = try Self.runpathVerdict(closed + "/toopen/lib")
        #expect(linked?.contains("and '\(open)' is writable by everyone") == true, "\(linked ?? "accepted")")
        #expect(try Self.runpathVerdict(closed + "/file/lib") == nil)
        let file = try Self.runpathVerdict(open + "/file/lib")
        #expect(
            file?.contains("it would be inside '\(open)', which is writable by everyone") == true,
            "\(file ?? "accepted")")
        let inside = try Self.runpathVerdict("@DIR/libs")
        #expect(inside?.contains("would be inside the migrations folder") == true, "\(inside ?? "accepted")")
    }

    /// A dynamic section the checks cannot read (here a string table at an
    /// address no segment maps) is refused as an invalid ELF file: what the
    /// plugin would load cannot be known.
    @Test func anUnreadableDynamicSectionIsRefused() throws {
        let dir = try pluginDirectory([])
        defer { Fixtures.removeTree(dir) }
        try Fixtures.compilePlugin(
            Fixtures.pluginSource(migrations: [Fixtures.migration("001_a")]), name: "p.so", in: dir,
            extraFlags: Self.needsUnloadedLibrary)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/p.so")))
        #expect(Self.patchDynamicEntry(&bytes, tag: 5, value: 0x7fff_0000_0000))  // DT_STRTAB
        #expect(throws: ELFDependencies.Malformed.self) { try ELFDependencies(bytes) }
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/p.so"))
        let set = loadPlugins(dir)
        #expect(set.problems.map(\.code) == [.invalidELF], "\(set.problems)")
        #expect(set.problems.first?.message.contains("no readable string table") == true, "\(set.problems)")
    }

    /// Sets the value of the first dynamic entry with `tag`; false if none.
    static func patchDynamicEntry(_ bytes: inout [UInt8], tag: UInt64, value: UInt64) -> Bool {
        func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[o + $1]) << (8 * UInt64($1)) } }
        let phoff = Int(u64(32))
        let phnum = Int(bytes[56]) | Int(bytes[57]) << 8
        for i in 0..<phnum where bytes[phoff + i * 56] == 2 {  // PT_DYNAMIC
            var at = Int(u64(phoff + i * 56 + 8))
            while u64(at) != 0 {
                if u64(at) == tag {
                    for b in 0..<8 { bytes[at + 8 + b] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(b))) }
                    return true
                }
                at += 16
            }
            return false
        }
        return false
    }
}
