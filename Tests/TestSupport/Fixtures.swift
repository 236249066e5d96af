import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Helpers shared by the test targets: temporary directories, the package
/// root, and C fixture plugins compiled on the fly.
public enum Fixtures {
    /// The package root, found from this file's path (only for sources and
    /// headers; built products are found next to the test bundle).
    public static let packageRoot: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }()

    /// The folder holding migrator_plugin.h.
    public static var includeDirectory: String { packageRoot + "/Sources/MigratorPluginABI/include" }

    /// The folder holding the test bundle and the package's built products.
    public static let productsDirectory: String = {
        let exe =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().path
    }()

    /// A fresh directory under /tmp, mode 0700 unless `mode` says otherwise.
    public static func temporaryDirectory(_ tag: String = "test", mode: mode_t = 0o700) -> String {
        var template = Array("/tmp/migrator-\(tag)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) != nil }
        precondition(made, "mkdtemp failed in /tmp: \(String(cString: strerror(errno)))")  // the test machine is broken
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if mode != 0o700 { chmod(path, mode) }
        return path
    }

    public static func removeTree(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// The first of `names` found on PATH.
    public static func tool(_ names: [String], fallback: String) -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"
        for dir in path.split(separator: ":") {
            for name in names where access("\(dir)/\(name)", X_OK) == 0 { return "\(dir)/\(name)" }
        }
        return fallback
    }

    /// A C compiler: clang (the Swift toolchain ships one), else cc.
    public static let cCompiler = tool(["clang", "cc"], fallback: "/opt/swift/usr/bin/clang")

    /// Runs a program and returns its exit status and combined output.
    @discardableResult
    public static func run(
        _ program: String, _ args: [String], environment: [String: String] = [:]
    ) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: program)
        p.arguments = args
        if !environment.isEmpty {
            p.environment = ProcessInfo.processInfo.environment.merging(environment, uniquingKeysWith: { $1 })
        }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Type-checks a Swift migration source against the built MigrationKit.
    public static func typecheckSwift(_ path: String) throws -> (status: Int32, output: String) {
        let modules = productsDirectory + "/Modules"
        let abiMap = productsDirectory + "/MigratorPluginABI.build/module.modulemap"
        let swiftc = tool(["swiftc"], fallback: "/opt/swift/usr/bin/swiftc")
        return try run(
            swiftc,
            [
                "-typecheck", "-swift-version", "6", "-I", modules, "-Xcc", "-fmodule-map-file=\(abiMap)",
                "-Xcc", "-I", "-Xcc", includeDirectory, path,
            ])
    }

    public struct CompileError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Compiles `source` into `directory/name` as a shared library
    /// (`clang -shared -fPIC`), mode 0644.
    @discardableResult
    public static func compilePlugin(
        _ source: String, name: String, in directory: String, extraFlags: [String] = [], include: String? = nil
    ) throws -> String {
        let src = directory + "/.src-\(name).c"
        try source.write(toFile: src, atomically: true, encoding: .utf8)
        defer { unlink(src) }
        let out = directory + "/" + name
        let r = try run(
            cCompiler,
            [
                "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-Wno-unused-function",
                "-I", include ?? includeDirectory, "-o", out, src,
            ] + extraFlags)
        guard r.status == 0 else { throw CompileError(description: "compiling \(name) failed:\n\(r.output)") }
        chmod(out, 0o644)
        return out
    }

    /// C source of a plugin bundle. `migrations` are C initializers, e.g.
    /// from ``migration(_:)``; `bundle` overrides the bundle initializer.
    public static func pluginSource(
        migrations: [String], prelude: String = "", bundle: String? = nil, entry: Bool = true
    ) -> String {
        let list = migrations.isEmpty ? "{0}" : migrations.joined(separator: ",\n    ")
        let defaultBundle =
            "{ MIGRATOR_ABI_MAJOR, MIGRATOR_ABI_MINOR, sizeof(migrator_plugin_v1), \"fixture\", NULL, "
            + "\(migrations.count), migrations }"
        return """
            #include <string.h>
            #include "migrator_plugin.h"
            static migrator_status ok_step(const migrator_host_v1 *h, migrator_txn *t, void *u) {
                (void)h; (void)t; (void)u; return MIGRATOR_OK; }
            \(prelude)
            __attribute__((unused)) static const migrator_migration_v1 migrations[] = {
                \(list)
            };
            static const migrator_plugin_v1 bundle = \(bundle ?? defaultBundle);
            \(entry ? "const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return &bundle; }"
                    : "const migrator_plugin_v1 *not_the_entry(void) { return &bundle; }")
            """
    }

    /// A C initializer for one migration.
    public static func migration(
        _ id: String, up: String = "ok_step", down: String = "ok_step", checksum: String = "NULL",
        name: String = "\"A migration\""
    ) -> String {
        let quotedID = id == "NULL" ? "NULL" : "\"\(id)\""
        return "{ \(quotedID), \(name), \"fixture migration\", \"1.0.0\", \(checksum), \(up), \(down), NULL }"
    }

    /// A one-migration plugin whose up and down are the given C bodies
    /// (with `host`, `txn` in scope); `down: nil` makes it irreversible.
    /// `prelude` goes before them, after the common headers.
    public static func stepPlugin(
        _ id: String, up: String, down: String? = "return MIGRATOR_OK;", checksum: String? = nil,
        prelude: String = ""
    ) -> String {
        let downSignature = "static migrator_status down(const migrator_host_v1 *host, migrator_txn *txn, void *u)"
        let downFunction = down.map { "\(downSignature) { (void)u; \($0) }" } ?? ""
        let quotedChecksum = checksum.map { "\"\($0)\"" } ?? "NULL"
        return """
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <unistd.h>
            #include <signal.h>
            #include <sys/wait.h>
            #include "migrator_plugin.h"
            \(prelude)
            static migrator_status up(const migrator_host_v1 *host, migrator_txn *txn, void *u) { (void)u; \(up) }
            \(downFunction)
            static const migrator_migration_v1 m = {
                "\(id)", "Step \(id)", "fixture", "1.0.0", \(quotedChecksum), up,
                \(down == nil ? "NULL" : "down"), NULL };
            static const migrator_plugin_v1 b = { MIGRATOR_ABI_MAJOR, MIGRATOR_ABI_MINOR, sizeof b,
                "\(id)", NULL, 1, &m };
            const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return &b; }
            """
    }
}
