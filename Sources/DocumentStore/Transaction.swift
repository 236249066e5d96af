import CLMDB

/// Per-transaction view of a collection's record in the meta database.
final class CollectionState {
    let name: String
    let id: UInt32
    var count: Int64
    var indexes: [IndexSpec]
    var dirty = false
    /// Bumped on every change to the collection's documents, so open cursors
    /// know to re-seek instead of trusting their LMDB position.
    var generation = 0
    let prefix: [UInt8]
    /// Generated ObjectIds grow, so they usually go at the very end of the
    /// database (`MDB_APPEND`: full pages, no search) until that fails once.
    var appendGeneratedIDs = true

    init(name: String, id: UInt32, count: Int64, indexes: [IndexSpec]) {
        self.name = name
        self.id = id
        self.count = count
        self.indexes = indexes
        var p: [UInt8] = []
        KeyEncoding.appendBigEndian(id, to: &p)
        prefix = p
    }

    var record: JSON {
        .object(
            JSONObject([
                ("id", .int(Int64(id))),
                ("count", .int(count)),
                (
                    "indexes",
                    .array(
                        indexes.map {
                            .object(
                                JSONObject([
                                    ("id", .int(Int64($0.id))), ("path", .string($0.path.description)),
                                    ("unique", .bool($0.unique)),
                                ]))
                        })
                ),
            ]))
    }
}

struct IndexSpec {
    let id: UInt32
    let path: FieldPath
    let unique: Bool
}

/// Facts about a collection, as listed by ``Transaction/collections()``.
public struct CollectionInfo: Sendable, Equatable {
    public let name: String
    public let count: Int
    public init(name: String, count: Int) {
        self.name = name
        self.count = count
    }
}

/// Facts about a secondary index.
public struct IndexInfo: Sendable, Equatable {
    public let path: String
    public let unique: Bool
    public init(path: String, unique: Bool) {
        self.path = path
        self.unique = unique
    }
}

/// The result of an update.
public struct UpdateResult: Sendable, Equatable {
    /// Documents that matched the filter.
    public var matched: Int
    /// Documents whose bytes changed.
    public var modified: Int
    /// The `_id` of the document an upsert inserted.
    public var upsertedID: JSON?

    public init(matched: Int, modified: Int, upsertedID: JSON? = nil) {
        self.matched = matched
        self.modified = modified
        self.upsertedID = upsertedID
    }
}

/// How a query will run, from ``Transaction/explain(_:filter:)``.
public struct QueryPlan: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Every document of the collection is read.
        case collectionScan
        /// Candidates come from the index on `path`; `keys` index keys are probed.
        case indexLookup(path: String, keys: Int)
        /// `_id` equality: `keys` documents are read by primary key.
        case primaryKey(keys: Int)
    }
    public let kind: Kind
    public init(kind: Kind) { self.kind = kind }
    public var description: String {
        switch kind {
        case .collectionScan: return "COLLSCAN"
        case .indexLookup(let p, let k): return "IXSCAN \(p) (\(k) key\(k == 1 ? "" : "s"))"
        case .primaryKey(let k): return "IDLOOKUP (\(k) key\(k == 1 ? "" : "s"))"
        }
    }
}

/// Options for ``Transaction/find(_:filter:options:)``.
public struct FindOptions: Sendable {
    public var skip: Int = 0
    public var limit: Int?
    public var projection: Projection?
    /// Sort keys, applied in order; `ascending == false` sorts descending.
    /// Without it, documents come in `_id` order.
    public var sort: [(path: FieldPath, ascending: Bool)] = []
    public init(
        skip: Int = 0, limit: Int? = nil, projection: Projection? = nil, sort: [(path: FieldPath, ascending: Bool)] = []
    ) {
        self.skip = skip
        self.limit = limit
        self.projection = projection
        self.sort = sort
    }

    /// Whether these are the defaults: every match, whole, in `_id` order.
    public var isDefault: Bool { skip == 0 && limit == nil && projection == nil && sort.isEmpty }

    /// How `a` and `b` compare under ``sort`` (negative: `a` first; 0:
    /// equal, and then `_id` order decides).
    public func compare(_ a: JSON, _ b: JSON) -> Int {
        for (path, ascending) in sort {
            let c = Values.compare(path.values(in: a).first ?? .null, path.values(in: b).first ?? .null)
            if c != 0 { return ascending ? c : -c }
        }
        return 0
    }
}

/// A read or write transaction, handed to the closures of
/// ``DocumentStore/read(_:)`` and ``DocumentStore/write(_:)``. It is valid
/// only inside that closure and only on the thread running it.
///
/// Collection names starting with `_` are reserved for the system: they can
/// be read, but writes need ``withSystemAccess(_:)``.
public final class Transaction {
    let env: Environment
    var txn: OpaquePointer?
    /// True for a transaction from ``DocumentStore/read(_:)``.
    public let isReadOnly: Bool
    private var states: [String: CollectionState] = [:]
    /// The collection used last: loops over one collection skip hashing its name.
    private var lastState: CollectionState?
    private var systemAccess = false
    /// Whether the write under way is the engine's own (reserved collections).
    var isSystemWrite: Bool { systemAccess }
    /// Follows user changes, when set (``track(_:)``).
    var changeTracker: ChangeTracker?
    /// Set when a multi-document operation failed half way: the transaction
    /// can then only be aborted.
    var poison: StoreError?
    var hitMapFull = false
    var cursors: [DocumentCursor.Handle] = []
    var keyBuffer: [UInt8] = []
    /// The key of the document a scan is visiting, copied out of LMDB's page.
    var scanKey: [UInt8] = []
    var valueBuffer: [UInt8] = []

    init(env: Environment, write: Bool) throws(StoreError) {
        self.env = env
        isReadOnly = !write
        txn = try env.begin(write: write)
    }

    func commit() throws(StoreError) {
        try usable()
        for s in states.values where s.dirty {
            try putMeta("c:" + s.name, s.record)
        }
        closeCursors()
        guard let t = txn else { return }
        txn = nil
        let rc = mdb_txn_commit(t)
        env.ended()
        if rc == MDB_MAP_FULL { hitMapFull = true }
        try Environment.check(rc, env.path, "mdb_txn_commit")
    }

    /// Commits what this write transaction did so far, durably, and goes on
    /// in a new one on the same thread: for work too large for one
    /// transaction (checkpointed migrations). Open cursors are closed.
    public func commitAndContinue() throws(StoreError) {
        guard !isReadOnly else {
            throw StoreError(.readOnlyTransaction, "\(env.path): a read transaction has nothing to commit")
        }
        try commit()
        for s in states.values { s.dirty = false }
        txn = try env.begin(write: true)
    }

    func abort() {
        closeCursors()
        guard let t = txn else { return }
        txn = nil
        mdb_txn_abort(t)
        env.ended()
    }

    private func closeCursors() {
        for c in cursors { c.close() }
        cursors.removeAll()
    }

    /// Lets `body` write to reserved (`_`-prefixed) collections: the system
    /// API the migration engine uses for `_migrations`. `package`, so that
    /// no library user can write the engine's records.
    @discardableResult
    package func withSystemAccess<R>(_ body: () throws -> R) rethrows -> R {
        let saved = systemAccess
        systemAccess = true
        defer { systemAccess = saved }
        return try body()
    }

    // MARK: - LMDB primitives

    func usable() throws(StoreError) {
        if let poison {
            throw StoreError(poison.code, "the transaction must be aborted after an earlier failure: \(poison.message)")
        }
        if txn == nil {
            throw StoreError(
                .transactionEnded,
                "\(env.path): the transaction has ended; use it only inside its read or write closure")
        }
    }

    func writable(_ collection: String) throws(StoreError) {
        try usable()
        if isReadOnly {
            throw StoreError(.readOnlyTransaction, "cannot write collection '\(collection)' in a read transaction")
        }
        // A cached collection was validated when first met.
        if lastState?.name != collection && states[collection] == nil { try Self.validate(collection) }
        try Self.refuseReserved(collection, systemAccess: systemAccess)
        if let t = changeTracker, !systemAccess {
            do { try t.willChange(collection, in: self) } catch let e as StoreError { throw e } catch {
                throw StoreError(.storage, "collection '\(collection)': \(error)")
            }
        }
    }

    /// Refuses writes to a reserved (`_`) collection unless the engine asked.
    public static func refuseReserved(_ collection: String, systemAccess: Bool) throws(StoreError) {
        guard !systemAccess && collection.utf8.first == UInt8(ascii: "_") else { return }
        throw StoreError(
            .reservedCollection,
            "collection '\(collection)' is reserved for the system (names starting with '_' are read-only to user code)"
        )
    }

    /// Checks a collection name: 1 to 120 bytes, no control characters.
    public static func validate(_ name: String) throws(StoreError) {
        guard !name.isEmpty else { throw StoreError(.invalidName, "collection name is empty") }
        guard name.utf8.count <= 120 else {
            throw StoreError(
                .invalidName, "collection name '\(name.prefix(40))…' is \(name.utf8.count) bytes; the limit is 120")
        }
        if name.unicodeScalars.contains(where: { $0.value < 0x20 || ($0.value >= 0x7F && $0.value < 0xA0) }) {
            throw StoreError(
                .invalidName, "collection name \(JSON.string(name).serialized) contains a control character")
        }
    }

    func get(_ dbi: MDB_dbi, _ key: UnsafeRawBufferPointer) throws(StoreError) -> UnsafeRawBufferPointer? {
        var k = MDB_val(key)
        var v = MDB_val()
        let rc = mdb_get(txn, dbi, &k, &v)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "mdb_get")
        return UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
    }

    /// `mdb_put`; returns false when `MDB_NOOVERWRITE`/`MDB_NODUPDATA` found the key.
    @discardableResult
    func put(
        _ dbi: MDB_dbi, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, flags: Int32 = 0
    ) throws(StoreError) -> Bool {
        var k = MDB_val(key)
        var v = MDB_val(value)
        let rc = mdb_put(txn, dbi, &k, &v, UInt32(flags))
        if rc == MDB_KEYEXIST { return false }
        try check(rc, "mdb_put")
        return true
    }

    /// `mdb_del`; with `value`, deletes that one duplicate. Returns false if absent.
    @discardableResult
    func del(
        _ dbi: MDB_dbi, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer? = nil
    ) throws(StoreError) -> Bool {
        var k = MDB_val(key)
        let rc: Int32
        if let value {
            var v = MDB_val(value)
            rc = mdb_del(txn, dbi, &k, &v)
        } else {
            rc = mdb_del(txn, dbi, &k, nil)
        }
        if rc == MDB_NOTFOUND { return false }
        try check(rc, "mdb_del")
        return true
    }

    func check(_ rc: Int32, _ what: String) throws(StoreError) {
        guard rc != 0 else { return }
        if rc == MDB_MAP_FULL { hitMapFull = true }
        throw Environment.lmdbError(rc, path: env.path, what)
    }

    func openCursor(_ dbi: MDB_dbi) throws(StoreError) -> OpaquePointer {
        var c: OpaquePointer?
        try check(mdb_cursor_open(txn, dbi, &c), "mdb_cursor_open")
        guard let c else { throw StoreError(.storage, "\(env.path): mdb_cursor_open returned no cursor") }
        return c
    }

    // MARK: - Meta records

    func putMeta(_ key: String, _ value: JSON) throws(StoreError) {
        let bytes = JSONSerializer.bytes(value)
        try Array(key.utf8).bytes { kb throws(StoreError) in
            try bytes.bytes { vb throws(StoreError) in _ = try put(env.meta, kb, vb) }
        }
    }

    func getMeta(_ key: String) throws(StoreError) -> JSON? {
        let raw = try Array(key.utf8).bytes { kb throws(StoreError) in try get(env.meta, kb) }
        guard let raw else { return nil }
        do { return try JSONParser.parse(raw) } catch {
            throw StoreError(.corrupted, "\(env.path): metadata record '\(key)' is damaged: \(error.message)")
        }
    }

    func deleteMeta(_ key: String) throws(StoreError) {
        try Array(key.utf8).bytes { kb throws(StoreError) in _ = try del(env.meta, kb) }
    }

    func nextID() throws(StoreError) -> UInt32 {
        var next: Int64 = 1
        if case .int(let n)? = try getMeta("seq") { next = n }
        try putMeta("seq", .int(next + 1))
        return UInt32(truncatingIfNeeded: next)
    }

    func state(_ name: String, create: Bool = false) throws(StoreError) -> CollectionState? {
        if let s = lastState, s.name == name { return s }
        if let s = states[name] {
            lastState = s
            return s
        }
        if let record = try getMeta("c:" + name) {
            guard let obj = record.objectValue, case .int(let id)? = obj["id"], case .int(let count)? = obj["count"]
            else {
                throw StoreError(.corrupted, "\(env.path): the record of collection '\(name)' is damaged")
            }
            var specs: [IndexSpec] = []
            for item in obj["indexes"]?.arrayValue ?? [] {
                guard let o = item.objectValue, case .int(let iid)? = o["id"], case .string(let p)? = o["path"],
                    case .bool(let u)? = o["unique"], let path = try? FieldPath(p)
                else {
                    throw StoreError(.corrupted, "\(env.path): an index record of collection '\(name)' is damaged")
                }
                specs.append(IndexSpec(id: UInt32(truncatingIfNeeded: iid), path: path, unique: u))
            }
            let s = CollectionState(name: name, id: UInt32(truncatingIfNeeded: id), count: count, indexes: specs)
            states[name] = s
            lastState = s
            return s
        }
        guard create else { return nil }
        let s = CollectionState(name: name, id: try nextID(), count: 0, indexes: [])
        s.dirty = true
        states[name] = s
        lastState = s
        return s
    }

    func existingState(_ name: String) throws(StoreError) -> CollectionState {
        guard let s = try state(name) else {
            throw StoreError(.collectionNotFound, "collection '\(name)' does not exist")
        }
        return s
    }

    // MARK: - Collections

    /// Creates a collection. With `ifNotExists`, an existing one is fine;
    /// otherwise it is a ``StoreError/Code/collectionExists`` error.
    /// Returns true if it was created.
    @discardableResult
    public func createCollection(_ name: String, ifNotExists: Bool = false) throws(StoreError) -> Bool {
        try writable(name)
        if try state(name) != nil {
            if ifNotExists { return false }
            throw StoreError(.collectionExists, "collection '\(name)' already exists")
        }
        _ = try state(name, create: true)
        noteChange(name) { $0.created = true }
        return true
    }

    /// Drops a collection with its documents and indexes. Returns false if
    /// it did not exist and `ifExists` is set.
    @discardableResult
    public func dropCollection(_ name: String, ifExists: Bool = false) throws(StoreError) -> Bool {
        try writable(name)
        guard let s = try state(name) else {
            if ifExists { return false }
            throw StoreError(.collectionNotFound, "collection '\(name)' does not exist")
        }
        if let t = changeTracker, t.keepsPreImages, !isSystemWrite {
            try scanAll(s) { key, value in notePreImage(s, idKey: key, bytes: value) }
        }
        noteChange(name) {
            $0.dropped = true
            $0.deleted += Int(s.count)
            $0.indexesDropped += s.indexes.count
        }
        try deleteRange(env.docs, prefix: s.prefix)
        for spec in s.indexes { try deleteIndexEntries(spec) }
        try deleteMeta("c:" + name)
        s.generation += 1
        states[name] = nil
        if lastState === s { lastState = nil }
        return true
    }

    /// True if the collection exists.
    public func collectionExists(_ name: String) throws(StoreError) -> Bool {
        try usable()
        return try state(name) != nil
    }

    /// Every collection with its document count, in name order.
    public func collections() throws(StoreError) -> [CollectionInfo] {
        try usable()
        var names: [String] = []
        let c = try openCursor(env.meta)
        defer { mdb_cursor_close(c) }
        var k = MDB_val()
        var v = MDB_val()
        var rc = mdb_cursor_get(c, &k, &v, MDB_FIRST)
        while rc == 0 {
            let key = UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size)
            if key.count > 2 && key[0] == UInt8(ascii: "c") && key[1] == UInt8(ascii: ":") {
                names.append(String(decoding: key[2...], as: UTF8.self))
            }
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)
        }
        if rc != MDB_NOTFOUND { try check(rc, "mdb_cursor_get") }
        var out: [CollectionInfo] = []
        for n in names {
            if let s = try state(n) { out.append(CollectionInfo(name: n, count: Int(s.count))) }
        }
        return out
    }

    /// Deletes every key that starts with `prefix`.
    func deleteRange(_ dbi: MDB_dbi, prefix: [UInt8]) throws(StoreError) {
        let c = try openCursor(dbi)
        defer { mdb_cursor_close(c) }
        var k = MDB_val()
        var v = MDB_val()
        // Re-seek after each delete rather than trust the cursor position.
        while true {
            let rc = prefix.withUnsafeBytes { p in
                k = MDB_val(p)
                return mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)
            }
            if rc == MDB_NOTFOUND { return }
            try check(rc, "mdb_cursor_get")
            guard UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size).starts(with: prefix) else { return }
            try check(mdb_cursor_del(c, UInt32(env.index == dbi ? MDB_NODUPDATA : 0)), "mdb_cursor_del")
        }
    }
}

extension MDB_val {
    /// An `MDB_val` over `bytes`, which must outlive every use of it. LMDB
    /// never writes through a key or data argument, so dropping `const` is safe.
    @inline(__always)
    init(_ bytes: UnsafeRawBufferPointer) {
        self.init(mv_size: bytes.count, mv_data: UnsafeMutableRawPointer(mutating: bytes.baseAddress))
    }
}
