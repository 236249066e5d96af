import DocumentStore
import PostgresStore
import TestSupport
import Testing

/// LMDB and PostgreSQL side by side: thousands of random documents, filters
/// and updates, and every answer (documents, counts, matched and modified
/// counts, error codes) must be identical, as must both collections at the end.
@Suite("PostgreSQL gives LMDB's answers")
struct DifferentialTests {
    typealias Random = SeededGenerator

    static let fields = ["a", "b", "c"]
    static let paths = ["a", "b", "c", "a.b", "a.c", "b.a", "a.0", "b.1"]

    static func scalar(_ r: inout Random) -> JSON {
        switch r.below(6) {
        case 0: return .null
        case 1: return .int(Int64(r.pick([-3, 0, 1, 2, 5, 7])))
        case 2: return .double(r.pick([2.5, -1.5, 3.0, 0.0]))
        case 3: return .string(r.pick(["x", "y", "ab", "", "é"]))
        case 4: return .bool(r.below(2) == 0)
        default: return .int(Int64(r.below(10)))
        }
    }

    static func value(_ r: inout Random, _ depth: Int) -> JSON {
        let k = r.below(10)
        if depth < 2 && k == 0 { return .array((0..<r.below(4)).map { _ in value(&r, depth + 1) }) }
        if depth < 2 && k == 1 { return object(&r, depth + 1) }
        return scalar(&r)
    }

    static func object(_ r: inout Random, _ depth: Int) -> JSON {
        var o = JSONObject()
        for f in fields where r.below(2) == 0 { o[f] = value(&r, depth) }
        return .object(o)
    }

    static func filter(_ r: inout Random) -> JSON {
        if r.below(8) == 0 {
            return .object(
                JSONObject([(r.pick(["$and", "$or"]), .array((0..<(1 + r.below(2))).map { _ in filter(&r) }))]))
        }
        var o = JSONObject()
        for _ in 0..<(1 + r.below(2)) {
            let op = r.pick(["eq", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not"])
            let p: JSON
            switch op {
            case "eq": p = value(&r, 1)
            case "$in", "$nin": p = .object(JSONObject([(op, .array((0..<(1 + r.below(3))).map { _ in scalar(&r) }))]))
            case "$exists": p = .object(JSONObject([(op, .bool(r.below(2) == 0))]))
            case "$not":
                p = .object(JSONObject([(op, .object(JSONObject([(r.pick(["$gt", "$eq", "$lte"]), scalar(&r))])))]))
            default: p = .object(JSONObject([(op, scalar(&r))]))
            }
            o[r.pick(paths)] = p
        }
        if r.below(10) == 0 { o["_id"] = .int(Int64(r.below(40))) }
        return .object(o)
    }

    static func update(_ r: inout Random) -> JSON {
        let path = r.pick(paths.filter { !$0.contains(".0") && !$0.contains(".1") })
        switch r.below(5) {
        case 0: return .object(JSONObject([("$set", .object(JSONObject([(path, value(&r, 1))])))]))
        case 1: return .object(JSONObject([("$unset", .object(JSONObject([(path, .string(""))])))]))
        case 2: return .object(JSONObject([("$inc", .object(JSONObject([(path, .int(Int64(r.below(5))))])))]))
        case 3: return .object(JSONObject([("$push", .object(JSONObject([(path, scalar(&r))])))]))
        default: return .object(JSONObject([("$set", .object(JSONObject([("z", scalar(&r))])))]))
        }
    }

    /// `text` with generated ids (24 hex digits in quotes) replaced: an
    /// insert that failed on both stores generated a different id on each.
    static func maskingGeneratedIDs(_ text: String) -> String {
        var out = ""
        var rest = Substring(text)
        while let q = rest.firstIndex(of: "\"") {
            out += rest[...q]
            rest = rest[rest.index(after: q)...]
            let candidate = rest.prefix(25)
            if candidate.count == 25, candidate.last == "\"", candidate.dropLast().allSatisfy(\.isHexDigit) {
                out += "<generated>\""
                rest = rest.dropFirst(25)
            }
        }
        return out + rest
    }

    /// The outcome of one operation, comparable across backends.
    static func outcome(_ body: () throws -> String) -> String {
        do { return try body() } catch let e as StoreError { return "error \(e.code): \(e.message)" } catch {
            return "other error \(error)"
        }
    }

    @Test("random documents, filters and updates", arguments: [1, 2, 3])
    func random(seed: UInt64) throws {
        let dir = Fixtures.temporaryDirectory("diff")
        defer { Fixtures.removeTree(dir) }
        let lmdb = try DocumentStore(path: dir + "/db")
        let schema = PostgresServer.freshSchema("diff")
        let pg = try PostgresDocumentStore(uri: PostgresServer.uri, schema: schema)
        defer { try? pg.connection.run("DROP SCHEMA \(schema) CASCADE") }
        var r = Random(state: seed)
        // Indexes from the start (a unique one makes some writes fail), and
        // more created and dropped as the run goes.
        func index(_ path: String, unique: Bool) {
            let a = Self.outcome { "\(try lmdb.write { try $0.createIndex("c", path: path, unique: unique) })" }
            let b = Self.outcome { "\(try pg.write { try $0.createIndex("c", path: path, unique: unique) })" }
            #expect(a == b, "createIndex \(path) unique=\(unique)")
        }
        index("b", unique: true)
        index("a.c", unique: false)

        // Integer and string ids, and some generated ones.
        for i in 0..<200 {
            var doc = Self.object(&r, 0)
            if case .object(var o) = doc, r.below(5) != 0 {
                o["_id"] = r.below(4) == 0 ? .string("k\(i)") : .int(Int64(i) - 20)
                doc = .object(o)
            }
            let a = Self.outcome { try lmdb.write { try $0.insert(doc, into: "c") }.serialized }
            // A generated id differs between the stores: give PostgreSQL LMDB's.
            if case .object(var o) = doc, o["_id"] == nil, !a.hasPrefix("error"), let id = try? JSON(parsing: a) {
                o.prepend("_id", id)
                doc = .object(o)
            }
            let b = Self.outcome {
                try pg.write { t in
                    t.batchesWrites = true
                    return try t.insert(doc, into: "c")
                }.serialized
            }
            #expect(Self.maskingGeneratedIDs(a) == Self.maskingGeneratedIDs(b), "insert \(doc.serialized)")
        }

        func same(_ what: String) throws {
            let a = try lmdb.read { try $0.find("c").all().map(\.serialized) }
            let b = try pg.read { try $0.findAll("c").map(\.serialized) }
            #expect(a == b, "collections differ after \(what)")
        }
        try same("the inserts")

        var differing: [String] = []
        for step in 0..<1500 {
            let f = Self.filter(&r)
            guard let filter = try? Filter(f) else { continue }
            switch r.below(6) {
            case 0, 1, 2:
                let a = Self.outcome {
                    try lmdb.read { try $0.find("c", filter: filter).all().map(\.serialized) }.joined(separator: "\n")
                }
                let b = Self.outcome {
                    try pg.read { try $0.findAll("c", filter: filter).map(\.serialized) }.joined(separator: "\n")
                }
                if a != b { differing.append("find \(f.serialized)") }
            case 3:
                let a = Self.outcome { "\(try lmdb.read { try $0.count("c", filter: filter) })" }
                let b = Self.outcome { "\(try pg.read { try $0.count("c", filter: filter) })" }
                if a != b { differing.append("count \(f.serialized): \(a) vs \(b)") }
            case 4:
                let u = Self.update(&r)
                guard let update = try? Update(u) else { continue }
                // One or many, sometimes an upsert (with an _id of its own, so
                // that both stores insert the same document).
                let one = r.below(3) == 0
                let upsert = r.below(4) == 0
                var f2 = f
                if upsert, case .object(var o) = f2, o["_id"] == nil {
                    o["_id"] = .int(Int64(1000 + step))
                    f2 = .object(o)
                }
                guard let filter = try? Filter(f2) else { continue }
                func apply(_ t: any DocumentTransaction) throws -> UpdateResult {
                    one
                        ? try t.updateOne("c", filter: filter, update: update, upsert: upsert)
                        : try t.updateMany("c", filter: filter, update: update, upsert: upsert)
                }
                let a = Self.outcome { "\(try lmdb.write { try apply($0) })" }
                let b = Self.outcome { "\(try pg.write { try apply($0) })" }
                if a != b { differing.append("update \(f.serialized) \(u.serialized): \(a) vs \(b)") }
            default:
                if r.below(4) != 0 {
                    // A cursor's per-document rewrite: every third match
                    // deleted, the others replaced with a field spliced in.
                    let z = Self.scalar(&r).serialized
                    func rewrite(_ t: any DocumentTransaction) throws -> String {
                        let reader = try t.openReader("c", filter: filter)
                        var n = 0
                        while let doc = try reader.nextRaw() {
                            n += 1
                            if n % 3 == 0 {
                                try reader.deleteCurrent()
                                continue
                            }
                            var text = Array(doc)
                            text.removeLast()
                            text += Array(#","z":\#(z)}"#.utf8)
                            if text.count == 9 + z.utf8.count { text.remove(at: 1) }  // it was {}
                            try text.withUnsafeBytes { try reader.replaceCurrent(json: $0) }
                        }
                        return "\(n)"
                    }
                    let a = Self.outcome { try lmdb.write { try rewrite($0) } }
                    let b = Self.outcome {
                        try pg.write { t in
                            t.batchesWrites = true
                            return try rewrite(t)
                        }
                    }
                    if a != b { differing.append("rewrite \(f.serialized): \(a) vs \(b)") }
                    continue
                }
                let one = r.below(2) == 0
                func apply(_ t: any DocumentTransaction) throws -> Int {
                    one ? try t.deleteOne("c", filter: filter) : try t.deleteMany("c", filter: filter)
                }
                let a = Self.outcome { "\(try lmdb.write { try apply($0) })" }
                let b = Self.outcome { "\(try pg.write { try apply($0) })" }
                if a != b { differing.append("delete \(f.serialized): \(a) vs \(b)") }
            }
            if step % 100 == 50 {
                let path = r.pick(Self.paths)
                if r.below(2) == 0 {
                    index(path, unique: r.below(3) == 0)
                } else {
                    let a = Self.outcome {
                        try lmdb.write { try $0.dropIndex("c", path: path) }
                        return "dropped"
                    }
                    let b = Self.outcome {
                        try pg.write { try $0.dropIndex("c", path: path) }
                        return "dropped"
                    }
                    if a != b { differing.append("dropIndex \(path): \(a) vs \(b)") }
                }
                let a = try lmdb.read { try $0.indexes("c") }
                let b = try pg.read { try $0.indexes("c") }
                if a != b { differing.append("indexes \(a) vs \(b)") }
            }
            if step % 500 == 499 { try same("step \(step)") }
        }
        #expect(
            differing.isEmpty, "\(differing.count) operations differ:\n\(differing.prefix(8).joined(separator: "\n"))")
        try same("all steps")
    }
}

/// What is PostgreSQL's own: inserts go in batches, so a duplicate `_id`
/// among them is found later, and then the whole transaction fails.
@Suite("PostgreSQL batches")
struct BatchTests {
    @Test("batched: a duplicate found when its batch is sent fails every later call and the commit; nothing stays")
    func deferredDuplicate() throws {
        try withStore("batch") { pg in
            // Unbatched (the default), the call itself fails and the transaction goes on.
            try pg.write { txn in
                try txn.insert(json(#"{"_id":1}"#), into: "c")
                let e = #expect(throws: StoreError.self) { try txn.insert(json(#"{"_id":1}"#), into: "c") }
                #expect(e?.message == "collection 'c': duplicate _id 1")
                try txn.insert(json(#"{"_id":2}"#), into: "c")
            }
            #expect(try pg.read { try $0.count("c") } == 2)
            _ = try pg.write { try $0.dropCollection("c") }
            // Batched: a duplicate within the batch is known at its call, and
            // the transaction goes on; one of a stored document is found when
            // the batch is sent, and then fails every later call and the commit.
            try pg.write { txn in
                txn.batchesWrites = true
                try txn.insert(json(#"{"_id":5}"#), into: "c")
                let e = #expect(throws: StoreError.self) { try txn.insert(json(#"{"_id":5}"#), into: "c") }
                #expect(e?.message == "collection 'c': duplicate _id 5")
            }
            #expect(try pg.read { try $0.count("c") } == 1)
            var later: StoreError?
            do {
                try pg.write { txn in
                    txn.batchesWrites = true
                    try txn.insert(json(#"{"_id":6}"#), into: "c")
                    try txn.insert(json(#"{"_id":5}"#), into: "c")  // queued: no error yet
                    do { _ = try txn.count("c") } catch let e as StoreError { later = e }
                    _ = try txn.insert(json(#"{"_id":7}"#), into: "c")
                }
                Issue.record("the transaction committed")
            } catch let e as StoreError {
                #expect(e.code == .duplicateKey)
                #expect(e.message == "collection 'c': duplicate _id 5")
            }
            #expect(later?.code == .duplicateKey, "the next call reports it")
            #expect(try pg.read { try $0.findAll("c").map(\.serialized) } == [#"{"_id":5}"#], "nothing committed")
            _ = try pg.write { try $0.dropCollection("c") }
            // A batch larger than one statement, then reads in batches.
            try pg.write { txn in
                txn.batchesWrites = true
                for i in 0..<1234 { try txn.insert(json(#"{"_id":\#(i),"v":\#(i % 7)}"#), into: "c") }
                let reader = try txn.openReader("c", filter: try Filter(parsing: #"{"v":3}"#))
                var n = 0
                while let doc = try reader.nextRaw() {
                    n += 1
                    try Array(#"{"v":30}"#.utf8).withUnsafeBytes { try reader.replaceCurrent(json: $0) }
                    _ = doc
                }
                #expect(n == 176)
            }
            #expect(try pg.read { try $0.count("c", filter: try Filter(parsing: #"{"v":30}"#)) } == 176)
            #expect(try pg.read { try $0.count("c") } == 1234)
        }
    }

    @Test("a cursor cannot replace a document another write removed; a half-done update poisons the transaction")
    func honestWrites() throws {
        try withStore("honest") { pg in
            try pg.write { txn in
                for i in 1...3 { try txn.insert(json(#"{"_id":\#(i),"v":\#(i == 2 ? "\"x\"" : "1")}"#), into: "c") }
            }
            try pg.write { txn in
                let reader = try txn.openReader("c", filter: .all)
                _ = try reader.nextRaw()
                _ = try txn.deleteMany("c", filter: try Filter(parsing: #"{"_id":1}"#))
                let e = #expect(throws: StoreError.self) {
                    try Array(#"{"v":9}"#.utf8).withUnsafeBytes { try reader.replaceCurrent(json: $0) }
                }
                #expect(e?.code == .noCurrentDocument)
            }
            #expect(try pg.read { try $0.count("c") } == 2)
            // With an index each document is written as it goes: _id 0 is
            // updated, then _id 2 fails. Ignoring the error does not help: the
            // next call fails too, and nothing of the transaction commits.
            try pg.write { txn in
                _ = try txn.createIndex("c", path: "v", unique: false)
                try txn.insert(json(#"{"_id":0,"v":5}"#), into: "c")
            }
            var later: (any Error)?
            let failed = #expect(throws: StoreError.self) {
                try pg.write { txn in
                    _ = try? txn.updateMany("c", filter: .all, update: try Update(parsing: #"{"$inc":{"v":1}}"#))
                    do { _ = try txn.count("c") } catch { later = error }
                }
            }
            #expect(failed?.code == .invalidUpdate, "\(String(describing: failed))")
            #expect(later != nil, "the call after a half-done update fails")
            #expect(
                try pg.read { try $0.findAll("c").map(\.serialized) } == [
                    #"{"_id":0,"v":5}"#, #"{"_id":2,"v":"x"}"#, #"{"_id":3,"v":1}"#,
                ])
        }
    }

    @Test("a cursor goes on across checkpoint commits and writes to its collection, visiting each document once")
    func cursorAcrossCommits() throws {
        try withStore("cursor") { pg in
            try pg.write { txn in
                for i in 0..<2500 { try txn.insert(json(#"{"_id":\#(i),"v":0}"#), into: "c") }
            }
            let visited = try pg.write { txn -> [Int64] in
                txn.batchesWrites = true
                var ids: [Int64] = []
                let reader = try txn.openReader("c", filter: .all)
                defer { reader.close() }
                while let raw = try reader.nextRaw() {
                    guard case .int(let id)? = try JSON(parsing: raw).objectValue?["_id"] else { break }
                    ids.append(id)
                    try Array(#"{"v":1}"#.utf8).withUnsafeBytes { try reader.replaceCurrent(json: $0) }
                    if id % 700 == 699 { try txn.commitAndContinue() }
                    // Another write to the collection: the rows read ahead are dropped.
                    if id % 900 == 0 { _ = try txn.deleteOne("c", filter: try Filter(parsing: #"{"_id":\#(id + 1)}"#)) }
                }
                return ids
            }
            let deleted = Set(stride(from: 0, to: 2500, by: 900).map { Int64($0 + 1) })
            #expect(visited == (0..<2500).map(Int64.init).filter { !deleted.contains($0) })
            #expect(try pg.read { try $0.count("c", filter: try Filter(parsing: #"{"v":1}"#)) } == 2500 - deleted.count)
        }
    }

    @Test("updates and deletes of more documents than a batch or a part change every one once")
    func largeWrites() throws {
        try withStore("large") { pg in
            let n = 23_000
            try pg.write { txn in
                txn.batchesWrites = true
                for i in 0..<n { try txn.insert(json(#"{"_id":\#(i),"v":\#(i % 3)}"#), into: "c") }
            }
            // A one-field $set (spliced), then $inc (parsed), then deletes.
            let all = try pg.write {
                try $0.updateMany("c", filter: .all, update: try Update(parsing: #"{"$set":{"w":1}}"#))
            }
            #expect(all.matched == n && all.modified == n)
            let some = (0..<n).filter { $0 % 3 != 0 }.count
            let inc = try pg.write {
                try $0.updateMany(
                    "c", filter: try Filter(parsing: #"{"v":{"$gte":1}}"#),
                    update: try Update(parsing: #"{"$inc":{"w":1}}"#))
            }
            #expect(inc.matched == some && inc.modified == some)
            #expect(try pg.read { try $0.count("c", filter: try Filter(parsing: #"{"w":2}"#)) } == some)
            let deleted = try pg.write { try $0.deleteMany("c", filter: try Filter(parsing: #"{"w":1}"#)) }
            #expect(deleted == n - some)
            #expect(try pg.read { try $0.count("c") } == some)
            #expect(try pg.read { try $0.findAll("c", filter: try Filter(parsing: #"{"v":0}"#)) }.isEmpty)
        }
    }

    func json(_ text: String) throws -> JSON { try JSON(parsing: text) }

    /// A store in a fresh schema, dropped afterwards.
    func withStore(_ tag: String, _ body: (PostgresDocumentStore) throws -> Void) throws {
        let schema = PostgresServer.freshSchema(tag)
        let pg = try PostgresDocumentStore(uri: PostgresServer.uri, schema: schema)
        defer { try? pg.connection.run("DROP SCHEMA \(schema) CASCADE") }
        try body(pg)
    }
}
