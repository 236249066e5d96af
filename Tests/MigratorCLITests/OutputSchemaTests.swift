import Foundation
import TestSupport
import Testing

/// The JSON that scripts read is an interface: these outputs are pinned byte
/// for byte (times, durations, pids and paths normalised). A change here
/// breaks someone's CI; fields may be added to the schema, never renamed.
@Suite("JSON outputs are pinned (end to end)")
struct OutputSchemaTests {
    static let plugin = """
        #include "migrator_plugin.h"
        static migrator_status up(const migrator_host_v1 *h, migrator_txn *t, void *u) {
            (void)u; return h->insert(t, "users", "{\\"_id\\":1,\\"a\\":1}"); }
        static migrator_status bad(const migrator_host_v1 *h, migrator_txn *t, void *u) {
            (void)u; h->set_error(t, "nope"); return MIGRATOR_ERROR; }
        static migrator_status down(const migrator_host_v1 *h, migrator_txn *t, void *u) {
            (void)u; return h->drop_collection(t, "users"); }
        static const migrator_migration_v1 ms[] = {
            {"001_first", "First", "the first", "1.0.0", "c1", up, down, 0},
            {"002_second", "Second", "second", "1.1.0", 0, bad, 0, 0},
        };
        static const migrator_plugin_v1 plugin = {
            MIGRATOR_ABI_MAJOR, MIGRATOR_ABI_MINOR, sizeof(migrator_plugin_v1), "pin", 0, 2, ms};
        const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return &plugin; }
        """

    static func normalised(_ text: String, database: String) -> String {
        var s = text.replacingOccurrences(of: database, with: "DB")
        for (pattern, with) in [
            (#""(applied_at|at)":"[^"]*""#, #""$1":"T""#), (#""duration_ms":[0-9]+"#, #""duration_ms":N"#),
            (#""applied_by":"[^"]*""#, #""applied_by":"U""#),
        ] {
            s = s.replacingOccurrences(of: pattern, with: with, options: .regularExpression)
        }
        return s.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func statusAndHistoryJSON() throws {
        let w = try Workspace()
        try w.add("p.so", Self.plugin)
        #expect(try w.run(["apply"]).status == 1, "002_second fails on purpose")
        let status = try w.run(["status", "--json"])
        #expect(status.status == 0)
        #expect(
            Self.normalised(status.stdout, database: w.db) == """
                {"database":"DB","interrupted":null,"locked_by":null,"migrations":[{"applied_at":"T","changed":false,\
                "checksum":"c1","description":"the first","id":"001_first","name":"First","plugin":"p.so",\
                "state":"applied",\
                "version":"1.0.0"},{"applied_at":null,"changed":false,"checksum":null,"description":"second",\
                "id":"002_second","name":"Second","plugin":"p.so","state":"failed","version":"1.1.0"}],\
                "summary":{"applied":1,"failed":1,"missing":0,"pending":0}}
                """)
        let history = try w.run(["history", "--json"], dir: false)
        #expect(
            Self.normalised(history.stdout, database: w.db) == """
                {"history":[{"migration_id":"001_first","outcome":"applied","direction":"up","at":"T","duration_ms":N,\
                "error":null,"applied_by":"U","plugin":"p.so"},{"migration_id":"002_second","outcome":"failed",\
                "direction":"up","at":"T","duration_ms":N,"error":"nope","applied_by":"U","plugin":"p.so"}]}
                """)
    }

    /// The duration recorded in `_migrations` and the history is the one
    /// the CLI prints.
    @Test func recordedDurationIsThePrintedOne() throws {
        let w = try Workspace()
        try w.add("slow.so", Fixtures.stepPlugin("001_slow", up: "usleep(120000); return MIGRATOR_OK;"))
        let r = try w.run(["apply"])
        #expect(r.status == 0, "\(r.stderr)")
        guard let range = r.stderr.range(of: #"applied 001_slow \(([0-9]+) ms\)"#, options: .regularExpression) else {
            throw Unreadable("no 'applied 001_slow (N ms)' line in: \(r.stderr)")
        }
        // "applied 001_slow (123 ms)": the number inside the parentheses.
        let printed = r.stderr[range].split(separator: "(").last?.split(separator: " ").first.flatMap { Int($0) } ?? -1
        #expect(printed >= 120)
        let recorded = try w.history().first?["duration_ms"] as? Int
        #expect(recorded == printed)
        let doc = try migrator(["db", "find", "_migrations", "--db", w.db]).stdout
        #expect(doc.contains(#""duration_ms":\#(printed)"#), "\(doc)")
    }
}
