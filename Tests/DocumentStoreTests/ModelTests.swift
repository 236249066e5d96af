import DocumentStore
import TestSupport
import Testing

/// Random operations against the store and a plain in-memory model, which
/// must agree after every step: contents, counts, query answers and
/// unique-index refusals. The model decides matches with
/// ``ReferenceMatcher``, written from the documentation, never with `Filter`.
@Suite("Randomized model")
struct ModelTests {
    static let seed: UInt64 = 20_261_126

    /// The model: `_id` → document, kept in `_id` order like the store.
    struct Model {
        var docs: [Int64: JSONObject] = [:]
        var uniqueIndexes: Set<String> = []

        func sorted() -> [JSON] { docs.keys.sorted().compactMap { docs[$0].map(JSON.object) } }

        func violatesUnique(_ doc: JSONObject, ignoring id: Int64?) -> Bool {
            // Index keys: the value, and each element of an array (multikey).
            func keys(_ v: JSON) -> [JSON] {
                if case .array(let items) = v { return [v] + items }
                return [v]
            }
            for path in uniqueIndexes {
                guard let v = doc[path] else { continue }
                for (other, d) in docs where other != id {
                    guard let w = d[path] else { continue }
                    for x in keys(v) where keys(w).contains(where: { ReferenceMatcher.same(x, $0) }) { return true }
                }
            }
            return false
        }
    }

    func randomValue(_ g: inout SeededGenerator) -> JSON {
        switch Int.random(in: 0..<6, using: &g) {
        case 0: return .int(Int64.random(in: 0..<8, using: &g))
        case 1: return .double(Double(Int.random(in: 0..<8, using: &g)) / 2)
        case 2: return .string(["a", "b", "c", "é", "日"].randomElement(using: &g) ?? "a")
        case 3: return .bool(Bool.random(using: &g))
        case 4: return .array([.int(Int64.random(in: 0..<4, using: &g)), .string("a")])
        default: return .null
        }
    }

    func randomFilter(_ g: inout SeededGenerator) -> JSON {
        let field = ["a", "b", "c"].randomElement(using: &g) ?? "a"
        let v = randomValue(&g)
        switch Int.random(in: 0..<7, using: &g) {
        case 0: return .object(JSONObject([(field, v)]))
        case 1: return .object(JSONObject([(field, .object(JSONObject([("$gt", v)])))]))
        case 2: return .object(JSONObject([(field, .object(JSONObject([("$in", .array([v, randomValue(&g)]))])))]))
        case 3: return .object(JSONObject([(field, .object(JSONObject([("$exists", .bool(Bool.random(using: &g)))])))]))
        case 4: return .object(JSONObject([(field, .object(JSONObject([("$ne", v)])))]))
        case 5: return .object(JSONObject([("_id", .int(Int64.random(in: 0..<60, using: &g)))]))
        default: return .object(JSONObject())
        }
    }

    @Test("thousands of random operations agree with an in-memory model", arguments: Backend.allCases)
    func randomOperations(_ backend: Backend) throws {
        var g = SeededGenerator(state: Self.seed)
        var model = Model()
        try withStore(backend) { store throws in
            for step in 0..<3000 {
                let context = "\(backend), seed \(Self.seed), step \(step)"
                let op = Int.random(in: 0..<100, using: &g)
                let filterJSON = randomFilter(&g)
                let filter = try Filter(filterJSON)
                let id = Int64.random(in: 0..<60, using: &g)
                switch op {
                case 0..<35:  // insert
                    var doc = JSONObject([("_id", .int(id))])
                    for f in ["a", "b", "c"] where Bool.random(using: &g) { doc[f] = randomValue(&g) }
                    let expectOK = model.docs[id] == nil && !model.violatesUnique(doc, ignoring: nil)
                    do {
                        try store.write { try $0.insert(.object(doc), into: "m") }
                        #expect(expectOK, "\(context): insert \(doc) should have failed")
                        model.docs[id] = doc
                    } catch let e as StoreError {
                        #expect(!expectOK && e.code == .duplicateKey, "\(context): \(e)")
                    }
                case 35..<60:  // updateMany with $set or $unset
                    let field = ["a", "b", "c"].randomElement(using: &g) ?? "a"
                    let value = randomValue(&g)
                    let unset = Bool.random(using: &g)
                    let update = try Update(
                        .object(
                            JSONObject([(unset ? "$unset" : "$set", .object(JSONObject([(field, unset ? "" : value)])))]
                            )))
                    var next = model.docs
                    var matched = 0
                    for (k, d) in model.docs where try ReferenceMatcher.matches(filterJSON, d) {
                        matched += 1
                        var n = d
                        n[field] = unset ? nil : value
                        next[k] = n
                    }
                    // The store checks each document in _id order against the
                    // others as they stand at that moment.
                    var check = model
                    var violates = false
                    for (k, d) in next.sorted(by: { $0.key < $1.key }) {
                        if check.violatesUnique(d, ignoring: k) { violates = true }
                        check.docs[k] = d
                    }
                    do {
                        let r = try store.write { try $0.updateMany("m", filter: filter, update: update) }
                        #expect(!violates, "\(context): update should have been refused")
                        #expect(r.matched == matched, "\(context)")
                        model.docs = next
                    } catch let e as StoreError {
                        #expect(violates && e.code == .duplicateKey, "\(context): \(e)")
                    }
                case 60..<75:  // deleteMany
                    let n = try store.write { try $0.deleteMany("m", filter: filter) }
                    let before = model.docs.count
                    model.docs = try model.docs.filter { !(try ReferenceMatcher.matches(filterJSON, $0.value)) }
                    #expect(n == before - model.docs.count, "\(context)")
                case 75..<78:  // create an index
                    let field = ["a", "b", "c"].randomElement(using: &g) ?? "a"
                    let unique = Int.random(in: 0..<3, using: &g) == 0
                    do {
                        try store.write { txn throws in
                            if (try? txn.indexes("m"))?.contains(where: { $0.path == field }) == true { return }
                            try txn.createIndex("m", path: field, unique: unique)
                        }
                        if unique,
                            try store.read({ try $0.indexes("m") }).contains(IndexInfo(path: field, unique: true))
                        {
                            model.uniqueIndexes.insert(field)
                        }
                    } catch let e as StoreError {
                        #expect(unique && e.code == .duplicateKey, "\(context): \(e)")
                    }
                case 78..<80:  // drop an index
                    let field = ["a", "b", "c"].randomElement(using: &g) ?? "a"
                    try store.write { txn throws in
                        if (try? txn.indexes("m"))?.contains(where: { $0.path == field }) == true {
                            try txn.dropIndex("m", path: field)
                        }
                    }
                    model.uniqueIndexes.remove(field)
                default:  // query
                    let got = try store.read { try $0.find("m", filter: filter).all() }
                    let want = try model.docs.keys.sorted().compactMap { k -> JSON? in
                        guard let d = model.docs[k], try ReferenceMatcher.matches(filterJSON, d) else { return nil }
                        return .object(d)
                    }
                    #expect(got == want, "\(context): find \(filterJSON)")
                }
                // Whole-state comparison after every step.
                let all = try store.read { try $0.find("m").all() }
                #expect(all == model.sorted(), "\(context): contents differ")
                if all != model.sorted() { return }
                #expect(try store.read { try $0.count("m") } == model.docs.count, "\(context)")
            }
        }
    }
}
