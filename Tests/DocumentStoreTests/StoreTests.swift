import DocumentStore
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Document store")
struct StoreTests {
    // MARK: Environment

    @Test("opening creates a private directory and private files")
    func createsPrivateDirectory() throws {
        let dir = temporaryDirectory()
        defer { removeTree(dir) }
        let path = dir + "/nested/db"
        let store = try DocumentStore(path: path)
        try store.write { try $0.createCollection("users") }
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o700)
        #expect(stat(path + "/data.mdb", &st) == 0 && st.st_mode & 0o077 == 0)
        #expect(store.mapSize >= 1 << 30)
    }

    @Test("a path that is a file is a clear error naming it")
    func pathIsFile() throws {
        let dir = temporaryDirectory()
        defer { removeTree(dir) }
        let file = dir + "/plain"
        let fd = creat(file, 0o600)
        close(fd)
        let e = storeError { _ = try DocumentStore(path: file) }
        #expect(e?.code == .badPath)
        #expect(e?.message.contains(file) == true)
        #expect(storeError { _ = try DocumentStore(path: "") }?.code == .badPath)
    }

    @Test("an unwritable directory is a clear error naming the path")
    func unwritableDirectory() throws {
        // sysfs refuses mkdir even to root, so this runs the same in CI (root) and locally.
        let e = storeError { _ = try DocumentStore(path: "/sys/kernel/migrator-test-db") }
        #expect(e?.code == .permissionDenied)
        #expect(
            e?.message
                == "/sys/kernel/migrator-test-db: creating the database directory failed: Operation not permitted")
        if geteuid() != 0 {
            // For ordinary users, a directory without write permission too.
            let dir = temporaryDirectory()
            defer {
                chmod(dir, 0o700)
                removeTree(dir)
            }
            chmod(dir, 0o500)
            #expect(storeError { _ = try DocumentStore(path: dir + "/db") }?.code == .permissionDenied)
        }
    }

    @Test("a damaged database directory (data.mdb is a directory) is refused with the path")
    func readOnlyFiles() throws {
        let dir = temporaryDirectory()
        defer { removeTree(dir) }
        let path = dir + "/db"
        // data.mdb must be a file; a directory in its place cannot be opened.
        mkdir(path, 0o700)
        mkdir(path + "/data.mdb", 0o700)
        let e = storeError { _ = try DocumentStore(path: path) }
        #expect(e != nil)
        #expect(e?.message.contains(path) == true)
    }

    @Test("opening the same directory twice shares one environment")
    func sharedEnvironment() throws {
        let dir = temporaryDirectory()
        defer { removeTree(dir) }
        let a = try DocumentStore(path: dir + "/db")
        let b = try DocumentStore(path: dir + "/db/")
        try a.write { try $0.insert(["_id": 1], into: "c") }
        #expect(try b.read { try $0.count("c") } == 1)
    }

    @Test("a second write on the same thread is an error, not a deadlock")
    func nestedWrite() throws {
        try withStore { store throws in
            let e = storeError {
                try store.write { _ in try store.write { _ in } }
            }
            #expect(e?.code == .nestedWriteTransaction)
            // The store is still usable afterwards.
            try store.write { try $0.insert(["_id": 1], into: "c") }
            #expect(try store.read { try $0.count("c") } == 1)
        }
    }

    @Test("a write that throws leaves nothing behind")
    func abortOnThrow() throws {
        struct Boom: Error {}
        try withStore { store throws in
            try store.write { try $0.insert(["_id": 1], into: "c") }
            #expect(throws: Boom.self) {
                try store.write { txn throws in
                    try txn.insert(["_id": 2], into: "c")
                    try txn.createIndex("c", path: "x")
                    throw Boom()
                }
            }
            try store.read { txn throws in
                #expect(try txn.count("c") == 1)
                #expect(try txn.indexes("c").isEmpty)
            }
        }
    }

    @Test("the map grows on MDB_MAP_FULL and the write is retried")
    func mapGrowth() throws {
        var options = DocumentStore.Options()
        options.initialMapSize = 256 << 10
        try withStore(options: options) { store throws in
            var runs = 0
            try store.write { txn throws in
                runs += 1
                for i in 0..<20_000 {
                    try txn.insert(
                        ["_id": .int(Int64(i)), "pad": .string(String(repeating: "x", count: 64))], into: "c")
                }
            }
            #expect(runs > 1)
            #expect(store.mapSize > 256 << 10)
            #expect(try store.read { try $0.count("c") } == 20_000)
        }
    }

    @Test("a map that may not grow further is a clear map_full error")
    func mapLimit() throws {
        var options = DocumentStore.Options()
        options.initialMapSize = 256 << 10
        options.maxMapSize = 512 << 10
        try withStore(options: options) { store throws in
            let e = storeError {
                try store.write { txn throws in
                    for i in 0..<50_000 {
                        try txn.insert(
                            ["_id": .int(Int64(i)), "pad": .string(String(repeating: "x", count: 64))], into: "c")
                    }
                }
            }
            #expect(e?.code == .mapFull)
            #expect(e?.message.contains(store.path) == true)
            #expect(try store.read { try $0.count("c") } == 0)
        }
    }

    // MARK: Collections

    @Test("collections: create, if-not-exists, list with counts, exists, drop", arguments: Backend.allCases)
    func collections(_ backend: Backend) throws {
        try withStore(backend) { store throws in
            try store.write { txn throws in
                #expect(try txn.createCollection("b"))
                #expect(try txn.createCollection("b", ifNotExists: true) == false)
                #expect(storeError { try txn.createCollection("b") }?.code == .collectionExists)
                try txn.insert(["x": 1], into: "a")
                try txn.insert(["x": 2], into: "a")
            }
            try store.read { txn throws in
                #expect(
                    try txn.collections() == [CollectionInfo(name: "a", count: 2), CollectionInfo(name: "b", count: 0)])
                #expect(try txn.collectionExists("a"))
                #expect(try !txn.collectionExists("zz"))
            }
            try store.write { txn throws in
                try txn.createIndex("a", path: "x")
                #expect(try txn.dropCollection("a"))
                #expect(try txn.dropCollection("a", ifExists: true) == false)
                #expect(storeError { try txn.dropCollection("a") }?.code == .collectionNotFound)
                // A re-created collection starts empty, without the old index.
                try txn.insert(["x": 3], into: "a")
                #expect(try txn.count("a") == 1)
                #expect(try txn.indexes("a").isEmpty)
            }
        }
    }

    @Test(
        "collection names are validated",
        arguments: [
            ("", "empty"), (String(repeating: "n", count: 121), "the limit is 120"), ("a\u{7}b", "control character"),
            ("tab\tname", "control character"),
        ])
    func badNames(_ name: String, _ fragment: String) throws {
        for backend in Backend.allCases {
            try withStore(backend) { store throws in
                let e = storeError { try store.write { try $0.createCollection(name) } }
                #expect(e?.code == .invalidName, "\(backend)")
                #expect(e?.message.contains(fragment) == true, "\(backend)")
            }
        }
    }

    @Test(
        "names starting with _ are reserved: readable, writable only through the system API",
        arguments: Backend.allCases)
    func reservedNames(_ backend: Backend) throws {
        try withStore(backend) { store throws in
            let e = storeError { try store.write { try $0.insert(["a": 1], into: "_migrations") } }
            #expect(e?.code == .reservedCollection)
            #expect(e?.message.contains("'_migrations'") == true)
            try store.write { txn throws in
                // Every backend's transaction has the system API, for the engine (package) alone.
                let system = try #require(txn as? any SystemTransaction)
                _ = try system.withSystemAccess { try txn.insert(["_id": "001_x"], into: "_migrations") }
                #expect(storeError { try txn.dropCollection("_migrations") }?.code == .reservedCollection)
            }
            #expect(try store.read { try $0.count("_migrations") } == 1)
            let r = storeError { try store.read { try $0.insert(["a": 1], into: "users") } }
            #expect(r?.code == .readOnlyTransaction)
        }
    }

    // MARK: Documents

    @Test("_id: kept, generated as 24 hex time-ordered, duplicates refused", arguments: Backend.allCases)
    func ids(_ backend: Backend) throws {
        try withStore(backend) { store throws in
            try store.write { txn throws in
                let a = try txn.insert(["name": "x"], into: "c")
                let b = try txn.insert(["name": "y"], into: "c")
                guard case .string(let sa) = a, case .string(let sb) = b else {
                    Issue.record("not strings")
                    return
                }
                #expect(sa.count == 24 && sa.allSatisfy { $0.isHexDigit && !$0.isUppercase })
                #expect(sa < sb)
                #expect(try txn.insert(["_id": 7, "v": 1], into: "c") == 7)
                let e = storeError { try txn.insert(["_id": 7, "v": 2], into: "c") }
                #expect(e?.code == .duplicateKey)
                #expect(e?.message == "collection 'c': duplicate _id 7")
                #expect(storeError { try txn.insert(["_id": 1.5], into: "c") }?.code == .invalidDocument)
                #expect(storeError { try txn.insert(["_id": ["a"]], into: "c") }?.code == .invalidDocument)
                #expect(storeError { try txn.insert([1, 2], into: "c") }?.code == .invalidDocument)
                // _id is stored first.
                try txn.insert(["z": 1, "_id": "k"], into: "c")
                #expect(
                    try txn.findOne("c", filter: Filter(parsing: #"{"_id":"k"}"#))?.serialized == #"{"_id":"k","z":1}"#)
                #expect(try txn.findOne("c", filter: Filter(parsing: #"{"_id":7}"#))?.serialized == #"{"_id":7,"v":1}"#)
            }
        }
    }

    @Test("cursors iterate in _id order, with skip, limit and projection", arguments: Backend.allCases)
    func cursorOrder(_ backend: Backend) throws {
        try withStore(backend) { store throws in
            try store.write { txn throws in
                for id: JSON in ["b", 10, -3, "a", 2] { try txn.insert(["_id": id, "n": 1, "s": "x"], into: "c") }
            }
            try store.read { txn throws in
                let ids = try txn.find("c").all().map { $0.objectValue?["_id"] ?? .null }
                #expect(ids == [-3, 2, 10, "a", "b"])
                let page = try txn.find(
                    "c", options: FindOptions(skip: 1, limit: 2, projection: Projection(json(#"{"s":1,"_id":0}"#)))
                ).all()
                #expect(page.map(\.serialized) == [#"{"s":"x"}"#, #"{"s":"x"}"#])
                let drop = try txn.find("c", options: FindOptions(limit: 1, projection: Projection(json(#"{"n":0}"#))))
                    .all()
                #expect(drop.map(\.serialized) == [#"{"_id":-3,"s":"x"}"#])
                #expect(storeError { _ = try Projection(json(#"{"a":1,"b":0}"#)) }?.code == .invalidProjection)
                let idOnly = try txn.find(
                    "c", options: FindOptions(limit: 1, projection: Projection(json(#"{"_id":1}"#))))
                #expect(try idOnly.all().map(\.serialized) == [#"{"_id":-3}"#], "{_id: 1} keeps only _id")
                let sorted = try txn.find("c", options: FindOptions(sort: [(try FieldPath("_id"), false)])).all()
                #expect(sorted.first?.objectValue?["_id"] == "b")
            }
        }
    }

    @Test("updating and deleting while iterating visits each document exactly once", arguments: Backend.allCases)
    func mutateWhileIterating(_ backend: Backend) throws {
        try withStore(backend) { store throws in
            try store.write { txn throws in
                for i in 0..<2000 { try txn.insert(["_id": .int(Int64(i)), "v": 0], into: "c") }
                var seen: [Int64] = []
                let cursor = try txn.find("c")
                while let d = try cursor.next() {
                    guard case .int(let id)? = d.objectValue?["_id"] else { continue }
                    seen.append(id)
                    let byID = try Filter(JSON.object(JSONObject([("_id", .int(id))])))
                    if id % 3 == 0 {
                        try txn.deleteOne("c", filter: byID)
                    } else {
                        // Grow the document so LMDB pages split under the cursor.
                        _ = try txn.updateOne(
                            "c", filter: byID,
                            update: Update(parsing: #"{"$set":{"v":1,"pad":"\#(String(repeating: "p", count: 300))"}}"#)
                        )
                    }
                    // Also delete a document ahead of the cursor; it must not be visited.
                    if id % 7 == 1 {
                        try txn.deleteOne("c", filter: Filter(JSON.object(JSONObject([("_id", .int(id + 1))]))))
                    }
                    // Inserts beyond the end are not visited.
                    if id == 10 { try txn.insert(["_id": 1_000_000], into: "c") }
                }
                let expected = (0..<2000).filter { $0 % 7 != 2 }.map(Int64.init)
                #expect(seen == expected)
                #expect(try txn.count("c", filter: Filter(parsing: #"{"v":0}"#)) == 0)
                #expect(try txn.count("c") == expected.filter { $0 % 3 != 0 }.count + 1)
            }
        }
    }

    // MARK: Indexes

    @Test("indexes are used by equality and $in, as explain shows", arguments: Backend.allCases)
    func indexUse(_ backend: Backend) throws {
        try withStore(backend) { store throws in
            try store.write { txn throws in
                for i in 0..<100 {
                    try txn.insert(
                        [
                            "_id": .int(Int64(i)), "email": .string("u\(i)@x"),
                            "city": .string(i % 2 == 0 ? "Oslo" : "Rome"),
                        ], into: "u")
                }
                try txn.createIndex("u", path: "email", unique: true)
            }
            try store.read { txn throws in
                #expect(
                    try txn.explain("u", filter: Filter(parsing: #"{"email":"u5@x"}"#)).kind
                        == .indexLookup(path: "email", keys: 1))
                #expect(
                    try txn.explain("u", filter: Filter(parsing: #"{"email":{"$in":["u1@x","u2@x"]},"city":"Oslo"}"#))
                        .kind == .indexLookup(path: "email", keys: 2))
                #expect(try txn.explain("u", filter: Filter(parsing: #"{"city":"Oslo"}"#)).kind == .collectionScan)
                #expect(
                    try txn.explain("u", filter: Filter(parsing: #"{"email":{"$gt":"a"}}"#)).kind == .collectionScan)
                #expect(
                    try txn.explain("u", filter: Filter(parsing: #"{"$or":[{"email":"u1@x"}]}"#)).kind
                        == .collectionScan)
                #expect(
                    try txn.count(
                        "u", filter: Filter(parsing: #"{"email":{"$in":["u1@x","u2@x","zz"]},"city":"Oslo"}"#)) == 1)
                #expect(try txn.findOne("u", filter: Filter(parsing: #"{"email":"u5@x"}"#))?.objectValue?["_id"] == 5)
                #expect(try txn.indexes("u") == [IndexInfo(path: "email", unique: true)])
            }
        }
    }

    @Test(
        "unique violations name the collection, path and both ids, and leave nothing behind",
        arguments: Backend.allCases)
    func uniqueViolations(_ backend: Backend) throws {
        try withStore(backend) { store throws in
            try store.write { txn throws in
                try txn.insert(["_id": 1, "email": "a"], into: "u")
                try txn.insert(["_id": 2, "email": "a"], into: "u")
                let e = storeError { try txn.createIndex("u", path: "email", unique: true) }
                #expect(e?.code == .duplicateKey)
                #expect(
                    e?.message
                        == #"collection 'u': unique index on 'email' already holds "a" for _id 1, "#
                        + "so _id 2 cannot have it"
                )
                #expect(try txn.indexes("u").isEmpty)
                try txn.updateOne(
                    "u", filter: Filter(parsing: #"{"_id":2}"#), update: Update(parsing: #"{"$set":{"email":"b"}}"#))
                try txn.createIndex("u", path: "email", unique: true)
                let i = storeError { try txn.insert(["_id": 3, "email": "b"], into: "u") }
                #expect(i?.code == .duplicateKey)
                #expect(try txn.count("u") == 2)
                let u = storeError {
                    try txn.updateOne(
                        "u", filter: Filter(parsing: #"{"_id":1}"#), update: Update(parsing: #"{"$set":{"email":"b"}}"#)
                    )
                }
                #expect(u?.code == .duplicateKey)
                // Failed single-document writes leave the transaction usable.
                try txn.insert(["_id": 4, "email": "c"], into: "u")
            }
        }
    }

    @Test(
        "indexes are maintained on insert, update, delete and multikey arrays; dropping removes them",
        arguments: Backend.allCases)
    func indexMaintenance(_ backend: Backend) throws {
        try withStore(backend) { store throws in
            try store.write { txn throws in
                try txn.createIndex("u", path: "tags")
                try txn.createIndex("u", path: "a.b")
                try txn.insert(["_id": 1, "tags": ["x", "y"], "a": ["b": 1]], into: "u")
                try txn.insert(["_id": 2, "tags": "x", "a": ["b": 1.0]], into: "u")
                func ids(_ f: String) throws -> [JSON] {
                    try txn.find("u", filter: Filter(parsing: f)).all().compactMap { $0.objectValue?["_id"] }
                }
                #expect(try ids(#"{"tags":"x"}"#) == [1, 2])
                #expect(try ids(#"{"tags":["x","y"]}"#) == [1])
                #expect(try ids(#"{"a.b":1}"#) == [1, 2])
                _ = try txn.updateOne(
                    "u", filter: Filter(parsing: #"{"_id":1}"#), update: Update(parsing: #"{"$pull":{"tags":"x"}}"#))
                #expect(try ids(#"{"tags":"x"}"#) == [2])
                #expect(try ids(#"{"tags":"y"}"#) == [1])
                _ = try txn.updateMany("u", filter: .all, update: Update(parsing: #"{"$set":{"a.b":5}}"#))
                #expect(try ids(#"{"a.b":1}"#) == [])
                #expect(try ids(#"{"a.b":5}"#) == [1, 2])
                try txn.deleteOne("u", filter: Filter(parsing: #"{"_id":2}"#))
                #expect(try ids(#"{"tags":"x"}"#) == [])
                #expect(try ids(#"{"a.b":5}"#) == [1])
                try txn.dropIndex("u", path: "a.b")
                #expect(try txn.explain("u", filter: Filter(parsing: #"{"a.b":5}"#)).kind == .collectionScan)
                #expect(try ids(#"{"a.b":5}"#) == [1])
                #expect(storeError { try txn.dropIndex("u", path: "a.b") }?.code == .indexNotFound)
            }
        }
    }

    /// A scan that rewrites every document and its index entries writes
    /// thousands of index nodes while it walks the documents' pages. LMDB's
    /// key pointers die at the first write, so the scan must work on a copy:
    /// checked here against a model of what every index must hold.
    @Test(
        "a scan that reindexes every document keeps each index exact (checked against a model)",
        arguments: Backend.allCases)
    func reindexingScanMatchesTheModel(_ backend: Backend) throws {
        try withStore(backend) { store throws in
            let n = 6000
            var model: [Int: (group: Int, label: String)] = [:]
            try store.write { txn throws in
                try txn.createIndex("docs", path: "group")
                try txn.createIndex("docs", path: "label", unique: true)
                for i in 0..<n {
                    model[i] = (i % 7, "l\(i)")
                    try txn.insert(
                        ["_id": .int(Int64(i)), "group": .int(Int64(i % 7)), "label": .string("l\(i)")], into: "docs")
                }
            }
            // One scan rewrites all of them: new group, a longer label (so
            // nodes change size and move), in the same transaction as the
            // index writes.
            try store.write { txn throws in
                let r = try txn.updateMany(
                    "docs", filter: Filter(parsing: #"{"group":{"$gte":0}}"#),
                    update: Update(parsing: #"{"$inc":{"group":10},"$set":{"pad":"xxxxxxxxxxxxxxxxxxxxxxxx"}}"#))
                #expect(r.matched == n && r.modified == n)
            }
            for i in 0..<n { model[i]?.group += 10 }
            try store.read { txn throws in
                for g in 10..<17 {
                    let ids = try txn.find("docs", filter: Filter(parsing: #"{"group":\#(g)}"#)).all().compactMap {
                        $0.objectValue?["_id"]
                    }
                    let want = model.filter { $0.value.group == g }.keys.sorted().map { JSON.int(Int64($0)) }
                    #expect(ids == want, "group \(g)")
                    #expect(
                        try txn.explain("docs", filter: Filter(parsing: #"{"group":\#(g)}"#)).kind != .collectionScan)
                }
                #expect(try txn.count("docs", filter: Filter(parsing: #"{"group":{"$lt":10}}"#)) == 0)
                for i in stride(from: 0, to: n, by: 97) {
                    let doc = try txn.findOne("docs", filter: Filter(parsing: #"{"label":"l\#(i)"}"#))
                    #expect(
                        doc?.objectValue?["_id"] == .int(Int64(i))
                            && doc?.objectValue?["group"] == .int(Int64(i % 7 + 10)))
                }
            }
        }
    }
}

extension StoreTests {
    @Test("_id equality reads by primary key", arguments: Backend.allCases)
    func primaryKeyLookup(_ backend: Backend) throws {
        try withStore(backend) { store throws in
            try store.write { txn throws in
                for i in 0..<10 { try txn.insert(["_id": .int(Int64(i))], into: "c") }
                try txn.insert(["_id": "s"], into: "c")
                #expect(try txn.explain("c", filter: Filter(parsing: #"{"_id":3}"#)).kind == .primaryKey(keys: 1))
                #expect(
                    try txn.explain("c", filter: Filter(parsing: #"{"_id":{"$in":[1,"s",2.5]}}"#)).kind
                        == .primaryKey(keys: 3))
                #expect(try txn.count("c", filter: Filter(parsing: #"{"_id":{"$in":[1,"s",2.5,3.0,[1]]}}"#)) == 3)
                #expect(try txn.count("c", filter: Filter(parsing: #"{"_id":{"$gt":7}}"#)) == 2)
            }
        }
    }
}

extension StoreTests {
    @Test(
        "inserting text stores the same bytes whether or not it is already canonical", arguments: Backend.allCases)
    func canonicalInsertPath(_ backend: Backend) throws {
        let inputs = [
            #"{"_id":1,"a":"x","n":-5,"o":{"k":[true,null,0]}}"#,
            #"{"a":"é日","b":[]}"#,
            #"{}"#,
            #"{"b":1,"_id":"late"}"#,
            #"{ "_id": 2, "d": 2.50, "e": "\u0041" }"#,
            #"{"_id":3,"big":123456789012345678901}"#,
            #"{"_id":-42,"a":1}"#,
            #"{"_id":123456789012345678,"a":1}"#,
            #"{"_id":"ключ é","a":1}"#,
            #"{"_id":0}"#,
        ]
        try withStore(backend) { store throws in
            try store.write { txn throws in
                for (i, text) in inputs.enumerated() {
                    let viaText = try Array(text.utf8).withUnsafeBytes { try txn.insert(json: $0, into: "t") }
                    var value = json(text).objectValue ?? JSONObject()
                    if viaText != value["_id"] { value["_id"] = viaText }
                    try txn.insert(.object(value), into: "v\(i)")
                    let a = try txn.findOne("t", filter: Filter(JSON.object(JSONObject([("_id", viaText)]))))
                    let b = try txn.findOne("v\(i)")
                    #expect(a != nil && a?.serialized == b?.serialized, "\(text)")
                }
                for bad in [
                    #"{"a":1,"a":2}"#, #"{"_id":1.5}"#, #"{"_id":true}"#, #"{"_id":-42}"#, #"{"_id":"ключ é"}"#,
                    #"{"_id":[1]}"#, #"{"a":1}x"#, #"{"a":01}"#, "{\"a\":\"\u{1}\"}",
                ] {
                    let e = storeError { try Array(bad.utf8).withUnsafeBytes { try txn.insert(json: $0, into: "t") } }
                    #expect(e != nil, "\(bad)")
                }
                #expect(try txn.count("t") == inputs.count)
            }
        }
    }

    @Test(
        "the text path: duplicates name the _id, the _id length limit holds, ids are returned only when asked",
        arguments: Backend.allCases)
    func canonicalInsertIDs(_ backend: Backend) throws {
        func insert(_ txn: any DocumentTransaction, _ text: String, returningID: Bool = true) throws -> JSON {
            try Array(text.utf8).withUnsafeBytes { try txn.insert(json: $0, into: "t", returningID: returningID) }
        }
        try withStore(backend) { store throws in
            try store.write { txn throws in
                #expect(try insert(txn, #"{"_id":-7,"a":1}"#) == -7)
                #expect(
                    storeError { try insert(txn, #"{"_id":-7,"a":2}"#) }?.message == "collection 't': duplicate _id -7")
                #expect(try insert(txn, #"{"_id":"k","a":1}"#) == "k")
                #expect(
                    storeError { try insert(txn, #"{"_id":"k"}"#) }?.message == #"collection 't': duplicate _id "k""#)
                let longest = String(repeating: "x", count: 255)
                #expect(try insert(txn, #"{"_id":"\#(longest)"}"#) == .string(longest))
                #expect(storeError { try insert(txn, #"{"_id":"\#(longest)y"}"#) }?.code == .invalidDocument)
                #expect(try insert(txn, #"{"_id":8}"#, returningID: false) == .null)
                #expect(try txn.findOne("t", filter: Filter(parsing: #"{"_id":8}"#))?.serialized == #"{"_id":8}"#)
                guard case .string(let generated) = try insert(txn, #"{"b":[1,{"c":"d"}]}"#) else {
                    Issue.record("no generated id")
                    return
                }
                #expect(generated.count == 24)
                let stored = try txn.findOne(
                    "t", filter: Filter(JSON.object(JSONObject([("_id", .string(generated))]))))
                #expect(stored?.serialized == #"{"_id":"\#(generated)","b":[1,{"c":"d"}]}"#)
                #expect(try insert(txn, "{}", returningID: false) == .null)
                #expect(
                    try txn.count("t", filter: Filter(parsing: #"{"b":{"$exists":false},"a":{"$exists":false}}"#)) == 3)
                #expect(try txn.count("t") == 6)
            }
        }
    }
}

extension StoreTests {
    @Test("a cursor used after close or after its transaction throws cursor_closed naming the collection")
    func closedCursor() throws {
        try withStore { store throws in
            try store.write { try $0.insert(["_id": 1, "a": "x"], into: "c") }
            let escaped = try store.read { txn throws -> DocumentCursor in
                let c = try txn.find("c", options: FindOptions(projection: Projection(json(#"{"a":1,"_id":0}"#))))
                // Projected bytes stay valid until the next call.
                let raw = try c.nextRaw()
                #expect(raw.map { String(decoding: $0, as: UTF8.self) } == #"{"a":"x"}"#)
                let other = try txn.find("c")
                other.close()
                let e = storeError { try other.nextRaw() }
                #expect(e?.code == .cursorClosed)
                #expect(e?.message == "collection 'c': the cursor was closed")
                return c
            }
            #expect(storeError { try escaped.next() }?.code == .cursorClosed)
        }
    }
}

extension StoreTests {
    @Test("a transaction kept past its closure, and a bad index path, give clear errors")
    func misuseErrors() throws {
        try withStore { store throws in
            let kept = try store.read { $0 }
            let e = storeError { try kept.count("c") }
            #expect(e?.code == .transactionEnded)
            #expect(e?.message.contains(store.path) == true)
            let p = storeError { try store.write { try $0.createIndex("users", path: "a..b") } }
            #expect(p?.code == .invalidName)
            #expect(p?.message == #"collection 'users': cannot index field path "a..b" has an empty or '$' component"#)
        }
    }
}

extension StoreTests {
    @Test(
        "the word-at-a-time string scan agrees with the full parser at every offset", arguments: Backend.allCases)
    func canonicalScanOffsets(_ backend: Backend) throws {
        // Each special sequence is tried at every position of strings of 0 to 19 bytes.
        let specials: [[UInt8]] = [
            Array(#"\""#.utf8), Array(#"\\"#.utf8), Array(#"\n"#.utf8), [0x01], [0x1F], [0x7F],
            Array("é".utf8), Array("😀".utf8), [0xFF], [0xC3], [0xED, 0xA0, 0x80],
        ]
        try withStore(backend) { store throws in
            try store.write { txn throws in
                var n = 0
                for length in 0..<20 {
                    for position in 0...length {
                        for special in specials {
                            var text = Array(#"{"_id":\#(n),"s":""#.utf8)
                            var body = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                            body.insert(contentsOf: special, at: position)
                            text += body + Array(#"","t":"x"}"#.utf8)
                            n += 1
                            let full: JSON? = text.withUnsafeBytes { try? JSON(parsing: $0) }
                            let stored: JSON? = text.withUnsafeBytes { b in try? txn.insert(json: b, into: "s") }
                            #expect((full == nil) == (stored == nil), "\(String(decoding: text, as: UTF8.self))")
                            if let full, stored != nil {
                                let back = try txn.findOne(
                                    "s", filter: Filter(JSON.object(JSONObject([("_id", .int(Int64(n - 1)))]))))
                                #expect(back == full, "\(String(decoding: text, as: UTF8.self))")
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Writing through a cursor (ABI 1.1 `cursor_replace` / `cursor_delete`).
@Suite("Cursor writes")
struct CursorWriteTests {
    @Test(arguments: Backend.allCases) func replaceAndDeleteDuringAScanVisitEachDocumentOnceAndKeepIndexes(
        _ backend: Backend
    ) throws {
        try withStore(backend) { store in
            try store.write { txn in
                _ = try txn.createIndex("u", path: "plan")
                for i in 0..<500 {
                    _ = try txn.insert(
                        .object(JSONObject([("_id", .int(Int64(i))), ("plan", .string("free"))])), into: "u")
                }
            }
            let tracker = ChangeTracker(keepingPreImages: true)
            let visited = try store.write { txn -> Int in
                txn.track(tracker)
                let c = try txn.find("u")
                var n = 0
                while let raw = try c.nextRaw() {
                    n += 1
                    if n % 5 == 0 {
                        try c.deleteCurrent()
                        #expect(throws: StoreError.self) { try c.deleteCurrent() }
                    } else {
                        let body = Array(#"{"plan":"pro","n":\#(n)}"#.utf8)
                        try body.withUnsafeBytes { try c.replaceCurrent(json: $0) }
                    }
                    _ = raw
                }
                #expect(throws: StoreError.self) {
                    try Array("{}".utf8).withUnsafeBytes { try c.replaceCurrent(json: $0) }
                }
                return n
            }
            #expect(visited == 500, "each document once, none twice after being rewritten")
            #expect(tracker.changes["u"]?.updated == 400 && tracker.changes["u"]?.deleted == 100)
            try store.read { txn in
                #expect(try txn.count("u") == 400)
                #expect(try txn.count("u", filter: Filter(parsing: #"{"plan":"pro"}"#)) == 400)
                #expect(try txn.count("u", filter: Filter(parsing: #"{"plan":"free"}"#)) == 0)
                #expect(try txn.explain("u", filter: Filter(parsing: #"{"plan":"pro"}"#)).description.contains("plan"))
                let one = try txn.getRaw("u", id: .int(1)).map { String(decoding: $0, as: UTF8.self) }
                #expect(one == #"{"_id":1,"plan":"pro","n":2}"#)
                #expect(try txn.getRaw("u", id: .int(4)) == nil, "deleted")
            }
        }
    }
}

/// A scan with a lower bound on `_id` starts there, and finds exactly what
/// a full scan would.
@Suite("Scans from an _id bound")
struct IDBoundScanTests {
    @Test(arguments: Backend.allCases) func boundedScansFindWhatFullScansFind(_ backend: Backend) throws {
        try withStore(backend) { store in
            try store.write { txn in
                for i in -20...20 { _ = try txn.insert(.object(JSONObject([("_id", .int(Int64(i)))])), into: "t") }
                for s in ["a", "b", "bb", "c"] {
                    _ = try txn.insert(.object(JSONObject([("_id", .string(s))])), into: "t")
                }
            }
            let filters = [
                #"{"_id":{"$gt":5}}"#, #"{"_id":{"$gte":5}}"#, #"{"_id":{"$gt":-2.5}}"#, #"{"_id":{"$gte":2.5}}"#,
                #"{"_id":{"$gt":3.0}}"#, #"{"_id":{"$gt":"b"}}"#, #"{"_id":{"$gte":"b"}}"#, #"{"_id":{"$gt":100}}"#,
                #"{"$and":[{"_id":{"$gt":0}},{"_id":{"$lt":4}}]}"#, #"{"_id":{"$gt":5,"$lte":7}}"#,
            ]
            try store.read { txn in
                let all = try txn.find("t").all()
                for text in filters {
                    let f = try Filter(parsing: text)
                    let expected = all.filter { f.matches($0) }.map(\.serialized)
                    let got = try txn.find("t", filter: f).all().map(\.serialized)
                    #expect(got == expected, "\(text)")
                }
            }
        }
    }
}

/// What dry runs count and reversibility checks compare, on both backends.
@Suite("Change tracking")
struct ChangeTrackingTests {
    @Test(arguments: Backend.allCases)
    func aTrackerCountsChangesAndSeesWhetherTheyWerePutBack(_ backend: Backend) throws {
        try withStore(backend) { store in
            try store.write { txn in
                try txn.insert(["_id": 1, "a": 1], into: "c")
                try txn.insert(["_id": 2, "a": 2], into: "c")
            }
            try store.write { txn in
                let t = ChangeTracker(keepingPreImages: true)
                txn.track(t)
                defer { txn.track(nil) }
                try txn.updateMany("c", filter: .all, update: Update(parsing: #"{"$set":{"a":9}}"#))
                try txn.insert(["_id": 3], into: "c")
                try txn.deleteOne("c", filter: Filter(parsing: #"{"_id":3}"#))
                try txn.updateOne(
                    "c", filter: Filter(parsing: #"{"_id":1}"#), update: Update(parsing: #"{"$set":{"a":1}}"#))
                try txn.insert(["_id": 1], into: "other")
                let d = try txn.differences(since: t)
                #expect(d.map(\.collection) == ["c", "other"])
                #expect(d.first?.differingDocuments == 1)
                #expect(d.first?.documents.first?.id == 2 && d.first?.documents.first?.before?.objectValue?["a"] == 2)
                #expect(d.last?.before.existed == false && d.last?.after.existed == true)
                var expected = CollectionChanges()
                expected.inserted = 1
                expected.updated = 3
                expected.deleted = 1
                #expect(t.changes["c"] == expected)
                try txn.updateOne(
                    "c", filter: Filter(parsing: #"{"_id":2}"#), update: Update(parsing: #"{"$set":{"a":2}}"#))
                try txn.dropCollection("other")
                #expect(try txn.differences(since: t).isEmpty, "everything put back")
            }
        }
    }
}
