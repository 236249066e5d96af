import DocumentStore
import Foundation
import MigrationEngine
import MigrationKit
import MigratorPluginABI
import TestSupport
import Testing

@Suite struct ABITests {
    /// The offsets C computes (abi_layout.c, which also static-asserts the
    /// frozen LP64 values) must be the ones Swift imports.
    @Test func swiftSeesTheCLayout() {
        var c = [Int](repeating: 0, count: 16)
        let n = c.withUnsafeMutableBufferPointer { migrator_abi_layout($0.baseAddress, 16) }
        let swift: [Int?] = [
            MemoryLayout<migrator_host_v1>.offset(of: \.create_collection),
            MemoryLayout<migrator_host_v1>.offset(of: \.last_error),
            MemoryLayout<migrator_host_v1>.size,
            MemoryLayout<migrator_migration_v1>.offset(of: \.checksum),
            MemoryLayout<migrator_migration_v1>.offset(of: \.userdata),
            MemoryLayout<migrator_migration_v1>.size,
            MemoryLayout<migrator_plugin_v1>.offset(of: \.toolchain),
            MemoryLayout<migrator_plugin_v1>.offset(of: \.migration_count),
            MemoryLayout<migrator_plugin_v1>.offset(of: \.migrations), MemoryLayout<migrator_plugin_v1>.size,
        ]
        #expect(Array(c.prefix(n)) == swift.map { $0 ?? -1 })
        #expect(swift.map { $0 ?? -1 } == [16, 128, 184, 32, 56, 64, 24, 32, 40, 48])
        // ABI 1.1 appends to the host table; the 1.0 part ends where it did.
        #expect(MemoryLayout<migrator_host_v1>.offset(of: \.cursor_replace) == 136)
        #expect(MemoryLayout<migrator_host_v1>.offset(of: \.get_by_id) == 160)
    }

    /// The header stands alone: strict C99 and C++, only stdint/stddef.
    @Test func headerCompilesAlone() throws {
        let dir = Fixtures.temporaryDirectory("header")
        defer { Fixtures.removeTree(dir) }
        let src = dir + "/t.c"
        let program =
            "#include \"migrator_plugin.h\"\n"
            + "int main(void) { return MIGRATOR_OK + (int)sizeof(migrator_host_v1) * 0; }\n"
        try program.write(toFile: src, atomically: true, encoding: .utf8)
        for lang in [["-x", "c", "-std=c99"], ["-x", "c++", "-std=c++11"]] {
            let r = try Fixtures.run(
                Fixtures.cCompiler,
                lang + [
                    "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only", "-I", Fixtures.includeDirectory, src,
                ])
            #expect(r.status == 0, "\(lang): \(r.output)")
        }
        let text = try String(contentsOfFile: Fixtures.includeDirectory + "/migrator_plugin.h", encoding: .utf8)
        let includes = text.split(separator: "\n").filter { $0.hasPrefix("#include") }
        #expect(includes == ["#include <stddef.h>", "#include <stdint.h>"])
    }

    @Test func statusValues() {
        #expect(
            [MIGRATOR_OK, MIGRATOR_DONE, MIGRATOR_ERROR, MIGRATOR_NOT_FOUND, MIGRATOR_DUPLICATE_KEY, MIGRATOR_INVALID]
                == [0, 1, -1, -2, -3, -4])
        #expect(MIGRATOR_ABI_MAJOR == 1 && MIGRATOR_ABI_MINOR == 1)
        #expect(DatabaseError.Status.duplicateKey.rawValue == MIGRATOR_DUPLICATE_KEY)
    }

    @Test func sha256Vectors() {
        #expect(SHA256Digest.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(
            SHA256Digest.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            SHA256Digest.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // Streaming in odd pieces gives the same digest as one call.
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        var s = SHA256Digest()
        var i = 0
        while i < million.count {
            let n = min(777, million.count - i)
            s.update(Array(million[i..<(i + n)]))
            i += n
        }
        #expect(s.finalizeHex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func migrationIDs() {
        #expect(MigrationID.problem(with: "001_initial_setup") == nil)
        #expect(MigrationID.problem(with: "7_x_2") == nil)
        #expect(MigrationID.problem(with: "") != nil)
        #expect(MigrationID.problem(with: "001") != nil)
        #expect(MigrationID.problem(with: "001_ab-c") != nil)
        #expect(MigrationID.problem(with: "001_é") != nil)
        #expect(MigrationID.problem(with: "1234567890123456789_x") != nil)
        #expect(MigrationID.sequence(of: "010_x") == 10)
    }
}
