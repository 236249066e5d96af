import DocumentStore
import TestSupport
import Testing

@Suite("Filters")
struct FilterTests {
    let doc = json(
        #"{"_id":1,"name":"Ada","age":36,"score":2.5,"tags":["x","y"],"address":{"city":"Oslo","zip":"0150"},"#
            + #""items":[{"sku":"a","qty":2},{"sku":"b","qty":5}],"none":null}"#
    )

    func matches(_ filter: String) throws -> Bool {
        try Filter(parsing: filter).matches(doc)
    }

    static let operatorCases = [
        (#"{}"#, true),
        (#"{"name":"Ada"}"#, true),
        (#"{"name":"Bob"}"#, false),
        (#"{"address.city":"Oslo"}"#, true),
        (#"{"address.city":{"$eq":"Bergen"}}"#, false),
        (#"{"age":{"$ne":36}}"#, false),
        (#"{"age":{"$gt":35,"$lt":37}}"#, true),
        (#"{"age":{"$gte":36.0}}"#, true),
        (#"{"age":{"$lte":35.9}}"#, false),
        (#"{"age":36.0}"#, true),
        (#"{"score":{"$gt":2}}"#, true),
        (#"{"age":{"$gt":"a"}}"#, false),
        (#"{"name":{"$gt":"A"}}"#, true),
        (#"{"age":{"$in":[1,36]}}"#, true),
        (#"{"age":{"$nin":[1,36]}}"#, false),
        (#"{"missing":{"$exists":false}}"#, true),
        (#"{"none":{"$exists":true}}"#, true),
        (#"{"missing":null}"#, true),
        (#"{"none":null}"#, true),
        (#"{"name":null}"#, false),
        (#"{"tags":"x"}"#, true),
        (#"{"tags":"z"}"#, false),
        (#"{"tags":["x","y"]}"#, true),
        (#"{"tags":{"$in":["z","y"]}}"#, true),
        (#"{"tags":{"$ne":"x"}}"#, false),
        (#"{"items.sku":"b"}"#, true),
        (#"{"items.qty":{"$gt":4}}"#, true),
        (#"{"items.1.sku":"b"}"#, true),
        (#"{"items.0.sku":"b"}"#, false),
        (#"{"age":{"$not":{"$gt":40}}}"#, true),
        (#"{"$or":[{"name":"Bob"},{"age":36}]}"#, true),
        (#"{"$and":[{"name":"Ada"},{"age":1}]}"#, false),
        (#"{"address":{"city":"Oslo","zip":"0150"}}"#, true),
        (#"{"address":{"zip":"0150","city":"Oslo"}}"#, false),
    ]

    @Test("operators", arguments: operatorCases)
    func operators(_ filter: String, _ expected: Bool) throws {
        #expect(try matches(filter) == expected, "\(filter)")
    }

    /// The same answers from each backend's store, with no indexes and then
    /// with an index on every filtered path, so that the candidates an
    /// index or the primary key gives are never fewer than the matches.
    @Test("operators through the store, with and without indexes", arguments: Backend.allCases)
    func operatorsThroughTheStore(_ backend: Backend) throws {
        try withStore(backend) { store in
            try store.write { txn in
                try txn.insert(doc, into: "c")
                try txn.insert(["_id": 2, "name": "Bob", "age": 36.5, "tags": "z"], into: "c")
            }
            for indexed in [false, true] {
                if indexed {
                    try store.write { txn in
                        for path in ["name", "age", "tags", "items.sku", "address.city", "none", "missing", "address"] {
                            try txn.createIndex("c", path: path)
                        }
                    }
                }
                for (text, expected) in Self.operatorCases {
                    let filter = try Filter(parsing: text)
                    let ids = try store.read {
                        try $0.findAll("c", filter: filter).compactMap { $0.objectValue?["_id"] }
                    }
                    let other = try store.read { try $0.findAll("c") }.filter { filter.matches($0) }.count
                    #expect(ids.contains(1) == expected, "\(text), indexed: \(indexed)")
                    #expect(ids.count == other, "\(text), indexed: \(indexed)")
                    #expect(try store.read { try $0.count("c", filter: filter) } == ids.count)
                }
            }
            #expect(
                try store.read { try $0.explain("c", filter: Filter(parsing: #"{"tags":{"$in":["z","y"]}}"#)) }
                    == QueryPlan(kind: .indexLookup(path: "tags", keys: 2)))
        }
    }

    @Test("the string and boolean fields a filter requires, which a server may narrow by")
    func requiredScalarFields() throws {
        let f = try Filter(
            parsing: #"{"a":"x","b":{"$eq":true},"c":1,"d.e":"y","_id":"k","$or":[{"f":"z"}],"$and":[{"g":"w"}]}"#)
        #expect(
            f.requiredScalarFields().map { "\($0.field)=\($0.value.serialized)" } == [#"a="x""#, "b=true", #"g="w""#])
        #expect(try Filter(parsing: #"{"a":{"$ne":"x"}}"#).requiredScalarFields().isEmpty)
    }

    @Test(
        "malformed filters are errors, never 'matches nothing'",
        arguments: [
            (#"{"age":{"$foo":1}}"#, "unknown operator $foo on \"age\""),
            (#"{"$nor":[]}"#, "unknown top-level operator $nor"),
            (#"{"age":{"$in":1}}"#, "$in on \"age\" needs an array"),
            (#"{"$or":[]}"#, "$or needs a non-empty array"),
            (#"{"$and":[1]}"#, "every element of $and must be an object"),
            (#"{"age":{"$exists":"yes"}}"#, "$exists on \"age\" needs true or false"),
            (#"{"age":{"$not":5}}"#, "$not on \"age\" needs an operator object"),
            (#"{"age":{"$gt":1,"x":2}}"#, "mixes operators and the field \"x\""),
            (#"{"a..b":1}"#, "has an empty or '$' component"),
            (#"[1]"#, "expected an object"),
            (#"{"a":"#, "invalid JSON at byte 5"),
        ])
    func malformed(_ filter: String, _ fragment: String) {
        let e = storeError { _ = try Filter(parsing: filter) }
        #expect(e?.code == .invalidFilter)
        #expect(e?.message.contains(fragment) == true, "\(e?.message ?? "no error")")
    }
}

@Suite("Updates")
struct UpdateTests {
    func apply(_ update: String, to doc: String, on backend: Backend = .lmdb) throws -> String {
        try withStore(backend) { store throws in
            try store.write { txn throws in
                try txn.insert(json(doc), into: "c")
                _ = try txn.updateOne("c", filter: .all, update: Update(parsing: update))
                return try txn.findOne("c")?.serialized ?? ""
            }
        }
    }

    @Test(
        "operators",
        arguments: Backend.allCases,
        [
            (#"{"$set":{"b":2}}"#, #"{"_id":1,"a":1,"b":2}"#),
            (#"{"$set":{"a":5}}"#, #"{"_id":1,"a":5}"#),
            (#"{"$set":{"x.y.z":true}}"#, #"{"_id":1,"a":1,"x":{"y":{"z":true}}}"#),
            (#"{"$unset":{"a":""}}"#, #"{"_id":1}"#),
            (#"{"$unset":{"nope.deeper":""}}"#, #"{"_id":1,"a":1}"#),
            (#"{"$inc":{"a":2}}"#, #"{"_id":1,"a":3}"#),
            (#"{"$inc":{"a":0.5}}"#, #"{"_id":1,"a":1.5}"#),
            (#"{"$inc":{"n":4}}"#, #"{"_id":1,"a":1,"n":4}"#),
            (#"{"$rename":{"a":"b"}}"#, #"{"_id":1,"b":1}"#),
            (#"{"$rename":{"zz":"b"}}"#, #"{"_id":1,"a":1}"#),
            (#"{"$push":{"t":"x"}}"#, #"{"_id":1,"a":1,"t":["x"]}"#),
            (#"{"$push":{"t":{"$each":[1,2]}}}"#, #"{"_id":1,"a":1,"t":[1,2]}"#),
            (#"{"$pull":{"a":1}}"#, "error"),
            (#"{"b":7}"#, #"{"_id":1,"b":7}"#),
            (#"{"_id":1,"b":7}"#, #"{"_id":1,"b":7}"#),
            (#"{}"#, #"{"_id":1}"#),
        ])
    func operators(_ backend: Backend, _ c: (update: String, expected: String)) throws {
        let (update, expected) = c
        do {
            #expect(try apply(update, to: #"{"_id":1,"a":1}"#, on: backend) == expected)
        } catch let e as StoreError {
            #expect(expected == "error", "\(e)")
            #expect(e.message.contains("collection 'c', _id 1"))
        }
    }

    @Test("$pull by value and by condition", arguments: Backend.allCases)
    func pull(_ backend: Backend) throws {
        #expect(
            try apply(#"{"$pull":{"t":2}}"#, to: #"{"_id":1,"t":[1,2,3,2]}"#, on: backend) == #"{"_id":1,"t":[1,3]}"#)
        #expect(
            try apply(#"{"$pull":{"t":{"$gte":2}}}"#, to: #"{"_id":1,"t":[1,2,3]}"#, on: backend)
                == #"{"_id":1,"t":[1]}"#)
    }

    @Test(
        "malformed updates",
        arguments: [
            (#"{"$set":{"a":1},"b":2}"#, "mixes update operators and plain fields"),
            (#"{"$set":{"_id":2}}"#, "cannot change _id"),
            (#"{"$set":{"a":1},"$unset":{"a":""}}"#, "conflict"),
            (#"{"$set":{"a":1,"a.b":2}}"#, "conflict"),
            (#"{"$inc":{"a":"x"}}"#, "needs a number"),
            (#"{"$bump":{"a":1}}"#, "unknown operator $bump"),
            (#"{"$set":{}}"#, "non-empty object"),
            (#"{"$rename":{"a":1}}"#, "needs a string target"),
        ])
    func malformed(_ update: String, _ fragment: String) {
        let e = storeError { _ = try Update(parsing: update) }
        #expect(e?.code == .invalidUpdate)
        #expect(e?.message.contains(fragment) == true, "\(e?.message ?? "no error")")
    }

    @Test("errors applying to a document name the collection and _id", arguments: Backend.allCases)
    func applyErrors(_ backend: Backend) {
        let notANumber = #expect(throws: StoreError.self) {
            _ = try apply(#"{"$inc":{"a":1}}"#, to: #"{"_id":1,"a":"s"}"#, on: backend)
        }
        #expect(notANumber?.code == .invalidUpdate && notANumber?.message.contains(#"_id 1"#) == true)
        let e = storeError { _ = try apply(#"{"$set":{"a.b":1}}"#, to: #"{"_id":"k","a":5}"#, on: backend) }
        #expect(e?.message == #"collection 'c', _id "k": cannot create "a.b": the part before "b" is a number"#)
        let o = storeError {
            _ = try apply(#"{"$inc":{"a":1}}"#, to: #"{"_id":1,"a":9223372036854775807}"#, on: backend)
        }
        #expect(o?.message.contains("overflows") == true)
        let r = storeError { _ = try apply(#"{"_id":2}"#, to: #"{"_id":1}"#, on: backend) }
        #expect(r?.message.contains("cannot change _id") == true)
    }

    @Test("the byte-splicing $set path gives the same bytes as a full rewrite", arguments: Backend.allCases)
    func spliceEquivalence(_ backend: Backend) throws {
        let docs = [
            #"{"_id":1}"#, #"{"_id":1,"plan":"pro","x":[1,{"plan":2}]}"#, #"{"_id":"a\"b","s":"p\\\"lan","plan":null}"#,
            #"{"_id":2,"nested":{"plan":1},"k":"}"}"#,
        ]
        for d in docs {
            for value in [#""free""#, #"{"a":[1,2]}"#, "null", "3.5"] {
                let fast = try apply(#"{"$set":{"plan":\#(value)}}"#, to: d, on: backend)
                var slowDoc = json(d).objectValue ?? JSONObject()
                slowDoc["plan"] = json(value)
                #expect(fast == JSON.object(slowDoc).serialized, "\(d) with \(value)")
            }
        }
    }

    @Test("update counts matched and modified; upsert inserts from the filter", arguments: Backend.allCases)
    func countsAndUpsert(_ backend: Backend) throws {
        try withStore(backend) { store throws in
            try store.write { txn throws in
                for i in 0..<5 { try txn.insert(["_id": .int(Int64(i)), "g": .int(Int64(i % 2))], into: "c") }
                var r = try txn.updateMany(
                    "c", filter: Filter(parsing: #"{"g":0}"#), update: Update(parsing: #"{"$set":{"g":0}}"#))
                #expect(r.matched == 3 && r.modified == 0)
                r = try txn.updateMany(
                    "c", filter: Filter(parsing: #"{"g":0}"#), update: Update(parsing: #"{"$set":{"h":1}}"#))
                #expect(r.matched == 3 && r.modified == 3)
                r = try txn.updateOne(
                    "c", filter: Filter(parsing: #"{"g":1}"#), update: Update(parsing: #"{"$inc":{"h":1}}"#))
                #expect(r.matched == 1 && r.modified == 1)
                r = try txn.updateOne(
                    "c", filter: Filter(parsing: #"{"name":"new","g":{"$gt":5}}"#),
                    update: Update(parsing: #"{"$set":{"h":9}}"#), upsert: true)
                #expect(r.matched == 0 && r.upsertedID != nil)
                let up = try txn.findOne("c", filter: Filter(parsing: #"{"name":"new"}"#))
                #expect(up?.objectValue?["h"] == .int(9))
                #expect(up?.objectValue?["g"] == nil)
                #expect(try txn.count("c") == 6)
                #expect(try txn.deleteMany("c", filter: Filter(parsing: #"{"h":{"$exists":true}}"#)) == 5)
                #expect(try txn.count("c") == 1)
            }
        }
    }
}

/// Found by fuzzing (Tests/Fuzz/corpus/query/found-crash-9f78…): a `$set` of
/// a long dotted path wrote a document too deep for the parser to read back.
@Suite struct UpdateDepthTests {
    func path(_ n: Int) -> String { (1...n).map { "p\($0)" }.joined(separator: ".") }

    @Test(arguments: Backend.allCases)
    func updatesCannotNestDeeperThanTheParserReads(_ backend: Backend) throws {
        try withStore(backend) { store in
            try store.write { txn throws in
                _ = try txn.insert(json(#"{"_id":1,"a":{"b":1}}"#), into: "c")
                // Exactly the limit: stored, and reads back.
                let ok = try Update(parsing: #"{"$set":{""# + path(JSONParser.maxDepth) + #"":1}}"#)
                #expect(try txn.updateMany("c", filter: .all, update: ok).matched == 1)
                #expect(try txn.findOne("c")?.nestingDepth == JSONParser.maxDepth)
                // One more level: refused when compiled, nothing written.
                for text in [
                    #"{"$set":{""# + path(JSONParser.maxDepth + 1) + #"":1}}"#,
                    #"{"$set":{""# + path(JSONParser.maxDepth) + #"":{"x":1}}}"#,
                    #"{"$push":{""# + path(JSONParser.maxDepth) + #"":1}}"#,
                ] {
                    let e = #expect(throws: StoreError.self) { try Update(parsing: text) }
                    #expect(e?.code == .invalidUpdate, "\(e?.message ?? "")")
                }
                // $rename moves a value of unknown depth: checked on the result.
                let deep = try Update(parsing: #"{"$rename":{"p1":"x.y"}}"#)
                let e = storeError { try txn.updateMany("c", filter: .all, update: deep) }
                #expect(e?.code == .invalidUpdate)
                #expect(try txn.findOne("c")?.nestingDepth == JSONParser.maxDepth, "unchanged")
            }
        }
    }
}
