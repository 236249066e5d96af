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

    @Test(arguments: Backend.allCases) func everyHostFunctionSucceedsAsDocumented(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
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
    @Test(arguments: Backend.allCases) func aNewerMinorWithALargerStructLoads(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
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
        #expect(list.stdout.contains(#""abi_minor":2"#), "one more than this host's: \(list.stdout)")
    }
}

/// ABI 1.1: the fast paths, their detection, and 1.0 plugins unchanged.
@Suite("plugin ABI 1.1 (end to end)")
struct ABI11Tests {
    @Test(arguments: Backend.allCases) func theFastPathsWorkFromC(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        try w.add(
            "fast.so",
            Fixtures.stepPlugin(
                "001_fast",
                up: #"""

                    #define EXPECT(cond, what) \
                        do { if (!(cond)) { host->set_error(txn, what); return MIGRATOR_ERROR; } } while (0)
                    EXPECT(host->abi_minor >= 1 && MIGRATOR_HOST_HAS(host, get_by_id), "a 1.1 host");
                    EXPECT(host->create_index(txn, "u", "plan", 0) == MIGRATOR_OK, "index");
                    const char *id; size_t id_len;
                    for (int i = 0; i < 10; i++) {
                        char doc[64]; int n = snprintf(doc, sizeof doc, "{\"_id\":%d,\"plan\":\"free\"}XXXX", i);
                        EXPECT(host->insert_n(txn, "u", doc, (size_t)n - 4, &id, &id_len) == MIGRATOR_OK, "insert_n");
                    }
                    EXPECT(id_len == 1 && id[0] == '9', "insert_n hands back the _id");
                    EXPECT(host->insert_n(txn, "u", "{\"a\":1}", 7, &id, &id_len) == MIGRATOR_OK && id_len == 26,
                           "a generated _id is handed back (24 hex digits, quoted)");
                    migrator_cursor *c; const char *json; size_t len; int seen = 0;
                    EXPECT(host->find(txn, "u", "{\"plan\":\"free\"}", &c) == MIGRATOR_OK, "find");
                    while (host->cursor_next(c, &json, &len) == MIGRATOR_OK) {
                        seen++;
                        if (json[7] == '3') {
                            EXPECT(host->cursor_delete(c) == MIGRATOR_OK, "cursor_delete");
                            continue;
                        }
                        EXPECT(host->cursor_replace(c, "{\"plan\":\"pro\"}", 14) == MIGRATOR_OK, "cursor_replace");
                    }
                    host->cursor_close(c);
                    EXPECT(seen == 10, "each document visited once");
                    EXPECT(host->get_by_id(txn, "u", "5", 1, &json, &len) == MIGRATOR_OK, "get_by_id");
                    EXPECT(strcmp(json, "{\"_id\":5,\"plan\":\"pro\"}") == 0, "the replacement kept the _id");
                    EXPECT(host->get_by_id(txn, "u", "3", 1, &json, &len) == MIGRATOR_NOT_FOUND, "deleted");
                    EXPECT(host->find(txn, "u", NULL, &c) == MIGRATOR_OK
                           && host->cursor_next(c, &json, &len) == MIGRATOR_OK,
                           "find again");
                    EXPECT(host->cursor_replace(c, "{\"_id\":77}", 10) == MIGRATOR_INVALID, "another _id is refused");
                    EXPECT(strstr(host->last_error(txn), "must keep _id") != NULL, "and named");
                    host->cursor_close(c);
                    return MIGRATOR_OK;
                    """#))
        let r = try w.run(["apply"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try w.count("u", #"{"plan":"pro"}"#) == 9, "the plan index follows the replacements")
        #expect(try w.count("u", #"{"plan":"free"}"#) == 0)
        #expect(try w.count("u") == 10)
    }

    /// A plugin built against the committed 1.0 header loads and runs
    /// unchanged; a 1.1 plugin can tell a 1.0 host by its struct_size.
    @Test(arguments: Backend.allCases) func aPluginBuiltAgainstTheOneZeroHeaderStillWorks(_ backend: Backend) throws {
        let w = try Workspace(backend: backend)
        let old = Fixtures.packageRoot + "/Tests/Fixtures/abi-1.0"
        let header = try String(contentsOfFile: old + "/migrator_plugin.h", encoding: .utf8)
        #expect(header.contains("#define MIGRATOR_ABI_MINOR 0") && !header.contains("cursor_replace"))
        try Fixtures.compilePlugin(
            Fixtures.stepPlugin(
                "001_old",
                up: #"""
                    if (host->abi_minor < 1 || host->struct_size < sizeof *host) return MIGRATOR_ERROR;
                    if (host->insert(txn, "t", "{\"_id\":1,\"v\":1}") != MIGRATOR_OK) return MIGRATOR_ERROR;
                    return host->update(txn, "t", "{\"_id\":1}", "{\"$set\":{\"v\":2}}", NULL);
                    """#), name: "old.so", in: w.dir, include: old)
        try w.add(
            "detect.so",
            Fixtures.stepPlugin(
                "002_detect",
                up: #"""
                    /* What a 1.1 plugin sees from a 1.0 host: a smaller table. */
                    migrator_host_v1 older = *host;
                    older.struct_size = 136;
                    if (MIGRATOR_HOST_HAS(&older, cursor_replace)) return MIGRATOR_ERROR;
                    if (!MIGRATOR_HOST_HAS(&older, last_error)) return MIGRATOR_ERROR;
                    if (!MIGRATOR_HOST_HAS(host, cursor_replace)) return MIGRATOR_ERROR;
                    return MIGRATOR_OK;
                    """#))
        let r = try w.run(["apply"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try w.count("t", #"{"v":2}"#) == 1)
        let list = try migrator(["list", "--json", "--dir", w.dir])
        #expect(list.stdout.contains(#""abi_minor":0"#) && list.stdout.contains(#""abi_minor":1"#), "\(list.stdout)")
    }
}
