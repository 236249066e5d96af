import Foundation
import TestSupport
import Testing

/// Every host function's success path, as a C plugin sees it: each call's
/// status and out-values are checked inside the plugin, which fails with a
/// message naming the first mismatch.
@Suite("the host table from a C plugin (end to end)")
struct HostAPITests {
    static let checks = """

        #define EXPECT(cond, what) do { if (!(cond)) { host->set_error(txn, what); return MIGRATOR_ERROR; } } while (0)
        uint64_t n = 0;
        EXPECT(host->create_collection(txn, "c1") == MIGRATOR_OK, "create_collection");
        EXPECT(host->create_collection(txn, "c1") == MIGRATOR_OK, "create_collection is idempotent");
        EXPECT(host->count(txn, "c1", NULL, &n) == MIGRATOR_OK && n == 0, "count of an empty collection");
        EXPECT(host->drop_collection(txn, "c1") == MIGRATOR_OK, "drop_collection");
        EXPECT(host->drop_collection(txn, "c1") == MIGRATOR_NOT_FOUND, "drop_collection of a missing one is NOT_FOUND");
        EXPECT(host->create_index(txn, "u", "email", 1) == MIGRATOR_OK, "create_index");
        EXPECT(host->insert(txn, "u", "{\\"_id\\":1,\\"email\\":\\"a@x\\",\\"n\\":1}") == MIGRATOR_OK, "insert 1");
        EXPECT(host->insert(txn, "u", "{\\"_id\\":2,\\"email\\":\\"b@x\\",\\"n\\":2}") == MIGRATOR_OK, "insert 2");
        EXPECT(host->insert(txn, "u", "{\\"_id\\":3,\\"email\\":\\"c@x\\",\\"n\\":3}") == MIGRATOR_OK, "insert 3");
        EXPECT(host->insert(txn, "u", "{\\"_id\\":4,\\"email\\":\\"a@x\\"}") == MIGRATOR_DUPLICATE_KEY,
               "unique violation");
        EXPECT(strstr(host->last_error(txn), "email") != NULL, "the violation names the path");
        EXPECT(host->update(txn, "u", "{\\"n\\":{\\"$gte\\":2}}", "{\\"$set\\":{\\"big\\":true}}", &n)
               == MIGRATOR_OK && n == 2,
               "update reports *matched");
        EXPECT(host->count(txn, "u", "{\\"big\\":true}", &n) == MIGRATOR_OK && n == 2, "count with a filter");
        EXPECT(host->remove(txn, "u", "{\\"_id\\":3}", &n) == MIGRATOR_OK && n == 1, "remove reports *removed");
        EXPECT(host->count(txn, "u", NULL, &n) == MIGRATOR_OK && n == 2, "count after remove");
        EXPECT(host->drop_index(txn, "u", "email") == MIGRATOR_OK, "drop_index");
        EXPECT(host->drop_index(txn, "u", "email") == MIGRATOR_NOT_FOUND, "drop_index of a missing one is NOT_FOUND");
        EXPECT(host->insert(txn, "u", "{\\"_id\\":5,\\"email\\":\\"a@x\\"}") == MIGRATOR_OK, "no index, no violation");
        EXPECT(host->log(txn, MIGRATOR_LOG_INFO, "hello from C") == MIGRATOR_OK, "log");
        EXPECT(host->log(txn, MIGRATOR_LOG_WARNING, "careful") == MIGRATOR_OK, "log warning");
        for (uint64_t i = 1; i <= 4; i++) EXPECT(host->progress(txn, i, 4) == MIGRATOR_OK, "progress");
        return MIGRATOR_OK;
        """

    @Test func everyHostFunctionSucceedsAsDocumented() throws {
        let w = try Workspace()
        try w.add("host.so", Fixtures.stepPlugin("001_host", up: Self.checks))
        let r = try w.run(["apply"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(
            r.stderr.contains("[001_host] hello from C") && r.stderr.contains("[001_host] warning: careful"),
            "\(r.stderr)")
        #expect(try w.count("u") == 3)
        #expect(try w.count("c1") == 0)
    }

    /// On a terminal, `progress` draws a bar; `script` gives the run one.
    @Test func progressIsDrawnOnATerminal() throws {
        let w = try Workspace()
        try w.add("host.so", Fixtures.stepPlugin("001_host", up: Self.checks))
        let command = [migratorBinary, "apply", "--db", w.db, "--dir", w.dir].map { "'\($0)'" }.joined(separator: " ")
        let r = try Fixtures.run("/usr/bin/script", ["-qec", command, "/dev/null"], environment: ["TERM": "xterm"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("100% (4/4)"), "\(r.output)")
    }

    /// A plugin built against a newer minor version, with a larger bundle
    /// struct, loads and runs: minor versions only append fields.
    @Test func aNewerMinorWithALargerStructLoads() throws {
        let w = try Workspace()
        let source = Fixtures.stepPlugin("001_newer", up: #"return host->insert(txn, "t", "{}");"#)
            .replacingOccurrences(
                of: "static const migrator_plugin_v1 b = { MIGRATOR_ABI_MAJOR, MIGRATOR_ABI_MINOR, sizeof b,",
                with: """
                    struct newer { migrator_plugin_v1 v1; void *later_field; uint64_t another; };
                    static const struct newer nb = { { MIGRATOR_ABI_MAJOR, MIGRATOR_ABI_MINOR + 1, sizeof nb,
                    """
            )
            .replacingOccurrences(
                of: "\"001_newer\", NULL, 1, &m };", with: "\"001_newer\", NULL, 1, &m }, 0, 7 };\n#define b nb.v1")
        try w.add("newer.so", source)
        let r = try w.run(["apply"])
        #expect(r.status == 0, "\(r.stderr)\n\(source)")
        #expect(try w.count("t") == 1)
        let list = try w.run(["list", "--json"])
        #expect(list.stdout.contains(#""abi_minor":1"#), "\(list.stdout)")
    }
}
