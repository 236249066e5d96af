import Foundation
import TestSupport
import Testing

@testable import MigrationEngine

/// The bundle format's reader: member names, sizes and trailing bytes are
/// trusted only once signed, and even then a name is a plain `*.so` name.
@Suite("bundle format")
struct BundleFormatTests {
    func keys() throws -> (dir: String, key: String, trusted: [PluginSignatures.PublicKey]) {
        let dir = Fixtures.temporaryDirectory("bundle-keys")
        _ = try Migrator.generateSigningKey(at: dir + "/k")
        return (dir, dir + "/k.key", try PluginSignatures.trustedKeys(in: dir))
    }

    @Test(
        "member names that are paths, hidden, not plugins or twice are refused",
        arguments: [["../evil.so"], ["a/b.so"], [".hidden.so"], ["notes.txt"], ["x.so", "x.so"], [".."]])
    func badMemberNames(_ names: [String]) throws {
        let (dir, key, trusted) = try keys()
        let out = dir + "/b.bundle"
        _ = try Bundles.create(
            files: names.map { ($0, Array("ELF".utf8), ["001_x"], "1.1") }, name: "app", sequence: 1, expiresIn: nil,
            keyPath: key, out: out)
        let e = #expect(throws: MigratorError.self) { try Bundles.open(out, trusted: trusted) { _ in nil } }
        #expect(e?.code == .invalidBundle, "\(String(describing: e))")
        #expect(e?.message.contains("'\(names.last ?? "")'") == true, "\(String(describing: e))")
    }

    @Test("a truncated bundle and bytes after the last file are refused")
    func sizesAreChecked() throws {
        let (dir, key, trusted) = try keys()
        let out = dir + "/b.bundle"
        _ = try Bundles.create(
            files: [("a.so", Array(repeating: 7, count: 100), ["001_a"], "1.1")], name: "app", sequence: 1,
            expiresIn: nil, keyPath: key, out: out)
        let whole = Array(try Data(contentsOf: URL(fileURLWithPath: out)))
        for (bytes, why) in [
            (Array(whole.dropLast(10)), "more than the bundle still holds"), (whole + [0], "after the last file"),
        ] {
            try Data(bytes).write(to: URL(fileURLWithPath: out))
            let e = #expect(throws: MigratorError.self) { try Bundles.open(out, trusted: trusted) { _ in nil } }
            #expect(e?.code == .invalidBundle && e?.message.contains(why) == true, "\(String(describing: e))")
        }
    }
}
