import MigrationKit
import MigratorPluginABI
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The Swift SDK against host tables of both minor versions, through the
/// public C ABI: a fake host records every call. On a 1.1 table the SDK's
/// byte inserts and cursor writes take `insert_n`, `cursor_replace` and
/// `cursor_delete`; on a 1.0 table (a smaller `struct_size`) they fall back
/// to `insert`, `update` and `remove` by `_id`, and do the same work.
@Suite("The Swift SDK on 1.0 and 1.1 hosts", .serialized)
struct SDKHostVersionTests {

    struct Rewrite: Migration {
        let id = "001_rewrite"
        let name = "Rewrite"
        let description = "insert bytes, replace and delete through a cursor"
        let version = "1.0.0"
        func up(_ db: Database) throws {
            try db.insert(json: Array(#"{"a":1}"#.utf8), into: "log")
            let users = try db.documents("users")
            while let user = try users.nextView() {
                if user.string("plan") == "gone" {
                    try users.deleteCurrent()
                } else {
                    try users.replaceCurrent(json: Array(#"{"plan":"pro"}"#.utf8))
                }
            }
        }
        func down(_ db: Database) throws {}
    }

    static func host(structSize: Int) -> migrator_host_v1 {
        var h = migrator_host_v1()
        h.abi_major = 1
        h.abi_minor = structSize < MemoryLayout<migrator_host_v1>.size ? 0 : 1
        h.struct_size = UInt32(structSize)
        h.insert = { _, c, json in
            fakeHostCalls.append("insert \(cText(c)) \(cText(json))")
            return MIGRATOR_OK
        }
        h.find = { _, c, filter, out in
            fakeHostCalls.append("find \(cText(c)) \(cText(filter))")
            fakeHostServed = 0
            out?.pointee = OpaquePointer(bitPattern: 0x1)
            return MIGRATOR_OK
        }
        h.cursor_next = { _, out, len in
            guard fakeHostServed < fakeHostDocuments.count else { return MIGRATOR_DONE }
            let doc = fakeHostDocuments[fakeHostServed]
            fakeHostServed += 1
            // Kept alive for the process: the SDK may read it until the next call.
            let copy = strdup(doc)
            out?.pointee = UnsafePointer(copy)
            len?.pointee = doc.utf8.count
            return MIGRATOR_OK
        }
        h.cursor_close = { _ in MIGRATOR_OK }
        h.update = { _, c, filter, update, matched in
            fakeHostCalls.append("update \(cText(c)) \(cText(filter)) \(cText(update))")
            matched?.pointee = 1
            return MIGRATOR_OK
        }
        h.remove = { _, c, filter, removed in
            fakeHostCalls.append("remove \(cText(c)) \(cText(filter))")
            removed?.pointee = 1
            return MIGRATOR_OK
        }
        h.set_error = { _, message in
            fakeHostCalls.append("set_error \(cText(message))")
            return MIGRATOR_OK
        }
        h.last_error = { _ in nil }
        h.cursor_replace = { _, json, len in
            fakeHostCalls.append("cursor_replace \(cText(json, len))")
            return MIGRATOR_OK
        }
        h.cursor_delete = { _ in
            fakeHostCalls.append("cursor_delete")
            return MIGRATOR_OK
        }
        h.insert_n = { _, c, json, len, _, _ in
            fakeHostCalls.append("insert_n \(cText(c)) \(cText(json, len))")
            return MIGRATOR_OK
        }
        return h
    }

    /// Runs the exported migration's `up` against `host`; returns the calls.
    static func run(_ host: migrator_host_v1) -> (migrator_status, [String]) {
        var table = host
        return withUnsafePointer(to: &table) { run(at: $0) }
    }

    /// Runs the exported migration's `up` against the table at `host`.
    static func run(at host: UnsafePointer<migrator_host_v1>) -> (migrator_status, [String]) {
        fakeHostCalls = []
        let bundle = MigrationBundle.export(name: "sdk-host-versions", migrations: [Rewrite()])
            .assumingMemoryBound(to: migrator_plugin_v1.self)
        guard let m = bundle.pointee.migrations, let up = m.pointee.up else { return (MIGRATOR_ERROR, []) }
        let status = up(host, OpaquePointer(bitPattern: 0x10), m.pointee.userdata)
        return (status, fakeHostCalls)
    }

    @Test("a 1.1 host gets the fast paths")
    func currentHost() {
        let (status, calls) = Self.run(Self.host(structSize: MemoryLayout<migrator_host_v1>.size))
        #expect(status == MIGRATOR_OK)
        #expect(
            calls == [
                #"insert_n log {"a":1}"#, "find users {}", #"cursor_replace {"plan":"pro"}"#, "cursor_delete",
            ])
    }

    @Test("a 1.0 host gets the same work through the 1.0 calls")
    func olderHost() {
        let size = MemoryLayout<migrator_host_v1>.offset(of: \migrator_host_v1.cursor_replace) ?? 0
        let (status, calls) = Self.run(Self.host(structSize: size))
        #expect(status == MIGRATOR_OK)
        #expect(
            calls == [
                #"insert log {"a":1}"#, "find users {}", #"update users {"_id":1} {"plan":"pro"}"#,
                #"remove users {"_id":2}"#,
            ])
    }
}

extension SDKHostVersionTests {
    /// A 1.0 host's table is 136 bytes. Here it is exactly that, ending where
    /// an inaccessible page begins: an SDK that read past `struct_size` (as
    /// one copying the whole 1.1 struct did) would fault instead of running.
    @Test("a 136-byte 1.0 table on a guard page")
    func exactOlderTable() throws {
        let size = MemoryLayout<migrator_host_v1>.offset(of: \migrator_host_v1.cursor_replace) ?? 0
        #expect(size == 136)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let mapped = mmap(nil, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        let base = try #require(mapped == MAP_FAILED ? nil : mapped)
        defer { munmap(base, 2 * page) }
        #expect(mprotect(base + page, page, PROT_NONE) == 0)
        let table = base + page - size
        var full = Self.host(structSize: size)
        withUnsafeBytes(of: &full) { table.copyMemory(from: $0.baseAddress!, byteCount: size) }
        let (status, calls) = Self.run(at: table.assumingMemoryBound(to: migrator_host_v1.self))
        #expect(status == MIGRATOR_OK)
        #expect(
            calls == [
                #"insert log {"a":1}"#, "find users {}", #"update users {"_id":1} {"plan":"pro"}"#,
                #"remove users {"_id":2}"#,
            ])
    }
}

// The fake host's state and helpers: a C function pointer cannot capture,
// so they live at file level, and the suite runs serialized.
nonisolated(unsafe) private var fakeHostCalls: [String] = []
nonisolated(unsafe) private var fakeHostServed = 0
private let fakeHostDocuments = [#"{"_id":1,"plan":"free"}"#, #"{"_id":2,"plan":"gone"}"#]

private func cText(_ p: UnsafePointer<CChar>?) -> String { p.map { String(cString: $0) } ?? "NULL" }
private func cText(_ p: UnsafePointer<CChar>?, _ n: Int) -> String {
    p.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: n), as: UTF8.self) } ?? "NULL"
}
