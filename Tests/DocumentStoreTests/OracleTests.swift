import DocumentStore
import Foundation
import TestSupport
import Testing

/// The store's filters against two independent implementations of MongoDB's
/// query language, mongomock and montydb (Tests/Oracles): random documents
/// and filters, and every filter on which the two oracles agree must give
/// the store exactly their answer. Where they disagree with each other the
/// case proves nothing and is only counted (docs/document-store.md says
/// which answer the store gives there).
@Suite("Filters against MongoDB oracles")
struct OracleTests {
    @Test("random filters give the answer both oracles give", arguments: [7, 20_261_127])
    func randomFilters(seed: Int) throws {
        let dir = Fixtures.temporaryDirectory("oracle")
        defer { Fixtures.removeTree(dir) }
        let out = dir + "/cases.json"
        let r = try Fixtures.run(
            "/bin/bash", [Fixtures.packageRoot + "/Tests/Oracles/run.sh", out, "\(seed)", "300", "1500"])
        try #require(r.status == 0, "the oracles did not run: \(r.output)")
        // The store's own parser: it keeps key order and 3 apart from 3.0.
        let data = try Data(contentsOf: URL(fileURLWithPath: out))
        let file = try data.withUnsafeBytes { try JSON(parsing: $0) }
        let documents = file.objectValue?["documents"]?.arrayValue ?? []
        let cases = file.objectValue?["cases"]?.arrayValue ?? []
        let disagreements = file.objectValue?["disagreements"]?.arrayValue ?? []
        #expect(documents.count == 300)
        #expect(cases.count > 1000, "too few cases the oracles agree on: \(cases.count)")

        let store = try DocumentStore(path: dir + "/db")
        try store.write { txn in
            for d in documents { try txn.insert(d, into: "c") }
        }
        func int(_ v: JSON?) -> Int64? {
            if case .int(let i)? = v { return i }
            return nil
        }
        func ids(_ filter: JSON?) throws -> [Int64] {
            try store.read { txn in
                try txn.find("c", filter: Filter(filter ?? .null)).all().compactMap { int($0.objectValue?["_id"]) }
            }.sorted()
        }
        func expected(_ c: JSON, _ key: String) -> [Int64] {
            (c.objectValue?[key]?.arrayValue ?? []).compactMap { int($0) }
        }
        var wrong: [String] = []
        for c in cases {
            let filter = c.objectValue?["filter"]
            let got = try ids(filter)
            let want = expected(c, "ids")
            if got != want { wrong.append("\(filter?.serialized ?? "?"): oracles \(want), store \(got)") }
        }
        #expect(
            wrong.isEmpty,
            "\(wrong.count) of \(cases.count) filters differ:\n\(wrong.prefix(10).joined(separator: "\n"))")

        // Where the oracles disagree, which one the store sides with.
        var sides = (mongomock: 0, montydb: 0, neither: 0)
        for d in disagreements {
            let got = try ids(d.objectValue?["filter"])
            if got == expected(d, "mongomock") {
                sides.mongomock += 1
            } else if got == expected(d, "montydb") {
                sides.montydb += 1
            } else {
                sides.neither += 1
            }
        }
        print(
            "oracles, seed \(seed): \(cases.count) agreed cases, \(wrong.count) differ; on \(disagreements.count)"
                + " disagreements the store gave mongomock's answer \(sides.mongomock) times, montydb's"
                + " \(sides.montydb), neither \(sides.neither)")
    }
}
